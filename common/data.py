"""Image-folder data sets: class folders in, checked file lists and tf.data pipelines out.

Every example of the chapter reads the same layout, ``root/<class>/<image>``.
The checks happen here, once, before any expensive work starts: a zero-byte
or truncated JPEG, a text file that slipped into a class folder, an empty class
or a single class should cost the user one warning or one clear error, never a
crash after an hour of feature extraction.
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from common.augment import with_seeds
from common.errors import UserError

# Formats TensorFlow's own decoders read; anything else is skipped with a warning.
DECODABLE_FORMATS = {"JPEG", "PNG", "GIF", "BMP"}
RESIZE_METHOD = "bilinear-antialias"


class UnreadableImageWarning(UserWarning):
    """Raised (as a warning) when images are skipped, so tests and users can filter it."""

    plain = True   # commands print it as "warning: ..." (common.errors.main_guard)


@dataclasses.dataclass
class ImageFolder:
    """A checked image folder: parallel lists of paths and integer labels."""

    root: Path
    class_names: list[str]
    paths: list[str]
    labels: np.ndarray
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def check_image_file(path: Path) -> str | None:
    """Return why ``path`` cannot be used as a training image, or None if it can.

    Opening the header with Pillow is cheap (no pixel decode), so every file is
    checked; a full decode is paid only for JPEGs whose end-of-image marker is
    missing, the sign of a download cut short.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        size = path.stat().st_size
    except OSError as error:
        return f"cannot read ({error.strerror})"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(path) as image:
            image_format = image.format
            if image_format not in DECODABLE_FORMATS:
                return f"unsupported image format {image_format}; convert it to JPEG or PNG"
            if image_format == "JPEG" and not _has_jpeg_end_marker(path):
                image.load()  # raises OSError on a truncated file
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, SyntaxError, ValueError) as error:
        return f"corrupt image ({error})"
    return None


def _has_jpeg_end_marker(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(0, 2)
        length = handle.tell()
        handle.seek(max(0, length - 64))
        tail = handle.read().rstrip(b"\x00\r\n ")
    return tail.endswith(b"\xff\xd9")


def load_image_folder(
    root,
    class_names: list[str] | None = None,
    min_classes: int = 2,
    description: str = "data folder",
    limit: int | None = None,
    keep=None,
) -> ImageFolder:
    """List ``root/<class>/*`` with sorted class names and checked files.

    ``class_names`` forces the label order (a validation folder must use the
    training folder's); unreadable files are skipped with one warning that
    names them all. ``limit`` keeps the first N readable images of each class
    in file-name order (every command's ``--limit N``, for a quick try), and
    ``keep(path)`` those it accepts; the rest are not even checked.
    """
    root = Path(root)
    if not root.exists():
        raise UserError(f"{description} {root} does not exist{parent_hint(root)}")
    if not root.is_dir():
        raise UserError(f"{description} {root} is not a folder")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not found and any(check_image_file(p) is None for p in sorted(root.iterdir())[:5] if p.is_file()):
        raise UserError(f"{description} {root} holds images but no class folders: it looks like one class's folder; "
                        f"point at the folder above it, {root.parent}, whose subfolders are the classes")
    if class_names is None:
        class_names = found
    else:
        missing = [name for name in class_names if name not in found]
        if missing:
            raise UserError(f"{description} {root} has no class folder for {', '.join(missing)}")
    if not class_names:
        raise UserError(
            f"{description} {root} holds no class folders; expected {root}/<class name>/<images>"
        )
    if len(class_names) < min_classes:
        raise UserError(
            f"{description} {root} holds only the class {class_names[0]!r}; "
            f"a classifier needs at least {min_classes} class folders"
        )

    from common.progress import Progress

    paths: list[str] = []
    labels: list[int] = []
    skipped: list[tuple[str, str]] = []
    listed = {name: [file for file in sorted((root / name).iterdir()) if not file.name.startswith(".")
                     and not file.is_dir() and (keep is None or keep(file))] for name in class_names}
    total = sum(min(len(files), limit or len(files)) for files in listed.values())
    with Progress(total, f"checking the {description}", unit="images") as progress:
        for label, name in enumerate(class_names):
            count = 0
            for file in listed[name]:
                if limit is not None and count >= limit:
                    break
                reason = check_image_file(file)
                progress.update(1)
                if reason is not None:
                    skipped.append((str(file), reason))
                    continue
                paths.append(str(file))
                labels.append(label)
                count += 1
            if count == 0:
                raise UserError(f"class folder {root / name} holds no readable images")
    if skipped:
        warn_skipped(skipped)
    return ImageFolder(root, list(class_names), paths, np.asarray(labels, dtype=np.int32), skipped)


def parent_hint(missing: Path) -> str:
    """Why ``data_dir/<split>`` is missing when ``data_dir`` is a folder inside the data set (``--data-dir
    .../train``, or a class folder below it): the ancestor that holds the split, to point at instead; or ''."""
    missing = Path(missing)
    if not missing.parent.is_dir():
        return ""
    for ancestor in list(missing.parent.parents)[:3]:
        if (ancestor / missing.name).is_dir():
            return (f"; {missing.parent} looks like a folder inside the data set: point --data-dir at {ancestor}, "
                    f"which holds {missing.name}/")
    return ""


def warn_skipped(skipped: list[tuple[str, str]]) -> None:
    lines = "\n".join(f"  {path}: {reason}" for path, reason in skipped[:20])
    more = f"\n  ... and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    warnings.warn(
        f"skipped {len(skipped)} unreadable image file(s):\n{lines}{more}",
        UnreadableImageWarning,
        stacklevel=3,
    )


def split_per_class(labels, validation, seed: int = 0, class_names=None) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: ``validation`` images per class (int) or a fraction (float).

    ``class_names[label]`` names a class in the error a too-small class gets.

    Returns index arrays (train, validation), each sorted, so that the same seed
    gives the same split on every machine whatever the file system's order.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train_parts, validation_parts = [], []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if isinstance(validation, float):
            # at least one: a class of a few images (--limit) still has a validation image
            count = max(1, int(round(len(members) * validation)))
        else:
            count = int(validation)
        if count < 1 or count >= len(members):
            raise UserError(
                f"class {class_names[label] if class_names is not None else label} has {len(members)} images: "
                f"too few to hold out {count} "
                "for validation and still train on at least one"
            )
        shuffled = rng.permutation(members)
        validation_parts.append(shuffled[:count])
        train_parts.append(shuffled[count:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(validation_parts))


def decode_image(path, image_size: tuple[int, int]):
    """Read, decode (JPEG/PNG/GIF/BMP, grayscale and CMYK to RGB) and resize: float32 0..255."""
    import tensorflow as tf

    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    image = tf.image.resize(image, image_size, method="bilinear", antialias=True)
    return image


def make_dataset(
    paths,
    labels=None,
    image_size: tuple[int, int] = (224, 224),
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    augment=None,
    one_hot: int | None = None,
    cache_in_memory: bool = False,
    transform=None,
    shard: tuple[int, int] | None = None,
):
    """A tf.data pipeline of (image, label) batches, raw pixels in 0..255.

    The backbone's own ``preprocess_input`` lives inside the model (see
    ``common.backbones``), so the pipeline is the same for every backbone and
    training and prediction cannot drift apart. Decoded images can be kept in
    memory across epochs; augmentation runs after that cache so every epoch
    sees fresh random transforms. ``augment`` works on whole batches;
    ``transform(image, seed)`` on each image before batching, for changes that need not
    keep every image the same size (random crops), and it runs after the cache too;
    ``seed`` is a stateless seed fixed by the image's position in the epoch
    (``common.augment.with_seeds``), so the same ``seed`` gives the same epochs.

    ``shard=(count, index, ...)`` keeps every count-th image from ``index`` on,
    for one worker of a distributed run (``common.distribute``): it is taken after
    the shuffle, which every worker draws with the same seed, and before
    decoding, so a worker reads only its own images and the workers' batches
    together are exactly the batch one device would draw. A sharded pipeline
    is not cached in memory (the cache would freeze each worker's part).
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE
    paths = [str(p) for p in paths]
    if labels is None:
        labels = np.zeros(len(paths), dtype=np.int32)
    labels = np.asarray(labels)
    dataset = tf.data.Dataset.from_tensor_slices((paths, labels))
    if shard is not None and shard[0] == 1:
        shard = None  # one worker reads everything (MirroredStrategy on one machine)
    if shard is not None:
        cache_in_memory = False
    if shuffle and not cache_in_memory:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if shard is not None:
        dataset = dataset.shard(shard[0], shard[1])

    def load(path, label):
        image = decode_image(path, image_size)
        if one_hot:
            label = tf.one_hot(label, one_hot)
        return image, label

    dataset = dataset.map(load, num_parallel_calls=autotune, deterministic=True)
    if cache_in_memory:
        dataset = dataset.cache()
        if shuffle:
            dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if transform is not None:
        dataset = with_seeds(dataset, seed, None if shard is None else shard[1]).map(
            lambda element, image_seed: (transform(element[0], image_seed), element[1]), num_parallel_calls=autotune)
    dataset = dataset.batch(batch_size)
    if augment is not None:
        dataset = augment.map(dataset, stream=None if shard is None else shard[1])
    return dataset.prefetch(autotune)
