"""The 128 x 128 region of interest, placed without the mask of the image being segmented.

The textbook cuts a 128 x 128 window around the left ventricle out of each
256 x 256 frame (its figure 6). Centring that window on each image's own
expert mask would hand the network the answer at test time: where the
ventricle is. Here the window is one fixed box for every frame, fitted on the
*training* masks only: the union of their bounding boxes, centred in a square
of the ROI size. In these short-axis series the heart sits near the middle of
the field of view, and on the Sunnybrook training patients the union is about
81 x 87 pixels, so a 128-pixel box holds every training ventricle with a
margin of 20 pixels or more. ``CropBox.fit`` reports how many masks it would cut.

Segmenting a frame (``segment_frames``) reads only the image: crop the fixed
box, run the network, paste the probabilities back into an empty frame. All
metrics are computed on the full frame, so a ventricle the box misses costs
its full price.
"""
from __future__ import annotations

import dataclasses
import weakref

import numpy as np

from common.errors import UserError


@dataclasses.dataclass(frozen=True)
class CropBox:
    """A square window ``[top, top + size) x [left, left + size)`` in frames of ``frame`` size."""

    top: int
    left: int
    size: int
    frame: tuple[int, int]

    @classmethod
    def fit(cls, masks, size: int) -> "CropBox":
        """The box of side ``size`` centred on the union of the masks' bounding boxes.

        ``masks`` are the training masks (n, height, width): the only masks
        the box is ever computed from.
        """
        masks = np.asarray(masks)
        frame = tuple(int(v) for v in masks.shape[1:3])
        if size > min(frame):
            raise UserError(f"the region of interest ({size} px) is larger than the frames ({frame[1]}x{frame[0]})")
        union = masks.any(axis=0)
        if not union.any():
            raise UserError("every training mask is empty: there is no ventricle to place the region of interest on")
        rows, columns = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
        centre_row = (rows[0] + rows[-1] + 1) / 2
        centre_column = (columns[0] + columns[-1] + 1) / 2
        top = int(np.clip(round(centre_row - size / 2), 0, frame[0] - size))
        left = int(np.clip(round(centre_column - size / 2), 0, frame[1] - size))
        return cls(top, left, int(size), frame)

    @classmethod
    def from_dict(cls, values: dict) -> "CropBox":
        return cls(int(values["top"]), int(values["left"]), int(values["size"]), tuple(values["frame"]))

    def to_dict(self) -> dict:
        return {"top": self.top, "left": self.left, "size": self.size, "frame": list(self.frame)}

    def crop(self, frames) -> np.ndarray:
        """The window of each frame: (n, height, width, ...) -> (n, size, size, ...)."""
        frames = np.asarray(frames)
        if tuple(frames.shape[1:3]) != self.frame:
            raise UserError(
                f"frames are {frames.shape[2]}x{frames.shape[1]} but the region of interest was placed on "
                f"{self.frame[1]}x{self.frame[0]} frames"
            )
        return frames[:, self.top : self.top + self.size, self.left : self.left + self.size]

    def paste(self, windows) -> np.ndarray:
        """Windows (n, size, size) back into empty frames (n, height, width)."""
        windows = np.asarray(windows)
        frames = np.zeros((len(windows), *self.frame), dtype=windows.dtype)
        frames[:, self.top : self.top + self.size, self.left : self.left + self.size] = windows
        return frames

    def holds(self, masks) -> np.ndarray:
        """Per mask, whether every foreground pixel lies inside the box."""
        masks = np.asarray(masks).astype(bool)
        total = masks.reshape(len(masks), -1).sum(axis=1)
        inside = self.crop(masks).reshape(len(masks), -1).sum(axis=1)
        return inside == total


def to_network_input(windows, image_size: int):
    """Grayscale windows (n, size, size) uint8 -> float (n, image_size, image_size, 3) in 0..255."""
    import tensorflow as tf

    images = tf.convert_to_tensor(np.asarray(windows)[..., None], tf.float32)
    if images.shape[1] != image_size:
        images = tf.image.resize(images, (image_size, image_size), method="bilinear")
    return tf.repeat(images, 3, axis=-1)


def segment_frames(model, box: CropBox, frames, batch_size: int = 32) -> np.ndarray:
    """Probabilities (n, height, width) for grayscale frames: crop, network, paste back.

    Takes images only: nothing about the expert masks can reach the
    prediction.
    """
    import tensorflow as tf

    frames = np.asarray(frames)
    windows = box.crop(frames)
    image_size = int(model.input_shape[1])
    predict = _compiled_predictor(model)
    outputs = []
    for start in range(0, len(windows), batch_size):
        batch = to_network_input(windows[start : start + batch_size], image_size)
        probabilities = predict(batch)
        if image_size != box.size:
            probabilities = tf.image.resize(probabilities, (box.size, box.size), method="bilinear")
        outputs.append(np.asarray(probabilities)[..., 0])
    return box.paste(np.concatenate(outputs) if outputs else np.zeros((0, box.size, box.size), np.float32))


_PREDICTORS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _compiled_predictor(model):
    """One compiled forward pass per model, kept while the model lives."""
    import tensorflow as tf

    if model not in _PREDICTORS:
        _PREDICTORS[model] = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    return _PREDICTORS[model]
