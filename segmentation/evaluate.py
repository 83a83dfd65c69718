"""Score a trained segmentation run on the test frames (full 256 x 256 frames, prediction pasted back).

    python -m segmentation.evaluate runs/segmentation/gan-20250101-120000
    python -m segmentation.evaluate RUN_DIR --data-dir other/sunnybrook_copy

Reads the run's model, its region of interest, its threshold and whether to
keep only the largest region (all fitted or chosen on the training patients
when it was trained), segments every frame of
``<data-dir>/test`` from the image alone, and writes a new folder
``RUN_DIR/evaluation-<time>/`` (or ``--output-dir``) with metrics.json (mean
and standard deviation over test images of Dice, Jaccard, sensitivity and
precision, and per patient), per_image.csv, overlays.png and table3.md.
``segmentation.train`` ends with this same scoring, once.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import json
from pathlib import Path

from common import cli
from common.errors import UserError, main_guard
from common.predict import MODEL_FILE
from common.reports import write_metrics
from common.training import make_run_dir
from segmentation.data import load_pairs
from segmentation.metrics import METRICS, binarise, overlap_scores, summarise
from segmentation.report import plot_overlays, run_label, table3, write_rows
from segmentation.roi import CropBox, segment_frames

SEGMENTER_FILE = "segmenter.json"


def load_run(run_dir):
    """(model, segmenter settings, config) of a finished training run."""
    import keras

    import common.backbones  # noqa: F401  (registers BackbonePreprocess for loading)

    run_dir = Path(run_dir)
    for name in (MODEL_FILE, SEGMENTER_FILE):
        if not (run_dir / name).is_file():
            raise UserError(f"{run_dir / name} does not exist; give the folder of a finished segmentation.train run")
    model = keras.saving.load_model(run_dir / MODEL_FILE, compile=False)
    settings = json.loads((run_dir / SEGMENTER_FILE).read_text())
    config_path = run_dir / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    return model, settings, config


def score_pairs(model, box: CropBox, threshold: float, pairs, batch_size: int = 32, keep_largest: bool = False):
    """(probabilities, predicted masks, per-image scores) of frames segmented from their images alone."""
    probabilities = segment_frames(model, box, pairs.images, batch_size=batch_size)
    predicted = binarise(probabilities, threshold, keep_largest)
    return probabilities, predicted, overlap_scores(predicted, pairs.masks)


def write_evaluation(out_dir, pairs, predicted, scores, box, config: dict, train_seconds=None, title="") -> dict:
    """metrics.json (the issue's format), per_image.csv, overlays.png and table3.md in ``out_dir``."""
    out_dir = Path(out_dir)
    summary = summarise(scores, pairs.patients)
    metrics = {"test": summary["test"], "per_patient": summary["per_patient"]}
    if train_seconds is not None:
        metrics["train_seconds"] = round(float(train_seconds), 1)
    write_metrics(out_dir, metrics)
    rows = [
        {"name": name, "patient": patient, **{metric: round(float(scores[metric][i]), 6) for metric in METRICS}}
        for i, (name, patient) in enumerate(zip(pairs.names, pairs.patients, strict=False))
    ]
    write_rows(out_dir / "per_image.csv", rows)
    plot_overlays(pairs.images, pairs.masks, predicted, pairs.names, scores["dice"], box, out_dir / "overlays.png",
                  title=title or "test frames: expert (green) and predicted (red) contours")
    (out_dir / "table3.md").write_text(table3([(run_label(config), metrics["test"])]))
    return metrics


def print_metrics(metrics: dict, split: str = "test") -> None:
    test = metrics["test"]
    print(f"{split}: {test['images']} images, " + ", ".join(
        f"{name} {test[name]['mean']:.4f} +- {test[name]['std']:.4f}" for name in METRICS
    ))


def parse_args(argv=None):
    parser = cli.parser_from_doc(__doc__)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a folder written by segmentation.train")
    parser.add_argument(
        "--data-dir", default=None,
        help="folder holding test/images and test/masks (default: the --data-dir the run was trained with)",
    )
    parser.add_argument("--output-dir", default=None, help="where to write (default: RUN_DIR/evaluation-<time>/)")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per forward pass (default: 32)")
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, not {args.batch_size}")
    return args


@main_guard
def main(argv=None):
    args = parse_args(argv)
    model, settings, config = load_run(args.run_dir)
    data_dir = Path(args.data_dir or config.get("data_dir") or "")
    if not str(data_dir):
        raise UserError("the run's config.json names no data folder; pass --data-dir")
    pairs = load_pairs(data_dir / "test", "test folder")
    box = CropBox.from_dict(settings["roi"])
    if pairs.frame != box.frame:
        raise UserError(
            f"test frames are {pairs.frame[1]}x{pairs.frame[0]}, the run was trained on {box.frame[1]}x{box.frame[0]} frames"
        )
    out_dir = make_run_dir(args.output_dir, args.run_dir, "evaluation")
    _, predicted, scores = score_pairs(model, box, float(settings["threshold"]), pairs, args.batch_size,
                                       keep_largest=bool(settings.get("largest_component", False)))
    metrics = write_evaluation(out_dir, pairs, predicted, scores, box, config)
    print_metrics(metrics)
    print(f"wrote {out_dir.resolve()}")
    return metrics


if __name__ == "__main__":
    main()
