"""Pretrained backbones by name, each with its input size and its own preprocessing.

The texts scale pixels by ``rescale=1/255`` for ImageNet weights that expect
``preprocess_input``, and the chapter's exercise mixes ``rescale=1/255`` in training with ``preprocess_input`` at
prediction (docs/textbook-errata.md, E23); here each backbone's
``preprocess_input`` is a layer *inside* the model (``BackbonePreprocess``), so
every model takes raw RGB pixels in 0..255, and training, feature extraction
and prediction cannot disagree.

Weights: ``imagenet`` goes through Keras's own download and cache
(``$KERAS_HOME/models``, by default ``~/.keras/models``), ``none`` builds the
architecture with random weights (tests), and a path loads a local file.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import keras
import numpy as np

from common.errors import UserError
from common.files import first_line, keras_home, offline_error


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    application: str  # attribute of keras.applications
    module: str  # keras.applications submodule holding preprocess_input
    default_size: int
    min_size: int
    weights_file: str  # the official no-top ImageNet file, named in offline errors

    def preprocess(self, images):
        return getattr(keras.applications, self.module).preprocess_input(images)


#: The default first trainable layer of each backbone when fine-tuning (every
#: command's ``--unfreeze-from``), and why. One rule for all three: unfreeze
#: the last stage of the network, the layers whose features are the most
#: specific to ImageNet's classes, and keep the generic lower stages frozen.
UNFREEZE_FROM = {
    "vgg16": (
        "block5_conv1",
        "the last convolutional block, layers[15:] (the slides' lab fine-tunes it and freezes "
        "model.layers[:15], right on Keras 3; the 2016 Keras-blog original's layers[:25] is a Keras 1 count)",
    ),
    "vgg19": (
        "block5_conv1",
        "the last convolutional block, as for VGG16 (VGG19's block 5 has four convolutions and starts "
        "at layers[17])",
    ),
    "inception_v3": (
        "mixed9",
        "the top two Inception blocks, mixed9 and mixed10 (the first 249 layers frozen, as in the "
        "Keras guide to fine-tuning Inception-v3 that the textbook's flower example follows)",
    ),
    "mobilenet_v2": (
        "block_14_expand",
        "the last 7x7 stage, blocks 14-16 and Conv_1 (1.5 M of the 2.3 M weights): the counterpart "
        "of VGG16's block 5; it starts at a block boundary, so the frozen part's output is one tensor "
        "that can be cached",
    ),
}

BACKBONES = {
    spec.name: spec
    for spec in (
        BackboneSpec("vgg16", "VGG16", "vgg16", 224, 32, "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        BackboneSpec("vgg19", "VGG19", "vgg19", 224, 32, "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        BackboneSpec(
            "inception_v3", "InceptionV3", "inception_v3", 299, 75,
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        ),
        BackboneSpec(
            "mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, 32,
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
        ),
    )
}


def get_spec(name: str) -> BackboneSpec:
    try:
        return BACKBONES[name]
    except KeyError:
        raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}") from None


@keras.saving.register_keras_serializable(package="common")
class BackbonePreprocess(keras.layers.Layer):
    """``keras.applications.<backbone>.preprocess_input`` as a saved part of the model."""

    def __init__(self, backbone: str, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self._spec = get_spec(backbone)

    def call(self, inputs):
        return self._spec.preprocess(inputs)

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


def build_base(name: str, weights: str = "imagenet", image_size: int | None = None) -> keras.Model:
    """The convolutional base without its classifier, with clear errors for bad weights."""
    spec = get_spec(name)
    size = image_size or spec.default_size
    if size < spec.min_size:
        raise UserError(f"{name} needs images of at least {spec.min_size}x{spec.min_size}, not {size}")
    constructor = getattr(keras.applications, spec.application)
    kwargs = {"include_top": False, "input_shape": (size, size, 3)}
    if weights in (None, "none", "None"):
        return constructor(weights=None, **kwargs)
    if weights == "imagenet":
        folder = keras_home() / "models"
        try:
            return constructor(weights="imagenet", **kwargs)
        except Exception as error:  # get_file raises a bare Exception when offline
            if (folder / spec.weights_file).exists():
                raise
            raise offline_error(
                spec.weights_file, error, folder, f"pass --weights /path/to/{spec.weights_file}"
            ) from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(
            f"weights file {path} {'is a folder' if path.is_dir() else 'does not exist'}; "
            "use --weights imagenet, none, or a path to "
            f"a {name} no-top weights file such as {spec.weights_file}"
        )
    try:
        return constructor(weights=str(path), **kwargs)
    except Exception as error:
        raise UserError(f"weights file {path} does not fit {name}: {first_line(error)}") from None


def weights_fingerprint(model: keras.Model) -> str:
    """A hash of the actual weight values: what a feature cache must be keyed by.

    Two runs with the same file, or the same random seed, share features; any
    other change of weights (a new file, a fine-tuned base) gets fresh ones.
    """
    digest = hashlib.sha1()
    for variable in model.weights:
        digest.update(variable.path.encode())
        digest.update(keras.ops.convert_to_numpy(variable.value).tobytes())
    return digest.hexdigest()[:16]


def build_model(
    backbone: str,
    weights: str = "imagenet",
    image_size: int | None = None,
    *,
    head=None,
    pooling: str | None = None,
    base: keras.Model | None = None,
    name: str | None = None,
) -> tuple[keras.Model, keras.Model]:
    """The one model builder of every example: (model, base).

    Raw RGB pixels in 0..255 -> the backbone's own ``preprocess_input`` (a
    saved layer) -> the convolutional base with BatchNorm in inference mode
    (``training=False``, so fine-tuning never updates ImageNet's statistics
    with small batches) -> optional global pooling -> ``head``.

    ``head`` is a Keras layer or model, or any callable from a tensor to a
    tensor; ``None`` returns the features themselves (a feature extractor).
    ``pooling=None`` keeps the last convolutional map, as the cats-vs-dogs lab
    flattens it; ``"avg"`` gives the 2048-d Inception vectors of the flower
    example. Pass ``base`` to wrap a base that already exists (one trained in
    an earlier stage) instead of building a new one.
    """
    spec = get_spec(backbone)
    if base is None:
        base = build_base(backbone, weights, image_size)
    size = base.input_shape[1]
    pixels = keras.Input((size, size, 3), name="pixels")
    x = base(BackbonePreprocess(backbone)(pixels), training=False)
    if pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="pooled")(x)
    elif pooling == "max":
        x = keras.layers.GlobalMaxPooling2D(name="pooled")(x)
    elif pooling is not None:
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}")
    outputs = x if head is None else head(x)
    default_name = f"{spec.name}_features" if head is None else f"{spec.name}_classifier"
    return keras.Model(pixels, outputs, name=name or default_name), base


def layer_index(base: keras.Model, layer: str | int) -> int:
    """Position of ``layer`` (a name, an index or a digit string) in ``base.layers``."""
    if isinstance(layer, str) and layer.lstrip("-").isdigit():
        layer = int(layer)
    if isinstance(layer, int):
        if not 0 <= layer <= len(base.layers):
            raise UserError(f"layer index {layer} is outside 0..{len(base.layers)} for {base.name}")
        return layer
    names = [item.name for item in base.layers]
    if layer not in names:
        import difflib

        close = difflib.get_close_matches(layer, names, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(close)}?" if close else (
            f"; its layers are named like {names[1]}, {names[len(names) // 2]}, {names[-1]}")
        raise UserError(f"{base.name} has no layer named {layer!r} (--unfreeze-from){hint}")
    return names.index(layer)


def freeze_below(base: keras.Model, first_trainable: str | int | None) -> int:
    """Freeze every layer of ``base`` before ``first_trainable``; return that layer's index.

    ``first_trainable`` is a layer name, an index (``5`` freezes the
    textbook's ``layers[:5]``; ``0`` trains everything) or ``"none"`` / None,
    which freezes the whole base (a feature extractor with a trained head).
    With ``keras.applications.VGG16`` the last conv block starts at
    ``block5_conv1``, index 15, so the slides' ``model.layers[:15]`` is right on
    Keras 3 (the 2016 Keras-blog original froze ``layers[:25]``, a count of its
    hand-built Keras 1 VGG16 with a ZeroPadding2D before every convolution).
    Compile the model *after* calling this: Keras reads the flags when it compiles.

    BatchNormalization layers stay frozen above the cut too, so that they run
    in inference mode with ImageNet's statistics. Calling the base with
    ``training=False`` is not enough in Keras 3: an outer model trained with
    ``fit`` (``training=True``) overrides it for every layer inside
    (keras-team/keras#20285; measured here: with MobileNetV2 unfrozen from
    block_14_expand, two steps of ``fit`` moved block_16_project_BN's moving
    mean, so fine-tuning normalised with batch statistics of 16-32 images).
    A BatchNormalization layer with ``trainable=False`` runs in inference
    mode whatever its call says; its scale and offset stay ImageNet's too.
    """
    if first_trainable is None or (isinstance(first_trainable, str) and first_trainable.lower() == "none"):
        base.trainable = False
        return len(base.layers)
    index = layer_index(base, first_trainable)
    base.trainable = True
    for position, layer in enumerate(base.layers):
        layer.trainable = position >= index and not isinstance(layer, keras.layers.BatchNormalization)
    return index


def default_unfreeze_from(backbone: str) -> str:
    """The backbone's default first trainable layer (``UNFREEZE_FROM``)."""
    return UNFREEZE_FROM[get_spec(backbone).name][0]


# ---------------------------------------------------------------- surgery: where fine-tuning cuts the base
def split_base(base: keras.Model, first_trainable) -> tuple[keras.Model, keras.Model, str]:
    """(bottom, top, name): the frozen layers before ``first_trainable``, the unfrozen rest, and where they meet.

    Works at a block boundary, where one tensor carries everything the top
    needs; a layer inside a block is refused.
    """
    index = layer_index(base, first_trainable)
    name = base.layers[min(index, len(base.layers) - 1)].name
    cut = base.input if index == 0 else base.layers[index].input
    if isinstance(cut, (list, tuple)):
        raise UserError(f"--unfreeze-from {name} takes several inputs; choose the first layer of a block")
    try:
        top = keras.Model(cut, base.output, name=f"{base.name}_top")
        inside = {layer.name for layer in top.layers if not isinstance(layer, keras.layers.InputLayer)}
    except ValueError:  # the output also depends on tensors before the cut
        inside = set()
    expected = {layer.name for layer in base.layers[index:] if not isinstance(layer, keras.layers.InputLayer)}
    if inside != expected:
        raise UserError(
            f"--unfreeze-from {name} is not a block boundary: layers after it also read layers before it; "
            "choose the first layer of a block (for example mixed9 for inception_v3, block_14_expand for "
            "mobilenet_v2)"
        )
    bottom = keras.Model(base.input, cut, name=f"{base.name}_bottom")
    return bottom, top, name


def cut_point(args, base: keras.Model):
    """Where fine-tuning on cached cut maps splits the base (``split_base``), or None.

    None when the command does not fine-tune (no ``--finetune-epochs``, or
    0) or trains the whole network on new images each step
    (``--finetune-augment``). Read from the command's own flags, so that
    ``flowers.train`` and ``python -m common.features`` given the same flags
    cache the same maps. A layer that does not exist, or one inside a block,
    is refused here, before any long work.
    """
    if not getattr(args, "finetune_epochs", 0):
        return None
    if getattr(args, "finetune_augment", False):
        layer_index(base, args.unfreeze_from)  # any layer will do; it has to exist
        return None
    return split_base(base, args.unfreeze_from)


def announce_cut_maps(first_trainable: str, map_shape, images: int) -> None:
    """Say how much the cut maps will hold before computing them.

    They sit on disk in the cache and in memory while fine-tuning; from an
    early layer (``--unfreeze-from Conv1`` caches the preprocessed pixels)
    that is gigabytes, which a user should learn before the extraction, not
    after.
    """
    values = int(np.prod(map_shape))
    gigabytes = values * 4 * images / 1e9
    shape = "x".join(str(int(d)) for d in map_shape)
    print(
        f"stage 3 caches what the frozen layers below {first_trainable} output: {shape} = {values:,} values "
        f"per image, {gigabytes:.2f} GB for {images} images (on disk in the cache, and in memory)"
    )


def bottleneck_extractor(backbone: str, base: keras.Model, pooling: str | None = "avg", cut=None) -> keras.Model:
    """Pixels -> the bottleneck features; with ``cut`` (``split_base``'s triple), the cut map flattened behind them.

    One pass through the frozen bottom then gives both what the new layer
    trains on (the pooled vector) and what fine-tuning the top reads (the
    map at the cut), so fine-tuning never runs the frozen layers again.
    """
    if cut is None:
        return build_model(backbone, base=base, pooling=pooling, name="bottleneck")[0]
    if pooling != "avg":
        raise ValueError("the cut map travels behind the average-pooled vector: pooling='avg'")
    bottom, top, _ = cut

    def vector_and_map(maps):
        vector = keras.layers.GlobalAveragePooling2D()(top(maps, training=False))
        return keras.layers.Concatenate()([vector, keras.layers.Flatten()(maps)])

    return build_model(backbone, base=bottom, head=vector_and_map, name="bottleneck_and_cut_map")[0]
