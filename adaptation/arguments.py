"""The flags ``adaptation.train`` and ``adaptation.benchmark`` share, read and checked the same way.

A row of the benchmark must mean what the training command with the same
flags means: the same domains, the same lambda candidates and the same views
in the same order (the original first: TCA/JDA and the before/after
measures read it).
"""
from __future__ import annotations

from adaptation.data import COLLECTIONS
from adaptation.features import VIEWS


def add_domain_arguments(parser) -> None:
    """--source / --target (the flower collections) or --source-dir / --target-dir (any two class trees)."""
    domains = parser.add_argument_group("domains")
    domains.add_argument("--source", default="flower_photos", choices=COLLECTIONS,
                         help="labelled source collection under --data-dir (default: flower_photos)")
    domains.add_argument("--target", default="flower17", choices=COLLECTIONS,
                         help="unlabelled target collection under --data-dir (default: flower17)")
    domains.add_argument("--source-dir", default=None,
                         help="instead of --source: any folder of class folders (only read)")
    domains.add_argument("--target-dir", default=None,
                         help="instead of --target: any folder of class folders with the source's class names (only read)")


def add_target_labels_argument(group) -> None:
    """--target-labels K: semi-supervised adaptation, K labelled target images per class."""
    group.add_argument("--target-labels", type=int, default=0, metavar="K",
                       help="K target images per class, drawn with --seed, are labelled: trained on beside the "
                       "source in the classification loss, and left out of the unlabelled target and of the "
                       "scores (default: 0, unsupervised adaptation)")


def check_target_labels(parser, args) -> None:
    if args.target_labels < 0:
        parser.error(f"--target-labels takes 0 or more images per class, not {args.target_labels}")


def check_trade_off(parser, args) -> None:
    """--trade-off (a number or auto) and --trade-off-grid (a comma list) to numbers."""
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
    """--views as a checked comma list with the original view first (the one TCA/JDA and the measures read)."""
    views = [view.strip() for view in args.views.split(",") if view.strip()]
    unknown = [view for view in views if view not in VIEWS]
    if unknown or not views:
        parser.error(f"--views takes a comma list of {', '.join(VIEWS)}; got {args.views!r}")
    args.views = ",".join(["original"] + [view for view in views if view != "original"])
