"""Flower recognition by deep transfer (textbook 12.5.1): cached bottlenecks, a new softmax layer, fine-tuning.

    python -m flowers.train                                   # textbook: Inception-v3, 299x299
    python -m flowers.train --backbone mobilenet_v2 \\
        --weights ../shared/weights/mobilenet_v2_1.0_224_no_top.h5 --finetune-epochs 2

Reads the folder written by ``python -m flowers.prepare``: ``train/`` and
``train_views/`` (the originals and their flipped / rotated copies) are trained
on, ``validation/`` (200 originals per class, never augmented) is measured.
``main`` goes through the book's steps in order, each in its own module:

1. the data, 12.5.1 (1) (``flowers.data``): the prepared split;
2. the bottlenecks, 12.5.1 (2) (``flowers.bottlenecks``): every image through
   the pretrained base once, as its 2048-d vector for Inception-v3, kept in
   the on-disk feature cache, so a second run runs no network (several
   machines can fill it first: ``python -m common.features --for
   flowers.train --shard I/N``);
3. stage ②, the new layer (``flowers.head``): dropout then a dense softmax,
   trained on the vectors, loss and accuracy logged per iteration;
4. stage ③, fine-tuning (``flowers.finetune``, with ``--finetune-epochs N``;
   off by default because it is slow on a CPU): the base from
   ``--unfreeze-from`` on trained with the new layer at a low learning rate,
   on cached cut maps of the fixed views, or with ``--finetune-augment`` on
   random crops through the whole network;
5. the results, 12.5.1 (3)-(4) (``flowers.report``): the whole network saved,
   figures 4-5 against the iterations, and Table 2.

Nothing is selected on the validation set: both stages run their fixed number
of epochs and the last weights are reported and saved.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import time

from common import cli
from common.backbones import build_base, build_model, cut_point
from common.errors import main_guard
from common.regularizers import add_regularization_arguments, check_regularization_arguments
from common.run import Run
from common.training import SCHEDULES
from flowers.bottlenecks import compute_bottlenecks
from flowers.data import DEFAULT_DATA_DIR, OUTPUT_PARENT, load_prepared
from flowers.finetune import fine_tune
from flowers.head import train_head
from flowers.report import report


def parse_args(argv=None):
    parser = cli.parser_from_doc(__doc__)
    cli.add_common_arguments(
        parser,
        data_dir=DEFAULT_DATA_DIR,
        output_parent=OUTPUT_PARENT,
        backbone="inception_v3",
        image_size=299,
        epochs=30,
        batch_size=100,
        data_help="the folder written by flowers.prepare (train/, train_views/, validation/)",
        min_epochs=0,
    )
    head = parser.add_argument_group("stage 2: the new softmax layer on cached bottlenecks")
    head.add_argument("--dropout", type=float, default=0.5, help="dropout rate before the softmax (default: 0.5)")
    head.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    head.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="cosine",
        help="learning rate over the iterations of each stage: cosine decay to zero, or constant "
        "(default: cosine)",
    )
    tune = parser.add_argument_group("stage 3: fine-tuning the top blocks")
    tune.add_argument(
        "--finetune-epochs", type=int, default=0, help="epochs of fine-tuning; 0 skips stage 3 (default: 0)"
    )
    cli.add_unfreeze_argument(tune)
    tune.add_argument(
        "--finetune-learning-rate", type=float, default=1e-4, help="Adam learning rate (default: 1e-4)"
    )
    tune.add_argument("--finetune-batch-size", type=int, default=32, help="(default: 32)")
    tune.add_argument(
        "--finetune-augment",
        action="store_true",
        help="train stage 3 on random crops (50-100%% of the area), mirrors and 90-degree turns of the "
        "training originals, drawn anew each step, through the whole network, instead of on the cached "
        "fixed views: slower per epoch (no cache), but it does not memorise the views",
    )
    add_regularization_arguments(parser.add_argument_group("stage 3 regularisation (002, 4.1.3)"))
    args = cli.resolve(parser.parse_args(argv))
    check_regularization_arguments(args)
    if not 0 <= args.dropout < 1:
        parser.error(f"--dropout must be in [0, 1), not {args.dropout}")
    if args.finetune_epochs < 0:
        parser.error("--finetune-epochs must be 0 or more")
    if args.finetune_epochs and str(args.unfreeze_from).lower() == "none":
        parser.error("--unfreeze-from none leaves nothing of the base to fine-tune; give a layer, or --finetune-epochs 0")
    return args


@main_guard
def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    with Run(args, "train", parent=OUTPUT_PARENT) as run:
        # 1. The data: the prepared split, the offline views beside the originals.
        data = load_prepared(args.data_dir, args.limit)
        originals = int(data.original.sum())
        views = len(data.train_paths) - originals
        print(f"{len(data.train_paths)} training images ({originals} originals, {views} views), "
              f"{len(data.validation_paths)} validation images")
        if not views:
            print(f"note: {args.data_dir} has no train_views/: stage 2 trains on the originals alone "
                  "(python -m flowers.prepare writes the textbook's flipped and rotated views)")

        # 2. The bottlenecks: each image through the pretrained base once, cached on disk.
        base = build_base(args.backbone, args.weights, args.image_size)
        cut = cut_point(args, base)  # where stage 3 splits the base; a bad --unfreeze-from stops here
        bottlenecks = compute_bottlenecks(args, data, base, cut)

        # 3. Stage 2: the new softmax layer on the vectors.
        stages = {}
        head, stages["stage2"] = train_head(run, args, bottlenecks, data.class_names)

        # 4. Stage 3: fine-tune the top of the base with it.
        if args.finetune_epochs:
            stages["stage3"] = fine_tune(run, args, data, bottlenecks, base, cut, head)

        # 5. The results: the whole network, pixels in, and Table 2.
        model, _ = build_model(args.backbone, base=base, pooling="avg", head=head, name=f"flowers_{args.backbone}")
        report(run, args, model, bottlenecks, stages, data.class_names, started)
    return run.folder


if __name__ == "__main__":
    main()
