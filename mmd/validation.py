"""Input checks shared by the MMD functions, the estimators and the CLIs.

Every public entry point funnels its arrays through here so that bad input
fails early with an `InputError` that names the argument and the problem,
instead of surfacing later as a NaN accuracy or a LAPACK error.

`InputError` is both the project's `common.errors.UserError` (the commands
print it as one line and exit with status 2) and a `ValueError` (what
scikit-learn code and users of an estimator expect).  A plain `ValueError`
from anywhere else is a bug and keeps its traceback.  Nothing here writes
into the caller's arrays.

The estimators' arrays go through scikit-learn's own `validate_data` /
`check_array` (`validate_fit_input`, `validate_predict_input`,
`validate_target_features`), so NaN, inf, complex, sparse, empty and
mis-shaped input gets scikit-learn's wording, which `check_estimator` and
scikit-learn users rely on.  Only its layout is changed: the message is
joined onto one line, the quoted array and the NaN paragraph that
recommends other estimators are dropped, and it is raised as an
`InputError` (or `InputTypeError` where scikit-learn raises a TypeError,
as for sparse input), so the commands still print one line.
"""
from __future__ import annotations

import numbers
import re

import numpy as np
from sklearn.utils import check_array
from sklearn.utils.multiclass import check_classification_targets, type_of_target
from sklearn.utils.validation import validate_data

from common.errors import UserError


class InputError(UserError, ValueError):
    """Bad input to an `mmd` function, estimator or command."""


class InputTypeError(InputError, TypeError):
    """Input of the wrong kind where scikit-learn raises a TypeError (sparse
    matrices, objects that are not numbers): still a TypeError for
    scikit-learn callers, still one line on the command line."""


def _one_line(exc: Exception) -> str:
    # the quoted array may span lines (and contain "1." at a line's end),
    # so it is cut up to scikit-learn's next sentence
    text = re.sub(r"\narray=.*?\.\n(?=Reshape)|\narray=.*\Z", "\n", str(exc), flags=re.S)
    kept = [line for line in text.splitlines()
            if "does not accept missing values encoded as NaN" not in line]
    return " ".join(" ".join(kept).split())


def _sklearn(call, *args, **kwargs):
    """Run a scikit-learn check; its ValueError / TypeError becomes an
    InputError / InputTypeError with the same (one-line) text."""
    try:
        return call(*args, **kwargs)
    except InputError:
        raise
    except TypeError as exc:
        raise InputTypeError(_one_line(exc)) from None
    except ValueError as exc:
        raise InputError(_one_line(exc)) from None


def _reject_strings(X, name: str) -> None:
    """Text where numbers belong is a mistake (labels or a file name passed
    as features), although numpy could parse "0.5"; scikit-learn's float
    conversion would accept it silently."""
    if isinstance(X, (str, bytes)):
        raise InputError(f"{name} must be a 2-D array of numbers, got a string")
    dtype = getattr(X, "dtype", None)
    if dtype is None and isinstance(X, (list, tuple)):
        try:
            dtype = np.asarray(X).dtype
        except Exception:   # ragged: scikit-learn's conversion reports it
            return
    if getattr(dtype, "kind", None) in ("U", "S"):
        raise InputError(f"{name} must contain numbers, got dtype {dtype} "
                         "(labels or strings passed where features were expected?)")


def validate_fit_input(estimator, X, y, min_samples: int = 1):
    """X (n, d) float64 and the source labels of `fit`, checked by
    scikit-learn's `validate_data` (which also sets `n_features_in_` and
    `feature_names_in_`, and refuses y=None when the estimator's tags say
    y is required) and `check_classification_targets`.

    Labels may be any sortable discrete values; one class is allowed.
    Returns (X, classes, codes) with classes[codes] == y, or (X, None, None)
    without y.
    """
    _reject_strings(X, "X")
    if isinstance(y, (str, bytes)):
        raise InputError(f"y must be an array of class labels, got the single string {y!r}")
    out = _sklearn(validate_data, estimator, X, y, dtype=np.float64,
                   ensure_min_samples=min_samples)
    if y is None:
        return out, None, None
    X, y = out
    _sklearn(check_classification_targets, y)
    try:
        classes, codes = np.unique(y, return_inverse=True)
    except TypeError:
        raise InputError("y mixes label types that cannot be ordered") from None
    return X, classes, codes.ravel()


def validate_predict_input(estimator, X):
    """X of `transform` / `predict`: scikit-learn's checks, including the
    number of features seen in fit (`n_features_in_`)."""
    _reject_strings(X, "X")
    return _sklearn(validate_data, estimator, X, dtype=np.float64, reset=False)


def validate_target_features(estimator, Xt, n_features: int):
    """The unlabelled target samples: scikit-learn's `check_array` (named
    Xt in its messages) and the source's feature space."""
    _reject_strings(Xt, "Xt")
    Xt = _sklearn(check_array, Xt, dtype=np.float64, input_name="Xt", estimator=estimator)
    if Xt.shape[1] != n_features:
        raise InputError(
            f"Xt has {Xt.shape[1]} features but X has {n_features}; "
            "both domains must live in the same feature space")
    return Xt


def check_features(X, name: str = "X", min_samples: int = 1) -> np.ndarray:
    """Return `X` as a 2-D, finite float64 array, or raise an InputError.

    float64 because the generalised eigenproblem of eq. 20 is badly
    conditioned in float32 (the eigenvalue gaps near k = 100 are < 1 %).
    """
    if isinstance(X, (str, bytes)):
        raise InputError(f"{name} must be a 2-D array of numbers, got a string")
    try:
        kind = np.asarray(X).dtype.kind
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} could not be read as an array: {exc}") from None
    if kind not in "biuf":
        raise InputError(f"{name} must contain numbers, got dtype {np.asarray(X).dtype} "
                         "(labels or strings passed where features were expected?)")
    try:
        return check_array(X, dtype=np.float64, ensure_min_samples=min_samples,
                           input_name=name)
    except ValueError as exc:
        message = " ".join(str(exc).split())   # one line for the commands
        message = message.split(" array=")[0].rstrip(":, ")   # not the whole array scikit-learn quotes
        raise InputError(message if name in message else f"{name}: {message}") from None


def check_same_width(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise InputError(
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
        raise InputError(
            f"{name} must be an array of class labels, got the single string {y!r}")
    arr = np.asarray(y)
    if arr.ndim == 2 and arr.shape[1] == 1:  # column vectors as stored in .mat files
        arr = arr.ravel()
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n_samples:
        raise InputError(f"{name} has {arr.shape[0]} labels for {n_samples} samples")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or infinite labels")
    if arr.dtype.kind == "O" and any(v is None for v in arr):
        raise InputError(f"{name} contains missing (None) labels")
    kind = type_of_target(arr)
    if kind not in ("binary", "multiclass"):
        raise InputError(f"{name} must hold discrete class labels, got target type '{kind}'")
    try:
        classes, codes = np.unique(arr, return_inverse=True)
    except TypeError:
        raise InputError(f"{name} mixes label types that cannot be ordered") from None
    if classes.shape[0] < min_classes:
        raise InputError(
            f"{name} has {classes.shape[0]} class(es); at least {min_classes} are needed")
    return classes, codes.ravel()


def check_int(value, name: str, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InputError(f"{name} must be <= {maximum}, got {value}")
    return int(value)


def check_positive(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value <= 0:
        raise InputError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def check_choice(value, name: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        raise InputError(f"unknown {name} {value!r}; expected one of {', '.join(choices)}")
    return value
