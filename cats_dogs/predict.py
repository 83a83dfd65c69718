"""Classify images with a trained cats-vs-dogs model: a table of the most probable classes.

    python -m cats_dogs.predict photo1.jpg photo2.jpg
    python -m cats_dogs.predict --run-dir runs/cats_dogs/finetune-... --top-k 1 photo.jpg

The model comes from a run folder (``model.keras`` and ``labels.txt``): the
newest fine-tune run under runs/cats_dogs/, else the newest bottleneck run,
unless ``--run-dir`` names one. The saved model holds the backbone's
preprocessing, and each image is read and resized exactly as in training, so
a prediction sees what training saw. Same arguments and table as
``python -m flowers.predict``.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
from cats_dogs.model import OUTPUT_PARENT
from common.errors import main_guard
from common.predict import predict_command


@main_guard
def main(argv=None) -> list[dict]:
    return predict_command(
        __doc__, argv, parent=OUTPUT_PARENT, stages=("finetune", "bottleneck"), train_command="cats_dogs.bottleneck"
    )


if __name__ == "__main__":
    main()
