"""Segment the left ventricle in MRI frames with a trained run: a mask PNG and an overlay per image.

    python -m segmentation.predict ../shared/data/sunnybrook_lv/test/images/SC-HF-I-09-IM-0001-0020.dcm.png
    python -m segmentation.predict frames/*.png --run-dir runs/segmentation/gan-20250101-120000
    python -m segmentation.predict runs/segmentation/gan-20250101-120000 frames/*.png

For each image, ``<name>_mask.png`` (255 = ventricle, the image's own size)
and ``<name>_overlay.png`` (the frame with the predicted contour in red) go
into a new folder (default ``runs/segmentation/predict-<time>/``, or
``--output-dir``); an existing file is never overwritten. The run's fixed
region of interest, threshold and post-processing (chosen on validation) are used; a frame
of another size than the training frames is resized to theirs for the
network and the mask resized back.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
from pathlib import Path

import numpy as np

from common import cli
from common.errors import UserError, main_guard
from common.predict import run_and_images
from common.training import latest_run, make_run_dir
from segmentation.data import load_images
from segmentation.evaluate import MODEL_FILE, load_run
from segmentation.metrics import binarise
from segmentation.report import PREDICTED_COLOUR
from segmentation.roi import CropBox, segment_frames

RUNS = "runs/segmentation"


def fit_to_frame(image: np.ndarray, frame: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    if image.shape == tuple(frame):
        return image
    return np.asarray(Image.fromarray(image).resize((frame[1], frame[0]), Image.BILINEAR))


def back_to_size(probabilities: np.ndarray, shape) -> np.ndarray:
    from PIL import Image

    if probabilities.shape == tuple(shape):
        return probabilities
    return np.asarray(Image.fromarray(probabilities.astype(np.float32), mode="F").resize((shape[1], shape[0]), Image.BILINEAR))


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The grayscale frame as RGB with the mask's border drawn in red."""
    from scipy import ndimage

    rgb = np.repeat(image[..., None], 3, axis=-1).copy()
    border = mask & ~ndimage.binary_erosion(mask)
    colour = tuple(int(PREDICTED_COLOUR[i : i + 2], 16) for i in (1, 3, 5))
    rgb[border] = colour
    return rgb


def parse_args(argv=None):
    parser = cli.parser_from_doc(__doc__)
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help="MRI frames (PNG, JPEG, ...; grayscale or RGB), optionally after the run folder "
                        "(RUN_DIR IMAGE ...)")
    parser.add_argument("--run-dir", "--run", dest="run", default=None, metavar="FOLDER",
                        help=f"a segmentation.train run folder (default: the newest under {RUNS}/ holding {MODEL_FILE})")
    parser.add_argument("--output-dir", default=None, help=f"where to write (default: a new {RUNS}/predict-<time>/)")
    return parser.parse_intermixed_args(argv)   # options may stand between the run folder and the images


@main_guard
def main(argv=None):
    from PIL import Image

    args = parse_args(argv)
    run, image_paths = run_and_images(args.run, args.images)
    run_dir = Path(run) if run else latest_run(RUNS, "*", MODEL_FILE)
    if run_dir is None:
        raise UserError(f"no trained run found under {RUNS}/; train one with python -m segmentation.train, "
                        "or pass --run-dir RUN_DIR")
    model, settings, _ = load_run(run_dir)
    box = CropBox.from_dict(settings["roi"])
    threshold = float(settings["threshold"])
    keep_largest = bool(settings.get("largest_component", False))
    images = load_images(image_paths)
    out_dir = make_run_dir(args.output_dir, RUNS, "predict")
    targets = []
    for path, _ in images:
        stem = path.name[: -len(path.suffix)] if path.suffix else path.name
        pair = (out_dir / f"{stem}_mask.png", out_dir / f"{stem}_overlay.png")
        for target in pair:
            if target.exists() or target in [t for p in targets for t in p]:
                raise UserError(f"{target} already exists (or two images share the name {stem}); "
                                "choose another --output-dir")
        targets.append(pair)
    frames = np.stack([fit_to_frame(image, box.frame) for _, image in images])
    probabilities = segment_frames(model, box, frames)
    print(f"model {run_dir}: window {box.size}x{box.size} at ({box.top}, {box.left}), threshold {threshold}"
          + (", largest region kept" if keep_largest else ""))
    for (path, image), frame_probabilities, (mask_path, overlay_path) in zip(images, probabilities, targets, strict=False):
        mask = binarise(back_to_size(frame_probabilities, image.shape)[None], threshold, keep_largest)[0]
        Image.fromarray((mask * 255).astype(np.uint8)).save(mask_path)
        Image.fromarray(overlay(image, mask)).save(overlay_path)
        print(f"{path.name}: ventricle {int(mask.sum())} pixels -> {mask_path.name}, {overlay_path.name}")
    print(f"wrote {out_dir.resolve()}")
    return out_dir


if __name__ == "__main__":
    main()
