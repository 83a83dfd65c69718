"""Flower recognition by deep transfer (textbook 12.5.1): cached bottlenecks, a new softmax layer, fine-tuning.

    python -m flowers.train                                   # textbook: Inception-v3, 299x299
    python -m flowers.train --backbone mobilenet_v2 \\
        --weights ../shared/weights/mobilenet_v2_1.0_224_no_top.h5 --finetune-epochs 2

Reads the folder written by ``python -m flowers.prepare``: ``train/`` and
``train_views/`` (the originals and their flipped / rotated copies) are trained
on, ``validation/`` (200 originals per class, never augmented) is measured.
The run goes through the chapter's stages, one function each:

1. Bottlenecks (``compute_bottlenecks``): the pretrained base turns every image
   into its bottleneck vector (global average pooling of the last feature
   map: 2048-d for Inception-v3), stored in the on-disk feature cache; a
   second run reads the vectors back and runs no network.
2. The new layer (``train_head``): dropout then a dense softmax, trained on the
   vectors; loss and accuracy are logged per iteration (figures 4-5).
3. Fine-tuning (``fine_tune``, with ``--finetune-epochs N``; off by default
   because it is slow on a CPU): the base from ``--unfreeze-from`` on is
   unfrozen and trained together with the new layer at a low learning rate,
   BatchNorm layers kept in inference mode. By default training uses the
   fixed offline views, so the frozen layers below the cut give the same
   output for an image in every epoch; that output (the cut map) is computed
   once, in the same pass as the bottleneck vectors, and cached, and each
   epoch runs only the unfrozen top: fast, but after a few epochs it has
   memorised those views. ``--finetune-augment`` instead draws random crops,
   mirrors and quarter turns of the training originals every step and runs
   them through the whole network: minutes per epoch on a CPU instead of
   seconds, made for longer runs (a GPU), and any layer may start the
   unfrozen part.
4. Evaluate and report (``report``): the whole network, pixels in, is saved
   with the run's files and Table 2.

Nothing is selected on the validation set: both stages run their fixed number
of epochs and the last weights are reported and saved.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import csv
import dataclasses
import time
from functools import partial
from pathlib import Path

import keras
import numpy as np

from common import cli, distribute
from common.augment import random_crop_flip_turn
from common.backbones import build_base, build_model, freeze_below, layer_index, weights_fingerprint
from common.data import make_dataset
from common.distribute import arrays_dataset, global_batch_mean, local_mean
from common.errors import UserError, main_guard
from common.features import FeatureCache, add_shard_argument, cache_namespace, extract_features, report_shard
from common.loop import train_loop
from common.predict import MODEL_FILE, write_labels
from common.reports import classification_metrics, finish_run, predictions_and_losses, print_summary, pyplot, save_figure
from common.training import SCHEDULES, learning_rate, save_config, set_seed, tensorboard_for_loop
from flowers.data import DEFAULT_DATA_DIR, OUTPUT_PARENT, PreparedFlowers, load_prepared
from flowers.table2 import row_from_metrics, write_table2


def parse_args(argv=None):
    parser = cli.parser_from_doc(__doc__)
    cli.add_common_arguments(
        parser,
        data_dir=DEFAULT_DATA_DIR,
        output_parent=OUTPUT_PARENT,
        backbone="inception_v3",
        image_size=299,
        epochs=30,
        batch_size=100,
        data_help="the folder written by flowers.prepare (train/, train_views/, validation/)",
        min_epochs=0,
    )
    head = parser.add_argument_group("stage 2: the new softmax layer on cached bottlenecks")
    head.add_argument("--dropout", type=float, default=0.5, help="dropout rate before the softmax (default: 0.5)")
    head.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    head.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="cosine",
        help="learning rate over the iterations of each stage: cosine decay to zero, or constant "
        "(default: cosine)",
    )
    tune = parser.add_argument_group("stage 3: fine-tuning the top blocks")
    tune.add_argument(
        "--finetune-epochs", type=int, default=0, help="epochs of fine-tuning; 0 skips stage 3 (default: 0)"
    )
    cli.add_unfreeze_argument(tune)
    tune.add_argument(
        "--finetune-learning-rate", type=float, default=1e-4, help="Adam learning rate (default: 1e-4)"
    )
    tune.add_argument("--finetune-batch-size", type=int, default=32, help="(default: 32)")
    tune.add_argument(
        "--finetune-augment",
        action="store_true",
        help="train stage 3 on random crops (50-100%% of the area), mirrors and 90-degree turns of the "
        "training originals, drawn anew each step, through the whole network, instead of on the cached "
        "fixed views: slower per epoch (no cache), but it does not memorise the views",
    )
    add_shard_argument(parser.add_argument_group("feature cache"))
    args = cli.resolve(parser.parse_args(argv))
    if not 0 <= args.dropout < 1:
        parser.error(f"--dropout must be in [0, 1), not {args.dropout}")
    if args.finetune_epochs < 0:
        parser.error("--finetune-epochs must be 0 or more")
    if args.finetune_epochs and str(args.unfreeze_from).lower() == "none":
        parser.error("--unfreeze-from none leaves nothing of the base to fine-tune; give a layer, or --finetune-epochs 0")
    return args


# ---------------------------------------------------------------- stage 1: bottlenecks
@dataclasses.dataclass
class Bottlenecks:
    """Stage 1's output: per kept image its bottleneck vector (and its cut map when stage 3 needs one)."""

    train: np.ndarray
    validation: np.ndarray
    train_labels: np.ndarray
    validation_labels: np.ndarray
    kept_train: np.ndarray  # indices into the prepared training paths (unreadable images are left out)
    kept_validation: np.ndarray
    maps_train: np.ndarray | None
    maps_validation: np.ndarray | None
    computed: int
    reused: int
    seconds: float
    skipped: list


def split_base(base: keras.Model, first_trainable) -> tuple[keras.Model, keras.Model, str]:
    """(bottom, top, name): the frozen layers before ``first_trainable``, the unfrozen rest, and where they meet.

    Works at a block boundary, where one tensor carries everything the top
    needs; a layer inside a block is refused.
    """
    index = layer_index(base, first_trainable)
    name = base.layers[min(index, len(base.layers) - 1)].name
    cut = base.input if index == 0 else base.layers[index].input
    if isinstance(cut, (list, tuple)):
        raise UserError(f"--unfreeze-from {name} takes several inputs; choose the first layer of a block")
    try:
        top = keras.Model(cut, base.output, name=f"{base.name}_top")
        inside = {layer.name for layer in top.layers if not isinstance(layer, keras.layers.InputLayer)}
    except ValueError:  # the output also depends on tensors before the cut
        inside = set()
    expected = {layer.name for layer in base.layers[index:] if not isinstance(layer, keras.layers.InputLayer)}
    if inside != expected:
        raise UserError(
            f"--unfreeze-from {name} is not a block boundary: layers after it also read layers before it; "
            "choose the first layer of a block (for example mixed9 for inception_v3, block_14_expand for "
            "mobilenet_v2)"
        )
    bottom = keras.Model(base.input, cut, name=f"{base.name}_bottom")
    return bottom, top, name


def cut_point(args, base: keras.Model):
    """Where stage 3 on cached cut maps splits the base, or None (no stage 3, or ``--finetune-augment``).

    A layer that does not exist, or one inside a block, is refused here,
    before any long work.
    """
    if not args.finetune_epochs:
        return None
    if args.finetune_augment:
        layer_index(base, args.unfreeze_from)  # any layer will do; it has to exist
        return None
    return split_base(base, args.unfreeze_from)


def announce_cut_maps(first_trainable: str, map_shape, images: int) -> None:
    """Say how much the stage-3 cut maps will hold before computing them.

    They sit on disk in the cache and in memory during stage 3; from an early
    layer (``--unfreeze-from Conv1`` caches the preprocessed pixels) that is
    gigabytes, which a user should learn before the extraction, not after.
    """
    values = int(np.prod(map_shape))
    gigabytes = values * 4 * images / 1e9
    shape = "x".join(str(int(d)) for d in map_shape)
    print(
        f"stage 3 caches what the frozen layers below {first_trainable} output: {shape} = {values:,} values "
        f"per image, {gigabytes:.2f} GB for {images} images (on disk in the cache, and in memory)"
    )


def compute_bottlenecks(args, data: PreparedFlowers, base: keras.Model, cut=None) -> Bottlenecks:
    """Stage 1: every image through the frozen base once; a second run reads the results back from the cache.

    ``cut`` is ``split_base``'s ``(bottom, top, first trainable layer)`` when
    stage 3 trains on cached cut maps: the pass then also keeps each image's
    cut map, flattened behind its vector.
    """
    started = time.perf_counter()
    freeze_below(base, "none")
    namespace = cache_namespace(args.backbone, weights_fingerprint(base), args.image_size, "avg")
    if cut is None:
        extractor, _ = build_model(args.backbone, base=base, pooling="avg", name="bottleneck")
    else:
        bottom, top, first_trainable = cut
        namespace["with_cut_map"] = first_trainable
        announce_cut_maps(first_trainable, top.input_shape[1:], len(data.train_paths) + len(data.validation_paths))

        def vector_and_map(maps):
            vector = keras.layers.GlobalAveragePooling2D()(top(maps, training=False))
            return keras.layers.Concatenate()([vector, keras.layers.Flatten()(maps)])

        extractor, _ = build_model(args.backbone, base=bottom, head=vector_and_map, name="bottleneck_and_cut_map")
    cache = FeatureCache(args.cache_dir, namespace)
    train, validation = (
        extract_features(extractor, paths, cache, args.image_size, batch_size=32, description=f"bottlenecks ({name})",
                         shard=args.shard)
        for name, paths in (("train", data.train_paths), ("validation", data.validation_paths))
    )
    if args.shard:
        return report_shard(args.shard, cache, train, validation)
    seconds = time.perf_counter() - started
    computed, reused = train.computed + validation.computed, train.reused + validation.reused
    print(f"bottlenecks: {computed} computed, {reused} read from {cache.directory} ({seconds:.1f} s)")
    dim = int(base.output_shape[-1])  # channels of the last map: the bottleneck's length
    maps = {}
    if cut is not None:
        shape = tuple(int(d) for d in cut[1].input_shape[1:])
        maps = {name: e.features[:, dim:].reshape((-1, *shape)) for name, e in (("train", train), ("validation", validation))}
    return Bottlenecks(
        train=train.features[:, :dim],
        validation=validation.features[:, :dim],
        train_labels=data.train_labels[train.kept],
        validation_labels=data.validation_labels[validation.kept],
        kept_train=train.kept,
        kept_validation=validation.kept,
        maps_train=maps.get("train"),
        maps_validation=maps.get("validation"),
        computed=computed,
        reused=reused,
        seconds=seconds,
        skipped=train.skipped + validation.skipped,
    )


# ---------------------------------------------------------------- stage 2: the new softmax layer
@dataclasses.dataclass
class StageResult:
    """What a training stage leaves for the report."""

    history: dict  # per epoch: loss and accuracy (means of the epoch's batch values), val_loss, val_accuracy
    batches: list  # per iteration: (loss, accuracy) of that one batch
    epoch_ends: list  # the iteration (counted within the stage, from 1) that ends each epoch
    probabilities: np.ndarray  # the final model's validation probabilities
    seconds: float
    details: dict = dataclasses.field(default_factory=dict)  # what metrics.json records about the stage
    losses: np.ndarray | None = None  # the final model's per-example validation losses, the last logged val_loss's


def build_head(feature_dim: int, classes: int, dropout: float) -> keras.Model:
    """The textbook's new layer: dropout then a dense softmax, on bottleneck vectors."""
    inputs = keras.Input((feature_dim,), name="bottleneck")
    x = keras.layers.Dropout(dropout, name="head_dropout")(inputs)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head_predictions")(x)
    return keras.Model(inputs, outputs, name="flower_head")


def make_train_step(model: keras.Model, optimizer):
    """One gradient step on a batch, returning that batch's loss and accuracy; both stages train with it."""
    import tensorflow as tf

    optimizer.build(model.trainable_variables)  # its variables exist before any graph is traced

    def step(features, labels):
        labels = tf.cast(labels, tf.int32)
        with tf.GradientTape() as tape:
            probabilities = model(features, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            loss = global_batch_mean(per_example)  # the batch mean; under --distribute, over the global batch
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=False))
        correct = tf.equal(tf.argmax(probabilities, axis=-1, output_type=tf.int32), labels)
        return local_mean(per_example), local_mean(correct)

    return step


def iterations(samples: int, batch_size: int, epochs: int) -> int:
    return -(-samples // batch_size) * epochs


def validation_scores(labels, probabilities, losses=None) -> dict:
    """An epoch's validation loss and accuracy, with the loss Model.fit would log (Keras' cross-entropy).

    Keras' loss rather than ``sklearn.metrics.log_loss`` (which scores the
    final models): stage 2 computes it inside its compiled validation call,
    where log_loss (5-14 ms a call, measured on 1000 x 5 probabilities)
    would cost a tenth of the cached stage 2's 3 s over 30 epochs; both
    stages log the same quantity. ``losses``: the per-example losses from
    the model's output tensor (``predictions_and_losses``), exact from the
    logits where a float32 probability has rounded to 0 or 1; metrics.json
    averages the same ones.
    """
    if losses is None:
        losses = keras.losses.sparse_categorical_crossentropy(np.asarray(labels), probabilities)
        losses = keras.ops.convert_to_numpy(losses)
    return {
        "val_loss": float(np.mean(np.asarray(losses, np.float64))),  # the mean metrics.json reports (issue 24.5)
        "val_accuracy": float(np.mean(np.argmax(probabilities, axis=1) == labels)),
    }


def fit_on_vectors(model, optimizer, x, y, x_val, y_val, *, epochs, batch_size, seed, board=None):
    """Train a small model on in-memory vectors, one compiled graph call per epoch.

    ``Model.fit`` (and ``common.loop.train_loop``) spend milliseconds of
    Python per iteration; for a single dense layer that is nearly all the time
    (10 s through ``Model.fit`` for the textbook's 2430 iterations, against 3 s
    here), which would hide what the feature cache buys on a second run. Here
    a whole epoch runs as one ``tf.function`` that still records every
    iteration's batch loss and accuracy for the per-iteration figures.
    """
    import tensorflow as tf

    started = time.perf_counter()
    x, y = tf.constant(x, tf.float32), tf.constant(np.asarray(y), tf.int32)
    samples = int(x.shape[0])
    steps = iterations(samples, batch_size, epochs=1)
    train_step = make_train_step(model, optimizer)

    @tf.function(reduce_retracing=True)
    def run_epoch(order):
        losses = tf.TensorArray(tf.float32, size=steps)
        accuracies = tf.TensorArray(tf.float32, size=steps)
        for step in tf.range(steps):
            batch = order[step * batch_size : (step + 1) * batch_size]
            loss, accuracy = train_step(tf.gather(x, batch), tf.gather(y, batch))
            losses = losses.write(step, loss)
            accuracies = accuracies.write(step, accuracy)
        return losses.stack(), accuracies.stack()

    x_val_tensor, y_val_tensor = tf.constant(x_val, tf.float32), tf.constant(np.asarray(y_val), tf.int32)

    @tf.function
    def validate():  # one graph call: Model.predict costs ~0.1 s a call, an eager loss ~4 ms
        probabilities = model(x_val_tensor, training=False)
        return probabilities, keras.losses.sparse_categorical_crossentropy(y_val_tensor, probabilities)

    shuffler = np.random.default_rng(seed)
    history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    batches, epoch_ends = [], []
    for epoch in range(epochs):
        losses, accuracies = (t.numpy() for t in run_epoch(tf.constant(shuffler.permutation(samples), tf.int32)))
        batches.extend(zip(losses.tolist(), accuracies.tolist(), strict=False))
        epoch_ends.append(len(batches))
        probabilities, val_losses = (t.numpy() for t in validate())
        scores = {"loss": float(losses.mean()), "accuracy": float(accuracies.mean()),
                  **validation_scores(y_val, probabilities, val_losses)}
        for key, value in scores.items():
            history[key].append(value)
        if board is not None:
            board.on_epoch_end(epoch, scores)
        print(
            f"Epoch {epoch + 1}/{epochs} - {steps} iterations - "
            + " - ".join(f"{key}: {value:.4f}" for key, value in scores.items()),
            flush=True,  # one line per epoch, seen as it happens even when the output goes to a file
        )
    probabilities, val_losses = (t.numpy() for t in validate())  # after --epochs 0, the untrained head is reported
    return StageResult(history, batches, epoch_ends, probabilities, time.perf_counter() - started, losses=val_losses)


def fit_on_vectors_replicated(model, optimizer, x, y, x_val, y_val, *, epochs, batch_size, seed, board,
                              distribution):
    """Stage 2 under ``--distribute``: the same step through the shared loop, each replica on its part of a batch.

    The one-call-per-epoch speed-up of ``fit_on_vectors`` is a single-device
    trick; under a strategy every step is ``strategy.run`` of the same
    ``make_train_step``, and the batches are the ones one device would draw
    (``distribute.arrays_dataset``).
    """
    started = time.perf_counter()
    train_step = make_train_step(model, optimizer)
    batches = distribution.dataset(lambda _, shard: arrays_dataset(x, y, batch_size, seed, shard, epochs), batch_size)
    probabilities = {}

    def validate(epoch, row):
        probabilities["last"], probabilities["losses"] = predictions_and_losses(
            model, (x_val, y_val), loss=keras.losses.sparse_categorical_crossentropy)
        scores = validation_scores(y_val, probabilities["last"], probabilities["losses"])
        if board is not None:
            board.on_epoch_end(epoch - 1, {"loss": row["loss"], "accuracy": row["accuracy"], **scores})
        return scores

    log = train_loop(lambda batch, progress: dict(zip(("loss", "accuracy"), train_step(*batch), strict=False)), batches,
                     epochs=epochs, steps_per_epoch=iterations(len(x), batch_size, 1), on_epoch_end=validate,
                     description="stage 2", strategy=distribution.strategy)
    history = {key: [row[key] for row in log.epochs] for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
    steps = iterations(len(x), batch_size, 1)
    if "last" not in probabilities:  # --epochs 0
        probabilities["last"], probabilities["losses"] = predictions_and_losses(
            model, (x_val, y_val), loss=keras.losses.sparse_categorical_crossentropy)
    return StageResult(history, [(row["loss"], row["accuracy"]) for row in log.steps],
                       [steps * epoch for epoch in range(1, len(log.epochs) + 1)], probabilities["last"],
                       time.perf_counter() - started, losses=probabilities["losses"])


def train_head(args, bottlenecks: Bottlenecks, class_names, run_dir, distribution) -> tuple[keras.Model, StageResult]:
    """Stage 2: the new softmax layer on the cached vectors, Adam with the chosen schedule."""
    steps = iterations(len(bottlenecks.train), args.batch_size, args.epochs)
    rate = distribution.learning_rate(args.learning_rate, args.scale_learning_rate)
    head = build_head(bottlenecks.train.shape[1], len(class_names), args.dropout)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate(rate, steps, args.schedule))
    board = tensorboard_for_loop(run_dir, head, optimizer) if args.tensorboard else None
    fit = fit_on_vectors if distribution.name == "none" else partial(fit_on_vectors_replicated, distribution=distribution)
    result = fit(
        head, optimizer, bottlenecks.train, bottlenecks.train_labels, bottlenecks.validation,
        bottlenecks.validation_labels, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, board=board,
    )
    if board is not None:
        board.on_train_end()
    result.details = {
        "bottleneck_seconds": round(bottlenecks.seconds, 2),
        "head_seconds": round(result.seconds, 2),
        "bottlenecks_computed": bottlenecks.computed,
        "bottlenecks_reused": bottlenecks.reused,
    }
    result.seconds += bottlenecks.seconds  # stage 2 is the bottlenecks and the new layer
    return head, result


# ---------------------------------------------------------------- stage 3: fine-tuning from a layer
def shuffled_batches(features: np.ndarray, labels: np.ndarray, batch_size: int, seed: int):
    """Endless (features, labels) batches of in-memory arrays, reshuffled every epoch."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(features))
        for first in range(0, len(order), batch_size):
            chosen = order[first : first + batch_size]
            yield features[chosen], labels[chosen]


def random_crops(paths, labels, image_size: int, batch_size: int, seed: int, shard=None):
    """Stage 3 with ``--finetune-augment``: random crops, mirrors and turns, new every epoch.

    Each photo is first squashed to 8/7 of the input size (256 for 224), as
    the bottlenecks squash it to the input size, so a crop of the whole area
    is the validation view at a slightly higher resolution.
    """
    decoded = round(image_size * 8 / 7)
    return make_dataset(
        paths, labels, (decoded, decoded), batch_size, shuffle=True, seed=seed,
        transform=lambda image, image_seed: random_crop_flip_turn(image, image_size, seed=image_seed), shard=shard,
    ).repeat()


def fine_tune(args, data: PreparedFlowers, bottlenecks: Bottlenecks, base, cut, head, class_names, run_dir,
              distribution):
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
        if distribution.name == "none":
            batches = shuffled_batches(bottlenecks.maps_train, bottlenecks.train_labels, batch_size, args.seed)
        else:
            batches = distribution.dataset(lambda _, shard: arrays_dataset(
                bottlenecks.maps_train, bottlenecks.train_labels, batch_size, args.seed, shard, args.finetune_epochs),
                batch_size)
        validation = (bottlenecks.maps_validation, y_validation)
    else:
        tuner, _ = build_model(args.backbone, base=base, pooling="avg", head=head, name=f"flowers_{args.backbone}")
        originals = bottlenecks.kept_train[data.original[bottlenecks.kept_train]]
        samples = len(originals)
        batches = distribution.dataset(lambda size, shard: random_crops(
            [data.train_paths[i] for i in originals], data.train_labels[originals],
            args.image_size, size, args.seed, shard,
        ), batch_size)
        validation = make_dataset(
            [data.validation_paths[i] for i in bottlenecks.kept_validation], y_validation,
            (args.image_size, args.image_size), batch_size=64,
        )
        print(f"stage 3: new random crops of the {samples} training originals every epoch")
    steps = iterations(samples, batch_size, epochs=1)
    rate = distribution.learning_rate(args.finetune_learning_rate, args.scale_learning_rate)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate(rate, steps * args.finetune_epochs, args.schedule))
    train_step = make_train_step(tuner, optimizer)
    trainable = sum(int(np.prod(w.shape)) for w in tuner.trainable_weights)
    print(
        f"stage 3: unfreezing {base.layers[index].name} onwards ({len(base.layers) - index} of "
        f"{len(base.layers)} layers, {trainable:,} trainable weights) for {args.finetune_epochs} epochs"
    )
    board = tensorboard_for_loop(run_dir, tuner, optimizer) if args.tensorboard else None
    final = {}

    def validate(epoch, row):
        final["probabilities"], final["losses"] = predictions_and_losses(
            tuner, validation, loss=keras.losses.sparse_categorical_crossentropy, batch_size=64)
        scores = validation_scores(y_validation, final["probabilities"], final["losses"])
        if board is not None:
            board.on_epoch_end(args.epochs + epoch - 1, {"loss": row["loss"], "accuracy": row["accuracy"], **scores})
        return scores

    log = train_loop(
        lambda batch, progress: dict(zip(("loss", "accuracy"), train_step(*batch), strict=False)),
        batches, epochs=args.finetune_epochs, steps_per_epoch=steps, on_epoch_end=validate, description="stage 3",
        strategy=None if distribution.name == "none" else distribution.strategy,
    )
    if board is not None:
        board.on_train_end()
    history = {key: [row[key] for row in log.epochs] for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
    batches_logged = [(row["loss"], row["accuracy"]) for row in log.steps]
    epoch_ends = [steps * epoch for epoch in range(1, len(log.epochs) + 1)]
    details = {"first_trainable_layer": base.layers[index].name, "augment": bool(args.finetune_augment),
               "frozen_layers": index, "total_layers": len(base.layers)}
    return StageResult(history, batches_logged, epoch_ends, final["probabilities"], time.perf_counter() - started,
                       details, losses=final["losses"])


# ---------------------------------------------------------------- evaluate and report
def write_iterations(path, stages: dict[str, StageResult]) -> list[dict]:
    """``iterations.csv``: every training iteration of every stage, that one batch's loss and accuracy."""
    rows = []
    for stage, result in stages.items():
        for loss, accuracy in result.batches:
            rows.append({"iteration": len(rows) + 1, "stage": stage, "batch_loss": loss, "batch_accuracy": accuracy})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["iteration", "stage", "batch_loss", "batch_accuracy"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def epoch_history(stages: dict[str, StageResult]) -> dict[str, list]:
    """Both stages' epochs in one history: epochs counted on across stages, the stage and last iteration beside."""
    history = {"epoch": [], "stage": [], "iteration": [], "loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    offset = 0
    for stage, result in stages.items():
        for epoch, end in enumerate(result.epoch_ends):
            history["epoch"].append(len(history["epoch"]) + 1)
            history["stage"].append(stage)
            history["iteration"].append(offset + end)
            for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
                history[key].append(result.history[key][epoch])
        offset += len(result.batches)
    return history


def plot_against_iterations(rows: list[dict], history: dict, run_dir: Path) -> None:
    """The textbook's figures 4 and 5: accuracy and loss against training iterations."""
    plt = pyplot()
    iteration = np.array([row["iteration"] for row in rows])
    starts = [row["iteration"] - 1 for previous, row in zip(rows, rows[1:], strict=False) if row["stage"] != previous["stage"]]
    for metric in ("accuracy", "loss"):
        values = np.array([row[f"batch_{metric}"] for row in rows], dtype=float)
        figure, axis = plt.subplots(figsize=(7, 4))
        axis.plot(iteration, values, color="tab:blue", alpha=0.25, linewidth=0.8, label=f"train {metric} (batch)")
        window = max(1, len(values) // 50)
        if len(values) > window:
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            axis.plot(iteration[window - 1 :], smooth, color="tab:blue", label=f"train {metric} (running mean)")
        axis.plot(history["iteration"], history[f"val_{metric}"], "o--", color="tab:orange", label=f"validation {metric}")
        for boundary in starts:
            axis.axvline(boundary, color="gray", linestyle=":", linewidth=1)
        axis.set_xlabel("iteration")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
        save_figure(figure, run_dir / f"{metric}.png")


def report(args, run_dir: Path, model, bottlenecks: Bottlenecks, stages: dict, class_names, started) -> dict:
    """Save the whole network (pixels in); score each stage's final model on the validation originals;
    write metrics, curves, the per-iteration figures and Table 2."""
    model.save(run_dir / MODEL_FILE)
    write_labels(run_dir, class_names)
    scored = {}
    for stage, result in stages.items():
        # the stage's last epoch, its val_loss the mean of the same per-example losses history.csv logged
        scored[stage] = classification_metrics(bottlenecks.validation_labels, result.probabilities, class_names,
                                               result.losses)
        scored[stage].update(
            seconds=round(result.seconds, 2), iterations=len(result.batches), epochs=len(result.epoch_ends),
            **result.details,
        )
        print(f"{stage}: val_accuracy {scored[stage]['val_accuracy']:.4f} ({result.seconds:.1f} s)")
    final_stage = list(stages)[-1]
    history = epoch_history(stages)
    rows = write_iterations(run_dir / "iterations.csv", stages)
    plot_against_iterations(rows, history, run_dir)
    metrics = {
        **{key: value for key, value in scored[final_stage].items() if key not in ("seconds", "iterations", "epochs")},
        "final_stage": final_stage,
        "stage2": scored["stage2"],
        "stage3": scored.get("stage3"),
        "n_train": int(len(bottlenecks.train_labels)),
        "n_val": int(len(bottlenecks.validation_labels)),
        "backbone": args.backbone,
        "weights": args.weights,
        "image_size": args.image_size,
        "seconds": round(time.perf_counter() - started, 2),
        "skipped": [list(item) for item in bottlenecks.skipped],
    }
    table = [row_from_metrics(f"this run: stage 2, {args.backbone} bottleneck + softmax", scored["stage2"])]
    if "stage3" in scored:
        table.append(row_from_metrics(f"this run: stage 3, fine-tuned from {scored['stage3']['first_trainable_layer']}", scored["stage3"]))
    write_table2(run_dir, table, class_names)
    finish_run(run_dir, history, metrics, title=f"flowers, {args.backbone}")
    print((run_dir / "table2.md").read_text())
    print_summary(run_dir, metrics)
    return metrics


@main_guard
def main(argv=None):
    args = parse_args(argv)
    with distribute.setup(args.distribute) as distribution, distribution.scope():
        return run(args, distribution)


def run(args, distribution):
    """The chapter's stages in order. Every model and optimizer is built under
    ``distribution``'s scope (``main``), so ``--distribute`` mirrors them."""
    set_seed(args.seed)
    started = time.perf_counter()
    data = load_prepared(args.data_dir)
    if not args.shard:  # a --shard run only fills the cache: no run folder
        run_dir = distribution.make_run_dir(args.output_dir, OUTPUT_PARENT, "train")
        save_config(run_dir, {**cli.config_of(args), **distribution.describe()})
    originals = int(data.original.sum())
    views = len(data.train_paths) - originals
    print(f"{len(data.train_paths)} training images ({originals} originals, {views} views), "
          f"{len(data.validation_paths)} validation images")
    if not views:
        print(f"note: {args.data_dir} has no train_views/: stage 2 trains on the originals alone "
              "(python -m flowers.prepare writes the textbook's flipped and rotated views)")

    base = build_base(args.backbone, args.weights, args.image_size)
    cut = cut_point(args, base)
    bottlenecks = compute_bottlenecks(args, data, base, cut)
    if args.shard:
        return bottlenecks  # compute_bottlenecks' report of this worker's part: nothing is trained
    stages = {}
    head, stages["stage2"] = train_head(args, bottlenecks, data.class_names, run_dir, distribution)
    if args.finetune_epochs:
        stages["stage3"] = fine_tune(args, data, bottlenecks, base, cut, head, data.class_names, run_dir, distribution)
    model, _ = build_model(args.backbone, base=base, pooling="avg", head=head, name=f"flowers_{args.backbone}")
    report(args, run_dir, model, bottlenecks, stages, data.class_names, started)
    # equal on every worker of a distributed run; a check that they trained the same model
    print(f"weights fingerprint: {weights_fingerprint(model)}")
    return run_dir


if __name__ == "__main__":
    main()
