"""Classify images with a trained cats-vs-dogs model.

    python -m cats_dogs.predict photo1.jpg photo2.jpg
    python -m cats_dogs.predict --run-dir runs/cats_dogs/finetune-... photo.jpg

The saved model holds the backbone's preprocessing, and the image is read and
resized exactly as in training (common.data.decode_image), so a prediction
sees what training saw.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import sys
from pathlib import Path

import keras
import numpy as np

import common.backbones  # noqa: F401  (registers BackbonePreprocess for loading)
from cats_dogs.model import OUTPUT_PARENT
from common.cli import make_parser
from common.data import check_image_file, decode_image
from common.errors import UserError, main_guard
from common.training import latest_run


def find_run(run_dir) -> Path:
    if run_dir:
        run = Path(run_dir)
        if not (run / "model.keras").is_file():
            raise UserError(f"{run} holds no model.keras; pass a cats_dogs run folder")
        return run
    for stage in ("finetune", "bottleneck"):
        run = latest_run(OUTPUT_PARENT, stage, "model.keras")
        if run is not None:
            return run
    raise UserError(f"no trained model under {OUTPUT_PARENT}/; run python -m cats_dogs.bottleneck first, "
                    "or pass --run-dir")


def predict(run: Path, images: list[str]) -> list[dict]:
    config = json.loads((run / "config.json").read_text())
    class_names = config["class_names"]
    size = (config["image_size"], config["image_size"])
    model = keras.models.load_model(run / "model.keras")
    results = []
    for image in images:
        problem = "does not exist" if not Path(image).is_file() else check_image_file(Path(image))
        if problem:
            print(f"{image}: skipped, {problem}", file=sys.stderr)
            continue
        pixels = decode_image(image, size)[None]
        output = np.asarray(model.predict(pixels, verbose=0))[0]
        if output.shape[-1] == 1:
            probabilities = np.array([1.0 - output[0], output[0]])
        else:
            probabilities = output
        best = int(probabilities.argmax())
        results.append({"image": image, "class": class_names[best], "probability": float(probabilities[best]),
                        "probabilities": dict(zip(class_names, map(float, probabilities)))})
        print(f"{image}: {class_names[best]} ({probabilities[best]:.3f})")
    return results


@main_guard
def main(argv=None) -> list[dict]:
    parser = make_parser(__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to classify")
    parser.add_argument("--run-dir", default=None,
                        help=f"a cats_dogs run folder with model.keras (default: the newest "
                        f"{OUTPUT_PARENT}/finetune-*, else bottleneck-*)")
    args = parser.parse_args(argv)
    run = find_run(args.run_dir)
    print(f"model: {run / 'model.keras'}")
    return predict(run, args.images)


if __name__ == "__main__":
    main()
