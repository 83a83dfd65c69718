"""Label flower photos with a trained model: the top-k classes and their probabilities, like TensorFlow's label_image.py.

    python -m flowers.predict photo.jpg other.jpg
    python -m flowers.predict --run-dir runs/flowers/train-20240101-120000 --top-k 3 photo.jpg

The model (``model.keras``, pixels in) and its class names (``labels.txt``) come
from a ``flowers.train`` run folder: the newest one under runs/flowers/ unless
``--run-dir`` names one. Each image is decoded and resized exactly as in
training. Same arguments and table as ``python -m cats_dogs.predict``.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
from common.errors import main_guard
from common.predict import predict_command
from flowers.data import OUTPUT_PARENT


@main_guard
def main(argv=None) -> list[dict]:
    return predict_command(__doc__, argv, parent=OUTPUT_PARENT, stages=("train",), train_command="flowers.train")


if __name__ == "__main__":
    main()
