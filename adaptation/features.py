"""Frozen-backbone features of each image, under a few fixed views, in the shared feature cache.

With the pretrained base frozen (``--unfreeze-from none``), every image's
pooled feature vector is the same in every epoch and every run, so it is
computed once and read back from ``common.features``' cache; adaptation then
trains only the small networks on top (bottleneck, classifier,
discriminator), minutes on a CPU instead of hours.

A frozen base cannot see random augmentation, but it can see a fixed set of
*views* of each image: the original, its mirror image, and a central crop of
80 % of each side (and that crop's mirror). Each view is a deterministic
transform inside the extractor, so it has its own cache namespace and is
computed once too. Source views are extra labelled samples; target views are
extra unlabelled samples of the target distribution; scores use the original
view only.
"""
from __future__ import annotations

import dataclasses

import keras
import numpy as np

from common.backbones import build_model, weights_fingerprint
from common.features import FeatureCache, cache_namespace, extract_features

#: name -> (mirror, side of the central crop); "original" must stay first.
VIEWS = {
    "original": (False, 1.0),
    "mirror": (True, 1.0),
    "crop": (False, 0.8),
    "crop-mirror": (True, 0.8),
}


@keras.saving.register_keras_serializable(package="adaptation")
class FixedView(keras.layers.Layer):
    """A deterministic view of a batch of images: optional left-right mirror, then a central crop
    resized back to the input size."""

    def __init__(self, mirror: bool = False, crop: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < crop <= 1.0:
            raise ValueError(f"crop must be in (0, 1], not {crop}")
        self.mirror = bool(mirror)
        self.crop = float(crop)

    def call(self, images):
        if self.mirror:
            images = keras.ops.flip(images, axis=2)
        if self.crop < 1.0:
            height, width = images.shape[1], images.shape[2]
            keep_h, keep_w = round(height * self.crop), round(width * self.crop)
            top, left = (height - keep_h) // 2, (width - keep_w) // 2
            images = images[:, top : top + keep_h, left : left + keep_w, :]
            images = keras.ops.image.resize(images, (height, width), interpolation="bilinear", antialias=True)
        return images

    def get_config(self):
        return {**super().get_config(), "mirror": self.mirror, "crop": self.crop}


def view_extractor(features_model: keras.Model, view: str) -> keras.Model:
    """Pixels -> the view -> the (frozen) feature model."""
    mirror, crop = VIEWS[view]
    if not mirror and crop == 1.0:
        return features_model
    pixels = keras.Input(features_model.input_shape[1:], name="pixels")
    outputs = features_model(FixedView(mirror, crop, name=f"view_{view.replace('-', '_')}")(pixels))
    return keras.Model(pixels, outputs, name=f"{features_model.name}_{view.replace('-', '_')}")


@dataclasses.dataclass
class ViewFeatures:
    """features[view] is (n_kept, dim), rows in the order of ``kept`` (indices into the paths)."""

    features: dict[str, np.ndarray]
    kept: np.ndarray
    computed: int
    reused: int
    seconds: float


class FrozenFeatures:
    """A frozen pretrained base with global average pooling, and its cached views.

    The original view shares its cache namespace with every other example's
    pooled features of the same base (``flowers.train`` with the same backbone
    and size), so features one command computed are reused by another.
    """

    def __init__(self, backbone: str, weights: str, image_size: int, cache_dir=None, base=None):
        self.backbone = backbone
        self.image_size = int(image_size)
        self.model, self.base = build_model(backbone, weights, image_size, pooling="avg", base=base)
        self.base.trainable = False
        self.fingerprint = weights_fingerprint(self.base)
        self.cache_dir = cache_dir
        self.dim = int(self.model.output_shape[-1])

    def namespace(self, view: str) -> dict:
        namespace = cache_namespace(self.backbone, self.fingerprint, self.image_size, "avg")
        if view != "original":
            namespace["view"] = view
        return namespace

    def extract(self, paths, views=("original",), batch_size: int = 32, description: str = "features",
                progress: bool = True) -> ViewFeatures:
        """Each view's features for ``paths``; an image that fails to decode is left out of every view."""
        unknown = [view for view in views if view not in VIEWS]
        if unknown:
            raise ValueError(f"unknown view(s) {', '.join(unknown)}; choose from {', '.join(VIEWS)}")
        results = {}
        computed = reused = 0
        seconds = 0.0
        for view in views:
            cache = FeatureCache(self.cache_dir, self.namespace(view)) if self.cache_dir else None
            extraction = extract_features(
                view_extractor(self.model, view), paths, cache, self.image_size, batch_size,
                description=f"{description} ({view})", progress=progress,
            )
            results[view] = extraction
            computed += extraction.computed
            reused += extraction.reused
            seconds += extraction.seconds
        kept = results[views[0]].kept
        for extraction in results.values():
            kept = np.intersect1d(kept, extraction.kept)
        features = {}
        for view, extraction in results.items():
            position = {index: row for row, index in enumerate(extraction.kept)}
            features[view] = extraction.features[[position[index] for index in kept]].astype(np.float32)
        return ViewFeatures(features, kept, computed, reused, seconds)
