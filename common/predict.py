"""Prediction helpers shared by the examples: load a run's model, read one image, top-k labels.

A model saved by any example takes raw RGB pixels in 0..255 (its backbone's
``preprocess_input`` is a layer inside it), so predicting is: read the image
exactly as training read it, resize it the same way, call the model. The one
trap left is OpenCV, which hands back BGR: ``read_image_opencv`` converts it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.errors import UserError

MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"


def write_labels(run_dir, class_names: list[str]) -> Path:
    path = Path(run_dir) / LABELS_FILE
    path.write_text("".join(f"{name}\n" for name in class_names))
    return path


def load_run_model(run_dir, model_file: str = MODEL_FILE):
    """(model, class names, image size) from a run folder holding ``model.keras`` and ``labels.txt``."""
    import keras

    import common.backbones  # noqa: F401  (registers BackbonePreprocess for loading)

    run_dir = Path(run_dir)
    model_path = run_dir / model_file
    labels_path = run_dir / LABELS_FILE
    for path in (model_path, labels_path):
        if not path.is_file():
            raise UserError(f"{path} does not exist; point --model at a finished training run's folder")
    model = keras.saving.load_model(model_path, compile=False)
    class_names = [line.strip() for line in labels_path.read_text().splitlines() if line.strip()]
    outputs = model.output_shape[-1]
    if outputs != len(class_names) and not (outputs == 1 and len(class_names) == 2):
        raise UserError(f"{labels_path} names {len(class_names)} classes but the model has {outputs} outputs")
    return model, class_names, int(model.input_shape[1])


def read_image(path, image_size: int) -> np.ndarray:
    """One image as training read it (``common.data.decode_image``): float32 (size, size, 3) in 0..255."""
    from common.data import check_image_file, decode_image

    path = Path(path)
    reason = check_image_file(path)
    if reason is not None:
        raise UserError(f"cannot use {path}: {reason}")
    return np.asarray(decode_image(str(path), (image_size, image_size)))


def read_image_opencv(path, image_size: int) -> np.ndarray:
    """The textbook's ``cv2.imread`` route, made to match training.

    ``cv2.imread`` returns BGR; the models were trained on RGB, so the channels
    are swapped back, and the resize is the one the training pipeline used
    (bilinear with antialiasing), not ``cv2.resize``.
    """
    import cv2
    import tensorflow as tf

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"OpenCV cannot read {path} as an image")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    resized = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
    return np.asarray(resized, dtype=np.float32)


def top_k(probabilities, class_names: list[str], k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` best (label, score) pairs, best first; a single sigmoid output counts as two classes."""
    probabilities = np.asarray(probabilities, dtype=float).ravel()
    if probabilities.size == 1 and len(class_names) == 2:
        probabilities = np.array([1.0 - probabilities[0], probabilities[0]])
    order = np.argsort(-probabilities)[: max(1, k)]
    return [(class_names[i], float(probabilities[i])) for i in order]
