"""Image folders: what is read, what is skipped, and what is refused."""
import numpy as np
import pytest
from conftest import draw_folder, draw_image

from common.data import UnreadableImageWarning, load_image_folder, make_dataset, split_per_class
from common.errors import UserError


def test_classes_are_sorted_and_labels_follow_folders(tmp_path):
    draw_folder(tmp_path, classes=("zebra", "ant", "moth"), count=3)
    folder = load_image_folder(tmp_path)
    assert folder.class_names == ["ant", "moth", "zebra"]
    assert np.bincount(folder.labels).tolist() == [3, 3, 3]
    for path, label in zip(folder.paths, folder.labels, strict=False):
        assert f"/{folder.class_names[label]}/" in path


def test_unreadable_files_are_skipped_and_named(tmp_path):
    draw_folder(tmp_path, count=3)
    (tmp_path / "cats" / "notes.txt").write_text("not a picture")
    (tmp_path / "cats" / "empty.jpg").write_bytes(b"")
    whole = (tmp_path / "dogs" / "dogs0.jpg").read_bytes()
    (tmp_path / "dogs" / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.warns(UnreadableImageWarning, match=r"skipped 3 unreadable") as record:
        folder = load_image_folder(tmp_path)
    message = str(record[0].message)
    for name in ("notes.txt", "empty.jpg", "cut.jpg"):
        assert name in message
    assert len(folder) == 6
    assert {p for p, _ in folder.skipped} == {
        str(tmp_path / "cats" / "notes.txt"), str(tmp_path / "cats" / "empty.jpg"), str(tmp_path / "dogs" / "cut.jpg")
    }


def test_png_grayscale_and_cmyk_images_are_read_as_rgb(tmp_path):
    rng = np.random.default_rng(0)
    draw_folder(tmp_path, count=1)
    draw_image(0, rng).save(tmp_path / "cats" / "picture.png")
    draw_image(0, rng).convert("L").save(tmp_path / "cats" / "gray.jpg")
    draw_image(1, rng).convert("CMYK").save(tmp_path / "dogs" / "cmyk.jpg")
    draw_image(1, rng).convert("P").save(tmp_path / "dogs" / "palette.png")
    folder = load_image_folder(tmp_path)
    assert len(folder) == 6 and not folder.skipped
    images = np.concatenate([x.numpy() for x, _ in make_dataset(folder.paths, folder.labels, (24, 24), 4)])
    assert images.shape == (6, 24, 24, 3)
    assert 0 <= images.min() and images.max() <= 255
    gray = images[folder.paths.index(str(tmp_path / "cats" / "gray.jpg"))]
    assert np.allclose(gray[..., 0], gray[..., 1], atol=1) and np.allclose(gray[..., 1], gray[..., 2], atol=1)


@pytest.mark.parametrize(
    "layout, message",
    [
        ("missing", "does not exist"),
        ("no_classes", "holds no class folders"),
        ("single", "only the class"),
        ("empty_class", "holds no readable images"),
    ],
)
def test_bad_folders_get_one_clear_error(tmp_path, layout, message):
    root = tmp_path / "data"
    if layout != "missing":
        root.mkdir()
    if layout == "single":
        draw_folder(root, classes=("cats",), count=2)
    if layout == "empty_class":
        draw_folder(root, classes=("cats",), count=2)
        (root / "dogs").mkdir()
    with pytest.raises(UserError, match=message):
        load_image_folder(root)


def test_validation_folder_must_have_the_training_classes(tmp_path):
    draw_folder(tmp_path, classes=("cats",), count=2)
    with pytest.raises(UserError, match="no class folder for dogs"):
        load_image_folder(tmp_path, class_names=["cats", "dogs"])


def test_split_is_stratified_seeded_and_disjoint():
    labels = np.repeat([0, 1, 2], [10, 20, 30])
    train, validation = split_per_class(labels, 4, seed=3)
    assert np.bincount(labels[validation]).tolist() == [4, 4, 4]
    assert not set(train) & set(validation) and len(train) + len(validation) == 60
    again, _ = split_per_class(labels, 4, seed=3)
    other, _ = split_per_class(labels, 4, seed=4)
    assert np.array_equal(train, again) and not np.array_equal(train, other)
    _, fraction = split_per_class(labels, 0.5, seed=0)
    assert np.bincount(labels[fraction]).tolist() == [5, 10, 15]


def test_split_refuses_a_class_too_small():
    with pytest.raises(UserError, match="too few"):
        split_per_class(np.array([0, 0, 0, 1, 1]), 2)


def test_dataset_keeps_labels_with_images_when_shuffled(tmp_path):
    draw_folder(tmp_path, count=5)
    folder = load_image_folder(tmp_path)
    dataset = make_dataset(folder.paths, folder.labels, (32, 32), 3, shuffle=True, seed=1, cache_in_memory=True)
    for images, labels in dataset:
        for image, label in zip(images.numpy(), labels.numpy(), strict=False):
            red, blue = image[..., 0].max(), image[..., 2].max()
            assert (red > blue) == (label == 0)
