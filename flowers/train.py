"""Flower recognition by deep transfer (textbook 12.5.1): cached bottlenecks, a new softmax layer, fine-tuning.

    python -m flowers.train                                   # textbook: Inception-v3, 299x299
    python -m flowers.train --backbone mobilenet_v2 \\
        --weights ../shared/weights/mobilenet_v2_1.0_224_no_top.h5 --finetune-epochs 2

Reads the folder written by ``python -m flowers.prepare``: ``train/`` and
``train_views/`` (the originals and their flipped / rotated copies) are trained
on, ``validation/`` (200 originals per class, never augmented) is measured.

Stage 2: the pretrained base turns every image into its bottleneck vector
(global average pooling of the last feature map: 2048-d for Inception-v3),
stored in the on-disk feature cache; a second run reads the vectors back and
runs no network. A new layer, dropout then a dense softmax, is trained on them,
and loss and accuracy are logged per iteration (the textbook's figures 4-5).

Stage 3 (``--finetune-epochs N``, off by default because it is slow on a CPU):
the top blocks of the base, from ``--finetune-from`` on, are unfrozen and
trained together with the new layer at a low learning rate, BatchNorm layers
kept in inference mode. By default training uses the fixed offline views (no
random augmentation), so the frozen layers below ``--finetune-from`` give the
same output for an image in every epoch; that output is computed once, in the
same pass as the bottleneck vectors, and cached, and each epoch runs only the
unfrozen top: fast, but after a few epochs it has memorised those views.
``--finetune-augment`` instead draws random crops, mirrors and quarter turns of
the training originals every step and runs them through the whole network:
minutes per epoch on a CPU instead of seconds, made for longer runs (a GPU),
and any layer may start the unfrozen part. The saved model is the whole
network, pixels in.

Nothing is selected on the validation set: both stages run their fixed number
of epochs and the last weights are reported and saved.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import csv
import sys
import time
from pathlib import Path

import keras
import numpy as np

from common import cli
from common.augment import random_crop_flip_turn
from common.backbones import BackbonePreprocess, build_base, weights_fingerprint
from common.data import load_image_folder, make_dataset
from common.errors import UserError, main_guard
from common.features import FeatureCache, cache_namespace, extract_features
from common.predict import MODEL_FILE, write_labels
from common.reports import classification_metrics, finish_run, print_summary
from common.training import SCHEDULES, BatchHistory, learning_rate, make_run_dir, save_config, set_seed
from flowers.table2 import row_from_metrics, write_table2

OUTPUT_PARENT = "runs/flowers"
DEFAULT_DATA_DIR = "data/flowers"
# Where fine-tuning starts: the first layer of the top Inception blocks the
# textbook retrains (mixed9, mixed10), and the last 7x7 stage of MobileNetV2
# (blocks 14-16 and the final 1x1 convolution).
FINETUNE_FROM = {"inception_v3": "mixed9", "mobilenet_v2": "block_14_expand", "vgg16": "block5_conv1"}


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
    tune.add_argument(
        "--finetune-from",
        default=None,
        help="first layer to unfreeze (default: "
        + ", ".join(f"{name} for {backbone}" for backbone, name in FINETUNE_FROM.items())
        + ")",
    )
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
    args = cli.resolve(parser.parse_args(argv))
    if not 0 <= args.dropout < 1:
        parser.error(f"--dropout must be in [0, 1), not {args.dropout}")
    if args.finetune_epochs < 0:
        parser.error("--finetune-epochs must be 0 or more")
    if args.finetune_from is None:
        args.finetune_from = FINETUNE_FROM[args.backbone]
    return args


def load_prepared(data_dir):
    """Training paths (originals and views), validation paths, labels, class names, and which are originals.

    The last is a mask over the training paths: ``--finetune-augment`` draws
    its own random views of the originals and leaves the offline copies out.
    """
    data_dir = Path(data_dir)
    if not (data_dir / "train").is_dir() or not (data_dir / "validation").is_dir():
        raise UserError(
            f"{data_dir} has no train/ and validation/ folders; make them first with "
            f"python -m flowers.prepare --data-dir {data_dir} [--from /path/to/flower_photos]"
        )
    train = load_image_folder(data_dir / "train", description="training folder")
    parts = [train]
    if (data_dir / "train_views").is_dir():
        parts.append(load_image_folder(data_dir / "train_views", train.class_names, description="views folder"))
    validation = load_image_folder(data_dir / "validation", train.class_names, description="validation folder")
    train_paths = [p for part in parts for p in part.paths]
    train_labels = np.concatenate([part.labels for part in parts])
    original = np.arange(len(train_paths)) < len(train.paths)
    return train_paths, train_labels, validation.paths, validation.labels, train.class_names, original


def layer_index(base: keras.Model, name: str) -> int:
    names = [layer.name for layer in base.layers]
    if name not in names:
        raise UserError(f"{base.name} has no layer named {name!r} (--finetune-from)")
    return names.index(name)


def split_base(base: keras.Model, first_trainable: str):
    """(bottom, top): the frozen layers up to ``first_trainable`` and the unfrozen rest.

    Works at a block boundary, where one tensor carries everything the top
    needs; the check below refuses a layer inside a block.
    """
    names = [layer.name for layer in base.layers]
    index = layer_index(base, first_trainable)
    cut = base.get_layer(first_trainable).input
    if isinstance(cut, (list, tuple)):
        raise UserError(f"--finetune-from {first_trainable} takes several inputs; choose the first layer of a block")
    try:
        top = keras.Model(cut, base.output, name=f"{base.name}_top")
        got = {layer.name for layer in top.layers if not isinstance(layer, keras.layers.InputLayer)}
    except ValueError:  # the output also depends on tensors before the cut
        got = set()
    if got != set(names[index:]):
        raise UserError(
            f"--finetune-from {first_trainable} is not a block boundary: layers after it also read "
            "layers before it; choose the first layer of a block (" + ", ".join(FINETUNE_FROM.values()) + ")"
        )
    bottom = keras.Model(base.input, cut, name=f"{base.name}_bottom")
    return bottom, top, index


def announce_cut_maps(first_trainable: str, map_shape, images: int) -> None:
    """Say how much the stage-3 cut maps will hold before computing them.

    They sit on disk in the cache and in memory during stage 3; from an early
    layer (``--finetune-from Conv1`` caches the preprocessed pixels) that is
    gigabytes, which a user should learn before the extraction, not after.
    """
    values = int(np.prod(map_shape))
    gigabytes = values * 4 * images / 1e9
    shape = "x".join(str(int(d)) for d in map_shape)
    print(
        f"stage 3 caches what the frozen layers below {first_trainable} output: {shape} = {values:,} values "
        f"per image, {gigabytes:.2f} GB for {images} images (on disk in the cache, and in memory)"
    )


def bottleneck_model(backbone: str, base: keras.Model, bottom, top):
    """The stage-2 extractor: vector only, or vector + flattened cut map when stage 3 will run."""
    size = base.input_shape[1]
    pixels = keras.Input((size, size, 3), name="pixels")
    x = BackbonePreprocess(backbone)(pixels)
    if bottom is None:
        vector = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
        return keras.Model(pixels, vector, name="bottleneck")
    maps = bottom(x, training=False)
    vector = keras.layers.GlobalAveragePooling2D()(top(maps, training=False))
    outputs = keras.layers.Concatenate()([vector, keras.layers.Flatten()(maps)])
    return keras.Model(pixels, outputs, name="bottleneck_and_cut_map")


def build_head(feature_dim: int, classes: int, dropout: float):
    """The textbook's new layer: dropout then a dense softmax, on bottleneck vectors."""
    inputs = keras.Input((feature_dim,), name="bottleneck")
    x = keras.layers.Dropout(dropout, name="head_dropout")(inputs)
    outputs = keras.layers.Dense(classes, activation="softmax", name="head_predictions")(x)
    return keras.Model(inputs, outputs, name="flower_head")


def random_crops(paths, labels, image_size: int, batch_size: int, seed: int):
    """Stage 3 with ``--finetune-augment``: random crops, mirrors and turns, new every epoch.

    Each photo is first squashed to 8/7 of the input size (256 for 224), as
    the bottlenecks squash it to the input size, so a crop of the whole area
    is the validation view at a slightly higher resolution.
    """
    decoded = round(image_size * 8 / 7)
    return make_dataset(
        paths, labels, (decoded, decoded), batch_size, shuffle=True, seed=seed,
        transform=lambda image: random_crop_flip_turn(image, image_size),
    )


def full_model(backbone: str, base: keras.Model, head: keras.Model, size: int):
    """Raw RGB pixels (0..255) to class probabilities; what is saved and what predict.py loads."""
    pixels = keras.Input((size, size, 3), name="pixels")
    x = BackbonePreprocess(backbone)(pixels)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D(name="bottleneck_pool")(x)
    x = head.get_layer("head_dropout")(x)
    outputs = head.get_layer("head_predictions")(x)
    return keras.Model(pixels, outputs, name=f"flowers_{backbone}")


class IterationLog(BatchHistory):
    """BatchHistory that keeps counting across stages and remembers each epoch's last iteration."""

    def __init__(self, stage: str, start: int = 0, rows: list | None = None):
        super().__init__()
        self.stage = stage
        self._seen = start
        self.iterations = rows if rows is not None else []
        self.epoch_ends: list[int] = []

    def on_train_batch_end(self, batch, logs=None):
        super().on_train_batch_end(batch, logs)
        self.iterations[-1]["stage"] = self.stage

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_ends.append(self._seen)


def fit_on_vectors(model, optimizer, x, y, x_val, y_val, epochs: int, batch_size: int, seed: int, rows: list):
    """Train a small model on in-memory vectors, one compiled graph call per epoch.

    ``Model.fit`` spends about 4 ms of Python per iteration; for a single dense
    layer that is nearly all the time (10 s for the textbook's 2430
    iterations), which would hide what the feature cache buys on a second run.
    Here a whole epoch runs as one ``tf.function`` that still records every
    iteration's batch loss and accuracy for the per-iteration figures. Returns
    the per-epoch history (Keras' keys), the iteration that ends each epoch and
    the final model's validation probabilities.
    """
    import tensorflow as tf

    x = tf.constant(x, tf.float32)
    y = tf.constant(np.asarray(y), tf.int32)
    samples = int(x.shape[0])
    steps = iterations(samples, batch_size, epochs=1)
    optimizer.build(model.trainable_variables)

    @tf.function(reduce_retracing=True)
    def run_epoch(order):
        losses = tf.TensorArray(tf.float32, size=steps)
        accuracies = tf.TensorArray(tf.float32, size=steps)
        for step in tf.range(steps):
            batch = order[step * batch_size : (step + 1) * batch_size]
            features, labels = tf.gather(x, batch), tf.gather(y, batch)
            with tf.GradientTape() as tape:
                probabilities = model(features, training=True)
                loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
            gradients = tape.gradient(loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            correct = tf.cast(tf.equal(tf.argmax(probabilities, axis=-1, output_type=tf.int32), labels), tf.float32)
            losses = losses.write(step, loss)
            accuracies = accuracies.write(step, tf.reduce_mean(correct))
        return losses.stack(), accuracies.stack()

    x_val_tensor = tf.constant(x_val, tf.float32)
    predict_validation = tf.function(lambda: model(x_val_tensor, training=False))  # Model.predict: ~0.1 s a call
    shuffler = np.random.default_rng(seed)
    history = {"accuracy": [], "loss": [], "val_accuracy": [], "val_loss": []}
    epoch_ends = []
    seen = len(rows)
    sizes = np.diff(np.minimum(np.arange(steps + 1) * batch_size, samples))
    probabilities = None
    for epoch in range(epochs):
        losses, accuracies = (t.numpy() for t in run_epoch(tf.constant(shuffler.permutation(samples), tf.int32)))
        for loss, accuracy in zip(losses, accuracies):
            seen += 1
            rows.append({"iteration": seen, "stage": "stage2", "loss": float(loss), "accuracy": float(accuracy)})
        epoch_ends.append(seen)
        probabilities = predict_validation().numpy()
        history["loss"].append(float(np.average(losses, weights=sizes)))
        history["accuracy"].append(float(np.average(accuracies, weights=sizes)))
        history["val_loss"].append(cross_entropy(y_val, probabilities))
        history["val_accuracy"].append(float(np.mean(probabilities.argmax(axis=1) == y_val)))
        print(
            f"Epoch {epoch + 1}/{epochs} - {steps} iterations - accuracy: {history['accuracy'][-1]:.4f} - "
            f"loss: {history['loss'][-1]:.4f} - val_accuracy: {history['val_accuracy'][-1]:.4f} - "
            f"val_loss: {history['val_loss'][-1]:.4f}",
            flush=True,  # one line per epoch, seen as it happens even when the output goes to a file
        )
    if probabilities is None:  # --epochs 0: the untrained head is still reported
        probabilities = predict_validation().numpy()
    return history, epoch_ends, probabilities


def iterations(samples: int, batch_size: int, epochs: int) -> int:
    return -(-samples // batch_size) * epochs


def cross_entropy(labels, probabilities) -> float:
    picked = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.clip(picked, 1e-7, 1.0))))


def write_iterations(path, rows: list[dict]) -> None:
    keys = ["iteration", "stage", "loss", "accuracy"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def plot_against_iterations(rows: list[dict], epochs: dict, run_dir: Path) -> None:
    """The textbook's figures 4 and 5: accuracy and loss against training iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iterations = np.array([row["iteration"] for row in rows])
    for metric, filename in (("accuracy", "accuracy.png"), ("loss", "loss.png")):
        values = np.array([row.get(metric, np.nan) for row in rows], dtype=float)
        figure, axis = plt.subplots(figsize=(7, 4))
        axis.plot(iterations, values, color="tab:blue", alpha=0.25, linewidth=0.8, label=f"train {metric} (batch)")
        window = max(1, len(values) // 50)
        if len(values) > window:
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            axis.plot(iterations[window - 1 :], smooth, color="tab:blue", label=f"train {metric} (running mean)")
        axis.plot(epochs["iteration"], epochs[f"val_{metric}"], "o--", color="tab:orange", label=f"validation {metric}")
        for boundary in epochs.get("stage_starts", []):
            axis.axvline(boundary, color="gray", linestyle=":", linewidth=1)
        axis.set_xlabel("iteration")
        axis.set_ylabel(metric)
        axis.grid(alpha=0.3)
        axis.legend()
        figure.tight_layout()
        figure.savefig(run_dir / filename, dpi=100)
        plt.close(figure)


@main_guard
def main(argv=None):
    args = parse_args(argv)
    set_seed(args.seed)
    started = time.perf_counter()
    train_paths, y_train, validation_paths, y_validation, class_names, original = load_prepared(args.data_dir)
    run_dir = make_run_dir(args.output_dir, OUTPUT_PARENT, "train")
    save_config(run_dir, cli.config_of(args))
    classes = len(class_names)
    print(f"{len(train_paths)} training images (originals and views), {len(validation_paths)} validation images")

    # ---- Stage 2: bottleneck vectors, cached, then the new softmax layer.
    stage2_start = time.perf_counter()
    base = build_base(args.backbone, args.weights, args.image_size)
    base.trainable = False
    finetune = args.finetune_epochs > 0
    cut_maps = finetune and not args.finetune_augment  # stage 3 on cached cut maps
    bottom = top = first_trainable = None
    if cut_maps:
        bottom, top, first_trainable = split_base(base, args.finetune_from)
    elif finetune:
        first_trainable = layer_index(base, args.finetune_from)
    extractor = bottleneck_model(args.backbone, base, bottom, top)
    namespace = cache_namespace(args.backbone, weights_fingerprint(base), args.image_size, "avg")
    if cut_maps:
        namespace["with_cut_map"] = args.finetune_from
        announce_cut_maps(args.finetune_from, top.input_shape[1:], len(train_paths) + len(validation_paths))
    cache = FeatureCache(args.cache_dir, namespace)
    feature_dim = int(base.output_shape[-1])  # channels of the last map: the bottleneck's length

    extractions = {}
    for name, paths in (("train", train_paths), ("validation", validation_paths)):
        extractions[name] = extract_features(
            extractor, paths, cache, args.image_size, batch_size=32, description=f"bottlenecks ({name})"
        )
    bottleneck_seconds = time.perf_counter() - stage2_start
    computed = sum(e.computed for e in extractions.values())
    reused = sum(e.reused for e in extractions.values())
    print(f"bottlenecks: {computed} computed, {reused} read from {cache.directory} ({bottleneck_seconds:.1f} s)")
    y_train = y_train[extractions["train"].kept]
    y_validation = y_validation[extractions["validation"].kept]
    x_train_all = extractions["train"].features
    x_validation_all = extractions["validation"].features
    x_train, x_validation = x_train_all[:, :feature_dim], x_validation_all[:, :feature_dim]

    head = build_head(feature_dim, classes, args.dropout)
    optimizer = keras.optimizers.Adam(
        learning_rate=learning_rate(
            args.learning_rate, iterations(len(x_train), args.batch_size, args.epochs), args.schedule
        )
    )
    iteration_rows: list[dict] = []
    head_start = time.perf_counter()
    history2, epoch_ends2, probabilities = fit_on_vectors(
        head, optimizer, x_train, y_train, x_validation, y_validation,
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, rows=iteration_rows,
    )
    stage2_iterations = epoch_ends2[-1] if epoch_ends2 else 0
    head_seconds = time.perf_counter() - head_start
    stage2_seconds = time.perf_counter() - stage2_start
    stage2 = classification_metrics(y_validation, probabilities, class_names)
    stage2.update(
        val_loss=cross_entropy(y_validation, probabilities),
        seconds=round(stage2_seconds, 2),
        bottleneck_seconds=round(bottleneck_seconds, 2),
        head_seconds=round(head_seconds, 2),
        bottlenecks_computed=computed,
        bottlenecks_reused=reused,
        iterations=stage2_iterations,
        epochs=args.epochs,
    )
    print(
        f"stage 2: val_accuracy {stage2['val_accuracy']:.4f} after {stage2_iterations} iterations; "
        f"{stage2_seconds:.1f} s (bottlenecks {bottleneck_seconds:.1f} s, head {head_seconds:.1f} s)"
    )
    history = {key: list(values) for key, values in history2.items()}
    history["stage"] = ["stage2"] * args.epochs
    epoch_marks = {
        "iteration": list(epoch_ends2),
        "val_accuracy": list(history2["val_accuracy"]),
        "val_loss": list(history2["val_loss"]),
        "stage_starts": [],
    }
    final = stage2
    stage3 = None

    # ---- Stage 3: fine-tune the top blocks, on the cached cut maps or on random crops.
    if finetune:
        stage3_start = time.perf_counter()
        log3 = IterationLog("stage3", stage2_iterations, iteration_rows)
        if cut_maps:
            map_shape = tuple(int(d) for d in top.input_shape[1:])
            maps_train = x_train_all[:, feature_dim:].reshape((-1, *map_shape))
            maps_validation = x_validation_all[:, feature_dim:].reshape((-1, *map_shape))
            top.trainable = True
            for layer in top.layers:
                layer.trainable = True
            inputs = keras.Input(map_shape, name="cut_map")
            x = top(inputs, training=False)  # BatchNorm statistics stay frozen
            x = keras.layers.GlobalAveragePooling2D()(x)
            x = head.get_layer("head_dropout")(x)
            outputs = head.get_layer("head_predictions")(x)
            tuner = keras.Model(inputs, outputs, name="finetune_top")
            train_x, train_y, validation_data = maps_train, y_train, (maps_validation, y_validation)
            samples = len(maps_train)
        else:
            base.trainable = True
            for layer in base.layers[:first_trainable]:
                layer.trainable = False
            tuner = full_model(args.backbone, base, head, args.image_size)  # BatchNorm in inference mode
            kept = extractions["train"].kept
            kept_original = original[kept]  # y_train already holds only the kept images' labels
            train_x, train_y = random_crops(
                [train_paths[i] for i in kept[kept_original]], y_train[kept_original],
                args.image_size, args.finetune_batch_size, args.seed,
            ), None
            validation_data = make_dataset(
                [validation_paths[i] for i in extractions["validation"].kept], y_validation,
                (args.image_size, args.image_size), batch_size=64,
            )
            samples = int(kept_original.sum())
            print(f"stage 3: new random crops of the {samples} training originals every epoch")
        # Compiled after the trainable flags changed, as Keras requires.
        tuner.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=learning_rate(
                    args.finetune_learning_rate,
                    iterations(samples, args.finetune_batch_size, args.finetune_epochs),
                    args.schedule,
                )
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        trainable = sum(int(np.prod(w.shape)) for w in tuner.trainable_weights)
        print(
            f"stage 3: unfreezing {args.finetune_from} onwards ({len(base.layers) - first_trainable} of "
            f"{len(base.layers)} layers, {trainable:,} trainable weights) for {args.finetune_epochs} epochs"
        )
        fit3 = tuner.fit(
            train_x,
            train_y,
            validation_data=validation_data,
            epochs=args.finetune_epochs,
            batch_size=args.finetune_batch_size if cut_maps else None,
            shuffle=cut_maps,
            callbacks=[log3],
            verbose=1 if sys.stdout.isatty() else 2,  # a live bar in a terminal, a line per epoch in a log
        )
        if cut_maps:
            probabilities = tuner.predict(maps_validation, batch_size=64, verbose=0)
        else:
            probabilities = tuner.predict(validation_data, verbose=0)
        stage3 = classification_metrics(y_validation, probabilities, class_names)
        stage3.update(
            val_loss=cross_entropy(y_validation, probabilities),
            seconds=round(time.perf_counter() - stage3_start, 2),
            iterations=log3._seen - stage2_iterations,
            epochs=args.finetune_epochs,
            first_trainable_layer=args.finetune_from,
            augment=bool(args.finetune_augment),
            frozen_layers=first_trainable,
            total_layers=len(base.layers),
        )
        print(f"stage 3: val_accuracy {stage3['val_accuracy']:.4f} ({stage3['seconds']:.1f} s)")
        for key, values in fit3.history.items():
            history[key].extend(values)
        history["stage"].extend(["stage3"] * args.finetune_epochs)
        epoch_marks["stage_starts"].append(stage2_iterations)
        epoch_marks["iteration"].extend(log3.epoch_ends)
        epoch_marks["val_accuracy"].extend(fit3.history["val_accuracy"])
        epoch_marks["val_loss"].extend(fit3.history["val_loss"])
        final = stage3

    # ---- Save the whole network (pixels in) and the reports.
    model = full_model(args.backbone, base, head, args.image_size)
    model.save(run_dir / MODEL_FILE)
    write_labels(run_dir, class_names)
    history["epoch"] = list(range(1, len(history["stage"]) + 1))
    history["iteration"] = epoch_marks["iteration"]
    write_iterations(run_dir / "iterations.csv", iteration_rows)
    plot_against_iterations(iteration_rows, epoch_marks, run_dir)
    metrics = {
        **{key: value for key, value in final.items() if key not in ("seconds", "iterations", "epochs")},
        "final_stage": "stage3" if stage3 else "stage2",
        "stage2": stage2,
        "stage3": stage3,
        "n_train": int(len(y_train)),
        "n_val": int(len(y_validation)),
        "backbone": args.backbone,
        "weights": args.weights,
        "image_size": args.image_size,
        "seconds": round(time.perf_counter() - started, 2),
        "skipped": [list(s) for e in extractions.values() for s in e.skipped],
    }
    rows = [row_from_metrics(f"this run: stage 2, {args.backbone} bottleneck + softmax", stage2)]
    if stage3:
        rows.append(row_from_metrics(f"this run: stage 3, fine-tuned from {args.finetune_from}", stage3))
    write_table2(run_dir, rows, class_names)
    finish_run(run_dir, history, metrics, title=f"flowers, {args.backbone}")
    print((run_dir / "table2.md").read_text())
    print_summary(run_dir, metrics)
    return run_dir


if __name__ == "__main__":
    main()
