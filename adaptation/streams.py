"""What ``DomainAdapter`` is given, turned into what its training step reads.

Both ways in (``fit``'s arrays and ``fit_domains``' arrays or ``tf.data``
datasets, batched or not) end here as one kind of stream: unbatched float32
examples, ``(x, y)`` for labelled data and ``x`` alone for the target, whose
labels are dropped before anything else sees them; then endless reshuffled
batches of ``batch_size`` per domain, zipped, so that each step sees a
source batch and a target batch of the same size.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from mmd.validation import InputError


def example_shape(data, labelled: bool, encoder=None):
    """The shape of one sample; None where a dataset's encoder decides (a dataset may be batched
    or not, and only the encoder's input rank tells which). ``encoder``: the adapter's parameter."""
    if isinstance(data, tf.data.Dataset):
        if encoder is not None:
            return None
        spec = data.element_spec
        shape = tuple((spec[0] if isinstance(spec, tuple) else spec).shape)
        return shape[-1:] if len(shape) in (1, 2) else shape  # vectors, batched or not
    x = data[0] if labelled and isinstance(data, (tuple, list)) else data
    return tuple(np.shape(x)[1:])


def examples(data, labelled: bool, rank: int, n_classes: int | None = None):
    """An unbatched dataset of (x, y) (labelled) or x, and its size (None if unknown)."""
    if isinstance(data, tf.data.Dataset):
        spec = data.element_spec
        paired = isinstance(spec, tuple)
        x_spec = spec[0] if paired else spec
        if len(x_spec.shape) == rank + 1:
            data = data.unbatch()
        elif len(x_spec.shape) != rank:
            raise InputError(f"dataset elements of shape {x_spec.shape} do not fit an encoder of "
                             f"{rank}-d samples")
        if labelled and not paired:
            raise InputError("the source dataset must yield (inputs, labels) pairs")
        if not labelled and paired:
            data = data.map(lambda x, *rest: x)  # the target's labels go no further
        if x_spec.dtype != tf.float32:  # the networks compute in float32, as for arrays
            data = data.map(lambda x, *y: (tf.cast(x, tf.float32), *y) if y else tf.cast(x, tf.float32))
        size = int(data.cardinality())
        return data, (size if size >= 0 else None)
    if labelled:
        if not isinstance(data, (tuple, list)) or len(data) != 2:
            raise InputError("the source must be (inputs, labels) arrays or a dataset of such pairs")
        x, y = np.asarray(data[0], np.float32), np.asarray(data[1]).ravel()
        if len(x) != len(y):
            raise InputError(f"{len(x)} source inputs but {len(y)} labels")
        if len(y) and (not np.all(np.mod(y, 1) == 0) or y.min() < 0 or y.max() >= n_classes):
            raise InputError(f"source labels must be class indices in 0..{n_classes - 1}")
        return tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32))), len(x)
    if isinstance(data, (tuple, list)) and len(data) == 2 and np.ndim(data[1]) == 1:
        data = data[0]  # (x, y): the labels are dropped here
    x = np.asarray(data, np.float32)
    return tf.data.Dataset.from_tensor_slices(x), len(x)


def training_batches(source, target, rank: int, n_classes: int, settings: dict, labelled_target=None):
    """Endless ((source x, source y), target x) batches of ``batch_size`` each, reshuffled every pass
    (and a third, (x, y) of ``labelled_target``, when given); returns the dataset and the two domain sizes."""
    source_examples, source_size = examples(source, True, rank, n_classes)
    target_examples, target_size = examples(target, False, rank)
    for size, name in ((source_size, "source"), (target_size, "target")):
        if size is not None and size < 1:
            raise InputError(f"the {name} data is empty")
    batch_size, seed = settings["batch_size"], settings["seed"]

    def endless(stream, size, salt):
        buffer = size if size is not None else 10_000
        stream = stream.shuffle(buffer, seed=seed * 1009 + salt, reshuffle_each_iteration=True)
        return stream.repeat().batch(batch_size, drop_remainder=True)

    streams = [endless(source_examples, source_size, 1), endless(target_examples, target_size, 2)]
    if labelled_target is not None:
        known_examples, known_size = examples(labelled_target, True, rank, n_classes)
        if known_size is not None and known_size < 1:
            raise InputError("the labelled target data is empty")
        streams.append(endless(known_examples, known_size, 3))
    batches = tf.data.Dataset.zip(tuple(streams))
    return batches.prefetch(tf.data.AUTOTUNE), source_size, target_size
