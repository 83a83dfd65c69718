"""An on-disk bottleneck-feature cache, and the one-pass extraction that fills it.

Bottleneck features cost minutes to hours on a CPU and are the same in every
later run, so they are computed once. The cache is a folder per *namespace*
(backbone, a hash of the actual weight values, input size, preprocessing,
resize method, pooling), holding shards: ``.npz`` files of (content keys,
features). Each image's key is a hash of its bytes, so

- a rerun reads every feature back and runs no network at all;
- a run killed mid-way keeps the shards it finished, and a restart computes
  only the images that are missing;
- a shard is written to a temporary name and renamed when complete, so a
  half-written file is never read;
- an image whose bytes change gets a new key, so its stale feature is never used.

Features and the keys they belong to travel through the same tf.data pass, so
labels cannot slip against features. The slides'
``predict_generator(gen, n // batch)`` with hard-coded labels is right only
when n is a multiple of the batch and each class holds n / 2 images in folder
order; otherwise the last partial batch is dropped and the labels slip
(docs/textbook-errata.md, E19).

``python -m common.features`` (``__main__.py``) fills a lesson's cache in
parts, on several processes or machines at once.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import numpy as np

from common.data import RESIZE_METHOD, decode_image, warn_skipped
from common.files import writable_folder

SHARD_IMAGES = 512  # images per shard: the most work a kill can lose


@dataclasses.dataclass(frozen=True)
class Shard:
    """One worker's part of a feature extraction: the images whose content key falls in it.

    The part is decided by the key (a hash of the image's bytes), not by an
    image's position in a listing, so N processes or machines that list the
    same folder in different orders still split it into disjoint parts that
    together cover it, and two copies of one image always land in the same part.
    """

    index: int
    count: int

    def owns(self, key: str) -> bool:
        return int(key[:8], 16) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"INDEX/COUNT"`` (``0/2``, ``1/2``) -> ``Shard``; argparse ``type=`` of ``--shard``."""
    import argparse

    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard takes INDEX/COUNT such as 0/2, not {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise argparse.ArgumentTypeError(f"--shard {text}: need 0 <= INDEX < COUNT")
    return Shard(index, count)


def content_key(path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        digest.update(handle.read())
    return digest.hexdigest()


class FeatureCache:
    """Sharded feature store for one namespace; see the module docstring."""

    def __init__(self, root, namespace: dict):
        self.namespace = dict(namespace)
        name = hashlib.sha1(json.dumps(self.namespace, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = Path(root) / f"{namespace.get('backbone', 'features')}-{name}"
        writable_folder(self.directory, "--cache-dir")
        description = self.directory / "namespace.json"
        if not description.exists():
            _atomic_write_bytes(description, json.dumps(self.namespace, indent=2, sort_keys=True).encode())

    def shards(self) -> list[Path]:
        # Finished shards only: temporary files end in ".tmp" and are ignored.
        return sorted(self.directory.glob("shard-*.npz"))

    def load(self, wanted: set[str] | None = None) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        for shard in self.shards():
            with np.load(shard) as contents:
                keys = contents["keys"]
                selected = [i for i, key in enumerate(keys) if wanted is None or key in wanted]
                if selected:
                    features = contents["features"]
                    for i in selected:
                        found[str(keys[i])] = features[i]
        return found

    def write(self, keys: list[str], features: np.ndarray) -> Path:
        target = self.directory / f"shard-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}.npz"
        temporary = target.with_name(target.name + ".tmp")
        with open(temporary, "wb") as handle:
            np.savez(handle, keys=np.asarray(keys), features=np.asarray(features))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        return target


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + f".{uuid.uuid4().hex[:8]}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def forward_function(model):
    """``model(images, training=False)`` compiled once; what feature extraction and its benchmark time."""
    import tensorflow as tf

    return tf.function(lambda images: model(images, training=False), reduce_retracing=True)


@dataclasses.dataclass
class Extraction:
    features: np.ndarray  # (n_kept, ...) in the order of ``kept``
    kept: np.ndarray  # indices into the input paths that have features
    computed: int  # distinct images (by content) run through the network in this call
    reused: int  # distinct images (by content) read back from the cache
    seconds: float
    skipped: list[tuple[str, str]]


def cache_namespace(backbone: str, weights_id: str, image_size: int, pooling: str | None,
                    cut_map: str | None = None) -> dict:
    """What a cached feature depends on; ``cut_map`` names the layer whose input map is stored behind the vector."""
    namespace = {
        "backbone": backbone,
        "weights": weights_id,
        "image_size": int(image_size),
        "preprocessing": f"keras.applications.{backbone}.preprocess_input",
        "resize": RESIZE_METHOD,
        "pooling": pooling or "none",
    }
    return namespace if cut_map is None else {**namespace, "with_cut_map": cut_map}


def extract_features(
    extractor,
    paths,
    cache: FeatureCache | None,
    image_size: int,
    batch_size: int = 32,
    description: str = "features",
    progress: bool = True,
    shard: Shard | None = None,
    announce: bool = False,
    _after_batch=None,
) -> Extraction:
    """Features for ``paths``, from the cache where present, computed (and cached) otherwise.

    Images that fail to decode are skipped, named in one warning, and left out
    of ``kept``; the caller selects labels with ``kept``. With ``shard``, only
    the images that shard owns are computed (the rest are not this worker's
    job, and are neither computed nor reported as skipped); ``kept`` then
    holds what is available so far.

    Counts are of distinct images (by content): the same bytes under two
    names, a flower_photos duplicate within a class or across the split, are
    one image, computed once (``computed``) or read once (``reused``), so
    computed + reused is what the extraction needed. ``announce`` prints that
    arithmetic before the first image is computed, with the total the progress
    bar will count to.
    """
    import tensorflow as tf

    from common.progress import Progress

    start = time.perf_counter()
    paths = [str(p) for p in paths]
    with Progress(len(paths), f"{description}: reading the images' content keys", unit="images") as hashing:
        keys = []
        for path in paths:
            keys.append(content_key(path))
            hashing.update(1)
    stored = cache.load(set(keys)) if cache is not None else {}
    missing = [i for i, key in enumerate(keys) if key not in stored]
    if shard is not None:
        missing = [i for i in missing if shard.owns(keys[i])]
    # The same bytes under two names are computed once.
    to_compute: dict[str, int] = {}
    for i in missing:
        to_compute.setdefault(keys[i], i)
    todo = list(to_compute.values())
    distinct = len(set(keys))
    if announce:
        copies = len(keys) - distinct
        same = f" ({copies} byte-for-byte copies of another image, computed once)" if copies else ""
        part = f" (part {shard} of the cache)" if shard is not None else ""
        place = f" in the cache {cache.directory}" if cache is not None else ""
        print(f"{description}: {len(keys)} images, {distinct} distinct{same}; {len(set(keys) & set(stored))} already"
              f"{place}, {len(todo)} to compute{part}", flush=True)

    computed: dict[str, np.ndarray] = {}
    if todo:
        size = (int(image_size), int(image_size))
        dataset = tf.data.Dataset.from_tensor_slices(([paths[i] for i in todo], np.asarray(todo, np.int64)))
        dataset = dataset.map(
            lambda path, index: (decode_image(path, size), index),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        # A file that passed the header check but fails to decode drops out
        # here with its index, so nothing downstream can misalign.
        dataset = dataset.ignore_errors().batch(batch_size).prefetch(tf.data.AUTOTUNE)
        # The model is called as a compiled function rather than through
        # predict_on_batch: under MultiWorkerMirroredStrategy (--distribute
        # multi-worker) predict_on_batch treats each worker's batch as its
        # shard of one global batch and returns every worker's rows
        # (measured: 5 images in, 10 rows out on each of two workers).
        forward = forward_function(extractor)
        pending_keys: list[str] = []
        pending_features: list[np.ndarray] = []
        # Shards are written by one background thread so that disk time overlaps
        # the network's; every submitted shard is finished before returning.
        writer = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        writes = []
        bar = Progress(len(todo), description, unit="images") if progress else None
        try:
            for batch_number, (images, indices) in enumerate(dataset):
                output = forward(images).numpy()
                for index, feature in zip(indices.numpy(), output, strict=False):
                    key = keys[int(index)]
                    computed[key] = feature
                    pending_keys.append(key)
                    pending_features.append(feature)
                if bar is not None:
                    bar.update(len(output))
                if cache is not None and len(pending_keys) >= SHARD_IMAGES:
                    writes.append(writer.submit(cache.write, pending_keys, np.stack(pending_features)))
                    pending_keys, pending_features = [], []
                if _after_batch is not None:
                    _after_batch(batch_number)
        finally:
            if bar is not None:
                bar.close()
            if cache is not None and pending_keys:
                writes.append(writer.submit(cache.write, pending_keys, np.stack(pending_features)))
            writer.shutdown(wait=True)
        for write in writes:
            write.result()  # re-raise a failed write (a full disk, say)

    available = {**stored, **computed}
    kept = [i for i, key in enumerate(keys) if key in available]
    skipped = [(paths[i], "could not be decoded") for i, key in enumerate(keys)
               if key not in available and (shard is None or shard.owns(key))]
    if skipped:
        warn_skipped(skipped)
    if kept:
        features = np.stack([available[keys[i]] for i in kept])
    else:
        features = np.zeros((0,), dtype=np.float32)
    return Extraction(
        features=features,
        kept=np.asarray(kept, dtype=int),
        computed=len(computed),
        reused=len(set(keys) & set(stored)),
        seconds=time.perf_counter() - start,
        skipped=skipped,
    )

