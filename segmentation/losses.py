"""The losses of textbook eq. 23-24, per example (one value per image).

Every function returns a vector over the batch, so a training step can average
it over the *global* batch with ``tf.nn.compute_average_loss`` and run
unchanged under a ``tf.distribute`` strategy.

eq. 23, the segmentation loss:  ``L_mae(F(x), y) = mean over pixels |F(x) - y|``
eq. 24, the GAN objective:      ``min_G max_D V(G, D) + beta * L_mae(G(x), y)``
with ``V(G, D) = E[log D(x, y)] + E[log(1 - D(x, G(x)))]`` summed over the
discriminator's scales (averaged here, so beta does not depend on their number).

Where the text says otherwise (docs/textbook-errata.md): eq. 23 is called an
"L1 mean squared error", but its formula and its name ``L_mae`` are the mean
absolute error, which is what ``l1_loss`` computes (E13). The ``V`` of eq. 24
is printed in 12.5.2 as a second "eq. 22", the unconditional GAN on noise z;
here D judges (image, mask) pairs, real or generated (E12).
"""
from __future__ import annotations

import tensorflow as tf

PIXEL_LOSSES = ("l1", "dice", "bce", "l1+dice", "bce+dice")


def _per_image_mean(values):
    return tf.reduce_mean(tf.reshape(values, [tf.shape(values)[0], -1]), axis=1)


def l1_loss(masks, probabilities):
    """eq. 23: mean absolute error per image between the probability map and the binary mask.

    The text calls eq. 23 "mean squared error"; it is L1 (docs/textbook-errata.md, E13).

    >>> float(l1_loss(tf.ones((1, 2, 2, 1)), tf.fill((1, 2, 2, 1), 0.75))[0])
    0.25
    """
    return _per_image_mean(tf.abs(tf.cast(masks, probabilities.dtype) - probabilities))


def dice_loss(masks, probabilities, smooth: float = 1.0):
    """1 - soft Dice per image, ``1 - (2 sum(p y) + s) / (sum p + sum y + s)``.

    Insensitive to how small the ventricle is, where pixel losses are
    dominated by the background.

    >>> round(float(dice_loss(tf.ones((1, 2, 2, 1)), tf.fill((1, 2, 2, 1), 0.5))[0]), 4)  # 1 - 5/7
    0.2857
    """
    masks = tf.cast(masks, probabilities.dtype)
    batch = tf.shape(probabilities)[0]
    p, y = tf.reshape(probabilities, [batch, -1]), tf.reshape(masks, [batch, -1])
    overlap = tf.reduce_sum(p * y, axis=1)
    return 1.0 - (2.0 * overlap + smooth) / (tf.reduce_sum(p, axis=1) + tf.reduce_sum(y, axis=1) + smooth)


def bce_loss(masks, probabilities):
    """Binary cross-entropy per image, averaged over pixels."""
    masks = tf.cast(masks, probabilities.dtype)
    epsilon = 1e-6
    p = tf.clip_by_value(probabilities, epsilon, 1.0 - epsilon)
    return _per_image_mean(-(masks * tf.math.log(p) + (1.0 - masks) * tf.math.log(1.0 - p)))


def pixel_loss(name: str):
    """The segmentation loss by name: ``l1`` (eq. 23), ``dice``, ``bce``, or a sum of two."""
    if name == "l1":
        return l1_loss
    if name == "dice":
        return dice_loss
    if name == "bce":
        return bce_loss
    if name == "l1+dice":
        return lambda masks, probabilities: l1_loss(masks, probabilities) + dice_loss(masks, probabilities)
    if name == "bce+dice":
        return lambda masks, probabilities: bce_loss(masks, probabilities) + dice_loss(masks, probabilities)
    raise ValueError(f"pixel loss must be one of {', '.join(PIXEL_LOSSES)}, not {name!r}")


def _patch_bce(logits, target: float):
    labels = tf.fill(tf.shape(logits), tf.constant(target, logits.dtype))
    return _per_image_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def discriminator_loss(real_logits, fake_logits):
    """eq. 24's ``max_D V``: minimise ``-log D(x, y) - log(1 - D(x, G(x)))``, averaged over scales.

    ``real_logits`` and ``fake_logits`` are lists, one logit map per scale,
    for the real pairs and the generated pairs. Returns (per-image loss, list
    of per-scale losses). A discriminator that outputs 0 everywhere (D = 1/2)
    scores ``2 log 2 = 1.386``.
    """
    per_scale = [_patch_bce(real, 1.0) + _patch_bce(fake, 0.0) for real, fake in zip(real_logits, fake_logits, strict=False)]
    return tf.add_n(per_scale) / len(per_scale), per_scale


def generator_adversarial_loss(fake_logits):
    """eq. 24's ``min_G V`` in its non-saturating form, ``-log D(x, G(x))``, averaged over scales.

    ``log(1 - D(x, G(x)))`` itself has almost no gradient while the
    discriminator wins easily (early in training); ``-log D`` has the same
    fixed point and strong gradients there (Goodfellow et al., 2014).
    """
    per_scale = [_patch_bce(fake, 1.0) for fake in fake_logits]
    return tf.add_n(per_scale) / len(per_scale)
