"""Instance weighting: KMM and KLIEP (textbook 12.2.3, eq. 2).

Eq. 2 of the chapter weights each source loss by w_i,

    min (1/n) sum_i w_i L(Phi(x_i^s), y_i^s, theta),

so that source samples that look like target samples count more.  Under a
covariate shift (p_s(y|x) = p_t(y|x), only p(x) moves) the right weight is
the density ratio w(x) = p_t(x) / p_s(x): the weighted source risk is then
an unbiased estimate of the target risk.  Both estimators below estimate
that ratio at the source samples without estimating either density, and
then fit a wrapped classifier with `sample_weight=weights_`:

* `KMM`, kernel mean matching (Huang et al., NIPS 2007): the weights beta
  make the weighted source mean in an RBF feature space match the target
  mean, a quadratic programme with bounded weights (see `kmm_weights`).
* `KLIEP`, the Kullback-Leibler importance estimation procedure (Sugiyama
  et al., NIPS 2007 / AISM 2008): w(x) = sum_l alpha_l K(x, c_l), Gaussian
  kernels centred on target samples, alpha maximising the target
  log-likelihood of w p_s (see `kliep_alpha`).  Unlike KMM it gives a
  function, `density_ratio(X)`, usable at new points (and by
  `mmd.scoring.importance_weighted_scorer`).

Both follow the contract of TCA / JDA (`mmd.solvers`): the target is given
as the `Xt` parameter (the safe way under GridSearchCV) or to `fit`; a
`fit(X, y)` without target means no shift (every weight 1); inputs go
through scikit-learn's `validate_data`; tested with `parametrize_with_checks`.

The default wrapped classifier is `LogisticRegression(max_iter=1000)`: the
1-NN of the papers' Office-Caltech tables takes no sample weights (a
weighted vote of one neighbour is the neighbour's label), so it cannot show
a reweighting at all; any classifier whose `fit` accepts `sample_weight` can
be passed as `estimator=`.
"""
from __future__ import annotations

import numpy as np
import scipy.optimize
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, has_fit_parameter
from threadpoolctl import threadpool_limits

from .validation import (
    InputError,
    check_features,
    check_int,
    check_positive,
    validate_fit_input,
    validate_predict_input,
    validate_target_features,
)

# --------------------------------------------------------------------------
# kernels and the two solvers (public so that tests can check them)
# --------------------------------------------------------------------------

def squared_distances(A, B) -> np.ndarray:
    """||a_i - b_j||^2 by one matrix product, clipped at 0 (rounding)."""
    aa = np.einsum("ij,ij->i", A, A)[:, None]
    bb = np.einsum("ij,ij->i", B, B)[None, :]
    return np.maximum(aa + bb - 2.0 * A @ B.T, 0.0)


def median_gamma(X, max_points: int = 1000) -> float:
    """gamma = 1 / (2 median^2) of the pooled sample (the median heuristic of
    `mmd.kernels.median_heuristic`, in numpy: these estimators need no
    TensorFlow); 1.0 when every point is the same."""
    X = np.asarray(X, dtype=np.float64)
    if len(X) > max_points:
        X = X[np.linspace(0, len(X) - 1, max_points).astype(int)]
    d2 = squared_distances(X, X)[np.triu_indices(len(X), 1)]
    d2 = d2[d2 > 0]
    return 1.0 if d2.size == 0 else float(1.0 / (2.0 * np.median(d2)))


def _resolve_gamma(gamma, Xs, Xt) -> float:
    if isinstance(gamma, str):
        if gamma != "median":
            raise InputError(f"gamma must be a positive number or 'median', got {gamma!r}")
        return median_gamma(np.vstack([Xs, Xt]))
    return check_positive(gamma, "gamma")


def kmm_weights(K, kappa, B: float, eps: float, tol: float = 1e-15, max_iter: int = 10000):
    """Solve the KMM quadratic programme of Huang et al. (2007), eq. 6 there,

        min_beta  1/2 beta^T K beta - kappa^T beta
        s.t.      0 <= beta_i <= B,   |sum_i beta_i - ns| <= ns eps,

    with K the ns x ns source kernel matrix and kappa_i = (ns / nt)
    sum_j k(x_i^s, x_j^t); it is ns^2 / 2 times the squared RKHS distance
    between the beta-weighted source mean and the target mean, up to a
    constant.

    No QP package (cvxopt is not a dependency, and scipy's SLSQP costs
    O(ns^3) per step): the box is what L-BFGS-B handles natively (one
    K @ beta per evaluation).  The sum constraint is a single scalar one:
    if the box solution satisfies it, it is the solution; otherwise the
    constraint is active at the optimum, and its multiplier nu (the
    problem with kappa - nu 1 has a sum that falls as nu grows) is found
    by Brent's method to the bound that was crossed, each try a
    warm-started L-BFGS-B solve.  `tol` is L-BFGS-B's relative reduction
    of the objective (ftol).  Returns (beta, L-BFGS-B iterations).

    BLAS runs on one thread here: each step is one matrix-vector product
    and L-BFGS-B's small dense updates, which threads do not speed up, and
    on a busy machine they slowed a 150-sample solve from 0.20 s to 4.8 s
    (200 iterations, the project's shared 2-core machine).
    """

    ns = K.shape[0]
    lo, hi = ns * (1.0 - eps), ns * (1.0 + eps)
    bounds = scipy.optimize.Bounds(np.zeros(ns), np.full(ns, float(B)))
    state = {"x": np.clip(np.ones(ns), 0.0, B), "iterations": 0}

    def solve(nu):
        shifted = kappa - nu

        def fun(b):
            Kb = K @ b
            return 0.5 * b @ Kb - shifted @ b, Kb - shifted

        res = scipy.optimize.minimize(fun, state["x"], jac=True, method="L-BFGS-B",
                                      bounds=bounds,
                                      options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-12,
                                               "maxcor": 50})
        state["x"], state["iterations"] = res.x, state["iterations"] + res.nit
        return res.x

    with threadpool_limits(limits=1, user_api="blas"):
        return _kmm_solve(solve, K, kappa, B, lo, hi, state)


def _kmm_solve(solve, K, kappa, B, lo, hi, state):
    beta = solve(0.0)
    total = beta.sum()
    if lo <= total <= hi:
        return beta, state["iterations"]
    target = hi if total > hi else lo
    # sum(beta(nu)) - target changes sign between 0 and a nu that makes every
    # beta_i 0 (nu >= max kappa) or every beta_i B (nu <= -B sum_j K_ij - ...)
    far = float(np.max(kappa)) + 1.0 if total > hi else \
        -(float(B) * float(np.max(K.sum(axis=1))) + float(np.max(np.abs(kappa))) + 1.0)
    nu = scipy.optimize.brentq(lambda v: solve(v).sum() - target, 0.0, far, xtol=1e-12,
                               rtol=1e-12, maxiter=200)
    return solve(nu), state["iterations"]


def kliep_alpha(A, b, max_steps: int = 100):
    """Coefficients alpha of the KLIEP density-ratio model (Sugiyama et al.
    2008, the algorithm of their Fig. 1),

        max_alpha  sum_j log (A alpha)_j
        s.t.       b^T alpha = 1,  alpha >= 0,

    with A_jl = K(x_j^t, c_l) over the target samples and b_l = (1/ns)
    sum_i K(x_i^s, c_l) over the source: the constraint makes the modelled
    target density w p_s integrate to one.  Each step is a gradient ascent
    step alpha += eps A^T (1 / A alpha), then the projection back onto the
    constraints (add along b, clip at 0, rescale to b^T alpha = 1).  Step
    sizes eps = 10^3 ... 10^-3 in turn, each for up to `max_steps` steps or
    until a step no longer increases the likelihood.  Returns alpha.
    """
    def feasible(alpha):
        alpha = alpha + (1.0 - b @ alpha) * b / (b @ b)
        alpha = np.maximum(alpha, 0.0)
        return alpha / (b @ alpha)

    def loglik(alpha):
        return np.mean(np.log(np.maximum(A @ alpha, 1e-300)))

    alpha = feasible(np.ones(A.shape[1]))
    score = loglik(alpha)
    for eps in 10.0 ** np.arange(3, -4, -1):
        for _ in range(max_steps):
            trial = feasible(alpha + eps * A.T @ (1.0 / np.maximum(A @ alpha, 1e-300)))
            trial_score = loglik(trial)
            if trial_score <= score:
                break
            alpha, score = trial, trial_score
    return alpha


# --------------------------------------------------------------------------
# the estimators
# --------------------------------------------------------------------------

def _default_estimator():
    return LogisticRegression(max_iter=1000)


def _has_proba(self):
    if hasattr(self, "estimator_"):
        return hasattr(self.estimator_, "predict_proba")
    return hasattr(_default_estimator() if self.estimator is None else self.estimator,
                   "predict_proba")


class _InstanceWeighting(ClassifierMixin, BaseEstimator):
    """Shared fit / predict: weights from the subclass, then the wrapped
    classifier fitted with them (eq. 2)."""

    def fit(self, X, y, Xt=None):
        """Weights of the labelled source samples (X, y) towards the target
        samples Xt (here or as the `Xt` parameter; under GridSearchCV only
        the parameter is safe: it cuts every fit argument as long as X into
        folds), then the wrapped classifier fitted with
        `sample_weight=weights_`.

        Without target samples X is its own target: no shift, every weight 1,
        and the classifier is fitted as it would be alone.
        """
        if Xt is not None and self.Xt is not None:
            raise InputError("the target samples were given twice: as the Xt parameter and "
                             "to fit; give them once")
        self._check_params()
        Xt = self.Xt if Xt is None else Xt
        Xs, classes, codes = validate_fit_input(self, X, y)
        est = clone(self.estimator if self.estimator is not None else _default_estimator())
        if not has_fit_parameter(est, "sample_weight"):
            raise InputError(f"estimator {type(est).__name__} does not accept sample_weight in "
                             "fit, so it cannot use the weights; pass one that does")
        if Xt is None:
            self.weights_ = np.ones(len(Xs))
            self._fit_no_target(Xs)
        else:
            Xt = validate_target_features(self, Xt, Xs.shape[1])
            self.weights_ = self._weights(Xs, Xt)
        self.classes_ = classes
        try:
            self.estimator_ = est.fit(Xs, classes[codes], sample_weight=self.weights_)
        except ValueError as exc:   # e.g. one class for LogisticRegression
            raise InputError(f"{type(est).__name__}: {' '.join(str(exc).split())}") from None
        return self

    def _fit_no_target(self, Xs):
        pass

    def weights_for(self, X, Xt):
        """Weights of the samples X towards the target samples Xt with this
        estimator's settings, without fitting the classifier (and without
        changing this estimator): what `mmd.scoring`'s importance-weighted
        validation needs for each held-out fold."""
        est = clone(self)
        est._check_params()
        X = check_features(X, "X")
        return est._weights(X, validate_target_features(est, Xt, X.shape[1]))

    def __sklearn_is_fitted__(self):
        return hasattr(self, "estimator_")

    def predict(self, X):
        """Labels by the classifier fitted on the weighted source."""
        check_is_fitted(self)
        return self.estimator_.predict(validate_predict_input(self, X))

    @available_if(_has_proba)
    def predict_proba(self, X):
        """Class probabilities of the wrapped classifier (columns: classes_)."""
        check_is_fitted(self)
        return self.estimator_.predict_proba(validate_predict_input(self, X))


class KMM(_InstanceWeighting):
    """Kernel mean matching (Huang, Smola, Gretton, Borgwardt, Schoelkopf,
    "Correcting sample selection bias by unlabeled data", NIPS 2007).

    The weights beta minimise the MMD (eq. 4 of the chapter) between the
    beta-weighted source and the target in an RBF feature space,

        || (1/ns) sum_i beta_i phi(x_i^s) - (1/nt) sum_j phi(x_j^t) ||^2,

    subject to 0 <= beta_i <= B (no sample may dominate) and
    |sum beta_i - ns| <= ns eps (beta p_s stays close to a density): the
    quadratic programme of `kmm_weights`.  Then eq. 2 of the chapter: the
    wrapped classifier is fitted with `sample_weight=weights_`.

    Parameters
    ----------
    estimator : classifier whose fit takes sample_weight; None =
        LogisticRegression(max_iter=1000) (the module docstring says why not 1-NN).
    gamma : RBF kernel exp(-gamma ||x - x'||^2), a positive float or 'median'
        (1 / (2 median^2) of the pooled samples, the default).
    B : float > 0, upper bound of each weight (1000, as in Huang et al.).
    eps : float in [0, 1) or None: the slack of the sum constraint; None =
        (sqrt(ns) - 1) / sqrt(ns), the paper's choice B / sqrt(ns) scaled
        so that it stays below 1.
    tol, max_solver_iter : stopping rule of the L-BFGS-B solver (`kmm_weights`).
    Xt : the unlabelled target samples, when they are not passed to `fit`.

    Attributes
    ----------
    weights_ : (ns,) beta, one weight per source sample (mean about 1).
    gamma_ : the kernel's gamma used.  n_solver_iter_ : L-BFGS-B iterations (0 without target).
    estimator_ : the fitted wrapped classifier.  classes_, n_features_in_.
    """

    def __init__(self, estimator=None, gamma="median", B=1000.0, eps=None, tol=1e-15,
                 max_solver_iter=10000, Xt=None):
        self.estimator = estimator
        self.gamma = gamma
        self.B = B
        self.eps = eps
        self.tol = tol
        self.max_solver_iter = max_solver_iter
        self.Xt = Xt

    def _check_params(self):
        check_positive(self.B, "B")
        check_positive(self.tol, "tol")
        check_int(self.max_solver_iter, "max_solver_iter")
        if self.eps is not None and (isinstance(self.eps, bool) or
                                     not isinstance(self.eps, (int, float, np.floating))
                                     or not 0.0 <= self.eps < 1.0):
            raise InputError(f"eps must be None or a number in [0, 1), got {self.eps!r}")

    def _fit_no_target(self, Xs):
        self.gamma_, self.n_solver_iter_ = None, 0

    def _weights(self, Xs, Xt):
        ns, nt = len(Xs), len(Xt)
        if ns * (1.0 - self._eps(ns)) > ns * float(self.B):
            raise InputError(f"B={self.B} is too small: the weights must sum to about ns, "
                             "so B * (1 + eps) must reach 1")
        self.gamma_ = _resolve_gamma(self.gamma, Xs, Xt)
        K = np.exp(-self.gamma_ * squared_distances(Xs, Xs))
        kappa = (ns / nt) * np.exp(-self.gamma_ * squared_distances(Xs, Xt)).sum(axis=1)
        beta, self.n_solver_iter_ = kmm_weights(K, kappa, float(self.B), self._eps(ns),
                                                float(self.tol), int(self.max_solver_iter))
        return beta

    def _eps(self, ns):
        return (np.sqrt(ns) - 1.0) / np.sqrt(ns) if self.eps is None else float(self.eps)


class KLIEP(_InstanceWeighting):
    """Kullback-Leibler importance estimation procedure (Sugiyama, Nakajima,
    Kashima, von Buenau, Kawanabe, "Direct importance estimation with model
    selection and its application to covariate shift adaptation", NIPS 2007;
    AISM 60, 2008).

    Models the ratio as w(x) = sum_l alpha_l exp(-||x - c_l||^2 / (2 sigma^2))
    with b centres c_l drawn from the target samples (where w must be
    large), and maximises the KL-divergence fit of w p_s to p_t:
    max sum_j log w(x_j^t) s.t. (1/ns) sum_i w(x_i^s) = 1, alpha >= 0
    (`kliep_alpha`).  sigma is chosen by likelihood cross-validation on the
    target alone (no labels): the target is cut into `cv` folds, alpha
    fitted on the others, and the held-out mean log w(x^t) compared across
    the candidate widths.  Then eq. 2 of the chapter with
    `sample_weight=weights_`.

    Parameters
    ----------
    estimator : classifier whose fit takes sample_weight; None =
        LogisticRegression(max_iter=1000).
    sigmas : candidate kernel widths (floats), or None: the median distance
        of the pooled samples times 0.25, 0.5, 1, 2, 4.
    n_centres : int, b, at most this many target samples are centres (100,
        as in the paper).
    cv : int >= 2, folds of the likelihood cross-validation (5).
    max_steps : gradient steps per step size of `kliep_alpha`.
    random_state : seed of the centre draw and the folds.
    Xt : the unlabelled target samples, when they are not passed to `fit`.

    Attributes
    ----------
    weights_ : (ns,) w(x_i^s), mean 1 over the source.
    sigma_, centres_, alpha_ : the fitted model (`density_ratio` evaluates it).
    cv_scores_ : held-out mean log-likelihood of each candidate width.
    estimator_, classes_, n_features_in_.
    """

    def __init__(self, estimator=None, sigmas=None, n_centres=100, cv=5, max_steps=100,
                 random_state=None, Xt=None):
        self.estimator = estimator
        self.sigmas = sigmas
        self.n_centres = n_centres
        self.cv = cv
        self.max_steps = max_steps
        self.random_state = random_state
        self.Xt = Xt

    def _check_params(self):
        check_int(self.n_centres, "n_centres")
        check_int(self.cv, "cv", minimum=2)
        check_int(self.max_steps, "max_steps")
        if self.sigmas is not None:
            if np.ndim(self.sigmas) != 1 or len(self.sigmas) == 0:
                raise InputError(f"sigmas must be None or a list of positive widths, "
                                 f"got {self.sigmas!r}")
            for s in self.sigmas:
                check_positive(s, "each of sigmas")

    def _fit_no_target(self, Xs):
        # no shift: w = 1 everywhere, one centre with a flat kernel is not
        # needed; density_ratio returns ones
        self.sigma_, self.centres_, self.alpha_, self.cv_scores_ = None, None, None, {}

    def _weights(self, Xs, Xt):
        rng = check_random_state(self.random_state)
        nt = len(Xt)
        b = min(int(self.n_centres), nt)
        centres = Xt[np.sort(rng.choice(nt, b, replace=False))]
        if self.sigmas is None:
            sigma0 = np.sqrt(1.0 / (2.0 * median_gamma(np.vstack([Xs, Xt]))))
            sigmas = [sigma0 * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]
        else:
            sigmas = [float(s) for s in self.sigmas]
        Ds, Dt = squared_distances(Xs, centres), squared_distances(Xt, centres)
        folds = rng.permutation(nt) % min(int(self.cv), nt)
        self.cv_scores_ = {}
        for sigma in sigmas:
            Ks, Kt = np.exp(-Ds / (2 * sigma ** 2)), np.exp(-Dt / (2 * sigma ** 2))
            bvec = Ks.mean(axis=0)
            if not np.all(np.isfinite(bvec)) or bvec @ bvec <= 0:
                self.cv_scores_[sigma] = -np.inf   # every kernel value underflowed
                continue
            held = []
            for r in np.unique(folds):
                alpha = kliep_alpha(Kt[folds != r], bvec, int(self.max_steps))
                held.append(np.mean(np.log(np.maximum(Kt[folds == r] @ alpha, 1e-300))))
            self.cv_scores_[sigma] = float(np.mean(held))
        self.sigma_ = max(self.cv_scores_, key=self.cv_scores_.get)
        if not np.isfinite(self.cv_scores_[self.sigma_]):
            raise InputError("every candidate sigma makes all kernel values 0; pass wider sigmas")
        Ks = np.exp(-Ds / (2 * self.sigma_ ** 2))
        Kt = np.exp(-Dt / (2 * self.sigma_ ** 2))
        self.centres_ = centres
        self.alpha_ = kliep_alpha(Kt, Ks.mean(axis=0), int(self.max_steps))
        return Ks @ self.alpha_

    def density_ratio(self, X):
        """w(x) = p_t(x) / p_s(x) estimated at new samples X (ones after a
        fit without target)."""
        check_is_fitted(self)
        X = validate_predict_input(self, X)
        if self.alpha_ is None:
            return np.ones(len(X))
        return np.exp(-squared_distances(X, self.centres_) / (2 * self.sigma_ ** 2)) @ self.alpha_
