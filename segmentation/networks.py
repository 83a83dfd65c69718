"""The segmentation networks: U-Net from scratch, and TLBSN with a pretrained encoder.

TLBSN (the textbook's transfer-learning-based segmentation network, its
figure 10) is a fully convolutional encoder-decoder: the encoder is an
ImageNet classifier's convolutional base (``common.backbones.build_base``),
the decoder mirrors it, one level per resolution of the encoder, and skip
connections carry each encoder level's last activation across to the decoder
level of the same resolution (multi-scale information: the deep levels know
*what* is ventricle, the shallow ones *where* its border runs).

Each decoder level: bilinear 2x upsampling, concatenation with the skip, one
3 x 3 convolution with batch normalisation and ReLU. Its width doubles with
each halving of the resolution, ``min(128, width * stride)`` filters. One
convolution per level, not U-Net's two: at 128 x 128 the high-resolution
levels of the decoder cost several times the whole MobileNetV2 encoder, and
a second one nearly doubles the step time on a CPU. A sigmoid 1 x 1
convolution gives the ventricle probability per pixel.

The encoder keeps ImageNet's BatchNorm statistics (called with
``training=False``, as every fine-tuned base in the project), and is
unfrozen block by block from the top (``set_trainable_depth``, figure 11).
The U-Net baseline has the same decoder on an encoder of U-Net's blocks (two
3 x 3 convolutions, then max pooling) of the same widths, trained from scratch.
"""
from __future__ import annotations

import keras

from common.backbones import BackbonePreprocess, build_base, freeze_below
from common.errors import UserError

#: Per backbone, from the shallowest level to the deepest: (skip layer: the
#: last activation at that resolution, stride, first layer of the encoder
#: block that computes it). Releasing ``depth`` blocks makes the last
#: ``depth`` of these blocks trainable (VGG16's convolution blocks 1-5;
#: MobileNetV2's stages between its stride-2 layers).
ENCODER_LEVELS = {
    "vgg16": [
        ("block1_conv2", 1, "block1_conv1"),
        ("block2_conv2", 2, "block2_conv1"),
        ("block3_conv3", 4, "block3_conv1"),
        ("block4_conv3", 8, "block4_conv1"),
        ("block5_conv3", 16, "block5_conv1"),
    ],
    "vgg19": [
        ("block1_conv2", 1, "block1_conv1"),
        ("block2_conv2", 2, "block2_conv1"),
        ("block3_conv4", 4, "block3_conv1"),
        ("block4_conv4", 8, "block4_conv1"),
        ("block5_conv4", 16, "block5_conv1"),
    ],
    "mobilenet_v2": [
        ("block_1_expand_relu", 2, "Conv1"),
        ("block_3_expand_relu", 4, "block_1_expand"),
        ("block_6_expand_relu", 8, "block_3_expand"),
        ("block_13_expand_relu", 16, "block_6_expand"),
        ("out_relu", 32, "block_13_expand"),
    ],
}
BACKBONES = tuple(ENCODER_LEVELS)
MAX_DECODER_FILTERS = 128


def encoder_blocks(backbone: str) -> int:
    return len(ENCODER_LEVELS[_check_backbone(backbone)])


def _check_backbone(backbone: str) -> str:
    if backbone not in ENCODER_LEVELS:
        raise UserError(f"segmentation supports the backbones {', '.join(BACKBONES)}, not {backbone!r}")
    return backbone


def decoder_filters(stride: int, width: int) -> int:
    return int(min(MAX_DECODER_FILTERS, width * stride))


def _conv_block(x, filters: int, name: str, convolutions: int = 1):
    for index in range(1, convolutions + 1):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{index}")(x)
        x = keras.layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        x = keras.layers.ReLU(name=f"{name}_relu{index}")(x)
    return x


def _decoder(deepest, deepest_stride: int, skips: list[tuple[object, int]], width: int):
    """Upsample from the deepest map through every skip (shallowest last) to full resolution."""
    x = keras.layers.Conv2D(
        decoder_filters(deepest_stride, width), 1, use_bias=False, name="bridge_conv"
    )(deepest)
    x = keras.layers.BatchNormalization(name="bridge_bn")(x)
    x = keras.layers.ReLU(name="bridge_relu")(x)
    for skip, stride in skips:
        x = keras.layers.UpSampling2D(2, interpolation="bilinear", name=f"up{stride}")(x)
        x = keras.layers.Concatenate(name=f"skip{stride}")([x, skip])
        x = _conv_block(x, decoder_filters(stride, width), name=f"decoder{stride}")
    # The ventricle is a few per cent of the window: start every pixel at that prior (sigmoid(-3) = 5 %)
    # instead of 50 %, so the first epochs are not spent pushing the background down.
    return keras.layers.Conv2D(1, 1, activation="sigmoid", dtype="float32", name="ventricle",
                               bias_initializer=keras.initializers.Constant(-3.0))(x)


def build_tlbsn(backbone: str, weights: str, image_size: int, width: int = 16):
    """(model, base): pixels (0..255, 3 channels) -> ventricle probability, on a pretrained encoder.

    The base comes from ``common.backbones.build_base`` (ImageNet, none or a
    file), its backbone's ``preprocess_input`` is a layer inside the model,
    and the base starts frozen (``set_trainable_depth(base, backbone, 0)``).
    """
    levels = ENCODER_LEVELS[_check_backbone(backbone)]
    if image_size % 32:
        raise UserError(f"--image-size must be a multiple of 32 for the encoder-decoder, not {image_size}")
    base = build_base(backbone, weights, image_size)
    encoder = keras.Model(
        base.inputs, [base.get_layer(name).output for name, _, _ in levels], name=f"{backbone}_encoder"
    )
    pixels = keras.Input((image_size, image_size, 3), name="pixels")
    scaled = BackbonePreprocess(backbone, name="preprocess")(pixels)
    features = encoder(scaled, training=False)
    skips = [(feature, stride) for feature, (_, stride, _) in zip(features[:-1], levels[:-1], strict=False)]
    if levels[0][1] > 1:  # no full-resolution level in the encoder: the image itself is the last skip
        skips.insert(0, (scaled, 1))
    outputs = _decoder(features[-1], levels[-1][1], skips[::-1], width)
    set_trainable_depth(base, backbone, 0)
    return keras.Model(pixels, outputs, name=f"tlbsn_{backbone}"), base


def build_unet(image_size: int, width: int = 16, levels: int = 5):
    """The U-Net baseline, trained from scratch: plain convolution blocks in, the same decoder out."""
    if image_size % 2 ** (levels - 1):
        raise UserError(f"--image-size must be a multiple of {2 ** (levels - 1)} for the U-Net, not {image_size}")
    pixels = keras.Input((image_size, image_size, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(pixels)
    skips = []
    for level in range(levels):
        stride = 2**level
        if level:
            x = keras.layers.MaxPooling2D(2, name=f"pool{stride}")(x)
        x = _conv_block(x, decoder_filters(stride, width), name=f"encoder{stride}", convolutions=2)
        skips.append((x, stride))
    outputs = _decoder(skips[-1][0], skips[-1][1], skips[-2::-1], width)
    return keras.Model(pixels, outputs, name="unet")


def set_trainable_depth(base, backbone: str, depth: int) -> int:
    """Make the top ``depth`` encoder blocks trainable and freeze the rest; returns the first trainable index.

    ``depth`` 0 freezes the whole base (only the decoder trains); the
    maximum releases every block. Goes through ``common.backbones.freeze_below``.
    """
    levels = ENCODER_LEVELS[_check_backbone(backbone)]
    if not 0 <= depth <= len(levels):
        raise UserError(f"{backbone} has {len(levels)} encoder blocks; cannot release {depth}")
    if depth == 0:
        return freeze_below(base, "none")
    return freeze_below(base, levels[len(levels) - depth][2])
