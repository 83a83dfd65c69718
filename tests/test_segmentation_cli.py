"""segmentation.train, evaluate and predict end to end on a few tiny synthetic frames (random VGG16 weights).

The tests check the plumbing (phases, choices on validation, files, reloading,
scores reproduced), not accuracy: a random-weight encoder trained for two
epochs on a dozen 32 x 32 windows learns little.
"""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import assert_one_model_file
from flowers_synthetic import snapshot
from segmentation_synthetic import make_dataset_folder

from segmentation import evaluate, predict, table3, train

TINY = ["--backbone", "vgg16", "--weights", "none", "--image-size", "32", "--roi-size", "32",
        "--batch-size", "4", "--decoder-width", "4", "--validation-patients", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset_folder(tmp_path_factory.mktemp("sunnybrook") / "lv", train_per_group=2, test_patients=2,
                               frames=3, size=64)


@pytest.fixture(scope="module")
def gan_run(data, tmp_path_factory):
    before = snapshot(data)
    run = train.main(["--method", "gan", "--data-dir", str(data), "--epochs", "2", "--unfreeze", "1",
                      "--tensorboard", "--output-dir", str(tmp_path_factory.mktemp("runs") / "gan"), *TINY])
    assert snapshot(data) == before  # nothing written into the data folder
    return run


def test_gan_run_writes_the_whole_folder(gan_run):
    for name in ("config.json", "metrics.json", "history.csv", "steps.csv", "validation.json", "per_image.csv",
                 "table3.md", "curves.png", "overlays.png", "model.keras", "segmenter.json"):
        assert (gan_run / name).is_file(), name
    assert_one_model_file(gan_run)   # G alone: the discriminator is not needed to segment (it was a second file)
    metrics = json.loads((gan_run / "metrics.json").read_text())
    assert set(metrics) == {"test", "per_patient", "train_seconds"}
    assert set(metrics["test"]) == {"dice", "jaccard", "sensitivity", "precision", "images"}
    assert metrics["test"]["images"] == 6 and set(metrics["test"]["dice"]) == {"mean", "std"}
    assert sorted(metrics["per_patient"]) == ["SC-HF-I-50", "SC-HF-NI-51"]
    assert metrics["per_patient"]["SC-HF-I-50"]["images"] == 3
    # layer-wise fine-tuning: epoch 1 with the encoder frozen, epoch 2 with its top block released
    with open(gan_run / "history.csv") as handle:
        epochs = list(csv.DictReader(handle))
    assert [row["depth"] for row in epochs] == ["0", "1"] and all(row["val_dice"] for row in epochs)
    # each epoch's own seconds, and their running total (both epochs once got the phase's end time)
    seconds = [float(row["seconds"]) for row in epochs]
    assert [float(row["elapsed_seconds"]) for row in epochs] == pytest.approx([seconds[0], seconds[0] + seconds[1]])
    with open(gan_run / "steps.csv") as handle:
        steps = list(csv.DictReader(handle))
    assert len(steps) == 2 * 5  # 6 fit patients x 3 frames = 18 windows, 5 batches of 4 per epoch
    for key in ("l1", "adversarial", "discriminator_loss", "d_real_scale1", "d_fake_scale4"):
        assert key in steps[0], key
    selection = json.loads((gan_run / "validation.json").read_text())
    assert selection["validation_images"] == 6
    # the choices are the validation curve's: the best epoch (first of ties), its depth, its Dice at 0.5,
    # the best Dice of every depth, and the binarisation with the best validation Dice
    best = max(epochs, key=lambda row: (float(row["val_dice"]), -int(row["epoch"])))
    assert selection["epoch"] == int(best["epoch"]) and selection["depth"] == int(best["depth"])
    assert selection["val_dice_at_0.5"] == pytest.approx(float(best["val_dice"]), abs=1e-6)
    for depth, dice in selection["best_val_dice_by_depth"].items():
        assert dice == pytest.approx(max(float(row["val_dice"]) for row in epochs if row["depth"] == depth), abs=1e-9)
    assert selection["val_dice_chosen"] == pytest.approx(max(selection["val_dice_by_binarisation"].values()))
    config = json.loads((gan_run / "config.json").read_text())
    assert config["roi"]["size"] == 32 and config["method"] == "gan" and len(config["validation_patient_ids"]) == 2
    assert "Sensitivity" in (gan_run / "table3.md").read_text()
    assert config["tensorboard"] is True and list((gan_run / "tensorboard").rglob("events.out.tfevents.*"))


def test_evaluate_reproduces_the_reported_test_scores(gan_run, data):
    metrics = json.loads((gan_run / "metrics.json").read_text())
    again = evaluate.main([str(gan_run), "--data-dir", str(data)])
    for name in ("dice", "jaccard", "sensitivity", "precision"):
        assert again["test"][name]["mean"] == pytest.approx(metrics["test"][name]["mean"], abs=1e-6)
    assert list((gan_run).glob("evaluation-*/metrics.json"))


def test_predict_writes_a_mask_and_an_overlay_per_image(gan_run, data, tmp_path):
    from PIL import Image

    images = sorted((data / "test" / "images").iterdir())[:2]
    out = predict.main([str(image) for image in images] + ["--run", str(gan_run), "--output-dir", str(tmp_path / "p")])
    per_image = {row["name"]: row for row in csv.DictReader(open(gan_run / "per_image.csv"))}
    for image in images:
        stem = image.name[: -len(".png")]
        mask = np.asarray(Image.open(out / f"{stem}_mask.png"))
        assert mask.shape == (64, 64) and set(np.unique(mask)) <= {0, 255}
        assert np.asarray(Image.open(out / f"{stem}_overlay.png")).shape == (64, 64, 3)
        expert = np.asarray(Image.open(data / "test" / "masks" / image.name))[..., 0] > 0
        predicted = mask > 0
        total = predicted.sum() + expert.sum()
        dice = 2 * (predicted & expert).sum() / total if total else 1.0
        assert dice == pytest.approx(float(per_image[image.name]["dice"]), abs=1e-5)
    with pytest.raises(SystemExit) as exit_info:  # never overwrites what it wrote
        predict.main([str(images[0]), "--run", str(gan_run), "--output-dir", str(out)])
    assert exit_info.value.code == 2
    # an unreadable file is named and skipped, as in the other predict commands (it stopped every image before)
    (tmp_path / "notes.png").write_text("not an image")
    skipped = predict.main([str(images[0]), str(tmp_path / "notes.png"), "--run-dir", str(gan_run),
                            "--output-dir", str(tmp_path / "skip")])
    assert sorted(path.name for path in skipped.iterdir()) == sorted(
        [f"{images[0].name[: -len('.png')]}_mask.png", f"{images[0].name[: -len('.png')]}_overlay.png"])
    # the run folder first, or as --run-dir, as in the other predict commands: the same masks
    for argv, folder in (([str(gan_run), str(images[0])], "leading"), ([str(images[0]), "--run-dir", str(gan_run)], "flag")):
        again = predict.main(argv + ["--output-dir", str(tmp_path / folder)])
        stem = images[0].name[: -len(".png")]
        assert np.array_equal(np.asarray(Image.open(again / f"{stem}_mask.png")),
                              np.asarray(Image.open(out / f"{stem}_mask.png")))


def test_bad_input_is_one_line_and_exit_status_2(data, tmp_path, capsys):
    broken = tmp_path / "broken"
    make_dataset_folder(broken, train_per_group=1, test_patients=1, frames=2, size=64)
    next((broken / "train" / "masks").iterdir()).unlink()
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--method", "unet", "--data-dir", str(broken), "--output-dir", str(tmp_path / "r"), *TINY])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("error:") and "have no mask" in error and "\n" not in error
    assert not (tmp_path / "r").exists()


def test_table3_puts_the_run_beside_the_textbook(gan_run, data, tmp_path):
    metrics = json.loads((gan_run / "metrics.json").read_text())
    text = table3.main([str(gan_run), "--output", str(tmp_path / "t.md")])
    assert "| transfer-learning GAN (textbook) | its own 33 subjects | 0.9399 | 0.8968 | 0.9363* | - |" in text
    row = [line for line in text.splitlines() if "this project" in line]
    assert len(row) == 1 and "vgg16 (random)" in row[0] and "2 epochs" in row[0]
    assert f"{metrics['test']['dice']['mean']:.4f} +- {metrics['test']['dice']['std']:.4f}" in row[0]
    assert (tmp_path / "t.md").read_text() == text
    # an evaluation-<time>/ folder written by segmentation.evaluate is labelled with its run's configuration
    evaluation = gan_run / "evaluation-for-table3"
    evaluate.main([str(gan_run), "--data-dir", str(data), "--output-dir", str(evaluation)])
    row = table3.main([str(evaluation)]).splitlines()[5]
    assert "vgg16 (random) (this project), 32 px input, 2 epochs" in row, row



def test_table3_refuses_what_is_not_a_scored_run_in_one_line(tmp_path, capsys):
    """Another command's run folder (KeyError), a broken metrics.json (JSONDecodeError) and an --output in a
    missing folder (FileNotFoundError) were tracebacks."""
    other, broken = tmp_path / "cats_dogs_run", tmp_path / "broken"
    for folder, text in ((other, '{"val_accuracy": 0.9}'), (broken, '{"test": ')):
        folder.mkdir()
        (folder / "metrics.json").write_text(text)
    for argv, message in (([str(other)], "holds no test scores"), ([str(broken)], "is not valid JSON"),
                          ([str(other), "--output", str(tmp_path / "a-file" / "t.md")], "cannot write")):
        if "--output" in argv:
            (tmp_path / "a-file").write_text("x")
        with pytest.raises(SystemExit) as exit_info:
            table3.main(argv)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and message in err and err.startswith("error:") and "\n" not in err


def test_input_size_is_the_window_whatever_the_backbone():
    # common.cli alone would give MobileNetV2 its ImageNet 224: the 128-pixel window upsampled, 4x the step time
    assert train.parse_args(["--backbone", "mobilenet_v2", "--weights", "none"]).image_size == 128
    assert train.parse_args(["--method", "unet", "--roi-size", "96"]).image_size == 96
    assert train.parse_args(["--backbone", "mobilenet_v2", "--image-size", "224"]).image_size == 224


def test_distribute_mirrored_trains_as_one_device(data, tmp_path, monkeypatch):
    """--distribute mirrored (one CPU replica here) builds the networks in its scope and takes the same steps."""
    import tensorflow as tf

    losses, strategies = {}, []
    original = train.build_networks

    def recording_build(*args, **kwargs):
        strategies.append(isinstance(tf.distribute.get_strategy(), tf.distribute.MirroredStrategy))
        return original(*args, **kwargs)

    monkeypatch.setattr(train, "build_networks", recording_build)
    for mode in ("none", "mirrored"):
        run = train.main(["--method", "gan", "--data-dir", str(data), "--epochs", "1", "--skip-test",
                          "--distribute", mode, "--output-dir", str(tmp_path / mode), *TINY])
        config = json.loads((run / "config.json").read_text())
        assert config["distribute"] == mode and config["replicas"] == 1
        with open(run / "steps.csv") as handle:
            steps = list(csv.DictReader(handle))
        losses[mode] = [(float(row["l1"]), float(row["discriminator_loss"])) for row in steps]
    assert strategies == [False, True]
    assert len(losses["mirrored"]) == len(losses["none"]) == 5
    np.testing.assert_allclose(losses["mirrored"], losses["none"], rtol=1e-4, atol=1e-6)
