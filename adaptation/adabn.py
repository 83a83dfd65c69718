"""AdaBN (Li et al. 2016): adaptation without training, by target-domain BatchNorm statistics.

A BatchNorm layer normalises with the mean and variance it saw in training:
the source's. AdaBN keeps every learned weight and replaces those statistics
with the target domain's, so each domain is normalised by its own moments
(the first and second moments of every unit are aligned by construction).
The classic baseline that costs one pass over the unlabelled target data.
"""
from __future__ import annotations

import keras
import numpy as np


def batchnorm_layers(model) -> list:
    """Every BatchNormalization layer inside ``model`` (nested models included), in order."""
    found = []
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(batchnorm_layers(layer))
    return found


def get_statistics(layers) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(np.array(layer.moving_mean.numpy()), np.array(layer.moving_variance.numpy())) for layer in layers]


def set_statistics(layers, statistics) -> None:
    for layer, (mean, variance) in zip(layers, statistics, strict=False):
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)


def estimate_statistics(forward, layers, batches) -> list[tuple[np.ndarray, np.ndarray]]:
    """Re-estimate the moving statistics of ``layers`` on ``batches`` (the target data); return them.

    ``forward(batch)`` must run the network with its BatchNorm layers in
    training mode, so that each layer normalises with the batch's own moments
    and the layers above it see target-normalised inputs, as they will at test
    time. The moving averages become the cumulative average over the batches
    (momentum k / (k + 1) at the k-th batch, counting from 0): with a single
    batch holding all the data, the exact population moments. The layers'
    momentum and trainable flags are restored afterwards; no weight changes.
    """
    saved = [(layer.momentum, layer.trainable) for layer in layers]
    try:
        for layer in layers:
            layer.trainable = True  # a frozen BatchNorm layer ignores training=True
        for index, batch in enumerate(batches):
            for layer in layers:
                layer.momentum = index / (index + 1.0)
            forward(batch)
    finally:
        for layer, (momentum, trainable) in zip(layers, saved, strict=False):
            layer.momentum = momentum
            layer.trainable = trainable
    return get_statistics(layers)
