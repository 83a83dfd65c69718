"""Progress of every long phase: a bar on a terminal or in a notebook, a line every few seconds in a log.

A newcomer waited 100 s for ``cats_dogs.finetune``'s validation score, 40 s
through a ``segmentation.train`` epoch and 83 s after ``adaptation.train``'s
last line with nothing on the screen: Keras' ``verbose=2`` prints an epoch
when it ends, and a bar that is drawn only when stderr is a terminal shows
nothing in a notebook or a log file. Every phase that can take more than a
few seconds (an epoch, a validation pass, a feature extraction, a scoring
pass) therefore reports through ``Progress``:

- interactive (stderr a terminal, or a Jupyter kernel): a tqdm bar that
  disappears when the phase ends (``tqdm.auto``: a widget in a notebook);
- otherwise (output to a file or a pipe, tests): a line on stdout,
  ``<phase>: <done>/<total> <units>, <s> s`` and the latest values, whenever
  ``LINE_SECONDS`` have passed since the last such line of any phase, so that
  a log is never silent that long while work goes on, also through a row of
  short phases (four feature passes of 2 s each were 9 s of silence).

``KerasProgress`` is the same for ``Model.fit``, ``Model.evaluate`` and
``Model.predict`` (a Keras callback: each epoch's steps, each validation
pass); ``common.run.Run.fit``, ``common.distribute.evaluate`` and
``common.loop.train_loop`` use it, so a lesson gets it without asking.
"""
from __future__ import annotations

import sys
import time

import keras

#: seconds between two progress lines when no bar can be drawn
LINE_SECONDS = 5.0
_last_line = time.perf_counter()   # when the last progress line was printed, by any phase


def interactive() -> bool:
    """Whether a bar can be drawn: stderr is a terminal, or this is a Jupyter kernel."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


class Progress:
    """``with Progress(total, "epoch 1/3") as progress: ... progress.update(1, loss=0.3)``."""

    def __init__(self, total: int | None, description: str, unit: str = "steps"):
        self.total, self.description, self.unit = total, description, unit
        self.done = 0
        self.started = time.perf_counter()
        self._stream = sys.stdout   # where the lines go, even if a library's output is redirected meanwhile
        self._bar = None
        if interactive():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description, unit=unit, leave=False)

    def update(self, count: int = 1, **values) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)
            if values:
                self._bar.set_postfix({key: f"{value:.4g}" for key, value in values.items()}, refresh=False)
            return
        global _last_line
        now = time.perf_counter()
        if now - _last_line >= LINE_SECONDS:
            _last_line = now
            of = f"/{self.total}" if self.total else ""
            shown = "".join(f", {key} {value:.4g}" for key, value in list(values.items())[:4])
            print(f"{self.description}: {self.done}{of} {self.unit}, {now - self.started:.0f} s{shown}", file=self._stream,
                  flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _numbers(logs) -> dict:
    return {key: float(value) for key, value in (logs or {}).items()
            if key in ("loss", "accuracy") and value is not None}


class KerasProgress(keras.callbacks.Callback):
    """``Progress`` for Keras' loops: each training epoch's steps, each validation or prediction pass.

    ``description`` names what is trained or scored (``"training"``,
    ``"validation"``); Keras' own ``verbose=2`` line still closes each epoch.
    """

    def __init__(self, description: str = "training"):
        super().__init__()
        self.description = description
        self._epoch = self._pass = None

    def on_epoch_begin(self, epoch, logs=None):
        epochs = self.params.get("epochs")
        self._epoch = Progress(self.params.get("steps"), f"{self.description} epoch {epoch + 1}/{epochs}")

    def on_train_batch_end(self, batch, logs=None):
        if self._epoch is not None:
            self._epoch.update(1, **_numbers(logs))

    def on_epoch_end(self, epoch, logs=None):
        if self._epoch is not None:
            self._epoch.close()
            self._epoch = None

    def _begin(self, what: str) -> None:
        # inside fit (an epoch is open) the pass is fit's validation, whose length Keras does not give the
        # callbacks; alone (Model.evaluate, Model.predict) its params are the pass's own
        total = None if self._epoch is not None else self.params.get("steps")
        self._pass = Progress(total, what if self.description == "training" else self.description, unit="batches")

    def _batch(self) -> None:
        if self._pass is not None:
            self._pass.update(1)

    def _end(self) -> None:
        if self._pass is not None:
            self._pass.close()
            self._pass = None

    def on_test_begin(self, logs=None):
        self._begin("validation")

    def on_test_batch_end(self, batch, logs=None):
        self._batch()

    def on_test_end(self, logs=None):
        self._end()

    def on_predict_begin(self, logs=None):
        self._begin("prediction")

    def on_predict_batch_end(self, batch, logs=None):
        self._batch()

    def on_predict_end(self, logs=None):
        self._end()
