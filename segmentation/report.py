"""What a segmentation run leaves to look at: curves, contour overlays, the Table 3 comparison.

- ``curves.png``: the generator's L1 loss (eq. 23) and adversarial loss, the
  discriminator's loss, every training step (a moving average on top), and
  the validation Dice after every epoch, with the epochs where an encoder
  block was released and the epoch chosen on validation marked (figure 11's
  question: how deep to fine-tune).
- ``overlays.png``: test frames with the expert's contour and the predicted
  one in two colours (the textbook's figure 7), zoomed on the region of interest.
- ``table3.md``: the textbook's Table 3 rows beside this project's. (The text
  cites these figures as "表 1", Table 1; they are Table 3's: docs/textbook-errata.md,
  E15. By the formula it prints, its Sensitivity column is precision: E14.)
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from common.reports import pyplot, save_figure
from segmentation.metrics import METRICS

#: Textbook Table 3, endocardium (Dice, Jaccard, Sensitivity), on its own data
#: (33 subjects, Hospital for Sick Children, Toronto; not redistributable).
TEXTBOOK_TABLE3 = [
    ("U-Net", 0.8829, 0.8536, 0.8910),
    ("TLBSN", 0.9307, 0.8764, 0.9232),
    ("transfer-learning GAN", 0.9399, 0.8968, 0.9363),
]
METHOD_NAMES = {"unet": "U-Net (from scratch)", "tlbsn": "TLBSN", "gan": "transfer-learning GAN"}
EXPERT_COLOUR = "#00d000"
PREDICTED_COLOUR = "#ff3030"


def write_rows(path, rows: list[dict]) -> Path:
    """A list of dicts as CSV, columns in first-seen order."""
    keys: list[str] = []
    for row in rows:
        keys.extend(key for key in row if key not in keys)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def _moving_average(values, window: int):
    values = np.asarray(values, dtype=float)
    if len(values) < window or window < 2:
        return values
    kernel = np.ones(window) / window
    smoothed = np.convolve(values, kernel, mode="valid")
    return np.concatenate([np.full(window - 1, np.nan), smoothed])


def plot_curves(steps: list[dict], epochs: list[dict], path, title: str = "", chosen_epoch: int | None = None) -> Path:
    """Four panels: generator L1, generator adversarial loss, discriminator loss (per step), validation Dice."""
    plt = pyplot()
    figure, axes = plt.subplots(2, 2, figsize=(12, 7.5))
    steps_per_epoch = max(1, len(steps) // max(1, len(epochs)))
    window = max(2, steps_per_epoch)
    panels = (
        (axes[0, 0], "l1", "generator L1 loss (eq. 23)"),
        (axes[0, 1], "adversarial", "generator adversarial loss, -log D(x, G(x))"),
        (axes[1, 0], "discriminator_loss", "discriminator loss, -log D(x, y) - log(1 - D(x, G(x)))"),
    )
    for axis, key, label in panels:
        values = [row[key] for row in steps if key in row]
        if values:
            numbers = np.arange(1, len(values) + 1)
            axis.plot(numbers, values, color="#9ab", linewidth=0.6, label="per step")
            axis.plot(numbers, _moving_average(values, window), color="#135", linewidth=1.5,
                      label=f"mean of {window} steps")
            axis.legend(fontsize=8)
        else:
            axis.text(0.5, 0.5, "no discriminator in this method", ha="center", va="center",
                      transform=axis.transAxes, color="gray")
            axis.set_xticks([])
            axis.set_yticks([])
        axis.set_title(label, fontsize=10)
        axis.set_xlabel("training step")
        axis.grid(alpha=0.3)
    axis = axes[1, 1]
    numbers = [row["epoch"] for row in epochs]
    axis.plot(numbers, [row.get("val_dice", np.nan) for row in epochs], "o-", markersize=3, label="validation Dice")
    previous = None
    for row in epochs:
        depth = row.get("depth")
        if previous is not None and depth != previous:
            axis.axvline(row["epoch"] - 0.5, color="orange", linestyle=":", linewidth=1)
            axis.text(row["epoch"] - 0.5, axis.get_ylim()[0], f" {depth} block{'s' if depth != 1 else ''}",
                      rotation=90, fontsize=7, color="darkorange", va="bottom")
        previous = depth
    if chosen_epoch is not None:
        chosen = [row for row in epochs if row["epoch"] == chosen_epoch]
        if chosen:
            axis.plot([chosen_epoch], [chosen[0]["val_dice"]], "r*", markersize=12, label=f"chosen: epoch {chosen_epoch}")
    axis.set_title("validation Dice (patients held out of training), dotted: encoder block released", fontsize=10)
    axis.set_xlabel("epoch")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower right")
    return save_figure(figure, path, title)


def overlay_indices(names: list[str], count: int = 12) -> list[int]:
    """Evenly spread frames of the (sorted) test set, so several patients are shown."""
    if len(names) <= count:
        return list(range(len(names)))
    return [int(i) for i in np.linspace(0, len(names) - 1, count).round()]


def plot_overlays(images, expert, predicted, names, scores, box, path, count: int = 12, title: str = "") -> Path:
    """A grid of frames with the expert contour (green) and the predicted one (red), zoomed on the ROI."""
    plt = pyplot()
    chosen = overlay_indices(list(names), count)
    columns = min(4, max(1, len(chosen)))
    rows = int(np.ceil(len(chosen) / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    top, left, size = box.top, box.left, box.size
    for axis, index in zip(axes.flat, chosen, strict=False):
        window = (slice(top, top + size), slice(left, left + size))
        axis.imshow(images[index][window], cmap="gray")
        for mask, colour in ((expert[index], EXPERT_COLOUR), (predicted[index], PREDICTED_COLOUR)):
            part = np.asarray(mask[window], dtype=float)
            if part.any() and not part.all():
                axis.contour(part, levels=[0.5], colors=[colour], linewidths=1.2)
        name = str(names[index]).split("-IM-")[0]
        axis.set_title(f"{name}  Dice {scores[index]:.3f}", fontsize=8)
    handles = [
        plt.Line2D([], [], color=EXPERT_COLOUR, label="expert"),
        plt.Line2D([], [], color=PREDICTED_COLOUR, label="predicted"),
    ]
    figure.legend(handles=handles, loc="lower center", ncol=2, fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path, rect=(0, 0.04, 1, 1))


def table3(rows: list[tuple[str, dict]]) -> str:
    """Markdown: the textbook's Table 3 rows, then each (label, metrics.json "test" entry) given."""
    lines = [
        "| method | data | Dice | Jaccard | Sensitivity | Precision |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, dice, jaccard, sensitivity in TEXTBOOK_TABLE3:
        lines.append(f"| {name} (textbook) | its own 33 subjects | {dice:.4f} | {jaccard:.4f} | {sensitivity:.4f}* | - |")
    for label, test in rows:
        cells = " | ".join(f"{test[name]['mean']:.4f} +- {test[name]['std']:.4f}" for name in METRICS)
        lines.append(f"| {label} | Sunnybrook test, {test['images']} images | {cells} |")
    lines.append("")
    lines.append(
        "Means +- standard deviations over test images, each scored on the full frame. Sensitivity here is "
        "|X n Y| / |Y| (recall; X predicted, Y expert) and precision |X n Y| / |X|. *The textbook prints its "
        "sensitivity as |X n Y| / |X|, which is precision, so its column may be either. Its data differ from ours: "
        "its figures are an anchor, not a measurement on this data."
    )
    return "\n".join(lines) + "\n"


def run_label(config: dict) -> str:
    method = config.get("method", "?")
    label = METHOD_NAMES.get(method, method)
    if method != "unet":
        weights = config.get("weights", "")
        source = "ImageNet" if weights == "imagenet" else ("random" if weights in ("none", None) else Path(str(weights)).name)
        label += f", {config.get('backbone')} ({source})"
    return label + " (this project)"
