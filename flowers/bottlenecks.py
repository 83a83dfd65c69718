"""12.5.1 (2), the model's first step: every flower photo through the pretrained base once, as its bottleneck vector.

The book: "当输入 1 张花卉图像时，对该图像特征进行提取，并用 2048 维张量表示，并依次
存入缓存文件中" (each image's features, a 2048-d tensor for Inception-v3, stored in
a cache file). The vector is the global average of the base's last feature
map; the vectors go to the on-disk feature cache (``common.features``), so a
second run reads them back and runs no network, and N machines can fill it
beforehand (``python -m common.features --for flowers.train --shard I/N``).

When stage 3 fine-tunes on cached maps (``--finetune-epochs`` without
``--finetune-augment``), the same pass also keeps what the frozen layers below
``--unfreeze-from`` output for each image (its cut map), flattened behind the
vector, so that no fine-tuning epoch runs the frozen layers again.
"""
from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np

from common.backbones import announce_cut_maps, bottleneck_extractor, freeze_below, weights_fingerprint
from common.features import FeatureCache, cache_namespace, extract_features
from flowers.data import PreparedFlowers


@dataclasses.dataclass
class Bottlenecks:
    """Per kept image its bottleneck vector (and its cut map when stage 3 needs one)."""

    train: np.ndarray
    validation: np.ndarray
    train_labels: np.ndarray
    validation_labels: np.ndarray
    kept_train: np.ndarray  # indices into the prepared training paths (unreadable images are left out)
    kept_validation: np.ndarray
    maps_train: np.ndarray | None
    maps_validation: np.ndarray | None
    computed: int
    reused: int
    seconds: float
    skipped: list


def compute_bottlenecks(args, data: PreparedFlowers, base: keras.Model, cut=None) -> Bottlenecks:
    """Every image through the frozen base once; a second run reads the results back from the cache.

    ``cut`` is ``common.backbones.split_base``'s ``(bottom, top, first
    trainable layer)`` when stage 3 trains on cached cut maps: the pass then
    also keeps each image's cut map, flattened behind its vector.
    """
    started = time.perf_counter()
    freeze_below(base, "none")
    first_trainable = None if cut is None else cut[2]
    if cut is not None:
        announce_cut_maps(first_trainable, cut[1].input_shape[1:], len(data.train_paths) + len(data.validation_paths))
    namespace = cache_namespace(args.backbone, weights_fingerprint(base), args.image_size, "avg", first_trainable)
    cache = FeatureCache(args.cache_dir, namespace)
    extractor = bottleneck_extractor(args.backbone, base, "avg", cut)
    # one pass over both splits: an image whose bytes are also in the other split (flower_photos has such
    # copies) is computed once, and the counts are of distinct images, the total the bar counts to
    every = extract_features(extractor, data.train_paths + data.validation_paths, cache, args.image_size,
                             batch_size=32, description="bottlenecks", announce=True)
    seconds = time.perf_counter() - started
    print(f"bottlenecks: {every.computed} computed, {every.reused} read from the cache ({seconds:.1f} s)")
    count = len(data.train_paths)
    split = int(np.searchsorted(every.kept, count))  # kept is in path order: the training rows come first
    train, validation = every.features[:split], every.features[split:]  # views: no copy of gigabytes of cut maps
    kept_train, kept_validation = every.kept[:split], every.kept[split:] - count
    dim = int(base.output_shape[-1])  # channels of the last map: the bottleneck's length
    shape = None if cut is None else tuple(int(d) for d in cut[1].input_shape[1:])
    return Bottlenecks(
        train=train[:, :dim],
        validation=validation[:, :dim],
        train_labels=data.train_labels[kept_train],
        validation_labels=data.validation_labels[kept_validation],
        kept_train=kept_train,
        kept_validation=kept_validation,
        maps_train=None if cut is None else train[:, dim:].reshape((-1, *shape)),
        maps_validation=None if cut is None else validation[:, dim:].reshape((-1, *shape)),
        computed=every.computed,
        reused=every.reused,
        seconds=seconds,
        skipped=every.skipped,
    )
