"""Textbook 12.4.1 (Yosinski et al. 2014): how transferable is each layer?

    python -m digits.transferability                   # digits, depths 1..6, 3 seeds
    python -m digits.transferability --seeds 1 --limit 60
    python -m digits.transferability --backbone mobilenet_v2 \\
        --weights ../shared/weights/mobilenet_v2_1.0_224_no_top.h5 --data-dir ../shared/data/flower_photos --limit 60

The experiment of the chapter on AlexNet and ImageNet, at laptop size. The ten
digits split into A (0-4) and B (5-9); base networks are trained on A and on
B. Then for every depth n = 1 .. L-1 (L = 7 weight layers):

* BnB  - the first n layers of baseB, frozen; the rest re-initialised and trained on B
         (a control: does retraining the top alone lose anything?)
* AnB  - the first n layers of baseA, frozen; the rest trained on B
         (transfer: are A's first n layers general enough for B?)
* BnB+, AnB+ - the same, with the copied layers fine-tuned too.

Each is scored once on B's test split. The chapter's conclusions to check:
the first layers are general (AnB stays near baseB for small n), later ones
specific (AnB drops as n grows), and fine-tuning (AnB+) recovers, or beats,
baseB. The curves are plotted as the paper's Figure 2.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import time

import numpy as np

from common.backbones import BACKBONES
from common.cli import parser_from_doc
from common.errors import main_guard
from common.reports import pyplot, save_figure, write_metrics
from common.training import make_run_dir, save_config, set_seed
from digits import data
from digits.model import LAYERS, accuracy, build_cnn, compile_for_training, copy_first

CURVES = ("BnB", "BnB+", "AnB", "AnB+")


def parse_args(argv=None):
    parser = parser_from_doc(__doc__)
    group = parser.add_argument_group("data")
    group.add_argument("--dataset", choices=data.DATASETS, default="digits",
                       help="digits (bundled 8x8) or mnist (Keras's download) (default: digits)")
    group.add_argument("--mnist-file", default=None, help="a local mnist.npz for --dataset mnist")
    group.add_argument("--limit", type=int, default=None, help="at most N images per digit, for a quick try")
    group.add_argument("--output-dir", default=None,
                       help="this run's folder (default: runs/digits/transferability-<time>/)")
    group = parser.add_argument_group("experiment")
    group.add_argument("--seeds", type=int, default=3, help="repetitions with other initialisations (default: 3)")
    group.add_argument("--seed", type=int, default=0, help="the first seed (default: 0)")
    group.add_argument("--depths", default=None,
                       help=f"the depths n to test, comma-separated (default: all, 1..{len(LAYERS) - 1})")
    group = parser.add_argument_group(
        "the ImageNet version", "with --backbone: freeze the first n blocks of a pretrained backbone on a coarse "
        "grid, fine-tune the rest on the image folder --data-dir (digits options are then ignored)")
    group.add_argument("--backbone", default=None, choices=sorted(BACKBONES), help="e.g. mobilenet_v2")
    group.add_argument("--weights", default="imagenet", help="imagenet or a no-top weights file (default: imagenet)")
    group.add_argument("--data-dir", default="data/flowers/flower_photos",
                       help="class folders of task B (default: data/flowers/flower_photos)")
    group.add_argument("--image-size", type=int, default=160, help="(default: 160)")
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=int, default=None,
                       help="every network, base or transferred (default: 20; 3 with --backbone)")
    group.add_argument("--batch-size", type=int, default=64, help="(default: 64)")
    group.add_argument("--learning-rate", type=float, default=None,
                       help="Adam's rate (default: 1e-3; 1e-4 with --backbone)")
    args = parser.parse_args(argv)
    pretrained_mode = args.backbone is not None
    args.epochs = args.epochs if args.epochs is not None else (3 if pretrained_mode else 20)
    args.learning_rate = args.learning_rate if args.learning_rate is not None else (1e-4 if pretrained_mode else 1e-3)
    for flag, value in {"--seeds": args.seeds, "--epochs": args.epochs, "--batch-size": args.batch_size,
                        "--limit": 1 if args.limit is None else args.limit}.items():
        if value < 1:
            parser.error(f"{flag} must be at least 1, not {value}")
    if not args.learning_rate > 0:
        parser.error(f"--learning-rate must be positive, not {args.learning_rate}")
    every = list(range(1, len(LAYERS)))
    try:
        args.depths = every if args.depths is None else sorted({int(n) for n in args.depths.split(",")})
    except ValueError:
        parser.error(f"--depths takes integers separated by commas, not {args.depths!r}")
    if not set(args.depths) <= set(every):
        parser.error(f"--depths must lie in {every[0]}..{every[-1]}, not {args.depths}")
    return args


@main_guard
def main(argv=None) -> dict:
    args = parse_args(argv)
    import keras
    from tqdm.auto import tqdm

    start = time.perf_counter()
    if args.backbone:
        return pretrained(args, start)
    x, y = data.load(args.dataset, args.mnist_file)
    tasks = {"A": data.task(x, y, range(0, 5), limit=args.limit), "B": data.task(x, y, range(5, 10), limit=args.limit)}
    run_dir = make_run_dir(args.output_dir, "runs/digits", "transferability")
    save_config(run_dir, vars(args))
    B = tasks["B"]
    depths = args.depths
    seeds = list(range(args.seed, args.seed + args.seeds))
    print(f"A = digits {tasks['A'].classes}, B = digits {B.classes}: {len(B.y_train)} training and "
          f"{len(B.y_test)} test images of B; depths n = {depths[0]}..{depths[-1]}, {len(seeds)} seed(s)")

    def fit(model):
        compile_for_training(model, args.learning_rate)
        model.fit(B.x_train if model.name != "baseA" else tasks["A"].x_train,
                  B.y_train if model.name != "baseA" else tasks["A"].y_train,
                  batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=0)
        return model

    def score(model):
        return accuracy(model, B.x_test, B.y_test)

    scores = {name: [[None] * len(seeds) for _ in depths] for name in CURVES}
    base_b = []
    bar = tqdm(total=len(seeds) * (2 + len(CURVES) * len(depths)), desc="trainings", unit="model")
    for s, seed in enumerate(seeds):
        set_seed(seed)
        bases = {}
        for name in ("A", "B"):
            bases[name] = fit(build_cnn(x.shape[1:], 5, f"base{name}"))
            bar.update()
        base_b.append(score(bases["B"]))
        for i, n in enumerate(depths):
            for curve in CURVES:
                set_seed(1000 * seed + 10 * n + CURVES.index(curve))   # the fresh top layers' initialisation
                model = build_cnn(x.shape[1:], 5, curve.replace("+", "_plus"))
                copy_first(bases[curve[0]], model, n, frozen=not curve.endswith("+"))
                scores[curve][i][s] = score(fit(model))
                bar.update()
                del model
            keras.backend.clear_session(free_memory=False)
    bar.close()

    curves = {name: [float(np.mean(v)) for v in values] for name, values in scores.items()}
    metrics = {
        "curves": curves,
        "depths": depths,
        "base_B_accuracy": float(np.mean(base_b)),
        "base_B_per_seed": base_b,
        "per_seed": scores,
        "split": "accuracy on B's test split (digits 5-9), each model scored once",
        "dataset": args.dataset,
        "seconds": round(time.perf_counter() - start, 1),
    }
    write_metrics(run_dir, metrics)
    plot(metrics, run_dir / "transferability.png")
    print(f"\nbase B: {metrics['base_B_accuracy']:.3f}   (B's test accuracy, mean over seeds)")
    print("   n  " + "".join(f"{name:>8}" for name in CURVES))
    for i, n in enumerate(depths):
        print(f"{n:>4}  " + "".join(f"{curves[name][i]:>8.3f}" for name in CURVES))
    print(f"wrote {run_dir}/ (metrics.json, transferability.png, config.json) in {metrics['seconds']:.0f} s")
    return metrics


def pretrained(args, start) -> dict:
    """The ImageNet version (``digits.pretrained_depth``): one fine-tuning per depth of a coarse grid."""
    from tqdm.auto import tqdm

    from digits import pretrained_depth

    run_dir = make_run_dir(args.output_dir, "runs/digits", "transferability-pretrained")
    save_config(run_dir, vars(args))
    print(f"{args.backbone} ({args.weights}) on {args.data_dir}, at most {args.limit or 'all'} images per class, "
          f"{args.epochs} epochs per depth")
    result = pretrained_depth.run(args, tqdm)
    metrics = {**result, "backbone": args.backbone, "seconds": round(time.perf_counter() - start, 1)}
    write_metrics(run_dir, metrics)
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(result["frozen_blocks"], result["accuracy"], marker="D", color="tab:red", label="ImageNet n, B+")
    axis.set_xlabel(f"blocks of {args.backbone} frozen (of {result['blocks']}); the rest fine-tuned")
    axis.set_ylabel("held-out accuracy on B")
    axis.grid(alpha=0.3)
    axis.legend()
    save_figure(figure, run_dir / "transferability.png", title="12.4.1 on a pretrained network")
    print("frozen blocks   accuracy   trainable weights")
    for n, acc, weights in zip(result["frozen_blocks"], result["accuracy"], result["trainable_weights"], strict=False):
        print(f"{n:>13}   {acc:8.3f}   {weights:>17,}")
    print(f"wrote {run_dir}/ (metrics.json, transferability.png, config.json) in {metrics['seconds']:.0f} s")
    return metrics


def plot(metrics: dict, path) -> None:
    """Figure 2 of Yosinski et al.: every seed's point, the means joined by lines."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(7, 4.5))
    styles = {"BnB": ("tab:blue", "o"), "BnB+": ("lightskyblue", "o"), "AnB": ("tab:red", "D"),
              "AnB+": ("lightcoral", "D")}
    depths = metrics["depths"]
    for name, (colour, marker) in styles.items():
        for i, n in enumerate(depths):
            axis.scatter([n] * len(metrics["per_seed"][name][i]), metrics["per_seed"][name][i], s=12,
                         color=colour, marker=marker, alpha=0.5)
        axis.plot(depths, metrics["curves"][name], color=colour, marker=marker, label=name)
    axis.scatter([0] * len(metrics["base_B_per_seed"]), metrics["base_B_per_seed"], color="white",
                 edgecolor="black", zorder=3, label="base B")
    axis.set_xticks([0, *depths])
    axis.set_xlabel("layer n at which the network is chopped and retrained")
    axis.set_ylabel("test accuracy on B")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left")
    save_figure(figure, path, title="transferability by depth (12.4.1): A = 0-4, B = 5-9")


if __name__ == "__main__":
    main()
