"""Conditional adversarial adaptation, CDAN and CDAN+E (Long et al. 2018, "Conditional Adversarial
Domain Adaptation"; the "CDANN" of 002, 4.3.2).

DANN's discriminator (eq. 22, ``adaptation.dann``) sees the features f alone,
so it can be fooled by aligning the two domains' *marginal* feature
distributions while the classes stay misaligned: target daisies may sit on
source tulips. CDAN conditions the discriminator on the classifier's
prediction g = softmax(C(f)) by feeding it the multilinear map

    T(f, g) = f (x) g = vec(f g^T),        (f in R^d, g in R^C: d * C values)

whose (i, j) entry f_i g_j places the features in the block of the class
they are predicted as; aligning T(f, g) aligns the joint distribution of
features and predictions, which for confident g is the class-conditional one.
The objective is eq. 22's saddle point with D reading T:

    min_{F, C} l_c(Ds, ys) + lambda * l_d,     max_D l_d,
    l_d = -E_s[w(x) log D(T(f, g))] - E_t[w(x) log(1 - D(T(f, g)))]

with the same gradient reversal R_lambda between T and D (the features climb
lambda * l_d, D descends it) and DANN's rising lambda schedule. CDAN has
w = 1. CDAN+E ("entropy conditioning") weights each sample by

    w(x) = 1 + exp(-H(g)),    H(g) = -sum_k g_k log g_k,

normalised to mean 1 within each domain's batch (each expectation above is a
weighted mean): confidently predicted samples, whose g says most about their
class, count for more in the alignment, and uncertain ones, which would pull
the features toward the wrong class's block, count for less.

When d * C is large (the paper: more than 4096), the exact map is replaced by
the randomized multilinear map

    T_R(f, g) = (R_f f) * (R_g g) / sqrt(k),     R_f in R^{k x d}, R_g in R^{k x C},

fixed Gaussian matrices drawn once (elementwise product; E[<T_R(a), T_R(b)>]
= <T(a), T(b)>), so D's input stays k-dimensional. With the flowers' 4 shared
classes and the 256-unit bottleneck the exact map has 1024 values and is used.

As in the paper's released code, g enters T and w as a constant (its gradient
is stopped): the classifier learns from l_c alone, and the adversarial
gradient reaches the features only through f (otherwise the features could
fool D by making g uniform, which T and w would reward).

002's 4.3.2 describes "CDANN" as a generator G that outputs pseudo-labels for
target images added to the training set; that is not the conditional domain
adversarial network of the literature, and the code follows Long et al. 2018.
"""
from __future__ import annotations

import math

import tensorflow as tf

from adaptation.dann import domain_accuracy
from adaptation.layers import GradientReversal

#: above this many values the exact map f (x) g is replaced by the randomized one (Long et al. 2018)
MAX_EXACT_MAP = 4096
#: the randomized map's dimension k
RANDOMIZED_DIM = 1024


def multilinear_map(features, predictions):
    """T(f, g) = vec(f g^T) per row: (n, d) and (n, C) -> (n, d * C), entry i * C + j = f_i g_j.

    Example: f = [1, 2], g = [0.25, 0.75] -> [0.25, 0.75, 0.5, 1.5].
    """
    features = tf.convert_to_tensor(features)
    predictions = tf.cast(predictions, features.dtype)
    outer = features[:, :, None] * predictions[:, None, :]
    return tf.reshape(outer, [-1, features.shape[-1] * predictions.shape[-1]])


class RandomizedMultilinearMap:
    """T_R(f, g) = (R_f f) * (R_g g) / sqrt(k) with R_f, R_g fixed standard-normal matrices.

    The matrices are drawn once, from ``seed`` (or TensorFlow's global seed),
    and never trained: the map is part of D's input, not of the network.
    """

    def __init__(self, feature_dim: int, num_classes: int, output_dim: int = RANDOMIZED_DIM, seed=None):
        self.output_dim = int(output_dim)
        generator = tf.random.Generator.from_seed(seed) if seed is not None else tf.random.get_global_generator()
        self.feature_matrix = generator.normal([int(feature_dim), self.output_dim])
        self.prediction_matrix = generator.normal([int(num_classes), self.output_dim])

    def __call__(self, features, predictions):
        features = tf.convert_to_tensor(features)
        projected_f = tf.matmul(features, tf.cast(self.feature_matrix, features.dtype))
        projected_g = tf.matmul(tf.cast(predictions, features.dtype), tf.cast(self.prediction_matrix, features.dtype))
        return projected_f * projected_g / math.sqrt(self.output_dim)


def map_dim(feature_dim: int, num_classes: int, max_exact: int = MAX_EXACT_MAP,
            randomized_dim: int = RANDOMIZED_DIM) -> int:
    """D's input size: d * C for the exact map, ``randomized_dim`` above ``max_exact``."""
    exact = int(feature_dim) * int(num_classes)
    return exact if exact <= max_exact else int(randomized_dim)


def entropy_weights(source_probabilities, target_probabilities):
    """CDAN+E's w = 1 + exp(-H(g)), normalised to mean 1 within each domain; no gradient flows.

    Example: a one-hot g (H = 0) weighs 2, a uniform g over 4 classes
    (H = log 4) weighs 1.25; in a batch of the two, 2 / 1.625 = 1.231 and
    1.25 / 1.625 = 0.769.
    """
    def weights(probabilities):
        probabilities = tf.stop_gradient(tf.convert_to_tensor(probabilities))
        entropy = -tf.reduce_sum(probabilities * tf.math.log(tf.clip_by_value(probabilities, 1e-12, 1.0)), axis=-1)
        raw = 1.0 + tf.exp(-entropy)
        return raw / tf.reduce_mean(raw)

    return weights(source_probabilities), weights(target_probabilities)


class ConditionalAdversarialLoss:
    """l_d of CDAN (``entropy_conditioning=False``) or CDAN+E (True), the reversal built in.

    Call it on the two domains' bottleneck features and classifier logits with
    lambda; minimising ``l_c + loss`` trains D to tell the domains apart from
    T(f, g) and, through ``GradientReversal``, the features to make that
    impossible. Example::

        adversarial = ConditionalAdversarialLoss(build_discriminator(map_dim(256, 4)), 256, 4)
        loss, accuracy = adversarial(f_s, f_t, logits_s, logits_t, weight=0.5, training=True)
    """

    def __init__(self, discriminator, feature_dim: int, num_classes: int, entropy_conditioning: bool = False,
                 max_exact: int = MAX_EXACT_MAP, randomized_dim: int = RANDOMIZED_DIM, seed=None):
        self.discriminator = discriminator
        self.entropy_conditioning = bool(entropy_conditioning)
        self.reversal = GradientReversal(name="gradient_reversal")
        if int(feature_dim) * int(num_classes) <= max_exact:
            self.map = multilinear_map
        else:
            self.map = RandomizedMultilinearMap(feature_dim, num_classes, randomized_dim, seed=seed)

    def __call__(self, source_features, target_features, source_logits, target_logits, weight,
                 training: bool = True, global_batch_size=None):
        features = tf.concat([source_features, target_features], axis=0)
        # g is a constant to the adversarial loss (see the module docstring)
        probabilities = tf.stop_gradient(tf.nn.softmax(tf.concat([source_logits, target_logits], axis=0)))
        conditioned = self.map(self.reversal(features, weight=weight), probabilities)
        logits = tf.reshape(self.discriminator(conditioned, training=training), [-1])
        count = tf.shape(source_features)[0]
        labels = tf.concat([tf.ones([count], logits.dtype), tf.zeros([tf.shape(target_features)[0]], logits.dtype)], 0)
        per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        if self.entropy_conditioning:
            source_weights, target_weights = entropy_weights(probabilities[:count], probabilities[count:])
            per_example = per_example * tf.cast(tf.concat([source_weights, target_weights], axis=0), per_example.dtype)
        if global_batch_size is None:
            loss = tf.reduce_mean(per_example)
        else:
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
        return loss, domain_accuracy(logits[:count], logits[count:])
