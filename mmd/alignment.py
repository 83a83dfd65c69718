"""Shallow feature alignment: subspace alignment (SA) and CORAL.

Feature adaptation, eq. 1 of the chapter (12.2.3): a map Phi puts source
and target samples into one space where a classifier trained on the source,
min (1/n) sum_i L(Phi(x_i^s), y_i^s, theta), also fits the target.  TCA,
JDA and BDA (`mmd.solvers`) learn Phi by minimising MMD; the two methods
here align second-order statistics in closed form, without an eigenproblem
over both domains or an iteration:

* `SA`, subspace alignment (Fernando, Habrard, Sebban, Tuytelaars, ICCV
  2013): the k leading principal directions Ps of the source and Pt of the
  target; M = Ps^T Pt (their eq. 3, the minimiser of ||Ps M - Pt||_F) turns
  the source basis into the target's, so the source is represented as
  Xs Ps M and the target as Xt Pt.
* `CORAL`, correlation alignment (Sun, Feng, Saenko, "Return of
  frustratingly easy domain adaptation", AAAI 2016): whiten the source with
  its own covariance and re-colour it with the target's,
  Ds = Xs (Cs + lambda I)^-1/2 (Ct + lambda I)^1/2 (their Algorithm 1, lambda
  = 1); the target stays as it is.

Both follow the contract of TCA / JDA (`mmd.solvers`): the target is the
`Xt` parameter (safe under GridSearchCV) or the third argument of `fit`;
`fit(X, y)` without target means no shift (SA is then PCA, CORAL the
identity); labels are optional (the map needs none; `predict` does);
`transform` gives the features of target-domain samples, `transform_source`
those of source-domain samples; the classifier is 1-NN unless `classifier=`
says otherwise (the papers' Office-Caltech protocol).
"""
from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.validation import check_is_fitted

from .validation import (
    InputError,
    check_int,
    check_positive,
    validate_fit_input,
    validate_predict_input,
    validate_target_features,
)


def principal_directions(X, k: int) -> np.ndarray:
    """(d, k) orthonormal leading principal directions of X (centred on its
    own mean), by a thin SVD; k <= min(n, d)."""
    Xc = X - X.mean(axis=0)
    _, _, Vt = np.linalg.svd(Xc, full_matrices=False)
    return Vt[:k].T


def sym_power(C, power: float) -> np.ndarray:
    """C^power of a symmetric positive definite C through its eigenvectors
    (what Matlab's C^-0.5 in CORAL's Algorithm 1 computes)."""
    w, V = np.linalg.eigh(0.5 * (C + C.T))
    return (V * np.maximum(w, np.finfo(float).tiny) ** power) @ V.T


class _FeatureAlignment(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Shared fit / transform / predict; subclasses set the two maps."""

    def fit(self, X, y=None, Xt=None):
        """Fit the alignment of the source samples X to the target samples
        Xt (here or as the `Xt` parameter; under GridSearchCV only the
        parameter is safe), then, when y is given, the classifier on the
        aligned source.  Without target samples X is its own target."""
        if Xt is not None and self.Xt is not None:
            raise InputError("the target samples were given twice: as the Xt parameter and "
                             "to fit; give them once")
        self._check_params()
        Xt = self.Xt if Xt is None else Xt
        Xs, self.classes_, codes = validate_fit_input(self, X, y)
        Xt = Xs if Xt is None else validate_target_features(self, Xt, Xs.shape[1])
        self._fit_maps(Xs, Xt)
        self.classifier_ = None
        if codes is not None:
            clf = KNeighborsClassifier(n_neighbors=1) if self.classifier is None \
                else clone(self.classifier)
            self.classifier_ = clf.fit(self._source_features(Xs), codes)
        return self

    def __sklearn_is_fitted__(self):
        return hasattr(self, "classifier_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = False   # the map needs no labels
        return tags

    def transform(self, X):
        """Aligned features of target-domain samples."""
        check_is_fitted(self)
        return self._target_features(validate_predict_input(self, X))

    def transform_source(self, X):
        """Aligned features of source-domain samples (what the classifier
        was trained on)."""
        check_is_fitted(self)
        return self._source_features(validate_predict_input(self, X))

    def predict(self, X):
        """Labels of target-domain samples by the classifier trained on the
        aligned source."""
        check_is_fitted(self)
        if self.classifier_ is None:
            raise InputError("predict needs the source labels: fit(X, y, Xt) with y given")
        return self.classes_[np.asarray(self.classifier_.predict(self.transform(X)))]


class SA(_FeatureAlignment):
    """Subspace alignment (Fernando et al., ICCV 2013).

    With Ps, Pt (d, k) the leading principal directions of the source and
    the target, the alignment M = Ps^T Pt minimises ||Ps M - Pt||_F (their
    eq. 3); a source sample is represented as (x - mean_s) Ps M, a target
    sample as (x - mean_t) Pt.  The papers z-score each domain first, so
    the centring only matters for data that is not (the Office-Caltech
    protocol's per-domain z-score already centres both).

    Parameters
    ----------
    n_components : int, k, the subspace dimension (100, the setting of the
        TCA / JDA tables; not tuned on target labels).  Clipped to
        min(d, ns, nt) (`n_components_`).
    classifier : scikit-learn classifier on the aligned features; None = 1-NN.
    Xt : the unlabelled target samples, when they are not passed to `fit`.

    Attributes
    ----------
    source_components_, target_components_ : Ps, Pt (d, k).
    alignment_ : M = Ps^T Pt (k, k).  source_mean_, target_mean_ : (d,).
    n_components_, classes_, classifier_, n_features_in_.
    """

    def __init__(self, n_components=100, classifier=None, Xt=None):
        self.n_components = n_components
        self.classifier = classifier
        self.Xt = Xt

    def _check_params(self):
        check_int(self.n_components, "n_components")

    def _fit_maps(self, Xs, Xt):
        k = self.n_components_ = min(int(self.n_components), Xs.shape[1], len(Xs), len(Xt))
        self.source_mean_, self.target_mean_ = Xs.mean(axis=0), Xt.mean(axis=0)
        self.source_components_ = principal_directions(Xs, k)
        self.target_components_ = principal_directions(Xt, k)
        self.alignment_ = self.source_components_.T @ self.target_components_

    def _source_features(self, X):
        return (X - self.source_mean_) @ self.source_components_ @ self.alignment_

    def _target_features(self, X):
        return (X - self.target_mean_) @ self.target_components_


class CORAL(_FeatureAlignment):
    """Correlation alignment on features (Sun et al., AAAI 2016).

    Ds = Xs (Cs + lambda I)^-1/2 (Ct + lambda I)^1/2 (Algorithm 1): the
    covariance of the re-coloured source is the regularised target
    covariance; the classifier is trained on Ds and applied to the target
    samples as they are.  Like the paper, the map is linear (no mean shift):
    means are the z-score's business.

    Parameters
    ----------
    lambda_ : float > 0, the ridge added to both covariances (1, the paper's).
    classifier : scikit-learn classifier; None = 1-NN.
    Xt : the unlabelled target samples, when they are not passed to `fit`.

    Attributes
    ----------
    coral_map_ : (d, d), (Cs + lambda I)^-1/2 (Ct + lambda I)^1/2.
    classes_, classifier_, n_features_in_.
    """

    def __init__(self, lambda_=1.0, classifier=None, Xt=None):
        self.lambda_ = lambda_
        self.classifier = classifier
        self.Xt = Xt

    def _check_params(self):
        check_positive(self.lambda_, "lambda_")

    def _fit_maps(self, Xs, Xt):
        d = Xs.shape[1]
        ridge = float(self.lambda_) * np.eye(d)

        def cov(X):   # ddof 1 as Matlab's cov; one sample: zero, not NaN
            Xc = X - X.mean(axis=0)
            return Xc.T @ Xc / max(len(X) - 1, 1)

        self.coral_map_ = sym_power(cov(Xs) + ridge, -0.5) @ sym_power(cov(Xt) + ridge, 0.5)

    def _source_features(self, X):
        return X @ self.coral_map_

    def _target_features(self, X):
        return X
