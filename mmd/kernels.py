"""Kernels for the MMD of eq. 4, as TensorFlow functions.

MMD compares two samples through the mean of a feature map phi in a
reproducing-kernel Hilbert space; the kernel k(x, y) = <phi(x), phi(y)> is all
that is ever evaluated.  The functions below return Gram matrices as
`tf.Tensor`s built from differentiable TensorFlow ops, so an MMD computed with
them can be minimised by gradient descent (a deep-adaptation loss).

The bandwidth of the RBF kernel decides what MMD can see: too narrow and every
pair of points looks unrelated, too wide and every pair looks alike.  The
median heuristic (bandwidth = median pairwise distance of the pooled sample)
is the usual default; the multi-kernel family (MK-MMD, Gretton et al. 2012)
hedges the choice by averaging RBF kernels at several bandwidths around it.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from .validation import InputError

#: names accepted by `make_kernel` (and therefore by `mmd2` / `mmd_test`)
KERNEL_NAMES = ("linear", "rbf", "polynomial", "multi-rbf")

#: the median heuristic looks at no more than this many points, so that it
#: stays O(1) in memory on large samples; the median of 500k distances is a
#: stable estimate already.
MEDIAN_MAX_POINTS = 1000


def as_tensor(X) -> tf.Tensor:
    """Keep float tensors as they are (float32 losses stay float32); anything
    else becomes float64, the precision the solvers need."""
    if isinstance(X, (tf.Tensor, tf.Variable)):
        return X if X.dtype.is_floating else tf.cast(X, tf.float64)
    return tf.convert_to_tensor(np.asarray(X, dtype=np.float64))


def _scalar(value, dtype) -> tf.Tensor:
    """A hyper-parameter in the data's dtype.  (tf.cast(0.3, tf.float64)
    would round 0.3 through float32 first: a 1e-8 error in every kernel.)"""
    if isinstance(value, (tf.Tensor, tf.Variable)):
        return tf.cast(value, dtype)
    return tf.constant(float(value), dtype=dtype)


def squared_distances(X, Y=None) -> tf.Tensor:
    """||x_i - y_j||^2 through inner products (one matmul instead of an
    (m, n, d) difference tensor); clipped at 0 because rounding can make the
    expansion slightly negative for identical points."""
    X = as_tensor(X)
    Y = X if Y is None else tf.cast(as_tensor(Y), X.dtype)
    xx = tf.reduce_sum(X * X, axis=1)[:, None]
    yy = tf.reduce_sum(Y * Y, axis=1)[None, :]
    return tf.maximum(xx + yy - 2.0 * tf.matmul(X, Y, transpose_b=True), 0.0)


def median_squared_distance(X, Y=None) -> tf.Tensor:
    """The median of the positive squared distances between distinct points of
    the pooled sample (X, Y): a tensor, so it also runs inside a compiled step.

    The strict upper triangle of the distances, zeros dropped, at most
    `MEDIAN_MAX_POINTS` evenly spaced points; for an even count the mean of the
    two middle values (numpy's median); 0.5 when every point is the same, so
    that `median_heuristic` gives gamma = 1 there.  No gradient flows through
    it: a bandwidth is chosen from the data, not trained.

    Example: the corners (0, 0), (2, 0), (0, 2), (2, 2) are 4 or 8 apart in
    squared distance (four 4s, two 8s): the median is 4."""
    Z = as_tensor(X)
    if Y is not None:
        Z = tf.concat([Z, tf.cast(as_tensor(Y), Z.dtype)], axis=0)
    Z = tf.stop_gradient(Z)
    n = Z.shape[0]
    if n is not None and n > MEDIAN_MAX_POINTS:  # evenly spaced, deterministic subsample
        Z = tf.gather(Z, np.linspace(0, n - 1, MEDIAN_MAX_POINTS).astype(np.int64))
    d2 = squared_distances(Z)
    rows = tf.shape(d2)[0]
    upper = tf.linalg.band_part(tf.ones([rows, rows], tf.bool), 0, -1)
    upper = tf.logical_and(upper, tf.logical_not(tf.eye(rows, dtype=tf.bool)))
    values = tf.sort(tf.boolean_mask(d2, tf.logical_and(upper, d2 > 0)))
    size = tf.size(values)
    middle = size // 2

    def median():
        upper_middle = values[middle]
        lower_middle = values[tf.maximum(middle - 1, 0)]
        return tf.where(size % 2 == 1, upper_middle, (lower_middle + upper_middle) / 2)

    return tf.cond(size > 0, median, lambda: tf.constant(0.5, d2.dtype))


def median_heuristic(X, Y=None) -> float:
    """gamma = 1 / (2 median^2) with `median` the median distance between
    distinct points of the pooled sample (Gretton et al. 2012); 1 when all
    points are identical (any bandwidth gives MMD = 0 then).

    Returned as a Python float: the bandwidth is a choice made from the data,
    not a quantity to differentiate through (`median_squared_distance` is the
    same median as a tensor, for a bandwidth chosen per batch in a graph)."""
    return float(1.0 / (2.0 * float(median_squared_distance(X, Y))))


def linear_kernel(X, Y=None) -> tf.Tensor:
    """k(x, y) = x.y; MMD with it is the distance between the plain means."""
    X = as_tensor(X)
    Y = X if Y is None else tf.cast(as_tensor(Y), X.dtype)
    return tf.matmul(X, Y, transpose_b=True)


def rbf_kernel(X, Y=None, gamma=1.0) -> tf.Tensor:
    """k(x, y) = exp(-gamma ||x - y||^2): characteristic, so MMD = 0 only when
    the two distributions are equal."""
    d2 = squared_distances(X, Y)
    return tf.exp(-_scalar(gamma, d2.dtype) * d2)


def polynomial_kernel(X, Y=None, degree=3, gamma=None, coef0=1.0) -> tf.Tensor:
    """k(x, y) = (gamma x.y + coef0)^degree: matches moments up to `degree`.
    gamma defaults to 1 / n_features, as in scikit-learn."""
    K = linear_kernel(X, Y)
    if gamma is None:
        gamma = 1.0 / int(as_tensor(X).shape[1])
    return (_scalar(gamma, K.dtype) * K + _scalar(coef0, K.dtype)) ** degree


def rbf_bandwidths(base_gamma: float, n_kernels: int = 5, factor: float = 2.0) -> list[float]:
    """`n_kernels` gammas spaced by `factor` around `base_gamma` (odd counts
    put `base_gamma` in the middle): 5 kernels, factor 2 -> base * [1/4 .. 4]."""
    if n_kernels < 1:
        raise InputError(f"n_kernels must be >= 1, got {n_kernels}")
    if not factor > 0:
        raise InputError(f"factor must be > 0, got {factor}")
    powers = np.arange(n_kernels) - (n_kernels - 1) / 2.0
    return [float(base_gamma * factor ** p) for p in powers]


def multi_rbf_kernel(X, Y=None, gammas=(0.25, 0.5, 1.0, 2.0, 4.0), weights=None) -> tf.Tensor:
    """Convex combination of RBF kernels (MK-MMD): a sum of characteristic
    kernels with non-negative weights is characteristic, and no single
    bandwidth has to be right."""
    gammas = [float(g) for g in gammas]
    if weights is None:
        weights = [1.0 / len(gammas)] * len(gammas)
    if len(weights) != len(gammas):
        raise InputError(f"{len(weights)} weights for {len(gammas)} kernels")
    if any(w < 0 for w in weights):
        raise InputError("multi-kernel weights must be non-negative")
    d2 = squared_distances(X, Y)
    return tf.add_n([w * tf.exp(-g * d2) for g, w in zip(gammas, weights, strict=False)])


class Kernel:
    """A kernel with its bandwidths fixed, evaluable on all pairs (`gram`,
    for the quadratic-time estimators) or on matched rows only (`paired`, for
    the linear-time estimator, which must not build an m x n matrix)."""

    name = "custom"

    def __init__(self, fn, **params):
        self.fn = fn
        self.params = params

    def gram(self, X, Y=None) -> tf.Tensor:
        return self.fn(X, X if Y is None else Y, **self.params)

    def paired(self, X, Y) -> tf.Tensor:
        """k(x_i, y_i) for matched rows; generic fallback via the Gram
        diagonal (quadratic, but correct for any user kernel)."""
        return tf.linalg.diag_part(self.gram(X, Y))

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"


class _Builtin(Kernel):
    def paired(self, X, Y) -> tf.Tensor:
        X = as_tensor(X)
        Y = tf.cast(as_tensor(Y), X.dtype)
        dot = tf.reduce_sum(X * Y, axis=1)
        d2 = tf.reduce_sum(tf.square(X - Y), axis=1)
        p = self.params
        if self.name == "linear":
            return dot
        if self.name == "rbf":
            return tf.exp(-_scalar(p["gamma"], d2.dtype) * d2)
        if self.name == "polynomial":
            gamma = p["gamma"] if p["gamma"] is not None else 1.0 / int(X.shape[1])
            return (_scalar(gamma, dot.dtype) * dot + _scalar(p["coef0"], dot.dtype)) ** p["degree"]
        weights = p["weights"] or [1.0 / len(p["gammas"])] * len(p["gammas"])
        return tf.add_n([w * tf.exp(-g * d2) for g, w in zip(p["gammas"], weights, strict=False)])


def make_kernel(kernel="rbf", X=None, Y=None, *, gamma=None, degree=3, coef0=1.0,
                gammas=None, weights=None, n_kernels=5, factor=2.0) -> Kernel:
    """Resolve a kernel name (or callable) and its bandwidth into a `Kernel`.

    `gamma=None` or `"median"` applies the median heuristic to the pooled
    sample (X, Y), which must then be given.  A callable `kernel(X, Y)` that
    returns a Gram tensor is wrapped as is.
    """
    if isinstance(kernel, Kernel):
        return kernel
    if callable(kernel):
        return Kernel(kernel)
    if not isinstance(kernel, str) or kernel not in KERNEL_NAMES:
        raise InputError(
            f"unknown kernel {kernel!r}; expected one of {', '.join(KERNEL_NAMES)} or a callable")

    def _median():
        if X is None:
            raise InputError("the median heuristic needs the data: pass X (and Y)")
        return median_heuristic(X, Y)

    if kernel == "linear":
        k = _Builtin(linear_kernel)
    elif kernel == "rbf":
        if gamma is None or (isinstance(gamma, str) and gamma == "median"):
            gamma = _median()
        elif isinstance(gamma, str) or not float(gamma) > 0:
            raise InputError(f"gamma must be a positive number or 'median', got {gamma!r}")
        k = _Builtin(rbf_kernel, gamma=float(gamma))
    elif kernel == "polynomial":
        if gamma is not None and (isinstance(gamma, str) or not float(gamma) > 0):
            raise InputError(f"gamma must be a positive number or None, got {gamma!r}")
        k = _Builtin(polynomial_kernel, degree=int(degree), gamma=gamma, coef0=float(coef0))
    else:  # multi-rbf
        if gammas is None:
            base = _median() if gamma is None or gamma == "median" else float(gamma)
            gammas = rbf_bandwidths(base, n_kernels, factor)
        k = _Builtin(multi_rbf_kernel, gammas=[float(g) for g in gammas],
                     weights=None if weights is None else [float(w) for w in weights])
        if weights is not None and len(weights) != len(gammas):
            raise InputError(f"{len(weights)} weights for {len(gammas)} kernels")
    k.name = kernel
    return k
