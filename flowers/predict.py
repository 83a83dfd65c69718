"""Label flower photos with a trained model: the top-k classes and their scores, like TensorFlow's label_image.py.

    python -m flowers.predict photo.jpg other.jpg
    python -m flowers.predict --model runs/flowers/train-20240101-120000 --top-k 3 photo.jpg

The model (``model.keras``, pixels in) and its class names (``labels.txt``) come
from a ``flowers.train`` run folder: the newest one under runs/flowers/ unless
``--model`` names one. Each image is decoded and resized exactly as in training.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
from pathlib import Path

import numpy as np

from common.errors import UserError, main_guard
from common.predict import MODEL_FILE, load_run_model, read_image, top_k
from common.training import latest_run

OUTPUT_PARENT = "runs/flowers"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files to label")
    parser.add_argument(
        "--model",
        default=None,
        help=f"a flowers.train run folder (default: the newest {OUTPUT_PARENT}/train-* holding {MODEL_FILE})",
    )
    parser.add_argument("--top-k", type=int, default=5, help="how many labels to print per image (default: 5)")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    return args


def predict(run_dir, images, k: int = 5) -> dict[str, list[tuple[str, float]]]:
    """{image path: [(label, score), ...]} for each image; unreadable images are named and skipped."""
    model, class_names, size = load_run_model(run_dir)
    results: dict[str, list[tuple[str, float]]] = {}
    problems = []
    for image in images:
        try:
            pixels = read_image(image, size)
        except UserError as error:
            problems.append(str(error))
            continue
        probabilities = np.asarray(model.predict_on_batch(pixels[None]))[0]
        results[str(image)] = top_k(probabilities, class_names, k)
    if problems and not results:
        raise UserError("; ".join(problems))
    for problem in problems:
        print(f"skipped: {problem}")
    return results


@main_guard
def main(argv=None):
    args = parse_args(argv)
    missing = [image for image in args.images if not Path(image).is_file()]
    if missing:
        raise UserError(f"no such image file: {', '.join(missing)}")
    run_dir = Path(args.model) if args.model else latest_run(OUTPUT_PARENT, "train", MODEL_FILE)
    if run_dir is None:
        raise UserError(
            f"no trained model in {OUTPUT_PARENT}/train-*/ (where flowers.train writes by default); "
            "run python -m flowers.train first, or pass --model FOLDER for a run written with --output-dir"
        )
    print(f"model: {run_dir}")
    results = predict(run_dir, args.images, args.top_k)
    for image, labels in results.items():
        print(image)
        for label, score in labels:
            print(f"  {label} (score = {score:.5f})")
    return results


if __name__ == "__main__":
    main()
