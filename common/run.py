"""One run of a lesson, entered in one line: ``with Run(args, "bottleneck") as run:``.

A lesson module reads like the book's steps; everything that is not the
lesson lives here: the run folder (a new ``<parent>/<stage>-<time>/`` or
``--output-dir``, refused if it already holds results, taken back if the
command fails before its first epoch), the saved ``config.json``, the seed,
the device strategy of ``--distribute`` (created first, as
``MultiWorkerMirroredStrategy`` requires, and entered for the whole run so
models and optimizers built inside it are mirrored), TensorBoard, and the
writing of ``metrics.json``, ``history.csv`` and the plots.

Training goes through one of two doors, both correct on one device and under
any strategy:

- ``run.fit(model, data, epochs=...)``: Keras' ``Model.fit`` on one device,
  the replicated step of ``common.distribute`` under a strategy, with the
  history CSV, checkpoints, early stopping and TensorBoard either way, and
  each epoch's steps and validation pass shown as they go (``common.progress``);
- ``run.loop(step, batches, ...)``: the custom step of ``common.loop`` for what
  ``Model.fit`` cannot express (two batches per step, two networks); inside a
  step, ``run.mean(per_example_losses)`` is the batch mean that stays right
  when the batch is split across replicas. A library estimator that runs
  ``common.loop`` itself (``adaptation.DomainAdapter``) takes
  ``run.strategy`` instead (None on one device).

Input pipelines that each worker must read only its part of come from
``run.dataset(make, batch_size)`` (``make(batch_size, part)``), for image
files from ``run.images(paths, labels, size, batch_size, ...)``, or, for
arrays in memory, ``run.batches(x, y, batch_size, epochs=...)``.

Example::

    with Run(args, "bottleneck", parent=OUTPUT_PARENT) as run:
        model = build(...)
        model.compile(keras.optimizers.RMSprop(run.learning_rate(1e-3)), ...)
        history = run.fit(model, (x, y), epochs=args.epochs, batch_size=32, validation=(xv, yv))
        run.finish(history.history, metrics, title="bottleneck")
"""
from __future__ import annotations

from pathlib import Path

from common import cli, distribute
from common.predict import MODEL_FILE
from common.reports import finish_run, print_summary
from common.training import save_config, save_model, set_seed, standard_callbacks, tensorboard_for_loop


class Run:
    """The context of one training command (module docstring).

    ``args`` is the command's resolved argparse namespace (``common.cli``:
    ``--output-dir``, ``--seed``, ``--tensorboard``, ``--distribute`` and
    ``--scale-learning-rate``); ``stage`` names the run folder and is written
    to ``config.json`` with ``config``'s extra entries.
    """

    def __init__(self, args, stage: str, *, parent=None, config: dict | None = None):
        self.args, self.stage = args, stage
        self.parent = Path(parent if parent is not None else getattr(args, "_output_parent", "runs"))
        self.config = dict(config or {})
        self.folder: Path | None = None
        self._strategy = None
        self._scope = None

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> "Run":
        self._strategy = distribute.setup(getattr(self.args, "distribute", "none"))
        self._scope = self._strategy.scope()
        self._scope.__enter__()
        set_seed(self.args.seed)
        self.folder = self._strategy.make_run_dir(getattr(self.args, "output_dir", None), self.parent, self.stage)
        self._save_config()
        if self._strategy.is_chief:
            print(f"run folder: {self.folder}", flush=True)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._scope.__exit__(*exc)
        finally:
            self._strategy.finish()

    def _save_config(self) -> None:
        save_config(self.folder, {**cli.config_of(self.args), **self._strategy.describe(), "stage": self.stage,
                                  **self.config})

    def record(self, **entries) -> None:
        """Add entries to ``config.json`` that are known only once the run has begun (class names, a cut layer)."""
        self.config.update(entries)
        self._save_config()

    # ------------------------------------------------------------------ what the strategy decides
    @property
    def replicas(self) -> int:
        return self._strategy.replicas

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run folder (always, except on the other workers of a multi-worker run)."""
        return self._strategy.is_chief

    @property
    def single_device(self) -> bool:
        return self._strategy.name == "none"

    @property
    def strategy(self):
        """The strategy object for code that runs ``common.loop`` itself (``DomainAdapter(strategy=...)``);
        None on one device, where the step runs as it is."""
        return None if self.single_device else self._strategy.strategy

    def learning_rate(self, rate: float) -> float:
        """``rate``, times the number of replicas with ``--scale-learning-rate``."""
        return self._strategy.learning_rate(rate, getattr(self.args, "scale_learning_rate", False))

    # ------------------------------------------------------------------ input
    def dataset(self, make, batch_size: int):
        """``make(batch_size, part)`` on one device (``part=None``), or once per worker with its part."""
        return self._strategy.dataset(make, batch_size)

    def images(self, paths, labels, image_size, batch_size: int, *, repeat: bool = False, **options):
        """``common.data.make_dataset(paths, labels, image_size, batch_size, **options)``, per worker its part.

        ``repeat=True`` makes it endless on one device too, for ``run.loop``,
        which counts steps rather than passes (under a strategy it always is).
        """
        from common.data import make_dataset

        def make(size, part):
            dataset = make_dataset(paths, labels, image_size, size, shard=part, **options)
            return dataset.repeat() if repeat else dataset

        return self.dataset(make, batch_size)

    def batches(self, x, y, batch_size: int, *, epochs: int, seed: int | None = None):
        """Arrays in memory as the same global batches on one device and on many (a fresh order per epoch)."""
        seed = self.args.seed if seed is None else seed
        return self.dataset(lambda _, part: distribute.arrays_dataset(x, y, batch_size, seed, part, epochs), batch_size)

    # ------------------------------------------------------------------ training
    def callbacks(self, checkpoint: str | None = None, patience: int | None = None, monitor: str | None = None):
        """history.csv, and where asked a best-only checkpoint, early stopping and TensorBoard."""
        extra = {} if monitor is None else {"monitor": monitor}
        return standard_callbacks(self.folder, checkpoint, patience,
                                  tensorboard_log=getattr(self.args, "tensorboard", False), **extra)

    def fit(self, model, train, *, epochs: int, validation=None, callbacks=None, steps_per_epoch=None,
            batch_size=None, seed=None, verbose: int = 2):
        """Train a compiled model (see ``common.distribute.fit``); ``callbacks`` default to ``self.callbacks()``."""
        return distribute.fit(model, train, epochs=epochs, distribution=self._strategy, validation=validation,
                              callbacks=self.callbacks() if callbacks is None else callbacks,
                              steps_per_epoch=steps_per_epoch, batch_size=batch_size,
                              seed=self.args.seed if seed is None else seed, verbose=verbose)

    def loop(self, step, batches, *, epochs: int, steps_per_epoch: int, on_epoch_end=None,
             description: str = "training"):
        """``common.loop.train_loop`` with this run's strategy."""
        from common.loop import train_loop

        return train_loop(step, batches, epochs=epochs, steps_per_epoch=steps_per_epoch, on_epoch_end=on_epoch_end,
                          description=description,
                          strategy=self.strategy)

    @staticmethod
    def mean(per_example):
        """Inside a step: the batch mean, over the global batch when it is split across replicas."""
        return distribute.global_batch_mean(per_example)

    @staticmethod
    def logged_mean(values):
        """Inside a step: this replica's mean, for logging (the loop averages it over replicas)."""
        return distribute.local_mean(values)

    def evaluate(self, model, dataset) -> tuple[float, float]:
        """(loss, accuracy) of a compiled model, the same on every worker."""
        return distribute.evaluate(model, dataset, self._strategy)

    def board(self, model, optimizer, under: str | None = None):
        """A TensorBoard writer for ``run.loop`` (``on_epoch_end(epoch, logs)``), or None without --tensorboard;
        ``under`` a subfolder of the run folder, for one log per training when a run trains several."""
        if not getattr(self.args, "tensorboard", False):
            return None
        return tensorboard_for_loop(self.folder / under if under else self.folder, model, optimizer)

    # ------------------------------------------------------------------ results
    def save(self, model, name: str = MODEL_FILE) -> Path:
        """The run's one model file: architecture and weights, no optimizer state (``common.training.save_model``)."""
        return save_model(model, self.folder / name)

    def finish(self, history: dict, metrics: dict, title: str = "") -> dict:
        """Write metrics.json, history.csv and the curves, print where, and return the metrics."""
        finish_run(self.folder, history, metrics, title=title)
        if "val_accuracy" in metrics:
            print_summary(self.folder, metrics)
        else:
            print(f"wrote {self.folder.resolve()}")
        return metrics
