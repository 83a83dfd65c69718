"""The pictures of an adaptation run: the per-step curves and the two domains' features in 2-D.

The chapter's argument is visual: before adaptation the source and the target
features of one class sit in different places; after it they overlap while
the classes stay apart. ``plot_features`` draws exactly that, before beside
after, coloured by class and marked by domain. ``plot_steps`` draws what the
training step logged: the classification loss, the adaptation loss, lambda,
the learning rate and the discriminator's accuracy, every step.
"""
from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import numpy as np

from common.reports import pyplot, save_figure

STEP_PANELS = (
    ("losses", ("l_c", "l_A", "l_d")),
    ("accuracy", ("accuracy", "discriminator_accuracy")),
    ("lambda", ("lambda",)),
    ("learning rate", ("learning_rate",)),
)


def _smooth(values, window: int):
    values = np.asarray(values, float)
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def plot_steps(steps: list[dict], path, title: str = "") -> Path:
    """Every logged value per step: raw (faint) and a moving average (solid)."""
    plt = pyplot()
    figure, axes = plt.subplots(1, len(STEP_PANELS), figsize=(18, 4))
    numbers = [row["step"] for row in steps]
    window = max(1, len(steps) // 50)
    for axis, (label, keys) in zip(axes, STEP_PANELS, strict=False):
        for key in keys:
            if not steps or key not in steps[0]:
                continue
            values = [row[key] for row in steps]
            line, = axis.plot(numbers, _smooth(values, window), label=key)
            if window > 1:
                axis.plot(numbers, values, color=line.get_color(), alpha=0.2, linewidth=0.6)
        axis.set_xlabel("step")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    return save_figure(figure, path, title)


class _Iterations(io.TextIOBase):
    """t-SNE's ``verbose=2`` report ("[t-SNE] Iteration 50: ...") turned into progress, the rest dropped."""

    def __init__(self, progress):
        self.progress = progress

    def write(self, text: str) -> int:
        for done in re.findall(r"Iteration (\d+):", text):
            self.progress.update(max(0, int(done) - self.progress.done))
        return len(text)


def embed(features: np.ndarray, method: str = "tsne", seed: int = 0, description: str = "t-SNE") -> np.ndarray:
    """2-D coordinates of ``features``: t-SNE (neighbourhoods) or PCA (the two widest directions).

    t-SNE takes tens of seconds on a loaded CPU (measured: 20-42 s for 280 points of 1280 values): its
    iterations are shown as they go (``common.progress``).
    """
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(features)
    if method == "tsne":
        from sklearn.manifold import TSNE

        from common.progress import Progress

        perplexity = float(min(30, max(2, (len(features) - 1) // 3)))
        tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed, verbose=2)
        with Progress(getattr(tsne, "max_iter", None) or 1000, description, unit="iterations") as progress:
            with contextlib.redirect_stdout(_Iterations(progress)):
                return tsne.fit_transform(features)
    raise ValueError(f"embedding must be 'tsne' or 'pca', not {method!r}")


def balanced_rows(count: int, limit: int, seed: int) -> np.ndarray:
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))


def plot_features(panels: list[tuple[str, np.ndarray, np.ndarray]], source_labels, target_labels,
                  class_names: list[str], path, method: str = "tsne", per_domain: int = 500,
                  seed: int = 0, title: str = "") -> Path:
    """One 2-D picture per (name, source features, target features): class = colour, domain = marker.

    Each panel embeds the same rows (at most ``per_domain`` per domain, seeded).
    """
    plt = pyplot()
    source_rows = balanced_rows(len(source_labels), per_domain, seed)
    target_rows = balanced_rows(len(target_labels), per_domain, seed + 1)
    figure, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5.5), squeeze=False)
    colours = plt.get_cmap("tab10")
    for axis, (name, source, target) in zip(axes[0], panels, strict=False):
        points = embed(np.concatenate([source[source_rows], target[target_rows]]).astype(np.float64), method, seed,
                       description=f"{method} of {name.split(':')[0]}")
        split = len(source_rows)
        for label, class_name in enumerate(class_names):
            chosen = np.asarray(source_labels)[source_rows] == label
            axis.scatter(*points[:split][chosen].T, s=10, marker="o", color=colours(label % 10), alpha=0.45,
                         label=f"{class_name} (source)")
            chosen = np.asarray(target_labels)[target_rows] == label
            axis.scatter(*points[split:][chosen].T, s=22, marker="x", color=colours(label % 10), alpha=0.9,
                         label=f"{class_name} (target)")
        axis.set_title(name)
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0][-1].legend(fontsize=7, loc="best", ncol=2)
    return save_figure(figure, path, title or f"features in 2-D ({method.upper()}): colour = class, o = source, x = target")


def plot_epochs(epochs: list[dict], path, title: str = "") -> Path:
    """Per-epoch means of the step values and the source-validation accuracy (never a target score)."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    numbers = [row["epoch"] for row in epochs]
    for key in ("l_c", "l_A", "l_d"):
        if epochs and key in epochs[0]:
            left.plot(numbers, [row[key] for row in epochs], marker=".", label=key)
    for key in ("accuracy", "source_val_accuracy", "discriminator_accuracy"):
        if epochs and key in epochs[0]:
            right.plot(numbers, [row[key] for row in epochs], marker=".", label=key)
    for axis, label in ((left, "loss"), (right, "accuracy")):
        axis.set_xlabel("epoch")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    return save_figure(figure, path, title)
