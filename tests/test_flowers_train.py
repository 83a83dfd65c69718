"""flowers.train, flowers.predict and flowers.baselines end to end on a tiny synthetic split.

MobileNetV2 with random weights at 32x32 stands in for the pretrained
backbones: the tests check the plumbing (cache, stages, files, reloading), not
accuracy.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_model_file
from flowers_synthetic import make_flower_folder

from flowers import baselines, predict, prepare, train

TINY = ["--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32", "--batch-size", "8"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("flowers")
    source = make_flower_folder(root / "photos", {"daisy": 8, "roses": 8, "tulips": 8})
    prepare.main(["--from", str(source), "--data-dir", str(root / "prepared"), "--validation-per-class", "3"])
    return root


@pytest.fixture(scope="module")
def first_run(prepared):
    run = train.main(
        ["--data-dir", str(prepared / "prepared"), "--output-dir", str(prepared / "run1"),
         "--cache-dir", str(prepared / "cache"), "--epochs", "2", "--finetune-epochs", "1", "--tensorboard", *TINY]
    )
    return run


def test_train_writes_the_whole_run_folder(first_run):
    for name in ("config.json", "metrics.json", "history.csv", "iterations.csv", "curves.png", "confusion.png",
                 "accuracy.png", "loss.png", "table2.md", "model.keras", "labels.txt"):
        assert (first_run / name).is_file(), name
    assert_one_model_file(first_run)
    metrics = json.loads((first_run / "metrics.json").read_text())
    for key in ("val_accuracy", "val_loss", "per_class_accuracy", "n_train", "n_val", "class_names", "backbone", "seconds"):
        assert key in metrics, key
    assert metrics["n_train"] == 15 * 3 and metrics["n_val"] == 9
    assert metrics["final_stage"] == "stage3"
    assert json.loads((first_run / "config.json").read_text())["schedule"] == "cosine"
    assert metrics["stage2"]["bottlenecks_computed"] == 54 and metrics["stage2"]["bottlenecks_reused"] == 0
    assert metrics["stage3"]["first_trainable_layer"] == "block_14_expand"
    # Iterations are logged per batch across both stages: 45 images / 8 = 6 per stage-2 epoch.
    rows = (first_run / "iterations.csv").read_text().splitlines()
    assert rows[0] == "iteration,stage,batch_loss,batch_accuracy"
    assert len(rows) - 1 == 2 * 6 + 2  # two stage-2 epochs of 6 batches, one stage-3 epoch of 2 (batch 32)
    assert {name.parent.name for name in (first_run / "tensorboard").rglob("events.out.tfevents.*")} == {
        "train", "validation"}
    assert (first_run / "labels.txt").read_text().split() == ["daisy", "roses", "tulips"]
    table = (first_run / "table2.md").read_text()
    assert "stage 2" in table and "stage 3" in table


def test_history_and_iterations_say_what_they_hold(first_run):
    """history.csv: one numeric epoch column, the stage beside it; iterations.csv: each batch's own loss.

    An epoch's loss in history.csv is the mean of its iterations' batch losses;
    running means (what Model.fit hands a per-batch callback) would not average
    to it.
    """
    import csv

    with open(first_run / "history.csv", newline="") as handle:
        history = list(csv.DictReader(handle))
    with open(first_run / "iterations.csv", newline="") as handle:
        iterations = list(csv.DictReader(handle))
    assert list(history[0]).count("epoch") == 1
    assert [(row["epoch"], row["stage"], row["iteration"]) for row in history] == [
        ("1", "stage2", "6"), ("2", "stage2", "12"), ("3", "stage3", "14")]
    first = 0
    for row in history:
        last = int(row["iteration"])
        batch = [float(item["batch_loss"]) for item in iterations[first:last]]
        assert {item["stage"] for item in iterations[first:last]} == {row["stage"]}
        assert np.mean(batch) == pytest.approx(float(row["loss"]), rel=1e-5)
        first = last
    # Stage 3's two batches differ: they are not one running value written twice.
    stage3 = [float(item["batch_loss"]) for item in iterations if item["stage"] == "stage3"]
    assert stage3[0] != pytest.approx(stage3[1], rel=1e-6)


def test_help_names_the_first_trainable_layer_the_same_way(capsys):
    from cats_dogs import finetune
    from flowers import flower17

    same = ("--unfreeze-from LAYER first trainable layer of the base when fine-tuning: a layer name, an index "
            "(5 freezes layers[:5], 0 trains every layer) or 'none' (the whole base frozen) (default:")
    for command in (train.main, finetune.main, flower17.main):
        with pytest.raises(SystemExit):
            command(["--help"])
        assert same in " ".join(capsys.readouterr().out.split())


def test_nothing_to_fine_tune_is_refused(prepared, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(prepared / "prepared"), "--finetune-epochs", "1", "--unfreeze-from", "none", *TINY])
    assert exit_info.value.code == 2
    assert "leaves nothing of the base to fine-tune" in capsys.readouterr().err


def test_saved_model_reproduces_the_reported_validation_result(first_run, prepared):
    from common.data import load_image_folder, make_dataset
    from common.predict import load_run_model

    model, class_names, size = load_run_model(first_run)
    validation = load_image_folder(prepared / "prepared" / "validation")
    probabilities = model.predict(make_dataset(validation.paths, validation.labels, (size, size)), verbose=0)
    metrics = json.loads((first_run / "metrics.json").read_text())
    accuracy = float((probabilities.argmax(1) == validation.labels).mean())
    assert accuracy == pytest.approx(metrics["val_accuracy"])
    assert np.asarray(metrics["confusion_matrix"]).sum() == len(validation)


def test_second_run_computes_no_bottleneck(first_run, prepared, capsys):
    capsys.readouterr()
    second = train.main(
        ["--data-dir", str(prepared / "prepared"), "--output-dir", str(prepared / "run2"),
         "--cache-dir", str(prepared / "cache"), "--epochs", "1", "--finetune-epochs", "1",
         "--schedule", "constant", "--l2-sp", *TINY]
    )
    assert json.loads((second / "config.json").read_text())["schedule"] == "constant"
    metrics = json.loads((second / "metrics.json").read_text())
    assert metrics["stage2"]["bottlenecks_computed"] == 0
    assert metrics["stage2"]["bottlenecks_reused"] == 54
    # stage 3 under L2-SP: MobileNetV2's 156 float weights (BatchNorm's moving statistics excepted) anchored
    assert metrics["stage3"]["regularization"].startswith("L2-SP: 156 transferred weights")
    out = capsys.readouterr().out
    assert "0 computed, 54 read" in out
    # At 32x32 the block_14 cut map is 1x1x160: 160 float32 values for each of 54 images.
    assert "1x1x160 = 160 values per image, 0.00 GB for 54 images" in out


def test_finetune_augment_trains_the_whole_network_on_random_crops(prepared, capsys):
    capsys.readouterr()
    run = train.main(
        ["--data-dir", str(prepared / "prepared"), "--output-dir", str(prepared / "run-augment"),
         "--cache-dir", str(prepared / "cache"), "--epochs", "1", "--finetune-epochs", "2",
         "--finetune-augment", "--unfreeze-from", "1", "--finetune-batch-size", "4", *TINY]
    )
    out = capsys.readouterr().out
    assert "stage 3 caches" not in out  # no cut maps: the crops go through the whole network
    assert "new random crops of the 15 training originals every epoch" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stage3"]["augment"] is True and metrics["stage3"]["frozen_layers"] == 1  # the input layer
    assert metrics["stage3"]["first_trainable_layer"] == "Conv1"  # an index is named in the results
    # 15 originals (not their 30 offline views) in batches of 4: 4 iterations per stage-3 epoch.
    rows = [row for row in (run / "iterations.csv").read_text().splitlines()[1:] if ",stage3," in row]
    assert len(rows) == 2 * 4
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) - 1 == 1 + 2


def test_output_folder_with_results_is_not_overwritten(first_run, prepared, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(prepared / "prepared"), "--output-dir", str(first_run), *TINY])
    assert exit_info.value.code == 2
    assert "already holds" in capsys.readouterr().err


def test_unfreeze_from_inside_a_block_is_refused(prepared, capsys):
    with pytest.raises(SystemExit):
        train.main(["--data-dir", str(prepared / "prepared"), "--output-dir", str(prepared / "bad"),
                    "--cache-dir", str(prepared / "cache"), "--finetune-epochs", "1",
                    "--unfreeze-from", "block_14_project", *TINY])
    assert "block boundary" in capsys.readouterr().err


def test_unprepared_folder_points_to_flowers_prepare(tmp_path, capsys):
    raw = make_flower_folder(tmp_path / "raw", {"a": 3, "b": 3})
    with pytest.raises(SystemExit):
        train.main(["--data-dir", str(raw), "--output-dir", str(tmp_path / "run"), *TINY])
    assert "flowers.prepare" in capsys.readouterr().err


def test_predict_prints_top_k_labels(first_run, prepared, capsys):
    from common.predict import load_run_model, read_image

    image = next((prepared / "prepared" / "validation" / "roses").glob("*.jpg"))
    results = predict.main(["--run-dir", str(first_run), "--top-k", "2", str(image)])
    model, class_names, size = load_run_model(first_run)
    expected = model.predict(read_image(image, size)[None], verbose=0)[0]
    (result,) = results
    best_two = np.argsort(-expected)[:2]
    assert [label for label, _ in result["top_k"]] == [class_names[i] for i in best_two]
    np.testing.assert_allclose([p for _, p in result["top_k"]], expected[best_two], atol=1e-5)
    output = capsys.readouterr().out
    assert f"{image}     1  {class_names[best_two[0]]}" in output


def test_predict_bad_inputs(first_run, prepared, tmp_path, capsys):
    missing = tmp_path / "missing.jpg"
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--run-dir", str(first_run), str(missing), str(broken)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "missing.jpg" in error and "broken.jpg: not an image" in error
    # One bad file among good ones is named and skipped; the others are still labelled.
    good = next((prepared / "prepared" / "validation" / "roses").glob("*.jpg"))
    results = predict.main(["--run-dir", str(first_run), str(broken), str(good)])
    assert [result["image"] for result in results] == [str(good)]
    assert "skipped: cannot use" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict.main(["--run-dir", str(tmp_path), str(good)])
    assert "model.keras" in capsys.readouterr().err


def test_predict_without_a_default_run_names_the_folders_it_searched(prepared, tmp_path, monkeypatch, capsys):
    image = next((prepared / "prepared" / "validation" / "roses").glob("*.jpg"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "flowers" / "my-own-name").mkdir(parents=True)  # as --output-dir would leave it
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(image)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "runs/flowers/train-*/" in error and "--run-dir FOLDER" in error


def test_opencv_reader_returns_rgb_like_training(tmp_path):
    from PIL import Image

    from common.predict import read_image, read_image_opencv

    red = np.zeros((20, 24, 3), np.uint8)
    red[..., 0] = 220
    path = tmp_path / "red.png"
    Image.fromarray(red).save(path)
    opencv, training = read_image_opencv(path, 16), read_image(path, 16)
    assert opencv.shape == training.shape == (16, 16, 3)
    assert opencv[..., 0].mean() > 200 and opencv[..., 2].mean() < 5  # red stays in channel 0
    np.testing.assert_allclose(opencv, training, atol=1.0)


def test_baselines_write_all_rows_of_table2(first_run, prepared):
    run = baselines.main(
        ["--data-dir", str(prepared / "prepared"), "--output-dir", str(prepared / "baselines"),
         "--deep-run", str(first_run), "--cnn-size", "32", "--cnn-epochs", "1", "--batch-size", "16"]
    )
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["svm"]["n_train"] == 45 and metrics["svm"]["n_val"] == 9
    assert metrics["cnn"]["n_train"] == 45 and metrics["cnn"]["n_val"] == 9
    # Each class has its own colour: on 45 training images the SVM is well above chance (1/3) ...
    assert metrics["svm"]["val_accuracy"] >= 2 / 3
    # ... and its accuracy is the diagonal of its confusion matrix.
    confusion = np.asarray(metrics["svm"]["confusion_matrix"])
    assert confusion.sum() == 9 and metrics["svm"]["val_accuracy"] == pytest.approx(np.trace(confusion) / 9)
    assert metrics["svm"]["n_features"] == 512 + 1764  # 8x8x8 HSV bins + HOG of 7x7 blocks of 2x2 cells x 9 bins
    for key in ("val_accuracy", "val_loss", "per_class_accuracy", "n_train", "n_val", "class_names", "backbone", "seconds"):
        assert key in metrics, key
    for name in ("config.json", "history.csv", "curves.png", "confusion.png", "confusion_svm.png", "model.keras", "table2.md"):
        assert (run / name).is_file(), name
    table = (run / "table2.md").read_text()
    for row in ("SVM, HSV histogram + HOG", "small CNN from scratch", "deep transfer, mobilenet_v2, stage 2", "stage 3"):
        assert row in table, row


def test_baselines_refuse_a_deep_run_on_another_split(first_run, prepared, tmp_path, capsys):
    """Table 2 compares methods on the same validation images: a deep run from another data folder is refused
    when named, and left out (with a note) when it is only the newest default run. Before, its row was added."""
    other = make_flower_folder(tmp_path / "photos", {"daisy": 8, "roses": 8, "tulips": 8})
    prepare.main(["--from", str(other), "--data-dir", str(tmp_path / "other"), "--validation-per-class", "2"])
    argv = ["--data-dir", str(tmp_path / "other"), "--skip-cnn"]
    with pytest.raises(SystemExit) as exit_info:
        baselines.main(argv + ["--deep-run", str(first_run), "--output-dir", str(tmp_path / "named")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "is not a run on this data folder" in error and "on 9 validation images, not 6" in error
    assert not (tmp_path / "named").exists()


def test_epochs_0_scores_the_untrained_head(prepared, tmp_path):
    """flowers.train alone accepts --epochs 0 (every other command needs 1): it reports the untrained head."""
    run = train.main(["--data-dir", str(prepared / "prepared"), "--output-dir", str(tmp_path / "run"),
                      "--cache-dir", str(prepared / "cache"), "--epochs", "0", *TINY])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stage2"]["epochs"] == 0 and metrics["final_stage"] == "stage2"
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["n_val"] == 9
    confusion = np.asarray(metrics["confusion_matrix"])
    assert metrics["val_accuracy"] == pytest.approx(np.trace(confusion) / confusion.sum())
    rows = (run / "history.csv").read_text().strip().splitlines()
    assert len(rows) <= 1                                                # no epoch trained, so no epoch row
