"""Blog post 003's transfer on digits: a source model fine-tuned on a new task.

    python -m digits.transfer                          # load_digits, K = 2, 5, 10, 3 seeds
    python -m digits.transfer --shots 1,3 --seeds 5
    python -m digits.transfer --dataset mnist          # Keras's download, or --mnist-file mnist.npz

The steps of 003, on Keras 3:
1. source task S: digits 0-4; train the CNN on it and score it on S's test split;
2. target task T: digits 5-9 with only K labelled images per class;
3. the target model: the source's layers copied, a new 5-way head
   (003 copies ``layers[:-1]``), trained on the K-shot set once with the
   copied layers frozen and once fine-tuned (all trainable);
4. the same network from scratch on the same K-shot set;
5. every model scored once, on T's test split (never used to choose anything).
Every setting is fixed before the run (epochs, learning rate), so nothing is
picked on the test images.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import csv
import time

import numpy as np

from common.cli import parser_from_doc
from common.errors import UserError, main_guard
from common.reports import pyplot, save_figure, write_history, write_metrics
from common.training import make_run_dir, save_config, set_seed
from digits import data
from digits.model import LAYERS, accuracy, build_cnn, compile_for_training, copy_first, trainable_count

VARIANTS = ("scratch", "frozen", "finetuned")


def parse_args(argv=None):
    parser = parser_from_doc(__doc__)
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=data.DATASETS, default="digits",
                       help="digits: scikit-learn's bundled 8x8 digits; mnist: Keras's 28x28 download (default: digits)")
    group.add_argument("--mnist-file", default=None, help="a local mnist.npz for --dataset mnist")
    group.add_argument("--limit", type=int, default=None, help="at most N images per digit, for a quick try")
    group.add_argument("--output-dir", default=None, help="this run's folder (default: runs/digits/transfer-<time>/)")
    group = parser.add_argument_group("experiment")
    group.add_argument("--shots", default="2,5,10", help="K labelled target images per class, comma-separated (default: 2,5,10)")
    group.add_argument("--seeds", type=int, default=3, help="seeds per K: initialisation and the K-shot draw (default: 3)")
    group.add_argument("--seed", type=int, default=0, help="the first seed (default: 0)")
    group.add_argument("--copy", type=int, default=len(LAYERS) - 1,
                       help=f"weight layers copied from the source (default: {len(LAYERS) - 1}, every layer but the "
                       "head, 003's layers[:-1]; 4 copies the convolutions alone)")
    group = parser.add_argument_group("training")
    group.add_argument("--source-epochs", type=int, default=30, help="(default: 30)")
    group.add_argument("--target-epochs", type=int, default=60, help="(default: 60)")
    group.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    group.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's rate, every model (default: 1e-3)")
    args = parser.parse_args(argv)
    try:
        args.shots = sorted({int(k) for k in args.shots.split(",")})
    except ValueError:
        parser.error(f"--shots takes integers separated by commas, not {args.shots!r}")
    checks = {"--seeds": args.seeds, "--source-epochs": args.source_epochs, "--target-epochs": args.target_epochs,
              "--batch-size": args.batch_size, "--limit": args.limit if args.limit is not None else 1,
              "--shots": min(args.shots)}
    for flag, value in checks.items():
        if value < 1:
            parser.error(f"{flag} must be at least 1, not {value}")
    if not args.learning_rate > 0:
        parser.error(f"--learning-rate must be positive, not {args.learning_rate}")
    if not 1 <= args.copy <= len(LAYERS) - 1:
        parser.error(f"--copy must be in 1..{len(LAYERS) - 1}, not {args.copy}")
    return args


def train(model, x, y, args, epochs, validation=None):
    history = model.fit(x, y, batch_size=min(args.batch_size, len(x)), epochs=epochs, shuffle=True,
                        validation_data=validation, verbose=0)
    return history.history


@main_guard
def main(argv=None) -> dict:
    args = parse_args(argv)
    import keras
    from tqdm.auto import tqdm

    start = time.perf_counter()
    x, y = data.load(args.dataset, args.mnist_file)
    source = data.task(x, y, range(0, 5), limit=args.limit)
    target = data.task(x, y, range(5, 10), limit=args.limit)
    largest = max(args.shots)
    if largest > np.bincount(target.y_train).min():
        raise UserError(f"K = {largest} exceeds the {np.bincount(target.y_train).min()} training images of the "
                        "smallest target class; lower --shots or raise --limit")
    run_dir = make_run_dir(args.output_dir, "runs/digits", "transfer")
    save_config(run_dir, {**vars(args), "source_classes": source.classes, "target_classes": target.classes})
    shape = x.shape[1:]
    print(f"source task {source.classes}: {len(source.y_train)} train / {len(source.y_val)} validation / "
          f"{len(source.y_test)} test images; target task {target.classes}: K-shot training sets from "
          f"{len(target.y_train)} images, {len(target.y_test)} test images")

    # 1. The source model on S (003: "train the source model M on S").
    set_seed(args.seed)
    source_model = compile_for_training(build_cnn(shape, 5, "source"), args.learning_rate)
    print(f"training the source model, {args.source_epochs} epochs ...", flush=True)
    history = train(source_model, source.x_train, source.y_train, args, args.source_epochs,
                    validation=(source.x_val, source.y_val))
    write_history(run_dir / "history.csv", history)
    source_accuracy = accuracy(source_model, source.x_test, source.y_test)
    print(f"source test accuracy {source_accuracy:.4f} (S's test split)")
    source_model.save(run_dir / "source.keras")

    # 2-4. Target models on K labels per class: copied and frozen, copied and fine-tuned, scratch.
    rows = []
    jobs = [(k, seed, variant) for k in args.shots for seed in range(args.seed, args.seed + args.seeds)
            for variant in VARIANTS]
    for k, seed, variant in tqdm(jobs, desc="target trainings", unit="model"):
        xk, yk = target.few_shot(k, seed)
        set_seed(seed)
        model = build_cnn(shape, 5, f"target_{variant}")
        if variant != "scratch":
            copy_first(source_model, model, args.copy, frozen=variant == "frozen")   # default: 003's layers[:-1]
        compile_for_training(model, args.learning_rate)
        train(model, xk, yk, args, args.target_epochs)
        rows.append({"k": k, "seed": seed, "variant": variant, "trainable_weights": trainable_count(model),
                     "test_accuracy": accuracy(model, target.x_test, target.y_test)})
        keras.backend.clear_session(free_memory=True)

    # 5. The table, the plot, metrics.json.
    with open(run_dir / "trainings.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    per_k = {}
    for k in args.shots:
        scores = {v: [r["test_accuracy"] for r in rows if r["k"] == k and r["variant"] == v] for v in VARIANTS}
        per_k[str(k)] = {
            "target_scratch_accuracy": float(np.mean(scores["scratch"])),
            "target_transfer_accuracy": {v: float(np.mean(scores[v])) for v in ("frozen", "finetuned")},
            "std": {v: float(np.std(scores[v])) for v in VARIANTS},
            "per_seed": scores,
        }
    metrics = {"source_test_accuracy": source_accuracy, "per_k": per_k, "dataset": args.dataset,
               "copied_layers": list(LAYERS[:args.copy]),
               "split": "accuracies on each task's test split, scored once",
               "seeds": list(range(args.seed, args.seed + args.seeds)), "seconds": round(time.perf_counter() - start, 1)}
    write_metrics(run_dir, metrics)
    plot(per_k, source_accuracy, run_dir / "transfer.png")
    print("\n   K   scratch    frozen copy   fine-tuned copy   (target test accuracy, mean +- std over seeds)")
    for k, m in per_k.items():
        s, t = m["std"], m["target_transfer_accuracy"]
        print(f"{k:>4}   {m['target_scratch_accuracy']:.3f}+-{s['scratch']:.3f}   {t['frozen']:.3f}+-{s['frozen']:.3f}"
              f"   {t['finetuned']:.3f}+-{s['finetuned']:.3f}")
    print(f"wrote {run_dir}/ (metrics.json, trainings.csv, history.csv, transfer.png, source.keras)")
    return metrics


def plot(per_k: dict, source_accuracy: float, path) -> None:
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    ks = [int(k) for k in per_k]
    curves = {"scratch": [m["target_scratch_accuracy"] for m in per_k.values()],
              "frozen copy": [m["target_transfer_accuracy"]["frozen"] for m in per_k.values()],
              "fine-tuned copy": [m["target_transfer_accuracy"]["finetuned"] for m in per_k.values()]}
    for (label, values), key in zip(curves.items(), VARIANTS, strict=False):
        spread = [m["std"][key] for m in per_k.values()]
        axis.errorbar(ks, values, yerr=spread, marker="o", capsize=3, label=label)
    axis.axhline(source_accuracy, color="grey", linestyle=":", label="source model on S")
    axis.set_xscale("log")
    axis.set_xticks(ks, [str(k) for k in ks])
    axis.set_xlabel("K labelled target images per class")
    axis.set_ylabel("target test accuracy")
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, path, title="digits 0-4 -> 5-9 (003)")


if __name__ == "__main__":
    main()
