"""The flags every example shares, grouped as in timm's train.py.

Each example passes its textbook defaults (VGG16 at 150x150 for cats vs dogs,
Inception-v3 at 299x299 for flowers); ``--image-size`` left unset means the
textbook's size for the textbook's backbone and the backbone's own size
otherwise, so ``--backbone mobilenet_v2`` alone just works.
"""
from __future__ import annotations

import argparse
import sys

from common.backbones import BACKBONES, UNFREEZE_FROM, get_spec
from common.distribute import add_distribute_arguments
from common.startup import add_verbose_argument

DEFAULT_CACHE_DIR = "data/cache/features"


def make_parser(description: str, epilog: str | None = None) -> argparse.ArgumentParser:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    parser = argparse.ArgumentParser(
        prog=f"python -m {spec.name}" if spec is not None else None,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_verbose_argument(parser)
    return parser




def parser_from_doc(doc: str) -> argparse.ArgumentParser:
    """A parser whose description is the module docstring's first paragraph and epilog the rest.

    Every command's docstring starts with one summary line followed by usage
    examples, so ``--help`` shows both without repeating them in code.
    """
    summary, _, rest = doc.partition("\n\n")
    return make_parser(summary, epilog=rest or None)


def add_common_arguments(
    parser: argparse.ArgumentParser,
    *,
    data_dir: str,
    output_parent: str,
    backbone: str,
    image_size: int | None,
    epochs: int,
    batch_size: int,
    data_help: str,
    min_epochs: int = 1,
) -> None:
    """The shared groups. ``min_epochs=0`` where no training is a meaningful run (flowers.train scores
    the untrained head)."""
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", default=data_dir, help=f"{data_help} (default: {data_dir})")
    data.add_argument(
        "--output-dir",
        default=None,
        help=f"folder for this run's results (default: a new {output_parent}/<stage>-<time>/)",
    )
    data.add_argument(
        "--limit", type=int, default=None, metavar="N",
        help="a quick try: at most N images per class of each folder read, the first N in file-name order "
        "(default: all)",
    )
    data.add_argument(
        "--cache-dir",
        default=DEFAULT_CACHE_DIR,
        help=f"bottleneck-feature cache, shared by all runs (default: {DEFAULT_CACHE_DIR})",
    )
    model = parser.add_argument_group("model")
    model.add_argument("--backbone", default=backbone, choices=sorted(BACKBONES), help=f"(default: {backbone})")
    model.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet (Keras download and cache), none (random, for tests) or a path to a no-top "
        "weights file (default: imagenet)",
    )
    model.add_argument(
        "--image-size",
        type=int,
        default=None,
        help=f"square input size (default: {image_size} for {backbone}, else the backbone's own)",
    )
    training = parser.add_argument_group("training")
    training.add_argument("--epochs", type=int, default=epochs, help=f"(default: {epochs})")
    training.add_argument(
        "--batch-size", type=int, default=batch_size,
        help=f"the global batch: with --distribute it is split across the replicas (default: {batch_size})",
    )
    training.add_argument("--seed", type=int, default=0, help="seed for splits, shuffling and initialisation (default: 0)")
    add_tensorboard_argument(training)
    add_distribute_arguments(parser)
    parser.set_defaults(_textbook_backbone=backbone, _textbook_size=image_size, _output_parent=output_parent,
                        _min_epochs=min_epochs)


def add_tensorboard_argument(group) -> None:
    """``--tensorboard``: every training command can log to TensorBoard, into its run folder."""
    group.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log the training curves for TensorBoard into <run folder>/tensorboard "
        "(view with: tensorboard --logdir <run folder>)",
    )


def add_unfreeze_argument(group, default: str | None = None, why: str = "") -> None:
    """``--unfreeze-from LAYER``: the one name every command gives the first trainable layer.

    ``default=None`` means the backbone's own cut point (``common.backbones.UNFREEZE_FROM``),
    filled in by ``resolve``; a command with a textbook value of its own (flower17's
    ``layers[:5]``) passes it, and ``why`` says where it comes from.
    """
    if default is None:
        shown = ", ".join(f"{layer} for {name}" for name, (layer, _) in UNFREEZE_FROM.items())
    else:
        shown = f"{default}, {why}" if why else default
    group.add_argument(
        "--unfreeze-from",
        default=default,
        metavar="LAYER",
        help="first trainable layer of the base when fine-tuning: a layer name, an index (5 freezes "
        f"layers[:5], 0 trains every layer) or 'none' (the whole base frozen) (default: {shown})",
    )


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Fill in the backbone-dependent defaults and check the numbers."""
    if args.image_size is None:
        if args.backbone == args._textbook_backbone and args._textbook_size:
            args.image_size = args._textbook_size
        else:
            args.image_size = get_spec(args.backbone).default_size
    if getattr(args, "unfreeze_from", "absent") is None:
        args.unfreeze_from = UNFREEZE_FROM[args.backbone][0]
    limits = {"epochs": getattr(args, "_min_epochs", 1), "batch_size": 1, "image_size": 1, "limit": 1}
    for name, least in limits.items():
        value = getattr(args, name, None)
        if value is not None and value < least:
            refuse(f"--{name.replace('_', '-')} must be at least {least}, not {value}")
    # the optimiser's numbers, on the commands that have them: a negative rate trains "successfully" uphill
    for name in ("learning_rate", "finetune_learning_rate"):
        value = getattr(args, name, None)
        if value is not None and not value > 0:
            refuse(f"--{name.replace('_', '-')} must be positive, not {value}")
    for name in ("momentum", "dropout"):
        value = getattr(args, name, None)
        if value is not None and not 0 <= value < 1:
            refuse(f"--{name} must be in [0, 1), not {value}")
    for name in ("patience", "finetune_epochs"):
        value = getattr(args, name, None)
        if value is not None and value < 0:
            refuse(f"--{name.replace('_', '-')} must be 0 or more, not {value}")
    return args


def refuse(message: str) -> None:
    """One line and argparse's exit status for bad arguments (2), as every command promises."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def config_of(args: argparse.Namespace) -> dict:
    return {key: value for key, value in vars(args).items() if not key.startswith("_")}
