"""Run-folder reports: metrics worked out by hand, history files with one epoch column."""
import csv

import numpy as np
import pytest

from common.reports import classification_metrics, label_metrics, plot_confusion, write_history
from common.training import EpochLog


def test_metrics_of_a_softmax_output_match_the_hand_count():
    y_true = [0, 0, 0, 1, 1, 2]
    probabilities = np.array([
        [0.7, 0.2, 0.1],  # right
        [0.2, 0.5, 0.3],  # taken for 1
        [0.6, 0.3, 0.1],  # right
        [0.1, 0.8, 0.1],  # right
        [0.1, 0.3, 0.6],  # taken for 2
        [0.2, 0.2, 0.6],  # right
    ], dtype=np.float32)
    metrics = classification_metrics(y_true, probabilities, ["a", "b", "c"])
    assert metrics["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert metrics["val_accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_class_accuracy"] == pytest.approx({"a": 2 / 3, "b": 1 / 2, "c": 1.0})
    picked = probabilities[np.arange(6), y_true]
    assert metrics["val_loss"] == pytest.approx(-np.mean(np.log(picked)), rel=1e-6)


def test_a_sigmoid_output_is_the_probability_of_the_second_class():
    metrics = classification_metrics([0, 1, 1, 0], np.array([[0.2], [0.9], [0.4], [0.6]]), ["cats", "dogs"])
    assert metrics["confusion_matrix"] == [[1, 1], [1, 1]]
    expected = -np.mean(np.log([0.8, 0.9, 0.4, 0.4]))
    assert metrics["val_loss"] == pytest.approx(expected, rel=1e-6)


def test_a_class_without_validation_images_has_no_recall_and_bad_input_is_refused():
    metrics = label_metrics([0, 0, 1], [0, 1, 1], ["a", "b", "c"])
    assert metrics["per_class_accuracy"] == {"a": 0.5, "b": 1.0, "c": None}
    with pytest.raises(ValueError):
        label_metrics([0, 1, 1], [0, 1], ["a", "b"])  # lengths differ
    with pytest.raises(ValueError):
        classification_metrics([0, 1], np.array([[0.5, np.nan], [0.5, 0.5]]), ["a", "b"])


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def test_history_has_one_epoch_column_counted_from_one(tmp_path):
    write_history(tmp_path / "plain.csv", {"loss": [0.9, 0.5], "val_accuracy": [0.6, 0.8]})
    assert read_rows(tmp_path / "plain.csv") == [["epoch", "loss", "val_accuracy"], ["1", "0.9", "0.6"], ["2", "0.5", "0.8"]]
    # A history of several stages brings its own epochs and a stage column: still one epoch column.
    write_history(tmp_path / "staged.csv", {"epoch": [1, 2, 3], "stage": ["s2", "s2", "s3"], "loss": [3, 2, 1]})
    rows = read_rows(tmp_path / "staged.csv")
    assert rows[0] == ["epoch", "stage", "loss"] and [row[0] for row in rows[1:]] == ["1", "2", "3"]


def test_keras_history_file_counts_epochs_from_one(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.zeros((4, 2), np.float32)
    model.fit(x, x[:, :1], epochs=3, verbose=0, callbacks=[EpochLog(str(tmp_path / "history.csv"))])
    rows = read_rows(tmp_path / "history.csv")
    assert rows[0].count("epoch") == 1 and [row[rows[0].index("epoch")] for row in rows[1:]] == ["1", "2", "3"]


def test_confusion_plot_is_written(tmp_path):
    path = plot_confusion([[3, 1], [0, 4]], ["cats", "dogs"], tmp_path / "confusion.png")
    assert path.stat().st_size > 1000
