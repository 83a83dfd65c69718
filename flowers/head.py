"""12.5.1 (2), stage ②: the new layer (dropout, then a dense softmax) trained on the cached bottleneck vectors.

The book: "除了预训练模型和最后 1 层全连接层以外，要重新训练完整的全连接层" (retrain the
fully connected layer on top of the pretrained model). Loss and accuracy are
logged for every iteration, as figures 4 and 5 plot them. ``StageResult``,
``make_train_step`` and ``validation_scores`` are shared with stage ③
(``flowers.finetune``), so both stages log the same quantities.
"""
from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from common.reports import predictions_and_losses
from common.run import Run
from common.training import learning_rate
from flowers.bottlenecks import Bottlenecks


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
            loss = Run.mean(per_example)  # the batch mean, also when the batch is split across replicas
            if model.losses:  # --l2-sp / --weight-decay in stage 3: once per global batch, whatever the replicas
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=False))
        correct = tf.equal(tf.argmax(probabilities, axis=-1, output_type=tf.int32), labels)
        return Run.logged_mean(per_example), Run.logged_mean(correct)

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


def fit_on_vectors_replicated(run: Run, model, optimizer, x, y, x_val, y_val, *, epochs, batch_size, seed, board):
    """Stage 2 on several replicas: the same step through ``run.loop``, each replica on its part of a batch.

    The one-call-per-epoch speed-up of ``fit_on_vectors`` is a single-device
    trick; on several replicas every step is the same ``make_train_step``
    under the strategy, and the batches are the ones one device would draw
    (``run.batches``).
    """
    started = time.perf_counter()
    train_step = make_train_step(model, optimizer)
    probabilities = {}

    def validate(epoch, row):
        probabilities["last"], probabilities["losses"] = predictions_and_losses(
            model, (x_val, y_val), loss=keras.losses.sparse_categorical_crossentropy)
        scores = validation_scores(y_val, probabilities["last"], probabilities["losses"])
        if board is not None:
            board.on_epoch_end(epoch - 1, {"loss": row["loss"], "accuracy": row["accuracy"], **scores})
        return scores

    steps = iterations(len(x), batch_size, 1)
    log = run.loop(lambda batch, progress: dict(zip(("loss", "accuracy"), train_step(*batch), strict=False)),
                   run.batches(x, y, batch_size, epochs=epochs, seed=seed), epochs=epochs, steps_per_epoch=steps,
                   on_epoch_end=validate, description="stage 2")
    history = {key: [row[key] for row in log.epochs] for key in ("loss", "accuracy", "val_loss", "val_accuracy")}
    if "last" not in probabilities:  # --epochs 0
        probabilities["last"], probabilities["losses"] = predictions_and_losses(
            model, (x_val, y_val), loss=keras.losses.sparse_categorical_crossentropy)
    return StageResult(history, [(row["loss"], row["accuracy"]) for row in log.steps],
                       [steps * epoch for epoch in range(1, len(log.epochs) + 1)], probabilities["last"],
                       time.perf_counter() - started, losses=probabilities["losses"])


def train_head(run: Run, args, bottlenecks: Bottlenecks, class_names) -> tuple[keras.Model, StageResult]:
    """Stage 2: the new softmax layer on the cached vectors, Adam with the chosen schedule."""
    steps = iterations(len(bottlenecks.train), args.batch_size, args.epochs)
    head = build_head(bottlenecks.train.shape[1], len(class_names), args.dropout)
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate(run.learning_rate(args.learning_rate), steps,
                                                                  args.schedule))
    board = run.board(head, optimizer)
    data = (bottlenecks.train, bottlenecks.train_labels, bottlenecks.validation, bottlenecks.validation_labels)
    options = dict(epochs=args.epochs, batch_size=args.batch_size, seed=args.seed, board=board)
    if run.single_device:
        result = fit_on_vectors(head, optimizer, *data, **options)
    else:
        result = fit_on_vectors_replicated(run, head, optimizer, *data, **options)
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
