"""Input checks shared by the MMD functions, the estimators and the CLIs.

Every public entry point funnels its arrays through here so that bad input
fails early with a `ValueError` that names the argument and the problem,
instead of surfacing later as a NaN accuracy or a LAPACK error.  Nothing here
writes into the caller's arrays: conversions return new arrays or views that
are only ever read.
"""
from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils.multiclass import type_of_target


def check_features(X, name: str = "X", min_samples: int = 1) -> np.ndarray:
    """Return `X` as a 2-D float64 array, or raise a ValueError saying why not.

    float64 because the generalised eigenproblem of eq. 20 is badly
    conditioned in float32 (the eigenvalue gaps near k = 100 are < 1 %).
    """
    if isinstance(X, (str, bytes)):
        raise ValueError(f"{name} must be a 2-D array of numbers, got a string")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype.kind not in "biuf":
        raise ValueError(
            f"{name} must contain numbers, got dtype {arr.dtype} "
            "(labels or strings passed where features were expected?)")
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} has no features (shape {arr.shape})")
    if arr.shape[0] < min_samples:
        raise ValueError(
            f"{name} needs at least {min_samples} sample(s), got {arr.shape[0]}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr


def check_same_width(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{name_a} has {a.shape[1]} features but {name_b} has {b.shape[1]}; "
            "both domains must live in the same feature space")


def check_labels(y, n_samples: int, name: str = "ys", min_classes: int = 2):
    """Encode class labels of any values as 0..C-1.

    Labels may be any sortable discrete values: 1..10 as in the .mat files,
    0-based codes, negative integers or class names such as "cat".  What is
    rejected is what cannot be a class labelling: a single string instead of
    an array (e.g. a column name or a path passed by mistake), continuous
    floats, NaN, multi-output labels, a wrong length, or fewer than
    `min_classes` classes (a single class leaves nothing to align per class
    and nothing for 1-NN to decide).

    Returns (classes, codes) with classes[codes] == y.
    """
    if isinstance(y, (str, bytes)):
        raise ValueError(
            f"{name} must be an array of class labels, got the single string {y!r}")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:  # column vectors as stored in .mat files
        arr = arr.ravel()
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise ValueError(
            f"{name} has {arr.shape[0]} labels for {n_samples} samples")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite labels")
    if arr.dtype.kind == "O" and any(v is None for v in arr):
        raise ValueError(f"{name} contains missing (None) labels")
    kind = type_of_target(arr)
    if kind not in ("binary", "multiclass"):
        raise ValueError(
            f"{name} must hold discrete class labels, got target type '{kind}'")
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError:
        raise ValueError(f"{name} mixes label types that cannot be ordered") from None
    if classes.shape[0] < min_classes:
        raise ValueError(
            f"{name} has {classes.shape[0]} class(es); at least {min_classes} are needed")
    return classes, codes.ravel()


def check_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)
