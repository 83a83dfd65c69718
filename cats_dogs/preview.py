"""Show what the textbook's augmentation does: one picture in, 20 augmented pictures out.

    python -m cats_dogs.preview data/cats_and_dogs/train/cats/cat.0.jpg

The same parameters as the slides' ImageDataGenerator (rotation 40 degrees,
shifts 0.2, shear 0.2 degrees, zoom 0.2, horizontal flips, nearest fill,
rescale 1/255), applied by ``common.augment.Augmenter`` (Keras 3 has no
ImageDataGenerator: docs/textbook-errata.md, E16, E17). The pictures are
saved as ``cat_000.jpeg`` ... in ``--out-dir`` next to a contact sheet
``cat_preview.png``; existing files there are never overwritten. ``--count``
pictures are written; the slides' loop (``if i > 20: break`` after saving)
writes 21 (E28).
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
from pathlib import Path

from common.augment import Augmenter
from common.cli import parser_from_doc
from common.data import check_image_file
from common.errors import UserError, main_guard

TEXTBOOK_PREVIEW = {
    "rotation_range": 40,
    "width_shift_range": 0.2,
    "height_shift_range": 0.2,
    "rescale": 1 / 255,
    "shear_range": 0.2,
    "zoom_range": 0.2,
    "horizontal_flip": True,
    "fill_mode": "nearest",
}


@main_guard
def main(argv=None) -> list[Path]:
    parser = parser_from_doc(__doc__)
    parser.add_argument("image", help="the picture to augment")
    parser.add_argument("--count", type=int, default=20, help="how many augmented pictures (default: 20)")
    parser.add_argument("--out-dir", default="preview", help="where to save them (default: preview/)")
    parser.add_argument("--prefix", default="cat", help="file name prefix (default: cat)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a new draw each run)")
    args = parser.parse_args(argv)
    if not args.prefix or args.prefix in (".", "..") or any(sep in args.prefix for sep in ("/", "\\")):
        parser.error(f"--prefix is a file name prefix, not a path: {args.prefix!r} (choose the folder with --out-dir)")
    image = Path(args.image)
    if not image.is_file():
        raise UserError(f"image {image} {'is a folder: give one image file' if image.is_dir() else 'does not exist'}")
    problem = check_image_file(image)
    if problem:
        raise UserError(f"cannot read {image}: {problem}")
    if args.count < 1:
        raise UserError("--count must be at least 1")
    try:
        written = Augmenter(**TEXTBOOK_PREVIEW, seed=args.seed).preview(image, args.out_dir, args.count, args.prefix)
    except OSError as error:
        raise UserError(f"cannot write to {args.out_dir}: {error.strerror}") from None
    print(f"wrote {len(written)} augmented pictures and a contact sheet to {Path(args.out_dir).resolve()}")
    return written


if __name__ == "__main__":
    main()
