"""TCA, JDA and BDA: adaptation by a linear map A that minimises MMD.

Section 12.3 of the textbook, equation by equation:

* eq. 11, marginal MMD matrix M0: 1/ns^2 on source-source, 1/nt^2 on
  target-target, -1/(ns nt) across.  M0 = e0 e0^T with
  e0 = [1/ns ... 1/ns, -1/nt ... -1/nt].
* eq. 12, conditional matrices Mc: the same construction restricted to the
  source samples of class c and the target samples pseudo-labelled c,
  Mc = ec ec^T.
* eq. 10, M = (1 - mu) M0 + mu sum_c Mc; mu = 0.5 is JDA, any mu is BDA,
  mu = 0 (and no labels) is TCA.
* eq. 15-18, minimise tr(A^T X M X^T A) + lambda ||A||_F^2 subject to the
  scatter constraint A^T X H X^T A = I, H = I - (1/n) 1 1^T.
* eq. 20, the Lagrangian's stationarity condition, the generalised eigenproblem
  (X M X^T + lambda I) A = X H X^T A Phi, keep the k smallest eigenvalues.
  With a kernel, X becomes the n x n kernel matrix K.
* 12.3.3-12.3.4, the target pseudo labels come from a 1-NN classifier trained
  on the transformed source and are refined by iterating.

How it is solved, and why:

* The pencil is symmetric-definite: S = X M X^T + lambda I is positive
  definite, B = X H X^T is positive semi-definite.  A general `eig` of
  (S, B) - what the public numpy code does - returns complex and infinite
  eigenvalues when B is singular (fewer samples than features) and costs a
  dense QZ iteration.  Instead, with the Cholesky factor S = L L^T, eq. 20
  becomes the ordinary symmetric problem (L^-1 B L^-T) y = nu y with
  nu = 1/phi and a = L^-T y, solved by `tf.linalg.eigh`; the k smallest phi
  are the k largest nu.
* No n x n matrix is formed in the primal case.  X M X^T = U diag(w) U^T with
  the C + 1 columns U = X [e0, e1, ... eC] (mean differences), and
  X H X^T = Xc^T Xc with Xc the data centred over all n samples.  The
  Frobenius norm of M needed for the protocol's scaling is
  sqrt(w^T (G o G) w) with the (C+1) x (C+1) Gram G = E^T E.
* With fewer samples than features, B has rank <= n - 1, so the eigenproblem
  is solved on the n x n Gram matrix of L^-1 Xc^T instead of the d x d one:
  same non-zero spectrum, smaller eigh.
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
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.utils.validation import check_is_fitted

from . import kernels as _kernels
from .validation import (check_features, check_int, check_labels, check_positive,
                         check_same_width)

#: `kernel` values of the estimators: the primal (linear map of the features,
#: d x k) problem of the papers' tables, or a kernelised (n x k) one
SOLVER_KERNELS = ("primal", "linear", "rbf")


# --------------------------------------------------------------------------
# building blocks (public so that tests can check them against the equations)
# --------------------------------------------------------------------------

def unit_rows(X: tf.Tensor) -> tf.Tensor:
    """Scale each sample to unit L2 norm; an all-zero sample stays zero
    (no NaN) - it can arise from a constant feature vector after z-scoring."""
    norms = tf.norm(X, axis=1, keepdims=True)
    return X / tf.where(norms > 0, norms, tf.ones_like(norms))


def mmd_factors(ys_codes, yt_codes, n_classes: int, mu: float, n_target: int | None = None):
    """Rank-one factors of M (eq. 10-12): M = E diag(w) E^T.

    Returns (E, w, fro) with E of shape (n, r), r <= C + 1, and fro the
    Frobenius norm of E diag(w) E^T, so that the protocol's M is
    E diag(w / fro) E^T.  `yt_codes=None` (no pseudo labels yet, give
    `n_target`) yields the marginal term only.  A class with no target sample
    pseudo-labelled contributes nothing: eq. 12 would divide by nt_c = 0.
    mu = 1 without labels leaves M = 0 (fro = 0), i.e. plain PCA of the
    pooled data.
    """
    ys_codes = np.asarray(ys_codes)
    if yt_codes is not None:
        yt_codes = np.asarray(yt_codes)
        n_target = yt_codes.shape[0]
    if not n_target:
        raise ValueError("n_target (number of target samples) is needed without pseudo labels")
    return _factors(ys_codes, yt_codes, ys_codes.shape[0], int(n_target), n_classes, mu)


def _factors(ys_codes, yt_codes, ns, nt, n_classes, mu):
    n = ns + nt
    columns, weights = [], []
    if mu < 1.0:
        # eq. 11: M0 = e0 e0^T; weighted C (1 - mu), the reference's C * M0 at mu = 0.5
        columns.append(np.concatenate([np.full(ns, 1.0 / ns), np.full(nt, -1.0 / nt)]))
        weights.append(n_classes * (1.0 - mu))
    if yt_codes is not None and mu > 0.0:
        for c in range(n_classes):
            src = ys_codes == c
            tgt = yt_codes == c
            ns_c, nt_c = int(src.sum()), int(tgt.sum())
            if ns_c == 0 or nt_c == 0:
                continue  # empty (pseudo) class: no conditional term, no 1/0
            e = np.zeros(n)
            e[:ns][src] = 1.0 / ns_c    # eq. 12: 1/ns_c on source of class c
            e[ns:][tgt] = -1.0 / nt_c   # and -1/nt_c on target pseudo-labelled c
            columns.append(e)
            weights.append(mu)
    if not columns:
        return np.zeros((n, 0)), np.zeros(0), 0.0
    E = np.stack(columns, axis=1)
    w = np.asarray(weights)
    G = E.T @ E
    # ||E W E^T||_F^2 = tr(W G W G) = w^T (G o G) w: no n x n matrix needed
    fro = float(np.sqrt(max(w @ (G * G) @ w, 0.0)))
    return E, w, fro


def solve_eq20(U, w, lambda_: float, n_components: int, B=None, Pc=None):
    """k smallest eigenpairs of eq. 20, (U diag(w) U^T + lambda I) a = phi B a.

    U (p, r) and w (r,) are the low-rank factors of X M X^T (already divided
    by ||M||_F).  Give either B = X H X^T (p, p), or, when there are fewer
    samples than dimensions, the centred data Pc (n, p) with B = Pc^T Pc.

    Returns (phi, V): phi (k,) ascending, V (p, k) with unit-norm columns,
    each column's largest-magnitude entry made positive (eigenvectors are
    only defined up to sign; fixing it makes runs comparable).
    phi = inf marks a direction B cannot see (a null direction of the
    scatter), which only happens when k exceeds the rank of the data.
    """
    U = tf.convert_to_tensor(U, tf.float64)
    p = int(U.shape[0])
    w = tf.convert_to_tensor(np.asarray(w, dtype=np.float64))
    # S = X M X^T + lambda I, assembled from the r rank-one terms
    S = tf.matmul(U * w[None, :], U, transpose_b=True) + lambda_ * tf.eye(p, dtype=tf.float64)
    L = tf.linalg.cholesky(S)  # S is positive definite: lambda > 0, M is PSD
    k = n_components
    if Pc is None:
        # L^-1 B L^-T, symmetric; eigh reads only one triangle
        W = tf.linalg.triangular_solve(L, B, lower=True)
        T = tf.linalg.triangular_solve(L, tf.transpose(W), lower=True)
        nu, Y = tf.linalg.eigh(0.5 * (T + tf.transpose(T)))
        nu = nu[::-1][:k]             # k largest nu = k smallest phi = 1/nu
        Y = Y[:, ::-1][:, :k]
    else:
        # L^-1 B L^-T = R R^T with R = L^-1 Pc^T (p x n): its non-zero
        # eigenpairs come from the n x n matrix R^T R (same spectrum)
        R = tf.linalg.triangular_solve(L, tf.transpose(Pc), lower=True)
        s, Q = tf.linalg.eigh(tf.matmul(R, R, transpose_a=True))
        nu = s[::-1][:k]
        Q = Q[:, ::-1][:, :k]
        Y = tf.matmul(R, Q) / tf.sqrt(tf.maximum(nu, np.finfo(np.float64).tiny))[None, :]
    V = tf.linalg.triangular_solve(L, Y, lower=True, adjoint=True)  # a = L^-T y
    V = V / tf.norm(V, axis=0, keepdims=True)                        # unit 2-norm
    idx = tf.argmax(tf.abs(V), axis=0)
    signs = tf.sign(tf.gather(tf.transpose(V), idx, batch_dims=1))
    V = V * tf.where(signs == 0, tf.ones_like(signs), signs)[None, :]
    nu = nu.numpy()
    with np.errstate(divide="ignore"):
        phi = np.where(nu > 0, 1.0 / np.maximum(nu, np.finfo(np.float64).tiny), np.inf)
    return phi, V


class NearestNeighbour:
    """1-NN on the adapted features, the classifier of the papers' tables.

    Written in TensorFlow because it runs once per JDA iteration;
    ||a - b||^2 = ||b||^2 - 2 a.b + const(a) reduces it to one matmul.
    """

    def fit(self, Z, y):
        self.Z_ = tf.convert_to_tensor(np.asarray(Z, dtype=np.float64))
        self.y_ = np.asarray(y)
        self.sq_ = tf.reduce_sum(self.Z_ * self.Z_, axis=1)
        return self

    def predict(self, Z):
        Z = tf.convert_to_tensor(np.asarray(Z, dtype=np.float64))
        d = self.sq_[None, :] - 2.0 * tf.matmul(Z, self.Z_, transpose_b=True)
        return self.y_[tf.argmin(d, axis=1).numpy()]


# --------------------------------------------------------------------------
# the estimators
# --------------------------------------------------------------------------

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
        if not isinstance(self.kernel, str) or self.kernel not in SOLVER_KERNELS:
            raise ValueError(
                f"unknown kernel {self.kernel!r}; expected one of {', '.join(SOLVER_KERNELS)}")
        check_int(self.n_components, "n_components")
        check_positive(self.lambda_, "lambda_")
        if self.kernel == "rbf" and not (isinstance(self.gamma, str) and self.gamma == "median"):
            check_positive(self.gamma, "gamma")
        mu = self._mu()
        if not 0.0 <= mu <= 1.0:
            raise ValueError(f"mu must be in [0, 1], got {mu!r}")
        return mu, self._n_iter()

    # -- data ----------------------------------------------------------------
    def _design(self, Xn: tf.Tensor) -> tf.Tensor:
        """Rows of the matrix eq. 20 works on: the samples themselves (primal)
        or their kernel values against the training samples ("X becomes K")."""
        if self.kernel == "primal":
            return Xn
        if self.kernel == "linear":
            return _kernels.linear_kernel(Xn, self.X_fit_)
        return _kernels.rbf_kernel(Xn, self.X_fit_, gamma=self.gamma_)

    def fit(self, Xs, ys=None, Xt=None, yt=None):
        """Learn A from labelled source (Xs, ys) and unlabelled target Xt.

        `yt` is used only to record the accuracy of each iteration
        (`accuracies_`), never to fit.  The arguments are not modified.
        """
        mu, n_iter = self._check_params()
        if Xt is None:
            raise ValueError("Xt (the unlabelled target samples) is required: fit(Xs, ys, Xt)")
        Xs = check_features(Xs, "Xs")
        Xt = check_features(Xt, "Xt")
        check_same_width(Xs, Xt, "Xs", "Xt")
        ns, nt = Xs.shape[0], Xt.shape[0]
        n = ns + nt
        if ys is None:
            if self._needs_labels:
                raise ValueError(f"{type(self).__name__} needs the source labels ys")
            self.classes_, ys_codes = None, None
        else:
            self.classes_, ys_codes = check_labels(ys, ns, "ys")
        if yt is not None:
            _, _ = check_labels(yt, nt, "yt", min_classes=1)
            yt = np.asarray(yt).ravel()
        k = self.n_components
        p = Xs.shape[1] if self.kernel == "primal" else n
        if k > min(p, n - 1):
            if k > n - 1:
                raise ValueError(
                    f"n_components={k} but there are only {n} samples (ns + nt); "
                    f"the centred scatter has rank <= {n - 1}, so at most {min(p, n - 1)} "
                    "components are defined")
            raise ValueError(
                f"n_components={k} exceeds the {p} features of the primal problem")
        self.n_features_in_ = Xs.shape[1]
        n_classes = 0 if self.classes_ is None else len(self.classes_)

        # samples to unit L2 norm before the projection (reference protocol)
        X = unit_rows(tf.convert_to_tensor(np.vstack([Xs, Xt])))
        if self.kernel == "primal":
            self.X_fit_ = None
        else:
            self.X_fit_ = X
            self.gamma_ = None
            if self.kernel == "rbf":
                self.gamma_ = (_kernels.median_heuristic(X) if isinstance(self.gamma, str)
                               else float(self.gamma))
        P = self._design(X)                          # (n, p)
        Pc = P - tf.reduce_mean(P, axis=0, keepdims=True)  # H P: centred over all n
        use_gram = n < p                             # fewer samples than dimensions
        B = None if use_gram else tf.matmul(Pc, Pc, transpose_a=True)  # X H X^T

        iterate = ys_codes is not None and mu > 0.0   # TCA / mu = 0: one solve
        states = []      # per iteration: (phi, V, pseudo label codes, classifier)
        seen = {}        # pseudo labelling -> iteration that produced it
        pseudo = None    # labels the next M is built from (none at first)
        self.n_eigensolves_ = 0
        for t in range(n_iter if iterate else 1):
            E, w, fro = _factors(ys_codes, pseudo, ns, nt, n_classes, mu)
            U = tf.matmul(P, tf.constant(E), transpose_a=True)      # X e_j, (p, r)
            phi, V = solve_eq20(U, w / fro if fro > 0 else w, float(self.lambda_), k,
                                B=B, Pc=Pc if use_gram else None)
            self.n_eigensolves_ += 1
            Z = unit_rows(tf.matmul(P, V))          # unit L2 norm after the projection
            clf = codes = None
            if ys_codes is not None:
                clf = self._make_classifier().fit(Z[:ns].numpy(), ys_codes)
                codes = np.asarray(clf.predict(Z[ns:].numpy()))
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
        phi, V, codes, clf = states[-1]
        self.eigenvalues_ = phi
        self.components_ = V.numpy()
        self.classifier_ = clf
        if ys_codes is None:
            self.pseudo_labels_, self.accuracies_, self.label_changes_ = None, [], []
            return self
        self.pseudo_labels_ = self.classes_[codes]
        self.label_changes_ = [None] + [int(np.count_nonzero(a[2] != b[2]))
                                        for a, b in zip(states[:-1], states[1:])]
        self.accuracies_ = ([float(np.mean(self.classes_[s[2]] == yt)) for s in states]
                            if yt is not None else [])
        return self

    def _make_classifier(self):
        return NearestNeighbour() if self.classifier is None else clone(self.classifier)

    def transform(self, X):
        """Adapted features: unit-norm samples, projected by A, unit-norm again."""
        check_is_fitted(self, "components_")
        X = check_features(X, "X")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features but the model was fitted on {self.n_features_in_}")
        P = self._design(unit_rows(tf.convert_to_tensor(X)))
        return unit_rows(tf.matmul(P, tf.constant(self.components_))).numpy()

    def predict(self, X):
        """Labels of target samples by the classifier trained on the adapted
        source (1-NN unless `classifier` says otherwise)."""
        check_is_fitted(self, "components_")
        if self.classifier_ is None:
            raise ValueError("predict needs the source labels: fit(Xs, ys, Xt) with ys given")
        return self.classes_[np.asarray(self.classifier_.predict(self.transform(X)))]


class TCA(_MMDAdaptation):
    """Transfer Component Analysis: align the marginal distributions only
    (eq. 10 with mu = 0, no pseudo labels, one eigenproblem).

    Parameters
    ----------
    n_components : int, k, dimension of the adapted features.
    kernel : 'primal' (A acts on the features, the published setting),
        'linear' or 'rbf' (A acts on kernel values: "X becomes K").
    lambda_ : float > 0, weight of the ||A||_F^2 regulariser of eq. 15; it is
        what makes X M X^T + lambda I positive definite.
    gamma : RBF bandwidth, a positive float or 'median' (heuristic).
    classifier : scikit-learn classifier used by `predict`; None = 1-NN.

    `ys` is optional for TCA (the map ignores labels); without it `predict`
    is unavailable.
    """

    _needs_labels = False

    def __init__(self, n_components=100, kernel="primal", lambda_=1.0, gamma=1.0,
                 classifier=None):
        self.n_components = n_components
        self.kernel = kernel
        self.lambda_ = lambda_
        self.gamma = gamma
        self.classifier = classifier

    def _mu(self):
        return 0.0

    def _n_iter(self):
        return 1


class JDA(_MMDAdaptation):
    """Joint Distribution Adaptation: marginal and class-conditional MMD
    (eq. 10 with mu = 0.5), target classes from iterated 1-NN pseudo labels.

    Parameters as for `TCA`, plus `n_iter` (T, the number of pseudo-label
    refinements).  After `fit(Xs, ys, Xt, yt=None)`:

    components_ : (d, k) or (n, k) A of eq. 20, unit-norm columns.
    eigenvalues_ : the k smallest eigenvalues Phi of eq. 20, ascending.
    pseudo_labels_ : target labels of the last iteration.
    accuracies_ : per-iteration target accuracy, when yt was passed.
    label_changes_ : how many pseudo labels changed at each iteration.
    n_eigensolves_ : eigenproblems actually solved (<= n_iter_, see the
        module docstring on repeating labellings).
    """

    def __init__(self, n_components=100, kernel="primal", lambda_=1.0, gamma=1.0,
                 n_iter=10, classifier=None):
        self.n_components = n_components
        self.kernel = kernel
        self.lambda_ = lambda_
        self.gamma = gamma
        self.n_iter = n_iter
        self.classifier = classifier

    def _mu(self):
        return 0.5


class BDA(_MMDAdaptation):
    """Balanced Distribution Adaptation: eq. 10 with a free balance factor mu,
    M = (1 - mu) C M0 + mu sum_c Mc; mu -> 0 trusts the marginal alignment,
    mu -> 1 the class-conditional one; mu = 0.5 reproduces JDA exactly.

    Parameters and attributes as for `JDA`, plus `mu` in [0, 1].
    """

    def __init__(self, n_components=100, kernel="primal", lambda_=1.0, gamma=1.0,
                 n_iter=10, mu=0.5, classifier=None):
        self.n_components = n_components
        self.kernel = kernel
        self.lambda_ = lambda_
        self.gamma = gamma
        self.n_iter = n_iter
        self.mu = mu
        self.classifier = classifier

    def _mu(self):
        if isinstance(self.mu, bool) or not isinstance(self.mu, (int, float, np.floating)):
            raise ValueError(f"mu must be a number in [0, 1], got {self.mu!r}")
        return float(self.mu)
