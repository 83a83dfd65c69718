"""Pretrained backbones by name, each with its input size and its own preprocessing.

The textbook mixes ``rescale=1/255`` in training with ``preprocess_input`` at
prediction; here each backbone's ``preprocess_input`` is a layer *inside* the
model (``BackbonePreprocess``), so every model takes raw RGB pixels in 0..255,
and training, feature extraction and prediction cannot disagree.

Weights: ``imagenet`` goes through Keras's own download and cache
(``$KERAS_HOME/models``, by default ``~/.keras/models``), ``none`` builds the
architecture with random weights (tests), and a path loads a local file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import keras

from common.errors import UserError


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    name: str
    application: str  # attribute of keras.applications
    module: str  # keras.applications submodule holding preprocess_input
    default_size: int
    min_size: int
    weights_file: str  # the official no-top ImageNet file, named in offline errors
    last_block: str  # first layer of the last block: what fine-tuning unfreezes
    pooled_dim: int

    def preprocess(self, images):
        return getattr(keras.applications, self.module).preprocess_input(images)


BACKBONES = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "vgg16", "VGG16", "vgg16", 224, 32,
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "block5_conv1", 512,
        ),
        BackboneSpec(
            "inception_v3", "InceptionV3", "inception_v3", 299, 75,
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", "mixed9", 2048,
        ),
        BackboneSpec(
            "mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, 32,
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", "block_16_expand", 1280,
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


def keras_cache_dir() -> Path:
    """Where Keras's ``get_file`` looks for ``weights='imagenet'`` files."""
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()
    if not os.access(home if home.exists() else home.parent, os.W_OK):
        home = Path("/tmp/.keras")
    return home / "models"


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
        cached = keras_cache_dir() / spec.weights_file
        try:
            return constructor(weights="imagenet", **kwargs)
        except Exception as error:  # get_file raises a bare Exception when offline
            if cached.exists():
                raise
            raise UserError(
                f"could not download the ImageNet weights {spec.weights_file} ({_first_line(error)}). "
                f"Without a network, put that file at {cached}, or pass --weights /path/to/{spec.weights_file}"
            ) from None
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(
            f"weights file {path} does not exist; use --weights imagenet, none, or a path to "
            f"a {name} no-top weights file such as {spec.weights_file}"
        )
    try:
        return constructor(weights=str(path), **kwargs)
    except Exception as error:
        raise UserError(f"weights file {path} does not fit {name}: {_first_line(error)}") from None


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


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


def build_feature_extractor(
    name: str, weights: str = "imagenet", image_size: int | None = None, pooling: str | None = None
) -> tuple[keras.Model, keras.Model]:
    """Raw pixels in, bottleneck features out: (extractor, base).

    ``pooling=None`` keeps the last convolutional map, as the cats-vs-dogs
    lab flattens it; ``"avg"`` gives the 2048-d Inception vectors of the
    flower example.
    """
    spec = get_spec(name)
    base = build_base(name, weights, image_size)
    size = base.input_shape[1]
    inputs = keras.Input((size, size, 3), name="pixels")
    features = base(BackbonePreprocess(name)(inputs), training=False)
    if pooling == "avg":
        features = keras.layers.GlobalAveragePooling2D()(features)
    elif pooling == "max":
        features = keras.layers.GlobalMaxPooling2D()(features)
    elif pooling is not None:
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}")
    extractor = keras.Model(inputs, features, name=f"{spec.name}_features")
    return extractor, base


def freeze_below(base: keras.Model, first_trainable: str | int) -> int:
    """Freeze every layer before ``first_trainable`` (a layer name or index); return that index.

    With ``keras.applications.VGG16`` the last conv block starts at
    ``block5_conv1``, index 15: the textbook's ``layers[:25]`` is a Keras 1
    count and would freeze everything.
    """
    if isinstance(first_trainable, str):
        names = [layer.name for layer in base.layers]
        if first_trainable not in names:
            raise UserError(f"{base.name} has no layer named {first_trainable!r}")
        index = names.index(first_trainable)
    else:
        index = int(first_trainable)
    base.trainable = True
    for position, layer in enumerate(base.layers):
        layer.trainable = position >= index
    return index
