"""Prediction, the same for every example: a run folder and images in, a table of top-k labels out.

A model saved by any example takes raw RGB pixels in 0..255 (its backbone's
``preprocess_input`` is a layer inside it), so predicting is: read the image
exactly as training read it, resize it the same way, call the model. The one
trap left is OpenCV, which hands back BGR: ``read_image_opencv`` converts it.

``python -m cats_dogs.predict`` and ``python -m flowers.predict`` are both
``predict_command``: the same arguments (``[RUN_DIR] IMAGE ...``, ``--run-dir``,
``--top-k``), the same table, the same result records; ``segmentation.predict``
reads its run folder the same way (``run_and_images``).
"""
from __future__ import annotations

import sys
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
            raise UserError(f"{path} does not exist; point --run-dir at a finished training run's folder")
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
    (bilinear with antialiasing), not ``cv2.resize``. The exercise instead feeds
    the BGR image to ``preprocess_input``, which swaps the channels once more
    (docs/textbook-errata.md, E24).
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


def run_and_images(run_dir, images: list[str], model_file: str = MODEL_FILE) -> tuple[str | None, list[str]]:
    """Accept ``RUN_DIR IMAGE ...`` as well as ``IMAGE ... --run-dir RUN_DIR``.

    A run folder given where an image is expected would otherwise be skipped
    as an unreadable image while the default (newest) run answered: the
    table would come from a model the user did not ask for. A leading folder
    holding ``model_file`` is the run when ``--run-dir`` is not given; any
    other folder among the images is an error that says what to do.
    """
    images = list(images)
    if run_dir is None and images and (Path(images[0]) / model_file).is_file():
        run_dir, images = images[0], images[1:]
        if not images:
            raise UserError(f"{run_dir} is a run folder; name the images to predict after it")
    for image in images:
        if Path(image).is_dir():
            what = ("a run folder: pass it first or as --run-dir" if (Path(image) / model_file).is_file()
                    else "a folder, not an image file")
            raise UserError(f"{image} is {what}")
    return run_dir, images


def find_run(run_dir, parent, stages: tuple[str, ...], train_command: str) -> Path:
    """``run_dir`` if given, else the newest ``parent/<stage>-*`` holding a model, stages in order of preference."""
    from common.training import latest_run

    if run_dir:
        return Path(run_dir)
    for stage in stages:
        run = latest_run(parent, stage, MODEL_FILE)
        if run is not None:
            return run
    searched = " or ".join(f"{parent}/{stage}-*/" for stage in stages)
    raise UserError(
        f"no trained model in {searched} (the default run folders); run python -m {train_command} first, "
        "or pass --run-dir FOLDER for a run written with --output-dir"
    )


def predict_images(run_dir, images, k: int = 5) -> list[dict]:
    """One record per readable image: its best class and probability, all probabilities, the top ``k``.

    Unreadable images are named on stderr and left out; if none is readable
    that is an error.
    """
    model, class_names, size = load_run_model(run_dir)
    pixels, readable, problems = [], [], []
    for image in images:
        try:
            pixels.append(read_image(image, size))
            readable.append(str(image))
        except UserError as error:  # one bad file should not stop the others
            problems.append(str(error))
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    if not readable:
        raise UserError("; ".join(problems))
    probabilities = model.predict(np.stack(pixels), batch_size=32, verbose=0)
    results = []
    for image, vector in zip(readable, probabilities, strict=False):
        ranked = top_k(vector, class_names, k=len(class_names))
        results.append({
            "image": image,
            "class": ranked[0][0],
            "probability": ranked[0][1],
            "probabilities": dict(ranked),
            "top_k": ranked[: max(1, k)],
        })
    return results


def print_table(results: list[dict]) -> None:
    """image, rank, class, probability: one row per label of each image's top k."""
    width = max([len("image")] + [len(result["image"]) for result in results])
    label_width = max([len("class")] + [len(label) for result in results for label, _ in result["top_k"]])
    print(f"{'image':<{width}}  rank  {'class':<{label_width}}  probability")
    for result in results:
        for rank, (label, probability) in enumerate(result["top_k"], start=1):
            shown = result["image"] if rank == 1 else ""
            print(f"{shown:<{width}}  {rank:>4}  {label:<{label_width}}  {probability:11.4f}")


def predict_command(doc: str, argv, *, parent: str, stages: tuple[str, ...], train_command: str) -> list[dict]:
    """The whole ``predict`` command of an example: parse, find the run, predict, print the table."""
    from common.cli import parser_from_doc

    parser = parser_from_doc(doc)
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="image files to classify, optionally after the run folder (RUN_DIR IMAGE ...)")
    default_runs = " or ".join(f"{parent}/{stage}-*" for stage in stages)
    parser.add_argument(
        "--run-dir",
        default=None,
        metavar="FOLDER",
        help=f"a training run folder holding {MODEL_FILE} and {LABELS_FILE} (default: the newest {default_runs})",
    )
    parser.add_argument("--top-k", type=int, default=5, metavar="K",
                        help="how many classes to list per image, best first (default: 5, at most all)")
    args = parser.parse_intermixed_args(argv)   # options may stand between the run folder and the images
    if args.top_k < 1:
        parser.error("--top-k must be at least 1")
    run_dir, images = run_and_images(args.run_dir, args.images)
    run = find_run(run_dir, parent, stages, train_command)
    print(f"model: {run / MODEL_FILE}")
    results = predict_images(run, images, args.top_k)
    print_table(results)
    return results
