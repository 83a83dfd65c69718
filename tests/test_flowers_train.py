"""flowers.train, flowers.predict and flowers.baselines end to end on a tiny synthetic split.

MobileNetV2 with random weights at 32x32 stands in for the pretrained
backbones: the tests check the plumbing (cache, stages, files, reloading), not
accuracy.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from flowers import baselines, predict, prepare, train
from flowers_synthetic import make_flower_folder

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
         "--cache-dir", str(prepared / "cache"), "--epochs", "2", "--finetune-epochs", "1", *TINY]
    )
    return run


def test_train_writes_the_whole_run_folder(first_run):
    for name in ("config.json", "metrics.json", "history.csv", "iterations.csv", "curves.png", "confusion.png",
                 "accuracy.png", "loss.png", "table2.md", "model.keras", "labels.txt"):
        assert (first_run / name).is_file(), name
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
    assert rows[0] == "iteration,stage,loss,accuracy"
    assert len(rows) - 1 == 2 * 6 + 2  # two stage-2 epochs of 6 batches, one stage-3 epoch of 2 (batch 32)
    assert (first_run / "labels.txt").read_text().split() == ["daisy", "roses", "tulips"]
    table = (first_run / "table2.md").read_text()
    assert "stage 2" in table and "stage 3" in table


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
         "--schedule", "constant", *TINY]
    )
    assert json.loads((second / "config.json").read_text())["schedule"] == "constant"
    metrics = json.loads((second / "metrics.json").read_text())
    assert metrics["stage2"]["bottlenecks_computed"] == 0
    assert metrics["stage2"]["bottlenecks_reused"] == 54
    out = capsys.readouterr().out
    assert "0 computed, 54 read" in out
    # At 32x32 the block_14 cut map is 1x1x160: 160 float32 values for each of 54 images.
    assert "1x1x160 = 160 values per image, 0.00 GB for 54 images" in out


def test_finetune_augment_trains_the_whole_network_on_random_crops(prepared, capsys):
    capsys.readouterr()
    run = train.main(
        ["--data-dir", str(prepared / "prepared"), "--output-dir", str(prepared / "run-augment"),
         "--cache-dir", str(prepared / "cache"), "--epochs", "1", "--finetune-epochs", "2",
         "--finetune-augment", "--finetune-from", "Conv1", "--finetune-batch-size", "4", *TINY]
    )
    out = capsys.readouterr().out
    assert "stage 3 caches" not in out  # no cut maps: the crops go through the whole network
    assert "new random crops of the 15 training originals every epoch" in out
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stage3"]["augment"] is True and metrics["stage3"]["frozen_layers"] == 1  # the input layer
    # 15 originals (not their 30 offline views) in batches of 4: 4 iterations per stage-3 epoch.
    rows = [row for row in (run / "iterations.csv").read_text().splitlines()[1:] if ",stage3," in row]
    assert len(rows) == 2 * 4
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) - 1 == 1 + 2


def test_random_crop_flip_turn_keeps_size_and_content():
    import tensorflow as tf

    from common.augment import random_crop_flip_turn

    tf.random.set_seed(0)
    image = tf.reshape(tf.range(64 * 48 * 3, dtype=tf.float32), (64, 48, 3))
    crops = [random_crop_flip_turn(image, 20, min_area=0.5).numpy() for _ in range(8)]
    assert all(crop.shape == (20, 20, 3) for crop in crops)
    assert all(crop.min() >= 0 and crop.max() <= float(tf.reduce_max(image)) for crop in crops)
    assert len({crop.tobytes() for crop in crops}) == 8  # drawn anew each call
    whole = random_crop_flip_turn(image, 64, min_area=1.0).numpy()  # all of the area: only mirror and turns
    assert whole.shape == (64, 64, 3)


def test_output_folder_with_results_is_not_overwritten(first_run, prepared, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--data-dir", str(prepared / "prepared"), "--output-dir", str(first_run), *TINY])
    assert exit_info.value.code == 2
    assert "already holds" in capsys.readouterr().err


def test_finetune_from_inside_a_block_is_refused(prepared, capsys):
    with pytest.raises(SystemExit):
        train.main(["--data-dir", str(prepared / "prepared"), "--output-dir", str(prepared / "bad"),
                    "--cache-dir", str(prepared / "cache"), "--finetune-epochs", "1",
                    "--finetune-from", "block_14_project", *TINY])
    assert "block boundary" in capsys.readouterr().err


def test_unprepared_folder_points_to_flowers_prepare(tmp_path, capsys):
    raw = make_flower_folder(tmp_path / "raw", {"a": 3, "b": 3})
    with pytest.raises(SystemExit):
        train.main(["--data-dir", str(raw), "--output-dir", str(tmp_path / "run"), *TINY])
    assert "flowers.prepare" in capsys.readouterr().err


def test_predict_prints_top_k_labels(first_run, prepared, capsys):
    image = next((prepared / "prepared" / "validation" / "roses").glob("*.jpg"))
    results = predict.main(["--model", str(first_run), "--top-k", "2", str(image)])
    labels = results[str(image)]
    assert len(labels) == 2 and labels[0][1] >= labels[1][1]
    assert {name for name, _ in labels} <= {"daisy", "roses", "tulips"}
    output = capsys.readouterr().out
    assert "(score = " in output


def test_predict_bad_inputs(first_run, tmp_path, capsys):
    with pytest.raises(SystemExit):
        predict.main(["--model", str(first_run), str(tmp_path / "missing.jpg")])
    assert "no such image" in capsys.readouterr().err
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    with pytest.raises(SystemExit):
        predict.main(["--model", str(first_run), str(broken)])
    assert "broken.jpg" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict.main(["--model", str(tmp_path), str(broken)])
    assert "model.keras" in capsys.readouterr().err


def test_predict_without_a_default_run_names_the_folders_it_searched(prepared, tmp_path, monkeypatch, capsys):
    image = next((prepared / "prepared" / "validation" / "roses").glob("*.jpg"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "flowers" / "my-own-name").mkdir(parents=True)  # as --output-dir would leave it
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(image)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "runs/flowers/train-*/" in error and "--model FOLDER" in error


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
    assert metrics["cnn"]["n_train"] == 45 and 0 <= metrics["cnn"]["val_accuracy"] <= 1
    for key in ("val_accuracy", "val_loss", "per_class_accuracy", "n_train", "n_val", "class_names", "backbone", "seconds"):
        assert key in metrics, key
    for name in ("config.json", "history.csv", "curves.png", "confusion.png", "confusion_svm.png", "model.keras", "table2.md"):
        assert (run / name).is_file(), name
    table = (run / "table2.md").read_text()
    for row in ("SVM, HSV histogram + HOG", "small CNN from scratch", "deep transfer, mobilenet_v2, stage 2", "stage 3"):
        assert row in table, row
