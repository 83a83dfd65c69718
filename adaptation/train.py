"""Deep domain adaptation (textbook 12.4.3-12.4.4): DANN, CDAN, DAN, Deep CORAL or AdaBN, labelled source to unlabelled target.

    python -m adaptation.train --source flower_photos --target flower17 --method dann \\
        --data-dir ../shared/data --weights ../shared/weights/mobilenet_v2_1.0_224_no_top.h5
    python -m adaptation.train --source flower17 --target flower_photos --method dan --data-dir ../shared/data
    python -m adaptation.train --source-dir photos/ --target-dir sketches/ --method source-only

Source and target are two image collections with the same classes: the
flower task (flower_photos and flower17 share daisy, dandelion, sunflower and
tulip; both are read in place from --data-dir, the folder holding
flower_photos/ and flower17/jpg/), or any two class-folder trees given with
--source-dir / --target-dir. The target's labels are used once, at the end,
to score the adapted classifier; nothing in training or in any setting sees
them. 10 % of the source (per class) is held out as source validation. With
--target-labels K (semi-supervised adaptation) K target images per class,
drawn with --seed, are labelled: trained on beside the source in l_c, and
left out of the unlabelled target and of every score.

The network: the pretrained backbone (its own preprocessing inside), global
average pooling, a bottleneck (Dense + BatchNorm + ReLU, --bottleneck units),
a classifier, and for DANN a domain discriminator behind a gradient reversal
layer. With --unfreeze-from none (the default) the backbone is frozen: its
features of every image, under the fixed --views (original, mirror, central
crop and its mirror), are computed once into the shared --cache-dir and only
the layers above train, minutes on a CPU; each image (target, source
validation) is then predicted as the mean of its views' predictions
(--score-on). With a layer name the base trains from that layer on (at a
tenth of the learning rate), on images.

Each step sees a source batch and a target batch of --batch-size each. The
settings are the papers' (SGD, momentum 0.9, lr0 = 0.01 annealed as
lr0 / (1 + 10 p)^0.75, weight decay 1e-3; DANN's lambda rising as
2 / (1 + exp(-10 p)) - 1; DAN's and CORAL's lambda constant), the same for
every method, fixed in advance. Lambda's maximum (--trade-off) is chosen
without target labels: one training each for 0.3, 1 and 3, keeping the one
whose predictions on the unlabelled target have the lowest mean entropy.

Writes one folder (default runs/adaptation/<source>-<target>-<method>-<time>/):
config.json, metrics.json (target accuracy overall and per class, source
validation accuracy, MMD^2 and proxy A-distance before and after), history.csv
(per epoch), steps.csv (every step: l_c, l_A or l_d, lambda, learning rate,
discriminator accuracy), curves.png, steps.png, features.png (2-D picture of
both domains before and after), confusion.png (target), model.keras (pixels in,
class probabilities out) and labels.txt; with --tensorboard also the
per-epoch curves for `tensorboard --logdir <run folder>` (one log per lambda
candidate under trade-off-<value>/ when --trade-off is auto).
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import time

from adaptation.arguments import (
    add_domain_arguments,
    add_target_labels_argument,
    check_target_labels,
    check_trade_off,
    check_views,
)
from adaptation.candidates import trade_off_candidates, train_once
from adaptation.data import load_pair
from adaptation.features import VIEWS
from adaptation.inputs import VALIDATION_FRACTION, hold_out_labelled_target, prepare
from adaptation.model import BOTTLENECK_UNITS
from adaptation.report import measure, print_summary, score, write_run
from adaptation.schedules import LAMBDA_SCHEDULES, LEARNING_RATE_SCHEDULES
from adaptation.selection import TRADE_OFF_GRID, select_by_entropy
from adaptation.settings import DEFAULT_LAMBDA_SCHEDULE, METHODS
from common import cli
from common.data import split_per_class
from common.errors import main_guard
from common.files import check_apart
from common.run import Run

OUTPUT_PARENT = "runs/adaptation"
DEFAULT_DATA_DIR = "data"


def parse_args(argv=None):
    parser = cli.parser_from_doc(__doc__)
    cli.add_common_arguments(
        parser,
        data_dir=DEFAULT_DATA_DIR,
        output_parent=OUTPUT_PARENT,
        backbone="mobilenet_v2",
        image_size=224,
        epochs=20,
        batch_size=32,
        data_help="the folder holding flower_photos/ and flower17/ (e.g. ../shared/data); only read",
    )
    add_domain_arguments(parser)
    add_target_labels_argument([group for group in parser._action_groups if group.title == "domains"][0])
    method = parser.add_argument_group("adaptation")
    method.add_argument("--method", default="dann", choices=METHODS, help="(default: dann)")
    method.add_argument("--trade-off", default="auto",
                        help="lambda's maximum, the weight of l_A or l_d in eq. 21-22: a number, or auto: train "
                        "once per value of --trade-off-grid and keep the one whose target predictions have the "
                        "lowest mean entropy (unsupervised: no target label is read) (default: auto)")
    method.add_argument("--trade-off-grid", default=",".join(f"{value:g}" for value in TRADE_OFF_GRID),
                        help="the candidates of --trade-off auto (default: %(default)s)")
    method.add_argument("--lambda-schedule", choices=LAMBDA_SCHEDULES, default=None,
                        help="dann: 2 / (1 + exp(-10 p)) - 1 times --trade-off; constant: --trade-off throughout "
                        "(default: " + ", ".join(f"{schedule} for {name}"
                                                 for name, schedule in DEFAULT_LAMBDA_SCHEDULE.items()) + ")")
    method.add_argument("--kernels", type=int, default=5,
                        help="DAN: Gaussian kernels around the median-heuristic bandwidth, spaced by 2 (default: 5)")
    method.add_argument("--estimator", choices=("biased", "unbiased", "linear"), default="biased",
                        help="DAN: the MK-MMD^2 estimator of mmd.distance (default: biased)")
    model = [group for group in parser._action_groups if group.title == "model"][0]
    cli.add_unfreeze_argument(model, default="none", why="a frozen base: its features computed once into the cache")
    model.add_argument("--bottleneck", type=int, default=BOTTLENECK_UNITS,
                       help=f"units of the bottleneck the adaptation losses act on (default: {BOTTLENECK_UNITS})")
    model.add_argument("--views", default=",".join(VIEWS),
                       help="fixed views of every image whose frozen features are trained on, with a frozen "
                       f"backbone (default: {','.join(VIEWS)})")
    model.add_argument("--score-on", choices=("views", "original"), default="views",
                       help="predict each image (target, source validation) as the mean of its --views' "
                       "predictions, or from the plain image alone (default: views)")
    training = [group for group in parser._action_groups if group.title == "training"][0]
    training.add_argument("--learning-rate", type=float, default=0.01, help="lr0 of the new layers (default: 0.01)")
    training.add_argument("--lr-schedule", choices=LEARNING_RATE_SCHEDULES, default="annealed",
                          help="annealed: lr0 / (1 + 10 p)^0.75; constant: lr0 (default: annealed)")
    training.add_argument("--momentum", type=float, default=0.9, help="(default: 0.9)")
    training.add_argument("--weight-decay", type=float, default=1e-3, help="(default: 0.001)")
    report = parser.add_argument_group("report")
    report.add_argument("--embedding", choices=("tsne", "pca"), default="tsne",
                        help="2-D picture of the features before and after (default: tsne)")
    args = cli.resolve(parser.parse_args(argv))
    check_arguments(parser, args)
    return args


def check_arguments(parser, args) -> None:
    if args.batch_size < 2:   # --epochs and --learning-rate: cli.resolve
        parser.error("--batch-size must be at least 2")
    if args.bottleneck < 1:
        parser.error("--bottleneck must be positive")
    check_trade_off(parser, args)
    if args.kernels < 1:
        parser.error("--kernels must be at least 1")
    check_views(parser, args)
    check_target_labels(parser, args)
    if args.lambda_schedule is None:
        args.lambda_schedule = DEFAULT_LAMBDA_SCHEDULE.get(args.method, "constant")


@main_guard
def main(argv=None) -> dict:
    args = parse_args(argv)
    # 12.2.2: a labelled source, an unlabelled target, the same classes (checked before any run folder exists)
    pair = load_pair(None if args.source_dir else args.source, None if args.target_dir else args.target,
                     args.data_dir, args.source_dir, args.target_dir, args.limit)
    for root in (pair.source.root, pair.target.root) if args.output_dir else ():
        check_apart(args.output_dir, root, "--output-dir")  # the data folders are only read
    # semi-supervised (--target-labels K): K target images per class labelled, kept out of the rest
    pair, labelled = hold_out_labelled_target(pair, args.target_labels, args.seed)
    config = {"direction": pair.direction, "class_names": pair.class_names,
              "source_images": len(pair.source), "target_images": len(pair.target),
              **({"labelled_target_images": len(labelled)} if labelled is not None else {})}
    with Run(args, f"{pair.source_name}-{pair.target_name}-{args.method}", parent=OUTPUT_PARENT,
             config=config) as run:
        return adapt(args, pair, run, labelled)


def adapt(args, pair, run: Run, labelled=None) -> dict:
    """Train (once per lambda candidate), choose lambda without target labels, score the target once, report."""
    args.learning_rate = run.learning_rate(args.learning_rate)
    run.record()  # the learning rate as trained with
    known = f" (and {len(labelled)} labelled ones, {args.target_labels} per class)" if labelled is not None else ""
    print(f"{pair.direction}: {len(pair.source)} source images, {len(pair.target)} target images{known}, "
          f"classes {', '.join(pair.class_names)}; method {args.method}", flush=True)
    started = time.perf_counter()
    # 1. the inputs: 10 % of each source class held out; the backbone's features of every view, or images
    train_rows, validation_rows = split_per_class(pair.source.labels, VALIDATION_FRACTION, seed=args.seed)
    prepared = prepare(args, pair, train_rows, validation_rows, labelled)

    # 2. eq. 21-22 trained once per candidate lambda, each from the same encoder
    encoder_weights = prepared["encoder"].get_weights()
    candidates = trade_off_candidates(args)
    several = len(candidates) > 1
    runs = []
    for trade_off in candidates:
        under = f"trade-off-{trade_off:g}" if several else None  # one TensorBoard log per candidate

        def board(model, optimizer, under=under):
            return run.board(model, optimizer, under=under)

        result = train_once(args, pair, prepared, trade_off, encoder_weights=encoder_weights if several else None,
                            board=board, strategy=run.strategy)
        runs.append(result)
        if several:
            print(f"trade-off {trade_off:g}: mean entropy of the target predictions {result['target_entropy']:.4f}, "
                  f"source validation accuracy {result['source_val_accuracy']:.4f}", flush=True)

    # 3. lambda chosen by the unlabelled target's mean prediction entropy
    chosen = select_by_entropy(runs) if several else runs[0]
    adapter, history = chosen["adapter"], chosen["history"]
    training_seconds = sum(result["seconds"] for result in runs)
    if several:
        print(f"chosen trade-off {chosen['trade_off']:g} (lowest target entropy)", flush=True)
        prepared["encoder"].set_weights(chosen["encoder_weights"])  # the candidates share one encoder

    # 4. the target's labels, used here for the first and only time: scoring; then the domains' distance
    target, source_validation = score(adapter, prepared, pair.class_names)
    measures, after = measure(adapter, prepared, args.seed)
    metrics = {
        "direction": pair.direction,
        "method": args.method,
        "target_accuracy": target["val_accuracy"],
        "target_per_class_accuracy": target["per_class_accuracy"],
        "target_confusion_matrix": target["confusion_matrix"],
        "source_val_accuracy": source_validation,
        "class_names": pair.class_names,
        **({"labelled_target_images": len(labelled), "target_labels_per_class": args.target_labels}
           if labelled is not None else {}),
        **measures,
        "measured_on": {"before": f"{args.backbone} pooled features (original view)",
                        "after": "the adapted bottleneck's features"
                                 + (" (AdaBN: each domain with its own BatchNorm statistics)" if args.method == "adabn" else "")},
        "trade_off": chosen["trade_off"],
        "trade_off_selection": [
            {key: result[key] for key in ("trade_off", "target_entropy", "source_val_accuracy", "seconds")}
            for result in runs
        ] if several else None,
        "trained": prepared["trained"],
        "steps": len(history.steps),
        "seconds": {"features": round(prepared["feature_seconds"], 2), "training": round(training_seconds, 2),
                    "total": round(time.perf_counter() - started, 2)},
    }

    # 5. the run folder
    write_run(run.folder, args, adapter, history, prepared, after, target, pair.class_names,
              title=f"{args.method}, {pair.direction}")
    print_summary(metrics, pair.target_name, len(prepared["target_labels"]), training_seconds)
    return run.finish({}, metrics)  # metrics.json; history.csv and the curves are adaptation's own


if __name__ == "__main__":
    main()
