"""The functions ``DomainAdapter`` compiles: one training step per method, its optimizers, the inference pass.

Every method trains the same network with the same optimizers and schedules
(``adaptation.adapter``); only the loss of a step differs (textbook eq.
21-22): l_c alone, plus lambda times a discrepancy of the bottleneck features
(DAN's MK-MMD, Deep CORAL), or plus a domain discriminator's loss through the
gradient reversal (DANN, CDAN, CDAN+E). ``make_step`` builds that step once
per fit, for ``common.loop.train_loop``; ``make_forward`` the inference pass
that ``predict`` and ``transform`` share.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from adaptation.cdan import ConditionalAdversarialLoss
from adaptation.coral import CorrelationAlignment
from adaptation.dan import MultipleKernelMMD
from adaptation.dann import DomainAdversarialLoss
from adaptation.schedules import AnnealedLearningRate, adaptation_weight


def optimizers(network, total_steps: int, settings: dict):
    """(optimizer, variables) pairs: the new layers at lr0, a pretrained encoder at a scaled lr0."""
    head_variables = network.bottleneck.trainable_variables + network.classifier.trainable_variables
    if network.discriminator is not None:
        head_variables += network.discriminator.trainable_variables
    groups = []
    encoder_variables = network.encoder.trainable_variables
    rate = settings["learning_rate"]
    if encoder_variables:
        groups.append((sgd(rate * settings["encoder_learning_rate_scale"], total_steps, settings),
                       encoder_variables))
    groups.append((sgd(rate, total_steps, settings), head_variables))
    for optimizer, variables in groups:
        optimizer.build(variables)
    return groups


def sgd(rate: float, total_steps: int, settings: dict):
    schedule = AnnealedLearningRate(rate, total_steps, settings["learning_rate_schedule"])
    return keras.optimizers.SGD(learning_rate=schedule, momentum=settings["momentum"],
                                weight_decay=settings["weight_decay"] or None)


def make_step(network, groups, settings: dict, replicas: int = 1, labelled: bool = False):
    """The training step for ``common.loop.train_loop``: step(batch, progress) -> logged scalars.

    Each of the ``replicas`` computes its share of the global batch's loss
    (the summed gradients are one device's); the logged values are this
    replica's, which the loop averages. With ``labelled`` each batch carries a third part, labelled
    target samples, which join the source in l_c (not in the adaptation loss)."""
    method = settings["method"]
    global_batch = settings["batch_size"]
    trade_off, lambda_schedule = settings["trade_off"], settings["lambda_schedule"]
    variables = [variable for _, group in groups for variable in group]
    discrepancy = None
    if method == "dan":
        discrepancy = MultipleKernelMMD(settings["n_kernels"], settings["kernel_factor"], settings["mmd_estimator"])
    elif method == "coral":
        discrepancy = CorrelationAlignment()
    adversarial = DomainAdversarialLoss(network.discriminator) if method == "dann" else None
    conditional = None
    if method in ("cdan", "cdan+e"):
        conditional = ConditionalAdversarialLoss(
            network.discriminator, int(network.bottleneck.output_shape[-1]), network.num_classes,
            entropy_conditioning=method == "cdan+e", seed=settings["seed"])

    def step(batch, progress):
        if labelled:  # the source and the known target samples: one labelled batch of 2B
            (source_x, source_y), target_x, (known_x, known_y) = batch
            inputs = tf.concat([source_x, tf.cast(known_x, source_x.dtype)], axis=0)
            labels = tf.concat([tf.cast(source_y, tf.int32), tf.cast(known_y, tf.int32)], axis=0)
        else:
            (source_x, source_y), target_x = batch
            inputs, labels = source_x, source_y
        weight = trade_off * adaptation_weight(progress, lambda_schedule)
        values = {}
        with tf.GradientTape() as tape:
            count, labelled_count = tf.shape(source_x)[0], tf.shape(inputs)[0]
            if method in ("source-only", "adabn"):
                labelled_features = network.features(inputs, training=True)
                source_features, target_features = labelled_features[:count], None
            else:
                both = network.features(tf.concat([inputs, target_x], axis=0), training=True)
                labelled_features = both[:labelled_count]
                source_features, target_features = both[:count], both[labelled_count:]
            if conditional is not None:  # D is conditioned on the target's predictions too
                both_logits = network.classifier(both, training=True)
                logits = both_logits[:labelled_count]
            else:
                logits = network.classifier(labelled_features, training=True)
            per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(labels, tf.int32), logits=logits)
            classification = tf.nn.compute_average_loss(
                per_example, global_batch_size=global_batch * (2 if labelled else 1))
            if labelled:
                values["l_c_target"] = tf.reduce_mean(per_example[count:])
            total = classification
            if discrepancy is not None:
                distance = tf.cast(discrepancy(source_features, target_features), total.dtype) / replicas
                total = total + weight * distance
                values["l_A"] = distance * replicas
            if adversarial is not None:
                domain_loss, domain_accuracy = adversarial(
                    source_features, target_features, weight, training=True, global_batch_size=2 * global_batch,
                )
                total = total + domain_loss
                values["l_d"] = domain_loss * replicas
                values["discriminator_accuracy"] = domain_accuracy
            if conditional is not None:
                domain_loss, domain_accuracy = conditional(
                    source_features, target_features, logits[:count], both_logits[labelled_count:], weight,
                    training=True,
                    global_batch_size=2 * global_batch,
                )
                total = total + domain_loss
                values["l_d"] = domain_loss * replicas
                values["discriminator_accuracy"] = domain_accuracy
        gradients = tape.gradient(total, variables)
        start = 0
        for optimizer, group in groups:
            optimizer.apply_gradients(zip(gradients[start : start + len(group)], group, strict=True))
            start += len(group)
        correct = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.cast(labels, tf.int32))
        values = {"l_c": classification * replicas, **values}
        if discrepancy is not None or adversarial is not None or conditional is not None:
            values["lambda"] = weight
        return {
            **values,
            "learning_rate": tf.convert_to_tensor(groups[-1][0].learning_rate),
            "accuracy": tf.reduce_mean(tf.cast(correct, tf.float32)),
        }

    return step


def make_forward(network):
    """The compiled inference pass, (features, probabilities): made in ``fit`` (and after unpickling),
    so that predicting adds nothing to the adapter."""
    signature = tf.TensorSpec([None, *network.encoder.input_shape[1:]], tf.float32)

    @tf.function(input_signature=[signature])
    def forward(inputs):
        features = network.features(inputs, training=False)
        return features, tf.nn.softmax(network.classifier(features, training=False))

    return forward
