"""Each ImageDataGenerator parameter has its documented effect, and nothing else happens."""
import math

import numpy as np
import pytest

from common.augment import Augmenter, random_crop_flip_turn


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
    assert all(f or s for f, s in zip(flipped, same, strict=False))
    assert 10 < sum(flipped) < 54


def test_vertical_flip_flips_the_rows_of_some_images_and_leaves_the_rest():
    rows, columns = np.meshgrid(np.arange(32.0), np.arange(32.0), indexing="ij")
    image = np.repeat((rows * 4 + columns / 8)[..., None], 3, axis=-1).astype("float32")  # varies along both axes
    images = np.repeat(image[None], 32, axis=0)
    out = np.asarray(Augmenter(vertical_flip=True, seed=2)(images))
    flipped = [np.allclose(o, image[::-1]) for o in out]       # a column flip would match neither
    same = [np.allclose(o, image) for o in out]
    assert all(f or s for f, s in zip(flipped, same, strict=False))
    assert 5 < sum(flipped) < 27


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


# ---- Reading every transform's parameters back from the output alone ------------------
#
# Three soft dots, one per channel, on a grey background that differs per
# channel. Where the dots land gives the whole affine map (three points fix
# it); its QR factors give rotation, shear and the two zooms, what is left the
# shift, and its handedness the flips. The background of two channels gives
# the brightness factor and the channel shift (one multiplies, the other adds).
MARKER_SIZE = 40
MARKER_CENTRE = (MARKER_SIZE - 1) / 2
MARKER_BACKGROUND = np.array([20.0, 90.0, 130.0])
MARKER_DOTS = np.array([[-7.0, -5.0], [7.0, -5.0], [0.0, 8.0]]) + MARKER_CENTRE  # (x, y) per channel
EVERY_TRANSFORM = dict(
    rotation_range=30, width_shift_range=0.1, height_shift_range=0.1, shear_range=15, zoom_range=0.2,
    horizontal_flip=True, vertical_flip=True, brightness_range=(0.6, 1.4), channel_shift_range=30,
)


def marker_images(count):
    rows, columns = np.mgrid[:MARKER_SIZE, :MARKER_SIZE].astype(np.float64)
    image = np.empty((MARKER_SIZE, MARKER_SIZE, 3))
    for channel, (x, y) in enumerate(MARKER_DOTS):
        dot = np.exp(-((columns - x) ** 2 + (rows - y) ** 2) / (2 * 1.3**2))
        image[..., channel] = MARKER_BACKGROUND[channel] + 80.0 * dot
    return np.repeat(image[None].astype(np.float32), count, axis=0)


def read_parameters(out) -> dict:
    """Per image: rotation and shear in degrees, shifts in pixels, zoom factors, flips, brightness, channel shift."""
    out = np.asarray(out, np.float64)
    count = len(out)
    rows, columns = np.mgrid[:MARKER_SIZE, :MARKER_SIZE].astype(np.float64)
    background = np.median(out.reshape(count, -1, 3), axis=1)
    brightness = (background[:, 2] - background[:, 1]) / (MARKER_BACKGROUND[2] - MARKER_BACKGROUND[1])
    landed = np.empty((count, 3, 2))
    for channel in range(3):
        weight = np.clip(out[..., channel] - background[:, channel, None, None], 0, None)
        weight = np.where(weight > 0.25 * weight.max(axis=(1, 2), keepdims=True), weight, 0)
        landed[:, channel, 0] = (weight * columns).sum(axis=(1, 2)) / weight.sum(axis=(1, 2))
        landed[:, channel, 1] = (weight * rows).sum(axis=(1, 2)) / weight.sum(axis=(1, 2))
    names = ("rotation", "width_shift", "height_shift", "shear", "zoom_x", "zoom_y", "horizontal_flip", "vertical_flip")
    found = {name: np.empty(count) for name in names}
    source = np.c_[MARKER_DOTS - MARKER_CENTRE, np.ones(3)]
    for i in range(count):
        forward = np.eye(3)  # input -> output, about the centre
        forward[:2] = np.linalg.solve(source, landed[i] - MARKER_CENTRE).T
        candidates = []
        for flip_x in (1, -1):
            for flip_y in (1, -1):
                matrix = np.linalg.inv(forward) @ np.diag([flip_x, flip_y, 1.0])  # output -> input, unflipped
                if np.linalg.det(matrix[:2, :2]) <= 0:
                    continue
                rotation, upper = np.linalg.qr(matrix[:2, :2])
                signs = np.sign(np.diag(upper))
                rotation, upper = rotation * signs, signs[:, None] * upper
                angle = math.degrees(math.atan2(rotation[1, 0], rotation[0, 0]))
                candidates.append((abs(angle), angle, rotation.T @ matrix[:2, 2], upper, flip_x, flip_y))
        _, angle, shift, upper, flip_x, flip_y = min(candidates, key=lambda c: c[0])  # |rotation| < 90
        found["rotation"][i] = angle
        found["width_shift"][i], found["height_shift"][i] = shift
        found["shear"][i] = math.degrees(math.atan2(-upper[0, 1], upper[1, 1]))
        found["zoom_x"][i], found["zoom_y"][i] = upper[0, 0], math.hypot(upper[0, 1], upper[1, 1])
        found["horizontal_flip"][i], found["vertical_flip"][i] = flip_x < 0, flip_y < 0
    found["brightness"] = brightness
    found["channel_shift"] = background[:, 1] / brightness - MARKER_BACKGROUND[1]
    return found


def largest_correlation(found: dict):
    names = list(found)
    correlation = np.corrcoef(np.stack([found[name] for name in names]))
    np.fill_diagonal(correlation, 0)
    first, second = np.unravel_index(np.abs(correlation).argmax(), correlation.shape)
    return abs(correlation[first, second]), names[first], names[second]


def test_every_parameter_read_back_spans_its_documented_range():
    found = read_parameters(Augmenter(**EVERY_TRANSFORM, seed=2)(marker_images(1000)))
    size = MARKER_SIZE
    expected = {  # ImageDataGenerator's meaning of each parameter, in the units read back
        "rotation": (-30, 30, 1.5), "shear": (-15, 15, 2.0),
        "width_shift": (-0.1 * size, 0.1 * size, 0.2), "height_shift": (-0.1 * size, 0.1 * size, 0.2),
        "zoom_x": (0.8, 1.2, 0.02), "zoom_y": (0.8, 1.2, 0.02),
        "brightness": (0.6, 1.4, 0.01), "channel_shift": (-30, 30, 0.5),
    }
    for name, (low, high, tolerance) in expected.items():
        values = found[name]
        assert low - tolerance <= values.min() <= low + 0.1 * (high - low), name
        assert high - 0.1 * (high - low) <= values.max() <= high + tolerance, name
    for name in ("horizontal_flip", "vertical_flip"):
        assert 0.44 < found[name].mean() < 0.56, name


@pytest.mark.parametrize("seed", [1, 7, 123, None])
def test_every_pair_of_transforms_is_drawn_independently(seed):
    """No two parameters move together: |r| < 0.1 over 1000 images, for every pair of the ten.

    Independent draws give r with a spread of 1/sqrt(1000) = 0.03, so 0.1 is
    three of those; the fixed seeds make the check exact (largest |r| 0.06,
    0.06 and 0.09 on TF 2.21). One seed for every layer, as this module once
    had, gave rotation against vertical zoom r = 0.999, and both flips r = 1.
    ``seed=None`` cannot be fixed, so it gets 0.15 (about five spreads).
    """
    found = read_parameters(Augmenter(**EVERY_TRANSFORM, seed=seed)(marker_images(1000)))
    largest, first, second = largest_correlation(found)
    assert largest < (0.1 if seed is not None else 0.15), f"{first} and {second}: |r| = {largest:.3f}"


def test_the_textbook_rotation_and_zoom_are_independent():
    """The issue's case: rotation_range=20 with zoom_range=0.2, the two zoom axes included."""
    for seed in (1, 7, 123):
        found = read_parameters(Augmenter(rotation_range=20, zoom_range=0.2, seed=seed)(marker_images(1000)))
        found = {name: found[name] for name in ("rotation", "zoom_x", "zoom_y")}
        largest, first, second = largest_correlation(found)
        assert largest < 0.1, f"seed {seed}: {first} and {second}: |r| = {largest:.3f}"


def test_same_seed_same_output_other_seed_other_output():
    images = marker_images(8)
    first, again = Augmenter(**EVERY_TRANSFORM, seed=5), Augmenter(**EVERY_TRANSFORM, seed=5)
    one, two = np.asarray(first(images)), np.asarray(first(images))
    assert np.array_equal(one, np.asarray(again(images))) and np.array_equal(two, np.asarray(again(images)))
    assert not np.allclose(one, two)  # each call draws anew
    assert not np.allclose(one, np.asarray(Augmenter(**EVERY_TRANSFORM, seed=6)(images)))
    unseeded = [np.asarray(Augmenter(**EVERY_TRANSFORM)(images)) for _ in range(2)]
    assert not np.allclose(*unseeded)


def test_batches_and_epochs_differ_inside_a_parallel_tf_data_pipeline(tmp_path):
    """32 copies of one picture, 2 per batch, two epochs: all 64 outputs differ.

    Every difference comes from the draws. Keras' preprocessing layers, which
    this module used before, advance their seed in a parallel map without a
    lock, so some batches repeated another's draws (4 of 64 in one epoch, measured).
    """
    from PIL import Image

    from common.data import make_dataset

    Image.fromarray(marker_images(1)[0].astype(np.uint8)).save(tmp_path / "marker.png")
    paths = [tmp_path / "marker.png"] * 32
    augmenter = Augmenter(rotation_range=30, zoom_range=0.2, horizontal_flip=True, seed=4)
    dataset = make_dataset(paths, image_size=(MARKER_SIZE, MARKER_SIZE), batch_size=2, augment=augmenter)
    epochs = [[images.numpy() for images, _ in dataset] for _ in range(2)]
    pictures = [picture.tobytes() for epoch in epochs for batch in epoch for picture in batch]
    assert len(pictures) == 64 and len(set(pictures)) == 64


def test_same_seed_gives_the_same_epochs_inside_a_parallel_tf_data_pipeline(tmp_path):
    """Two pipelines with the same seed give the same batches, epoch after epoch.

    A parallel map runs several batches at once; when each batch took the next
    seed of one stateful generator, which batch got which seed depended on the
    threads (measured: a seeded segmentation run's first losses differed from
    one run to the next in one process).
    """
    from PIL import Image

    from common.data import make_dataset

    Image.fromarray(marker_images(1)[0].astype(np.uint8)).save(tmp_path / "marker.png")
    paths = [tmp_path / "marker.png"] * 64

    def two_epochs():
        augmenter = Augmenter(rotation_range=30, zoom_range=0.2, horizontal_flip=True, seed=4)
        dataset = make_dataset(paths, image_size=(MARKER_SIZE, MARKER_SIZE), batch_size=2, augment=augmenter)
        return [np.concatenate([images.numpy() for images, _ in dataset]) for _ in range(2)]

    runs = [two_epochs() for _ in range(3)]
    for other in runs[1:]:
        for epoch, again in zip(runs[0], other, strict=False):
            np.testing.assert_array_equal(again, epoch)
    assert not np.allclose(runs[0][0], runs[0][1])  # the second epoch draws anew


def test_per_image_transforms_in_a_pipeline_repeat_with_the_seed_and_change_each_epoch(tmp_path):
    """make_dataset's ``transform`` (flowers' random crops) gets a seed per image: same seed, same epochs."""
    from PIL import Image

    from common.data import make_dataset

    Image.fromarray(marker_images(1)[0].astype(np.uint8)).save(tmp_path / "marker.png")
    paths = [tmp_path / "marker.png"] * 48

    def two_epochs(seed):
        dataset = make_dataset(paths, image_size=(MARKER_SIZE, MARKER_SIZE), batch_size=4, seed=seed,
                               transform=lambda image, image_seed: random_crop_flip_turn(image, 32, seed=image_seed))
        return [np.concatenate([images.numpy() for images, _ in dataset]) for _ in range(2)]

    first, again = two_epochs(3), two_epochs(3)
    for epoch, repeated in zip(first, again, strict=False):
        np.testing.assert_array_equal(repeated, epoch)
    assert not np.allclose(first[0], first[1]) and not np.allclose(first[0], two_epochs(4)[0])


def test_map_gives_each_worker_its_own_draws_from_the_same_seed():
    """Workers of a distributed run share the seed; folding in their index keeps their parts of a batch apart."""
    import tensorflow as tf

    batches = tf.data.Dataset.from_tensor_slices(
        (np.repeat(marker_images(1), 8, axis=0).astype(np.float32), np.zeros(8, np.int32))).batch(4)
    augmenter = Augmenter(rotation_range=30, zoom_range=0.2, seed=9)

    def pictures(stream):
        return np.concatenate([images.numpy() for images, _ in augmenter.map(batches, stream=stream)])

    assert np.array_equal(pictures(1), pictures(1))
    assert not np.allclose(pictures(0), pictures(1)) and not np.allclose(pictures(None), pictures(1))


def test_channel_shift_adds_one_value_to_every_channel_within_the_images_own_range():
    rng = np.random.default_rng(0)
    images = rng.uniform(60, 200, (256, 8, 8, 3)).astype(np.float32)
    images[:, 0, 0] = 60.0  # each image's own darkest ...
    images[:, 0, 1] = 200.0  # ... and brightest value
    out = np.asarray(Augmenter(channel_shift_range=50, seed=8)(images))
    inside = (images > 110) & (images < 150)  # never clipped by a shift of at most 50
    shifts = np.where(inside, out - images, np.nan)
    per_image = np.nanmedian(shifts.reshape(256, -1), axis=1)
    expected = np.broadcast_to(per_image[:, None, None, None], images.shape)
    assert np.allclose(shifts[inside], expected[inside], atol=1e-3)  # one value, added to all channels
    assert per_image.min() < -40 and per_image.max() > 40 and np.abs(per_image).max() <= 50 + 1e-3
    assert out.min() >= 60.0 - 1e-3 and out.max() <= 200.0 + 1e-3  # clipped to the image's own range


def test_random_crop_flip_turn_keeps_area_aspect_and_draws_every_mirror_and_turn():
    """Pixel values encode their source column and row, so the output shows the crop box, mirror and turn."""
    import tensorflow as tf

    height, width = 60, 80
    rows, columns = np.mgrid[:height, :width].astype(np.float32)
    image = tf.constant(np.stack([columns, rows, np.zeros_like(rows)], axis=-1))
    areas, aspects, views = [], [], set()
    for index in range(200):
        crop = random_crop_flip_turn(image, 32, min_area=0.5, seed=[3, index]).numpy()
        left, right, top, bottom = crop[..., 0].min(), crop[..., 0].max(), crop[..., 1].min(), crop[..., 1].max()
        areas.append((right - left + 1) * (bottom - top + 1) / (height * width))
        aspects.append((right - left + 1) / (bottom - top + 1))
        column_step = np.sign(np.round(crop[16, -1, :2] - crop[16, 0, :2]))  # what changes left to right
        row_step = np.sign(np.round(crop[-1, 16, :2] - crop[0, 16, :2]))  # what changes top to bottom
        views.add((tuple(column_step), tuple(row_step)))
    assert crop.shape == (32, 32, 3)
    assert 0.5 - 0.05 <= min(areas) < 0.6 and max(areas) > 0.9 and max(areas) <= 1.0 + 1e-6
    assert 3 / 4 - 0.05 <= min(aspects) and max(aspects) <= 4 / 3 + 0.05
    assert len(views) == 8  # every mirror and quarter turn of the square
    same = random_crop_flip_turn(image, 32, seed=[3, 7]).numpy()
    assert np.array_equal(same, random_crop_flip_turn(image, 32, seed=[3, 7]).numpy())
    assert not np.array_equal(random_crop_flip_turn(image, 32).numpy(), random_crop_flip_turn(image, 32).numpy())


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


def test_pair_draws_the_geometry_of_a_plain_call_and_photometry_does_not_move_it():
    images, masks = disc_pairs(count=32)
    geometry = dict(rotation_range=40, width_shift_range=0.2, zoom_range=0.3, horizontal_flip=True)
    plain_images, plain_masks = Augmenter(**geometry, seed=9).pair(images, masks)
    assert np.array_equal(np.asarray(plain_images), np.asarray(Augmenter(**geometry, seed=9)(images)))
    brighter = Augmenter(**geometry, brightness_range=(0.5, 1.5), channel_shift_range=40, seed=9)
    bright_images, bright_masks = brighter.pair(images, masks)
    assert np.array_equal(np.asarray(bright_masks), np.asarray(plain_masks))  # same draws of the geometry
    assert not np.allclose(np.asarray(bright_images), np.asarray(plain_images))
