"""TCA, JDA and BDA: adaptation by a linear map A that minimises MMD.

Section 12.3 of the textbook, equation by equation:

* eq. 11, marginal MMD matrix M0: 1/ns^2 on source-source, 1/nt^2 on
  target-target, -1/(ns nt) across.  M0 = e0 e0^T with
  e0 = [1/ns ... 1/ns, -1/nt ... -1/nt].  tr(A^T X M0 X^T A) is the squared
  distance of the mapped means, the end of eq. 13's derivation (whose middle
  lines misplace A^T ... A: E4).
* eq. 12, conditional matrices Mc: the same construction restricted to the
  source samples of class c and the target samples pseudo-labelled c,
  Mc = ec ec^T.  This is the MMD of the class-conditionals P(x|y=c); eq. 8
  writes it as P(y|x) and the Bayes formula before it lacks P_t(x) (E2, E3).
* eq. 10, M = (1 - mu) M0 + mu sum_c Mc; mu = 0.5 is JDA, any mu is BDA,
  mu = 0 (and no labels) is TCA.
* eq. 18, minimise tr(A^T X M X^T A) + lambda ||A||_F^2 subject to the
  scatter constraint A^T X H X^T A = I, with X H X^T the scatter of eq. 15
  and H = I - (1/n) 1 1^T, n = ns + nt (the text's H, eq. 16 and its "A is
  Hermitian" are wrong: docs/textbook-errata.md, E6-E8).
* eq. 20, the Lagrangian's stationarity condition, the generalised eigenproblem
  (X M X^T + lambda I) A = X H X^T A Phi (the text's Lagrangian eq. 19 is
  misprinted: E9); A is the eigenvectors of the k smallest eigenvalues
  (12.3.4's "first m eigenvalues": E10).
  With a kernel, X becomes the n x n kernel matrix K.
* 12.3.3-12.3.4, the target pseudo labels come from a 1-NN classifier trained
  on the transformed source and are refined by iterating.  Beyond the text,
  a few target samples with known labels (`fit`'s `labelled_index`,
  `labelled_y`) keep their true class in eq. 12 from the first M on and
  train the 1-NN beside the source.

How it is solved, and why (the eigensolvers are in `mmd.eigensolvers`):

* No n x n matrix is formed in the primal case.  X M X^T = U diag(w) U^T with
  the C + 1 columns U = X [e0, e1, ... eC], each a difference of two group
  means; X H X^T is the scatter of the data centred over all n samples.
  The Frobenius norm of M needed for the protocol's scaling comes from the
  (C+1) x (C+1) Gram matrix E^T E, known from the group sizes.
* Eq. 20 is solved by `Eq20Solver`: by default the iterative solver, warm-
  started from the previous JDA iteration, to a residual of `tol` (TCA's
  single problem exactly); with `solver="exact"` by a dense solve of the k
  wanted eigenpairs every iteration.  B is formed once per fit; on a CPU the
  dense products and eigen-solves are NumPy / LAPACK calls (one BLAS
  thread, `mmd.eigensolvers.blas_threads`), the iterative solver's steps
  too (`mmd.lapack_steps`; TensorFlow graphs on a GPU), the projection and
  the 1-NN compiled TensorFlow graphs, traced once per process (`warm_up`).
* Nystrom (landmark) kernels: with `n_landmarks=m`, K is replaced by its
  Nystrom approximation through m landmark samples,
  K ~ K_nm K_mm^-1 K_mn = Phi Phi^T with Phi = K_nm K_mm^-1/2 (n x m), and
  the kernel problem with that K is solved exactly: its solution lies in
  span(Phi), where it is the primal problem on the n x m design
  P = Phi (Phi^T Phi)^1/2 (P P^T = K^2, as for the exact kernel's P = K).
  Eq. 20 is then an m x m problem: time O(n m^2 + m^3), memory O(n m).
  With m = n (every sample a landmark) it is the exact kernel problem.
  `transform` evaluates new samples against the same landmarks.
* The JDA iteration is a deterministic map from one pseudo labelling to the
  next.  Once a labelling repeats (a fixed point, or a cycle such as two
  samples swapping back and forth), every later iteration is known, so the
  remaining solves are skipped and their results filled in: the fitted model
  is the one `n_iter` full iterations would produce.

Faithfulness to the reference protocol of the published tables: M is built as
C * M0 + sum_c Mc (eq. 10 with mu = 0.5, the marginal term weighted by the
number of classes) and scaled to unit Frobenius norm; samples are scaled to
unit L2 norm before and after the projection; eigenvectors are scaled to unit
2-norm.  Each iteration's M is built afresh from the current pseudo labels.

Inside scikit-learn's model-selection tools give the target domain at
construction, `JDA(Xt=Xt)`, not to `fit`: `GridSearchCV` and
`cross_val_score` cut every fit argument as long as the training data into
folds, so `fit(Xs, ys, Xt=Xt)` would silently adapt each fold to a slice of
the target whenever len(Xt) == len(Xs).

The estimators follow scikit-learn's estimator contract (tested with
`parametrize_with_checks` in tests/test_mmd_estimator_checks.py): inputs go
through scikit-learn's `validate_data`, so bad arrays get its messages;
`fit(X, y)` without target samples means no adaptation (X is its own target,
see `fit`); `n_components` larger than the problem's rank is clipped
(`n_components_`); one class in y is allowed.
"""
from __future__ import annotations

import time

import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from . import eigensolvers as _eig
from . import kernels as _kernels
from .eigensolvers import SOLVERS, Eq20Solver
from .validation import (
    InputError,
    check_choice,
    check_int,
    check_labels,
    check_positive,
    validate_fit_input,
    validate_predict_input,
    validate_target_features,
)

#: `kernel` values of the estimators: the primal (linear map of the features,
#: d x k) problem of the papers' tables, or a kernelised one
SOLVER_KERNELS = ("primal", "linear", "rbf")

#: how `n_landmarks` landmarks are drawn from the pooled samples
LANDMARK_METHODS = ("uniform", "kmeans++")

#: largest block (in matrix entries) of the row-blocked kernel evaluation and
#: 1-NN search: 2^24 float64 = 128 MiB, so no step holds an n x n matrix
BLOCK_ENTRIES = 2 ** 24


# --------------------------------------------------------------------------
# building blocks (public so that tests can check them against the equations)
# --------------------------------------------------------------------------

def unit_rows(X: tf.Tensor) -> tf.Tensor:
    """Scale each sample to unit L2 norm; an all-zero sample stays zero
    (no NaN) - it can arise from a constant feature vector after z-scoring."""
    norms = tf.norm(X, axis=1, keepdims=True)
    return X / tf.where(norms > 0, norms, tf.ones_like(norms))


def _unit_rows_tensor(X: np.ndarray, private: bool) -> tf.Tensor:
    """`unit_rows` of a float64 array as a tensor, with one fresh buffer of
    X's size fewer (on the shared machine each 13 MB buffer of C->A cost
    1-100 ms of page faults): a `private` X (the fit's own vstack of the
    domains) is scaled in place, the caller's arrays never."""
    if not _eig.lapack_preferred():
        return unit_rows(tf.constant(X))
    norms = np.sqrt(np.einsum("ij,ij->i", X, X))[:, None]
    norms = np.where(norms > 0, norms, 1.0)
    if private:
        X /= norms
        return tf.constant(X)
    return tf.constant(X / norms)


def mmd_directions(P, ns: int, ys_codes, yt_codes, n_classes: int, mu: float):
    """Low-rank factors of X M X^T (eq. 10-12): U (p, r), w (r,) and ||M||_F
    with X M X^T = U diag(w) U^T, r <= C + 1; the protocol's matrix is
    U diag(w / ||M||_F) U^T.

    P (n, p) holds the ns source rows, then the target rows.  M = E diag(w) E^T
    with one column of E (n, r) per term: e0 = [1/ns ..., -1/nt ...] (eq. 11,
    weighted C (1 - mu), the reference's C * M0 at mu = 0.5) and ec = 1/ns_c
    on the source samples of class c, -1/nt_c on the target samples
    pseudo-labelled c (eq. 12, weighted mu); U = P^T E.  E^T E is known from
    the group sizes: e0.e0 = e0.ec = 1/ns + 1/nt, ec.ec' = [c = c']
    (1/ns_c + 1/nt_c), and ||E W E^T||_F^2 = w^T (G o G) w, so no n x n
    matrix is formed.  `yt_codes=None` (no pseudo labels yet) gives the
    marginal term only; a class that no target sample is pseudo-labelled
    with contributes nothing (eq. 12 would divide by nt_c = 0); mu = 1
    without labels leaves M = 0.

    A code of -1 marks a target sample of unknown class (semi-supervised
    fits before the first pseudo labels: only the few labelled target rows
    have a class): it is in no class's term, and nt_c counts the target
    samples assigned to c, so each ec still holds the mean of the target
    samples of class c (the Gram entries above hold unchanged).
    """
    n = int(P.shape[0])
    nt = n - ns
    C = n_classes
    columns, weights, sizes = [], [], []
    if mu < 1.0:
        e0 = np.full(n, 1.0 / ns)
        e0[ns:] = -1.0 / nt
        columns.append(e0[:, None])
        # C (1 - mu); the scale of a lone term is undone by the Frobenius
        # normalisation, so TCA without labels (C = 0) weighs it 1 - mu
        weights.append(max(C, 1) * (1.0 - mu))
        sizes.append(1.0 / ns + 1.0 / nt)
    if yt_codes is not None and mu > 0.0:
        ys_codes, yt_codes = np.asarray(ys_codes), np.asarray(yt_codes)
        ns_c = np.bincount(ys_codes, minlength=C)
        nt_c = np.bincount(yt_codes[yt_codes >= 0], minlength=C)   # -1: class unknown
        kept = np.flatnonzero((ns_c > 0) & (nt_c > 0))  # empty (pseudo) class: no term, no 1/0
        column = np.full(C, -1)
        column[kept] = np.arange(len(kept))
        Ec = np.zeros((n, len(kept)))
        for rows, codes, counts, sign in ((np.arange(ns), ys_codes, ns_c, 1.0),
                                          (np.arange(ns, n), yt_codes, nt_c, -1.0)):
            inside = codes >= 0
            inside[inside] = column[codes[inside]] >= 0
            Ec[rows[inside], column[codes[inside]]] = sign / counts[codes[inside]]
        columns.append(Ec)
        weights += [mu] * len(kept)
        sizes += list(1.0 / ns_c[kept] + 1.0 / nt_c[kept])
    if not columns:
        return np.zeros((int(P.shape[1]), 0)), np.zeros(0), 0.0
    w = np.asarray(weights)
    G = np.diag(sizes)
    if mu < 1.0:
        G[0, 1:] = G[1:, 0] = 1.0 / ns + 1.0 / nt
    fro = float(np.sqrt(max(w @ (G * G) @ w, 0.0)))
    E = np.hstack(columns)
    if isinstance(P, np.ndarray):       # the CPU path: one BLAS product, no tensor copies
        return P.T @ E, w, fro
    return tf.matmul(P, tf.constant(E), transpose_a=True), w, fro


def select_landmarks(X, n_landmarks: int, method: str = "uniform", random_state=None):
    """Row indices of `n_landmarks` landmark samples of X (n, d), in the
    order drawn.

    "uniform" draws them without replacement; "kmeans++" spreads them by
    k-means++ seeding (Arthur & Vassilvitskii 2007: each next landmark drawn
    with probability proportional to its squared distance to the nearest
    one chosen), which covers small clusters a uniform draw can miss.
    """
    rng = check_random_state(random_state)
    n = int(X.shape[0])
    if method == "uniform":
        return rng.choice(n, n_landmarks, replace=False)
    # Written here rather than taken from sklearn.cluster.kmeans_plusplus:
    # scikit-learn's greedy variant tries 2 + log(m) candidates per landmark
    # and took 109 s for m = 1000 landmarks of 100,000 x 256 samples; one
    # TensorFlow distance update per landmark (float32: the draw only needs
    # rough distances, and each update reads all of X) took 30 s.
    X = tf.cast(tf.convert_to_tensor(X), tf.float32)
    sq = tf.reduce_sum(X * X, axis=1)

    def squared_distances_to(i):
        return tf.maximum(sq - 2.0 * tf.linalg.matvec(X, X[i]) + sq[i], 0.0)

    chosen = [int(rng.randint(n))]
    d2 = squared_distances_to(chosen[0])
    for _ in range(n_landmarks - 1):
        weights = d2.numpy()
        weights[chosen] = 0.0   # duplicates of a chosen sample are never drawn twice
        total = weights.sum()
        if total > 0:
            i = int(np.searchsorted(np.cumsum(weights), rng.uniform(0, total), side="right"))
            i = min(i, n - 1)
        else:   # every remaining sample coincides with a landmark
            i = int(rng.choice(np.setdiff1d(np.arange(n), chosen)))
        chosen.append(i)
        d2 = tf.minimum(d2, squared_distances_to(i))
    return np.asarray(chosen)


def kernel_rows(X, L, kernel: str, gamma: float | None = None, T=None) -> tf.Tensor:
    """k(X, L) (n, m), or k(X, L) T when the map T (m, r) is given, evaluated
    in row blocks so that no temporary exceeds BLOCK_ENTRIES entries."""
    n, m = int(X.shape[0]), int(L.shape[0])
    rows = max(1, BLOCK_ENTRIES // max(m, 1))
    blocks = []
    for start in range(0, n, rows):
        Xb = X[start:start + rows]
        K = (_kernels.linear_kernel(Xb, L) if kernel == "linear"
             else _kernels.rbf_kernel(Xb, L, gamma=gamma))
        blocks.append(K if T is None else tf.matmul(K, T))
    return blocks[0] if len(blocks) == 1 else tf.concat(blocks, axis=0)


def nystrom_map(X, L, kernel: str, gamma: float | None = None, rcond: float = 1e-10):
    """T (m, r) with k(X, L) T = Phi (Phi^T Phi)^1/2, Phi = K_nm K_mm^-1/2: the
    design of the kernel problem with K replaced by its Nystrom approximation
    Phi Phi^T (module docstring).

    K_mm^-1/2 is taken on the eigenvalues above rcond times the largest (r of
    them; r = m unless landmarks coincide or the kernel has low rank, as the
    linear kernel does).  Phi^T Phi = K_mm^-1/2 K_mn K_nm K_mm^-1/2 is summed
    over row blocks of X: O(n m^2) time, no n x m matrix kept.
    """
    with _eig.blas_threads():
        lam, U = _eig.symmetric_eigh(kernel_rows(L, L, kernel, gamma))   # LAPACK on a CPU
    keep = lam > rcond * lam.max()
    S = tf.constant(U[:, keep] / np.sqrt(lam[keep])[None, :])
    n, m = int(X.shape[0]), int(L.shape[0])
    rows = max(1, BLOCK_ENTRIES // max(m, 1))
    G = None
    for start in range(0, n, rows):
        Phi = kernel_rows(X[start:start + rows], L, kernel, gamma, S)
        part = tf.matmul(Phi, Phi, transpose_a=True)
        G = part if G is None else G + part
    with _eig.blas_threads():
        g, V = _eig.symmetric_eigh(0.5 * (G + tf.transpose(G)))
    root = (V * np.sqrt(np.maximum(g, 0.0))[None, :]) @ V.T
    return tf.matmul(S, tf.constant(root))


def centred_scatter(P, mean):
    """(P - mean)^T (P - mean) = X H X^T, (p, p), in row blocks (the centred
    copy of P is never held whole).

    On the CPU path (`mmd.eigensolvers.lapack_preferred`) a NumPy array
    from OpenBLAS's syrk (NumPy calls it for `A.T @ A`: half the flops of a
    general product, which is what TensorFlow's float64 matmul does; 0.028
    against 0.06-0.1 s for C->A's 2081 x 800 rows, mmd/README.md), else a
    tensor.  Float64: the rank rule of `Eq20Solver` reads B's smallest
    eigenvalues at dim * eps of the largest, which float32's rounding
    (1e-7) would bury."""
    n, p = int(P.shape[0]), int(P.shape[1])
    rows = max(1, BLOCK_ENTRIES // max(p, 1))
    if _eig.lapack_preferred():
        P, mean = np.asarray(P), np.asarray(mean)
        B = np.zeros((p, p))
        with _eig.blas_threads():
            for start in range(0, n, rows):
                Pc = P[start:start + rows] - mean
                B += Pc.T @ Pc
        return B
    B = None
    for start in range(0, n, rows):
        Pc = P[start:start + rows] - mean
        part = tf.matmul(Pc, Pc, transpose_a=True)
        B = part if B is None else B + part
    return B


def centred_gram(Pc):
    """Pc Pc^T (n, n) of the centred data, the Gram side's B (n < p): a
    NumPy syrk on the CPU path, as `centred_scatter`."""
    if _eig.lapack_preferred():
        Pc = np.asarray(Pc)
        with _eig.blas_threads():
            return Pc @ Pc.T
    return tf.matmul(Pc, Pc, transpose_b=True)


class _NearestNeighbour:
    """1-NN on the adapted features, the classifier of the papers' tables.

    Private: it is the fit's internal per-iteration classifier on features
    the fit has already checked, not an estimator of its own (no
    parameters, no input validation); `KNeighborsClassifier(n_neighbors=1)`
    is the public equivalent, and `classifier=` of the estimators takes it.

    Written in TensorFlow, not scikit-learn's KNeighborsClassifier, because
    it runs once per JDA iteration: ||a - b||^2 = ||b||^2 - 2 a.b + const(a)
    reduces it to one matmul, and on the 1123 x 958 x 100 problem of C->A it
    took 16 ms against 26 ms for KNeighborsClassifier(1, algorithm="brute")
    (best of 15, same machine).  The distances are searched in float32
    with a float64 recheck of every query whose winner a rounding error
    could change (`_nearest`): the float64 search's labels, 5-10 ms instead
    of 9-17 ms on C->A under the shared machine's load.  Queries are
    processed in row blocks (at most
    BLOCK_ENTRIES distances at a time), so n = 100,000 needs no n x n matrix.
    Ties go to the first training sample, as in scikit-learn.
    """

    def fit(self, Z, y):
        self.Z_ = tf.convert_to_tensor(Z, tf.float64)
        # the float32 copy and the squared norms, once for every query block
        self.Z32_, self.sq_ = _reference_parts(self.Z_)
        self.y_ = np.asarray(y)
        return self

    def predict(self, Z):
        Z = tf.convert_to_tensor(Z, tf.float64)
        rows = max(1, BLOCK_ENTRIES // max(int(self.Z_.shape[0]), 1))
        nearest = [_nearest(self.Z_, self.Z32_, self.sq_, Z[start:start + rows]).numpy()
                   for start in range(0, int(Z.shape[0]), rows)]
        return self.y_[np.concatenate(nearest)]


_MATRIX = tf.TensorSpec([None, None], tf.float64)


@tf.function(input_signature=[_MATRIX])
def _reference_parts(reference):
    """The float32 copy of the 1-NN's reference rows and their float64
    squared norms (`_nearest`)."""
    return tf.cast(reference, tf.float32), tf.reduce_sum(reference * reference, axis=1)


@tf.function(input_signature=[_MATRIX, tf.TensorSpec([None, None], tf.float32),
                              tf.TensorSpec([None], tf.float64), _MATRIX])
def _nearest(reference, reference32, sq, queries):
    """Index of each query's nearest reference row (one compiled call),
    the same as the float64 search `_nearest64` gives (`_reference_parts`
    gives reference32 and sq).

    The search runs in float32 (oneDNN's matmul: a quarter of the float64
    one's time on C->A) and only the queries whose float32 winner is not
    certain are searched again in float64.  Certain means no other reference
    within `margin` of the best float32 value: d = ||r||^2 - 2 q.r differs
    from its float64 value by at most (2 k + 5) eps ||q|| ||r|| (rounding
    q, r and ||r||^2 to float32, and the length-k dot product), so a
    reference more than twice that above the best cannot win in float64.
    Ties (duplicate samples) are always rechecked."""
    k = tf.cast(tf.shape(reference)[1], tf.float32)
    sq32 = tf.cast(sq, tf.float32)
    q32 = tf.cast(queries, tf.float32)
    d32 = sq32[None, :] - 2.0 * tf.matmul(q32, reference32, transpose_b=True)
    scale = tf.sqrt(tf.reduce_max(sq32)) * tf.reduce_max(tf.norm(q32, axis=1)) + tf.reduce_max(sq32)
    margin = 2.0 * (2.0 * k + 5.0) * np.finfo(np.float32).eps * tf.maximum(scale, 1.0)
    best = tf.reduce_min(d32, axis=1, keepdims=True)
    unsure = tf.where(tf.reduce_sum(tf.cast(d32 <= best + margin, tf.int32), axis=1) > 1)
    again = tf.argmin(sq[None, :] - 2.0 * tf.matmul(tf.gather_nd(queries, unsure), reference,
                                                    transpose_b=True), axis=1)
    return tf.tensor_scatter_nd_update(tf.argmin(d32, axis=1), unsure, again)


@tf.function(input_signature=[_MATRIX, _MATRIX])
def _nearest64(reference, queries):
    """The float64 search `_nearest` reproduces (kept for its test)."""
    sq = tf.reduce_sum(reference * reference, axis=1)
    return tf.argmin(sq[None, :] - 2.0 * tf.matmul(queries, reference, transpose_b=True), axis=1)


@tf.function(input_signature=[_MATRIX, _MATRIX])
def _project(P, V):
    """Adapted features: P A with unit-norm rows."""
    return unit_rows(tf.matmul(P, V))


# --------------------------------------------------------------------------
# the estimators
# --------------------------------------------------------------------------

def _check_labelled_target(labelled_index, labelled_y, nt, classes):
    """The labelled target samples of a semi-supervised fit as (rows of Xt,
    class codes), or (None, None) without any; `nt` is None when there is
    no target.  Labels are matched to the source classes, not encoded
    afresh: a target class the source lacks has no Mc and no 1-NN label."""
    if labelled_index is None and labelled_y is None:
        return None, None
    if labelled_index is None or labelled_y is None:
        given, missing = (("labelled_index", "labelled_y") if labelled_y is None
                          else ("labelled_y", "labelled_index"))
        raise InputError(f"{given} was given without {missing}: labelled target samples need "
                         "both their rows in Xt (labelled_index) and their labels (labelled_y)")
    if nt is None:
        raise InputError("labelled_index / labelled_y name rows of the target samples Xt, "
                         "but no Xt was given (here or as the Xt parameter)")
    if classes is None:
        raise InputError("labelled_y needs the source labels y: labelled target samples are "
                         "matched to the source classes")
    if isinstance(labelled_index, (str, bytes)):
        raise InputError(f"labelled_index must be an array of integer row indices into Xt, "
                         f"got the string {labelled_index!r}")
    index = np.asarray(labelled_index)
    if index.ndim != 1:
        raise InputError(f"labelled_index must be a 1-D array of row indices into Xt, "
                         f"got shape {index.shape}")
    if index.size == 0:
        if np.size(labelled_y) != 0:
            raise InputError(f"labelled_y has {np.size(labelled_y)} labels for the 0 rows "
                             "of labelled_index")
        return None, None   # no labelled sample: the unsupervised fit
    if index.dtype.kind == "b":
        raise InputError("labelled_index must hold integer row indices, not a boolean mask "
                         "(np.flatnonzero(mask) gives the indices)")
    if index.dtype.kind not in "iu":
        raise InputError(f"labelled_index must hold integer row indices into Xt, "
                         f"got dtype {index.dtype}")
    outside = index[(index < 0) | (index >= nt)]
    if outside.size:
        raise InputError(f"labelled_index must lie in 0..{nt - 1} (Xt has {nt} samples), "
                         f"got {outside[:5].tolist()}")
    values, counts = np.unique(index, return_counts=True)
    if values.size < index.size:
        raise InputError(f"labelled_index repeats rows {values[counts > 1][:5].tolist()}; "
                         "each labelled target sample once")
    if isinstance(labelled_y, (str, bytes)):
        raise InputError(f"labelled_y must be an array of class labels, "
                         f"got the single string {labelled_y!r}")
    labels = np.asarray(labelled_y)
    if labels.ndim != 1 or labels.shape[0] != index.shape[0]:
        raise InputError(f"labelled_y must be 1-D with one label per row of labelled_index "
                         f"({index.shape[0]}), got shape {labels.shape}")
    lookup = {c: i for i, c in enumerate(classes.tolist())}
    try:
        codes = [lookup.get(v, -1) for v in labels.tolist()]
    except TypeError:   # unhashable entries
        raise InputError("labelled_y must hold class labels like y's") from None
    unknown = sorted({repr(v) for v, c in zip(labels.tolist(), codes, strict=True) if c < 0})
    if unknown:
        raise InputError(f"labelled_y has labels that are not source classes: "
                         f"{', '.join(unknown[:5])}; the source classes are "
                         f"{', '.join(map(repr, classes.tolist()))}")
    return index.astype(np.intp), np.asarray(codes, dtype=np.intp)


class _Clock:
    """Seconds per stage of a fit (`fit_seconds_`, the benchmark's
    --profile): each `lap(stage)` adds the time since the previous lap."""

    def __init__(self):
        self.seconds, self._last = {}, time.perf_counter()

    def lap(self, stage):
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now

    def move(self, source, stage, seconds):
        """Book `seconds` of the last lap of `source` under `stage`."""
        self.seconds[source] -= seconds
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


class _MMDAdaptation(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Shared fit / transform / predict of TCA, JDA and BDA.

    Subclasses only differ in how M is weighted (`_mu`) and whether pseudo
    labels are iterated; the constructor parameters are theirs, stored
    unmodified so that `clone`, `get_params` and grid search work.
    """

    _needs_labels = True
    #: skip the solves of iterations known from a repeated labelling; not a
    #: parameter (it never changes the result) - tests switch it off to prove that
    _skip_repeats = True

    # -- parameters ---------------------------------------------------------
    def _mu(self) -> float:
        raise NotImplementedError

    def _n_iter(self) -> int:
        return check_int(self.n_iter, "n_iter")

    def _check_params(self):
        check_choice(self.kernel, "kernel", SOLVER_KERNELS)
        check_int(self.n_components, "n_components")
        check_positive(self.lambda_, "lambda_")
        if self.kernel == "rbf" and not (isinstance(self.gamma, str) and self.gamma == "median"):
            check_positive(self.gamma, "gamma")
        check_choice(self.solver, "solver", SOLVERS)
        check_positive(self.tol, "tol")
        if self.n_landmarks is not None:
            if self.kernel == "primal":
                raise InputError("n_landmarks applies to kernel='linear' or 'rbf', "
                                 "not to the primal problem")
            check_int(self.n_landmarks, "n_landmarks")
        check_choice(self.landmarks, "landmarks", LANDMARK_METHODS)
        mu = self._mu()
        if not 0.0 <= mu <= 1.0:
            raise InputError(f"mu must be in [0, 1], got {mu!r}")
        return mu, self._n_iter()

    # -- data ----------------------------------------------------------------
    def _design(self, Xn: tf.Tensor) -> tf.Tensor:
        """Rows of the matrix eq. 20 works on: the samples themselves (primal),
        their kernel values against the training samples ("X becomes K"), or
        their Nystrom design rows k(x, landmarks) T."""
        if self.kernel == "primal":
            return Xn
        return kernel_rows(Xn, self.X_fit_, self.kernel, self.gamma_, self.nystrom_map_)

    def fit(self, X, y=None, Xt=None, yt=None, *, labelled_index=None, labelled_y=None):
        """Learn A from labelled source samples (X, y) and unlabelled target
        samples Xt (here or as the `Xt` parameter; under GridSearchCV /
        cross_val_score only the parameter is safe, see the module docstring).

        Without target samples (Xt neither here nor as a parameter) X is its
        own target: there is no domain shift, the MMD term of eq. 18 is zero
        (M = 0 in eq. 10), and eq. 20 reduces to lambda A = X H X^T A Phi,
        the k leading principal directions of the unit-norm samples, with
        1-NN in that space; one solve, nothing to iterate.  This is what a
        plain `fit(X, y)` (pipelines, `check_estimator`) gets.

        `yt` is used only to record the accuracy of each iteration
        (`accuracies_`, over all of Xt), never to fit.  The arguments are
        not modified.

        Semi-supervised adaptation: `labelled_index` (integer rows of Xt,
        unique) and `labelled_y` (their labels, among the source classes)
        name a few target samples whose class is known; give both or
        neither.  Eq. 12's class-conditional MMD only needs each target
        sample's class, and a true class is better than a pseudo label: the
        labelled rows count in their own class in every Mc from the first
        iteration on (the first M, which without labels is TCA's, gets the
        class-conditional terms of the labelled rows alone; each class's
        target mean is over the target samples assigned to it), and the
        other rows join with their pseudo labels from the second iteration
        on.  The classifier (1-NN or `classifier`) is trained on the adapted
        source and labelled target rows, so `predict` uses them too, and the
        labelled rows' `pseudo_labels_` are their given labels.  TCA's M
        (mu = 0) has no class terms, so there only the classifier changes.
        With GridSearchCV / cross_val_score prefer the `Xt` parameter and
        beware: a fit argument as long as X is cut into folds.
        """
        clock = _Clock()
        mu, n_iter = self._check_params()
        if Xt is not None and self.Xt is not None:
            raise InputError("the target samples were given twice: as the Xt parameter and "
                             "to fit; give them once")
        Xt = self.Xt if Xt is None else Xt
        own_target = Xt is None
        # one sample as its own target: a centred scatter of rank 0, no component
        Xs, self.classes_, ys_codes = validate_fit_input(self, X, y,
                                                         min_samples=2 if own_target else 1)
        Xt = Xs if own_target else validate_target_features(self, Xt, Xs.shape[1])
        ns, nt = Xs.shape[0], Xt.shape[0]
        n = ns if own_target else ns + nt
        if yt is not None:
            check_labels(yt, nt, "yt", min_classes=1)
            yt = np.asarray(yt).ravel()
        labelled, labelled_codes = _check_labelled_target(
            labelled_index, labelled_y, None if own_target else nt, self.classes_)
        if self.n_landmarks is not None:
            check_int(self.n_landmarks, "n_landmarks", minimum=1, maximum=n)
        # at most min(p, n - 1) components exist: p design columns, and the
        # centred scatter of n samples has rank <= n - 1 (see n_components)
        p = {"primal": Xs.shape[1]}.get(self.kernel, n if self.n_landmarks is None
                                        else self.n_landmarks)
        k = self.n_components_ = min(self.n_components, p, n - 1)
        n_classes = 0 if self.classes_ is None else len(self.classes_)

        # samples to unit L2 norm before the projection (reference protocol)
        X = _unit_rows_tensor(Xs, False) if own_target else \
            _unit_rows_tensor(np.vstack([Xs, Xt]), True)
        self.X_fit_ = self.gamma_ = self.landmark_indices_ = self.nystrom_map_ = None
        if self.kernel != "primal":
            if self.kernel == "rbf":
                self.gamma_ = (_kernels.median_heuristic(X) if isinstance(self.gamma, str)
                               else float(self.gamma))
            if self.n_landmarks is None:
                self.X_fit_ = X
            else:
                self.landmark_indices_ = select_landmarks(
                    X, self.n_landmarks, self.landmarks, self.random_state)
                self.X_fit_ = tf.gather(X, self.landmark_indices_)
                self.nystrom_map_ = nystrom_map(X, self.X_fit_, self.kernel, self.gamma_)
                p = int(self.nystrom_map_.shape[1])
                k = self.n_components_ = min(k, p)   # the rank r of the landmarks' kernel
        P = self._design(X)                             # (n, p)
        # on the CPU path the NumPy products read P in place (a view, no copy)
        Pn = np.asarray(P) if _eig.lapack_preferred() else P
        clock.lap("normalise")
        mean = tf.reduce_mean(P, axis=0, keepdims=True)
        if n < p:   # fewer samples than dimensions: eq. 20 on the n x n Gram side
            Pc = P - mean
            side = {"Pc": Pc, "gram": centred_gram(Pc)}
        else:       # B = X H X^T, the scatter of the centred data, once per fit
            side = {"B": centred_scatter(P, mean)}
        clock.lap("B")
        # TCA / mu = 0 / no target: one solve
        iterate = ys_codes is not None and mu > 0.0 and not own_target
        eq20 = Eq20Solver(float(self.lambda_), k, method=self.solver, tol=self.tol,
                          n_features=Xs.shape[1], n_solves=n_iter if iterate else 1, **side)

        states = []      # per iteration: (phi, V, pseudo label codes, classifier)
        seen = {}        # pseudo labelling -> iteration that produced it
        pseudo = None    # labels the next M is built from (none at first) ...
        if labelled is not None:   # ... or only the labelled rows' (-1: class unknown)
            pseudo = np.full(nt, -1, dtype=np.intp)
            pseudo[labelled] = labelled_codes
        for t in range(n_iter if iterate else 1):
            if own_target:      # identical domains: M = 0
                U, w, fro = np.zeros((int(P.shape[1]), 0)), np.zeros(0), 0.0
            else:
                with _eig.blas_threads():
                    U, w, fro = mmd_directions(Pn, ns, ys_codes, pseudo, n_classes, mu)
            clock.lap("M")
            basis = eq20.basis_seconds
            phi, V = eq20.solve(U, w / fro if fro > 0 else w)
            clock.lap("solves")
            if eq20.basis_seconds > basis:      # B's eigenbasis, built by the first solve
                clock.move("solves", "eigenbasis", eq20.basis_seconds - basis)
            Z = _project(P, V)                      # unit L2 norm after the projection
            clock.lap("projection")
            clf = codes = None
            if ys_codes is not None:
                clf, codes = self._classify(Z[:ns], ys_codes, Z if own_target else Z[ns:],
                                            labelled, labelled_codes)
            clock.lap("1-NN")
            states.append((phi, V, codes, clf))
            if not iterate:
                break
            key = codes.tobytes()
            if key in seen and self._skip_repeats:
                # labels_t == labels_s: iteration t + j repeats iteration s + j,
                # so the remaining states are copies from the cycle s+1..t
                s = seen[key]
                period = t - s
                for i in range(t + 1, n_iter):
                    states.append(states[s + 1 + (i - s - 1) % period])
                break
            seen[key] = t
            pseudo = codes

        self.n_iter_ = len(states)
        self.n_eigensolves_ = len(eq20.steps)
        self.n_solver_steps_ = list(eq20.steps)
        self.n_warm_starts_ = eq20.warm_starts
        self.n_solver_fallbacks_ = eq20.fallbacks
        self.fit_seconds_ = clock.seconds
        phi, V, codes, clf = states[-1]
        self.eigenvalues_ = phi
        self.components_ = V.numpy()
        self.classifier_ = clf
        if ys_codes is None:
            self.pseudo_labels_, self.accuracies_, self.label_changes_ = None, [], []
            return self
        self.pseudo_labels_ = self.classes_[codes]
        self.label_changes_ = [None] + [int(np.count_nonzero(a[2] != b[2]))
                                        for a, b in zip(states[:-1], states[1:], strict=False)]
        self.accuracies_ = ([float(np.mean(self.classes_[s[2]] == yt)) for s in states]
                            if yt is not None else [])
        return self

    def _classify(self, Zs, ys_codes, Zt, labelled=None, labelled_codes=None):
        """Train the classifier on the adapted source (and the labelled
        target rows), label the target; labelled rows keep their own label
        (a classifier other than 1-NN need not reproduce its training labels,
        and the next M must see the true classes)."""
        if labelled is not None:
            Zs = tf.concat([Zs, tf.gather(Zt, labelled)], axis=0)
            ys_codes = np.concatenate([ys_codes, labelled_codes])
        if self.classifier is None:
            clf = _NearestNeighbour().fit(Zs, ys_codes)
            codes = clf.predict(Zt)
        else:
            clf = clone(self.classifier).fit(Zs.numpy(), ys_codes)
            codes = np.asarray(clf.predict(Zt.numpy()))
        if labelled is not None:
            codes = codes.copy()
            codes[labelled] = labelled_codes
        return clf, codes

    def __sklearn_is_fitted__(self):
        # the parameter lambda_ ends in "_", so check_is_fitted's default
        # test (any attribute ending in "_") would call an unfitted model fitted
        return hasattr(self, "components_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = self._needs_labels   # TCA's map needs no labels
        return tags

    def transform(self, X):
        """Adapted features: unit-norm samples, projected by A, unit-norm again."""
        check_is_fitted(self)
        X = validate_predict_input(self, X)
        P = self._design(unit_rows(tf.constant(X)))
        return _project(P, tf.constant(self.components_)).numpy()

    def predict(self, X):
        """Labels of target samples by the classifier trained on the adapted
        source (1-NN unless `classifier` says otherwise)."""
        check_is_fitted(self)
        if self.classifier_ is None:
            raise InputError("predict needs the source labels: fit(X, y, Xt) with y given")
        return self.classes_[np.asarray(self.classifier_.predict(self.transform(X)))]


_PARAMETERS = """
    Parameters
    ----------
    n_components : int, k, dimension of the adapted features (100, the
        papers' setting).  At most min(p, n - 1) components exist (p: the
        features of the primal problem, the n samples of an exact kernel or
        the rank r of the Nystrom landmarks' kernel; n - 1: the rank of the
        centred scatter of the n = ns + nt samples), so a larger k is
        clipped to that, as KernelPCA clips to its kernel matrix; the value
        used is `n_components_`.  On the benchmark's tasks (800 features,
        at least 452 samples) the default is never clipped.  That bound is
        known from the shapes; the data's own rank (duplicate samples,
        constant features, a fast-decaying kernel spectrum) is not: k above
        it is an InputError naming the rank (`mmd.eigensolvers.Eq20Solver`).
    kernel : 'primal' (A acts on the features, the published setting),
        'linear' or 'rbf' (A acts on kernel values: "X becomes K").
    lambda_ : float > 0, weight of the ||A||_F^2 regulariser of eq. 18; it is
        what makes X M X^T + lambda I positive definite.
    gamma : RBF bandwidth, a positive float or 'median' (heuristic).
    classifier : scikit-learn classifier used by `predict`; None = 1-NN.
    solver : 'iterative' (default: warm-started, to the residual `tol`, with
        a fallback to the exact solver; TCA's single problem is solved
        exactly) or 'exact' (a dense solve of the k wanted eigenpairs at
        every iteration); see `mmd.eigensolvers`.
    tol : float, largest accepted relative residual ||T y - nu y|| / nu_max
        of the k eigenpairs of the iterative solver (1e-12).
    n_landmarks : int or None, with a kernel: Nystrom approximation through
        this many landmark samples (1 <= m <= ns + nt); None = exact kernel.
    landmarks : 'uniform' or 'kmeans++', how the landmarks are drawn.
    random_state : seed (int, RandomState or None) of the landmark draw.
    Xt : the unlabelled target samples, when they are not passed to `fit`;
        the safe way inside GridSearchCV and cross_val_score.  With no
        target at all, X is its own target: no adaptation (see `fit`).

    `fit` also takes `labelled_index` and `labelled_y`, keyword only: a few
    target samples with known labels (semi-supervised adaptation).  Their
    true classes replace pseudo labels in eq. 12's class-conditional MMD
    from the first iteration on, and the classifier trains on them beside
    the source (see `fit`).
"""

_ATTRIBUTES = """
    Attributes after `fit(X, y, Xt, yt=None, *, labelled_index, labelled_y)`
    -------------------------------------------------------------------------
    n_components_ : k actually used (`n_components` clipped, see there).
    n_features_in_, feature_names_in_ : as in scikit-learn.
    classes_ : the source classes (None when TCA is fitted without y).
    components_ : (d, k), (n, k) or (r, k) A of eq. 20, unit-norm columns.
    eigenvalues_ : the k smallest eigenvalues Phi of eq. 20, ascending
        (components_ holds their eigenvectors; docs/textbook-errata.md, E10).
    pseudo_labels_ : target labels of the last iteration (labels of X
        itself when there was no target); labelled target rows hold their
        given labels.
    classifier_ : the classifier `predict` uses, trained on the adapted
        source and labelled target rows.
    accuracies_ : per-iteration target accuracy (over all of Xt, labelled
        rows included), when yt was passed.
    label_changes_ : how many pseudo labels changed at each iteration.
    n_eigensolves_ : eigenproblems actually solved (<= n_iter_, see the
        module docstring on repeating labellings).
    n_solver_steps_ : shift-and-invert steps of each solve (0 = exact solve).
    n_warm_starts_ : solves started from the previous iteration's subspace.
    n_solver_fallbacks_ : solves handed to the exact solver.
    fit_seconds_ : dict, seconds of the fit's stages: "normalise" (input
        checks, unit-norm rows, kernel or Nystrom design), "B" (the centred
        scatter, or the Gram matrix when n < p), "eigenbasis" (B's
        eigendecomposition, once, for the iterative solver of JDA / BDA),
        "M" (eq. 10's factors), "solves" (eq. 20), "projection" and "1-NN"
        (the classifier; summed over the iterations).
    landmark_indices_ : rows of [Xs; Xt] used as landmarks, in the order drawn,
        and nystrom_map_ : T (m, r), new samples' design rows are k(x, landmarks) T
        (Nystrom only; components_ is then (r, k), r <= m).
"""

_N_ITER = "    n_iter : int, T (10); without a target there is one solve.\n"


class TCA(_MMDAdaptation):
    """Transfer Component Analysis: align the marginal distributions only
    (eq. 10 with mu = 0, no pseudo labels, one eigenproblem).

    `y` is optional for TCA (the map ignores labels; its tags say so);
    without it `predict` is unavailable.
    """

    __doc__ += _PARAMETERS + _ATTRIBUTES
    _needs_labels = False

    def __init__(self, n_components=100, kernel="primal", lambda_=1.0, gamma=1.0,
                 classifier=None, solver="iterative", tol=1e-12, n_landmarks=None,
                 landmarks="uniform", random_state=None, Xt=None):
        self.n_components = n_components
        self.kernel = kernel
        self.lambda_ = lambda_
        self.gamma = gamma
        self.classifier = classifier
        self.solver = solver
        self.tol = tol
        self.n_landmarks = n_landmarks
        self.landmarks = landmarks
        self.random_state = random_state
        self.Xt = Xt

    def _mu(self):
        return 0.0

    def _n_iter(self):
        return 1


class JDA(_MMDAdaptation):
    """Joint Distribution Adaptation: marginal and class-conditional MMD
    (eq. 10 with mu = 0.5), target classes from iterated 1-NN pseudo labels.

    Parameters as for `TCA`, plus `n_iter` (T, the number of pseudo-label
    refinements).
    """

    __doc__ += _PARAMETERS + _N_ITER + _ATTRIBUTES

    def __init__(self, n_components=100, kernel="primal", lambda_=1.0, gamma=1.0,
                 n_iter=10, classifier=None, solver="iterative", tol=1e-12,
                 n_landmarks=None, landmarks="uniform", random_state=None, Xt=None):
        self.n_components = n_components
        self.kernel = kernel
        self.lambda_ = lambda_
        self.gamma = gamma
        self.n_iter = n_iter
        self.classifier = classifier
        self.solver = solver
        self.tol = tol
        self.n_landmarks = n_landmarks
        self.landmarks = landmarks
        self.random_state = random_state
        self.Xt = Xt

    def _mu(self):
        return 0.5


class BDA(_MMDAdaptation):
    """Balanced Distribution Adaptation: eq. 10 with a free balance factor mu,
    M = (1 - mu) C M0 + mu sum_c Mc; mu -> 0 trusts the marginal alignment,
    mu -> 1 the class-conditional one; mu = 0.5 reproduces JDA exactly.
    """

    __doc__ += _PARAMETERS + _N_ITER + "    mu : float in [0, 1] (0.5).\n" + _ATTRIBUTES

    def __init__(self, n_components=100, kernel="primal", lambda_=1.0, gamma=1.0,
                 n_iter=10, mu=0.5, classifier=None, solver="iterative", tol=1e-12,
                 n_landmarks=None, landmarks="uniform", random_state=None, Xt=None):
        self.n_components = n_components
        self.kernel = kernel
        self.lambda_ = lambda_
        self.gamma = gamma
        self.n_iter = n_iter
        self.mu = mu
        self.classifier = classifier
        self.solver = solver
        self.tol = tol
        self.n_landmarks = n_landmarks
        self.landmarks = landmarks
        self.random_state = random_state
        self.Xt = Xt

    def _mu(self):
        if isinstance(self.mu, bool) or not isinstance(self.mu, (int, float, np.floating)):
            raise InputError(f"mu must be a number in [0, 1], got {self.mu!r}")
        return float(self.mu)


def warm_up(size=None):
    """Trace every compiled graph a fit uses (the iterative solver's, the
    projection's, the 1-NN's) and make the first LAPACK calls, on tiny
    problems of both sides (B and Gram): later fits of any size reuse them,
    so a command can keep the one-off cost out of its timings.

    `size` = (n_source, n_target, n_features), a command's largest task,
    also fits a TCA and a two-iteration JDA of that size on random data:
    a process's first fit of C->A's size paid 0.05-0.06 s of page faults
    (first touches of its 13 MB buffers, about 7 us a page here) that every
    later fit reuses from the heap.  glibc's allocator is left as it is."""
    _eig.warm_up()
    rng = np.random.default_rng(0)
    for d in (20, 80):              # n = 60 samples: the B side, then the Gram side
        Xs, Xt = rng.standard_normal((30, d)), rng.standard_normal((30, d))
        ys = np.arange(30) % 3
        TCA(n_components=5).fit(Xs, ys, Xt)
        JDA(n_components=5, n_iter=2).fit(Xs, ys, Xt)
    if size is not None:
        ns, nt, d = (int(v) for v in size)
        Xs, Xt = rng.standard_normal((ns, d)), rng.standard_normal((nt, d)) + 0.5
        ys = np.arange(ns) % 3
        k = min(10, d, ns + nt - 1)
        TCA(n_components=k).fit(Xs, ys, Xt)
        JDA(n_components=k, n_iter=2).fit(Xs, ys, Xt)
