"""Stage 2 of the cats-vs-dogs lab: fine-tune the last convolutional block with the trained top model.

    python -m cats_dogs.finetune                # starts from the newest bottleneck run
    python -m cats_dogs.finetune --top-model runs/cats_dogs/bottleneck-.../bottleneck_fc_model.weights.h5

What the textbook does, and what changed for Keras 3:
- The base gets the top model trained by ``cats_dogs.bottleneck`` (starting
  from a random top would wreck the pretrained features with large gradients).
- Everything below the last conv block is frozen: with
  ``keras.applications.VGG16`` that is ``layers[:15]`` (``block5_conv1`` is
  layer 15; the textbook's ``[:25]`` counted Keras 1 layers).
- SGD, learning rate 1e-4, momentum 0.9, binary cross-entropy, 50 epochs.
- Training images are augmented (shear_range=0.2, zoom_range=0.2,
  horizontal_flip=True); validation images are not.
- The textbook's ``rescale=1/255`` is replaced by the backbone's own
  ``preprocess_input``, inside the model, which is what the pretrained weights
  expect and what prediction uses too.
- The base runs with BatchNorm in inference mode (``training=False``), and the
  model is compiled after ``trainable`` is set.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json
import time
from pathlib import Path

import keras
import numpy as np

from cats_dogs.model import OUTPUT_PARENT, TOP_WEIGHTS, build_top_model, load_splits, loss_for, make_parser, stack
from common import cli
from common.augment import Augmenter
from common.backbones import build_base, freeze_below, get_spec
from common.data import make_dataset
from common.errors import UserError, main_guard
from common.predict import write_labels
from common.reports import classification_metrics, finish_run, print_summary
from common.training import latest_run, make_run_dir, save_config, set_seed, standard_callbacks

TEXTBOOK_AUGMENTATION = {"shear_range": 0.2, "zoom_range": 0.2, "horizontal_flip": True}


def parse_args(argv=None):
    parser = make_parser(__doc__)
    stage = parser.add_argument_group("fine-tuning")
    stage.add_argument("--top-model", default=None,
                       help=f"top-model weights from cats_dogs.bottleneck (default: {TOP_WEIGHTS} "
                       f"of the newest {OUTPUT_PARENT}/bottleneck-* run)")
    stage.add_argument("--learning-rate", type=float, default=1e-4, help="SGD learning rate (default: 1e-4)")
    stage.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    stage.add_argument("--unfreeze-from", default=None,
                       help="first trainable layer of the base, by name or index (default: the last "
                       "conv block: block5_conv1 for vgg16, mixed9 for inception_v3, "
                       "block_16_expand for mobilenet_v2)")
    stage.add_argument("--patience", type=int, default=None,
                       help="stop after this many epochs without a better val_accuracy (default: off)")
    return cli.resolve(parser.parse_args(argv))


def find_top_model(args) -> Path:
    """The top-model weights to start from, checked against this run's backbone and size."""
    if args.top_model:
        path = Path(args.top_model)
        if not path.is_file():
            raise UserError(f"top-model weights {path} do not exist; run python -m cats_dogs.bottleneck first")
    else:
        run = latest_run(OUTPUT_PARENT, "bottleneck", TOP_WEIGHTS)
        if run is None:
            raise UserError(
                f"no trained top model found under {OUTPUT_PARENT}/bottleneck-*/; run "
                "python -m cats_dogs.bottleneck first (with the same --backbone and --image-size), "
                "or pass --top-model PATH"
            )
        path = run / TOP_WEIGHTS
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
    set_seed(args.seed)
    top_path = find_top_model(args)
    train, validation = load_splits(args.data_dir)
    run_dir = make_run_dir(args.output_dir, OUTPUT_PARENT, "finetune")
    save_config(run_dir, {**cli.config_of(args), "stage": "finetune", "top_model": str(top_path),
                          "augmentation": TEXTBOOK_AUGMENTATION, "class_names": train.class_names})
    print(f"{len(train)} training and {len(validation)} validation images; top model {top_path}")

    # 1. The pretrained base with the trained top model on it.
    base = build_base(args.backbone, args.weights, args.image_size)
    top = build_top_model(base.output_shape[1:], train.num_classes)
    try:
        top.load_weights(top_path)
    except Exception as error:
        raise UserError(f"top-model weights {top_path} do not fit this model: {str(error).splitlines()[0]}") from None
    model = stack(base, top, args.backbone)

    # 2. Freeze everything below the last conv block, then compile.
    first_trainable = args.unfreeze_from or get_spec(args.backbone).unfreeze_from
    if isinstance(first_trainable, str) and first_trainable.isdigit():
        first_trainable = int(first_trainable)
    index = freeze_below(base, first_trainable)
    print(f"frozen: {args.backbone} layers[:{index}]; trainable from {base.layers[index].name}")
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=args.learning_rate, momentum=args.momentum),
        loss=loss_for(train.num_classes),
        metrics=["accuracy"],
    )

    # 3. Augmented training images, plain validation images.
    size = (args.image_size, args.image_size)
    augmenter = Augmenter(**TEXTBOOK_AUGMENTATION, seed=args.seed)
    train_data = make_dataset(train.paths, train.labels, size, args.batch_size, shuffle=True,
                              seed=args.seed, augment=augmenter, cache_in_memory=True)
    validation_data = make_dataset(validation.paths, validation.labels, size, args.batch_size,
                                   cache_in_memory=True)
    before_loss, before_accuracy = model.evaluate(validation_data, verbose=0)
    print(f"before fine-tuning: val_accuracy {before_accuracy:.4f}")

    fit_start = time.perf_counter()
    history = model.fit(
        train_data,
        validation_data=validation_data,
        epochs=args.epochs,
        callbacks=standard_callbacks(run_dir, "best.weights.h5", patience=args.patience),
        shuffle=False,  # the tf.data pipeline already reshuffles every epoch
        verbose=2,
    )
    fit_seconds = time.perf_counter() - fit_start
    model.save(run_dir / "model.keras")
    write_labels(run_dir, train.class_names)

    # 4. Report the final model on the validation images.
    probabilities = model.predict(validation_data, verbose=0)
    val_loss, _ = model.evaluate(validation_data, verbose=0)
    metrics = classification_metrics(validation.labels, probabilities, train.class_names)
    val_history = history.history.get("val_accuracy", [])
    metrics.update(
        stage="finetune",
        val_loss=float(val_loss),
        val_accuracy_before=float(before_accuracy),
        best_val_accuracy=float(max(val_history)) if val_history else None,
        best_epoch=int(np.argmax(val_history)) + 1 if val_history else None,
        epochs_run=len(val_history),
        n_train=len(train),
        n_val=len(validation),
        backbone=args.backbone,
        weights=str(args.weights),
        image_size=args.image_size,
        frozen_layers=index,
        fit_seconds=round(fit_seconds, 2),
        seconds=round(time.perf_counter() - start, 2),
    )
    finish_run(run_dir, history.history, metrics, title=f"fine-tune ({args.backbone})")
    print_summary(run_dir, metrics)
    return metrics


if __name__ == "__main__":
    main()
