"""Pairs are checked before training, split by patient, and the ROI never reads the mask it is evaluated on."""
from __future__ import annotations

import numpy as np
import pytest
from flowers_synthetic import snapshot
from PIL import Image
from segmentation_synthetic import draw_pair, make_split, name_of, save_rgb

from common.errors import UserError
from segmentation.data import load_pairs, patient_group, patient_of, split_patients
from segmentation.evaluate import score_pairs
from segmentation.roi import CropBox, segment_frames

PATIENTS = ["SC-HF-I-01", "SC-HF-NI-03", "SC-HYP-01", "SC-N-02"]


@pytest.fixture
def split(tmp_path):
    return make_split(tmp_path / "train", PATIENTS, frames=2, size=32)


def test_pairs_are_read_as_grayscale_with_binary_masks(split, tmp_path):
    pairs = load_pairs(split)
    assert len(pairs) == 8 and pairs.images.shape == (8, 32, 32) and pairs.images.dtype == np.uint8
    assert set(np.unique(pairs.masks)) == {0, 1}
    assert pairs.patients[:2] == ["SC-HF-I-01", "SC-HF-I-01"]
    # a grayscale image and a 0/1 mask read exactly as the RGB / 0-255 ones
    image, mask = draw_pair(np.random.default_rng(5), 32)
    other = tmp_path / "gray"
    (other / "images").mkdir(parents=True)
    (other / "masks").mkdir()
    Image.fromarray(image).save(other / "images" / "a.png")
    Image.fromarray(mask).save(other / "masks" / "a.png")
    save_rgb(image, other / "images" / "b.png")
    save_rgb(mask * 255, other / "masks" / "b.png")
    gray = load_pairs(other)
    assert np.array_equal(gray.images[0], gray.images[1]) and np.array_equal(gray.masks[0], gray.masks[1])
    assert np.array_equal(gray.masks[0], mask)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "masks" / name_of("SC-N-02", 1)).unlink(), "have no mask of the same name"),
        (lambda root: (root / "images" / name_of("SC-N-02", 1)).unlink(), "have no image of the same name"),
        (lambda root: save_rgb(np.full((32, 32), 128, np.uint8), root / "masks" / name_of("SC-N-02", 1)), "is not binary"),
        (lambda root: save_rgb(np.zeros((30, 32), np.uint8), root / "masks" / name_of("SC-N-02", 1)), "must match"),
        (lambda root: [save_rgb(np.zeros((40, 40), np.uint8), root / kind / name_of("SC-N-02", 1))
                       for kind in ("images", "masks")], "differ in size"),
        (lambda root: [path.unlink() for path in (root / "images").iterdir()], "holds no images"),
        (lambda root: (root / "images" / name_of("SC-N-02", 0)).write_bytes(b"not a png"), "cannot read image"),
    ],
    ids=["image-without-mask", "mask-without-image", "non-binary-mask", "mask-size", "frame-size", "empty", "corrupt"],
)
def test_bad_input_stops_with_one_line_and_writes_nothing(split, damage, message):
    damage(split)
    before = snapshot(split)
    with pytest.raises(UserError, match=message) as error:
        load_pairs(split)
    assert "\n" not in str(error.value)
    assert snapshot(split) == before


def test_missing_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_pairs(tmp_path / "nowhere")


def test_patients_and_validation_split():
    assert patient_of("SC-HYP-09-IM-0001-0048.dcm.png") == "SC-HYP-09"
    assert patient_group("SC-HF-NI-31") == "SC-HF-NI"
    patients = [f"{group}-{n:02d}" for group in ("SC-HF-I", "SC-HF-NI", "SC-HYP", "SC-N") for n in range(1, 5)]
    rows = [patient for patient in patients for _ in range(3)]
    fit, validation = split_patients(rows, 5, seed=0)
    held = {rows[i] for i in validation}
    assert len(held) == 5 and held.isdisjoint({rows[i] for i in fit})
    assert len(fit) + len(validation) == len(rows)
    assert {patient_group(p) for p in held} == {"SC-HF-I", "SC-HF-NI", "SC-HYP", "SC-N"}  # every kind of heart
    assert np.array_equal(split_patients(rows, 5, seed=0)[1], validation)
    assert not np.array_equal(split_patients(rows, 5, seed=1)[1], validation)
    with pytest.raises(UserError, match="cannot hold out"):
        split_patients(rows, 16)


def test_crop_box_is_fitted_on_training_masks_and_holds_them():
    rng = np.random.default_rng(0)
    masks = np.stack([draw_pair(rng, 64, centre=(24 + k, 40 - k), radius=5)[1] for k in range(6)])
    box = CropBox.fit(masks, 32)
    assert box.holds(masks).all()
    assert (box.top, box.left) == (int(round((19 + 35) / 2 - 16)), int(round((30 + 46) / 2 - 16)))
    frames = rng.integers(0, 255, (2, 64, 64)).astype(np.uint8)
    pasted = box.paste(box.crop(frames))
    inside = (slice(None), slice(box.top, box.top + 32), slice(box.left, box.left + 32))
    assert np.array_equal(pasted[inside], frames[inside]) and pasted.sum() == frames[inside].astype(int).sum()


class BrightPixels:
    """A stand-in network: probability = brightness. Records every input it sees."""

    def __init__(self, size):
        import keras

        pixels = keras.Input((size, size, 3))
        self.model = keras.Model(pixels, keras.layers.Rescaling(1 / 255)(pixels[..., :1]))


def test_roi_never_reads_the_evaluated_mask():
    rng = np.random.default_rng(1)
    training_masks = np.stack([draw_pair(rng, 64, centre=(32, 32), radius=6)[1] for _ in range(4)])
    box = CropBox.fit(training_masks, 32)
    # a test frame whose ventricle lies in the corner, outside the box fitted on training masks
    image, mask = draw_pair(rng, 64, centre=(8, 8), radius=5)
    _, centred = draw_pair(rng, 64, centre=(32, 32), radius=6)
    network = BrightPixels(32).model

    class Pairs:
        images = image[None]
        masks = mask[None]

    class Moved(Pairs):
        masks = centred[None]

    probabilities, predicted, scores = score_pairs(network, box, 0.5, Pairs)
    moved_probabilities, _, moved_scores = score_pairs(network, box, 0.5, Moved)
    # the same image gives the same prediction whatever mask is evaluated against it ...
    assert np.array_equal(probabilities, moved_probabilities)
    assert np.array_equal(probabilities, segment_frames(network, box, image[None]))
    # ... the window stays where the training masks put it, so the corner ventricle is missed and scored 0
    assert not predicted[0][mask.astype(bool)].any()
    assert scores["dice"][0] == 0.0 and scores["sensitivity"][0] == 0.0
    assert moved_scores["dice"][0] == 0.0  # moving the expert mask into the window changes nothing predicted
    assert CropBox.fit(training_masks, 32) == box


def test_augmentation_moves_image_and_mask_together():
    from common.augment import Augmenter
    from segmentation.metrics import overlap_scores
    from segmentation.pipeline import training_dataset

    rng = np.random.default_rng(2)
    drawn = [draw_pair(rng, 64, "disc" if i % 2 else "ring") for i in range(8)]
    images, masks = np.stack([d[0] for d in drawn]), np.stack([d[1] for d in drawn])
    augmenter = Augmenter(rotation_range=30, width_shift_range=0.2, height_shift_range=0.2, zoom_range=0.2,
                          horizontal_flip=True, seed=0)
    batch_images, batch_masks = next(iter(training_dataset(images, masks, 64, 8, seed=0, augmenter=augmenter)))
    batch_images, batch_masks = batch_images.numpy(), batch_masks.numpy()[..., 0]
    assert batch_images.shape == (8, 64, 64, 3) and set(np.unique(batch_masks)) <= {0.0, 1.0}
    assert np.array_equal(batch_images[..., 0], batch_images[..., 2])  # still grayscale in three channels
    # every mask is its own image's bright shape, wherever the draw moved both ...
    agreement = overlap_scores(batch_images[..., 0] > 125, batch_masks)["dice"]
    assert agreement.min() > 0.9, agreement
    # ... and they did move: no augmented mask is one of the drawn ones
    assert not any(np.array_equal(out, original) for out in batch_masks for original in masks)
    plain_images, plain_masks = next(iter(training_dataset(images, masks, 64, 8, seed=0)))
    originals = {m.tobytes() for m in masks.astype(np.float32)}
    assert {m.tobytes() for m in plain_masks.numpy()[..., 0]} == originals
