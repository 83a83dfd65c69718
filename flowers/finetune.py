"""12.5.1 (2), stage ③: fine-tuning: the base from ``--unfreeze-from`` on trained together with the new layer.

The book: "最后 1 个阶段是对整个模型结构层数进行微调" (the last stage fine-tunes the
model's layers), here the top blocks at a low learning rate (Adam, 1e-4), with
BatchNorm kept in inference mode. Two ways to feed it:

- by default the fixed offline views: the frozen layers below the cut give
  the same output for an image in every epoch, so that output (the cut map)
  is computed once, with the bottlenecks, and each step runs only the
  unfrozen top: seconds per epoch on a CPU, but after a few epochs it has
  memorised those views;
- ``--finetune-augment``: random crops, mirrors and quarter turns of the
  training originals, new every step, through the whole network: minutes per
  epoch on a CPU, made for longer runs (a GPU), and any layer may start the
  unfrozen part.
"""
from __future__ import annotations

import time

import keras
import numpy as np

from common.augment import random_crop_flip_turn
from common.backbones import build_model, freeze_below
from common.data import make_dataset
from common.regularizers import regularize
from common.reports import predictions_and_losses
from common.run import Run
from common.training import learning_rate
from flowers.bottlenecks import Bottlenecks
from flowers.data import PreparedFlowers
from flowers.head import StageResult, iterations, make_train_step, validation_scores


def shuffled_batches(features: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """Endless (features, labels) batches of in-memory arrays, reshuffled every epoch."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(features))
        for first in range(0, len(order), batch_size):
            chosen = order[first : first + batch_size]
            yield features[chosen], labels[chosen]


def random_crops(run: Run, paths, labels, image_size: int, batch_size: int, seed: int):
    """Stage 3 with ``--finetune-augment``: random crops, mirrors and turns, new every epoch.

    Each photo is first squashed to 8/7 of the input size (256 for 224), as
    the bottlenecks squash it to the input size, so a crop of the whole area
    is the validation view at a slightly higher resolution.
    """
    decoded = round(image_size * 8 / 7)
    return run.images(paths, labels, (decoded, decoded), batch_size, shuffle=True, seed=seed, repeat=True,
                      transform=lambda image, image_seed: random_crop_flip_turn(image, image_size, seed=image_seed))


def fine_tune(run: Run, args, data: PreparedFlowers, bottlenecks: Bottlenecks, base, cut, head) -> StageResult:
    """Stage 3: unfreeze the base from ``--unfreeze-from`` on and train it with the new layer (Adam, 1e-4).

    On the cached cut maps (``cut`` given) each step runs only the unfrozen
    layers; with ``--finetune-augment`` each step runs the whole network on
    fresh random crops of the training originals. BatchNorm stays in
    inference mode either way.
    """
    started = time.perf_counter()
    index = freeze_below(base, args.unfreeze_from)
    y_validation = bottlenecks.validation_labels
    batch_size = args.finetune_batch_size
    if cut is not None:
        top = cut[1]
        inputs = keras.Input(top.input_shape[1:], name="cut_map")
        x = keras.layers.GlobalAveragePooling2D()(top(inputs, training=False))
        tuner = keras.Model(inputs, head(x), name="finetune_top")
        samples = len(bottlenecks.maps_train)
        maps, labels = bottlenecks.maps_train, bottlenecks.train_labels
        # one device: numpy slices of the maps (no second copy of gigabytes as a tensor); several: run.batches
        batches = (shuffled_batches(maps, labels, batch_size, args.seed) if run.single_device
                   else run.batches(maps, labels, batch_size, epochs=args.finetune_epochs))
        validation = (bottlenecks.maps_validation, y_validation)
    else:
        tuner, _ = build_model(args.backbone, base=base, pooling="avg", head=head, name=f"flowers_{args.backbone}")
        originals = bottlenecks.kept_train[data.original[bottlenecks.kept_train]]
        samples = len(originals)
        batches = random_crops(run, [data.train_paths[i] for i in originals], data.train_labels[originals],
                               args.image_size, batch_size, args.seed)
        validation = make_dataset(
            [data.validation_paths[i] for i in bottlenecks.kept_validation], y_validation,
            (args.image_size, args.image_size), batch_size=64,
        )
        print(f"stage 3: new random crops of the {samples} training originals every epoch")
    regularization = regularize(args, base, head, tuner)  # L2-SP's start: the pretrained base (stage 2 left it)
    steps = iterations(samples, batch_size, epochs=1)
    rate = run.learning_rate(args.finetune_learning_rate)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate(rate, steps * args.finetune_epochs, args.schedule))
    train_step = make_train_step(tuner, optimizer)
    trainable = sum(int(np.prod(w.shape)) for w in tuner.trainable_weights)
    print(
        f"stage 3: unfreezing {base.layers[index].name} onwards ({len(base.layers) - index} of "
        f"{len(base.layers)} layers, {trainable:,} trainable weights) for {args.finetune_epochs} epochs"
    )
    board = run.board(tuner, optimizer)
    final = {}

    def validate(epoch, row):
        final["probabilities"], final["losses"] = predictions_and_losses(
            tuner, validation, loss=keras.losses.sparse_categorical_crossentropy, batch_size=64)
        scores = validation_scores(y_validation, final["probabilities"], final["losses"])
        if board is not None:
            board.on_epoch_end(args.epochs + epoch - 1, {"loss": row["loss"], "accuracy": row["accuracy"], **scores})
        return scores

    log = run.loop(
        lambda batch, progress: dict(zip(("loss", "accuracy"), train_step(*batch), strict=False)),
        batches, epochs=args.finetune_epochs, steps_per_epoch=steps, on_epoch_end=validate, description="stage 3",
    )
    if board is not None:
        board.on_train_end()
    history = {key: [row[key] for row in log.epochs] for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
    batches_logged = [(row["loss"], row["accuracy"]) for row in log.steps]
    epoch_ends = [steps * epoch for epoch in range(1, len(log.epochs) + 1)]
    details = {"first_trainable_layer": base.layers[index].name, "augment": bool(args.finetune_augment),
               "frozen_layers": index, "total_layers": len(base.layers), "regularization": regularization}
    return StageResult(history, batches_logged, epoch_ends, final["probabilities"], time.perf_counter() - started,
                       details, losses=final["losses"])
