"""common.flower_sets: both lessons that read the flower collections find them the same way."""
import pytest

from common import flower_sets
from common.errors import UserError


def test_download_finds_the_class_folders_wherever_the_archive_unpacked(tmp_path, monkeypatch):
    import keras

    unpacked = tmp_path / "datasets" / "flower_photos_extracted"
    for name in ("daisy", "roses"):
        (unpacked / "flower_photos" / name).mkdir(parents=True)
    asked = []
    monkeypatch.setattr(keras.utils, "get_file", lambda name, **kwargs: asked.append(name) or str(unpacked))
    assert flower_sets.download() == unpacked / "flower_photos"
    assert asked == ["flower_photos.tgz"]
    # a local copy is taken as given, never downloaded
    assert flower_sets.download(unpacked / "flower_photos") == unpacked / "flower_photos" and len(asked) == 1


def test_an_archive_without_class_folders_is_one_line(tmp_path, monkeypatch):
    import keras

    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(keras.utils, "get_file", lambda *args, **kwargs: str(tmp_path / "empty"))
    with pytest.raises(UserError, match="no flower_photos/<class>/ folders"):
        flower_sets.download()


def test_find_images_takes_the_folder_or_its_jpg_child(tmp_path):
    (tmp_path / "flower17" / "jpg").mkdir(parents=True)
    (tmp_path / "flower17" / "jpg" / "image_0001.jpg").write_bytes(b"")
    assert flower_sets.find_images(tmp_path / "flower17") == tmp_path / "flower17" / "jpg"
    assert flower_sets.find_images(tmp_path / "flower17" / "jpg") == tmp_path / "flower17" / "jpg"
    with pytest.raises(UserError, match="holds no jpg/image_0001.jpg"):
        flower_sets.find_images(tmp_path)
