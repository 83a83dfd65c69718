"""Stage 2 of the cats-vs-dogs lab: fine-tune the last convolutional block with the trained top model.

    python -m cats_dogs.finetune                # starts from the newest bottleneck run
    python -m cats_dogs.finetune --top-model runs/cats_dogs/bottleneck-...   # that run's model.keras

What the textbook does, and what changed for Keras 3:
- The base gets the top model trained by ``cats_dogs.bottleneck`` (starting
  from a random top would wreck the pretrained features with large gradients).
- Everything below the last conv block is frozen (``--unfreeze-from``): with
  ``keras.applications.VGG16`` that is the slides' ``model.layers[:15]``
  (``block5_conv1`` is layer 15), right on Keras 3; ``[:25]`` was the 2016
  Keras-blog original's Keras 1 count. For MobileNetV2 it is the last 7x7
  stage, from ``block_14_expand``.
- SGD, learning rate 1e-4, momentum 0.9, binary cross-entropy, 50 epochs,
  through ``Model.fit`` on tf.data: Keras 3 has neither ``ImageDataGenerator``
  nor ``fit_generator``, and calls the rate ``learning_rate``, not ``lr``
  (docs/textbook-errata.md, E16, E18, E20). The final epoch's model is saved
  and reported (no checkpoint is picked on the validation images, which are
  the ones the result is measured on; with ``--patience`` early stopping
  restores its best epoch, and says so).
- Training images are augmented (shear_range=0.2, zoom_range=0.2,
  horizontal_flip=True; the shear is in degrees, E17); validation images are not.
- The textbook's ``rescale=1/255`` is replaced by the backbone's own
  ``preprocess_input``, inside the model, which is what the pretrained weights
  expect and what prediction uses too (E23).
- The base runs with BatchNorm in inference mode (``training=False``), and the
  model is compiled after ``trainable`` is set.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import json
import time
from pathlib import Path

import keras
import numpy as np

from cats_dogs.model import OUTPUT_PARENT, TOP_MODEL, build_top_model, full_model, load_splits, loss_for, make_parser
from common import cli
from common.augment import Augmenter
from common.backbones import build_base, freeze_below
from common.data import make_dataset
from common.errors import UserError, main_guard
from common.files import first_line
from common.predict import MODEL_FILE, write_labels
from common.regularizers import add_regularization_arguments, check_regularization_arguments, regularize
from common.reports import classification_metrics, predictions_and_losses
from common.run import Run
from common.training import latest_run

TEXTBOOK_AUGMENTATION = {"shear_range": 0.2, "zoom_range": 0.2, "horizontal_flip": True}


def parse_args(argv=None):
    parser = make_parser(__doc__)
    stage = parser.add_argument_group("fine-tuning")
    stage.add_argument("--top-model", default=None,
                       help="the trained top model: a cats_dogs.bottleneck run folder or its model.keras, or a "
                       f"top-model .weights.h5 file (default: the newest {OUTPUT_PARENT}/bottleneck-* run)")
    stage.add_argument("--learning-rate", type=float, default=1e-4, help="SGD learning rate (default: 1e-4)")
    stage.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    cli.add_unfreeze_argument(stage)
    stage.add_argument("--patience", type=int, default=None,
                       help="stop after this many epochs without a better val_accuracy and keep the best "
                       "epoch's weights (default: off, the last epoch is kept)")
    add_regularization_arguments(parser.add_argument_group("regularisation (002, 4.1.3)"))
    args = cli.resolve(parser.parse_args(argv))
    check_regularization_arguments(args)
    return args


def find_top_model(args) -> Path:
    """The bottleneck run's model file (or a top-model weights file) to start from, checked against this run's
    backbone and size."""
    if args.top_model:
        path = Path(args.top_model)
        path = path / MODEL_FILE if path.is_dir() else path
        if not path.is_file():
            raise UserError(f"top model {path} does not exist; run python -m cats_dogs.bottleneck first")
    else:
        run = latest_run(OUTPUT_PARENT, "bottleneck", MODEL_FILE)
        if run is None:
            raise UserError(
                f"no trained top model found under {OUTPUT_PARENT}/bottleneck-*/; run "
                "python -m cats_dogs.bottleneck first (with the same --backbone and --image-size), "
                "or pass --top-model PATH"
            )
        path = run / MODEL_FILE
    config_file = path.parent / "config.json"
    if config_file.exists():
        trained = json.loads(config_file.read_text())
        for key in ("backbone", "image_size"):
            if trained.get(key) != getattr(args, key):
                raise UserError(
                    f"the top model {path} was trained on {key}={trained.get(key)}, but this run uses "
                    f"{key}={getattr(args, key)}; pass the same --{key.replace('_', '-')} or another --top-model"
                )
    return path


@main_guard
def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    top_path = find_top_model(args)
    train, validation = load_splits(args.data_dir, args.limit)
    config = {"top_model": str(top_path), "augmentation": TEXTBOOK_AUGMENTATION, "class_names": train.class_names}
    with Run(args, "finetune", parent=OUTPUT_PARENT, config=config) as run:
        print(f"{len(train)} training and {len(validation)} validation images; top model {top_path}")

        # 1. The pretrained base with the trained top model on it.
        base = build_base(args.backbone, args.weights, args.image_size)
        top = build_top_model(base.output_shape[1:], train.num_classes)
        try:
            if top_path.suffix == ".keras":   # a bottleneck run's model: its top model's weights
                top.set_weights(keras.saving.load_model(top_path, compile=False).get_layer(TOP_MODEL).get_weights())
            else:
                top.load_weights(top_path)
        except Exception as error:
            raise UserError(f"top-model weights {top_path} do not fit this model: {first_line(error)}") from None
        model = full_model(args.backbone, base, top)

        # 2. Freeze everything below the last conv block, then compile.
        index = freeze_below(base, args.unfreeze_from)
        first = base.layers[index].name if index < len(base.layers) else "nothing (the whole base frozen)"
        print(f"frozen: {args.backbone} layers[:{index}]; trainable from {first}")
        regularization = regularize(args, base, top, model)  # L2-SP's start: the pretrained weights, as loaded
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate=run.learning_rate(args.learning_rate), momentum=args.momentum),
            loss=loss_for(train.num_classes),
            metrics=["accuracy"],
        )

        # 3. Augmented training images, plain validation images.
        size = (args.image_size, args.image_size)
        augmenter = Augmenter(**TEXTBOOK_AUGMENTATION, seed=args.seed)
        train_data = run.images(train.paths, train.labels, size, args.batch_size, shuffle=True, seed=args.seed,
                                augment=augmenter, cache_in_memory=True)
        validation_data = make_dataset(validation.paths, validation.labels, size, args.batch_size,
                                       cache_in_memory=True)
        _, before_accuracy = run.evaluate(model, validation_data)
        print(f"before fine-tuning: val_accuracy {before_accuracy:.4f}")

        fit_start = time.perf_counter()
        history = run.fit(model, train_data, steps_per_epoch=-(-len(train) // args.batch_size),
                          validation=validation_data, epochs=args.epochs, callbacks=run.callbacks(patience=args.patience))
        fit_seconds = time.perf_counter() - fit_start
        run.save(model)  # no optimizer state: SGD's momentum would add a copy of every fine-tuned weight
        write_labels(run.folder, train.class_names)

        # 4. Report the saved model on the validation images: the last epoch's, or early stopping's best.
        probabilities, losses = predictions_and_losses(model, validation_data)  # the loss as Model.fit logged it
        metrics = classification_metrics(validation.labels, probabilities, train.class_names, losses)
        val_history = history.history.get("val_accuracy", [])
        best_epoch = int(np.argmax(val_history)) + 1 if val_history else None
        metrics.update(
            stage="finetune",
            val_accuracy_before=float(before_accuracy),
            # Early stopping puts its best epoch's weights back at the end of training, stopped or not.
            reported_epoch=best_epoch if args.patience else len(val_history),
            best_val_accuracy=float(max(val_history)) if val_history else None,
            best_epoch=best_epoch,
            epochs_run=len(val_history),
            n_train=len(train),
            n_val=len(validation),
            backbone=args.backbone,
            weights=str(args.weights),
            image_size=args.image_size,
            frozen_layers=index,
            regularization=regularization,
            fit_seconds=round(fit_seconds, 2),
            seconds=round(time.perf_counter() - start, 2),
        )
        return run.finish(history.history, metrics, title=f"fine-tune ({args.backbone})")


if __name__ == "__main__":
    main()
