"""Lay out the cats-vs-dogs data as the textbook expects: train/ and validation/, cats/ and dogs/.

    python -m cats_dogs.prepare                      # download Google's cats_and_dogs_filtered.zip
    python -m cats_dogs.prepare --from DIR           # an unpacked cats_and_dogs_filtered/ folder
    python -m cats_dogs.prepare --from kaggle/train  # Kaggle's flat cat.N.jpg / dog.N.jpg folder

The textbook took 1000 training and 400 validation images per class from
Kaggle's Dogs vs. Cats; Google's cats_and_dogs_filtered.zip is the standard
download of the same data (1000 + 500 per class). Files are copied (or linked
with ``--link``); the source is never modified.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import re
from pathlib import Path

from tqdm.auto import tqdm

from cats_dogs.model import DEFAULT_DATA_DIR
from common.cli import parser_from_doc
from common.errors import UserError, main_guard
from common.files import check_apart, fetch, find_folder_with, place_file, writable_folder

URL = "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip"
CLASSES = ("cats", "dogs")
KAGGLE_PATTERN = re.compile(r"^(cat|dog)\.(\d+)\.jpe?g$", re.IGNORECASE)
# The textbook's Kaggle split: numbers 0-999 train, 1000-1399 validation, per class.
KAGGLE_TRAIN = range(0, 1000)
KAGGLE_VALIDATION = range(1000, 1400)


def plan_from_filtered(source: Path) -> list[tuple[Path, Path]]:
    """(source file, relative target) pairs for an unpacked cats_and_dogs_filtered folder."""
    plan = []
    for split in ("train", "validation"):
        for name in CLASSES:
            folder = source / split / name
            for file in sorted(folder.iterdir()):
                if file.is_file() and not file.name.startswith("."):
                    plan.append((file, Path(split) / name / file.name))
    return plan


def plan_from_kaggle(source: Path) -> list[tuple[Path, Path]]:
    """The textbook's 1000 + 400 per class from Kaggle's flat ``cat.N.jpg`` folder."""
    plan = []
    for file in sorted(source.iterdir()):
        match = KAGGLE_PATTERN.match(file.name)
        if not match:
            continue
        animal, number = match.group(1).lower(), int(match.group(2))
        if number in KAGGLE_TRAIN:
            split = "train"
        elif number in KAGGLE_VALIDATION:
            split = "validation"
        else:
            continue
        plan.append((file, Path(split) / f"{animal}s" / file.name))
    return plan


def make_plan(source: Path) -> list[tuple[Path, Path]]:
    filtered = find_folder_with(source, "train/cats", "train/dogs", "validation/cats", "validation/dogs")
    if filtered is not None:
        return plan_from_filtered(filtered)
    for folder in (source, source / "train"):
        if folder.is_dir() and any(KAGGLE_PATTERN.match(p.name) for p in folder.iterdir()):
            plan = plan_from_kaggle(folder)
            if plan:
                return plan
    raise UserError(
        f"{source} is neither an unpacked cats_and_dogs_filtered folder (train/ and validation/ "
        "with cats/ and dogs/) nor Kaggle's flat folder of cat.N.jpg / dog.N.jpg files"
    )


def prepare(source: Path | None, data_dir: Path, link: bool = False) -> dict[str, int]:
    source = fetch(
        source, url=URL, file_name="cats_and_dogs_filtered.zip",
        alternative="pass --from DIR with an unpacked cats_and_dogs_filtered folder or Kaggle's train/ folder",
    )
    check_apart(data_dir, source)
    plan = make_plan(source)
    missing = [f"{split}/{name}" for split in ("train", "validation") for name in CLASSES
               if not any(relative.parts[:2] == (split, name) for _, relative in plan)]
    if missing:
        raise UserError(
            f"{source} gives no images for {', '.join(missing)} (from Kaggle's flat folder the textbook takes "
            f"numbers {KAGGLE_TRAIN.start}-{KAGGLE_TRAIN.stop - 1} per class for training and "
            f"{KAGGLE_VALIDATION.start}-{KAGGLE_VALIDATION.stop - 1} for validation); nothing was written")
    writable_folder(data_dir, "--data-dir")
    written = 0
    for file, relative in tqdm(plan, desc="placing images", unit="img", leave=False):
        written += place_file(file, data_dir / relative, link)
    counts = {}
    for split in ("train", "validation"):
        for name in CLASSES:
            folder = data_dir / split / name
            counts[f"{split}/{name}"] = sum(1 for _ in folder.glob("*")) if folder.exists() else 0
    print(f"{'linked' if link else 'copied'} {written} new file(s) from {source}")
    for key, count in counts.items():
        print(f"  {key}: {count}")
    print(f"wrote {data_dir.resolve()}")
    return counts


@main_guard
def main(argv=None) -> dict[str, int]:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--from", dest="source", default=None,
                        help="a local copy: unpacked cats_and_dogs_filtered/ or Kaggle's train/ folder "
                        "(default: download from the official URL)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                        help=f"where to write train/ and validation/ (default: {DEFAULT_DATA_DIR}, where the "
                        "training commands look)")
    parser.add_argument("--link", action="store_true", help="symlink the files instead of copying them")
    args = parser.parse_args(argv)
    counts = prepare(Path(args.source) if args.source else None, Path(args.data_dir), args.link)
    where = "" if Path(args.data_dir) == Path(DEFAULT_DATA_DIR) else f" --data-dir {args.data_dir}"
    print(f"next: python -m cats_dogs.bottleneck{where}, then python -m cats_dogs.finetune{where}")
    return counts


if __name__ == "__main__":
    main()
