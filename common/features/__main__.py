"""Fill a lesson's bottleneck-feature cache, part I of N, so that N machines share the work; nothing is trained.

    python -m common.features --for flowers.train --shard 0/2 --data-dir data/flowers   # machine 1
    python -m common.features --for flowers.train --shard 1/2 --data-dir data/flowers   # machine 2
    python -m flowers.train --data-dir data/flowers                                     # then: 0 computed

Each image belongs to one part by its content key (a hash of its bytes), so N
processes that list the folder in any order compute disjoint parts that
together cover it, each writing its own cache files into the shared
``--cache-dir`` (a network folder for several machines). When all have
finished, the lesson's own run reads every feature back and computes none.

Every flag other than ``--for`` and ``--shard`` is the lesson's own and is
parsed by the lesson itself, with its defaults, so what is cached is what its
run will look for: ``--data-dir``, ``--backbone``, ``--weights``,
``--image-size`` and ``--cache-dir``, and for ``flowers.train``
``--finetune-epochs``, ``--unfreeze-from`` and ``--finetune-augment``, which
decide whether stage 3's cut maps are cached too. Give them as you will give
them to the lesson (``python -m flowers.train --help``,
``python -m cats_dogs.bottleneck --help``).
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import importlib
from pathlib import Path

from common import cli
from common.backbones import announce_cut_maps, bottleneck_extractor, build_base, cut_point, weights_fingerprint
from common.data import load_image_folder
from common.errors import UserError, main_guard
from common.features import FeatureCache, Shard, cache_namespace, extract_features, parse_shard
from common.training import set_seed

#: The lessons whose cache this fills: the pooling of their features, and the batch of their pass (None: --batch-size).
LESSONS = {"flowers.train": ("avg", 32), "cats_dogs.bottleneck": (None, None)}


def parse_args(argv=None):
    """(this command's flags, the lesson's own flags as the lesson parses them)."""
    parser = cli.parser_from_doc(__doc__)
    parser.prog = "python -m common.features"
    parser.allow_abbrev = False  # a lesson's flag must never be read as an abbreviation of one of these
    parser.add_argument("--for", dest="lesson", required=True, choices=sorted(LESSONS),
                        help="the command whose feature cache is filled")
    parser.add_argument("--shard", type=parse_shard, default=Shard(0, 1), metavar="INDEX/COUNT",
                        help="compute only part INDEX of COUNT (0-based): start COUNT such processes, on one machine "
                        "or on several sharing --cache-dir, then run the lesson (default: 0/1, everything)")
    own, rest = parser.parse_known_args(argv)
    return own, importlib.import_module(own.lesson).parse_args(rest)


def lesson_images(data_dir) -> list[str]:
    """Every image the lessons read from a prepared folder: train/, train_views/ (flowers) and validation/."""
    data_dir = Path(data_dir)
    parts = [part for part in ("train", "train_views", "validation") if (data_dir / part).is_dir()]
    if "train" not in parts or "validation" not in parts:
        raise UserError(f"--data-dir {data_dir} has no train/ and validation/ folders; prepare it first "
                        "(python -m flowers.prepare, python -m cats_dogs.prepare)")
    return [path for part in parts
            for path in load_image_folder(data_dir / part, description=f"{part} folder").paths]


@main_guard
def main(argv=None) -> dict:
    own, args = parse_args(argv)
    pooling, batch_size = LESSONS[own.lesson]
    paths = lesson_images(args.data_dir)
    set_seed(args.seed)  # as the lesson does before it builds the base: --weights none draws the same weights
    base = build_base(args.backbone, args.weights, args.image_size)
    base.trainable = False
    cut = cut_point(args, base)  # None unless flowers.train fine-tunes on cached cut maps
    if cut is not None:
        announce_cut_maps(cut[2], cut[1].input_shape[1:], len(paths))
    namespace = cache_namespace(args.backbone, weights_fingerprint(base), args.image_size, pooling,
                                cut_map=cut[2] if cut else None)
    cache = FeatureCache(args.cache_dir, namespace)
    done = extract_features(bottleneck_extractor(args.backbone, base, pooling, cut), paths, cache, args.image_size,
                            batch_size or args.batch_size, description=f"features, part {own.shard}",
                            shard=own.shard)
    print(f"shard {own.shard}: {done.computed} features computed in {done.seconds:.1f} s into {cache.directory}; "
          f"when every shard has finished, run python -m {own.lesson} with the same flags: it computes none")
    return {"shard": str(own.shard), "computed": done.computed, "seconds": round(done.seconds, 2),
            "cache": str(cache.directory)}


if __name__ == "__main__":
    main()
