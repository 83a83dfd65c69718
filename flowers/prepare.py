"""Get TensorFlow's flower_photos and lay it out for training: split first, then augment.

    python -m flowers.prepare                                  # download (about 230 MB)
    python -m flowers.prepare --from ../shared/data/flower_photos --data-dir data/flowers
    python -m flowers.prepare --flower17                       # the exercise's flower17 into data/flower17/jpg/
    python -m flowers.prepare --flower17 --from ../shared/data/flower17

The textbook triples the 3670 photos offline (each one, flipped left-right and
rotated by 90 degrees) and only then holds out 200 images per class: a flipped
or rotated copy of a validation photo then sits in the training set, and the
validation accuracy is inflated (docs/textbook-errata.md, E11). Here the order
is reversed:

1. 200 *original* photos per class (seeded) go to ``validation/``;
2. the remaining originals go to ``train/``;
3. a flipped and a rotated copy of each *training* photo go to ``train_views/``.

``split.json`` records the seed and which file went where. The source folder
(the download cache or ``--from DIR``) is only ever read.

Offline: put ``flower_photos.tgz`` (from ``common.flower_sets.FLOWER_PHOTOS_URL``) in
``$KERAS_HOME/datasets/`` (default ``~/.keras/datasets/``), or unpack it anywhere
and pass ``--from <that folder>/flower_photos``.

``--flower17`` instead places Oxford's flower17 (``17flowers.tgz`` from
``common.flower_sets.FLOWER17_URL``, or ``--from`` a folder holding its
``jpg/``) as ``data/flower17/jpg/image_0001.jpg`` ..., where ``python -m
flowers.flower17`` looks by default; it is not split here (the exercise splits
the classes it trains on, 7:1).
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import json
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from common import cli
from common.data import load_image_folder, split_per_class
from common.errors import UserError, main_guard
from common.files import check_apart, place_file, writable_folder
from common.flower_sets import FLOWER17_DEFAULT_DIR, FLOWER17_FILE, download, download_flower17, images_in
from flowers.data import DEFAULT_DATA_DIR

VALIDATION_PER_CLASS = 200
# The textbook's two offline views of every training photo.
VIEWS = ("flip", "rot90")


def parse_args(argv=None):
    parser = cli.parser_from_doc(__doc__)
    parser.add_argument(
        "--from",
        dest="source",
        default=None,
        help="a local copy of flower_photos (a folder of class folders), or with --flower17 of flower17 (a folder "
        "holding jpg/); default: download it",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help=f"where to write train/, train_views/ and validation/ (default: {DEFAULT_DATA_DIR}; with --flower17 "
        f"where jpg/ goes, default: {FLOWER17_DEFAULT_DIR})",
    )
    parser.add_argument("--flower17", action="store_true",
                        help="place the flower17 exercise's photos instead of preparing flower_photos")
    parser.add_argument(
        "--validation-per-class",
        type=int,
        default=VALIDATION_PER_CLASS,
        help=f"original photos per class held out for validation (default: {VALIDATION_PER_CLASS})",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        args.data_dir = FLOWER17_DEFAULT_DIR if args.flower17 else DEFAULT_DATA_DIR
    return args


def place_flower17(source, out) -> int:
    """Copy flower17's image_NNNN.jpg files from ``source`` (or the official archive) into ``out/jpg``; return
    how many files are there. Files already there are kept, so a rerun writes nothing."""
    from common.progress import Progress

    if source is None:
        images = download_flower17(alternative="unpack it and pass --flower17 --from <the folder holding jpg/>")
    else:
        images = images_in(Path(source))
        if images is None:
            raise UserError(f"--from {source} holds no jpg/image_0001.jpg ...; pass the flower17 folder that holds jpg/")
    check_apart(out, images)
    files = sorted(path for path in images.iterdir() if FLOWER17_FILE.match(path.name))
    target = writable_folder(Path(out) / "jpg", "--data-dir")
    with Progress(len(files), "copy flower17", unit="images") as progress:
        for path in files:
            place_file(path, target / path.name, link=False)
            progress.update(1)
    return len(files)


def write_view(source: Path, target: Path, view: str) -> None:
    """One of the textbook's offline views; EXIF orientation applied first so 'flip' means what it shows."""
    from PIL import Image, ImageOps

    with Image.open(source) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        if view == "flip":
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        elif view == "rot90":
            image = image.transpose(Image.Transpose.ROTATE_90)
        else:
            raise ValueError(view)
        image.save(target, quality=95)


def prepare(source, out, validation_per_class: int = VALIDATION_PER_CLASS, seed: int = 0) -> dict:
    """Split the originals, copy them, write the training views; return the split record."""
    source, out = Path(source), Path(out)
    check_apart(out, source)
    folder = load_image_folder(source, description="flower photo folder")
    train_index, validation_index = split_per_class(folder.labels, validation_per_class, seed=seed,
                                                    class_names=folder.class_names)
    plan = {
        "validation": [folder.paths[i] for i in validation_index],
        "train": [folder.paths[i] for i in train_index],
    }
    record = {
        "source": str(source.resolve()),
        "seed": seed,
        "validation_per_class": validation_per_class,
        "views": list(VIEWS),
        "class_names": folder.class_names,
        "skipped": [list(item) for item in folder.skipped],
        "files": {
            part: [str(Path(p).relative_to(folder.root)) for p in paths] for part, paths in plan.items()
        },
    }

    split_file = out / "split.json"
    if split_file.exists():
        previous = json.loads(split_file.read_text())
        if {k: previous.get(k) for k in record} == record:
            print(f"{out} already holds this split; nothing to do")
            return record
        raise UserError(
            f"{out} already holds a different split (other source, seed or files); "
            "choose another --data-dir or delete that folder"
        )
    if out.exists() and any(out.iterdir()):
        raise UserError(f"--data-dir {out} exists and is not empty; choose a new folder")

    writable_folder(out, "--data-dir")
    for part in ("train", "train_views", "validation"):
        for name in folder.class_names:
            (out / part / name).mkdir(parents=True, exist_ok=True)
    for part, paths in plan.items():
        for path in tqdm(paths, desc=f"copy {part}", unit="img"):
            path = Path(path)
            shutil.copyfile(path, out / part / path.parent.name / path.name)
    # Views of the training photos only, written after the split was fixed.
    for path in tqdm(plan["train"], desc="write flipped and rotated views", unit="img"):
        path = Path(path)
        for view in VIEWS:
            write_view(path, out / "train_views" / path.parent.name / f"{path.stem}_{view}.jpg", view)
    split_file.write_text(json.dumps(record, indent=1) + "\n")
    return record


@main_guard
def main(argv=None):
    args = parse_args(argv)
    if args.flower17:
        count = place_flower17(args.source, args.data_dir)
        print(f"flower17: {count} photos in {Path(args.data_dir, 'jpg').resolve()}")
        print(f"next: python -m flowers.flower17 --data-dir {args.data_dir}")
        return count
    if args.validation_per_class < 1:
        raise UserError(f"--validation-per-class must be at least 1, not {args.validation_per_class}")
    source = download(args.source)
    if not source.is_dir():
        raise UserError(f"--from {source} is not a folder (expected flower_photos/<class>/<images>)")
    record = prepare(source, args.data_dir, args.validation_per_class, args.seed)
    counts = {
        name: sum(1 for f in record["files"]["train"] if f.startswith(name + "/"))
        for name in record["class_names"]
    }
    print(f"classes: {', '.join(record['class_names'])}")
    print(
        f"train: {sum(counts.values())} originals + {len(VIEWS) * sum(counts.values())} views; "
        f"validation: {len(record['files']['validation'])} originals ({args.validation_per_class} per class)"
    )
    if record["skipped"]:
        print(f"skipped {len(record['skipped'])} unreadable file(s); see split.json")
    print(f"wrote {Path(args.data_dir).resolve()}")
    print(f"next: python -m flowers.train --data-dir {args.data_dir}")


if __name__ == "__main__":
    main()
