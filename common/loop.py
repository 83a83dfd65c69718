"""One custom training loop, for what ``Model.fit`` cannot express.

``Model.fit`` trains one model on one stream of batches with one optimizer.
Deep domain adaptation (textbook eq. 21-22) steps on a source batch and a
target batch at once, with a weight lambda that follows training progress;
the segmentation GAN (eq. 24) alternates two networks and two optimizers. Each
writes its training step as a plain function of (batch, progress); this loop
compiles it, feeds it batches and progress, records every step's values (the
per-step curves the chapter plots), shows each epoch's steps as it goes
(``common.progress``: a bar, or a line every few seconds in a log), and calls
back at each epoch's end for validation and checkpoints.

A step function::

    def step(batch, progress):        # progress: float32 scalar, 0 at the first step -> 1
        (source, labels), target = batch
        with tf.GradientTape() as tape:
            ...
        optimizer.apply_gradients(zip(gradients, variables))
        return {"loss": loss, "lambda": weight}   # scalars, logged per step

Under a ``tf.distribute`` strategy the step runs on every replica
(``strategy.run``) and the values it returns are averaged over replicas;
losses inside the step should then be averaged over the *global* batch
(``tf.nn.compute_average_loss``).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np


@dataclasses.dataclass
class LoopHistory:
    """What a run of ``train_loop`` logged."""

    steps: list[dict]  # per step: "step" (1-based), "epoch", "progress", and the step's values
    epochs: list[dict]  # per epoch: "epoch", the mean of each step value, and what on_epoch_end returned
    seconds: float
    stopped_early: bool = False


def train_loop(
    step,
    dataset,
    *,
    epochs: int,
    steps_per_epoch: int,
    on_epoch_end=None,
    description: str = "training",
    progress_bar: bool = True,
    strategy=None,
) -> LoopHistory:
    """Run ``step`` ``epochs * steps_per_epoch`` times on batches of ``dataset``.

    ``dataset`` must yield at least that many batches (``.repeat()`` it); the
    progress passed to the step is ``completed steps / total steps``, which is
    what the DANN schedules (lambda_p, lr_p) are functions of.
    ``on_epoch_end(epoch, row)`` gets the 1-based epoch and that epoch's mean
    step values and may return a dict of more values for the epoch's row
    (validation scores); a returned ``"stop": True`` ends training there.
    """
    import tensorflow as tf

    from common.progress import Progress

    if epochs < 0 or steps_per_epoch < 1:
        raise ValueError(f"need epochs >= 0 and steps_per_epoch >= 1, not {epochs} and {steps_per_epoch}")
    total = max(1, epochs * steps_per_epoch)
    if strategy is None:
        compiled = tf.function(step)
        iterator = iter(dataset)
    else:
        if isinstance(dataset, tf.data.Dataset):  # else already distributed, one pipeline per worker
            dataset = strategy.experimental_distribute_dataset(dataset)
        iterator = iter(dataset)

        @tf.function
        def compiled(batch, progress):
            values = strategy.run(step, args=(batch, progress))
            return {
                key: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for key, value in values.items()
            }

    step_rows: list[dict] = []
    epoch_rows: list[dict] = []
    started = time.perf_counter()
    stopped = False
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        bar = Progress(steps_per_epoch, f"{description} {epoch}/{epochs}") if progress_bar else None
        first = len(step_rows)
        for _ in range(steps_per_epoch):
            number = len(step_rows)
            progress = number / total
            try:
                batch = next(iterator)
            except StopIteration:
                if bar is not None:
                    bar.close()
                raise ValueError(
                    f"the dataset ran out after {number} steps of {total}; repeat() it"
                ) from None
            values = compiled(batch, tf.constant(progress, tf.float32))
            row = {"step": number + 1, "epoch": epoch, "progress": progress}
            row.update({key: float(value) for key, value in values.items()})
            step_rows.append(row)
            if bar is not None:
                bar.update(1, **{key: row[key] for key in values})
        if bar is not None:
            bar.close()
        keys = [key for key in step_rows[-1] if key not in ("step", "epoch", "progress")]
        summary = {"epoch": epoch}
        summary.update({key: float(np.mean([r[key] for r in step_rows[first:]])) for key in keys})
        now = time.perf_counter()
        summary["seconds"] = round(now - epoch_started, 2)      # this epoch's steps
        summary["elapsed_seconds"] = round(now - started, 2)    # since the loop began, validation included
        if on_epoch_end is not None:
            extra = dict(on_epoch_end(epoch, dict(summary)) or {})
            stopped = bool(extra.pop("stop", False))
            summary.update(extra)
        epoch_rows.append(summary)
        print(
            f"{description} epoch {epoch}/{epochs}: "
            + ", ".join(f"{key} {value:.4g}" for key, value in summary.items()
                        if key != "epoch" and isinstance(value, (int, float))),
            flush=True,
        )
        if stopped:
            break
    return LoopHistory(step_rows, epoch_rows, time.perf_counter() - started, stopped)
