"""Small synthetic flower folders for the flowers tests: every image distinct, drawn in the test."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

# A colour per class, so even a tiny model has something to learn.
COLOURS = [(230, 40, 40), (40, 200, 60), (50, 70, 230), (230, 220, 40), (200, 60, 220)]


def draw(rng, colour, size=(40, 48)) -> np.ndarray:
    """Noise with a coloured, off-centre rectangle: no two images (nor their flips) alike."""
    height, width = size
    image = rng.integers(0, 90, (height, width, 3)).astype(np.uint8)
    top, left = rng.integers(2, height // 3), rng.integers(2, width // 4)
    image[top : top + height // 2, left : left + width // 3] = colour
    return image


def make_flower_folder(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for index, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(count):
            Image.fromarray(draw(rng, COLOURS[index % len(COLOURS)])).save(folder / f"{name}_{number:03d}.jpg", quality=95)
    return root


def make_flower17(root: Path, classes: int = 2, per_class: int = 80, seed: int = 0) -> Path:
    """The raw flower17 layout: root/jpg/image_0001.jpg ..., class = (number - 1) // 80."""
    rng = np.random.default_rng(seed)
    folder = root / "jpg"
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(classes):
        for i in range(per_class):
            number = k * 80 + i + 1
            Image.fromarray(draw(rng, COLOURS[k % len(COLOURS)], (32, 36))).save(folder / f"image_{number:04d}.jpg", quality=90)
    return root


def snapshot(root: Path) -> dict[str, str]:
    """Every file under root with a hash of its bytes: proves a folder was not written to."""
    return {
        str(path.relative_to(root)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.float32)
