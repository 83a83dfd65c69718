"""The training windows as tf.data batches: endless, shuffled, each image moved together with its mask.

``segmentation.data`` reads and checks the image / mask pairs once, as
NumPy arrays; this is the step from those arrays to what the training steps
read: batches of pixels (0..255, three equal channels, as the ImageNet
backbones expect) and masks (0/1), resized to the network's input, with one
draw of rotation, shift, zoom and flip applied to an image and its mask alike.
TensorFlow is imported only when a dataset is built.
"""
from __future__ import annotations

from common.errors import UserError


def make_augmenter(rotation_range: float, shift_range: float, zoom_range: float, flip: bool, seed: int):
    """ImageDataGenerator's parameter names (rotation, shift, zoom, flip), for image-mask pairs.

    12.5.2 names no augmentation, so the ranges are this project's (``--rotation-range`` ...).
    """
    from common.augment import Augmenter

    try:
        return Augmenter(
            rotation_range=rotation_range, width_shift_range=shift_range, height_shift_range=shift_range,
            zoom_range=zoom_range, horizontal_flip=flip, fill_mode="nearest", seed=seed,
        )
    except ValueError as error:
        raise UserError(f"augmentation: {error}") from None


def training_dataset(images, masks, image_size: int, batch_size: int, seed: int, augmenter=None):
    """Endless shuffled batches of (pixels 0..255 with 3 channels, mask 0/1), augmented together.

    ``augmenter`` is a ``common.augment.Augmenter``: its ``pair`` moves each
    window and its mask by one draw of rotation, shift, zoom and flip.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE

    def to_float(image, mask):
        image = tf.cast(image[..., None], tf.float32)
        mask = tf.cast(mask[..., None], tf.float32)
        if image.shape[1] != image_size:
            image = tf.image.resize(image, (image_size, image_size), method="bilinear")
            mask = tf.cast(tf.image.resize(mask, (image_size, image_size), method="bilinear") >= 0.5, tf.float32)
        return image, mask

    def to_rgb(image, mask):
        return tf.repeat(image, 3, axis=-1), mask

    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=True).map(to_float, num_parallel_calls=autotune)
    if augmenter is not None:
        dataset = augmenter.map(dataset, masks=True)
    return dataset.map(to_rgb, num_parallel_calls=autotune).prefetch(autotune)
