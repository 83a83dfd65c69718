"""Tiny cardiac-MRI look-alikes for the segmentation tests: bright discs and rings on noise, with masks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

GROUPS = ("SC-HF-I", "SC-HF-NI", "SC-HYP", "SC-N")


def draw_pair(rng, size: int = 64, kind: str = "disc", centre=None, radius=None):
    """(image uint8, mask uint8 0/1): a bright disc, or a bright ring, near the middle of a noisy frame."""
    rows, columns = np.mgrid[0:size, 0:size]
    if centre is None:
        centre = size / 2 + rng.uniform(-size / 16, size / 16, 2)
    if radius is None:
        radius = rng.uniform(size / 10, size / 6)
    distance = np.hypot(rows - centre[0], columns - centre[1])
    if kind == "disc":
        mask = distance <= radius
    elif kind == "ring":
        mask = (distance <= radius) & (distance >= radius * 0.55)
    else:
        raise ValueError(kind)
    image = rng.normal(50, 15, (size, size))
    image[mask] = rng.normal(200, 15, int(mask.sum()))
    return np.clip(image, 0, 255).astype(np.uint8), mask.astype(np.uint8)


def save_rgb(array: np.ndarray, path: Path) -> None:
    """Grayscale stored as RGB with three equal channels, as the Sunnybrook export does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.repeat(array[..., None], 3, axis=-1)).save(path)


def name_of(patient: str, frame: int) -> str:
    return f"{patient}-IM-0001-{frame:04d}.dcm.png"


def make_split(root: Path, patients: list[str], frames: int = 3, size: int = 64, seed: int = 0) -> Path:
    """root/images and root/masks, ``frames`` pairs per patient, discs and rings alternating."""
    rng = np.random.default_rng(seed)
    for patient in patients:
        for frame in range(frames):
            image, mask = draw_pair(rng, size, "disc" if frame % 2 == 0 else "ring")
            save_rgb(image, root / "images" / name_of(patient, frame))
            save_rgb(mask * 255, root / "masks" / name_of(patient, frame))
    return root


def make_dataset_folder(root: Path, train_per_group: int = 2, test_patients: int = 2, frames: int = 3,
                        size: int = 64) -> Path:
    """The shared folder's layout: train/ with ``train_per_group`` patients per category, test/ with others."""
    train = [f"{group}-{number:02d}" for group in GROUPS for number in range(1, train_per_group + 1)]
    test = [f"{GROUPS[number % len(GROUPS)]}-{50 + number:02d}" for number in range(test_patients)]
    make_split(root / "train", train, frames, size, seed=1)
    make_split(root / "test", test, frames, size, seed=2)
    return root
