"""An upload judged before anything decodes it: the one sentence a bad file gets, and its HTTP status.

``deploy.serve`` answers every bad upload -- empty, too large, not an
image, an image format the training pipeline does not read, too many pixels
-- with a 4xx and a sentence, on the page as on the endpoint, and goes on
serving. The judging needs no web framework, so it lives here, where it can
be tested on bytes alone. An upload is judged by its content (PIL reads the
header), not by the type it was sent as; that type only chooses between
"not an image" and "a broken image".
"""
from __future__ import annotations

import io

from common.data import DECODABLE_FORMATS

MAX_PIXELS = 40_000_000  # a larger image is refused before it is decoded (a decompression bomb)


class UploadProblem(Exception):
    """A bad upload: the HTTP status it gets and the sentence that says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def check_upload(data: bytes, max_bytes: int, declared_type: str | None = None) -> str:
    """The image format of an upload (``JPEG``, ...), or an ``UploadProblem``; nothing is decoded yet."""
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise UploadProblem(400, "the upload is empty: choose an image file")
    if len(data) > max_bytes:
        raise UploadProblem(413, f"the upload is {megabytes(len(data))}; the limit is {megabytes(max_bytes)}")
    sent_as = f" (it was sent as {declared_type})" if declared_type else ""
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height) = image.format, image.size
    except (UnidentifiedImageError, OSError, ValueError):
        if declared_type and declared_type.startswith("image/"):  # the right kind of file, broken: malformed
            raise UploadProblem(400, f"the upload{sent_as} cannot be read as an image: corrupt or cut short?") from None
        raise UploadProblem(415, f"the upload is not an image{sent_as}; send a JPEG, PNG, GIF or BMP file") from None
    except Image.DecompressionBombError:
        raise UploadProblem(413, "the image has too many pixels to decode") from None
    if kind not in DECODABLE_FORMATS:
        raise UploadProblem(415, f"{kind} images are not read by the model's pipeline; "
                                 "send a JPEG, PNG, GIF or BMP file")
    if width * height > MAX_PIXELS:
        raise UploadProblem(413, f"the image is {width}x{height} pixels; the limit is {MAX_PIXELS:,} pixels")
    return kind


def megabytes(count: int) -> str:
    """A size as the sentences above say it: MB from a million bytes on, bytes below."""
    return f"{count / 1e6:.1f} MB" if count >= 1_000_000 else f"{count:,} bytes"
