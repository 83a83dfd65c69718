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

        ``make(batch_size, shard)`` builds the pipeline, where ``shard`` is
        ``(count, index)`` (apply it after the shuffle and before decoding)
        or None; under a strategy it is called once per worker with the
        per-replica batch size.
        """
        if self.name == "none":
            return make(global_batch_size, None)
        import tensorflow as tf

        def per_worker(context: tf.distribute.InputContext):
            shard = None
            if context.num_input_pipelines > 1:
                shard = (context.num_input_pipelines, context.input_pipeline_id)
            return make(context.get_per_replica_batch_size(global_batch_size), shard)

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
        self._temporary.clear()

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
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
    is_chief = task_type == "chief" or (task_type == "worker" and task_index == 0 and "chief" not in cluster)
    position = task_index + (1 if task_type == "worker" and "chief" in cluster else 0)
    return Distribution(name, strategy, is_chief=is_chief, worker_index=position, workers=workers)


def fit(model, train, *, epochs: int, steps_per_epoch: int | None = None, validation=None, callbacks=(),
        distribution: Distribution, verbose: int = 2):
    """``Model.fit`` on one device; the shared custom step under a strategy (see the module docstring).

    ``model`` must be compiled (inside ``distribution.scope()``) with one
    loss and an ``accuracy`` metric at most; returns a Keras ``History``
    with the keys ``Model.fit`` would give (loss, accuracy, val_loss,
    val_accuracy).
    """
    if distribution.name == "none":
        return model.fit(train, validation_data=validation, epochs=epochs, steps_per_epoch=steps_per_epoch,
                         callbacks=list(callbacks), verbose=verbose, shuffle=False)
    return _fit_replicated(model, train, epochs, steps_per_epoch, validation, callbacks, distribution)


def _fit_replicated(model, train, epochs, steps_per_epoch, validation, callbacks, distribution):
    import keras
    import tensorflow as tf

    from common.loop import train_loop

    if steps_per_epoch is None:
        raise UserError("distributed training needs steps_per_epoch (the number of global batches per epoch)")
    loss_function = model.loss
    if isinstance(loss_function, str):
        loss_function = keras.losses.get(loss_function)
    sparse = "sparse" in getattr(loss_function, "__name__", type(loss_function).__name__)

    def accuracy(labels, predictions):
        if predictions.shape[-1] == 1:
            hits = tf.equal(tf.cast(predictions[..., 0] >= 0.5, labels.dtype), tf.reshape(labels, [-1]))
        elif sparse:
            hits = tf.equal(tf.argmax(predictions, -1, output_type=tf.int32), tf.cast(tf.reshape(labels, [-1]), tf.int32))
        else:
            hits = tf.equal(tf.argmax(predictions, -1), tf.argmax(labels, -1))
        return tf.reduce_mean(tf.cast(hits, tf.float32))

    def per_example_loss(labels, predictions):
        values = loss_function(labels, predictions)
        return tf.reshape(values, [tf.shape(predictions)[0], -1])[:, 0] if values.shape.rank else values

    def step(batch, progress):
        images, labels = batch
        with tf.GradientTape() as tape:
            predictions = model(images, training=True)
            per_example = per_example_loss(labels, predictions)
            loss = tf.nn.compute_average_loss(per_example)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        gradients = tape.gradient(loss, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return {"loss": tf.reduce_mean(per_example), "accuracy": accuracy(labels, predictions)}

    def evaluate():
        losses, hits, count = 0.0, 0.0, 0
        for images, labels in validation:
            predictions = model(images, training=False)
            losses += float(tf.reduce_sum(per_example_loss(labels, predictions)))
            hits += float(accuracy(labels, predictions)) * int(predictions.shape[0])
            count += int(predictions.shape[0])
        return {"val_loss": losses / count, "val_accuracy": hits / count}

    callback_list = keras.callbacks.CallbackList(list(callbacks), model=model, add_history=True,
                                                 epochs=epochs, steps=steps_per_epoch)
    model.stop_training = False
    callback_list.on_train_begin()

    def on_epoch_end(epoch, row):
        logs = {"loss": row["loss"], "accuracy": row["accuracy"]}
        if validation is not None:
            logs.update(evaluate())
        callback_list.on_epoch_end(epoch - 1, logs)
        return {**logs, "stop": bool(model.stop_training)}

    train_loop(step, train, epochs=epochs, steps_per_epoch=steps_per_epoch, on_epoch_end=on_epoch_end,
               strategy=distribution.strategy, description="training")
    callback_list.on_train_end()
    return model.history
