"""What every training run leaves behind: metrics.json, curves and a confusion matrix.

Students compare runs by opening two folders side by side, so every run writes
the same files with the same keys, and the figures people would rather look
at than read (learning curves, confusion matrix) are PNGs next to the numbers.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from sklearn.utils import check_array, check_consistent_length, column_or_1d


def label_metrics(y_true, predicted, class_names: list[str]) -> dict:
    """Accuracy, per-class accuracy (recall) and the confusion matrix of hard predictions.

    Rows of the confusion matrix are the true classes, columns the predicted
    ones (scikit-learn's layout); a class with no validation image has a
    per-class accuracy of None.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, recall_score

    labels = list(range(len(class_names)))
    y_true = column_or_1d(y_true).astype(int)
    predicted = column_or_1d(predicted).astype(int)
    check_consistent_length(y_true, predicted)
    if not len(y_true):
        raise ValueError("no validation samples to score")
    recall = recall_score(y_true, predicted, labels=labels, average=None, zero_division=np.nan)
    return {
        "val_accuracy": float(accuracy_score(y_true, predicted)),
        "per_class_accuracy": {
            name: (None if np.isnan(value) else float(value)) for name, value in zip(class_names, recall, strict=False)
        },
        "confusion_matrix": confusion_matrix(y_true, predicted, labels=labels).tolist(),
        "class_names": list(class_names),
    }


def classification_metrics(y_true, probabilities, class_names: list[str], losses=None) -> dict:
    """``label_metrics`` of the most probable class, plus the cross-entropy as ``val_loss``.

    ``probabilities`` is (n,) or (n, 1) for a sigmoid output (the probability
    of the second class) or (n, classes) for softmax. A sigmoid output counts
    as the second class above 0.5, as Keras' binary accuracy counts it.

    ``losses``: the per-example losses of the same predictions, as
    ``predictions_and_losses`` gives them; ``val_loss`` is then their mean,
    the figure ``Model.fit`` logs. Without them it is Keras' cross-entropy of
    the probabilities themselves, which equals that figure only while no
    probability is within 1e-7 of 0 or 1: Keras scores a sigmoid or softmax
    output from the logits underneath it, and a float32 probability of a
    confidently wrong prediction has rounded to exactly 0 or 1 (issue 24.5: a
    cat called a dog with logit 18-27 costs 18-27 from the logits, 16.1 with
    Keras' clipping, 36.04 with scikit-learn's, whose float64 clipping had
    turned a logged val_loss of 0.2699 into 0.3327).
    """
    import keras

    probabilities = check_array(probabilities, ensure_2d=False, dtype=np.float32)
    if probabilities.ndim == 2 and probabilities.shape[1] == 1:
        probabilities = probabilities[:, 0]
    if probabilities.ndim == 1:
        predicted = (probabilities > 0.5).astype(int)
    else:
        predicted = probabilities.argmax(axis=1)
    metrics = label_metrics(y_true, predicted, class_names)
    y_true = column_or_1d(y_true).astype(int)
    if losses is None:
        if probabilities.ndim == 1:
            losses = keras.losses.binary_crossentropy(y_true[:, None].astype(np.float32), probabilities[:, None])
        else:
            losses = keras.losses.sparse_categorical_crossentropy(y_true, probabilities)
        losses = keras.ops.convert_to_numpy(losses)
    losses = column_or_1d(losses).astype(np.float64)
    check_consistent_length(y_true, losses)
    metrics["val_loss"] = float(np.mean(losses))
    return metrics


def predictions_and_losses(model, data, loss=None, batch_size: int = 256,
                           description: str = "scoring") -> tuple[np.ndarray, np.ndarray]:
    """The model's outputs on ``data`` and each example's loss, computed as ``Model.fit`` validates.

    ``data`` is a dataset of (inputs, labels) batches or arrays
    ``(inputs, labels)``; ``loss`` defaults to the compiled one. Keras'
    validation step calls the model and scores the output tensor, which for
    a sigmoid or softmax layer still carries the logits, so its cross-entropy
    is exact where the probabilities ``Model.predict`` returns have saturated
    (see ``classification_metrics``); this does the same, in one pass.
    Returns (outputs as float32, per-example losses as float64); ``description`` names the pass in its
    progress bar or lines (``common.progress``).
    """
    import keras
    import tensorflow as tf

    from common.progress import Progress

    loss = model.loss if loss is None else loss
    per_example = loss.call if isinstance(loss, keras.losses.Loss) else keras.losses.get(loss)

    @tf.function(reduce_retracing=True)
    def score(inputs, labels):
        outputs = model(inputs, training=False)
        labels = tf.convert_to_tensor(labels)
        if outputs.shape[-1] == 1 and labels.shape.rank == outputs.shape.rank - 1:
            labels = labels[..., None]  # one sigmoid output: Model.fit adds this axis to (n,) labels itself
        if not labels.dtype.is_integer:
            labels = tf.cast(labels, outputs.dtype)
        values = per_example(labels, outputs)
        return outputs, tf.reshape(values, [tf.shape(outputs)[0], -1])[:, 0]

    if isinstance(data, tuple):
        all_inputs, all_labels = data[0], np.asarray(data[1])
        batches = ((all_inputs[first:first + batch_size], all_labels[first:first + batch_size])
                   for first in range(0, len(all_labels), batch_size))
        total = -(-len(all_labels) // batch_size)
    else:
        batches = iter(data)
        known = int(data.cardinality()) if hasattr(data, "cardinality") else -1   # -1, -2: unknown, endless
        total = known if known > 0 else None
    outputs, losses = [], []
    with Progress(total, description, unit="batches") as progress:
        for inputs, labels in batches:
            batch_outputs, batch_losses = score(inputs, labels)
            outputs.append(batch_outputs.numpy())
            losses.append(batch_losses.numpy())
            progress.update(1)
    if not outputs:
        raise ValueError("no validation samples to score")
    return (np.concatenate(outputs).astype(np.float32, copy=False),
            np.concatenate(losses).astype(np.float64))


def write_metrics(run_dir, metrics: dict) -> Path:
    path = Path(run_dir) / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def write_history(path, history: dict[str, list]) -> Path:
    """A history dict (as from ``model.fit(...).history``) as CSV: one row per epoch.

    The first column is ``epoch``, counted from 1 as Keras prints it; a
    history that carries its own ``epoch`` list (runs of several stages) keeps
    it, so the file never has two.
    """
    history = dict(history)
    rows = len(next(iter(history.values()), []))
    epochs = history.pop("epoch", None) or list(range(1, rows + 1))
    keys = list(history)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *keys])
        for epoch, row in zip(epochs, zip(*(history[key] for key in keys), strict=False), strict=False):
            writer.writerow([epoch, *row])
    return Path(path)


def pyplot():
    """matplotlib.pyplot drawing into files (the Agg backend), for machines without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, path, title: str = "", **tight_layout) -> Path:
    """Title, tight layout, a 100-dpi PNG, then close: pyplot keeps every figure it made in memory until it is closed."""
    if title:
        figure.suptitle(title)
    figure.tight_layout(**tight_layout)
    figure.savefig(path, dpi=100)
    pyplot().close(figure)
    return Path(path)


def plot_curves(history: dict[str, list[float]], path, x_label: str = "epoch", title: str = "") -> Path:
    """Accuracy and loss, training beside validation, against epochs (or iterations)."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in ((left, "accuracy"), (right, "loss")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            values = history.get(key)
            if values:
                steps = history.get(x_label) or list(range(1, len(values) + 1))
                axis.plot(steps, values, style, label=key)
        axis.set_xlabel(x_label)
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    return save_figure(figure, path, title)


def plot_confusion(confusion, class_names: list[str], path, title: str = "") -> Path:
    """scikit-learn's ``ConfusionMatrixDisplay``: true classes down, predicted across, counts in the cells."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = pyplot()
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    display = ConfusionMatrixDisplay(np.asarray(confusion), display_labels=class_names)
    display.plot(ax=axis, cmap="Blues", xticks_rotation=45, colorbar=True, values_format="d")
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title or "confusion matrix (validation)")
    return save_figure(figure, path)


def finish_run(run_dir, history: dict, metrics: dict, title: str = "") -> dict:
    """Write the standard run files: history.csv (if absent), metrics.json, curves.png, confusion.png."""
    run_dir = Path(run_dir)
    if history and not (run_dir / "history.csv").exists():
        write_history(run_dir / "history.csv", history)
    if history:
        plot_curves(history, run_dir / "curves.png", title=title)
    if "confusion_matrix" in metrics:
        plot_confusion(metrics["confusion_matrix"], metrics["class_names"], run_dir / "confusion.png", title=title)
    write_metrics(run_dir, metrics)
    return metrics


def print_summary(run_dir, metrics: dict) -> None:
    print(f"validation accuracy {metrics['val_accuracy']:.4f}")
    for name, accuracy in metrics.get("per_class_accuracy", {}).items():
        if accuracy is not None:
            print(f"  {name:>12s}: {accuracy:.4f}")
    print(f"wrote {Path(run_dir).resolve()}")
