"""--limit N on every lesson command that reads images: a quick try on at most N images per class of each folder.

Each command is run on a tiny data set with --limit 3 (segmentation: frames per patient) and must train and
score on exactly that many, and record the limit in config.json.
"""
from __future__ import annotations

import json

import numpy as np
from conftest import draw_folder
from flowers_synthetic import make_flower17, make_flower_folder
from segmentation_synthetic import make_dataset_folder

from common.data import load_image_folder, split_per_class

RANDOM = ["--weights", "none", "--image-size", "32"]


def config(run_dir) -> dict:
    return json.loads((run_dir / "config.json").read_text())


def test_the_first_n_readable_images_of_each_class(tmp_path):
    root = draw_folder(tmp_path / "data", count=6)
    (root / "cats" / "cats0.jpg").write_bytes(b"")   # unreadable: the next one takes its place
    folder = load_image_folder(root, limit=3)
    assert [path.rsplit("/", 1)[1] for path in folder.paths] == ["cats1.jpg", "cats2.jpg", "cats3.jpg",
                                                                  "dogs0.jpg", "dogs1.jpg", "dogs2.jpg"]
    # a fraction of a small class still holds one image out (it was refused: 10 % of 3 rounds to 0)
    train, validation = split_per_class(np.array([0, 0, 0, 1, 1, 1]), 0.1)
    assert len(train) == 4 and len(validation) == 2


def test_cats_dogs(cats_dogs_dir, tmp_path):
    from cats_dogs import bottleneck, finetune

    common = ["--data-dir", str(cats_dogs_dir), "--cache-dir", str(tmp_path / "cache"), "--limit", "3", *RANDOM,
              "--batch-size", "4", "--epochs", "1"]
    metrics = bottleneck.main([*common, "--output-dir", str(tmp_path / "bottleneck")])
    assert (metrics["n_train"], metrics["n_val"], metrics["features_computed"]) == (6, 6, 12)   # of 16 and 8
    assert config(tmp_path / "bottleneck")["limit"] == 3
    tuned = finetune.main([*common, "--output-dir", str(tmp_path / "finetune"), "--top-model", str(tmp_path / "bottleneck")])
    assert (tuned["n_train"], tuned["n_val"]) == (6, 6)


def test_flowers_train_takes_n_originals_and_their_views(tmp_path):
    from flowers import prepare, train

    source = make_flower_folder(tmp_path / "photos", {"daisy": 8, "roses": 8})
    prepare.main(["--from", str(source), "--data-dir", str(tmp_path / "prepared"), "--validation-per-class", "4"])
    run = train.main(["--data-dir", str(tmp_path / "prepared"), "--output-dir", str(tmp_path / "run"),
                      "--cache-dir", str(tmp_path / "cache"), "--limit", "3", "--epochs", "1",
                      "--backbone", "mobilenet_v2", *RANDOM, "--batch-size", "8"])
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["n_train"], metrics["n_val"]) == (2 * 3 * 3, 2 * 3)   # 3 originals + 2 views each, per class
    assert config(run)["limit"] == 3


def test_flower17(tmp_path):
    from flowers import flower17

    raw = make_flower17(tmp_path / "flower17", classes=2, per_class=16)
    run = flower17.main(["--data-dir", str(raw), "--split-dir", str(tmp_path / "split"), "--output-dir",
                         str(tmp_path / "run"), "--limit", "3", "--epochs", "1", "--backbone", "mobilenet_v2",
                         *RANDOM])
    metrics = json.loads((run / "metrics.json").read_text())
    assert (metrics["n_train"], metrics["n_val"]) == (6, 4)   # 3 of 14 training, all 2 validation photos per class
    assert config(run)["limit"] == 3


def test_adaptation_train_and_benchmark(tmp_path, capsys):
    from adaptation import train

    source = draw_folder(tmp_path / "photos", classes=("disc", "square"), count=10, seed=1)
    target = draw_folder(tmp_path / "sketches", classes=("disc", "square"), count=6, seed=2)
    out = tmp_path / "run"
    metrics = train.main(["--source-dir", str(source), "--target-dir", str(target), "--method", "source-only",
                          "--epochs", "1", "--views", "original", "--cache-dir", str(tmp_path / "cache"),
                          "--output-dir", str(out), "--embedding", "pca", "--limit", "3", "--backbone", "vgg16",
                          *RANDOM, "--batch-size", "4", "--bottleneck", "8"])
    assert "photos->sketches: 6 source images, 6 target images" in capsys.readouterr().out
    assert sum(metrics["target_confusion_matrix"][0]) + sum(metrics["target_confusion_matrix"][1]) == 6
    assert config(out)["limit"] == 3 and config(out)["source_images"] == 6


def test_adaptation_benchmark_reads_n_per_class(tmp_path, monkeypatch):
    from adaptation import benchmark

    seen = {}

    def load_pair(source, target, data_dir, limit=None):
        seen["limit"] = limit
        raise SystemExit(0)

    monkeypatch.setattr(benchmark, "load_pair", load_pair)
    try:
        benchmark.main(["--data-dir", str(tmp_path), "--limit", "3", "--seeds", "1"])
    except SystemExit:
        pass
    assert seen == {"limit": 3}


def test_segmentation_takes_n_frames_per_patient(tmp_path):
    from segmentation import train

    data = make_dataset_folder(tmp_path / "lv", train_per_group=2, test_patients=2, frames=3, size=64)
    run = train.main(["--method", "unet", "--data-dir", str(data), "--epochs", "1", "--output-dir", str(tmp_path / "run"),
                      "--limit", "1", "--image-size", "32", "--roi-size", "32", "--batch-size", "4",
                      "--decoder-width", "4", "--validation-patients", "2"])
    recorded = config(run)
    assert recorded["limit"] == 1
    assert recorded["fit_images"] == 6 and recorded["validation_images"] == 2   # 8 patients, one frame each (of 3)
    assert json.loads((run / "metrics.json").read_text())["test"]["images"] == 2
