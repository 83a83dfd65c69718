"""Choosing a setting without target labels: what the shallow (mmd) and deep (adaptation) lessons share.

Unsupervised domain adaptation has no labelled target data to validate on,
and the source's validation accuracy cannot tell whether the domains were
aligned. Two label-free criteria live here, once, for both lessons:

- the mean **prediction entropy** on the unlabelled target,
  H = -(1/n_t) sum_i sum_k p_ik log p_ik, the lower the better (entropy
  minimisation, Grandvalet and Bengio 2005; Morerio et al. 2018 choose Deep
  CORAL's weight by it);
- **deep embedded validation** (DEV; You, Wang, Long and Wang, "Towards
  accurate model selection in deep unsupervised domain adaptation", ICML
  2019): the source validation loss, importance-weighted towards the target
  (Sugiyama et al. 2007's IWCV) with weights w = p(target | f) / p(source | f)
  (times n_s / n_t) from a domain classifier on the model's features f, and a
  control variate that removes most of the weights' variance::

      L_w = w * l,   eta = -Cov(L_w, w) / Var(w),
      R_DEV = mean(L_w) + eta * mean(w) - eta,

  the lower the better. E[w] = 1 under the source, so the control-variate
  term has mean zero and only cuts the variance.
"""
from __future__ import annotations

import numpy as np


def row_entropy(probabilities) -> np.ndarray:
    """The entropy (nats) of each row of ``probabilities``: 0 for one-hot rows, log K for uniform ones."""
    from scipy.special import entr  # -p log p, exactly 0 at p = 0 (no clipping floor to leak into the sum)

    return np.sum(entr(np.clip(np.asarray(probabilities, np.float64), 0.0, 1.0)), axis=1)


def prediction_entropy(probabilities) -> float:
    """Mean entropy (nats) of the rows of ``probabilities``.

    Example: prediction_entropy([[1, 0], [0.5, 0.5]]) = (0 + log 2) / 2 = 0.347.
    """
    return float(np.mean(row_entropy(probabilities)))


def domain_density_ratio(source_features, target_features, validation_features, *, C: float = 1.0,
                         random_state: int = 0) -> np.ndarray:
    """w(f) = p_t(f) / p_s(f) at the source validation features, from a logistic domain classifier.

    The classifier is fitted on the source training features against the
    target features (standardised), and the odds d / (1 - d) it gives a
    validation point, times n_s / n_t, estimate the density ratio (Bayes' rule
    with the classes' priors removed). Clipped to [1e-3, 1e3] (You et al.
    2019 clip the discriminator's output likewise) so that one point cannot
    carry the whole estimate.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    source, target = np.asarray(source_features, np.float64), np.asarray(target_features, np.float64)
    X = np.vstack([source, target])
    y = np.r_[np.zeros(len(source)), np.ones(len(target))]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000, random_state=random_state))
    classifier.fit(X, y)
    d = np.clip(classifier.predict_proba(np.asarray(validation_features, np.float64))[:, 1], 1e-6, 1 - 1e-6)
    return np.clip(d / (1 - d) * len(source) / len(target), 1e-3, 1e3)


def deep_embedded_validation(losses, weights) -> float:
    """R_DEV of the source validation losses ``losses`` with density ratios ``weights`` (module docstring)."""
    losses, weights = np.asarray(losses, np.float64), np.asarray(weights, np.float64)
    if losses.shape != weights.shape or losses.ndim != 1 or len(losses) < 2:
        raise ValueError("deep_embedded_validation needs one weight per validation loss, at least two of each")
    weighted = weights * losses
    variance = np.var(weights, ddof=1)
    eta = 0.0 if variance == 0 else -np.cov(weighted, weights, ddof=1)[0, 1] / variance
    return float(np.mean(weighted) + eta * np.mean(weights) - eta)


def dev_risk(source_train_features, source_validation_features, validation_losses, target_features,
             random_state: int = 0) -> float:
    """DEV end to end: the density ratio from the features, then the control-variate risk (lower is better)."""
    weights = domain_density_ratio(source_train_features, target_features, source_validation_features,
                                   random_state=random_state)
    return deep_embedded_validation(validation_losses, weights)
