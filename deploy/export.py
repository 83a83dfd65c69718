"""Export a classifier run for deployment, and measure each format against the Keras model.

    python -m deploy.export --run-dir runs/cats_dogs/bottleneck-20260101-120000
    python -m deploy.export --run-dir RUN --output-dir exports/cats_dogs --formats tflite tflite_int8

Works on the run folder of any classifier command (cats_dogs.bottleneck,
cats_dogs.finetune, flowers.train, flowers.baselines, flowers.flower17): its
``model.keras`` takes raw RGB pixels in 0..255 and holds the backbone's
``preprocess_input`` as a layer, so every format below keeps that contract.

The export folder (default: RUN/export; an existing one is never overwritten):

* ``saved_model/``: a TensorFlow SavedModel (``keras.Model.export``; signature ``serve``),
* ``model.tflite``: TFLite, float32,
* ``model_int8.tflite``: TFLite with dynamic-range quantisation (int8 weights,
  float activations; no calibration images needed),
* ``model.onnx``: ONNX through tf2onnx (left out, with the reason in parity.json, where tf2onnx
  is not installed or fails on the model),
* ``labels.txt`` and ``preprocessing.json``: the class names in output order, and
  what a client must feed the model (size, channel order, range, resize method),
* ``parity.json``: on the run's validation images (config.json's data_dir or
  split_dir, ``validation/<class>/``), each format's largest absolute
  difference in class probabilities from the Keras model, its accuracy and its
  change from the Keras model's, and each file's size. A float format more than
  1e-4 from the Keras model makes the command fail (after parity.json is written).
"""
from __future__ import annotations

# this module is the command (find the run and its validation images, write, measure, record); the converters
# are deploy.formats', the measurement deploy.parity's. The docstring above is --help's text.
import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from common import cli
from common.errors import UserError, main_guard
from common.files import writable_folder
from common.predict import LABELS_FILE, MODEL_FILE, load_run_model
from deploy.formats import convert, package_version
from deploy.parity import measure, print_parity
from deploy.runtime import FLOAT_FORMATS, FLOAT_TOLERANCE, FORMAT_FILES, MANIFEST_FILE, PARITY_FILE, folder_size


def parse_args(argv=None):
    parser = cli.parser_from_doc(__doc__)
    parser.add_argument("--run-dir", required=True,
                        help="a finished classifier run (holds model.keras, labels.txt, config.json)")
    parser.add_argument("--output-dir", default=None,
                        help="where the export is written (default: RUN/export); must be new or empty")
    parser.add_argument("--formats", nargs="+", default=list(FORMAT_FILES), choices=list(FORMAT_FILES),
                        help=f"formats to write (default: all: {' '.join(FORMAT_FILES)})")
    parser.add_argument("--validation-dir", default=None,
                        help="folder of <class>/<image> to measure parity on "
                        "(default: the run's own validation/ folder)")
    parser.add_argument("--limit", type=int, default=None,
                        help="measure on at most this many validation images, evenly spread over the list "
                        "(default: all)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, not {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, not {args.limit}")
    return args


def validation_folder(run_dir: Path, override=None) -> Path:
    """The folder the run was scored on: flower17's split_dir, else data_dir, then ``validation/``.

    Every classifier command reads ``<root>/validation/<class>/`` (cats_dogs.model.load_splits,
    flowers.data.load_prepared, flower17's seeded split written to --split-dir), so the
    run's config.json is enough to find its validation images again.
    """
    if override:
        return Path(override)
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise UserError(f"{config_path} does not exist; pass --validation-dir FOLDER to measure parity on")
    config = json.loads(config_path.read_text())
    root = config.get("split_dir") or config.get("data_dir")
    if not root:
        raise UserError(f"{config_path} names no data_dir; pass --validation-dir FOLDER to measure parity on")
    folder = Path(root) / "validation"
    if not folder.is_dir():
        raise UserError(f"the run's validation folder {folder} (from {config_path}) does not exist here; "
                        "pass --validation-dir FOLDER")
    return folder


def output_folder(run_dir: Path, output_dir) -> Path:
    folder = Path(output_dir) if output_dir else run_dir / "export"
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"--output-dir {folder} exists and is not empty; choose a new folder "
                        "(exports are never overwritten)")
    return writable_folder(folder, "--output-dir")


def evenly_spaced(count: int, limit: int | None) -> np.ndarray:
    if limit is None or limit >= count:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(int))


def backbone_of(model) -> str | None:
    from common.backbones import BackbonePreprocess

    for layer in model.layers:
        if isinstance(layer, BackbonePreprocess):
            return layer.backbone
    return None


@main_guard
def main(argv=None) -> dict:
    args = parse_args(argv)
    return export(args)


def export(args) -> dict:
    from common.data import load_image_folder

    started = time.perf_counter()
    run_dir = Path(args.run_dir)
    model, class_names, image_size = load_run_model(run_dir)
    validation_dir = validation_folder(run_dir, args.validation_dir)
    validation = load_image_folder(validation_dir, class_names=class_names, description="validation folder")
    existed = Path(args.output_dir or run_dir / "export").exists()
    folder = output_folder(run_dir, args.output_dir)
    try:
        return _export_into(folder, args, run_dir, model, class_names, image_size, validation, validation_dir, started)
    except BaseException:
        if not existed and not (folder / PARITY_FILE).exists():  # a half-written export would block the rerun
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _export_into(folder, args, run_dir, model, class_names, image_size, validation, validation_dir, started) -> dict:
    print(f"exporting {run_dir / MODEL_FILE} ({image_size}x{image_size}, classes {', '.join(class_names)}) to {folder}")

    left_out = convert(model, folder, args.formats, image_size)
    written = [name for name in args.formats if name not in left_out]
    for name, why in left_out.items():
        print(f"note: no {name} model: {why}", file=sys.stderr)
    shutil.copyfile(run_dir / LABELS_FILE, folder / LABELS_FILE)
    backbone = backbone_of(model)
    manifest = {
        "image_size": image_size,
        "input": {"name": "pixels", "shape": [None, image_size, image_size, 3], "dtype": "float32",
                  "layout": "NHWC", "channels": "RGB", "range": [0, 255]},
        "resize": "bilinear with antialiasing (tf.image.resize(..., antialias=True)), to image_size x image_size, "
                  "no crop; grey and CMYK images converted to RGB",
        "backbone": backbone,
        "preprocess_input": (f"keras.applications.{backbone}.preprocess_input, inside every exported model"
                             if backbone else "none outside the model"),
        "output": ("one sigmoid unit: the probability of the second class" if model.output_shape[-1] == 1
                   else "softmax over the classes of labels.txt, in that order"),
        "formats": {name: FORMAT_FILES[name] for name in written},
        "run_dir": str(run_dir),
    }
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")

    indices = evenly_spaced(len(validation), args.limit)
    print(f"measuring {', '.join(written)} against the Keras model on {len(indices)} images of {validation_dir}")
    measured = measure(model, folder, written, validation, indices, class_names, image_size, args.batch_size)
    sizes = {"model.keras": folder_size(run_dir / MODEL_FILE)}
    sizes.update({name: folder_size(folder / FORMAT_FILES[name]) for name in written})
    for name in written:
        measured["formats"][name]["size_bytes"] = sizes[name]
    too_far = {name: result["max_abs_diff"] for name, result in measured["formats"].items()
               if name in FLOAT_FORMATS and result["max_abs_diff"] > FLOAT_TOLERANCE}
    parity = {
        "run_dir": str(run_dir),
        "validation_dir": str(validation_dir),
        "n_images": measured["n_images"],
        "n_validation_images": len(validation),
        "float_tolerance": FLOAT_TOLERANCE,
        "float_formats_within_tolerance": not too_far,
        "keras_accuracy": measured["keras_accuracy"],
        "keras_seconds_per_image": measured["keras_seconds_per_image"],
        "formats": measured["formats"],
        "left_out": left_out,
        "sizes_bytes": sizes,
        "versions": {package: package_version(package) for package in ("tensorflow", "keras", "tf2onnx", "onnxruntime")},
        "seconds": round(time.perf_counter() - started, 2),
    }
    (folder / PARITY_FILE).write_text(json.dumps(parity, indent=2) + "\n")
    print_parity(parity)
    if too_far:
        shown = ", ".join(f"{name} by {diff:.2g}" for name, diff in too_far.items())
        raise UserError(f"float formats differ from the Keras model by more than {FLOAT_TOLERANCE:g}: {shown} "
                        f"(see {folder / PARITY_FILE})")
    return parity


if __name__ == "__main__":
    main()
