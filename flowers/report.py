"""12.5.1 (3) and (4): the results: accuracy and loss against the iterations (figures 4-5), and Table 2's row.

The whole network (pixels in) is saved with the run; each stage's final
model is scored on the 200 validation originals per class; ``history.csv``
holds both stages' epochs in one count, ``iterations.csv`` every batch's own
loss and accuracy, ``accuracy.png`` / ``loss.png`` plot them as the book's
figures do, and ``table2.md`` puts this run's per-class accuracies beside the
book's Table 2 (SVM, CNN, deep transfer; ``flowers.baselines`` measures the
other two rows on the same split).
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np

from common.backbones import weights_fingerprint
from common.predict import write_labels
from common.reports import classification_metrics, pyplot, save_figure
from common.run import Run
from flowers.bottlenecks import Bottlenecks
from flowers.head import StageResult
from flowers.table2 import row_from_metrics, write_table2


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


def report(run: Run, args, model, bottlenecks: Bottlenecks, stages: dict, class_names, started) -> dict:
    """Save the whole network (pixels in); score each stage's final model on the validation originals;
    write metrics, curves, the per-iteration figures and Table 2."""
    saved = run.save(model)
    write_labels(run.folder, class_names)
    # equal on every worker of a run on several machines: a check that they trained the same model
    print(f"saved {saved.name} ({model.count_params():,} weights), weights fingerprint: {weights_fingerprint(model)}")
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
    rows = write_iterations(run.folder / "iterations.csv", stages)
    plot_against_iterations(rows, history, run.folder)
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
        table.append(row_from_metrics(f"this run: stage 3, fine-tuned from {scored['stage3']['first_trainable_layer']}",
                                      scored["stage3"]))
    write_table2(run.folder, table, class_names)
    print((run.folder / "table2.md").read_text())
    return run.finish(history, metrics, title=f"flowers, {args.backbone}")
