"""What the adaptation networks train and are scored on: cached frozen features, or decoded images.

Both commands (``adaptation.train`` and ``adaptation.benchmark``) train on
the same inputs, so they are made here once. With a frozen backbone
(``--unfreeze-from none``) every image's pooled features under the fixed
``--views`` come from the shared cache and the networks read vectors; the
source's views are extra labelled samples and the target's extra unlabelled
ones, and an image is scored as the mean of its views' predictions. With a
layer name the backbone trains too, so the networks read decoded images,
mirrored at random.

With ``--target-labels K`` (semi-supervised adaptation) K target images
per class, drawn with the seed, are taken out of the target before anything
else sees it (``hold_out_labelled_target``): they are trained on with their
labels and are neither in the unlabelled target stream nor scored; the rest
of the target is what "target" means everywhere else.

Either way the result is one dict with the same keys (``prepare_frozen``),
so that training, lambda's choice and scoring never ask which it was. The
"before" features of the measures are the pretrained backbone's pooled
features of the original view.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from adaptation.adapter import DomainAdapter
from adaptation.features import FrozenFeatures
from adaptation.model import image_encoder, vector_encoder
from adaptation.settings import ADVERSARIAL
from common.data import decode_image, split_per_class
from common.errors import UserError

#: the share of each source class held out as source validation (never trained on)
VALIDATION_FRACTION = 0.1


def hold_out_labelled_target(pair, per_class: int, seed: int):
    """(the pair without ``per_class`` target images of each class, those images as an ``ImageFolder``);
    (pair, None) for 0. The draw depends on the seed alone, so every method of a seed sees the same images."""
    if not per_class:
        return pair, None
    counts = np.bincount(pair.target.labels, minlength=len(pair.class_names))
    if per_class >= counts.min():
        name = pair.class_names[int(counts.argmin())]
        raise UserError(f"--target-labels {per_class}: the target's {name} has {counts.min()} images; "
                        f"at most {counts.min() - 1} per class can be labelled and at least one still scored")
    rest, known = split_per_class(pair.target.labels, per_class, seed=seed, class_names=pair.class_names)

    def subset(rows):
        return dataclasses.replace(pair.target, paths=[pair.target.paths[i] for i in rows],
                                   labels=pair.target.labels[rows])

    return dataclasses.replace(pair, target=subset(rest)), subset(known)


def frozen(args) -> bool:
    """Whether the backbone stays frozen (``--unfreeze-from none``): cached features instead of images."""
    return str(args.unfreeze_from).lower() == "none"


def scored_views(args, views) -> tuple:
    """The views an image is scored on: all of them (predictions averaged) or the plain image (--score-on)."""
    return tuple(views) if getattr(args, "score_on", "views") == "views" else ("original",)


def predict_views(adapter: DomainAdapter, inputs: list, domain: str) -> np.ndarray:
    """Class probabilities averaged over the views of the same images (test-time augmentation)."""
    return np.mean([adapter.predict_proba(view, domain=domain) for view in inputs], axis=0)


def prepare_frozen(args, pair, train_rows, validation_rows, labelled=None) -> dict:
    """Cached backbone features: arrays for training, validation, scoring and the 'before' measures.

    ``train_rows`` and ``validation_rows`` index the source's images; an
    image that fails to decode drops out of every view and every split.
    ``labelled``: the labelled target images (``hold_out_labelled_target``), or None.
    """
    views = tuple(args.views.split(","))
    features = FrozenFeatures(args.backbone, args.weights, args.image_size, args.cache_dir)
    started = time.perf_counter()
    print(f"backbone features ({args.backbone}, {args.image_size}px, views {', '.join(views)}), "
          f"cache {args.cache_dir}", flush=True)
    source = features.extract(pair.source.paths, views, description="source features")
    target = features.extract(pair.target.paths, views, description="target features")
    extractions, known, known_original = [source, target], None, None
    if labelled is not None:
        extractions.append(features.extract(labelled.paths, views, description="labelled target features"))
        known = (np.concatenate([extractions[-1].features[view] for view in views]),
                 np.tile(labelled.labels[extractions[-1].kept], len(views)))
        known_original = (extractions[-1].features["original"], labelled.labels[extractions[-1].kept])
    print(f"  {sum(e.computed for e in extractions)} computed, {sum(e.reused for e in extractions)} read from the cache, "
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
        "target_labelled": known,  # every view of the labelled target images, or None
        "target_labelled_all": known_original,  # their original view (what TCA/JDA read)
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


def prepare_images(args, pair, train_rows, validation_rows, labelled=None) -> dict:
    """The backbone trains from --unfreeze-from on: datasets of images, and the pretrained features as 'before'."""
    encoder, base, first = image_encoder(args.backbone, args.weights, args.image_size, args.unfreeze_from)
    first_name = base.layers[min(first, len(base.layers) - 1)].name
    print(f"training {args.backbone} from layer {first} ({first_name}) on, on images", flush=True)
    source, target = pair.source, pair.target
    started = time.perf_counter()
    before_source = encoder.predict(image_examples(source.paths, None, args.image_size).batch(32), verbose=0)
    before_target = encoder.predict(image_examples(target.paths, None, args.image_size).batch(32), verbose=0)
    train_rows = np.asarray(train_rows, int)
    validation = [source.paths[i] for i in validation_rows]
    return {
        "encoder": encoder,
        "source_train": image_examples([source.paths[i] for i in train_rows], source.labels[train_rows],
                                       args.image_size, mirror=True, seed=args.seed),
        "source_train_size": len(train_rows),
        "target_train": image_examples(target.paths, None, args.image_size, mirror=True, seed=args.seed + 1),
        "target_train_size": len(target),
        "target_labelled": None if labelled is None else image_examples(
            labelled.paths, labelled.labels, args.image_size, mirror=True, seed=args.seed + 2),
        "source_validation": (image_examples(validation, None, args.image_size),
                              source.labels[np.asarray(validation_rows, int)]),
        "source_validation_views": [image_examples(validation, None, args.image_size)],
        "target_views": [image_examples(target.paths, None, args.image_size)],
        "source_all": (image_examples(source.paths, None, args.image_size), source.labels),
        "target_all": image_examples(target.paths, None, args.image_size),
        "target_labels": target.labels,
        "before_source": before_source,
        "before_target": before_target,
        "feature_seconds": time.perf_counter() - started,
        "frozen": None,
        "trained": f"{args.backbone} from layer {first_name} on, bottleneck, "
                   f"classifier{' and discriminator' if args.method in ADVERSARIAL else ''}, on images",
    }


def prepare(args, pair, train_rows, validation_rows, labelled=None) -> dict:
    """``prepare_frozen`` or ``prepare_images``, as --unfreeze-from says."""
    return (prepare_frozen if frozen(args) else prepare_images)(args, pair, train_rows, validation_rows, labelled)
