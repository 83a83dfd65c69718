"""Training on every GPU of a machine, or on several machines, with ``tf.distribute``.

Every training command takes ``--distribute {none,mirrored,multi-worker}``:

- ``none``: one device, as before.
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over the GPUs of this
  machine (over its logical CPU devices when there is no GPU): one replica
  per device, gradients summed by an all-reduce after every step.
- ``multi-worker``: ``tf.distribute.MultiWorkerMirroredStrategy`` across
  machines (or processes) described by the ``TF_CONFIG`` environment
  variable; start the same command on every worker.

``--batch-size`` stays the *global* batch: each of R replicas computes 1/R of
it, and the update is the one a single device would make with that batch
(``tf.nn.compute_average_loss`` divides by the global batch). The learning
rate is left as it is unless ``--scale-learning-rate`` multiplies it by R.

Each worker reads only its part of the data: pipelines are built per worker
from the strategy's input context and sharded *before* decoding, after a
shuffle seeded identically on every worker, so that the R parts of a global
batch are exactly the images one device would have drawn.

Only the chief (worker 0, or the task named ``chief``) writes the run folder.
The others must still save (Keras writes variables collectively), so they
write into a temporary folder that ``Distribution.finish`` removes.

``fit`` here runs Keras' own ``Model.fit`` for ``none`` and the shared custom
step (``common.loop.train_loop`` with ``strategy.run``) for ``mirrored`` and
``multi-worker``, with the same callbacks and the same history keys. Why not
``Model.fit`` under a strategy: in Keras 3.15 it fails under
``MultiWorkerMirroredStrategy`` (keras-team/keras#20585, ``ValueError: Attempt
to convert a value (PerReplica...)``), and under ``MirroredStrategy`` it draws
a seeded shuffle in another order than on one device (measured: a tiny model,
2 logical CPUs, global batch 8, the first step already trains on other images;
without the shuffle the weights agree to 1e-7), so a run could not be
compared with a one-device run. The custom step agrees with one device to
float round-off, shuffled or not.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from common.errors import UserError

STRATEGIES = ("none", "mirrored", "multi-worker")

TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}\''
)


def add_distribute_arguments(parser) -> None:
    group = parser.add_argument_group("distribution (several GPUs or machines)")
    group.add_argument(
        "--distribute",
        choices=STRATEGIES,
        default="none",
        help="none: one device; mirrored: every GPU of this machine (tf.distribute.MirroredStrategy); "
        "multi-worker: several machines or processes described by TF_CONFIG "
        "(MultiWorkerMirroredStrategy; start the same command on each). --batch-size is the global batch, "
        "split across the replicas (default: none)",
    )
    group.add_argument(
        "--scale-learning-rate",
        action="store_true",
        help="multiply the learning rate by the number of replicas (the linear scaling rule); "
        "by default it is left unchanged",
    )


class InputShard(tuple):
    """(workers, this worker's index, replicas in sync): which part of each global batch a worker reads."""

    def __new__(cls, count: int, index: int, replicas: int = 1):
        return super().__new__(cls, (int(count), int(index), int(replicas)))

    count = property(lambda self: self[0])
    index = property(lambda self: self[1])
    replicas = property(lambda self: self[2])


@dataclasses.dataclass
class Distribution:
    """The strategy a command runs under, and what follows from it."""

    name: str
    strategy: object  # tf.distribute.Strategy
    is_chief: bool = True
    worker_index: int = 0
    workers: int = 1
    _temporary: list = dataclasses.field(default_factory=list)

    @property
    def replicas(self) -> int:
        return int(self.strategy.num_replicas_in_sync)

    def scope(self):
        """Build models, optimizers and metrics inside this (variables are mirrored)."""
        if self.name == "none":
            return contextlib.nullcontext()
        return self.strategy.scope()

    def learning_rate(self, rate: float, scale: bool = False) -> float:
        return rate * self.replicas if scale else rate

    def dataset(self, make, global_batch_size: int):
        """A dataset for ``Model.fit`` / ``train_loop``, each worker reading only its part.

        ``make(batch_size, shard)`` builds the pipeline: on one device with
        the global batch and ``shard=None``; under a strategy once per worker,
        with the per-replica batch size and this worker's ``InputShard``
        (``common.data.make_dataset(..., shard=shard)`` applies it after the
        shuffle and before decoding), and repeated (the custom step counts
        steps, not epochs of a finite dataset).
        """
        if self.name == "none":
            return make(global_batch_size, None)
        import tensorflow as tf

        def per_worker(context: tf.distribute.InputContext):
            shard = InputShard(context.num_input_pipelines, context.input_pipeline_id, context.num_replicas_in_sync)
            return make(context.get_per_replica_batch_size(global_batch_size), shard).repeat()

        return self.strategy.distribute_datasets_from_function(per_worker)

    def make_run_dir(self, output_dir, default_parent, stage: str) -> Path:
        """The run folder on the chief; a temporary folder elsewhere (removed by ``finish``)."""
        from common.training import make_run_dir

        if self.is_chief:
            return make_run_dir(output_dir, default_parent, stage)
        folder = Path(tempfile.mkdtemp(prefix=f"{stage}-worker{self.worker_index}-"))
        self._temporary.append(folder)
        return folder

    def finish(self) -> None:
        for folder in self._temporary:
            shutil.rmtree(folder, ignore_errors=True)
            print(f"worker {self.worker_index}: the chief writes the run folder; this worker's temporary "
                  f"copy {folder} was removed", flush=True)
        self._temporary.clear()

    def __enter__(self) -> "Distribution":
        return self

    def __exit__(self, *exc) -> None:
        self.finish()

    def describe(self) -> dict:
        """What ``config.json`` records."""
        return {"distribute": self.name, "replicas": self.replicas, "workers": self.workers}


def setup(name: str = "none") -> Distribution:
    """Create the strategy. Call it first thing in ``main``: TensorFlow wants
    ``MultiWorkerMirroredStrategy`` created before any other operation."""
    import tensorflow as tf

    if name not in STRATEGIES:
        raise UserError(f"--distribute must be one of {', '.join(STRATEGIES)}, not {name!r}")
    if name == "none":
        return Distribution(name, tf.distribute.get_strategy())
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")]
        if not devices:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
        if len(devices) == 1:
            print(f"note: --distribute mirrored found one device ({devices[0]}): one replica, the same training "
                  "as --distribute none", flush=True)
        return Distribution(name, tf.distribute.MirroredStrategy(devices=devices))
    config = os.environ.get("TF_CONFIG")
    if not config:
        raise UserError(
            "--distribute multi-worker needs TF_CONFIG, the cluster and this worker's place in it, e.g. "
            f"{TF_CONFIG_EXAMPLE} (index 1 on the second machine)"
        )
    try:
        parsed = json.loads(config)
        cluster, task = parsed["cluster"], parsed["task"]
        task_type, task_index = task["type"], int(task["index"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"TF_CONFIG is not valid: expected JSON like {TF_CONFIG_EXAMPLE}") from None
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (ValueError, TypeError) as error:   # TF's own checks of the cluster (task index, job names, lists)
        raise UserError(f"TF_CONFIG is not valid: {str(error).splitlines()[0]} (expected JSON like "
                        f"{TF_CONFIG_EXAMPLE})") from None
    workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    is_chief = task_type == "chief" or (task_type == "worker" and task_index == 0 and "chief" not in cluster)
    position = task_index + (1 if task_type == "worker" and "chief" in cluster else 0)
    return Distribution(name, strategy, is_chief=is_chief, worker_index=position, workers=workers)


def fit(model, train, *, epochs: int, distribution: Distribution, validation=None, callbacks=(),
        steps_per_epoch: int | None = None, batch_size: int | None = None, seed: int = 0, verbose: int = 2):
    """``Model.fit`` on one device; the shared custom step under a strategy (see the module docstring).

    ``train`` is a dataset from ``distribution.dataset`` (give
    ``steps_per_epoch``, global batches per epoch, for a distributed run),
    or in-memory arrays ``(x, y)`` with ``batch_size``, reshuffled every
    epoch as ``Model.fit`` reshuffles arrays. ``validation`` is a dataset or
    ``(x, y)``. ``model`` must be compiled (inside ``distribution.scope()``)
    with one loss and at most an ``accuracy`` metric. Returns a Keras
    ``History`` with ``Model.fit``'s keys (loss, accuracy, val_loss,
    val_accuracy); the callbacks (history CSV, checkpoints, early stopping,
    TensorBoard) run in both cases.
    """
    arrays = isinstance(train, tuple)
    if distribution.name == "none":
        from common.progress import KerasProgress

        # Keras' verbose=2 prints an epoch when it ends; the steps and the validation pass show as they go
        callbacks = [*callbacks, KerasProgress()] if verbose else list(callbacks)
        if arrays:
            x, y = train
            return model.fit(x, y, batch_size=batch_size, shuffle=True, validation_data=validation,
                             epochs=epochs, callbacks=list(callbacks), verbose=verbose)
        if steps_per_epoch is not None:
            # One iterator for the whole run, as under a strategy: Keras' fit
            # would start a new one each epoch, and a seeded shuffle's later
            # epochs would come in another order than a repeated pipeline's.
            train = train.repeat()
        return model.fit(train, validation_data=validation, epochs=epochs, steps_per_epoch=steps_per_epoch,
                         callbacks=list(callbacks), verbose=verbose, shuffle=False)
    import tensorflow as tf

    if arrays:
        x, y = train
        train = distribution.dataset(lambda batch, shard: arrays_dataset(x, y, batch_size, seed, shard, epochs),
                                     batch_size)
        steps_per_epoch = -(-len(x) // batch_size)
    if isinstance(validation, tuple):
        validation = tf.data.Dataset.from_tensor_slices(validation).batch(256)
    return _fit_replicated(model, train, epochs, steps_per_epoch, validation, callbacks, distribution)


def arrays_dataset(x, y, batch_size: int, seed: int = 0, shard: InputShard | None = None, epochs: int = 1):
    """In-memory arrays as (x, y) batches: the same global batches on one device and on many.

    Each epoch's rows come in the order ``np.random.default_rng(seed)`` draws
    them (one ``permutation`` per epoch, as the one-device loops here draw
    them), cut into global batches of ``batch_size`` (the global batch,
    whatever the strategy). With a ``shard`` the global batch is dealt to the
    R replicas, replica j taking rows j::R, and this worker emits its own
    replicas' parts in turn, so one step of all replicas trains on exactly
    one device's batch. In an epoch's short last batch a part may be empty;
    ``global_batch_mean`` weighs that right, and every worker still makes the
    same number of steps.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    replicas, local = (1, [0]) if shard is None else (
        shard.replicas, list(range(shard.index * (shard.replicas // shard.count),
                                   (shard.index + 1) * (shard.replicas // shard.count))))
    parts = []
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for first in range(0, len(order), batch_size):
            batch = order[first:first + batch_size]
            parts += [batch[replica::replicas].tolist() for replica in local]
    x_all, y_all = tf.constant(x), tf.constant(y)
    dataset = tf.data.Dataset.from_tensor_slices(tf.ragged.constant(parts, dtype=tf.int64, ragged_rank=1))
    return dataset.map(lambda rows: (tf.gather(x_all, rows), tf.gather(y_all, rows)))


def global_batch_mean(per_example):
    """The mean of per-example values over the *global* batch, computed inside one replica.

    On one device it is the batch mean. Under a strategy each replica returns
    its own sum divided by the number of examples in all replicas together,
    so the summed gradients are those of the global mean, also for an
    epoch's short last batch, whose parts differ in size
    (``tf.nn.compute_average_loss`` assumes equal parts there).
    """
    import tensorflow as tf

    per_example = tf.convert_to_tensor(per_example)
    count = tf.cast(tf.size(per_example), per_example.dtype)
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        count = context.all_reduce(tf.distribute.ReduceOp.SUM, count)
    return tf.math.divide_no_nan(tf.reduce_sum(per_example), count)


def local_mean(values):
    """This replica's mean, 0 for an empty part (for logging; the loop averages it over replicas)."""
    import tensorflow as tf

    values = tf.cast(tf.convert_to_tensor(values), tf.float32)
    return tf.math.divide_no_nan(tf.reduce_sum(values), tf.cast(tf.size(values), tf.float32))


def evaluate(model, dataset, distribution: Distribution) -> tuple[float, float]:
    """(loss, accuracy) of a compiled model on a dataset: ``Model.evaluate`` on one device.

    Under a strategy every worker scores the whole dataset itself (a plain
    forward pass, which all strategies run correctly), so all agree.
    """
    from common.progress import KerasProgress, Progress

    if distribution.name == "none":
        loss, accuracy = model.evaluate(dataset, verbose=0, callbacks=[KerasProgress("validation")])
        return float(loss), float(accuracy)
    loss_function, accuracy = _loss_and_accuracy(model)
    total_loss, hits, count = 0.0, 0.0, 0
    with Progress(None, "validation", unit="batches") as progress:
        for images, labels in dataset:
            predictions = model(images, training=False)
            size = int(predictions.shape[0])
            total_loss += float(loss_function(labels, predictions).numpy().sum())
            hits += float(accuracy(labels, predictions)) * size
            count += size
            progress.update(1)
    return total_loss / count, hits / count


def _loss_and_accuracy(model):
    """The compiled model's loss per example, and its accuracy, as graph functions."""
    import keras
    import tensorflow as tf

    loss_function = model.loss
    if isinstance(loss_function, str):
        loss_function = keras.losses.get(loss_function)
    sparse = "sparse" in getattr(loss_function, "__name__", type(loss_function).__name__)

    def per_example_loss(labels, predictions):
        if predictions.shape[-1] == 1 and labels.shape.rank == predictions.shape.rank - 1:
            # one sigmoid output, labels (N,): Model.fit adds this axis itself, a custom step must
            labels = tf.expand_dims(tf.cast(labels, predictions.dtype), -1)
        values = loss_function(labels, predictions)
        return tf.reshape(values, [tf.shape(predictions)[0], -1])[:, 0] if values.shape.rank else values

    def accuracy(labels, predictions):
        if predictions.shape[-1] == 1:
            hits = tf.equal(tf.cast(predictions[..., 0] >= 0.5, labels.dtype), tf.reshape(labels, [-1]))
        elif sparse:
            hits = tf.equal(tf.argmax(predictions, -1, output_type=tf.int32),
                            tf.cast(tf.reshape(labels, [-1]), tf.int32))
        else:
            hits = tf.equal(tf.argmax(predictions, -1), tf.argmax(labels, -1))
        return local_mean(hits)

    return per_example_loss, accuracy


def _fit_replicated(model, train, epochs, steps_per_epoch, validation, callbacks, distribution):
    import keras
    import tensorflow as tf

    from common.loop import train_loop

    if steps_per_epoch is None:
        raise UserError("distributed training needs steps_per_epoch (the number of global batches per epoch)")
    per_example_loss, accuracy = _loss_and_accuracy(model)

    def step(batch, progress):
        images, labels = batch
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            per_example = per_example_loss(labels, predictions)
            loss = global_batch_mean(per_example)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=False))
        return {"loss": local_mean(per_example), "accuracy": accuracy(labels, predictions)}

    callback_list = keras.callbacks.CallbackList(list(callbacks), model=model, add_history=True,
                                                 epochs=epochs, steps=steps_per_epoch)
    model.stop_training = False
    callback_list.on_train_begin()

    def on_epoch_end(epoch, row):
        logs = {"loss": row["loss"], "accuracy": row["accuracy"]}
        if validation is not None:
            logs["val_loss"], logs["val_accuracy"] = evaluate(model, validation, distribution)
        callback_list.on_epoch_end(epoch - 1, logs)
        return {**logs, "stop": bool(model.stop_training)}

    train_loop(step, train, epochs=epochs, steps_per_epoch=steps_per_epoch, on_epoch_end=on_epoch_end,
               strategy=distribution.strategy, description="training")
    callback_list.on_train_end()
    return model.history
