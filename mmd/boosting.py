"""TrAdaBoost: instance transfer with a few labelled target samples.

Eq. 2 of the chapter (12.2.3) weights each source loss by w_i.  KMM and
KLIEP (`mmd.weighting`) derive the weights from unlabelled target samples
and assume only p(x) moves; TrAdaBoost (Dai, Yang, Xue, Yu, "Boosting for
transfer learning", ICML 2007) learns them from a few *labelled* target
samples and so also handles source samples whose labels disagree with the
target's concept.  Boosting over the union of both, round t:

    p^t = w^t / sum w^t; fit h_t on the union with sample weights p^t;
    eps_t = sum_{target, wrong} w_i / sum_{target} w_i   (target error only);
    beta_t = eps_t / (1 - eps_t),  beta = 1 / (1 + sqrt(2 ln n / N));
    source sample misclassified: w_i <- w_i beta     (trust it less, Hedge);
    target sample misclassified: w_i <- w_i / beta_t (AdaBoost: more).

The output votes with the second half of the rounds, t = ceil(N/2) .. N,
each with weight log(1 / beta_t).  For two classes this is the paper's
rule (h_f = 1 when prod beta_t^-h_t(x) >= prod beta_t^-1/2); with more
classes the same weighted vote takes the class with the largest total
(ties: the first class, where the paper's binary rule picks 1).
eps_t must be < 1/2: a round above is clipped to just below (its vote
weight is then ~0 and the target weights barely move), and eps_t = 0 to
1e-10 (a finite vote weight).
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted, has_fit_parameter

from .validation import (
    InputError,
    check_int,
    check_labels,
    validate_fit_input,
    validate_predict_input,
    validate_target_features,
)

#: eps_t is kept inside [EPS_FLOOR, 1/2 - EPS_FLOOR] (module docstring)
EPS_FLOOR = 1e-10


class TrAdaBoost(ClassifierMixin, BaseEstimator):
    """TrAdaBoost (Dai et al., ICML 2007), the algorithm of the module
    docstring.

    Parameters
    ----------
    estimator : base classifier whose fit takes sample_weight; None =
        LogisticRegression(max_iter=1000).
    n_estimators : int, N, the boosting rounds (20).
    Xt, yt : the labelled target samples, when they are not passed to `fit`
        (the safe way under GridSearchCV, which cuts every fit argument as
        long as X into folds).

    Attributes
    ----------
    estimators_ : the N fitted classifiers h_t.
    errors_ : eps_t, target error of each round (after clipping).
    betas_ : beta_t.  estimator_weights_ : log(1 / beta_t) (0 for the first
        half of the rounds, which do not vote).
    source_weights_, target_weights_ : the final w, normalised to sum 1
        over both (which source samples were trusted).
    classes_, n_features_in_.

    Without target samples, `fit(X, y)` fits the base classifier alone
    (one round): there is nothing to transfer to.
    """

    def __init__(self, estimator=None, n_estimators=20, Xt=None, yt=None):
        self.estimator = estimator
        self.n_estimators = n_estimators
        self.Xt = Xt
        self.yt = yt

    def fit(self, X, y, Xt=None, yt=None):
        """Boost on the source (X, y) and the labelled target (Xt, yt)."""
        if (Xt is not None or yt is not None) and (self.Xt is not None or self.yt is not None):
            raise InputError("the target samples were given twice: as the Xt/yt parameters and "
                             "to fit; give them once")
        if Xt is None and yt is None:
            Xt, yt = self.Xt, self.yt
        if (Xt is None) != (yt is None):
            raise InputError("TrAdaBoost needs the target samples and their labels together "
                             "(Xt and yt)")
        N = check_int(self.n_estimators, "n_estimators")
        Xs, classes, codes = validate_fit_input(self, X, y)
        ys = classes[codes]
        base = clone(self.estimator if self.estimator is not None
                     else LogisticRegression(max_iter=1000))
        if not has_fit_parameter(base, "sample_weight"):
            raise InputError(f"estimator {type(base).__name__} does not accept sample_weight in "
                             "fit; boosting needs it")
        if Xt is None:
            self.classes_ = np.unique(ys)
            self.estimators_ = [self._fit_one(base, Xs, ys, None)]
            self.errors_, self.betas_ = [], []
            self.estimator_weights_ = np.ones(1)
            self.source_weights_, self.target_weights_ = np.full(len(Xs), 1 / len(Xs)), np.zeros(0)
            return self
        Xt = validate_target_features(self, Xt, Xs.shape[1])
        check_labels(yt, len(Xt), "yt", min_classes=1)
        yt = np.asarray(yt).ravel()
        try:
            self.classes_ = np.unique(np.concatenate([ys, yt]))
        except TypeError:
            raise InputError("y and yt mix label types that cannot be ordered") from None
        n, m = len(Xs), len(Xt)
        Xall, yall = np.vstack([Xs, Xt]), np.concatenate([ys, yt])
        source, target = slice(0, n), slice(n, n + m)
        beta = 1.0 / (1.0 + math.sqrt(2.0 * math.log(n) / N)) if n > 1 else 1.0
        w = np.ones(n + m)
        self.estimators_, self.errors_, self.betas_ = [], [], []
        for _ in range(N):
            p = w / w.sum()
            h = self._fit_one(base, Xall, yall, p * (n + m))   # mean weight 1
            wrong = np.asarray(h.predict(Xall)) != yall
            eps = float(w[target] @ wrong[target] / w[target].sum())
            eps = min(max(eps, EPS_FLOOR), 0.5 - EPS_FLOOR)
            beta_t = eps / (1.0 - eps)
            w[source] *= np.where(wrong[source], beta, 1.0)
            w[target] *= np.where(wrong[target], 1.0 / beta_t, 1.0)
            w /= w.sum()        # p is unchanged by it; keeps w from overflowing
            self.estimators_.append(h)
            self.errors_.append(eps)
            self.betas_.append(beta_t)
        votes = np.log(1.0 / np.asarray(self.betas_))
        votes[: math.ceil(N / 2) - 1] = 0.0          # rounds 1 .. ceil(N/2) - 1 do not vote
        self.estimator_weights_ = votes
        self.source_weights_, self.target_weights_ = w[source], w[target]
        return self

    def _fit_one(self, base, X, y, sample_weight):
        est = clone(base)
        try:
            return est.fit(X, y, sample_weight=sample_weight)
        except ValueError as exc:   # e.g. one class for LogisticRegression
            raise InputError(f"{type(est).__name__}: {' '.join(str(exc).split())}") from None

    def __sklearn_is_fitted__(self):
        return hasattr(self, "estimators_")

    def predict(self, X):
        """The weighted vote of the second half of the rounds."""
        check_is_fitted(self)
        X = validate_predict_input(self, X)
        scores = np.zeros((len(X), len(self.classes_)))
        for h, a in zip(self.estimators_, self.estimator_weights_, strict=True):
            if a == 0.0:
                continue
            codes = np.searchsorted(self.classes_, np.asarray(h.predict(X)))
            scores[np.arange(len(X)), codes] += a
        return self.classes_[np.argmax(scores, axis=1)]
