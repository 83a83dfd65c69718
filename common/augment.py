"""The textbook's ImageDataGenerator augmentation on Keras 3, for tf.data pipelines.

``ImageDataGenerator`` is gone from Keras 3 (docs/textbook-errata.md, E16),
but the chapter's examples are written in its parameter names. ``Augmenter``
takes those names with their original meaning and transforms whole batches
inside a tf.data pipeline, so a student can read the textbook's line and this
one side by side:

    ImageDataGenerator(rotation_range=40, width_shift_range=0.2, ...)
    Augmenter(rotation_range=40, width_shift_range=0.2, ...)

Meanings kept from ImageDataGenerator (each drawn independently, per image):
- ``rotation_range``: degrees, uniform in [-r, r].
- ``width_shift_range`` / ``height_shift_range``: fraction of the width / height.
- ``shear_range``: shear *angle in degrees* (counter-clockwise). The textbook's
  ``shear_range=0.2`` is therefore a 0.2 degree shear, barely visible; this is
  what the slides' code does on Keras 2, and it is kept (the number comes from
  Keras 1, where the shear was in radians: docs/textbook-errata.md, E17).
- ``zoom_range``: z or [lower, upper]; each axis is scaled independently by a
  factor in [1 - z, 1 + z] (below 1 zooms in).
- ``horizontal_flip`` / ``vertical_flip``: each a coin toss of its own.
- ``channel_shift_range``: one value in [-c, c] per image, added to every
  channel, the result clipped to the image's own darkest and brightest values.
- ``brightness_range``: [a, b], pixel values multiplied by a factor in [a, b].
- ``rescale``: multiplies pixel values last, after every random transform.
- ``fill_mode`` / ``cval``: how pixels moved in from outside are filled.

Like ImageDataGenerator, rotation, shift, shear and zoom are composed into one
affine matrix and the image is resampled once (``keras.ops.image.affine_transform``).
Keras' RandomRotation / RandomTranslation / RandomShear / RandomZoom layers
would resample four times, and they draw from a seed state that tf.data's
parallel map reads and advances without a lock (measured on this module's
former layer version: in one epoch of 64 batches, 4 repeated another batch's
draws). The one resampling also takes less than half the CPU time of the four. Here each call takes one seed,
and every parameter is drawn from its own stream of that seed (``_STREAMS``),
so no two are correlated. A direct call takes the next seed of a
``tf.random.Generator``; in a tf.data pipeline, ``Augmenter.map`` gives each
batch the seed of its position (``tf.data.Dataset.random`` zipped beside the
batches), because a parallel map calls several batches at once and would
hand out a generator's seeds in whatever order its threads run. Either way
the same ``seed`` gives the same outputs, and every epoch new ones.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

FILL_MODES = ("nearest", "reflect", "wrap", "constant")

# One random stream per parameter, folded into each call's seed. The numbers
# are fixed, so enabling one transform never changes the draws of another.
_STREAMS = {
    "rotation": 1,
    "width_shift": 2,
    "height_shift": 3,
    "shear": 4,
    "zoom_x": 5,
    "zoom_y": 6,
    "horizontal_flip": 7,
    "vertical_flip": 8,
    "channel_shift": 9,
    "brightness": 10,
}


class Augmenter:
    """Random image transforms with ImageDataGenerator's parameter names.

    Call it on a batch of float images in 0..255, shape (batch, height, width,
    channels): ``augmenter(images, training=True)``. With ``training=False``
    only ``rescale`` is applied, as for validation data. For segmentation,
    ``augmenter.pair(images, masks)`` moves each image and its mask by the
    same draw. ``seed=None`` draws a new sequence every run. In a tf.data
    pipeline use ``augmenter.map(dataset)``: reproducible batch by batch
    although the batches are augmented in parallel.
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
        import tensorflow as tf

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
        self._generator = (
            tf.random.Generator.from_non_deterministic_state()
            if seed is None
            else tf.random.Generator.from_seed(seed)
        )

    @property
    def _moves_pixels(self) -> bool:
        return bool(
            self.rotation_range or self.width_shift_range or self.height_shift_range
            or self.shear_range or self.zoom_range != (1.0, 1.0)
        )

    def __call__(self, images, training: bool = True, seed=None):
        """``seed``: an optional stateless seed (two integers) for this batch's draws."""
        import tensorflow as tf

        images = _batch_of_images(images)
        if training:
            draws = self._draw(tf.shape(images)[0], seed)
            images = self._move(images, draws, self.cval)
            images = self._photometric(images, draws)
        if self.rescale:
            images = images * self.rescale
        return images

    def pair(self, images, masks, training: bool = True, seed=None):
        """Augment images and their segmentation masks with the same geometric transform.

        ``masks`` hold 0/1 values, shape (batch, height, width) or (batch,
        height, width, k) for k binary masks (one-hot encode a label map
        first). Each image and its mask are moved by one draw of rotation,
        shift, shear, zoom and flips; brightness, channel shift and
        ``rescale`` change the image only. The mask is resampled exactly as
        the image (bilinear, same fill mode; a constant fill is background)
        and thresholded at one half, so it stays binary and its boundary is
        where the image's own boundary lands, not a nearest-neighbour
        staircase. Returns ``(images, masks)``, the masks in the dtype they
        came in. ``seed`` as for a plain call.
        """
        import tensorflow as tf

        images = _batch_of_images(images)
        masks = tf.convert_to_tensor(masks)
        mask_dtype = masks.dtype
        squeeze = masks.shape.rank == 3
        float_masks = tf.cast(masks[..., None] if squeeze else masks, tf.float32)
        if training:
            draws = self._draw(tf.shape(images)[0], seed)
            images = self._photometric(self._move(images, draws, self.cval), draws)
            float_masks = tf.cast(self._move(float_masks, draws, 0.0) >= 0.5, tf.float32)
        if self.rescale:
            images = images * self.rescale
        masks = tf.cast(float_masks[..., 0] if squeeze else float_masks, mask_dtype)
        return images, masks

    def map(self, dataset, masks: bool = False, stream: int | None = None):
        """Augment every batch of ``dataset`` in a parallel map, each batch from the seed of its position.

        The elements are ``(images, labels...)``, or ``(images, masks)`` with
        ``masks=True`` (then ``pair`` moves both). The seeds come from
        ``tf.data.Dataset.random(seed)``, new at each iteration over the
        dataset (each epoch), so the same seed gives the same epochs whatever
        order the map's threads run in. ``stream`` (a worker's index in a
        distributed run) is folded into every seed, so that workers given the
        same seed still draw different transforms for their parts of a batch.
        """
        import tensorflow as tf

        if masks:
            def augment(element, seed):
                return self.pair(*element, training=True, seed=seed)
        else:
            def augment(element, seed):
                return (self(element[0], training=True, seed=seed), *element[1:])
        return with_seeds(dataset, self.seed, stream).map(augment, num_parallel_calls=tf.data.AUTOTUNE)

    def _draw(self, batch, seed=None) -> dict:
        """Every enabled parameter for ``batch`` images, each from its own stream of one seed
        (by default the generator's next)."""
        import tensorflow as tf

        if seed is None:
            seed = self._generator.make_seeds(1)[:, 0]

        def uniform(name, low, high):
            stream = tf.random.experimental.stateless_fold_in(seed, _STREAMS[name])
            return tf.random.stateless_uniform([batch], stream, minval=low, maxval=high)

        draws = {}
        if self.rotation_range:
            draws["rotation"] = uniform("rotation", -self.rotation_range, self.rotation_range)
        if self.width_shift_range:
            draws["width_shift"] = uniform("width_shift", -self.width_shift_range, self.width_shift_range)
        if self.height_shift_range:
            draws["height_shift"] = uniform("height_shift", -self.height_shift_range, self.height_shift_range)
        if self.shear_range:
            draws["shear"] = uniform("shear", -self.shear_range, self.shear_range)
        if self.zoom_range != (1.0, 1.0):
            draws["zoom_x"] = uniform("zoom_x", *self.zoom_range)
            draws["zoom_y"] = uniform("zoom_y", *self.zoom_range)
        if self.horizontal_flip:
            draws["horizontal_flip"] = uniform("horizontal_flip", 0.0, 1.0) < 0.5
        if self.vertical_flip:
            draws["vertical_flip"] = uniform("vertical_flip", 0.0, 1.0) < 0.5
        if self.channel_shift_range:
            draws["channel_shift"] = uniform("channel_shift", -self.channel_shift_range, self.channel_shift_range)
        if self.brightness_range is not None:
            draws["brightness"] = uniform("brightness", *self.brightness_range)
        return draws

    def _move(self, images, draws: dict, fill_value: float):
        """The geometric part: one affine resampling, then the flips."""
        import keras
        import tensorflow as tf

        if self._moves_pixels:
            images = keras.ops.image.affine_transform(
                images, _affine_rows(draws, tf.shape(images)), interpolation="bilinear",
                fill_mode=self.fill_mode, fill_value=fill_value,
            )
        for name, axis in (("horizontal_flip", 2), ("vertical_flip", 1)):
            if name in draws:
                images = tf.where(draws[name][:, None, None, None], tf.reverse(images, [axis]), images)
        return images

    def _photometric(self, images, draws: dict):
        """Channel shift, then brightness, in ImageDataGenerator's order; images only, never masks."""
        import tensorflow as tf

        if "channel_shift" in draws:
            # ImageDataGenerator (Keras 2's apply_channel_shift) draws one
            # intensity per image, adds it to every channel and clips to the
            # image's own min and max: a brightness offset, not a colour cast.
            # This module used to draw three shifts per image (one per
            # channel, a colour cast) and clip to 0..255; the textbook's
            # parameter means ImageDataGenerator's, so that is what is done now.
            low = tf.reduce_min(images, axis=[1, 2, 3], keepdims=True)
            high = tf.reduce_max(images, axis=[1, 2, 3], keepdims=True)
            images = tf.clip_by_value(images + draws["channel_shift"][:, None, None, None], low, high)
        if "brightness" in draws:
            # ImageDataGenerator multiplies through an 8-bit PIL image, so its
            # result is also rounded to whole grey levels; kept as floats here.
            images = tf.clip_by_value(images * draws["brightness"][:, None, None, None], 0.0, 255.0)
        return images

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


def _batch_of_images(images):
    import tensorflow as tf

    images = tf.convert_to_tensor(images, dtype=tf.float32)
    if images.shape.rank != 4:
        raise ValueError(f"Augmenter takes a batch (batch, height, width, channels), not shape {images.shape}")
    return images


def _affine_rows(draws: dict, shape):
    """Per image, the 8 numbers ``affine_transform`` takes (output pixel -> input pixel).

    ImageDataGenerator's composition: rotation @ shift @ shear @ zoom, about
    the image centre, in (x, y) = (column, row) coordinates. Zoom below 1
    samples a smaller patch, so it zooms in.
    """
    import tensorflow as tf

    batch, height, width = shape[0], tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    zeros, ones = tf.zeros([batch]), tf.ones([batch])
    theta = tf.experimental.numpy.deg2rad(draws.get("rotation", zeros))
    shear = tf.experimental.numpy.deg2rad(draws.get("shear", zeros))
    zoom_x, zoom_y = draws.get("zoom_x", ones), draws.get("zoom_y", ones)
    shift_x, shift_y = draws.get("width_shift", zeros) * width, draws.get("height_shift", zeros) * height
    cos, sin = tf.cos(theta), tf.sin(theta)
    # rotation [[cos, -sin], [sin, cos]] times shear-and-zoom [[zx, -sin(s) zy], [0, cos(s) zy]]
    a00, a01 = cos * zoom_x, -zoom_y * tf.sin(theta + shear)
    a10, a11 = sin * zoom_x, zoom_y * tf.cos(theta + shear)
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2
    # input = A (output - centre) + rotation @ shift + centre
    offset_x = centre_x - a00 * centre_x - a01 * centre_y + cos * shift_x - sin * shift_y
    offset_y = centre_y - a10 * centre_x - a11 * centre_y + sin * shift_x + cos * shift_y
    return tf.stack([a00, a01, offset_x, a10, a11, offset_y, zeros, zeros], axis=1)


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
    for axis, picture, title in zip(axes.flat, pictures, ["original"] + [str(i) for i in range(len(augmented))], strict=False):
        axis.imshow(picture)
        axis.set_title(title, fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def with_seeds(dataset, seed: int | None, stream: int | None = None):
    """Each element of ``dataset`` beside a stateless seed (two integers) fixed by its position, new at every pass.

    For random work in a parallel ``map``: stateful random ops there draw in
    whatever order the threads run, so the same seed would not give the same
    epoch twice; a seed zipped beside each element does. ``stream`` (a
    worker's index) is folded into every seed, so that workers sharing
    ``seed`` draw differently.
    """
    import tensorflow as tf

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
    if stream is not None:
        seeds = seeds.map(lambda pair: tf.random.experimental.stateless_fold_in(pair, stream))
    return tf.data.Dataset.zip((dataset, seeds))


def random_crop_flip_turn(image, size: int, min_area: float = 0.5, seed=None):
    """A random crop of one image, resized to ``size`` x ``size``, randomly mirrored and turned.

    The crop keeps ``min_area``..1 of the area with an aspect ratio (width
    over height, in pixels) in 3/4..4/3: Inception's "random resized crop",
    sampled by ``tf.image.stateless_sample_distorted_bounding_box``. It redraws
    a crop that does not fit, so large areas are a little rarer than in a
    uniform draw: on a square image 0.66 of the area on average at
    ``min_area=0.5``, against 0.71 for this function's former hand-written
    sampler. The mirror and the multiple of 90 degrees cover what the
    textbook's offline flipped and rotated copies show. Drawn anew every step,
    they keep a long fine-tune from memorising a fixed set of views.

    ``image`` is one float image (height, width, channels). ``seed`` is an
    optional stateless seed (two integers) for reproducible draws; by default
    each call takes a fresh one. The crop, the mirror and the turn each use
    their own stream of it.
    """
    import tensorflow as tf

    if seed is None:
        seed = tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
    streams = [tf.random.experimental.stateless_fold_in(seed, stream) for stream in (1, 2, 3)]
    begin, crop_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=streams[0],
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(min_area, 1.0),
        max_attempts=100,
    )
    image = tf.slice(image, begin, crop_size)
    image = tf.image.resize(image, (size, size), method="bilinear", antialias=True)
    mirror = tf.random.stateless_uniform([], streams[1]) < 0.5
    image = tf.cond(mirror, lambda: tf.reverse(image, [1]), lambda: image)
    return tf.image.rot90(image, tf.random.stateless_uniform([], streams[2], 0, 4, tf.int32))
