"""An export folder read back: its manifest, its formats as callables, images decoded as training decoded them.

Every exported format keeps the contract of the run's ``model.keras``: float32
NHWC RGB pixels in 0..255 in, the backbone's ``preprocess_input`` inside the
graph, probabilities out. So serving needs no preprocessing code of its own,
only the decode-and-resize that ``common.data.decode_image`` does in training
(bilinear with antialiasing, ``common.data.RESIZE_METHOD``); ``decode_bytes``
is that function for bytes that never were a file (an upload).
"""
from __future__ import annotations

import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from common.errors import UserError
from common.predict import LABELS_FILE

MANIFEST_FILE = "preprocessing.json"
PARITY_FILE = "parity.json"
#: format name -> file (or folder) in an export folder
FORMAT_FILES = {
    "saved_model": "saved_model",
    "tflite": "model.tflite",
    "tflite_int8": "model_int8.tflite",
    "onnx": "model.onnx",
}
#: the formats that must reproduce the Keras model (parity.json: at most FLOAT_TOLERANCE apart)
FLOAT_FORMATS = ("saved_model", "tflite", "onnx")
FLOAT_TOLERANCE = 1e-4


def class_probabilities(outputs, num_classes: int) -> np.ndarray:
    """(n, classes) probabilities; the cats-vs-dogs top model's single sigmoid p becomes (1 - p, p)."""
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    if outputs.shape[1] == 1 and num_classes == 2:
        return np.concatenate([1.0 - outputs, outputs], axis=1)
    return outputs


def decode_bytes(data: bytes, image_size: int) -> np.ndarray:
    """``common.data.decode_image`` for bytes: JPEG/PNG/GIF/BMP, grey and CMYK to RGB, resized, float32 0..255."""
    import tensorflow as tf

    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image = tf.image.resize(image, (image_size, image_size), method="bilinear", antialias=True)
    return np.asarray(image, dtype=np.float32)


def folder_size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def read_manifest(export_dir) -> dict:
    """The manifest plus the class names; one clear error for a folder that is not an export."""
    export_dir = Path(export_dir)
    manifest_path, labels_path = export_dir / MANIFEST_FILE, export_dir / LABELS_FILE
    for path in (manifest_path, labels_path):
        if not path.is_file():
            raise UserError(f"{path} does not exist; point --model at a folder written by python -m deploy.export")
    manifest = json.loads(manifest_path.read_text())
    manifest["class_names"] = [line.strip() for line in labels_path.read_text().splitlines() if line.strip()]
    return manifest


class TFLiteModel:
    """A TFLite interpreter that takes any batch size; one call at a time (the interpreter is not thread-safe)."""

    def __init__(self, path):
        import tensorflow as tf

        with warnings.catch_warnings():  # tf.lite.Interpreter's notice that LiteRT will replace it
            warnings.simplefilter("ignore")
            self.interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
        self.input = self.interpreter.get_input_details()[0]["index"]
        self.output = self.interpreter.get_output_details()[0]["index"]
        self.shape = None
        self.lock = threading.Lock()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        with self.lock:
            if self.shape != pixels.shape:
                self.interpreter.resize_tensor_input(self.input, pixels.shape)
                self.interpreter.allocate_tensors()
                self.shape = pixels.shape
            self.interpreter.set_tensor(self.input, pixels)
            self.interpreter.invoke()
            return np.array(self.interpreter.get_tensor(self.output))


class SavedModel:
    """The ``serve`` endpoint that ``keras.Model.export`` writes."""

    def __init__(self, path):
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(path))

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return np.asarray(self.loaded.serve(np.asarray(pixels, dtype=np.float32)))


class OnnxModel:
    def __init__(self, path):
        import onnxruntime

        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.asarray(pixels, dtype=np.float32)})[0]


LOADERS = {"saved_model": SavedModel, "tflite": TFLiteModel, "tflite_int8": TFLiteModel, "onnx": OnnxModel}


def load_format(export_dir, name: str):
    """The callable for one format of an export folder: pixels (n, size, size, 3) -> raw model outputs."""
    if name not in FORMAT_FILES:
        raise UserError(f"unknown format {name!r}; choose one of {', '.join(FORMAT_FILES)}")
    path = Path(export_dir) / FORMAT_FILES[name]
    if not path.exists():
        raise UserError(f"{path} does not exist: this export has no {name} model (see its {PARITY_FILE})")
    try:
        return LOADERS[name](path)
    except ImportError as error:
        raise UserError(f"cannot load the {name} model: {error}") from None
