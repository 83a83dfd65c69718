"""The networks: shapes, layer-wise unfreezing, the multi-scale discriminator and one GAN step of eq. 24."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from segmentation_synthetic import draw_pair

from segmentation import losses
from segmentation.discriminator import build_discriminator
from segmentation.finetuning import depth_at, parse_unfreeze, phases
from segmentation.gan import gan_step
from segmentation.networks import build_tlbsn, build_unet, set_trainable_depth


def batch_of_discs(count=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    pairs = [draw_pair(rng, size, "disc" if i % 2 else "ring") for i in range(count)]
    images = np.stack([np.repeat(p[0][..., None], 3, -1) for p in pairs]).astype("float32")
    masks = np.stack([p[1][..., None] for p in pairs]).astype("float32")
    return tf.constant(images), tf.constant(masks)


@pytest.fixture(scope="module")
def vgg():
    keras.utils.set_random_seed(0)
    return build_tlbsn("vgg16", "none", 32, width=4)


def test_segmentation_networks_give_a_probability_per_pixel(vgg):
    images, _ = batch_of_discs(2)
    model, _ = vgg
    for network in (model, build_unet(32, width=4)):
        output = network(images).numpy()
        assert output.shape == (2, 32, 32, 1)  # full resolution: the decoder undoes every stride
        assert output.min() >= 0.0 and output.max() <= 1.0 and network.layers[-1].activation.__name__ == "sigmoid"
        assert not np.allclose(output[0], output[1])  # and it depends on the image


def test_layer_wise_unfreezing_releases_encoder_blocks_from_the_top(vgg):
    model, base = vgg
    trainable = lambda: [layer.name for layer in base.layers if layer.trainable and layer.weights]  # noqa: E731
    decoder_weights = len([w for w in model.trainable_weights if not w.path.startswith("block")])
    set_trainable_depth(base, "vgg16", 0)
    assert trainable() == [] and len(model.trainable_weights) == decoder_weights
    set_trainable_depth(base, "vgg16", 1)
    assert trainable() == ["block5_conv1", "block5_conv2", "block5_conv3"]
    assert len(model.trainable_weights) == decoder_weights + 6   # their kernels and biases reach the model
    set_trainable_depth(base, "vgg16", 2)
    assert trainable()[0] == "block4_conv1" and len(trainable()) == 6
    set_trainable_depth(base, "vgg16", 5)
    assert len(trainable()) == 13  # every convolution of VGG16
    set_trainable_depth(base, "vgg16", 0)


def test_unfreeze_schedule():
    assert parse_unfreeze("5,10", 30, 5) == [5, 10]
    assert parse_unfreeze("all", 30, 5) == [0] * 5 and parse_unfreeze("none", 30, 5) == []
    assert [depth_at(epoch, [2, 4]) for epoch in range(1, 7)] == [0, 0, 1, 1, 2, 2]
    assert phases(6, [2, 4]) == [(0, 1, 2), (1, 3, 4), (2, 5, 6)]
    assert phases(3, [0] * 5) == [(5, 1, 3)]
    for bad in ("5,3", "1,2,3,4,5,6", "x"):
        with pytest.raises(Exception, match="--unfreeze"):
            parse_unfreeze(bad, 30, 5)


def test_discriminator_judges_every_scale():
    discriminator = build_discriminator(32, scales=3, width=4)
    images, masks = batch_of_discs(2)
    outputs = discriminator([images, masks])
    assert [tuple(o.shape) for o in outputs] == [(2, 8, 8, 1), (2, 4, 4, 1), (2, 2, 2, 1)]
    # eq. 24: each scale adds -log D(real) - log(1 - D(fake)); a discriminator right everywhere scores ~0,
    # one fooled at one scale of three pays a third of that scale's error.
    right_real = [tf.fill((2, s, s, 1), 20.0) for s in (8, 4, 2)]
    right_fake = [tf.fill((2, s, s, 1), -20.0) for s in (8, 4, 2)]
    loss, per_scale = losses.discriminator_loss(right_real, right_fake)
    assert float(tf.reduce_max(loss)) < 1e-6 and len(per_scale) == 3
    fooled = [right_fake[0], right_fake[1], tf.fill((2, 2, 2, 1), 0.0)]
    loss, _ = losses.discriminator_loss(right_real, fooled)
    assert loss.numpy() == pytest.approx([np.log(2) / 3] * 2, rel=1e-4)
    swapped_real = [right_real[0], tf.fill((2, 4, 4, 1), 0.0), right_real[2]]
    loss, _ = losses.discriminator_loss(swapped_real, right_fake)
    assert loss.numpy() == pytest.approx([np.log(2) / 3] * 2, rel=1e-4)


def test_gan_step_shows_real_and_generated_pairs_at_every_scale_and_trains_both(vgg):
    keras.utils.set_random_seed(1)
    generator, base = vgg
    set_trainable_depth(base, "vgg16", 1)
    discriminator = build_discriminator(32, scales=3, width=4)
    seen = []

    class Recording(keras.Model):
        """The discriminator, remembering the segmentation half of every pair it is shown."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, pair, training=False):
            seen.append(pair[1])
            return self.inner(pair, training=training)

    recording = Recording(discriminator)
    g_optimizer, d_optimizer = keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3)
    step = gan_step(generator, recording, g_optimizer, d_optimizer, losses.l1_loss, beta=100.0)
    images, masks = batch_of_discs(4)
    generated_before = generator(images, training=True).numpy()
    discriminator_before = [w.numpy().copy() for w in discriminator.trainable_weights]
    encoder_before = base.get_layer("block5_conv3").kernel.numpy().copy()
    frozen_before = base.get_layer("block1_conv1").kernel.numpy().copy()
    values = step((images, masks), tf.constant(0.0))
    # one real and one generated pair per step, each judged at all three scales
    assert len(seen) == 2
    assert np.array_equal(seen[0].numpy(), masks.numpy())
    assert np.allclose(seen[1].numpy(), generated_before, atol=1e-5)
    for scale in (1, 2, 4):
        assert 0 < float(values[f"d_real_scale{scale}"]) < 1 and 0 < float(values[f"d_fake_scale{scale}"]) < 1
    assert float(values["generator_loss"]) == pytest.approx(
        float(values["adversarial"]) + 100.0 * float(values["l1"]), rel=1e-4)
    # every scale's critic and the released encoder block moved; the frozen block did not
    changed = [not np.allclose(a, w.numpy()) for a, w in zip(discriminator_before, discriminator.trainable_weights, strict=False)]
    assert all(changed)
    assert not np.allclose(encoder_before, base.get_layer("block5_conv3").kernel.numpy())
    assert np.array_equal(frozen_before, base.get_layer("block1_conv1").kernel.numpy())
    set_trainable_depth(base, "vgg16", 0)


def test_pixel_losses_by_hand():
    masks = tf.constant([[[[1.0], [0.0]], [[0.0], [0.0]]]])
    probabilities = tf.constant([[[[0.5], [0.5]], [[0.0], [0.0]]]])
    assert float(losses.l1_loss(masks, probabilities)[0]) == pytest.approx(0.25)
    assert float(losses.dice_loss(masks, probabilities)[0]) == pytest.approx(1 - (2 * 0.5 + 1) / (1 + 1 + 1))
    assert float(losses.bce_loss(masks, probabilities)[0]) == pytest.approx(2 * np.log(2) / 4, rel=1e-4)
