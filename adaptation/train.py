"""Deep domain adaptation (textbook 12.4.3-12.4.4): DANN, DAN, Deep CORAL or AdaBN, labelled source to unlabelled target.

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
them. 10 % of the source (per class) is held out as source validation.

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

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import csv
import time
from pathlib import Path

import keras
import numpy as np

from adaptation.adapter import ADVERSARIAL, DEFAULT_LAMBDA_SCHEDULE, METHODS, DomainAdapter
from adaptation.data import COLLECTIONS, load_pair
from adaptation.features import VIEWS, FrozenFeatures
from adaptation.measures import domain_mmd2, proxy_a_distance
from adaptation.model import BOTTLENECK_UNITS, image_encoder, vector_encoder
from adaptation.plots import plot_epochs, plot_features, plot_steps
from adaptation.schedules import LAMBDA_SCHEDULES, LEARNING_RATE_SCHEDULES
from adaptation.selection import TRADE_OFF_GRID, prediction_entropy, select_by_entropy
from common import cli, distribute
from common.data import decode_image, split_per_class
from common.errors import main_guard
from common.files import check_apart
from common.predict import MODEL_FILE, write_labels
from common.reports import classification_metrics, plot_confusion, write_history, write_metrics
from common.training import save_config, set_seed, tensorboard_for_loop

OUTPUT_PARENT = "runs/adaptation"
DEFAULT_DATA_DIR = "data"
VALIDATION_FRACTION = 0.1
PRETRAINED_RATE_SCALE = 0.1  # the papers train pretrained layers at a tenth of the new layers' rate


def add_adaptation_arguments(parser) -> None:
    """The flags that pick the domains, shared with ``adaptation.benchmark``."""
    domains = parser.add_argument_group("domains")
    domains.add_argument("--source", default="flower_photos", choices=COLLECTIONS,
                         help="labelled source collection under --data-dir (default: flower_photos)")
    domains.add_argument("--target", default="flower17", choices=COLLECTIONS,
                         help="unlabelled target collection under --data-dir (default: flower17)")
    domains.add_argument("--source-dir", default=None,
                         help="instead of --source: any folder of class folders (only read)")
    domains.add_argument("--target-dir", default=None,
                         help="instead of --target: any folder of class folders with the source's class names (only read)")


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
    add_adaptation_arguments(parser)
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
                        "(default: " + ", ".join(f"{schedule} for {name}" for name, schedule in DEFAULT_LAMBDA_SCHEDULE.items()) + ")")
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
    if args.lambda_schedule is None:
        args.lambda_schedule = DEFAULT_LAMBDA_SCHEDULE.get(args.method, "constant")


def check_trade_off(parser, args) -> None:
    """--trade-off (a number or auto) and --trade-off-grid (a comma list) to numbers; shared with the benchmark."""
    try:
        args.trade_off_grid = [float(value) for value in str(args.trade_off_grid).split(",") if value.strip()]
        if args.trade_off != "auto":
            args.trade_off = float(args.trade_off)
    except ValueError:
        parser.error(f"--trade-off takes a number or auto, --trade-off-grid a comma list of numbers; got "
                     f"{args.trade_off!r} and {args.trade_off_grid!r}")
    if (args.trade_off != "auto" and args.trade_off < 0) or not args.trade_off_grid or min(args.trade_off_grid) < 0:
        parser.error("--trade-off and --trade-off-grid take numbers of 0 or more")


def check_views(parser, args) -> None:
    """--views as a checked comma list with the original view first: the first view is the one TCA/JDA and
    the before/after measures read; shared with the benchmark."""
    views = [view.strip() for view in args.views.split(",") if view.strip()]
    unknown = [view for view in views if view not in VIEWS]
    if unknown or not views:
        parser.error(f"--views takes a comma list of {', '.join(VIEWS)}; got {args.views!r}")
    args.views = ",".join(["original"] + [view for view in views if view != "original"])


def frozen(args) -> bool:
    return str(args.unfreeze_from).lower() == "none"


# ---------------------------------------------------------------------- data
def prepare_frozen(args, pair, train_rows, validation_rows):
    """Cached backbone features: arrays for training, validation, scoring and the 'before' measures."""
    views = tuple(args.views.split(","))
    features = FrozenFeatures(args.backbone, args.weights, args.image_size, args.cache_dir)
    started = time.perf_counter()
    print(f"backbone features ({args.backbone}, {args.image_size}px, views {', '.join(views)}), "
          f"cache {args.cache_dir}", flush=True)
    source = features.extract(pair.source.paths, views, description="source features")
    target = features.extract(pair.target.paths, views, description="target features")
    print(f"  {source.computed + target.computed} computed, {source.reused + target.reused} read from the cache, "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    source_labels = pair.source.labels[source.kept]
    position = {index: row for row, index in enumerate(source.kept)}
    train = np.asarray([position[i] for i in train_rows if i in position], int)
    validation = np.asarray([position[i] for i in validation_rows if i in position], int)
    return {
        "encoder": vector_encoder(features.dim, name=f"{args.backbone}_features"),
        "source_train": (np.concatenate([source.features[view][train] for view in views]),
                         np.tile(source_labels[train], len(views))),
        "target_train": np.concatenate([target.features[view] for view in views]),
        "source_validation": (source.features["original"][validation], source_labels[validation]),
        # what is scored: every view (predictions averaged) or the plain image alone (--score-on)
        "source_validation_views": [source.features[view][validation] for view in scored_views(args, views)],
        "target_views": [target.features[view] for view in scored_views(args, views)],
        "source_all": (source.features["original"], source_labels),
        "source_train_rows": train,  # rows of source_all trained on
        "target_all": target.features["original"],
        "target_labels": pair.target.labels[target.kept],
        "before_source": source.features["original"],
        "before_target": target.features["original"],
        "feature_seconds": time.perf_counter() - started,
        "frozen": features,
        "trained": f"bottleneck, classifier{' and discriminator' if args.method in ADVERSARIAL else ''} on frozen "
                   f"{args.backbone} features ({len(views)} views: {', '.join(views)})",
    }


def scored_views(args, views) -> tuple:
    return tuple(views) if getattr(args, "score_on", "views") == "views" else ("original",)


def predict_views(adapter: DomainAdapter, inputs: list, domain: str) -> np.ndarray:
    """Class probabilities averaged over the views of the same images (test-time augmentation)."""
    return np.mean([adapter.predict_proba(view, domain=domain) for view in inputs], axis=0)


def image_examples(paths, labels, image_size: int, mirror: bool = False, seed: int = 0):
    """Unbatched decoded images (0..255), labels alongside when given; a random mirror if asked."""
    import tensorflow as tf

    size = (int(image_size), int(image_size))
    paths = [str(path) for path in paths]
    if labels is None:
        dataset = tf.data.Dataset.from_tensor_slices(paths).map(
            lambda path: decode_image(path, size), num_parallel_calls=tf.data.AUTOTUNE)
        if mirror:
            dataset = dataset.map(lambda image: tf.image.random_flip_left_right(image, seed=seed))
        return dataset
    dataset = tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, np.int32))).map(
        lambda path, label: (decode_image(path, size), label), num_parallel_calls=tf.data.AUTOTUNE)
    if mirror:
        dataset = dataset.map(lambda image, label: (tf.image.random_flip_left_right(image, seed=seed), label))
    return dataset


def prepare_images(args, pair, train_rows, validation_rows):
    """The backbone trains from --unfreeze-from on: datasets of images, and the pretrained features as 'before'."""
    encoder, base, first = image_encoder(args.backbone, args.weights, args.image_size, args.unfreeze_from)
    print(f"training {args.backbone} from layer {first} ({base.layers[min(first, len(base.layers) - 1)].name}) on, "
          "on images", flush=True)
    source, target = pair.source, pair.target
    started = time.perf_counter()
    before_source = encoder.predict(image_examples(source.paths, None, args.image_size).batch(32), verbose=0)
    before_target = encoder.predict(image_examples(target.paths, None, args.image_size).batch(32), verbose=0)
    train_rows = np.asarray(train_rows, int)
    return {
        "encoder": encoder,
        "source_train": image_examples([source.paths[i] for i in train_rows], source.labels[train_rows],
                                       args.image_size, mirror=True, seed=args.seed),
        "source_train_size": len(train_rows),
        "target_train": image_examples(target.paths, None, args.image_size, mirror=True, seed=args.seed + 1),
        "target_train_size": len(target),
        "source_validation": (image_examples([source.paths[i] for i in validation_rows], None, args.image_size),
                              source.labels[np.asarray(validation_rows, int)]),
        "source_validation_views": [image_examples([source.paths[i] for i in validation_rows], None, args.image_size)],
        "target_views": [image_examples(target.paths, None, args.image_size)],
        "source_all": (image_examples(source.paths, None, args.image_size), source.labels),
        "target_all": image_examples(target.paths, None, args.image_size),
        "target_labels": target.labels,
        "before_source": before_source,
        "before_target": before_target,
        "feature_seconds": time.perf_counter() - started,
        "frozen": None,
        "trained": f"{args.backbone} from layer {base.layers[min(first, len(base.layers) - 1)].name} on, bottleneck, "
                   f"classifier{' and discriminator' if args.method in ADVERSARIAL else ''}, on images",
    }


# ---------------------------------------------------------------------- run
def make_adapter(args, encoder, pretrained: bool, trade_off: float = 1.0, strategy=None,
                 steps_per_epoch=None) -> DomainAdapter:
    return DomainAdapter(
        encoder, args.method, epochs=args.epochs, steps_per_epoch=steps_per_epoch, verbose=True,
        bottleneck=args.bottleneck, batch_size=args.batch_size, learning_rate=args.learning_rate,
        momentum=args.momentum, weight_decay=args.weight_decay, learning_rate_schedule=args.lr_schedule,
        trade_off=trade_off, lambda_schedule=args.lambda_schedule,
        encoder_learning_rate_scale=PRETRAINED_RATE_SCALE if pretrained else 1.0,
        n_kernels=args.kernels, mmd_estimator=args.estimator, random_state=args.seed, strategy=strategy,
    )


def trade_off_candidates(args) -> list[float]:
    if args.method in ("source-only", "adabn"):
        return [0.0]
    if args.trade_off == "auto":
        return list(args.trade_off_grid)
    return [float(args.trade_off)]


def train_once(args, pair, prepared, trade_off: float, encoder_weights=None, log_dir=None, strategy=None) -> dict:
    """One training run with lambda's maximum ``trade_off``; its target entropy is the only target statistic.

    ``log_dir``: a folder for TensorBoard's logs of this run (``--tensorboard``), or None."""
    set_seed(args.seed)
    if encoder_weights is not None:
        prepared["encoder"].set_weights(encoder_weights)
    steps_per_epoch = None
    if not frozen(args):
        steps_per_epoch = -(-max(prepared["source_train_size"], prepared["target_train_size"]) // args.batch_size)
    adapter = make_adapter(args, prepared["encoder"], pretrained=not frozen(args), trade_off=trade_off,
                           strategy=strategy, steps_per_epoch=steps_per_epoch)
    validation_labels = prepared["source_validation"][1]
    board = []  # TensorBoard's callbacks, made at the first epoch's end, once the optimizer exists

    def on_epoch_end(epoch, row):
        probabilities = predict_views(adapter, prepared["source_validation_views"], "source")
        extra = {"source_val_accuracy": float(np.mean(probabilities.argmax(axis=1) == validation_labels))}
        if log_dir is not None:
            if not board:
                board.append(tensorboard_for_loop(log_dir, adapter.network_.full_model(), adapter.optimizer_))
            board[0].on_epoch_end(epoch - 1, {key: float(value) for key, value in {**row, **extra}.items()
                                              if key != "epoch"})
        return extra

    started = time.perf_counter()
    label = f"{args.method} {pair.direction}" + (f" trade-off {trade_off:g}" if args.method not in ("source-only", "adabn") else "")
    history = adapter.fit_domains(prepared["source_train"], prepared["target_train"], n_classes=len(pair.class_names),
                                  on_epoch_end=on_epoch_end, description=label).history_
    seconds = time.perf_counter() - started
    if board:
        board[0].on_train_end()
    # unsupervised: the predicted distributions on the unlabelled target, no labels
    entropy = prediction_entropy(predict_views(adapter, prepared["target_views"], "target"))
    return {"adapter": adapter, "history": history, "trade_off": trade_off, "target_entropy": entropy,
            "source_val_accuracy": history.epochs[-1]["source_val_accuracy"], "seconds": seconds,
            "encoder_weights": prepared["encoder"].get_weights() if encoder_weights is not None else None}


def saved_model(args, adapter: DomainAdapter, prepared) -> keras.Model:
    """Pixels (0..255) in, class probabilities out, whichever way the encoder was trained."""
    network = adapter.network_
    if prepared["frozen"] is None:
        return network.full_model(name=f"adapted_{args.backbone}_{args.method.replace('-', '_')}")
    from common.backbones import build_model

    def head(pooled):
        return keras.layers.Softmax(name="probabilities")(network.classifier(network.bottleneck(pooled)))

    model, _ = build_model(args.backbone, args.weights, args.image_size, head=head, pooling="avg",
                           base=prepared["frozen"].base,
                           name=f"adapted_{args.backbone}_{args.method.replace('-', '_')}")
    return model


def write_steps(path, steps: list[dict]) -> Path:
    keys = list(steps[0]) if steps else []
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(steps)
    return Path(path)


def protect_data(args, pair) -> None:
    """The run folder may not lie inside a data folder: those are only read."""
    if not args.output_dir:
        return
    for root in (pair.source.root, pair.target.root):
        check_apart(args.output_dir, root, "--output-dir")


@main_guard
def main(argv=None) -> dict:
    args = parse_args(argv)
    with distribute.setup(args.distribute) as distribution:
        return run(args, distribution)


def run(args, distribution) -> dict:
    """Train, choose lambda, score the target once, report; under ``--distribute`` the networks live in its scope."""
    strategy = None if distribution.name == "none" else distribution.strategy
    args.learning_rate = distribution.learning_rate(args.learning_rate, args.scale_learning_rate)
    pair = load_pair(None if args.source_dir else args.source, None if args.target_dir else args.target,
                     args.data_dir, args.source_dir, args.target_dir)
    protect_data(args, pair)
    run_dir = distribution.make_run_dir(args.output_dir, OUTPUT_PARENT,
                                        f"{pair.source_name}-{pair.target_name}-{args.method}")
    save_config(run_dir, {**cli.config_of(args), **distribution.describe(), "direction": pair.direction, "class_names": pair.class_names,
                          "source_images": len(pair.source), "target_images": len(pair.target)})
    print(f"{pair.direction}: {len(pair.source)} source images, {len(pair.target)} target images, "
          f"classes {', '.join(pair.class_names)}; method {args.method}", flush=True)
    set_seed(args.seed)
    started = time.perf_counter()
    train_rows, validation_rows = split_per_class(pair.source.labels, VALIDATION_FRACTION, seed=args.seed)
    with distribution.scope():  # the encoder's variables, mirrored under a strategy
        prepared = (prepare_frozen if frozen(args) else prepare_images)(args, pair, train_rows, validation_rows)
    encoder_weights = prepared["encoder"].get_weights()  # every candidate starts from the same encoder

    candidates = trade_off_candidates(args)
    runs = []
    for trade_off in candidates:
        log_dir = None
        if args.tensorboard:  # one log per candidate: tensorboard --logdir <run folder> shows them side by side
            log_dir = run_dir / f"trade-off-{trade_off:g}" if len(candidates) > 1 else run_dir
        run = train_once(args, pair, prepared, trade_off,
                         encoder_weights=encoder_weights if len(candidates) > 1 else None, log_dir=log_dir,
                         strategy=strategy)
        runs.append(run)
        if len(candidates) > 1:
            print(f"trade-off {trade_off:g}: mean entropy of the target predictions {run['target_entropy']:.4f}, "
                  f"source validation accuracy {run['source_val_accuracy']:.4f}", flush=True)
    chosen = select_by_entropy(runs) if len(runs) > 1 else runs[0]
    adapter, history, training_seconds = chosen["adapter"], chosen["history"], sum(run["seconds"] for run in runs)
    validation_labels = prepared["source_validation"][1]
    if len(runs) > 1:
        print(f"chosen trade-off {chosen['trade_off']:g} (lowest target entropy)", flush=True)
        prepared["encoder"].set_weights(chosen["encoder_weights"])  # the candidates share one encoder

    # The target's labels, used here for the first and only time: scoring.
    target_probabilities = predict_views(adapter, prepared["target_views"], "target")
    target = classification_metrics(prepared["target_labels"], target_probabilities, pair.class_names)
    source_validation = float(np.mean(
        predict_views(adapter, prepared["source_validation_views"], "source").argmax(axis=1) == validation_labels))
    source_inputs, source_labels = prepared["source_all"]
    after_source = adapter.transform(source_inputs, domain="source")
    after_target = adapter.transform(prepared["target_all"], domain="target")
    measures = {
        "mmd2": {"before": domain_mmd2(prepared["before_source"], prepared["before_target"], seed=args.seed),
                 "after": domain_mmd2(after_source, after_target, seed=args.seed)},
        "a_distance": {"before": proxy_a_distance(prepared["before_source"], prepared["before_target"], seed=args.seed),
                       "after": proxy_a_distance(after_source, after_target, seed=args.seed)},
    }
    metrics = {
        "direction": pair.direction,
        "method": args.method,
        "target_accuracy": target["val_accuracy"],
        "target_per_class_accuracy": target["per_class_accuracy"],
        "target_confusion_matrix": target["confusion_matrix"],
        "source_val_accuracy": source_validation,
        "class_names": pair.class_names,
        **measures,
        "measured_on": {"before": f"{args.backbone} pooled features (original view)",
                        "after": "the adapted bottleneck's features"
                                 + (" (AdaBN: each domain with its own BatchNorm statistics)" if args.method == "adabn" else "")},
        "trade_off": chosen["trade_off"],
        "trade_off_selection": [
            {key: run[key] for key in ("trade_off", "target_entropy", "source_val_accuracy", "seconds")} for run in runs
        ] if len(runs) > 1 else None,
        "trained": prepared["trained"],
        "steps": len(history.steps),
        "seconds": {"features": round(prepared["feature_seconds"], 2), "training": round(training_seconds, 2),
                    "total": round(time.perf_counter() - started, 2)},
    }

    title = f"{args.method}, {pair.direction}"
    epochs = [{key: value for key, value in row.items()} for row in history.epochs]
    write_history(run_dir / "history.csv", {key: [row.get(key) for row in epochs] for key in epochs[0]})
    write_steps(run_dir / "steps.csv", history.steps)
    plot_epochs(history.epochs, run_dir / "curves.png", title=title)
    plot_steps(history.steps, run_dir / "steps.png", title=title)
    plot_confusion(target["confusion_matrix"], pair.class_names, run_dir / "confusion.png",
                   title=f"target confusion ({title})")
    plot_features(
        [(f"before: {args.backbone} features", prepared["before_source"], prepared["before_target"]),
         (f"after: {args.method} bottleneck", after_source, after_target)],
        source_labels, prepared["target_labels"], pair.class_names, run_dir / "features.png",
        method=args.embedding, seed=args.seed,
    )
    saved_model(args, adapter, prepared).save(run_dir / MODEL_FILE)
    write_labels(run_dir, pair.class_names)
    write_metrics(run_dir, metrics)

    print(f"target accuracy {metrics['target_accuracy']:.4f} ({pair.target_name}, {len(prepared['target_labels'])} images)")
    for name, accuracy in target["per_class_accuracy"].items():
        print(f"  {name:>12s}: {accuracy:.4f}" if accuracy is not None else f"  {name:>12s}: -")
    print(f"source validation accuracy {source_validation:.4f}")
    print(f"MMD^2 {measures['mmd2']['before']:.4f} -> {measures['mmd2']['after']:.4f}, "
          f"proxy A-distance {measures['a_distance']['before']:.3f} -> {measures['a_distance']['after']:.3f}")
    print(f"trained {metrics['trained']}: {metrics['steps']} steps, {training_seconds:.1f} s")
    print(f"wrote {Path(run_dir).resolve()}")
    return metrics


if __name__ == "__main__":
    main()
