"""The digit images of the lesson, and their split into two tasks.

Blog post 003 trains its source model on MNIST; ``load_digits`` (8x8, 0-16
grey levels, bundled with scikit-learn) is the same question at a size that
trains in seconds on a laptop. Both come back as float32 images in [0, 1]
with a channel axis, so one network serves either.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from common.errors import UserError
from common.files import first_line, keras_home

DATASETS = ("digits", "mnist")
MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"


def load(name: str = "digits", mnist_file: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All images (n, h, w, 1) in [0, 1] and their labels 0-9."""
    if name == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return (bunch.images[..., None] / 16.0).astype("float32"), bunch.target.astype("int64")
    if name != "mnist":
        raise UserError(f"--dataset must be one of {', '.join(DATASETS)}, not {name!r}")
    if mnist_file is not None:
        path = Path(mnist_file).expanduser()
        if not path.is_file():
            raise UserError(f"{path} is not a file; pass the mnist.npz that Keras downloads from {MNIST_URL}")
    else:
        import keras

        try:
            path = Path(keras.utils.get_file("mnist.npz", origin=MNIST_URL,
                                             file_hash="731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"))
        except Exception as error:  # no network: say which file and where it goes
            raise UserError(
                f"could not download mnist.npz ({first_line(error)}). Without a network, put mnist.npz "
                f"({MNIST_URL}) in {keras_home() / 'datasets'}/ and rerun, or pass --mnist-file PATH, "
                "or use the bundled --dataset digits") from None
    with np.load(path) as f:
        x = np.concatenate([f["x_train"], f["x_test"]])
        y = np.concatenate([f["y_train"], f["y_test"]])
    return (x[..., None] / 255.0).astype("float32"), y.astype("int64")


@dataclasses.dataclass
class Task:
    """One task's images split three ways; labels renumbered 0..C-1 (``classes`` holds the digits)."""

    classes: tuple
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def few_shot(self, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """K training images per class, drawn with ``seed`` from the training split only."""
        rng = np.random.default_rng(seed)
        rows = []
        for c in range(len(self.classes)):
            members = np.flatnonzero(self.y_train == c)
            if len(members) < k:
                raise UserError(f"class {self.classes[c]} has {len(members)} training images, fewer than K = {k}")
            rows.append(rng.choice(members, k, replace=False))
        rows = np.concatenate(rows)
        return self.x_train[rows], self.y_train[rows]


def task(x, y, classes, split_seed: int = 0, val: float = 0.15, test: float = 0.3, limit: int | None = None) -> Task:
    """The images of ``classes``, split per class into train / validation / test.

    The split seed is fixed (not the run's seed): every seed of a run, and
    every run, scores on the same test images, so seeds differ only in what
    they should (initialisation, the K-shot draw).
    """
    rng = np.random.default_rng(split_seed)
    parts = {"train": [], "val": [], "test": []}
    for code, digit in enumerate(classes):
        members = rng.permutation(np.flatnonzero(y == digit))
        if limit is not None:
            members = members[:limit]
        n_test, n_val = int(round(test * len(members))), int(round(val * len(members)))
        if min(n_test, n_val, len(members) - n_test - n_val) < 1:
            raise UserError(f"digit {digit} has {len(members)} images: too few to split (raise --limit)")
        for name, rows in (("test", members[:n_test]), ("val", members[n_test:n_test + n_val]),
                           ("train", members[n_test + n_val:])):
            parts[name].append((rows, np.full(len(rows), code)))
    arrays = {}
    for name, chunks in parts.items():
        rows = np.concatenate([r for r, _ in chunks])
        arrays[f"x_{name}"], arrays[f"y_{name}"] = x[rows], np.concatenate([c for _, c in chunks])
    return Task(classes=tuple(int(c) for c in classes), **arrays)
