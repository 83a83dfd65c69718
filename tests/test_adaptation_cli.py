"""python -m adaptation.train end to end on tiny drawn images, its bad-input errors, and the flower domains."""
import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, assert_one_model_file, draw_folder, snapshot

ROOT = Path(__file__).resolve().parents[1]


def command(*args, cwd=ROOT):
    """The real command line, in a new process."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "adaptation.train", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def run(capsys):
    """adaptation.train's main in this process (no TensorFlow start-up per call): code, stdout, stderr."""
    from adaptation.train import main

    def call(*args):
        try:
            main(list(args))
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return call


@pytest.fixture
def domains(tmp_path):
    """Source and target trees with the same two classes (red discs, blue squares), drawn separately."""
    source = draw_folder(tmp_path / "photos", classes=("disc", "square"), count=10, seed=1)
    target = draw_folder(tmp_path / "sketches", classes=("disc", "square"), count=6, seed=2)
    return source, target


TINY = ["--backbone", "vgg16", "--weights", "none", "--image-size", "32", "--batch-size", "4", "--bottleneck", "8"]


def test_train_end_to_end_with_random_weights(domains, tmp_path, run):
    source, target = domains
    before = snapshot(tmp_path / "photos"), snapshot(tmp_path / "sketches")
    out = tmp_path / "run"
    result = command("--source-dir", str(source), "--target-dir", str(target), "--method", "dann", "--epochs", "2",
                 "--views", "original,mirror", "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(out),
                 "--embedding", "pca", "--trade-off-grid", "0.5,2", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {out.resolve()}" in result.stdout
    for name in ("config.json", "metrics.json", "history.csv", "steps.csv", "curves.png", "steps.png",
                 "features.png", "confusion.png", "model.keras", "labels.txt"):
        assert (out / name).is_file(), name
    assert_one_model_file(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["direction"] == "photos->sketches" and metrics["method"] == "dann"
    assert set(metrics["target_per_class_accuracy"]) == {"disc", "square"}
    assert np.sum(metrics["target_confusion_matrix"]) == 12  # every target image scored once
    assert set(metrics["mmd2"]) == {"before", "after"} and set(metrics["a_distance"]) == {"before", "after"}
    # lambda chosen without target labels: the candidate whose target predictions are the most confident
    candidates = metrics["trade_off_selection"]
    assert [c["trade_off"] for c in candidates] == [0.5, 2.0]
    assert metrics["trade_off"] == min(candidates, key=lambda c: c["target_entropy"])["trade_off"]
    # 9 training + 1 validation photo per class, 2 views each -> 36 source and 24 target samples: 9 steps per epoch
    assert metrics["steps"] == 18
    steps = (out / "steps.csv").read_text().splitlines()
    assert steps[0].split(",")[:5] == ["step", "epoch", "progress", "l_c", "l_d"] and len(steps) == 19
    assert "discriminator_accuracy" in steps[0] and "lambda" in steps[0]
    config = json.loads((out / "config.json").read_text())
    assert config["method"] == "dann" and config["lambda_schedule"] == "dann" and config["unfreeze_from"] == "none"
    assert (out / "labels.txt").read_text().split() == ["disc", "square"]
    # the data folders are only read
    assert (snapshot(tmp_path / "photos"), snapshot(tmp_path / "sketches")) == before
    # the saved model takes pixels
    import keras

    import adaptation.features  # noqa: F401  (registers the layers)
    import common.backbones  # noqa: F401

    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert model.input_shape == (None, 32, 32, 3) and model.output_shape == (None, 2)
    # a second run reads every feature from the cache, and refuses to overwrite the first
    again = run("--source-dir", str(source), "--target-dir", str(target), "--method", "dan", "--epochs", "1",
                "--trade-off", "1", "--tensorboard",
                "--views", "original,mirror", "--cache-dir", str(tmp_path / "cache"), "--output-dir",
                str(tmp_path / "run2"), "--embedding", "pca", *TINY)
    assert again.returncode == 0, again.stderr[-3000:]
    assert re.search(r"^\s*0 computed, [1-9]\d* read from the cache", again.stdout, re.M), again.stdout[-2000:]
    assert list((tmp_path / "run2" / "tensorboard").rglob("events.out.tfevents.*"))  # --tensorboard logged
    refused = run("--source-dir", str(source), "--target-dir", str(target), "--output-dir", str(out), *TINY)
    assert refused.returncode == 2 and "already holds a run's results" in refused.stderr


def test_train_through_the_backbone_with_unfreeze_from(domains, tmp_path, run):
    source, target = domains
    out = tmp_path / "run"
    result = run("--source-dir", str(source), "--target-dir", str(target), "--method", "adabn", "--epochs", "1",
                 "--unfreeze-from", "block5_conv1", "--output-dir", str(out), "--embedding", "pca", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert "vgg16 from layer block5_conv1 on" in metrics["trained"] and metrics["steps"] == 5  # 18 training source images
    assert np.sum(metrics["target_confusion_matrix"]) == 12


def one_line_error(result, *fragments):
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr[-2000:])
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    # ours: "error: ..."; argparse's (a wrong choice): "<prog>: error: ..." after its usage lines
    assert lines[-1].startswith("error:") or ": error: " in lines[-1], lines
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def test_bad_input_gives_one_line_errors(domains, tmp_path, run):
    source, target = domains
    other = draw_folder(tmp_path / "other", classes=("disc", "triangle"), count=3, seed=3)
    one_class = draw_folder(tmp_path / "one_class", classes=("disc",), count=3, seed=3)
    single = draw_folder(tmp_path / "single", classes=("disc", "square"), count=1, seed=4)
    (single / "square" / "square0.jpg").unlink()
    empty = tmp_path / "empty"
    (empty / "disc").mkdir(parents=True)
    (empty / "square").mkdir()
    common = ["--epochs", "1", *TINY]
    one_line_error(run("--source-dir", str(source), "--target-dir", str(other), *common),
                   "same class names", "triangle", "square")
    one_line_error(run("--source-dir", str(source), "--target-dir", str(one_class), *common), "only the class")
    one_line_error(run("--source-dir", str(source), "--target-dir", str(empty), *common), "holds no readable images")
    one_line_error(run("--source-dir", str(source), "--target-dir", str(single), *common), "holds no readable images")
    one_line_error(run("--source-dir", str(source), "--target-dir", str(tmp_path / "missing"), *common),
                   "does not exist")
    one_line_error(run("--source-dir", str(source), "--target-dir", str(target), "--method", "mmd", *common),
                   "invalid choice")
    one_line_error(run("--source-dir", str(source), "--target-dir", str(target), "--views", "zoom", *common),
                   "--views")
    one_line_error(run("--source-dir", str(source), "--target-dir", str(target), "--output-dir",
                       str(source / "disc" / "run"), *common), "only read")
    assert not (source / "disc" / "run").exists()


def test_a_target_of_one_image_is_refused(domains, tmp_path):
    from adaptation.data import check_pair
    from common.data import load_image_folder
    from common.errors import UserError

    source, _ = domains
    folder = load_image_folder(source)
    single = dataclasses.replace(folder, paths=folder.paths[:1], labels=folder.labels[:1])
    with pytest.raises(UserError, match="holds 1 image"):
        check_pair(folder, single, "photos", "sketches")


@pytest.mark.skipif(not (SHARED_DATA / "flower17" / "jpg").is_dir() or not (SHARED_DATA / "flower_photos").is_dir(),
                    reason="the shared flower collections are not on this machine")
def test_the_flower_collections_share_four_classes():
    from adaptation.data import load_pair

    pair = load_pair("flower_photos", "flower17", SHARED_DATA)
    assert pair.class_names == ["daisy", "dandelion", "sunflower", "tulip"]
    def counts(folder):
        return dict(zip(folder.class_names, np.bincount(folder.labels, minlength=folder.num_classes).tolist(), strict=False))

    assert counts(pair.target) == {"daisy": 80, "dandelion": 80, "sunflower": 80, "tulip": 80}
    assert counts(pair.source) == {"daisy": 633, "dandelion": 898, "sunflower": 699, "tulip": 799}
    # flower17's class = (n - 1) // 80: daisy is class 10, image_0801 .. image_0880
    named = dict(zip((Path(p).name for p in pair.target.paths), pair.target.labels, strict=False))
    assert named["image_0801.jpg"] == 0 and named["image_0880.jpg"] == 0 and "image_0881.jpg" not in named
    assert named["image_0961.jpg"] == 1 and named["image_0721.jpg"] == 2 and named["image_0640.jpg"] == 3
    assert all(Path(p).parent.name == "sunflowers"
               for p, label in zip(pair.source.paths, pair.source.labels, strict=True) if label == 2)
    reverse = load_pair("flower17", "flower_photos", SHARED_DATA)
    assert reverse.direction == "flower17->flower_photos" and len(reverse.source) == 320


def test_distribute_mirrored_trains_as_one_device(domains, tmp_path, run):
    """--distribute mirrored (one CPU replica here) builds in the strategy's scope and runs the same steps."""
    source, target = domains
    common = ["--source-dir", str(source), "--target-dir", str(target), "--method", "dan", "--epochs", "1",
              "--trade-off", "1", "--views", "original", "--cache-dir", str(tmp_path / "cache"),
              "--embedding", "pca", *TINY]
    results = {}
    for mode in ("none", "mirrored"):
        result = run(*common, "--distribute", mode, "--output-dir", str(tmp_path / mode))
        assert result.returncode == 0, result.stderr[-3000:]
        results[mode] = (json.loads((tmp_path / mode / "metrics.json").read_text()),
                         json.loads((tmp_path / mode / "config.json").read_text()))
    (single, single_config), (mirrored, mirrored_config) = results["none"], results["mirrored"]
    assert mirrored_config["distribute"] == "mirrored" and mirrored_config["replicas"] == 1
    assert single_config["distribute"] == "none"
    assert mirrored["steps"] == single["steps"] > 0
    steps = [(tmp_path / mode / "steps.csv").read_text().splitlines() for mode in ("none", "mirrored")]
    losses = [[float(line.split(",")[3]) for line in rows[1:]] for rows in steps]  # l_c per step
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4, atol=1e-6)
