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


def classification_metrics(y_true, probabilities, class_names: list[str]) -> dict:
    """Accuracy, per-class accuracy (recall) and the confusion matrix.

    ``probabilities`` is (n,) for a sigmoid output or (n, classes) for softmax.
    """
    y_true = np.asarray(y_true).astype(int).ravel()
    probabilities = np.asarray(probabilities)
    if probabilities.ndim == 1 or probabilities.shape[-1] == 1:
        predicted = (probabilities.ravel() >= 0.5).astype(int)
    else:
        predicted = probabilities.argmax(axis=-1)
    classes = len(class_names)
    confusion = np.zeros((classes, classes), dtype=int)
    np.add.at(confusion, (y_true, predicted), 1)
    totals = confusion.sum(axis=1)
    per_class = {
        name: (float(confusion[i, i] / totals[i]) if totals[i] else None)
        for i, name in enumerate(class_names)
    }
    return {
        "val_accuracy": float((predicted == y_true).mean()) if len(y_true) else float("nan"),
        "per_class_accuracy": per_class,
        "confusion_matrix": confusion.tolist(),
        "class_names": list(class_names),
    }


def write_metrics(run_dir, metrics: dict) -> Path:
    path = Path(run_dir) / "metrics.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    return path


def read_history(path) -> dict[str, list[float]]:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {key: [float(row[key]) for row in rows] for key in rows[0]}


def write_history(path, history: dict[str, list[float]]) -> Path:
    """Write a history dict (as from ``model.fit(...).history``) as CSV, one row per epoch."""
    keys = list(history)
    rows = zip(*(history[key] for key in keys))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", *keys])
        for epoch, row in enumerate(rows):
            writer.writerow([epoch, *row])
    return Path(path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: dict[str, list[float]], path, x_label: str = "epoch", title: str = "") -> Path:
    """Accuracy and loss, training beside validation, against epochs (or iterations)."""
    plt = _pyplot()
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
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


def plot_confusion(confusion, class_names: list[str], path, title: str = "") -> Path:
    plt = _pyplot()
    confusion = np.asarray(confusion)
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(confusion, cmap="Blues")
    figure.colorbar(image, ax=axis, fraction=0.046)
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    threshold = confusion.max() / 2 if confusion.size else 0
    for (row, column), value in np.ndenumerate(confusion):
        axis.text(column, row, str(value), ha="center", va="center",
                  color="white" if value > threshold else "black", fontsize=8)
    axis.set_title(title or "confusion matrix (validation)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return Path(path)


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
