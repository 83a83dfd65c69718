"""What the flower commands share: where their folders are, and the prepared split as lists.

``flowers.prepare`` writes the layout, ``flowers.train`` and ``flowers.baselines``
read it here, so the three rows of Table 2 are trained and measured on the
same files.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from common.data import load_image_folder, parent_hint
from common.errors import UserError

DEFAULT_DATA_DIR = "data/flowers"
OUTPUT_PARENT = "runs/flowers"


@dataclasses.dataclass
class PreparedFlowers:
    """The prepared split: training files (originals, then their offline views) and validation originals."""

    train_paths: list[str]
    train_labels: np.ndarray
    validation_paths: list[str]
    validation_labels: np.ndarray
    class_names: list[str]
    original: np.ndarray  # over train_paths: True for an original photo, False for a flipped / rotated view


def load_prepared(data_dir, limit: int | None = None) -> PreparedFlowers:
    """Read ``train/``, ``train_views/`` (if any) and ``validation/`` of a ``flowers.prepare`` folder.

    ``original`` lets ``--finetune-augment`` draw its own random views of the
    originals and leave the offline copies out. ``limit`` (``--limit N``)
    keeps N originals per class in train/ and in validation/, and the views
    of those training originals only (``<stem>_<view>.jpg``).
    """
    data_dir = Path(data_dir)
    if not (data_dir / "train").is_dir() or not (data_dir / "validation").is_dir():
        inside = parent_hint(data_dir / "train")
        raise UserError(f"{data_dir} has no train/ and validation/ folders" + (inside or (
            f"; make them first with python -m flowers.prepare --data-dir {data_dir} [--from /path/to/flower_photos]")))
    train = load_image_folder(data_dir / "train", description="training folder", limit=limit)
    parts = [train]
    if (data_dir / "train_views").is_dir():
        originals = {(Path(path).parent.name, Path(path).stem) for path in train.paths}

        def of_a_kept_original(view: Path) -> bool:
            return limit is None or (view.parent.name, view.stem.rsplit("_", 1)[0]) in originals

        parts.append(load_image_folder(data_dir / "train_views", train.class_names, description="views folder",
                                       keep=of_a_kept_original))
    validation = load_image_folder(data_dir / "validation", train.class_names, description="validation folder",
                                   limit=limit)
    train_paths = [path for part in parts for path in part.paths]
    return PreparedFlowers(
        train_paths=train_paths,
        train_labels=np.concatenate([part.labels for part in parts]),
        validation_paths=validation.paths,
        validation_labels=validation.labels,
        class_names=train.class_names,
        original=np.arange(len(train_paths)) < len(train.paths),
    )
