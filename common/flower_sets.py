"""Where the two flower collections come from and how their raw folders are laid out.

Two lessons read them: ``flowers`` (12.5.1 on flower_photos, the exercise on
flower17) and ``adaptation`` (flower_photos -> flower17 as two domains). Kept
here so that neither lesson imports the other, and so that both find the same
archive in Keras's download cache.

- flower_photos (TensorFlow's example set): five class folders, 3670 photos;
- Oxford flower17: one flat ``jpg/`` folder, ``image_0001.jpg`` ..
  ``image_1360.jpg``, 17 classes x 80 photos, class = (number - 1) // 80.
"""
from __future__ import annotations

import re
from pathlib import Path

from common.errors import UserError
from common.files import fetch

FLOWER_PHOTOS_URL = "https://storage.googleapis.com/download.tensorflow.org/example_images/flower_photos.tgz"
FLOWER_PHOTOS_ARCHIVE = "flower_photos.tgz"

FLOWER17_URL = "https://www.robots.ox.ac.uk/~vgg/data/flowers/17/17flowers.tgz"
FLOWER17_ARCHIVE = "17flowers.tgz"
FLOWER17_DEFAULT_DIR = "data/flower17"
FLOWER17_CLASSES = 17
FLOWER17_PER_CLASS = 80
FLOWER17_FILE = re.compile(r"^image_(\d{4})\.jpg$", re.IGNORECASE)


def find_class_root(path: Path) -> Path:
    """The folder that holds flower_photos' class folders, wherever the archive unpacked it."""
    candidates = [path, path / "flower_photos", path.parent / "flower_photos"]
    for candidate in candidates:
        if candidate.is_dir() and (candidate / "daisy").is_dir():
            return candidate
    for candidate in sorted(path.rglob("daisy")) if path.is_dir() else []:
        return candidate.parent
    raise UserError(f"the archive unpacked to {path}, but no flower_photos/<class>/ folders were found there")


def download(local=None) -> Path:
    """flower_photos' folder of class folders: ``local`` as given, else the official archive (Keras's cache).

    Offline, the error says where to put ``flower_photos.tgz`` or to pass a
    local copy with ``--from``.
    """
    source = fetch(local, url=FLOWER_PHOTOS_URL, file_name=FLOWER_PHOTOS_ARCHIVE,
                   alternative="unpack it and pass --from /path/to/flower_photos")
    return find_class_root(source) if local is None else source


def images_in(folder: Path) -> Path | None:
    """flower17's folder of image_NNNN.jpg files: ``folder/jpg`` or ``folder`` itself, or None."""
    for candidate in (Path(folder) / "jpg", Path(folder)):
        if candidate.is_dir() and any(FLOWER17_FILE.match(p.name) for p in candidate.iterdir()):
            return candidate
    return None


def download_flower17(alternative: str = "unpack it and pass --data-dir <the folder holding jpg/>") -> Path:
    """The official archive through Keras's download cache: the folder of its image_NNNN.jpg files.

    Offline, the error names ``17flowers.tgz`` and the folder to put it in
    (``common.files.offline_error``), then ``alternative``. No checksum is
    given to ``get_file``: none is published with the archive.
    """
    extracted = fetch(None, url=FLOWER17_URL, file_name=FLOWER17_ARCHIVE, alternative=alternative)
    found = sorted(extracted.rglob("image_0001.jpg"))
    if not found:
        raise UserError(f"{FLOWER17_ARCHIVE} unpacked to {extracted}, but it holds no image_0001.jpg")
    return found[0].parent


def find_images(data_dir: Path) -> Path:
    """flower17's jpg/ folder under ``data_dir``; the official archive when the default folder is missing."""
    data_dir = Path(data_dir)
    found = images_in(data_dir)
    if found is not None:
        return found
    if data_dir.resolve() != Path(FLOWER17_DEFAULT_DIR).resolve():
        raise UserError(f"{data_dir} holds no jpg/image_0001.jpg ... ; pass the flower17 folder that holds jpg/ "
                        "(python -m flowers.prepare --flower17 puts it in data/flower17)")
    return download_flower17()
