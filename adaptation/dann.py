"""DANN's adversarial loss l_d of eq. 22 (Ganin & Lempitsky 2015): a domain discriminator
behind a gradient reversal layer.

The discriminator D reads the features f through ``GradientReversal`` and is
trained to say which domain each came from, minimising the domain
classification loss l_d. The reversal hands the feature extractor -lambda
times D's gradient, so one minimisation of ``l_c + l_d`` is the saddle point
of eq. 22: D descends l_d, the features ascend lambda * l_d, and the domains
become hard to tell apart while the classes stay easy to tell apart.

Eq. 22 here is 12.4.4's ``l = l_c(Ds, ys) + lambda l_d(Ds, Dt)``; the chapter
prints the segmentation GAN's value function in 12.5.2 as a second "(22)"
(docs/textbook-errata.md, E12).
"""
from __future__ import annotations

import tensorflow as tf

from adaptation.layers import GradientReversal


def domain_classification_loss(source_logits, target_logits, global_batch_size=None):
    """l_d = -(1/(ns + nt)) [ sum_s log D(f_s) + sum_t log (1 - D(f_t)) ]: binary cross-entropy
    with domain label 1 for source and 0 for target, D(f) = sigmoid(logit).

    ``global_batch_size`` (ns + nt over all replicas) averages over the global
    batch under a ``tf.distribute`` strategy; by default, over this batch.

    Example: logits of +2 for every source and -2 for every target feature
    (a confident, correct discriminator) give l_d = log(1 + e^-2) = 0.127;
    logits of 0 everywhere (a discriminator fooled) give log 2 = 0.693.
    """
    source_logits = tf.reshape(source_logits, [-1])
    target_logits = tf.reshape(target_logits, [-1])
    logits = tf.concat([source_logits, target_logits], axis=0)
    labels = tf.concat([tf.ones_like(source_logits), tf.zeros_like(target_logits)], axis=0)
    per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    if global_batch_size is None:
        return tf.reduce_mean(per_example)
    return tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)


def domain_accuracy(source_logits, target_logits):
    """The discriminator's accuracy: source called source (logit > 0) and target called target."""
    correct = tf.concat([tf.reshape(source_logits, [-1]) > 0, tf.reshape(target_logits, [-1]) <= 0], axis=0)
    return tf.reduce_mean(tf.cast(correct, tf.float32))


class DomainAdversarialLoss:
    """l_d of eq. 22 with the reversal built in: call it on the two domains' features with lambda.

    Minimising ``l_c + DomainAdversarialLoss(...)(f_s, f_t, lambda)`` trains the
    discriminator to minimise l_d and, through ``GradientReversal``, the
    feature extractor to maximise lambda * l_d.

    Example::

        adversarial = DomainAdversarialLoss(build_discriminator(256))
        loss, accuracy = adversarial(source_features, target_features, weight=0.5, training=True)
        # gradient w.r.t. the features: -0.5 * d l_d / d f; w.r.t. the discriminator: + d l_d / d theta_D
    """

    def __init__(self, discriminator):
        self.discriminator = discriminator
        self.reversal = GradientReversal(name="gradient_reversal")

    def __call__(self, source_features, target_features, weight, training: bool = True, global_batch_size=None):
        features = tf.concat([source_features, target_features], axis=0)
        logits = self.discriminator(self.reversal(features, weight=weight), training=training)
        count = tf.shape(source_features)[0]
        source_logits, target_logits = logits[:count], logits[count:]
        loss = domain_classification_loss(source_logits, target_logits, global_batch_size)
        return loss, domain_accuracy(source_logits, target_logits)
