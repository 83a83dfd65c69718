"""The textbook's Table 3 beside this project's runs, as a Markdown table.

    python -m segmentation.table3 runs/segmentation/unet-* runs/segmentation/tlbsn-* runs/segmentation/gan-*
    python -m segmentation.table3 RUN_DIR... --output table3.md

Reads each run folder's metrics.json (test scores, written once at the end of
segmentation.train) and config.json, and prints the textbook's three rows
followed by one row per run, with the training time of each. A
``RUN_DIR/evaluation-<time>/`` folder (``segmentation.evaluate``) is read
with its run's config.json.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import json
from pathlib import Path

from common import cli
from common.errors import UserError, main_guard
from common.files import check_new_file
from segmentation.report import run_label, table3


def rows_of(run_dirs) -> list[tuple[str, dict]]:
    rows = []
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        metrics_path, config_path = run_dir / "metrics.json", run_dir / "config.json"
        if not metrics_path.is_file():
            raise UserError(f"{metrics_path} does not exist; give folders of segmentation.train runs that scored test/")
        try:
            metrics = json.loads(metrics_path.read_text())
        except ValueError as error:
            raise UserError(f"{metrics_path} is not valid JSON ({error}); was the run interrupted?") from None
        if not isinstance(metrics.get("test"), dict):
            raise UserError(f"{metrics_path} holds no test scores: {run_dir} is not a segmentation.train run "
                            "that scored test/ (a --skip-test run, or another command's folder)")
        if not config_path.is_file() and (run_dir.parent / "config.json").is_file():
            config_path = run_dir.parent / "config.json"  # an evaluation-<time>/ folder inside its run
        config = json.loads(config_path.read_text()) if config_path.is_file() else {}
        label = run_label(config)
        if "image_size" in config:
            label += f", {config['image_size']} px input"
        if "epochs" in config:
            label += f", {config['epochs']} epochs"
        if "train_seconds" in metrics:
            label += f", {metrics['train_seconds'] / 60:.1f} min"
        rows.append((label, metrics["test"]))
    return rows


def parse_args(argv=None):
    parser = cli.parser_from_doc(__doc__)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="segmentation.train output folders")
    parser.add_argument("--output", default=None, help="also write the table to this file (refused if it exists)")
    return parser.parse_args(argv)


@main_guard
def main(argv=None):
    args = parse_args(argv)
    check_new_file(args.output, "--output")   # before reading the runs; never over an existing file
    text = table3(rows_of(args.runs))
    print(text, end="")
    if args.output:
        output = Path(args.output)
        output.write_text(text)
        print(f"wrote {output.resolve()}")
    return text


if __name__ == "__main__":
    main()
