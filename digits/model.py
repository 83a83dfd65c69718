"""The lesson's network and the copy of its first layers into another.

Seven weight layers, so that 12.4.1's question (how many layers transfer?)
has six depths to ask it at, as AlexNet's 8 layers gave Yosinski et al.
seven: four 3x3 convolutions in two pooled stages (general features, the
chapter says), two dense layers and the class head (specific ones).
"""
from __future__ import annotations

import keras
import numpy as np

#: the weight layers in order; the last is the task's head and never transfers
LAYERS = ("conv1", "conv2", "conv3", "conv4", "fc5", "fc6", "head")


def build_cnn(input_shape, num_classes: int, name: str = "cnn") -> keras.Model:
    """A small functional CNN for (h, w, 1) digit images; softmax over ``num_classes``."""
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3")(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv4")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(128, activation="relu", name="fc5")(x)
    x = keras.layers.Dense(64, activation="relu", name="fc6")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name=name)


def copy_first(source: keras.Model, target: keras.Model, n: int, frozen: bool) -> keras.Model:
    """Give ``target`` the weights of ``source``'s first ``n`` weight layers; freeze them if ``frozen``.

    Layers are matched by name. (Blog post 003 copies by name too, but its
    target's layer names are Keras' automatic ones, which never match the
    source's: see docs/textbook-errata.md, 003.) The layers above n keep
    their fresh initialisation; the head always does.
    """
    if not 0 <= n < len(LAYERS):
        raise ValueError(f"n must be in 0..{len(LAYERS) - 1}, not {n}")
    for name in LAYERS[:n]:
        layer = target.get_layer(name)
        layer.set_weights(source.get_layer(name).get_weights())
        layer.trainable = not frozen
    return target


def compile_for_training(model: keras.Model, learning_rate: float) -> keras.Model:
    """Adam and sparse cross-entropy; called after every change of ``trainable`` (Keras reads it at compile)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def trainable_count(model: keras.Model) -> int:
    return int(sum(int(w.shape.num_elements()) for w in model.trainable_weights))


def accuracy(model, x, y, batch_size: int = 1024) -> float:
    """Accuracy of ``model`` on ``(x, y)`` by calling it eagerly.

    ``Model.predict`` compiles a new ``tf.function`` for every model, and the
    lessons build dozens of small ones: TensorFlow then warns about
    "retracing" on every score. A direct call in inference mode gives the same
    probabilities without a graph per model.
    """
    hits = 0
    for start in range(0, len(x), batch_size):
        probabilities = keras.ops.convert_to_numpy(model(x[start:start + batch_size], training=False))
        hits += int(np.sum(probabilities.argmax(axis=1) == y[start:start + batch_size]))
    return hits / len(x)
