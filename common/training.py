"""Run folders and training callbacks shared by every example.

One folder per run, holding the resolved configuration beside the results, so
a student can always say which settings produced which curve; a folder that
already holds results is never written into.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

import keras
import numpy as np

from common.errors import UserError
from common.files import writable_folder

MONITOR = "val_accuracy"  # Keras 3's name; the textbook's "val_acc" is refused (docs/textbook-errata.md, E21)

#: run folders this process opened: (folder, whether it created it, the names already in it)
_OPENED: list[tuple[Path, bool, frozenset]] = []

#: what a run writes before its first epoch ends; a folder holding no more than these (history.csv with its
#: header alone) has no result in it
_BEFORE_FIRST_EPOCH = frozenset({"config.json", "labels.txt", "history.csv", "iterations.csv", "tensorboard"})


def make_run_dir(output_dir, default_parent, stage: str) -> Path:
    """The run's output folder: ``output_dir`` if given, else ``default_parent/<stage>-<time>``.

    An explicit folder that already holds a run's results is refused rather
    than overwritten.
    """
    if output_dir:
        run_dir = Path(output_dir).expanduser()
        if (run_dir / "metrics.json").exists() or (run_dir / "config.json").exists():
            raise UserError(
                f"output folder {run_dir} already holds a run's results; choose another --output-dir"
            )
    else:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(default_parent) / f"{stage}-{stamp}"
        suffix = 1
        while run_dir.exists():
            run_dir = Path(default_parent) / f"{stage}-{stamp}-{suffix}"
            suffix += 1
    created = not run_dir.exists()
    writable_folder(run_dir, "output folder")
    _OPENED.append((run_dir, created, frozenset(entry.name for entry in run_dir.iterdir())))
    return run_dir


def discard_unfinished_runs() -> list[Path]:
    """Undo the run folders of a command that stopped before any result; return the folders kept.

    A run folder is opened and its ``config.json`` written before the slow
    checks (weights, layers, data) and the first epoch, which can fail or be
    interrupted; left behind, that folder would refuse the corrected command's
    ``--output-dir`` ("already holds a run's results") and pile up under
    ``runs/``. What this run added goes if it is no more than what a run
    writes before its first epoch ends (``_BEFORE_FIRST_EPOCH``, history.csv
    with its header alone); the folder itself only if this process made it.
    Anything that was there before, and any folder with a finished epoch or a
    result, stays.
    """
    import shutil

    kept = []
    while _OPENED:
        run_dir, created, before = _OPENED.pop()
        try:
            added = {entry.name for entry in run_dir.iterdir()} - before
        except OSError:
            continue
        history = run_dir / "history.csv"
        epochs_logged = "history.csv" in added and len(history.read_text().strip().splitlines()) > 1
        if not added <= _BEFORE_FIRST_EPOCH or epochs_logged:
            kept.append(run_dir)
            continue
        for name in added:
            path = run_dir / name
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
        if created:
            try:
                run_dir.rmdir()
            except OSError:
                pass
    return kept


def forget_opened_runs() -> None:
    """After a command that finished: its run folders are results, never to be taken back by a later
    command in the same process."""
    _OPENED.clear()


def latest_run(parent, stage: str, required_file: str) -> Path | None:
    """The newest ``parent/<stage>-*`` folder that holds ``required_file``."""
    parent = Path(parent)
    if not parent.is_dir():
        return None
    candidates = [p for p in parent.glob(f"{stage}-*") if (p / required_file).exists()]
    return max(candidates, key=lambda p: (p / required_file).stat().st_mtime, default=None)


def save_config(run_dir: Path, config: dict) -> Path:
    """Write the resolved configuration, plus what is needed to rerun it."""
    record = {
        **{key: _jsonable(value) for key, value in config.items()},
        "command": " ".join([Path(sys.executable).name, "-m", _module_name()] + sys.argv[1:]),
        "versions": {"keras": keras.__version__, "tensorflow": _tf_version(), "numpy": np.__version__},
    }
    path = Path(run_dir) / "config.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def _module_name() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return spec.name if spec is not None else Path(sys.argv[0]).stem


def _tf_version() -> str:
    import tensorflow as tf

    return tf.__version__


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class EpochLog(keras.callbacks.CSVLogger):
    """Keras' ``CSVLogger`` with epochs counted from 1, as Keras prints them and ``write_history`` writes them."""

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, logs)


def tensorboard(run_dir) -> keras.callbacks.TensorBoard:
    """Keras' TensorBoard callback writing into ``run_dir/tensorboard`` (``--tensorboard``).

    Look at it with ``tensorboard --logdir <run folder>``.
    """
    try:
        import tensorboard as _  # noqa: F401  (tf.summary writes nothing without it)
    except ImportError:
        raise UserError("--tensorboard needs the tensorboard package: python -m pip install tensorboard") from None
    return keras.callbacks.TensorBoard(log_dir=str(Path(run_dir) / "tensorboard"))


def tensorboard_for_loop(run_dir, model: keras.Model, optimizer) -> keras.callbacks.CallbackList:
    """The same TensorBoard callback for a loop that is not ``Model.fit``: call its
    ``on_epoch_end(epoch, logs)`` (epoch from 0) and ``on_train_end()`` yourself."""
    model.optimizer = optimizer  # TensorBoard logs the learning rate from it
    callbacks = keras.callbacks.CallbackList([tensorboard(run_dir)], model=model)
    callbacks.on_train_begin()
    return callbacks


def save_model(model: keras.Model, path) -> Path:
    """The model as a ``.keras`` file: its architecture and weights, never its optimizer's state.

    Keras 3 writes a compiled model's optimizer variables into the same file
    (``include_optimizer`` is for the legacy ``.h5`` format only), one more
    copy per slot of every trainable weight: SGD with momentum doubles what
    is fine-tuned, Adam triples it. No command resumes training from a saved
    model (a rerun starts again, reading its cached features back), so the
    state is never read; what is saved is the same layers (the same weight
    variables, nothing copied) behind a new, uncompiled functional model.
    ``keras.saving.load_model`` gives it back for prediction and export.
    """
    if getattr(model, "optimizer", None) is not None:
        try:
            model = keras.Model(model.inputs, model.outputs, name=model.name)
        except (AttributeError, ValueError, TypeError):   # a subclassed model: a copy of its weights
            clone = keras.models.clone_model(model)
            clone.set_weights(model.get_weights())
            model = clone
    path = Path(path)
    model.save(path)
    return path


class BestModel(keras.callbacks.Callback):
    """The best-only checkpoint: the model file itself, rewritten (``save_model``) when ``monitor`` improves.

    The kept checkpoint is the run's model: no second copy at the end, and no
    optimizer state (Keras' ``ModelCheckpoint`` would write both).
    """

    def __init__(self, path, monitor: str = MONITOR):
        super().__init__()
        self.path, self.monitor, self.best = Path(path), monitor, None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is not None and (self.best is None or value > self.best):
            self.best = float(value)
            save_model(self.model, self.path)


def standard_callbacks(
    run_dir: Path,
    checkpoint_name: str | None = None,
    patience: int | None = None,
    monitor: str = MONITOR,
    tensorboard_log: bool = False,
) -> list[keras.callbacks.Callback]:
    """CSV history, optionally a best-only checkpoint, early stopping and TensorBoard.

    A checkpoint is written only where the command reloads it (flower17
    reports its best epoch, as the textbook does), as the run's model file
    itself (``BestModel``); early stopping restores the best epoch's weights,
    so the model it leaves is the one it chose.
    """
    callbacks: list[keras.callbacks.Callback] = [EpochLog(str(Path(run_dir) / "history.csv"))]
    if checkpoint_name:
        callbacks.append(BestModel(Path(run_dir) / checkpoint_name, monitor=monitor))
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, mode="max", patience=patience, restore_best_weights=True
            )
        )
    if tensorboard_log:
        callbacks.append(tensorboard(run_dir))
    return callbacks


def set_seed(seed: int) -> None:
    keras.utils.set_random_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


SCHEDULES = ("cosine", "constant")


def learning_rate(initial: float, steps: int, schedule: str = "cosine"):
    """The optimizer's learning rate: constant, or cosine decay to zero over ``steps`` iterations.

    With a fixed number of epochs and the last weights reported (nothing
    picked on validation), a constant rate leaves the result at wherever the
    last noisy update landed; decaying it to zero lets the final epochs settle.
    """
    if schedule == "constant":
        return initial
    if schedule != "cosine":
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, not {schedule!r}")
    return keras.optimizers.schedules.CosineDecay(initial, decay_steps=max(1, int(steps)))
