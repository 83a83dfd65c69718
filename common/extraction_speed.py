"""Benchmark bottleneck-feature extraction: bare network, full pipeline, cached rerun.

    python -m common.extraction_speed --data-dir ../shared/data/cats_and_dogs_filtered/validation \\
        --backbone vgg16 --weights none --image-size 150 --limit 512

Three numbers on the same images:
1. the bare backbone's forward throughput on tensors already in memory
   (decoded and resized beforehand, not timed): the ceiling;
2. the full pipeline's throughput, into an empty cache: hash each file, read,
   decode, resize, preprocess, forward, write the cache shards;
3. the time of a second, fully cached run of the same call.
The pipeline should reach 90% of (1), and (3) should be under 5% of (2)'s time.
Prints a table and writes ``benchmark.json`` and ``benchmark.png`` to the run folder.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from common.backbones import BACKBONES, build_model, get_spec, weights_fingerprint
from common.cli import parser_from_doc
from common.data import decode_image, load_image_folder
from common.errors import UserError, main_guard
from common.features import FeatureCache, cache_namespace, extract_features, forward_function
from common.reports import pyplot, save_figure
from common.training import make_run_dir, save_config


def bare_forward(extractor, images: np.ndarray, batch_size: int, repeats: int) -> float:
    """Images per second of the compiled forward pass alone, best of ``repeats`` passes."""
    forward = forward_function(extractor)
    forward(images[:batch_size]).numpy()  # build and trace outside the clock
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for first in range(0, len(images), batch_size):
            forward(images[first:first + batch_size]).numpy()
        best = min(best, time.perf_counter() - start)
    return len(images) / best


@main_guard
def main(argv=None) -> dict:
    parser = parser_from_doc(__doc__)
    parser.add_argument("--data-dir", required=True, help="an image folder with one subfolder per class")
    parser.add_argument("--backbone", default="vgg16", choices=sorted(BACKBONES))
    parser.add_argument("--weights", default="imagenet", help="imagenet, none or a weights file")
    parser.add_argument("--image-size", type=int, default=None, help="(default: the backbone's own)")
    parser.add_argument("--pooling", default=None, choices=["avg", "max"], help="(default: none, the conv map)")
    parser.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    parser.add_argument("--limit", type=int, default=512, help="benchmark the first N images, 0 for all (default: 512)")
    parser.add_argument("--repeats", type=int, default=2, help="bare-forward passes, best counts (default: 2)")
    parser.add_argument("--output-dir", default=None, help="(default: runs/benchmark/features-<time>/)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.batch_size < 1 or args.limit < 0 or (args.image_size is not None and args.image_size < 1):
        parser.error("--repeats, --batch-size and --image-size must be at least 1, --limit 0 (all) or more")
    size = args.image_size or get_spec(args.backbone).default_size

    folder = load_image_folder(args.data_dir)
    paths = folder.paths[: args.limit] if args.limit else folder.paths
    if len(paths) < args.batch_size:
        raise UserError(f"only {len(paths)} images to time (--limit {args.limit}, {len(folder.paths)} in the folder); "
                        f"the benchmark needs at least one batch of --batch-size {args.batch_size}")
    run_dir = make_run_dir(args.output_dir, "runs/benchmark", "features")
    save_config(run_dir, {**vars(args), "image_size": size, "n_images": len(paths)})

    extractor, base = build_model(args.backbone, args.weights, size, pooling=args.pooling)
    print(f"{len(paths)} images, {args.backbone} at {size}x{size}, batch {args.batch_size}")

    images = np.stack([decode_image(p, (size, size)).numpy() for p in paths])
    forward = bare_forward(extractor, images, args.batch_size, args.repeats)
    print(f"bare forward:        {forward:8.1f} img/s")

    namespace = cache_namespace(args.backbone, weights_fingerprint(base), size, args.pooling)
    with tempfile.TemporaryDirectory(prefix="feature-cache-") as cache_root:
        cache = FeatureCache(cache_root, namespace)
        first = extract_features(extractor, paths, cache, size, args.batch_size, "pipeline")
        pipeline = len(paths) / first.seconds
        print(f"full pipeline:       {pipeline:8.1f} img/s  ({first.seconds:.2f} s, "
              f"{100 * pipeline / forward:.1f}% of bare forward)")
        second = extract_features(extractor, paths, FeatureCache(cache_root, namespace), size, args.batch_size,
                                  "cached")
        assert second.computed == 0 and np.array_equal(first.features, second.features)
        print(f"cached rerun:        {second.seconds:8.2f} s  ({100 * second.seconds / first.seconds:.2f}% "
              "of the first run)")

    result = {
        "backbone": args.backbone, "image_size": size, "batch_size": args.batch_size, "n_images": len(paths),
        "bare_forward_images_per_second": round(forward, 2),
        "pipeline_images_per_second": round(pipeline, 2),
        "pipeline_fraction_of_bare": round(pipeline / forward, 4),
        "first_run_seconds": round(first.seconds, 3),
        "cached_run_seconds": round(second.seconds, 3),
        "cached_fraction_of_first": round(second.seconds / first.seconds, 4),
    }
    (run_dir / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, run_dir / "benchmark.png")
    print(f"wrote {run_dir.resolve()}")
    return result


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    left.barh(["full pipeline", "bare forward"],
              [result["pipeline_images_per_second"], result["bare_forward_images_per_second"]],
              color=["tab:orange", "tab:blue"])
    left.set_xlabel("images per second")
    left.set_title(f"{result['backbone']} {result['image_size']}px, {result['n_images']} images")
    right.barh(["cached rerun", "first run"], [result["cached_run_seconds"], result["first_run_seconds"]],
               color=["tab:green", "tab:orange"])
    right.set_xlabel("seconds")
    right.set_title("feature time")
    save_figure(figure, path)


if __name__ == "__main__":
    main()
