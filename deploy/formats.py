"""Writing a Keras classifier in the deployment formats: SavedModel, TFLite (float and int8), ONNX.

Kept apart from ``deploy.export`` so that the command reads as its steps
(find the run, write the formats, measure them) while the converters' own
details live here: TFLite converts from a SavedModel, so one is written (to a
scratch folder when it was not asked for), and ONNX is optional: where
tf2onnx or onnxruntime is missing, or tf2onnx fails on the model, the other
formats still stand and the reason is returned for parity.json.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from deploy.runtime import FORMAT_FILES

ONNX_OPSET = 17


def write_saved_model(model, folder: Path) -> None:
    model.export(str(folder / FORMAT_FILES["saved_model"]), format="tf_saved_model", verbose=False)


def write_tflite(saved_model: Path, path: Path, quantize: bool) -> None:
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if quantize:  # no representative data set: dynamic range (weights int8, activations float)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    path.write_bytes(converter.convert())


def write_onnx(model, path: Path, image_size: int) -> None:
    import tensorflow as tf
    import tf2onnx

    signature = (tf.TensorSpec((None, image_size, image_size, 3), tf.float32, name="pixels"),)
    tf2onnx.convert.from_keras(model, input_signature=signature, opset=ONNX_OPSET, output_path=str(path))


def convert(model, folder: Path, formats: list[str], image_size: int) -> dict[str, str]:
    """Write the formats; returns {format: why it was left out} for those that could not be made."""
    import tempfile

    left_out = {}
    saved_model = folder / FORMAT_FILES["saved_model"]
    need_saved_model = any(name in formats for name in ("saved_model", "tflite", "tflite_int8"))
    scratch = None
    if need_saved_model and "saved_model" not in formats:  # TFLite converts from a SavedModel: a temporary one
        scratch = Path(tempfile.mkdtemp(prefix="deploy-export-"))
        saved_model = scratch / FORMAT_FILES["saved_model"]
    try:
        if need_saved_model:
            write_saved_model(model, saved_model.parent)
        for name, quantize in (("tflite", False), ("tflite_int8", True)):
            if name in formats:
                write_tflite(saved_model, folder / FORMAT_FILES[name], quantize)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    if "onnx" in formats:
        try:
            write_onnx(model, folder / FORMAT_FILES["onnx"], image_size)
        except ImportError as error:
            left_out["onnx"] = f"tf2onnx or onnxruntime is not installed ({error}); pip install tf2onnx onnxruntime"
        except Exception as error:  # noqa: BLE001  (tf2onnx raises anything; the other formats stand)
            left_out["onnx"] = (f"tf2onnx {package_version('tf2onnx')} failed on this model: "
                                f"{type(error).__name__}: {error}")
        if "onnx" not in left_out:
            try:
                import onnxruntime  # noqa: F401  (parity needs it)
            except ImportError as error:
                (folder / FORMAT_FILES["onnx"]).unlink()
                left_out["onnx"] = f"onnxruntime is not installed ({error}); pip install onnxruntime"
    return left_out


def package_version(package: str) -> str:
    """The installed version of ``package``, or ``(not installed)``: parity.json names the converters it used."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "(not installed)"
