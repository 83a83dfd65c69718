"""Shared fixtures: small synthetic image folders the tests draw themselves."""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("MPLBACKEND", "Agg")

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def draw_image(kind: str, rng, size=(48, 40)) -> Image.Image:
    """A picture whose class is visible: red discs for the first class, blue squares for the second."""
    background = tuple(int(v) for v in rng.integers(0, 90, 3))
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    x, y = (int(v) for v in rng.integers(2, min(size) - 20, 2))
    if kind == 0:
        draw.ellipse([x, y, x + 16, y + 16], fill=(230, 40, 40))
    else:
        draw.rectangle([x, y, x + 16, y + 16], fill=(40, 40, 230))
    return image


def draw_folder(root: Path, classes=("cats", "dogs"), count: int = 6, seed: int = 0, prefix: str = "") -> Path:
    """root/<class>/<prefix><class><i>.jpg with ``count`` drawn images per class."""
    rng = np.random.default_rng(seed)
    for label, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            draw_image(label % 2, rng).save(folder / f"{prefix}{name}{i}.jpg", quality=90)
    return root


@pytest.fixture
def cats_dogs_dir(tmp_path) -> Path:
    """A miniature cats_and_dogs_filtered layout: train/ 8 + 8, validation/ 4 + 4."""
    root = tmp_path / "cats_and_dogs"
    draw_folder(root / "train", count=8, seed=1)
    draw_folder(root / "validation", count=4, seed=2)
    return root


def snapshot(root: Path) -> dict:
    """Every file under root with its size and modification time: to prove nothing was touched."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def assert_one_model_file(folder: Path, name: str = "model.keras") -> int:
    """A run folder holds exactly one model file, architecture and weights only: about 4 bytes a parameter.

    Before: flower17 kept its checkpoint and a copy of it, cats_dogs.bottleneck the top model's weights beside
    the whole model, and every compiled model carried its optimizer's slots (SGD's momentum: 2x, Adam: 3x).
    Returns the file's size in bytes.
    """
    import io
    import zipfile

    import h5py
    import keras

    models = sorted(p.name for p in Path(folder).iterdir() if p.name.endswith((".keras", ".h5")))
    assert models == [name], models
    path = Path(folder) / name
    parameters = keras.saving.load_model(path, compile=False).count_params()
    size = path.stat().st_size
    assert 4 * parameters < size < 1.15 * 4 * parameters + 500_000, (size, parameters)
    with zipfile.ZipFile(path) as archive, h5py.File(io.BytesIO(archive.read("model.weights.h5"))) as weights:
        assert "optimizer" not in weights, list(weights)
    return size
