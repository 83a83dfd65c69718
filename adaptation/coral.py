"""Deep CORAL's adaptation loss (Sun & Saenko 2016): align the second-order statistics.

A cheaper l_A for eq. 21: instead of every moment (MMD with a characteristic
kernel), only the feature covariances of the two domains are matched. It is
the deep counterpart of CORAL's whitening-and-recolouring of the source.
"""
from __future__ import annotations

import tensorflow as tf


def covariance(features):
    """C = (X^T X - (1^T X)^T (1^T X) / n) / (n - 1), the unbiased feature covariance (d x d)."""
    features = tf.convert_to_tensor(features)
    count = tf.cast(tf.shape(features)[0], features.dtype)
    column_sums = tf.reduce_sum(features, axis=0, keepdims=True)
    gram = tf.matmul(features, features, transpose_a=True)
    return (gram - tf.matmul(column_sums, column_sums, transpose_a=True) / count) / (count - 1.0)


class CorrelationAlignment:
    """l_CORAL = 1 / (4 d^2) || C_S - C_T ||_F^2 (Sun & Saenko 2016, eq. 1), d the feature width.

    Example::

        loss = CorrelationAlignment()
        source = tf.random.normal([500, 8]); target = 2.0 * tf.random.normal([500, 8])
        loss(source, target)   # about (8 * (4 - 1)^2) / (4 * 64) = 0.28: the diagonals differ by 3
    """

    def __call__(self, source, target):
        source = tf.convert_to_tensor(source)
        target = tf.cast(tf.convert_to_tensor(target), source.dtype)
        width = tf.cast(tf.shape(source)[1], source.dtype)
        difference = covariance(source) - covariance(target)
        return tf.reduce_sum(tf.square(difference)) / (4.0 * width * width)

    def get_config(self) -> dict:
        return {}
