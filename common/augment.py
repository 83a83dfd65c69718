"""The textbook's ImageDataGenerator augmentation, rebuilt on Keras 3 preprocessing layers.

``ImageDataGenerator`` is gone from Keras 3, but the chapter's examples are
written in its parameter names. ``Augmenter`` takes those names with their
original meaning and runs the equivalent preprocessing layers on batches inside
a tf.data pipeline, so a student can read the textbook's line and this one side
by side:

    ImageDataGenerator(rotation_range=40, width_shift_range=0.2, ...)
    Augmenter(rotation_range=40, width_shift_range=0.2, ...)

Meanings kept from ImageDataGenerator:
- ``rotation_range``: degrees, uniform in [-r, r].
- ``width_shift_range`` / ``height_shift_range``: fraction of the width / height.
- ``shear_range``: shear *angle in degrees* (counter-clockwise). The textbook's
  ``shear_range=0.2`` is therefore a 0.2 degree shear, barely visible; this is
  what the original code did, and it is kept.
- ``zoom_range``: z or [lower, upper]; each axis is scaled independently by a
  factor in [1 - z, 1 + z] (below 1 zooms in).
- ``brightness_range``: [a, b], pixel values multiplied by a factor in [a, b].
- ``channel_shift_range``: a value in [-c, c] added to each channel.
- ``rescale``: multiplies pixel values last, after every random transform.
- ``fill_mode`` / ``cval``: how pixels moved in from outside are filled.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

FILL_MODES = ("nearest", "reflect", "wrap", "constant")


class Augmenter:
    """Random image transforms with ImageDataGenerator's parameter names.

    Call it on a batch of float images in 0..255, shape (batch, height, width, 3):
    ``augmenter(images, training=True)``. With ``training=False`` only
    ``rescale`` is applied, as for validation data. For segmentation,
    ``augmenter.pair(images, masks)`` moves each image and its mask by the
    same draw.
    """

    def __init__(
        self,
        rotation_range: float = 0.0,
        width_shift_range: float = 0.0,
        height_shift_range: float = 0.0,
        shear_range: float = 0.0,
        zoom_range=0.0,
        horizontal_flip: bool = False,
        vertical_flip: bool = False,
        fill_mode: str = "nearest",
        cval: float = 0.0,
        brightness_range=None,
        channel_shift_range: float = 0.0,
        rescale: float | None = None,
        seed: int | None = None,
    ):
        if fill_mode not in FILL_MODES:
            raise ValueError(f"fill_mode must be one of {', '.join(FILL_MODES)}, not {fill_mode!r}")
        for name, value in (("width_shift_range", width_shift_range), ("height_shift_range", height_shift_range)):
            if not 0 <= value < 1:
                raise ValueError(
                    f"{name}={value}: give the shift as a fraction of the image size, in [0, 1)"
                )
        if rotation_range < 0 or shear_range < 0 or channel_shift_range < 0:
            raise ValueError("rotation_range, shear_range and channel_shift_range must be >= 0")
        if not 0 <= shear_range < 90:
            raise ValueError(f"shear_range={shear_range} is an angle in degrees and must be below 90")
        if np.isscalar(zoom_range):
            if not 0 <= zoom_range < 1:
                raise ValueError(f"zoom_range={zoom_range} must be in [0, 1) or a [lower, upper] pair")
            zoom_range = (1.0 - zoom_range, 1.0 + zoom_range)
        zoom_range = tuple(float(z) for z in zoom_range)
        if len(zoom_range) != 2 or not 0 < zoom_range[0] <= zoom_range[1] <= 2:
            raise ValueError(f"zoom_range {zoom_range} must be a pair 0 < lower <= upper <= 2")
        if brightness_range is not None:
            brightness_range = tuple(float(b) for b in brightness_range)
            if len(brightness_range) != 2 or not 0 <= brightness_range[0] <= brightness_range[1]:
                raise ValueError(f"brightness_range {brightness_range} must be a pair 0 <= a <= b")

        self.rotation_range = rotation_range
        self.width_shift_range = width_shift_range
        self.height_shift_range = height_shift_range
        self.shear_range = shear_range
        self.zoom_range = zoom_range
        self.horizontal_flip = horizontal_flip
        self.vertical_flip = vertical_flip
        self.fill_mode = fill_mode
        self.cval = cval
        self.brightness_range = brightness_range
        self.channel_shift_range = channel_shift_range
        self.rescale = rescale
        self.seed = seed
        self.layers = self._build_layers()

    def _build_layers(self) -> list:
        import keras

        layers = []
        seed = self.seed
        fill = {"fill_mode": self.fill_mode, "fill_value": self.cval, "interpolation": "bilinear"}
        if self.horizontal_flip or self.vertical_flip:
            mode = {(True, False): "horizontal", (False, True): "vertical", (True, True): "horizontal_and_vertical"}
            layers.append(keras.layers.RandomFlip(mode[(self.horizontal_flip, self.vertical_flip)], seed=seed))
        if self.rotation_range:
            layers.append(keras.layers.RandomRotation(self.rotation_range / 360.0, seed=seed, **fill))
        if self.width_shift_range or self.height_shift_range:
            layers.append(
                keras.layers.RandomTranslation(
                    self.height_shift_range, self.width_shift_range, seed=seed, **fill
                )
            )
        if self.shear_range:
            # Degrees (ImageDataGenerator) to the shear coefficient RandomShear samples.
            layers.append(
                keras.layers.RandomShear(
                    x_factor=math.tan(math.radians(self.shear_range)), seed=seed, **fill
                )
            )
        if self.zoom_range != (1.0, 1.0):
            # RandomZoom's factor f scales the field of view by (1 + f): the
            # textbook's zoom factor z maps to f = z - 1, axis by axis.
            low, high = self.zoom_range[0] - 1.0, self.zoom_range[1] - 1.0
            layers.append(
                keras.layers.RandomZoom(
                    height_factor=(low, high), width_factor=(low, high), seed=seed, **fill
                )
            )
        return layers

    @property
    def is_identity(self) -> bool:
        return not self.layers and self.brightness_range is None and not self.channel_shift_range

    def __call__(self, images, training: bool = True):
        import tensorflow as tf

        images = tf.convert_to_tensor(images, dtype=tf.float32)
        if training:
            for layer in self.layers:
                images = layer(images, training=True)
            images = self._photometric(images)
        if self.rescale:
            images = images * self.rescale
        return images

    def _photometric(self, images):
        import tensorflow as tf

        batch = tf.shape(images)[0]
        if self.brightness_range is not None:
            low, high = self.brightness_range
            factors = tf.random.uniform([batch, 1, 1, 1], low, high, seed=self.seed)
            images = tf.clip_by_value(images * factors, 0.0, 255.0)
        if self.channel_shift_range:
            shifts = tf.random.uniform(
                [batch, 1, 1, 3], -self.channel_shift_range, self.channel_shift_range, seed=self.seed
            )
            images = tf.clip_by_value(images + shifts, 0.0, 255.0)
        return images

    def pair(self, images, masks, training: bool = True):
        """Augment images and their segmentation masks with the same geometric transform.

        ``masks`` hold 0/1 values, shape (batch, height, width) or (batch,
        height, width, k) for k binary masks (one-hot encode a label map
        first). Each image and its mask are moved by one draw of rotation,
        shift, shear, zoom and flips; brightness, channel shift and
        ``rescale`` change the image only. The mask is resampled exactly as
        the image (bilinear, same fill) and thresholded at one half, so it
        stays binary and its boundary is where the image's own boundary lands,
        not a nearest-neighbour staircase. Returns ``(images, masks)``, the
        masks in the dtype they came in.
        """
        import tensorflow as tf

        images = tf.convert_to_tensor(images, dtype=tf.float32)
        masks = tf.convert_to_tensor(masks)
        mask_dtype = masks.dtype
        squeeze = masks.shape.rank == 3
        float_masks = tf.cast(masks[..., None] if squeeze else masks, tf.float32)
        if training and self.layers:
            # One call of each layer draws one transform per batch element and
            # applies it to every channel, so riding along as extra channels
            # moves a mask exactly as its image. Stored as cval + mask, a
            # constant fill (cval) reads back as background.
            channels = tf.shape(images)[-1]
            stacked = tf.concat([images, float_masks + self.cval], axis=-1)
            for layer in self.layers:
                stacked = layer(stacked, training=True)
            images, float_masks = stacked[..., :channels], stacked[..., channels:] - self.cval
            float_masks = tf.cast(float_masks >= 0.5, tf.float32)
        images = self._photometric(images) if training else images
        if self.rescale:
            images = images * self.rescale
        masks = tf.cast(float_masks[..., 0] if squeeze else float_masks, mask_dtype)
        return images, masks

    def get_config(self) -> dict:
        return {
            "rotation_range": self.rotation_range,
            "width_shift_range": self.width_shift_range,
            "height_shift_range": self.height_shift_range,
            "shear_range": self.shear_range,
            "zoom_range": list(self.zoom_range),
            "horizontal_flip": self.horizontal_flip,
            "vertical_flip": self.vertical_flip,
            "fill_mode": self.fill_mode,
            "cval": self.cval,
            "brightness_range": list(self.brightness_range) if self.brightness_range else None,
            "channel_shift_range": self.channel_shift_range,
            "rescale": self.rescale,
        }

    def preview(self, image, out_dir, count: int = 20, prefix: str = "cat") -> list[Path]:
        """Write ``count`` augmented versions of one image, as ``datagen.flow(save_to_dir=...)`` did.

        ``image`` is a path or an array (height, width, 3) in 0..255. Existing
        files are never overwritten: numbering continues after them. A contact
        sheet ``<prefix>_preview.png`` shows all of them at a glance.
        """
        from PIL import Image

        if isinstance(image, (str, Path)):
            with Image.open(image) as opened:
                array = np.asarray(opened.convert("RGB"), dtype=np.float32)
        else:
            array = np.asarray(image, dtype=np.float32)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        batch = np.repeat(array[None], count, axis=0)
        augmented = np.asarray(self(batch, training=True))
        if self.rescale:
            augmented = augmented / self.rescale
        augmented = np.clip(augmented, 0, 255).astype(np.uint8)

        written = []
        index = 0
        for picture in augmented:
            while (out_dir / f"{prefix}_{index:03d}.jpeg").exists():
                index += 1
            target = out_dir / f"{prefix}_{index:03d}.jpeg"
            Image.fromarray(picture).save(target, quality=95)
            written.append(target)
        _contact_sheet(array.astype(np.uint8), augmented, _free_name(out_dir / f"{prefix}_preview.png"))
        return written


def _free_name(path: Path) -> Path:
    candidate, number = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}_{number}{path.suffix}")
        number += 1
    return candidate


def _contact_sheet(original, augmented, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pictures = [original, *augmented]
    columns = min(7, len(pictures))
    rows = math.ceil(len(pictures) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(2 * columns, 2 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, picture, title in zip(axes.flat, pictures, ["original"] + [str(i) for i in range(len(augmented))]):
        axis.imshow(picture)
        axis.set_title(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def random_crop_flip_turn(image, size: int, min_area: float = 0.5):
    """A random crop of one image, resized to ``size`` x ``size``, randomly mirrored and turned.

    The crop keeps ``min_area``..1 of the area with an aspect ratio in
    3/4..4/3 (Inception's "random resized crop"); the mirror and the multiple
    of 90 degrees cover what the textbook's offline flipped and rotated copies
    show. Drawn anew every step, they keep a long fine-tune from memorising a
    fixed set of views. ``image`` is one float image (height, width, 3).
    """
    import tensorflow as tf

    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    area = tf.random.uniform([], min_area, 1.0)
    ratio = tf.exp(tf.random.uniform([], math.log(3 / 4), math.log(4 / 3)))
    height = tf.cast(tf.minimum(shape[0], tf.round(shape[0] * tf.sqrt(area / ratio))), tf.int32)
    width = tf.cast(tf.minimum(shape[1], tf.round(shape[1] * tf.sqrt(area * ratio))), tf.int32)
    image = tf.image.random_crop(image, tf.stack([height, width, 3]))
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    image = tf.image.random_flip_left_right(image)
    return tf.image.rot90(image, tf.random.uniform([], 0, 4, tf.int32))
