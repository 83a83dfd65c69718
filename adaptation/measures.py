"""How far apart two domains' features are: MMD^2 (through ``mmd.distance``) and the proxy A-distance.

Both are measured on features, before adaptation (what the network starts
from) and after (the adapted bottleneck), with no class labels at all:

* MMD^2 with an RBF kernel at the median-heuristic bandwidth of the pooled
  sample (``mmd.distance.mmd2``, unbiased estimator): the heuristic rescales
  the kernel to each space, so the number is comparable across spaces of
  different widths (it lies between 0 and 2).
* the proxy A-distance of Ben-David et al. (2007), as in Ganin et al. (2016):
  train a linear domain classifier on half of a balanced sample of source
  and target features, measure its error ``err`` on the other half, and
  report ``2 (1 - 2 err)``: 0 when the domains cannot be told apart, 2 when
  they are perfectly separable.
"""
from __future__ import annotations

import numpy as np

from mmd.distance import mmd2


def domain_mmd2(source, target, max_per_domain: int = 2000, seed: int = 0) -> float:
    """Unbiased MMD^2, RBF kernel, median-heuristic bandwidth; at most ``max_per_domain`` random rows per side."""
    rng = np.random.default_rng(seed)
    source = _subsample(np.asarray(source, np.float64), max_per_domain, rng)
    target = _subsample(np.asarray(target, np.float64), max_per_domain, rng)
    return float(mmd2(source, target, kernel="rbf", estimator="unbiased"))


def proxy_a_distance(source, target, seed: int = 0, max_per_domain: int = 1000) -> float:
    """2 (1 - 2 err) of a logistic-regression domain classifier, on a balanced, seeded split.

    Each domain contributes the same number of rows (the smaller domain's
    size, at most ``max_per_domain``), so a classifier that always answers
    the larger domain scores err = 0.5, not the imbalance.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(seed)
    count = min(len(source), len(target), max_per_domain)
    if count < 4:
        raise ValueError(f"the proxy A-distance needs at least 4 samples per domain, not {count}")
    source = _subsample(np.asarray(source, np.float64), count, rng)
    target = _subsample(np.asarray(target, np.float64), count, rng)
    features = np.concatenate([source, target])
    domains = np.concatenate([np.ones(count), np.zeros(count)])
    train_x, test_x, train_y, test_y = train_test_split(
        features, domains, test_size=0.5, random_state=seed, stratify=domains,
    )
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    classifier.fit(train_x, train_y)
    error = float(np.mean(classifier.predict(test_x) != test_y))
    return 2.0 * (1.0 - 2.0 * error)


def _subsample(values: np.ndarray, count: int, rng) -> np.ndarray:
    if len(values) <= count:
        return values
    return values[np.sort(rng.choice(len(values), count, replace=False))]
