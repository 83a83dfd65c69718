"""The pieces both cats-vs-dogs stages share: the data folders and the textbook's top model."""
from __future__ import annotations

from pathlib import Path

import keras

from common import cli
from common.backbones import build_model
from common.data import ImageFolder, load_image_folder

OUTPUT_PARENT = "runs/cats_dogs"
DEFAULT_DATA_DIR = "data/cats_and_dogs"  # where cats_dogs.prepare writes and both stages read
# The top model's layer name inside a bottleneck run's model.keras: where cats_dogs.finetune starts. The slides
# save its weights to a file of their own, bottleneck_fc_model.h5 (docs/textbook-errata.md, E27); here the run's
# one model file holds it.
TOP_MODEL = "top_model"


def make_parser(doc: str):
    """The argument parser both stages share, with the textbook's defaults."""
    parser = cli.parser_from_doc(doc)
    cli.add_common_arguments(
        parser,
        data_dir=DEFAULT_DATA_DIR,
        output_parent=OUTPUT_PARENT,
        backbone="vgg16",
        image_size=150,
        epochs=50,
        batch_size=16,
        data_help="folder holding train/ and validation/, one subfolder per class",
    )
    return parser


def load_splits(data_dir, limit: int | None = None) -> tuple[ImageFolder, ImageFolder]:
    """``data_dir/train`` and ``data_dir/validation``, with the same class order; at most ``limit`` images
    per class of each (``--limit``)."""
    data_dir = Path(data_dir)
    train = load_image_folder(data_dir / "train", description="training folder", limit=limit)
    validation = load_image_folder(
        data_dir / "validation", class_names=train.class_names, description="validation folder", limit=limit
    )
    if train.num_classes != 2:
        print(f"note: {train.num_classes} classes found; the sigmoid top model treats this as binary "
              f"only for 2 classes, so a softmax output is used")
    return train, validation


def build_top_model(feature_shape, num_classes: int = 2) -> keras.Model:
    """Flatten -> Dense(256, relu) -> Dropout(0.5) -> Dense(1, sigmoid), as in the textbook."""
    inputs = keras.Input(tuple(feature_shape), name="bottleneck_features")
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(256, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    if num_classes == 2:
        outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    else:
        outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=TOP_MODEL)


def loss_for(num_classes: int) -> str:
    return "binary_crossentropy" if num_classes == 2 else "sparse_categorical_crossentropy"


def full_model(backbone: str, base: keras.Model, top: keras.Model) -> keras.Model:
    """Raw pixels -> the backbone's preprocessing -> base (BatchNorm in inference mode) -> top model."""
    model, _ = build_model(backbone, base=base, head=top, name=f"cats_dogs_{backbone}")
    return model
