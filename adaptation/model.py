"""The networks of deep adaptation: encoder -> bottleneck -> classifier, and DANN's discriminator.

Any encoder will do: a pretrained image backbone (``image_encoder``, the
project's one model builder with the base frozen below ``--unfreeze-from``),
a small MLP for feature vectors (``vector_encoder``; no hidden layer at all
for features a frozen backbone already computed), or any Keras model from
inputs to a vector. On top of it sits the bottleneck the adaptation losses
act on (Dense + BatchNorm + ReLU, 256 units by default, as in DANN and
TLlib: a narrower layer than the backbone's output, whose distribution is
cheap to measure and to move), then the classifier; DANN's discriminator
reads the bottleneck too.
"""
from __future__ import annotations

import dataclasses

import keras

from common.backbones import build_model, freeze_below
from mmd.validation import InputError

BOTTLENECK_UNITS = 256
DISCRIMINATOR_UNITS = (1024, 1024)  # Ganin et al. 2016, the Office experiments
DISCRIMINATOR_DROPOUT = 0.5


def image_encoder(backbone: str, weights: str, image_size: int, unfreeze_from="none"):
    """Raw pixels (0..255) -> the backbone's own preprocessing -> base -> global average pooling.

    Returns (encoder, base, first trainable index). The base's BatchNorm layers
    run in inference mode (``common.backbones.build_model``), so small mixed
    batches never overwrite ImageNet's statistics.
    """
    encoder, base = build_model(backbone, weights, image_size, pooling="avg", name=f"{backbone}_encoder")
    first = freeze_below(base, unfreeze_from)
    return encoder, base, first


def vector_encoder(input_dim: int, units=(), dropout: float = 0.0, name: str = "vector_encoder") -> keras.Model:
    """Feature vectors -> an MLP (Dense + BatchNorm + ReLU per hidden layer); ``units=()`` is the identity."""
    inputs = keras.Input((int(input_dim),), name="features")
    x = inputs
    for index, width in enumerate(units):
        x = keras.layers.Dense(width, name=f"encoder_dense_{index}")(x)
        x = keras.layers.BatchNormalization(name=f"encoder_norm_{index}")(x)
        x = keras.layers.ReLU(name=f"encoder_relu_{index}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"encoder_dropout_{index}")(x)
    return keras.Model(inputs, x, name=name)


def fresh_encoder(given, example_shape, units=()) -> keras.Model:
    """A new encoder for one fit of ``DomainAdapter`` (``given``, its ``encoder`` parameter): None builds a
    vector encoder of ``units``, a keras.Model is copied with its weights, a callable builds one;
    ``example_shape`` (one sample's, or None: unknown) is checked against it."""
    if given is None:
        if len(example_shape) != 1:
            raise InputError(f"encoder=None builds a vector encoder for samples x features; these samples "
                             f"have shape {example_shape}: pass an encoder (a keras.Model) for them")
        return vector_encoder(example_shape[0], units=units)
    if isinstance(given, keras.Model):
        encoder = keras.models.clone_model(given)
        encoder.set_weights(given.get_weights())
    else:
        encoder = given()
        if not isinstance(encoder, keras.Model):
            raise InputError(f"the encoder builder returned {type(encoder).__name__}, not a keras.Model")
    expected = tuple(encoder.input_shape[1:])
    if example_shape is not None and (len(expected) != len(example_shape) or any(
            e is not None and s is not None and e != s for e, s in zip(expected, example_shape, strict=True))):
        raise InputError(f"samples of shape {example_shape} do not fit the encoder's input {expected}")
    return encoder


def build_bottleneck(input_dim: int, units: int = BOTTLENECK_UNITS) -> keras.Model:
    inputs = keras.Input((int(input_dim),), name="encoded")
    x = keras.layers.Dense(units, name="bottleneck_dense")(inputs)
    x = keras.layers.BatchNormalization(name="bottleneck_norm")(x)
    outputs = keras.layers.ReLU(name="bottleneck_relu")(x)
    return keras.Model(inputs, outputs, name="bottleneck")


def build_classifier(input_dim: int, num_classes: int) -> keras.Model:
    """Bottleneck features -> class logits (the softmax is applied in the loss and in ``full_model``)."""
    inputs = keras.Input((int(input_dim),), name="bottleneck_features")
    outputs = keras.layers.Dense(num_classes, name="class_logits")(inputs)
    return keras.Model(inputs, outputs, name="classifier")


def build_discriminator(input_dim: int, units=DISCRIMINATOR_UNITS, dropout: float = DISCRIMINATOR_DROPOUT) -> keras.Model:
    """Bottleneck features -> one domain logit (source > 0 > target): Dense-ReLU-Dropout per hidden layer."""
    inputs = keras.Input((int(input_dim),), name="bottleneck_features")
    x = inputs
    for index, width in enumerate(units):
        x = keras.layers.Dense(width, activation="relu", name=f"discriminator_dense_{index}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"discriminator_dropout_{index}")(x)
    outputs = keras.layers.Dense(1, name="domain_logit")(x)
    return keras.Model(inputs, outputs, name="discriminator")


@dataclasses.dataclass
class AdaptationNetwork:
    """The parts, kept apart so that each step can call them separately and each optimizer
    (a lower learning rate for a pretrained encoder) gets its own variables."""

    encoder: keras.Model
    bottleneck: keras.Model
    classifier: keras.Model
    discriminator: keras.Model | None = None
    pretrained_encoder: bool = False

    @property
    def num_classes(self) -> int:
        return int(self.classifier.output_shape[-1])

    def features(self, inputs, training: bool = False):
        return self.bottleneck(self.encoder(inputs, training=training), training=training)

    def full_model(self, name: str = "adapted_classifier") -> keras.Model:
        """Inputs -> class probabilities: what is saved and what a user predicts with."""
        inputs = keras.Input(self.encoder.input_shape[1:], name="inputs")
        logits = self.classifier(self.bottleneck(self.encoder(inputs)))
        outputs = keras.layers.Softmax(name="probabilities")(logits)
        return keras.Model(inputs, outputs, name=name)

    def feature_model(self) -> keras.Model:
        inputs = keras.Input(self.encoder.input_shape[1:], name="inputs")
        return keras.Model(inputs, self.bottleneck(self.encoder(inputs)), name="adapted_features")


def build_network(encoder: keras.Model, num_classes: int, bottleneck: int = BOTTLENECK_UNITS,
                  discriminator_units=DISCRIMINATOR_UNITS, with_discriminator: bool = False,
                  pretrained_encoder: bool = False, discriminator_inputs: int | None = None) -> AdaptationNetwork:
    """``discriminator_inputs``: D's input size when it reads more than the bottleneck (CDAN's
    multilinear map, ``adaptation.cdan.map_dim``); None: the bottleneck's width (DANN)."""
    encoded = int(encoder.output_shape[-1])
    return AdaptationNetwork(
        encoder=encoder,
        bottleneck=build_bottleneck(encoded, bottleneck),
        classifier=build_classifier(bottleneck, num_classes),
        discriminator=build_discriminator(discriminator_inputs or bottleneck, discriminator_units)
        if with_discriminator else None,
        pretrained_encoder=pretrained_encoder,
    )
