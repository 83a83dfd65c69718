"""The multi-scale discriminator of the transfer-learning GAN (textbook figure 9).

It judges an (image, segmentation) pair: the MRI window and either the
expert's mask (a real pair) or the generator's probability map (a generated
pair), stacked as two channels. The pair is judged at ``scales`` resolutions
(full, 1/2, 1/4 by average pooling), each by its own small fully
convolutional critic with the same layout, whose output is a map of logits,
one per patch: at full resolution a patch is a small piece of the ventricle's
border (local shape), at 1/4 it covers most of the window (global shape and
position). Every scale sees both kinds of pair, and its loss is averaged over
its patches; the scales' losses are averaged (``losses.discriminator_loss``).

No batch normalisation: the discriminator is called on a real and a generated
batch separately, and per-batch statistics would let it tell them apart by
their statistics rather than by their shapes. Each critic is three 4 x 4
convolutions (16, 32, 64 filters, strides 2, 2, 1) and a logit layer: a
two-channel pair needs few filters, and twice as many would make the
discriminator cost more than the generator on a CPU.
"""
from __future__ import annotations

import keras


def _critic(x, width: int, name: str):
    for index, (filters, stride) in enumerate(((width, 2), (2 * width, 2), (4 * width, 1))):
        x = keras.layers.Conv2D(filters, 4, strides=stride, padding="same", name=f"{name}_conv{index + 1}")(x)
        x = keras.layers.LeakyReLU(0.2, name=f"{name}_lrelu{index + 1}")(x)
    return keras.layers.Conv2D(1, 4, padding="same", dtype="float32", name=f"{name}_logits")(x)


def build_discriminator(image_size: int, scales: int = 3, width: int = 16) -> keras.Model:
    """[pixels (0..255, 3 channels), segmentation (0..1, 1 channel)] -> a list of ``scales`` logit maps."""
    if scales < 1:
        raise ValueError(f"the discriminator needs at least one scale, not {scales}")
    if image_size % (4 * 2 ** (scales - 1)):
        raise ValueError(f"image size {image_size} must be a multiple of {4 * 2 ** (scales - 1)} for {scales} scales")
    pixels = keras.Input((image_size, image_size, 3), name="pixels")
    segmentation = keras.Input((image_size, image_size, 1), name="segmentation")
    image = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_image")(pixels[..., :1])
    mask = keras.layers.Rescaling(2.0, offset=-1.0, name="scale_mask")(segmentation)
    pair = keras.layers.Concatenate(name="pair")([image, mask])
    outputs = []
    for scale in range(scales):
        factor = 2**scale
        view = pair if scale == 0 else keras.layers.AveragePooling2D(factor, name=f"downscale{factor}")(pair)
        outputs.append(_critic(view, width, name=f"scale{factor}"))
    return keras.Model([pixels, segmentation], outputs, name="multiscale_discriminator")
