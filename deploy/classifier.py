"""One exported format behind a call: image bytes in, a probability per class out.

What ``deploy.serve``'s endpoints and page share, with no web framework in
it: the manifest read once, the format loaded once, an upload decoded exactly
as training decoded files (``deploy.runtime.decode_bytes``), and a decoder's
failure turned into the same kind of one-sentence answer as every other bad
upload (``deploy.uploads.UploadProblem``).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from deploy.runtime import FORMAT_FILES, class_probabilities, decode_bytes, load_format, read_manifest
from deploy.uploads import UploadProblem


class Classifier:
    """One exported format with its manifest: image bytes in, probabilities per class out."""

    def __init__(self, export_dir, model_format: str = "tflite"):
        self.export_dir = Path(export_dir)
        self.manifest = read_manifest(self.export_dir)
        self.class_names = self.manifest["class_names"]
        self.image_size = int(self.manifest["image_size"])
        self.format = model_format
        self.model = load_format(self.export_dir, model_format)

    def pixels(self, data: bytes) -> np.ndarray:
        try:
            return decode_bytes(data, self.image_size)
        except Exception as error:  # noqa: BLE001  (TensorFlow's decoders raise InvalidArgumentError and others)
            reason = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:\w+\]", "", str(error)).strip()  # TensorFlow's op decoration
            reason = reason.splitlines()[0] if reason else type(error).__name__
            raise UploadProblem(400, f"the image could not be decoded (corrupt or cut short?): {reason[:200]}") \
                from None

    def probabilities(self, data: bytes) -> np.ndarray:
        outputs = self.model(self.pixels(data)[None])
        return class_probabilities(outputs, len(self.class_names))[0]

    def info(self) -> dict:
        return {"format": self.format, "file": FORMAT_FILES[self.format], "class_names": self.class_names,
                "image_size": self.image_size, "backbone": self.manifest.get("backbone"),
                "input": self.manifest.get("input"), "resize": self.manifest.get("resize")}


def ranked(probabilities, class_names: list[str], k: int) -> list[dict]:
    """The ``k`` most probable classes (at least one), most probable first; ties keep the class order."""
    order = np.argsort(-np.asarray(probabilities), kind="stable")[: max(1, k)]
    return [{"label": class_names[i], "probability": float(probabilities[i])} for i in order]
