"""The networks and training steps of 12.5.2 (2) and (3): what one batch does to G and D.

Model construction (2): the generator G is the segmentation network (TLBSN,
a pretrained encoder under a mirrored decoder, or a U-Net from scratch for
the baseline), the discriminator D the multi-scale critic of figure 9.
Loss (3): ``unet`` and ``tlbsn`` train on the pixel loss alone (eq. 23 with
``l1``); ``gan`` on eq. 24, ``min_G max_D V(G, D) + beta * L_pixel``, one
Adam step for each network per batch.

The steps are plain functions of ``(batch, progress)`` for ``common.loop``
(``run.loop``). Their losses are ``Run.mean`` of per-image vectors, the batch
mean that stays the global batch's when the batch is split across replicas;
the values they log are ``Run.logged_mean``, which the loop averages over
replicas.
"""
from __future__ import annotations

from common.errors import UserError
from common.run import Run
from segmentation import losses


def build_networks(method: str, backbone: str, weights, image_size: int, decoder_width: int,
                   discriminator_scales: int):
    """(generator, its pretrained encoder or None for unet, discriminator or None unless gan)."""
    from segmentation.discriminator import build_discriminator
    from segmentation.networks import build_tlbsn, build_unet

    if method == "unet":
        generator, base = build_unet(image_size, decoder_width), None
    else:
        generator, base = build_tlbsn(backbone, weights, image_size, decoder_width)
    discriminator = None
    if method == "gan":
        try:
            discriminator = build_discriminator(image_size, discriminator_scales)
        except ValueError as error:
            raise UserError(f"--discriminator-scales {discriminator_scales}: {error}") from None
    return generator, base, discriminator


def make_optimizer(rate: float, total_steps: int, schedule: str, variables):
    """Adam (the book's, for both networks), built on every variable that may ever train.

    Built up front so that releasing an encoder block later finds its slots
    already there, instead of a second build inside a compiled step.
    """
    import keras

    from common.training import learning_rate

    optimizer = keras.optimizers.Adam(learning_rate(rate, total_steps, schedule))
    optimizer.build(variables)
    return optimizer


def segmentation_step(generator, optimizer, pixel_loss):
    """One step of ``unet`` / ``tlbsn``: the pixel loss alone (eq. 23 with ``l1``)."""
    import tensorflow as tf

    def step(batch, progress):
        images, masks = batch
        with tf.GradientTape() as tape:
            probabilities = generator(images, training=True)
            per_image = pixel_loss(masks, probabilities)
            loss = Run.mean(per_image)
        variables = generator.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=False))
        return {"l1": Run.logged_mean(losses.l1_loss(masks, probabilities)), "pixel_loss": Run.logged_mean(per_image)}

    return step


def gan_step(generator, discriminator, generator_optimizer, discriminator_optimizer, pixel_loss, beta: float):
    """One step of eq. 24: the discriminator and the generator each take one Adam step.

    One generator pass serves both: the discriminator learns to score real
    pairs (image, expert mask) 1 and generated pairs (image, G(image)) 0 at
    every scale; the generator learns to make its pairs score 1 while staying
    within ``beta * L_pixel`` of the expert.
    """
    import tensorflow as tf

    def step(batch, progress):
        images, masks = batch
        with tf.GradientTape() as generator_tape, tf.GradientTape() as discriminator_tape:
            probabilities = generator(images, training=True)
            real = discriminator([images, masks], training=True)
            fake = discriminator([images, probabilities], training=True)
            discriminator_per_image, _ = losses.discriminator_loss(real, fake)
            adversarial_per_image = losses.generator_adversarial_loss(fake)
            pixel_per_image = pixel_loss(masks, probabilities)
            generator_loss = Run.mean(adversarial_per_image) + beta * Run.mean(pixel_per_image)
            discriminator_loss = Run.mean(discriminator_per_image)
        generator_variables = generator.trainable_variables
        discriminator_variables = discriminator.trainable_variables
        generator_gradients = generator_tape.gradient(generator_loss, generator_variables)
        discriminator_gradients = discriminator_tape.gradient(discriminator_loss, discriminator_variables)
        generator_optimizer.apply_gradients(zip(generator_gradients, generator_variables, strict=False))
        discriminator_optimizer.apply_gradients(zip(discriminator_gradients, discriminator_variables, strict=False))
        adversarial, pixel = Run.logged_mean(adversarial_per_image), Run.logged_mean(pixel_per_image)
        values = {
            "l1": Run.logged_mean(losses.l1_loss(masks, probabilities)),
            "pixel_loss": pixel,
            "adversarial": adversarial,
            "generator_loss": adversarial + beta * pixel,
            "discriminator_loss": Run.logged_mean(discriminator_per_image),
        }
        for index, (real_logits, fake_logits) in enumerate(zip(real, fake, strict=False)):
            scale = 2**index
            values[f"d_real_scale{scale}"] = tf.reduce_mean(tf.sigmoid(real_logits))
            values[f"d_fake_scale{scale}"] = tf.reduce_mean(tf.sigmoid(fake_logits))
        return values

    return step
