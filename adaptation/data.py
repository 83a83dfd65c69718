"""Two domains with the same classes: the flower collections, or any two class-folder trees.

Unsupervised domain adaptation (textbook 12.2.2) needs a labelled source, an
unlabelled target, and one list of class names that means the same thing in
both. The checks that make a run meaningful happen here, before any feature is
computed: the same class names on both sides, no class missing in either, and
enough target images to adapt to.

The cross-collection flower task reads the two shared collections in place:
``flower_photos/<class>/*.jpg`` and flower17's flat ``jpg/image_NNNN.jpg``,
whose class is ``(NNNN - 1) // 80`` (``../shared/data/README.md``, "Flowers
across collections"). Nothing is copied or written into either folder.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np

from common.data import ImageFolder, check_image_file, load_image_folder, warn_skipped
from common.errors import UserError

#: The four flowers both collections hold, in label order, with each
#: collection's own name for them: a flower_photos folder and a 0-based
#: flower17 class number.
SHARED_FLOWERS = {
    "daisy": ("daisy", 10),
    "dandelion": ("dandelion", 12),
    "sunflower": ("sunflowers", 9),
    "tulip": ("tulips", 7),
}
COLLECTIONS = ("flower_photos", "flower17")
FLOWER17_PATTERN = re.compile(r"^image_(\d{4})\.jpg$", re.IGNORECASE)
FLOWER17_PER_CLASS = 80


@dataclasses.dataclass
class DomainPair:
    """A labelled source and a target whose labels are kept for scoring only."""

    source: ImageFolder
    target: ImageFolder
    source_name: str
    target_name: str

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def direction(self) -> str:
        return f"{self.source_name}->{self.target_name}"


def load_flower_photos(data_dir, limit: int | None = None) -> ImageFolder:
    """flower_photos' four shared classes, relabelled with the shared names.

    Looks in ``<data-dir>/flower_photos``; when that is missing and the
    default ``data`` folder is used, falls back to Keras's download cache,
    where ``python -m flowers.prepare`` put the archive (downloading it if a
    network is there).
    """
    root = Path(data_dir) / "flower_photos"
    if not root.is_dir():
        if Path(data_dir) != Path("data"):
            raise UserError(
                f"{data_dir} holds no flower_photos/ folder; pass --data-dir the folder that holds "
                "flower_photos/ and flower17/ (e.g. ../shared/data)"
            )
        from common.flower_sets import download

        root = download()
    folders = [folder for folder, _ in SHARED_FLOWERS.values()]
    found = load_image_folder(root, class_names=folders, description="flower_photos folder", limit=limit)
    return dataclasses.replace(found, class_names=list(SHARED_FLOWERS))


def load_flower17(data_dir, limit: int | None = None) -> ImageFolder:
    """flower17's four shared classes (10, 12, 9, 7), read from the flat jpg/ folder in place; at most
    ``limit`` per class, the first in file order."""
    from common.flower_sets import find_images

    images = find_images(Path(data_dir) / "flower17")
    wanted = {number: label for label, (_, number) in enumerate(SHARED_FLOWERS.values())}
    paths, labels, skipped = [], [], []
    for file in sorted(images.iterdir()):
        match = FLOWER17_PATTERN.match(file.name)
        if not match:
            continue
        label = wanted.get((int(match.group(1)) - 1) // FLOWER17_PER_CLASS)
        if label is None or (limit is not None and labels.count(label) >= limit):
            continue
        reason = check_image_file(file)
        if reason is not None:
            skipped.append((str(file), reason))
            continue
        paths.append(str(file))
        labels.append(label)
    if skipped:
        warn_skipped(skipped)
    labels = np.asarray(labels, dtype=np.int32)
    counts = np.bincount(labels, minlength=len(SHARED_FLOWERS))
    empty = [name for name, count in zip(SHARED_FLOWERS, counts, strict=False) if count == 0]
    if empty:
        raise UserError(f"flower17 folder {images} holds no readable image of {', '.join(empty)}")
    return ImageFolder(images, list(SHARED_FLOWERS), paths, labels, skipped)


def load_collection(name: str, data_dir, limit: int | None = None) -> ImageFolder:
    if name == "flower_photos":
        return load_flower_photos(data_dir, limit)
    if name == "flower17":
        return load_flower17(data_dir, limit)
    raise UserError(f"unknown collection {name!r}; choose {' or '.join(COLLECTIONS)}, or pass a folder")


def load_class_tree(path, description: str, limit: int | None = None) -> ImageFolder:
    """Any ``root/<class>/<image>`` tree, checked as every example's data folders are."""
    return load_image_folder(path, description=description, limit=limit)


def check_pair(source: ImageFolder, target: ImageFolder, source_name: str, target_name: str) -> None:
    """The same classes on both sides, each present, and a target worth adapting to."""
    source_classes, target_classes = set(source.class_names), set(target.class_names)
    if source_classes != target_classes:
        only_source = sorted(source_classes - target_classes)
        only_target = sorted(target_classes - source_classes)
        parts = []
        if only_source:
            parts.append(f"only the source ({source_name}) has {', '.join(only_source)}")
        if only_target:
            parts.append(f"only the target ({target_name}) has {', '.join(only_target)}")
        raise UserError(
            "source and target must have the same class names: " + "; ".join(parts)
        )
    if len(target) < 2:
        raise UserError(
            f"the target domain {target_name} holds {len(target)} image; adaptation needs a sample of "
            "the target distribution (at least 2 images, and in practice far more)"
        )
    if len(source) < 2 * len(source.class_names):
        raise UserError(
            f"the source domain {source_name} holds {len(source)} images for {len(source.class_names)} "
            "classes; it needs at least two per class (one to train on, one to validate)"
        )


def load_pair(source: str | None, target: str | None, data_dir, source_dir=None, target_dir=None,
              limit: int | None = None) -> DomainPair:
    """The two domains of a run: named collections under ``data_dir``, or two class-folder trees.

    A tree's classes are put in the other domain's label order, so label k
    means the same flower on both sides. ``limit`` (``--limit N``): at most N
    images per class in each domain.
    """
    if source_dir:
        source_folder = load_class_tree(source_dir, "source folder", limit)
        source_name = Path(source_dir).name
    else:
        source_folder = load_collection(source, data_dir, limit)
        source_name = source
    if target_dir:
        target_folder = load_class_tree(target_dir, "target folder", limit)
        target_name = Path(target_dir).name
    else:
        target_folder = load_collection(target, data_dir, limit)
        target_name = target
    if source_name == target_name and Path(source_folder.root).resolve() == Path(target_folder.root).resolve():
        raise UserError(f"source and target are the same data ({source_name}); adaptation needs two domains")
    check_pair(source_folder, target_folder, source_name, target_name)
    if target_folder.class_names != source_folder.class_names:
        order = [target_folder.class_names.index(name) for name in source_folder.class_names]
        relabel = np.argsort(order)  # old target label -> position in the source's order
        target_folder = dataclasses.replace(
            target_folder, class_names=list(source_folder.class_names),
            labels=relabel[target_folder.labels].astype(np.int32),
        )
    return DomainPair(source_folder, target_folder, source_name, target_name)
