"""The cats-vs-dogs commands end to end on a miniature data set, VGG16 with weights=None."""
import json

import pytest
from conftest import assert_one_model_file, snapshot

from cats_dogs import bottleneck, finetune, predict, prepare, preview

FAST = ["--weights", "none", "--image-size", "32", "--batch-size", "4"]
RUN_FILES = {"config.json", "metrics.json", "history.csv", "curves.png", "confusion.png", "model.keras"}


def test_bottleneck_then_finetune_then_predict(cats_dogs_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # default run folders go under ./runs
    before = snapshot(cats_dogs_dir)
    common = ["--data-dir", str(cats_dogs_dir), "--cache-dir", str(tmp_path / "cache"), *FAST]

    metrics = bottleneck.main([*common, "--epochs", "2"])
    runs = sorted((tmp_path / "runs" / "cats_dogs").glob("bottleneck-*"))
    assert len(runs) == 1
    run = runs[0]
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    assert_one_model_file(run)   # the top model travels inside model.keras (no bottleneck_fc_model file beside it)
    written = json.loads((run / "metrics.json").read_text())
    for key in ("val_accuracy", "val_loss", "per_class_accuracy", "n_train", "n_val", "class_names",
                "backbone", "seconds"):
        assert key in written
    assert written == metrics
    assert (written["n_train"], written["n_val"], written["backbone"]) == (16, 8, "vgg16")
    assert written["features_computed"] == 24
    history = (run / "history.csv").read_text().strip().splitlines()
    assert history[0].split(",")[0] == "epoch" and history[0].count("epoch") == 1
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2"]  # counted from 1, as Keras prints it
    assert str(run.resolve()) in capsys.readouterr().out
    config = json.loads((run / "config.json").read_text())
    assert config["backbone"] == "vgg16" and config["image_size"] == 32 and config["epochs"] == 2

    # A second bottleneck run computes no feature at all.
    again = bottleneck.main([*common, "--epochs", "1"])
    assert again["features_computed"] == 0 and again["features_reused"] == 24

    tuned = finetune.main([*common, "--epochs", "2"])  # finds the newest bottleneck run itself
    finetune_run = sorted((tmp_path / "runs" / "cats_dogs").glob("finetune-*"))[0]
    files = {p.name for p in finetune_run.iterdir()}
    assert RUN_FILES <= files and not any(name.startswith("best") for name in files)  # no checkpoint it would not use
    assert_one_model_file(finetune_run)   # without SGD's momentum slots
    assert tuned["frozen_layers"] == 15 and tuned["epochs_run"] == 2 and tuned["reported_epoch"] == 2
    newest = max((tmp_path / "runs" / "cats_dogs").glob("bottleneck-*"), key=lambda p: (p / "model.keras").stat().st_mtime)
    assert json.loads((finetune_run / "config.json").read_text())["top_model"] == f"runs/cats_dogs/{newest.name}/model.keras"

    # L2-SP (002, 4.1.3): VGG16's 13 kernels and 13 biases held near where they started, the top model decayed
    anchored = finetune.main([*common, "--epochs", "1", "--l2-sp", "--l2-sp-beta", "0.5"])
    assert anchored["regularization"].startswith("L2-SP: 26 transferred weights") and "beta 0.5" in anchored["regularization"]
    finetune_run = max((tmp_path / "runs" / "cats_dogs").glob("finetune-*"), key=lambda p: p.stat().st_mtime)
    assert json.loads((finetune_run / "config.json").read_text())["l2_sp"] is True

    image = str(cats_dogs_dir / "validation" / "dogs" / "dogs0.jpg")
    (result,) = predict.main([image])  # the newest fine-tune run, not the bottleneck runs
    assert f"model: runs/cats_dogs/{finetune_run.name}/model.keras" in capsys.readouterr().out
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert result["class"] == max(result["probabilities"], key=result["probabilities"].get)
    assert snapshot(cats_dogs_dir) == before  # the user's data folder is never written to


def test_predict_uses_the_same_preprocessing_as_training(cats_dogs_dir, tmp_path):
    """The saved model's validation predictions equal predict.py's, image by image."""
    import keras
    import numpy as np

    from common.data import load_image_folder, make_dataset

    out = tmp_path / "run"
    bottleneck.main(["--data-dir", str(cats_dogs_dir), "--cache-dir", str(tmp_path / "cache"),
                     "--output-dir", str(out), "--epochs", "2", *FAST])
    folder = load_image_folder(cats_dogs_dir / "validation")
    model = keras.models.load_model(out / "model.keras")
    batch_probabilities = model.predict(make_dataset(folder.paths, folder.labels, (32, 32), 3), verbose=0)
    single = predict.main(["--run-dir", str(out), *folder.paths])
    assert np.allclose([r["probabilities"]["dogs"] for r in single], batch_probabilities.ravel(), atol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    predicted = np.array([r["class"] == "dogs" for r in single], dtype=int)
    assert np.mean(predicted == folder.labels) == pytest.approx(metrics["val_accuracy"], abs=1e-9)
    # The reported loss is the log loss of the saved model's probabilities (binary cross-entropy).
    p = np.clip(batch_probabilities.ravel().astype(float), 1e-7, 1 - 1e-7)
    log_loss = -np.mean(folder.labels * np.log(p) + (1 - folder.labels) * np.log(1 - p))
    assert metrics["val_loss"] == pytest.approx(log_loss, rel=1e-4)


def test_finetune_without_a_bottleneck_run_says_what_to_do(cats_dogs_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["--data-dir", str(cats_dogs_dir), *FAST])
    assert exit_info.value.code == 2
    assert "run python -m cats_dogs.bottleneck first" in capsys.readouterr().err


def test_finetune_refuses_a_top_model_of_another_backbone(cats_dogs_dir, tmp_path, capsys):
    out = tmp_path / "run"
    bottleneck.main(["--data-dir", str(cats_dogs_dir), "--cache-dir", str(tmp_path / "cache"),
                     "--output-dir", str(out), "--epochs", "1", *FAST])
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["--data-dir", str(cats_dogs_dir), "--top-model", str(out),
                       "--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32"])
    assert exit_info.value.code == 2 and "was trained on backbone=vgg16" in capsys.readouterr().err


@pytest.mark.parametrize(
    "problem, message",
    [
        ("missing data", "does not exist"),
        ("output is a file", "cannot write to output folder"),
        ("output holds results", "already holds a run's results"),
        ("bad weights path", "weights file"),
    ],
)
def test_bad_input_gets_one_line(cats_dogs_dir, tmp_path, capsys, problem, message):
    argv = ["--data-dir", str(cats_dogs_dir), "--cache-dir", str(tmp_path / "cache"), *FAST, "--epochs", "1"]
    if problem == "missing data":
        argv[1] = str(tmp_path / "nowhere")
    if problem == "output is a file":
        (tmp_path / "file").write_text("x")
        argv += ["--output-dir", str(tmp_path / "file" / "run")]
    if problem == "output holds results":
        (tmp_path / "done").mkdir()
        (tmp_path / "done" / "metrics.json").write_text("{}")
        argv += ["--output-dir", str(tmp_path / "done")]
    if problem == "bad weights path":
        argv += ["--weights", str(tmp_path / "missing.h5"), "--output-dir", str(tmp_path / "w")]
    with pytest.raises(SystemExit) as exit_info:
        bottleneck.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    if problem == "output holds results":
        assert (tmp_path / "done" / "metrics.json").read_text() == "{}"


def test_a_run_that_fails_on_its_input_leaves_no_folder_behind(cats_dogs_dir, tmp_path, capsys, monkeypatch):
    """The run folder and its config.json are written before the weights are read; a failed run takes them back,
    so the corrected command can use the same --output-dir and runs/ does not fill with empty runs."""
    monkeypatch.chdir(tmp_path)
    argv = ["--data-dir", str(cats_dogs_dir), "--cache-dir", str(tmp_path / "cache"), *FAST, "--epochs", "1"]
    bad = ["--weights", str(tmp_path / "missing.h5")]
    for output in (["--output-dir", str(tmp_path / "run")], []):
        with pytest.raises(SystemExit) as exit_info:
            bottleneck.main(argv + bad + output)
        assert exit_info.value.code == 2 and "weights file" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert not list((tmp_path / "runs" / "cats_dogs").glob("bottleneck-*"))
    kept = tmp_path / "mine"                 # a folder of the user's: only what the run wrote goes
    kept.mkdir()
    with pytest.raises(SystemExit):
        bottleneck.main(argv + bad + ["--output-dir", str(kept)])
    assert kept.is_dir() and not list(kept.iterdir())
    bottleneck.main(argv + ["--output-dir", str(tmp_path / "run")])
    assert (tmp_path / "run" / "metrics.json").is_file() and (tmp_path / "run" / "config.json").is_file()


def test_prepare_from_an_unpacked_filtered_copy(cats_dogs_dir, tmp_path, capsys):
    before = snapshot(cats_dogs_dir)
    out = tmp_path / "prepared"
    counts = prepare.main(["--from", str(cats_dogs_dir), "--data-dir", str(out)])
    assert counts == {"train/cats": 8, "train/dogs": 8, "validation/cats": 4, "validation/dogs": 4}
    assert capsys.readouterr().out.strip().splitlines()[-1] == (     # it ends with what to run next
        f"next: python -m cats_dogs.bottleneck --data-dir {out}, then python -m cats_dogs.finetune --data-dir {out}")
    assert snapshot(cats_dogs_dir) == before
    # a second run writes nothing new and overwrites nothing
    (out / "train" / "cats" / "cats0.jpg").write_bytes(b"user edit")
    prepare.prepare(cats_dogs_dir, out)
    assert (out / "train" / "cats" / "cats0.jpg").read_bytes() == b"user edit"


def test_prepare_takes_the_textbooks_split_from_kaggles_flat_folder(tmp_path):
    kaggle = tmp_path / "kaggle" / "train"
    kaggle.mkdir(parents=True)
    for animal in ("cat", "dog"):
        for number in list(range(0, 3)) + [999, 1000, 1399, 1400, 5000]:
            (kaggle / f"{animal}.{number}.jpg").write_bytes(b"jpeg bytes")
    (kaggle / "readme.txt").write_text("ignored")
    counts = prepare.prepare(tmp_path / "kaggle", tmp_path / "out", link=True)
    assert counts == {"train/cats": 4, "train/dogs": 4, "validation/cats": 2, "validation/dogs": 2}
    assert (tmp_path / "out" / "validation" / "dogs" / "dog.1399.jpg").is_symlink()
    assert not (tmp_path / "out" / "train" / "cats" / "cat.1400.jpg").exists()
    assert len(list(kaggle.iterdir())) == 17


def test_prepare_refuses_to_write_inside_the_source(cats_dogs_dir, capsys):
    with pytest.raises(SystemExit):
        prepare.main(["--from", str(cats_dogs_dir), "--data-dir", str(cats_dogs_dir / "copy")])
    assert "never written to" in capsys.readouterr().err


def test_prepare_refuses_a_source_that_fills_no_validation_split(tmp_path, capsys):
    """Before, a Kaggle folder without numbers 1000-1399 gave train/ only and a success message."""
    kaggle = tmp_path / "kaggle"
    kaggle.mkdir()
    for animal in ("cat", "dog"):
        for number in range(3):
            (kaggle / f"{animal}.{number}.jpg").write_bytes(b"jpeg bytes")
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--from", str(kaggle), "--data-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "validation/cats, validation/dogs" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_prepare_into_a_folder_it_cannot_write_is_one_line(cats_dogs_dir, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--from", str(cats_dogs_dir), "--data-dir", str(tmp_path / "a-file" / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot write to --data-dir") and "\n" not in err


def test_an_unwritable_cache_dir_is_one_line(cats_dogs_dir, tmp_path, capsys):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(SystemExit) as exit_info:
        bottleneck.main(["--data-dir", str(cats_dogs_dir), "--cache-dir", str(tmp_path / "a-file" / "cache"),
                         "--output-dir", str(tmp_path / "run"), *FAST, "--epochs", "1"])
    assert exit_info.value.code == 2
    assert "cannot write to --cache-dir" in capsys.readouterr().err and not (tmp_path / "run").exists()


def test_prepare_offline_names_the_file_and_the_way_out(tmp_path, monkeypatch, capsys):
    import socket

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(SystemExit):
        prepare.main(["--data-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "cats_and_dogs_filtered.zip" in err and "--from" in err and str(tmp_path / "keras") in err


def test_preview_writes_twenty_pictures(cats_dogs_dir, tmp_path):
    written = preview.main([str(cats_dogs_dir / "train" / "cats" / "cats0.jpg"), "--out-dir", str(tmp_path / "p")])
    assert len(written) == 20 and (tmp_path / "p" / "cat_preview.png").exists()


def test_preview_of_a_text_file_is_refused(tmp_path, capsys):
    (tmp_path / "cat.jpg").write_text("not an image")
    with pytest.raises(SystemExit):
        preview.main([str(tmp_path / "cat.jpg"), "--out-dir", str(tmp_path / "p")])
    assert "not an image" in capsys.readouterr().err


def test_preview_refuses_a_prefix_that_is_a_path(cats_dogs_dir, tmp_path, capsys):
    """'--prefix ../x' wrote beside --out-dir while the message named --out-dir."""
    with pytest.raises(SystemExit) as exit_info:
        preview.main([str(cats_dogs_dir / "train" / "cats" / "cats0.jpg"), "--out-dir", str(tmp_path / "p"),
                      "--prefix", "../escaped"])
    assert exit_info.value.code == 2 and "not a path" in capsys.readouterr().err
    assert not list(tmp_path.glob("escaped*"))


def test_finetune_takes_one_regulariser_at_a_time(cats_dogs_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        finetune.main(["--data-dir", str(cats_dogs_dir), *FAST, "--l2-sp", "--weight-decay", "0.01"])
    assert exit_info.value.code == 2 and "give one of them" in capsys.readouterr().err
