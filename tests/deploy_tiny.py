"""A tiny classifier run folder, as the classifier commands write one, for the deploy tests.

Built directly rather than trained: what deploy reads is the run folder's
contract (model.keras taking 0..255 RGB with the backbone's preprocessing
inside, labels.txt, config.json naming data_dir), and a small convolutional
model keeps each export to seconds. The dense layer has 64 x 32 weights so that
TFLite's dynamic-range quantisation (which leaves tensors under 1024
elements in float) really quantises something.
"""
import json
from pathlib import Path

import keras
from conftest import draw_folder

from common.backbones import BackbonePreprocess
from common.predict import write_labels

CLASSES = ("discs", "squares", "more_discs")
SIZE = 24


def make_run(root: Path, classes=CLASSES) -> Path:
    """Two classes get the cats-vs-dogs top model's single sigmoid unit, more a softmax."""
    data = root / "data"
    draw_folder(data / "train", classes=classes, count=2, seed=1)
    draw_folder(data / "validation", classes=classes, count=5, seed=2)
    keras.utils.set_random_seed(0)
    pixels = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = BackbonePreprocess("mobilenet_v2")(pixels)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(32, activation="relu", kernel_initializer=keras.initializers.RandomNormal(stddev=0.5))(x)
    units, activation = (1, "sigmoid") if len(classes) == 2 else (len(classes), "softmax")
    outputs = keras.layers.Dense(units, activation=activation,
                                 kernel_initializer=keras.initializers.RandomNormal(stddev=0.5))(x)
    run = root / "run"
    run.mkdir()
    keras.Model(pixels, outputs).save(run / "model.keras")
    write_labels(run, list(classes))
    (run / "config.json").write_text(json.dumps({"data_dir": str(data), "image_size": SIZE}))
    return run
