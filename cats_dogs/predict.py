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

import sys
from pathlib import Path

from cats_dogs.model import OUTPUT_PARENT
from common.cli import parser_from_doc
from common.errors import UserError, main_guard
from common.predict import load_run_model, read_image, top_k
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
    raise UserError(
        f"no trained model in {OUTPUT_PARENT}/finetune-*/ or {OUTPUT_PARENT}/bottleneck-*/ (the default run "
        "folders); run python -m cats_dogs.bottleneck first, or pass --run-dir FOLDER for a run written "
        "with --output-dir"
    )


def predict(run: Path, images: list[str]) -> list[dict]:
    model, class_names, size = load_run_model(run)
    results = []
    for image in images:
        try:
            pixels = read_image(image, size)[None]
        except UserError as error:  # one bad file should not stop the others
            print(f"{image}: skipped, {error}", file=sys.stderr)
            continue
        ranked = top_k(model.predict(pixels, verbose=0)[0], class_names, k=len(class_names))
        best, probability = ranked[0]
        results.append({"image": image, "class": best, "probability": probability,
                        "probabilities": dict(ranked)})
        print(f"{image}: {best} ({probability:.3f})")
    return results


@main_guard
def main(argv=None) -> list[dict]:
    parser = parser_from_doc(__doc__)
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
