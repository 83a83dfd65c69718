"""Each ImageDataGenerator parameter has its documented effect, and nothing else happens."""
import math

import numpy as np
import pytest

from common.augment import Augmenter


def gradient_batch(count=16, size=32):
    """Images whose pixel value encodes the column: easy to read shifts and flips from."""
    columns = np.linspace(0, 255, size, dtype=np.float32)
    image = np.repeat(np.repeat(columns[None, :, None], size, axis=0), 3, axis=2)
    return np.repeat(image[None], count, axis=0)


def test_no_parameters_is_the_identity_and_rescale_scales_last():
    images = gradient_batch()
    assert np.array_equal(np.asarray(Augmenter()(images)), images)
    scaled = np.asarray(Augmenter(rescale=1 / 255)(images))
    assert np.allclose(scaled, images / 255)
    assert np.allclose(np.asarray(Augmenter(rescale=0.5)(images, training=False)), images * 0.5)


def test_horizontal_flip_mirrors_some_images_and_leaves_the_rest():
    images = gradient_batch(count=64)
    out = np.asarray(Augmenter(horizontal_flip=True, seed=1)(images))
    flipped = [np.allclose(o, images[0][:, ::-1]) for o in out]
    same = [np.allclose(o, images[0]) for o in out]
    assert all(f or s for f, s in zip(flipped, same))
    assert 10 < sum(flipped) < 54


def test_vertical_flip_only_flips_rows():
    images = np.transpose(gradient_batch(count=32), (0, 2, 1, 3))  # value encodes the row
    out = np.asarray(Augmenter(vertical_flip=True, seed=2)(images))
    assert all(np.allclose(o, images[0]) or np.allclose(o, images[0][::-1]) for o in out)


def test_width_shift_moves_content_by_at_most_the_fraction():
    size = 40
    images = np.zeros((64, size, size, 3), np.float32)
    images[:, :, size // 2] = 255.0  # one bright column in the middle
    out = np.asarray(Augmenter(width_shift_range=0.2, fill_mode="constant", seed=3)(images))
    positions = out[:, size // 2, :, 0].argmax(axis=1)
    shifts = np.abs(positions - size // 2)
    assert shifts.max() <= 0.2 * size + 1
    assert shifts.max() >= 3  # it does move
    # rows are untouched by a width shift: the column stays vertical
    assert np.allclose(out[:, 5, :, 0].argmax(axis=1), positions)


def test_rotation_stays_within_range():
    size = 41
    images = np.zeros((32, size, size, 3), np.float32)
    images[:, size // 2, size // 2 :] = 255.0  # a horizontal ray from the centre to the right
    out = np.asarray(Augmenter(rotation_range=30, fill_mode="constant", seed=4)(images))
    angles = []
    for picture in out:
        ys, xs = np.nonzero(picture[..., 0] > 128)
        far = np.argmax((xs - size // 2) ** 2 + (ys - size // 2) ** 2)
        angles.append(math.degrees(math.atan2(size // 2 - ys[far], xs[far] - size // 2)))
    assert max(abs(a) for a in angles) <= 33
    assert max(abs(a) for a in angles) >= 5


def test_zoom_range_scales_the_content():
    size = 40
    images = np.zeros((32, size, size, 3), np.float32)
    images[:, 10:30, 10:30] = 255.0  # a 20-pixel square
    out = np.asarray(Augmenter(zoom_range=0.5, fill_mode="constant", seed=5)(images))
    widths = (out[:, size // 2, :, 0] > 128).sum(axis=1)
    # field of view scaled by 0.5 .. 1.5: the square appears 20/1.5 .. 20/0.5 wide
    assert widths.min() >= 20 / 1.5 - 2 and widths.max() <= min(size, 20 / 0.5) + 1
    assert widths.max() - widths.min() >= 4


def test_shear_range_is_in_degrees_like_image_data_generator():
    augmenter = Augmenter(shear_range=45)
    shear_layer = augmenter.layers[0]
    assert type(shear_layer).__name__ == "RandomShear"
    assert shear_layer.x_factor == pytest.approx((-1.0, 1.0))  # tan(45 degrees)
    tiny = Augmenter(shear_range=0.2).layers[0]
    assert tiny.x_factor[1] == pytest.approx(math.tan(math.radians(0.2)))


def test_brightness_range_multiplies_pixels():
    images = np.full((64, 8, 8, 3), 100.0, np.float32)
    out = np.asarray(Augmenter(brightness_range=(0.5, 1.5), seed=6)(images))
    factors = out[:, 0, 0, 0] / 100.0
    assert factors.min() >= 0.5 - 1e-4 and factors.max() <= 1.5 + 1e-4
    assert factors.std() > 0.1
    assert np.allclose(out, out[:, :1, :1, :1])  # one factor per image


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fill_mode": "mirror"},
        {"width_shift_range": 5},
        {"zoom_range": -0.1},
        {"rotation_range": -10},
        {"brightness_range": (1.5, 0.5)},
    ],
)
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        Augmenter(**kwargs)


def test_preview_writes_count_pictures_and_never_overwrites(tmp_path):
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 255, (30, 40, 3)).astype(np.uint8)
    augmenter = Augmenter(rotation_range=40, width_shift_range=0.2, rescale=1 / 255, horizontal_flip=True)
    first = augmenter.preview(picture, tmp_path, count=20)
    assert len(first) == 20 and all(p.exists() for p in first)
    before = {p: p.read_bytes() for p in first}
    second = augmenter.preview(picture, tmp_path, count=5)
    assert not set(second) & set(first)
    assert all(p.read_bytes() == data for p, data in before.items())
    assert (tmp_path / "cat_preview.png").exists() and (tmp_path / "cat_preview_1.png").exists()


def disc_pairs(count=64, size=32):
    """An off-centre bright disc on black (RGB, 0..255) and its mask (0/1), one per image."""
    rows, columns = np.mgrid[:size, :size]
    disc = (rows - 12.3) ** 2 + (columns - 18.6) ** 2 <= 7.5**2
    images = np.repeat(np.repeat((255.0 * disc)[None, :, :, None], 3, axis=3), count, axis=0).astype(np.float32)
    masks = np.repeat(disc[None].astype(np.uint8), count, axis=0)
    return images, masks


@pytest.mark.parametrize("fill_mode", ["nearest", "constant", "reflect", "wrap"])
def test_pair_moves_image_and_mask_together_and_the_mask_stays_binary(fill_mode):
    images, masks = disc_pairs()
    augmenter = Augmenter(
        rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=30, zoom_range=0.3,
        horizontal_flip=True, vertical_flip=True, fill_mode=fill_mode, seed=11,
    )
    out_images, out_masks = (np.asarray(t) for t in augmenter.pair(images, masks))
    assert out_masks.shape == masks.shape and out_masks.dtype == np.uint8
    assert set(np.unique(out_masks)) == {0, 1}
    # Where the image is bright, the mask is set: pixel for pixel, in every draw.
    assert np.array_equal(out_masks, (out_images[..., 0] >= 127.5).astype(np.uint8))
    # ... and the draws really moved them (each image its own transform).
    assert np.mean([not np.array_equal(m, masks[0]) for m in out_masks]) > 0.9
    assert len({m.tobytes() for m in out_masks}) > 0.9 * len(out_masks)


def test_pair_changes_brightness_of_the_image_only_and_keeps_several_masks_and_their_dtype():
    images, masks = disc_pairs(count=16)
    two_masks = np.stack([masks, 1 - masks], axis=-1).astype(bool)
    augmenter = Augmenter(brightness_range=(0.3, 1.7), channel_shift_range=60, rescale=1 / 255, seed=3)
    out_images, out_masks = (np.asarray(t) for t in augmenter.pair(images, two_masks))
    assert out_masks.dtype == bool and np.array_equal(out_masks, two_masks)
    assert not np.allclose(out_images, images / 255)
    assert out_images.max() <= 1.0 + 1e-6  # rescale reaches the image, not the mask


def test_pair_without_training_only_rescales_the_image():
    images, masks = disc_pairs(count=4)
    augmenter = Augmenter(rotation_range=40, zoom_range=0.3, rescale=0.5, seed=1)
    out_images, out_masks = augmenter.pair(images, masks, training=False)
    assert np.allclose(np.asarray(out_images), images * 0.5)
    assert np.array_equal(np.asarray(out_masks), masks)
