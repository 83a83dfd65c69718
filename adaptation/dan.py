"""DAN's adaptation loss l_A of eq. 21: the multi-kernel MMD between source and target features.

Deep Adaptation Networks (Long et al. 2015) train ``l = l_c(Ds, ys) +
lambda * l_A(Ds, Dt)`` with l_A the squared MK-MMD between the source and the
target batch's features, measured in the RKHS of a convex combination of
Gaussian kernels at several bandwidths (one bandwidth is never right for
features that change while they are trained).

The MMD and the kernels are the project's own (``mmd.distance.mmd2`` with
``mmd.kernels``' multi-RBF family around the median heuristic): the same
estimator that measures the domain gap before and after adaptation is the one
that is minimised. ``mmd.kernels.median_heuristic`` returns a Python float
(a choice made from data, outside the graph); inside a compiled training step
the batch's median squared distance is a tensor instead
(``mmd.kernels.median_squared_distance``, the same median), so the features
are divided by its square root, and the family's fixed bandwidths then sit
around the median of every batch, exactly as the heuristic would put them. Dividing the inputs by s is
the same as multiplying every bandwidth's gamma by 1 / s^2, and s is a
constant to the gradient (``stop_gradient``), as the heuristic's bandwidth is.
"""
from __future__ import annotations

import tensorflow as tf

from mmd.distance import ESTIMATORS, mmd2
from mmd.kernels import median_squared_distance, rbf_bandwidths


class MultipleKernelMMD:
    """l_A of eq. 21 (DAN): MK-MMD^2(Ds, Dt) = || E_s phi(f_s) - E_t phi(f_t) ||^2_{H_k}.

    k = (1/m) sum_u exp(-gamma_u ||x - y||^2), m = ``n_kernels`` bandwidths
    gamma_u = gamma_0 * factor^(u - (m - 1) / 2), gamma_0 = 1 / (2 median^2) the
    median heuristic on the pooled batch (5 kernels spaced by 2 cover
    gamma_0 / 4 .. 4 gamma_0). Equal kernel weights, as in TLlib's DAN, instead
    of DAN's test-power-optimal ones. ``estimator`` is ``mmd2``'s: "biased"
    (all pairs; >= 0), "unbiased" or "linear" (Gretton's linear-time
    estimator over disjoint pairs, O(batch), the one DAN's paper uses).

    Example::

        loss = MultipleKernelMMD()
        source = tf.random.normal([32, 256]); target = tf.random.normal([32, 256]) + 1.0
        loss(source, target)   # equals mmd.distance.mmd2(source, target, kernel="multi-rbf"),
                               # the median heuristic and 5 kernels spaced by 2: about 0.22
    """

    def __init__(self, n_kernels: int = 5, factor: float = 2.0, estimator: str = "biased"):
        if estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, not {estimator!r}")
        self.n_kernels = int(n_kernels)
        self.factor = float(factor)
        self.estimator = estimator
        # around gamma_0 = 1 / (2 * 1): the median squared distance is 1 after scaling
        self.gammas = rbf_bandwidths(0.5, self.n_kernels, self.factor)

    def __call__(self, source, target):
        source = tf.convert_to_tensor(source)
        target = tf.cast(tf.convert_to_tensor(target), source.dtype)
        scale = tf.sqrt(median_squared_distance(tf.concat([source, target], axis=0)))
        return mmd2(source / scale, target / scale, kernel="multi-rbf", gammas=self.gammas,
                    estimator=self.estimator)

    def get_config(self) -> dict:
        return {"n_kernels": self.n_kernels, "factor": self.factor, "estimator": self.estimator}
