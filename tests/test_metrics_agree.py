"""Every training command's metrics.json says what it printed and what history.csv logged (issue 24.5).

A new user's ``cats_dogs.bottleneck --epochs 1`` printed ``val_loss: 0.2699``,
logged 0.26989 and wrote ``"val_loss": 0.3327``: Keras scores a sigmoid or
softmax output from the logits underneath it, metrics.json scored the float32
probabilities ``Model.predict`` returns, in which a confidently wrong
prediction has rounded to exactly 0 or 1 (scikit-learn's log loss then clips
it to 36.04 where the logits say 18-27). Each test runs a command for real on
tiny data and reads back its printed epoch lines, history.csv and
metrics.json; the first ones build models whose wrong predictions saturate on
purpose, the last one does it with the pretrained MobileNetV2 of ../shared.
"""
from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA, draw_folder

LOGGED = {"rel": 1e-5, "abs": 1e-6}  # metrics.json against history.csv: float32 sums, nothing more
PRINTED_4DP = {"abs": 5.1e-5}  # Keras prints 4 decimals
PRINTED_4SIG = {"rel": 5.1e-4}  # common.loop prints 4 significant digits
MOBILENET = SHARED_DATA.parent / "weights" / "mobilenet_v2_1.0_224_no_top.h5"


def history(run: Path) -> list[dict]:
    with open(run / "history.csv") as handle:
        return list(csv.DictReader(handle))


def fit_lines(out: str) -> list[dict[str, float]]:
    """Keras' verbose=2 epoch lines ("... - val_accuracy: 0.5000 - val_loss: 0.6931"), in order."""
    return [{key: float(value) for key, value in re.findall(r"(\w+): ([-+.\deE]+|nan|inf)", line)}
            for line in out.splitlines() if "val_loss: " in line]


def assert_fit_epoch_agrees(metrics: dict, run: Path, out: str, epoch: int) -> None:
    """metrics.json's val_loss and val_accuracy are history.csv's row ``epoch`` and that epoch's printed line."""
    rows, lines = history(run), fit_lines(out)
    assert len(lines) == len(rows) and int(rows[epoch - 1]["epoch"]) == epoch
    row, line = rows[epoch - 1], lines[epoch - 1]
    for key in ("val_loss", "val_accuracy"):
        assert metrics[key] == pytest.approx(float(row[key]), **LOGGED), key
        assert metrics[key] == pytest.approx(line[key], **PRINTED_4DP), key


# ---------------------------------------------------------------- the cause, on models built to be confidently wrong
def confident_model(output: str):
    """A dense layer whose logits are set: for half of the inputs confidently wrong (|logit| 20-60)."""
    import keras

    inputs = keras.Input((2,))
    units, activation = (1, "sigmoid") if output == "sigmoid" else (3, "softmax")
    model = keras.Model(inputs, keras.layers.Dense(units, activation=activation)(inputs))
    kernel = np.zeros((2, units), np.float32)
    kernel[0] = 1.0 if output == "sigmoid" else [-1.0, 1.0, 0.0]  # class 1 for x > 0, as the sigmoid
    model.layers[-1].set_weights([kernel, np.zeros(units, np.float32)])
    x = np.array([[40, 0], [25, 0], [-60, 0], [-20, 0], [2, 0], [-3, 0], [18, 0], [0.5, 0]], np.float32)
    y = np.array([0, 0, 1, 1, 1, 0, 1, 0])
    return model, x, y


@pytest.mark.parametrize("output, loss", [("sigmoid", "binary_crossentropy"),
                                          ("softmax", "sparse_categorical_crossentropy"),
                                          ("softmax", "categorical_crossentropy")])
def test_the_loss_is_the_one_keras_logs_also_where_probabilities_saturate(output, loss):
    import keras

    from common.reports import classification_metrics, predictions_and_losses

    model, x, y = confident_model(output)
    labels = keras.utils.to_categorical(y, 3) if loss == "categorical_crossentropy" else y
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=loss, metrics=["accuracy"])
    logged = model.fit(x, labels, validation_data=(x, labels), epochs=1, batch_size=3, verbose=0).history
    probabilities = model.predict(x, verbose=0)
    assert np.any((probabilities == 0.0) | (probabilities == 1.0))  # float32 rounded them: the case of the issue
    outputs, losses = predictions_and_losses(model, (x, labels), batch_size=3)
    np.testing.assert_allclose(outputs, probabilities, atol=1e-6)
    names = ["a", "b"] if output == "sigmoid" else ["a", "b", "c"]
    metrics = classification_metrics(y, outputs, names, losses)
    assert metrics["val_loss"] == pytest.approx(logged["val_loss"][0], **LOGGED)
    assert metrics["val_accuracy"] == pytest.approx(logged["val_accuracy"][0], abs=1e-7)
    assert metrics["val_loss"] > 10  # the wrong ones cost their logits: 20-60 each
    from sklearn.metrics import log_loss  # what metrics.json used to say

    assert abs(log_loss(y, probabilities if output == "softmax" else probabilities[:, 0], labels=[0, 1, 2][:len(names)])
               - metrics["val_loss"]) > 1


# ---------------------------------------------------------------- every training command, run for real
FAST = ["--weights", "none", "--image-size", "32", "--batch-size", "4"]


def test_cats_dogs_bottleneck_and_finetune(cats_dogs_dir, tmp_path, capsys):
    from cats_dogs import bottleneck, finetune

    common = ["--data-dir", str(cats_dogs_dir), "--cache-dir", str(tmp_path / "cache"), *FAST]
    metrics = bottleneck.main([*common, "--epochs", "2", "--output-dir", str(tmp_path / "bottleneck")])
    assert metrics["reported_epoch"] == 2  # the last epoch: nothing is restored
    assert_fit_epoch_agrees(metrics, tmp_path / "bottleneck", capsys.readouterr().out, epoch=2)

    # early stopping puts the best epoch's weights back: that epoch is the one reported
    tuned = finetune.main([*common, "--epochs", "3", "--patience", "1", "--output-dir", str(tmp_path / "finetune"),
                           "--top-model", str(tmp_path / "bottleneck" / "model.keras")])
    written = json.loads((tmp_path / "finetune" / "metrics.json").read_text())
    assert written["reported_epoch"] == tuned["best_epoch"]
    assert_fit_epoch_agrees(written, tmp_path / "finetune", capsys.readouterr().out, epoch=written["reported_epoch"])


def test_flowers_flower17_reports_its_best_checkpoint(tmp_path, capsys):
    from flowers_synthetic import make_flower17

    from flowers import flower17

    raw = make_flower17(tmp_path / "flower17", classes=2, per_class=12)
    flower17.main(["--data-dir", str(raw), "--split-dir", str(tmp_path / "split"), "--output-dir",
                   str(tmp_path / "run"), "--epochs", "3", "--patience", "0", "--backbone", "mobilenet_v2",
                   "--weights", "none", "--image-size", "32", "--batch-size", "8"])
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["reported_epoch"] == metrics["best_epoch"]
    assert_fit_epoch_agrees(metrics, tmp_path / "run", capsys.readouterr().out, epoch=metrics["best_epoch"])


def test_flowers_train_both_stages(tmp_path, capsys):
    from flowers_synthetic import make_flower_folder

    from flowers import prepare, train

    source = make_flower_folder(tmp_path / "photos", {"daisy": 8, "roses": 8, "tulips": 8})
    prepare.main(["--from", str(source), "--data-dir", str(tmp_path / "prepared"), "--validation-per-class", "3"])
    capsys.readouterr()
    run = train.main(["--data-dir", str(tmp_path / "prepared"), "--output-dir", str(tmp_path / "run"),
                      "--cache-dir", str(tmp_path / "cache"), "--epochs", "2", "--finetune-epochs", "2",
                      "--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32", "--batch-size", "8"])
    out = capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    rows = history(run)
    stage2_lines = [dict(re.findall(r"(val_\w+): ([-.\d]+)", line)) for line in out.splitlines()
                    if line.startswith("Epoch ")]
    stage3_lines = [dict(re.findall(r"(val_\w+) ([-.\deE+]+)", line)) for line in out.splitlines()
                    if line.startswith("stage 3 epoch ")]
    for stage, lines, printed in (("stage2", stage2_lines, PRINTED_4DP), ("stage3", stage3_lines, PRINTED_4SIG)):
        last = [row for row in rows if row["stage"] == stage][-1]  # each stage reports its last epoch
        assert len(lines) == 2
        for key in ("val_loss", "val_accuracy"):
            assert metrics[stage][key] == pytest.approx(float(last[key]), **LOGGED), (stage, key)
            assert metrics[stage][key] == pytest.approx(float(lines[-1][key]), **printed), (stage, key)
    assert metrics["val_loss"] == metrics["stage3"]["val_loss"]
    assert metrics["val_accuracy"] == metrics["stage3"]["val_accuracy"]


def test_adaptation_train_reports_the_chosen_candidate(tmp_path, capsys):
    from adaptation.train import main

    source = draw_folder(tmp_path / "photos", classes=("disc", "square"), count=10, seed=1)
    target = draw_folder(tmp_path / "sketches", classes=("disc", "square"), count=6, seed=2)
    metrics = main(["--source-dir", str(source), "--target-dir", str(target), "--method", "dann", "--epochs", "2",
                    "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(tmp_path / "run"),
                    "--embedding", "pca", "--trade-off-grid", "0.5,2", "--backbone", "vgg16", "--weights", "none",
                    "--image-size", "32", "--batch-size", "4", "--bottleneck", "8"])
    out = capsys.readouterr().out
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["source_val_accuracy"] == metrics["source_val_accuracy"]
    chosen = f"trade-off {written['trade_off']:g}"
    epoch_lines = [line for line in out.splitlines() if f"{chosen} epoch " in line]
    assert len(epoch_lines) == 2  # the history written is the chosen candidate's
    printed = float(re.search(r"source_val_accuracy ([-.\deE+]+)", epoch_lines[-1]).group(1))
    last = history(tmp_path / "run")[-1]
    assert written["source_val_accuracy"] == pytest.approx(float(last["source_val_accuracy"]), abs=1e-9)
    assert written["source_val_accuracy"] == pytest.approx(printed, **PRINTED_4SIG)
    summary = float(re.search(r"^source validation accuracy ([.\d]+)$", out, re.M).group(1))
    assert written["source_val_accuracy"] == pytest.approx(summary, **PRINTED_4DP)
    candidate = next(c for c in written["trade_off_selection"] if c["trade_off"] == written["trade_off"])
    assert candidate["source_val_accuracy"] == pytest.approx(written["source_val_accuracy"], abs=1e-9)
    target = float(re.search(r"^target accuracy ([.\d]+) ", out, re.M).group(1))
    assert written["target_accuracy"] == pytest.approx(target, **PRINTED_4DP)


def test_segmentation_train_reports_the_restored_best_epoch(tmp_path, capsys):
    from segmentation_synthetic import make_dataset_folder

    from segmentation import train

    data = make_dataset_folder(tmp_path / "lv", train_per_group=2, test_patients=2, frames=3, size=64)
    run = train.main(["--method", "tlbsn", "--data-dir", str(data), "--epochs", "3", "--unfreeze", "1",
                      "--output-dir", str(tmp_path / "run"), "--backbone", "vgg16", "--weights", "none",
                      "--image-size", "32", "--roi-size", "32", "--batch-size", "4", "--decoder-width", "4",
                      "--validation-patients", "2"])
    out = capsys.readouterr().out
    selection = json.loads((run / "validation.json").read_text())
    rows = {int(row["epoch"]): row for row in history(run)}
    logged = float(rows[selection["epoch"]]["val_dice"])
    assert selection["val_dice_at_0.5"] == pytest.approx(logged, abs=1e-9)
    # scored again after the best epoch's weights were put back: the same Dice as logged for that epoch
    assert selection["val_dice_by_binarisation"]["0.50"] == pytest.approx(logged, abs=1e-6)
    chosen = re.search(r"chosen on validation: epoch (\d+).*validation Dice ([.\d]+)", out)
    assert int(chosen.group(1)) == selection["epoch"]
    assert float(chosen.group(2)) == pytest.approx(selection["val_dice_chosen"], **PRINTED_4DP)
    metrics = json.loads((run / "metrics.json").read_text())
    printed = re.search(r"^test: (\d+) images, (.*)$", out, re.M)
    assert int(printed.group(1)) == metrics["test"]["images"]
    for name, mean, std in re.findall(r"(\w+) ([.\d]+) \+- ([.\d]+)", printed.group(2)):
        assert metrics["test"][name]["mean"] == pytest.approx(float(mean), **PRINTED_4DP)
        assert metrics["test"][name]["std"] == pytest.approx(float(std), **PRINTED_4DP)
    with open(run / "per_image.csv") as handle:
        dice = [float(row["dice"]) for row in csv.DictReader(handle)]
    assert metrics["test"]["dice"]["mean"] == pytest.approx(np.mean(dice), abs=1e-6)


# ------------------------------------------------ the case: pretrained features, confidently wrong
@pytest.mark.skipif(not MOBILENET.is_file(), reason=f"needs {MOBILENET}")
def test_bottleneck_with_pretrained_features_and_confidently_wrong_predictions(tmp_path, capsys):
    import keras

    from cats_dogs import bottleneck

    root = tmp_path / "cats_and_dogs"
    draw_folder(root / "train", count=8, seed=1)
    draw_folder(root / "validation", classes=("dogs", "cats"), count=4, seed=2)  # each looks like the other class
    metrics = bottleneck.main(["--data-dir", str(root), "--cache-dir", str(tmp_path / "cache"), "--output-dir",
                               str(tmp_path / "run"), "--backbone", "mobilenet_v2", "--weights", str(MOBILENET),
                               "--image-size", "96", "--batch-size", "4", "--epochs", "3"])
    assert_fit_epoch_agrees(metrics, tmp_path / "run", capsys.readouterr().out, epoch=3)
    from common.data import load_image_folder, make_dataset

    folder = load_image_folder(root / "validation", class_names=["cats", "dogs"])
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    probabilities = model.predict(make_dataset(folder.paths, folder.labels, (96, 96), 4), verbose=0)
    assert np.any((probabilities == 0.0) | (probabilities == 1.0))  # saturated, as in the run
    assert metrics["val_loss"] > 5
