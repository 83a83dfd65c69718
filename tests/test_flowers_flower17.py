"""flowers.flower17 end to end on a synthetic flower17 layout, and its bad inputs."""
from __future__ import annotations

import json

import pytest
from conftest import assert_one_model_file
from flowers_synthetic import make_flower17, snapshot

from common.data import UnreadableImageWarning
from flowers import flower17

TINY = ["--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32"]


def test_two_classes_end_to_end(tmp_path, capsys, monkeypatch):
    raw = make_flower17(tmp_path / "flower17", classes=3)
    (raw / "jpg" / "image_0005.jpg").write_bytes(b"")  # an unreadable photo of class 0
    before = snapshot(raw)
    with pytest.warns(UnreadableImageWarning, match="image_0005.jpg"):
        run = flower17.main(
            ["--data-dir", str(raw), "--split-dir", str(tmp_path / "split"), "--output-dir", str(tmp_path / "run"),
             "--epochs", "2", "--patience", "0", *TINY]
        )
    assert snapshot(raw) == before  # the raw data set is only read

    split = tmp_path / "split"
    train_00, train_01 = (sorted((split / "train" / k).glob("*.jpg")) for k in ("00", "01"))
    validation_00, validation_01 = (sorted((split / "validation" / k).glob("*.jpg")) for k in ("00", "01"))
    assert (len(train_00), len(validation_00)) == (69, 10)  # 79 readable photos, 7:1
    assert (len(train_01), len(validation_01)) == (70, 10)
    assert not (split / "train" / "02").exists()  # only the chosen classes
    assert "image_0005.jpg" not in {p.name for p in train_00 + validation_00}
    assert all(80 < int(p.stem[-4:]) <= 160 for p in train_01 + validation_01)
    assert not {p.name for p in train_00} & {p.name for p in validation_00}

    for name in ("config.json", "metrics.json", "history.csv", "curves.png", "confusion.png", "model.keras",
                 "labels.txt"):
        assert (run / name).is_file(), name
    assert_one_model_file(run)   # the best checkpoint is the model: no copy, no SGD momentum in it
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n_train"] == 139 and metrics["n_val"] == 20
    assert metrics["frozen_layers"] == 5 and metrics["frozen_layer_names"][1:] == [
        "Conv1", "bn_Conv1", "Conv1_relu", "expanded_conv_depthwise"]  # the input layer's name has a counter
    # The reported model is the best-on-validation checkpoint (no early stopping here to restore it):
    # its accuracy is the best epoch's.
    history = (run / "history.csv").read_text().splitlines()
    column = history[0].split(",").index("val_accuracy")
    val_accuracy = [float(line.split(",")[column]) for line in history[1:]]
    assert len(val_accuracy) == metrics["epochs_run"] == 2
    assert metrics["val_accuracy"] == pytest.approx(max(val_accuracy), abs=1e-6)
    assert metrics["best_epoch"] == val_accuracy.index(max(val_accuracy)) + 1
    vector = metrics["single_image"]["probabilities"]
    assert len(vector) == 2 and sum(vector) == pytest.approx(1.0, abs=1e-4)
    assert metrics["single_image"]["argmax"] == ["00", "01"][vector.index(max(vector))]
    config = json.loads((run / "config.json").read_text())
    assert config["augmentation"]["rotation_range"] == 30
    output = capsys.readouterr().out
    assert "probabilities [" in output and "argmax: class" in output

    # Rerunning on the same split reuses it; --predict takes any image; --optimizer adam is Adam at the given rate.
    made = []
    adam = flower17.keras.optimizers.Adam
    monkeypatch.setattr(flower17.keras.optimizers, "Adam", lambda **kw: made.append(kw) or adam(**kw))
    run2 = flower17.main(
        ["--data-dir", str(raw), "--split-dir", str(split), "--output-dir", str(tmp_path / "run2"),
         "--epochs", "1", "--unfreeze-from", "none", "--predict", str(raw / "jpg" / "image_0100.jpg"),
         "--weight-decay", "0.001", "--optimizer", "adam", "--learning-rate", "3e-4", *TINY]
    )
    assert made == [{"learning_rate": 3e-4}]
    metrics2 = json.loads((run2 / "metrics.json").read_text())
    assert metrics2["single_image"]["image"].endswith("image_0100.jpg")
    assert metrics2["frozen_layers"] == metrics2["base_layers"]
    assert metrics2["regularization"].startswith("weight decay 0.001 on ")


@pytest.mark.parametrize("classes, message", [(["17"], "outside 0..16"), (["-1", "3"], "outside 0..16"),
                                             (["3"], "at least two"), (["2", "x"], "class numbers")])
def test_classes_outside_range_are_refused(tmp_path, capsys, classes, message):
    with pytest.raises(SystemExit) as exit_info:
        flower17.main(["--data-dir", str(tmp_path), "--classes", *classes])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_class_with_too_few_images_is_a_clear_error(tmp_path, capsys):
    raw = make_flower17(tmp_path / "flower17", classes=2)
    for number in range(84, 161):  # leave class 1 with 3 photos
        (raw / "jpg" / f"image_{number:04d}.jpg").unlink()
    with pytest.raises(SystemExit) as exit_info:
        flower17.main(["--data-dir", str(raw), "--split-dir", str(tmp_path / "split"), *TINY])
    assert exit_info.value.code == 2
    assert "class 1 has 3" in capsys.readouterr().err
    assert not (tmp_path / "split").exists()


def test_split_inside_the_data_folder_is_refused(tmp_path, capsys):
    raw = make_flower17(tmp_path / "flower17", classes=2, per_class=8)
    before = snapshot(raw)
    with pytest.raises(SystemExit):
        flower17.main(["--data-dir", str(raw), "--split-dir", str(raw / "split"), *TINY])
    assert "only read" in capsys.readouterr().err
    assert snapshot(raw) == before


def test_missing_data_folder_names_the_layout(tmp_path, capsys):
    with pytest.raises(SystemExit):
        flower17.main(["--data-dir", str(tmp_path / "nothing"), *TINY])
    assert "jpg/" in capsys.readouterr().err


@pytest.mark.parametrize("spelling", ["data/flower17", "./data/flower17/", "ABSOLUTE"])
def test_the_default_folder_missing_means_download_however_it_is_spelled(tmp_path, monkeypatch, capsys, spelling):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(keras.utils, "get_file", offline)
    data_dir = str(tmp_path / "data" / "flower17") if spelling == "ABSOLUTE" else spelling
    with pytest.raises(SystemExit) as exit_info:
        flower17.main(["--data-dir", data_dir, *TINY])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "could not download 17flowers.tgz" in error and "--data-dir <the folder holding jpg/>" in error


def test_a_bad_predict_image_is_refused_before_training(tmp_path, capsys):
    """Before, the whole training ran first and then stopped on the image, leaving a run without metrics."""
    with pytest.raises(SystemExit) as exit_info:
        flower17.main(["--data-dir", str(tmp_path / "never-read"), "--output-dir", str(tmp_path / "run"),
                       "--predict", str(tmp_path / "missing.jpg"), *TINY])
    assert exit_info.value.code == 2
    assert "--predict" in capsys.readouterr().err and not (tmp_path / "run").exists()
