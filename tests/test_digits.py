"""digits (blog post 003, textbook 12.4.1): the splits, the layer copy, and both commands end to end."""
import csv
import json

import keras
import numpy as np
import pytest

from digits import data, transfer, transferability
from digits.model import LAYERS, build_cnn, compile_for_training, copy_first, trainable_count


@pytest.fixture(scope="module")
def digits():
    return data.load("digits")


def test_tasks_split_each_digit_three_ways_without_overlap(digits):
    x, y = digits
    task = data.task(x, y, range(5, 10))
    assert task.classes == (5, 6, 7, 8, 9)
    seen = set()
    for part in (task.x_train, task.x_val, task.x_test):
        keys = {image.tobytes() for image in part}
        assert not keys & seen
        seen |= keys
    for labels in (task.y_train, task.y_val, task.y_test):
        assert set(np.unique(labels)) == set(range(5))          # every class in every split
    # the same split whatever else changes: the test images are fixed
    again = data.task(x, y, range(5, 10))
    np.testing.assert_array_equal(again.x_test, task.x_test)


def test_few_shot_draws_k_training_images_per_class_with_the_seed(digits):
    x, y = digits
    task = data.task(x, y, range(5))
    xk, yk = task.few_shot(3, seed=1)
    assert np.bincount(yk).tolist() == [3] * 5
    train = {image.tobytes() for image in task.x_train}
    assert all(image.tobytes() in train for image in xk)
    assert not np.array_equal(task.few_shot(3, seed=2)[0], xk)
    with pytest.raises(Exception, match="fewer than K"):
        task.few_shot(10_000, seed=0)


def test_copy_first_copies_n_layers_and_a_frozen_copy_stays_put(digits):
    x, y = digits
    keras.utils.set_random_seed(0)
    source = build_cnn(x.shape[1:], 5, "source")
    keras.utils.set_random_seed(1)
    target = copy_first(source, build_cnn(x.shape[1:], 5, "target"), 4, frozen=True)
    for name in LAYERS:
        same = all(np.array_equal(a, b) for a, b in zip(source.get_layer(name).get_weights(),
                                                        target.get_layer(name).get_weights(), strict=False))
        assert same == (name in LAYERS[:4]), name
        assert target.get_layer(name).trainable == (name not in LAYERS[:4])
    before = [w.copy() for w in target.get_layer("conv4").get_weights()]
    compile_for_training(target, 1e-2)
    target.fit(x[:64], y[:64] % 5, epochs=1, verbose=0)
    for a, b in zip(before, target.get_layer("conv4").get_weights(), strict=False):
        np.testing.assert_array_equal(a, b)                    # frozen means frozen after compile
    assert not np.array_equal(source.get_layer("head").get_weights()[0], target.get_layer("head").get_weights()[0])


def test_transfer_command_writes_the_asked_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    metrics = transfer.main(["--limit", "40", "--shots", "2", "--seeds", "2", "--source-epochs", "3",
                             "--target-epochs", "2", "--output-dir", str(out)])
    printed = capsys.readouterr().out
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["source_test_accuracy"] == pytest.approx(metrics["source_test_accuracy"])
    assert f"source test accuracy {saved['source_test_accuracy']:.4f}" in printed
    assert set(saved["per_k"]) == {"2"}
    for entry in saved["per_k"].values():
        assert 0 <= entry["target_scratch_accuracy"] <= 1
        assert set(entry["target_transfer_accuracy"]) == {"frozen", "finetuned"}
        assert len(entry["per_seed"]["frozen"]) == 2
    with open(out / "trainings.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1 * 2 * 3          # K values x seeds x (scratch, frozen, fine-tuned)
    head = 64 * 5 + 5                     # the frozen copy trains the new head alone (003's layers[:-1])
    assert {int(r["trainable_weights"]) for r in rows if r["variant"] == "frozen"} == {head}
    full = trainable_count(build_cnn((8, 8, 1), 5))
    assert {int(r["trainable_weights"]) for r in rows if r["variant"] != "frozen"} == {full}
    for name in ("config.json", "history.csv", "transfer.png", "source.keras"):
        assert (out / name).is_file(), name


def test_transferability_command_writes_four_curves_over_every_depth(tmp_path):
    out = tmp_path / "run"
    transferability.main(["--limit", "30", "--seeds", "1", "--epochs", "1", "--depths", "2,5",
                          "--output-dir", str(out)])
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["curves"]) == {"AnB", "BnB", "AnB+", "BnB+"}
    assert saved["depths"] == [2, 5]
    assert all(len(values) == 2 for values in saved["curves"].values())
    assert 0 <= saved["base_B_accuracy"] <= 1
    assert (out / "transferability.png").stat().st_size > 10_000


def test_mnist_offline_names_the_file_and_where_it_goes(monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(SystemExit) as stop:
        transfer.main(["--dataset", "mnist", "--output-dir", str(tmp_path / "run")])
    assert stop.value.code == 2
    assert not (tmp_path / "run").exists()           # nothing opened for a run that never started
    with pytest.raises(data.UserError, match="mnist.npz"):
        data.load("mnist")
    with pytest.raises(data.UserError, match="is not a file"):
        data.load("mnist", str(tmp_path / "missing.npz"))
