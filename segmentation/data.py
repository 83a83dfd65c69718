"""Image / mask pairs of cardiac MRI: checked once, held in memory, split by patient.

The layout is the shared Sunnybrook export's: ``<split>/images/<name>.png``
and ``<split>/masks/<name>.png``, an image and its expert mask sharing a file
name. A few hundred 256 x 256 frames fit in memory many times over, so every
pair is read, checked and kept as arrays once, before any training starts: a
missing mask, a mask that is not binary or a frame of another size costs one
line of error, not a crash an hour in. Nothing is ever written into the data
folder.

Images are read as grayscale (MRI is one channel; the export stores it as RGB
with three equal channels; colour images are turned into their luminance, and
16-bit grayscale is rescaled to 0..255). Masks may be grayscale or RGB, with
the values 0 and 255 or 0 and 1; anything else is refused.

Slices of one patient look alike, so a validation split of random slices
would measure memory, not segmentation: ``split_patients`` holds out whole
patients, from the training folder only.

The endless, shuffled, augmented batches the training steps read are
``segmentation.pipeline``'s (``make_augmenter``, ``training_dataset``).
"""
from __future__ import annotations

import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np

from common.data import parent_hint
from common.errors import UserError

#: Files read as images (by PIL); anything else in an images/ or masks/ folder is warned about.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff"}

PATIENT_SEPARATOR = "-IM-"  # Sunnybrook names: <patient>-IM-0001-<frame>.dcm.png


@dataclasses.dataclass
class PairSet:
    """Grayscale frames and their binary masks, one row per file name."""

    names: list[str]
    images: np.ndarray  # (n, height, width) uint8
    masks: np.ndarray | None  # (n, height, width) uint8 in {0, 1}, or None for images alone
    folder: Path | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def patients(self) -> list[str]:
        return [patient_of(name) for name in self.names]

    @property
    def frame(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.images.shape[1:3])

    def subset(self, indices) -> "PairSet":
        indices = np.asarray(indices, dtype=int)
        return PairSet(
            [self.names[i] for i in indices],
            self.images[indices],
            None if self.masks is None else self.masks[indices],
            self.folder,
        )


def patient_of(name: str) -> str:
    """The patient id of a Sunnybrook file name (everything before ``-IM-``).

    A name without ``-IM-`` is its own patient: a folder of other files is
    then split image by image.
    """
    stem = Path(name).name
    if PATIENT_SEPARATOR in stem:
        return stem.split(PATIENT_SEPARATOR)[0]
    return stem.split(".")[0]


def patient_group(patient: str) -> str:
    """The Sunnybrook category of a patient id: SC-HF-I, SC-HF-NI, SC-HYP or SC-N."""
    parts = patient.split("-")
    return "-".join(parts[:-1]) if len(parts) > 1 else patient


def list_images(folder: Path, description: str) -> dict[str, Path]:
    """Image files in ``folder`` by stem (hidden files skipped, other files warned about)."""
    if not folder.is_dir():
        raise UserError(f"{description} {folder} does not exist or is not a folder")
    files, ignored = {}, []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.is_dir():
            continue
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            ignored.append(path.name)
            continue
        stem = path.name[: -len(path.suffix)]
        if stem in files:
            raise UserError(f"{description} {folder} holds two images named {stem}: {files[stem].name} and {path.name}")
        files[stem] = path
    if ignored:
        warnings.warn(f"ignored {len(ignored)} non-image file(s) in {folder}: {', '.join(ignored[:5])}", stacklevel=2)
    if not files:
        raise UserError(f"{description} {folder} holds no images (.png, .jpg, ...)")
    return files


def read_grayscale(path: Path) -> np.ndarray:
    """One image as uint8 grayscale (height, width)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                array = np.asarray(image, dtype=np.float64)
                top = array.max()
                array = array * (255.0 / top) if top > 0 else array
                return np.clip(np.round(array), 0, 255).astype(np.uint8)
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"cannot read image {path}: {reason}") from None


def read_mask(path: Path) -> np.ndarray:
    """One binary mask as uint8 in {0, 1}; a mask with other values is refused."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode == "P":
                image = image.convert("RGB")
            array = np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"cannot read mask {path}: {reason}") from None
    if array.dtype == bool:
        return array.astype(np.uint8)
    if array.ndim == 3:
        if array.shape[2] in (2, 4):  # drop the alpha channel
            array = array[..., :-1]
        if not (array == array[..., :1]).all():
            raise UserError(f"mask {path} has channels that differ; a mask must be grayscale (or RGB with equal channels)")
        array = array[..., 0]
    values = np.unique(array)
    if set(values.tolist()) <= {0, 255}:
        return (array == 255).astype(np.uint8)
    if set(values.tolist()) <= {0, 1}:
        return array.astype(np.uint8)
    shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
    raise UserError(
        f"mask {path} is not binary: it holds {len(values)} values ({shown}); a mask must hold only 0 and 255 "
        "(or 0 and 1), saved losslessly (PNG, not JPEG)"
    )


def load_pairs(folder, description: str = "data folder", limit: int | None = None) -> PairSet:
    """Read ``folder/images`` and ``folder/masks``, checked pair by pair.

    ``limit`` (``--limit N``, a quick try): the first N frames of each patient
    in file-name order, so that every patient, and the split into training and
    validation patients, stays.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{description} {folder} does not exist; it should hold images/ and masks/ with matching file "
                        f"names{parent_hint(folder)}")
    images = list_images(folder / "images", f"{description} images folder")
    masks = list_images(folder / "masks", f"{description} masks folder")
    without_mask = sorted(set(images) - set(masks))
    without_image = sorted(set(masks) - set(images))
    if without_mask:
        raise UserError(
            f"{len(without_mask)} image(s) in {folder / 'images'} have no mask of the same name in {folder / 'masks'}: "
            + ", ".join(images[name].name for name in without_mask[:5]) + (" ..." if len(without_mask) > 5 else "")
        )
    if without_image:
        raise UserError(
            f"{len(without_image)} mask(s) in {folder / 'masks'} have no image of the same name in {folder / 'images'}: "
            + ", ".join(masks[name].name for name in without_image[:5]) + (" ..." if len(without_image) > 5 else "")
        )
    names = sorted(images)
    if limit is not None:
        frames: dict[str, list[str]] = {}
        for name in names:
            frames.setdefault(patient_of(images[name].name), []).append(name)
        names = sorted(name for patient in frames.values() for name in patient[:limit])
    image_arrays, mask_arrays = [], []
    for name in names:
        image, mask = read_grayscale(images[name]), read_mask(masks[name])
        if image.shape != mask.shape:
            raise UserError(
                f"image {images[name]} is {_size(image)} but its mask {masks[name]} is {_size(mask)}; they must match"
            )
        if image_arrays and image.shape != image_arrays[0].shape:
            raise UserError(
                f"images in {folder / 'images'} differ in size: {images[names[0]].name} is {_size(image_arrays[0])}, "
                f"{images[name].name} is {_size(image)}; resample them to one size first"
            )
        image_arrays.append(image)
        mask_arrays.append(mask)
    return PairSet([images[name].name for name in names], np.stack(image_arrays), np.stack(mask_arrays), folder)


def load_images(paths) -> list[tuple[Path, np.ndarray]]:
    """Images to segment (no masks), each as uint8 grayscale at its own size.

    As in the other predict commands, a file that cannot be read is named on
    stderr and left out; only when none can be read is it an error.
    """
    result, problems = [], []
    for path in paths:
        path = Path(path)
        try:
            if not path.is_file():
                raise UserError(f"image {path} does not exist")
            result.append((path, read_grayscale(path)))
        except UserError as error:
            problems.append(str(error))
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    if not result:
        raise UserError("; ".join(problems) or "no images given")
    return result


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}x{array.shape[0]}"


def split_patients(patients, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``count`` whole patients for validation, spread over the patient categories.

    Patients are shuffled (seeded) within each category (heart failure with
    and without infarction, hypertrophy, normal) and taken round-robin over
    the categories, so a small validation set still holds every kind of
    heart. Returns sorted (fit, validation) row indices.
    """
    patients = list(patients)
    unique = sorted(set(patients))
    if not 1 <= count < len(unique):
        raise UserError(
            f"cannot hold out {count} validation patient(s) from {len(unique)}; "
            f"choose --validation-patients between 1 and {len(unique) - 1}"
        )
    rng = np.random.default_rng(seed)
    groups: dict[str, list[str]] = {}
    for patient in unique:
        groups.setdefault(patient_group(patient), []).append(patient)
    queues = [list(rng.permutation(members)) for _, members in sorted(groups.items())]
    chosen: list[str] = []
    while len(chosen) < count:
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(str(queue.pop(0)))
    held = set(chosen)
    rows = np.arange(len(patients))
    is_validation = np.array([patient in held for patient in patients])
    return rows[~is_validation], rows[is_validation]
