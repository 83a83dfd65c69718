# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Lab 1: cats vs dogs, bottleneck features and fine-tuning
#
# **Book section:** the slides (001, "实例：基于keras框架"), with 12.4.2 (finetune) of the chapter: the
# augmentation preview, the bottleneck features of a pretrained convolutional base, a small classifier
# on them, then fine-tuning the last block.
#
# **Data:** Google's `cats_and_dogs_filtered` (1000 + 1000 training, 500 + 500 validation photos).
# **Library:** `common.augment.Augmenter` (the slides' `ImageDataGenerator` parameters on Keras 3),
# `common.backbones` (`build_model`, `freeze_below`), `common.data`, `common.features` (the on-disk
# bottleneck cache).
#
# The slides use VGG16 with ImageNet weights; this lab uses MobileNetV2 with the ImageNet file in
# `../shared/weights/` (VGG16's file is not available on the course machines), and exercise 2 builds
# VGG16 itself. The quick setting uses 16 + 16 training photos at 96 x 96.
# **Runtime:** both settings' measured times are in labs/README.md.

# %%
# Setup: the repository root on sys.path (the notebook runs in labs/), then every import of the lab.
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "pyproject.toml").is_file() and (p / "common").is_dir())
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# %matplotlib inline
import keras
import matplotlib.pyplot as plt
import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression

from common.augment import Augmenter
from common.backbones import build_base, build_model, freeze_below, weights_fingerprint
from common.data import load_image_folder, make_dataset
from common.features import FeatureCache, cache_namespace, extract_features

# %% tags=["parameters"]
# Parameters (papermill style): LABS_QUICK=1 is the CI setting, tiny and fast.
QUICK = os.environ.get("LABS_QUICK", "0") == "1"
SHARED = Path(os.environ.get("LABS_SHARED", ROOT.parent / "shared"))  # holds data/ and weights/
DATA_DIR = SHARED / "data" / "cats_and_dogs_filtered"
WEIGHTS_FILE = SHARED / "weights" / "mobilenet_v2_1.0_224_no_top.h5"
WEIGHTS = str(WEIGHTS_FILE) if WEIGHTS_FILE.is_file() else "imagenet"  # a path, "imagenet" (download) or "none"
BACKBONE = "mobilenet_v2"
IMAGE_SIZE = 96 if QUICK else 224
PER_CLASS = (16, 8) if QUICK else (None, None)   # training, validation photos per class (None: all)
TOP_EPOCHS = 8 if QUICK else 10
FINETUNE_EPOCHS = 1 if QUICK else 5
BATCH_SIZE = 16 if QUICK else 32
WORK_DIR = Path(tempfile.mkdtemp()) if QUICK else ROOT / "runs" / "labs" / "cats_vs_dogs"
keras.utils.set_random_seed(0)
print(f"quick setting: {QUICK}; data: {DATA_DIR}; weights: {WEIGHTS}")

# %% [markdown]
# ## 1. The data
#
# One folder per class, `train/{cats,dogs}` and `validation/{cats,dogs}`; `load_image_folder` checks
# every file once (an empty or truncated JPEG is skipped with a warning, not a crash mid-training).
# Labels: cats 0, dogs 1 (sorted folder names).

# %%
def first_per_class(folder, count):
    """The first `count` files of each class (all of them for None), in the folder's sorted order."""
    if count is None:
        return folder.paths, folder.labels
    keep = np.concatenate([np.flatnonzero(folder.labels == label)[:count] for label in range(folder.num_classes)])
    return [folder.paths[i] for i in keep], folder.labels[keep]


train_folder = load_image_folder(DATA_DIR / "train")
validation_folder = load_image_folder(DATA_DIR / "validation", class_names=train_folder.class_names)
train_paths, train_labels = first_per_class(train_folder, PER_CLASS[0])
validation_paths, validation_labels = first_per_class(validation_folder, PER_CLASS[1])
print(f"classes {train_folder.class_names}: {len(train_paths)} training, {len(validation_paths)} validation photos")

figure, axes = plt.subplots(1, 6, figsize=(12, 2.4))
for axis, index in zip(axes, [0, 1, 2, -1, -2, -3], strict=False):
    axis.imshow(Image.open(train_paths[index]))
    axis.set_title(train_folder.class_names[train_labels[index]])
    axis.axis("off")
plt.show()

# %% [markdown]
# ## 2. The augmentation preview
#
# The slides' `ImageDataGenerator(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
# shear_range=0.2, zoom_range=0.2, horizontal_flip=True, fill_mode='nearest')`. Rotation, shift, shear
# and zoom compose into one affine map of the pixel grid, applied once per image:
#
# $$\begin{pmatrix} x' \\ y' \end{pmatrix} = R(\theta)\, S(s)\, Z(z_x, z_y) \begin{pmatrix} x - c_x \\ y - c_y \end{pmatrix}
# + \begin{pmatrix} c_x + t_x \\ c_y + t_y \end{pmatrix}, \qquad \theta \sim U[-40°, 40°],\ z \sim U[0.8, 1.2]$$
#
# Note that `shear_range=0.2` is an angle **in degrees** (barely visible), as it was in Keras 2
# (errata [E16](../docs/textbook-errata.md#E16), [E17](../docs/textbook-errata.md#E17)).
# The slides also `rescale=1./255`; here each backbone's own `preprocess_input` is a layer inside the
# model, so the pipeline keeps raw pixels in 0..255 (errata [E23](../docs/textbook-errata.md#E23)).

# %%
SLIDES_AUGMENTATION = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2,
                           zoom_range=0.2, horizontal_flip=True, fill_mode="nearest")
augmenter = Augmenter(**SLIDES_AUGMENTATION, seed=0)
cat = np.asarray(Image.open(train_paths[0]).convert("RGB"), dtype=np.float32)
views = np.asarray(augmenter(np.repeat(cat[None], 11, axis=0), training=True))

figure, axes = plt.subplots(2, 6, figsize=(12, 4.4))
for axis, picture, title in zip(axes.flat, [cat, *views], ["original"] + [f"view {i}" for i in range(11)], strict=False):
    axis.imshow(np.clip(picture, 0, 255).astype("uint8"))
    axis.set_title(title)
    axis.axis("off")
plt.show()

# %% [markdown]
# ## 3. Bottleneck features
#
# The convolutional base $\Phi$ (ImageNet weights, frozen) turns every photo into its last feature map
# once; the maps are cached on disk, keyed by each image's bytes and the weights' values, so a second
# run computes nothing. This is feature-based transfer (eq. 1 of 12.2.3 with a fixed $\Phi$):
#
# $$\min_\theta \frac{1}{n} \sum_{i=1}^{n} L\big(\Phi(x_i^s), y_i^s, \theta\big)$$

# %%
extractor, base = build_model(BACKBONE, WEIGHTS, IMAGE_SIZE)  # pixels 0..255 -> preprocess_input -> base
cache = FeatureCache(WORK_DIR / "features", cache_namespace(BACKBONE, weights_fingerprint(base), IMAGE_SIZE, None))
train_run = extract_features(extractor, train_paths, cache, IMAGE_SIZE, progress=False)
validation_run = extract_features(extractor, validation_paths, cache, IMAGE_SIZE, progress=False)
x_train, y_train = train_run.features, train_labels[train_run.kept]
x_validation, y_validation = validation_run.features, validation_labels[validation_run.kept]
print(f"feature maps {x_train.shape[1:]}: {train_run.computed + validation_run.computed} computed in "
      f"{train_run.seconds + validation_run.seconds:.1f} s, {train_run.reused + validation_run.reused} read back")

# %% [markdown]
# ## 4. The top model
#
# The slides' classifier on the flattened maps: Dense(256, relu), Dropout(0.5), Dense(1, sigmoid),
# RMSprop, binary cross-entropy
#
# $$\ell = -\frac{1}{N} \sum_{i=1}^{N} \big[ y_i \log p_i + (1 - y_i) \log (1 - p_i) \big], \qquad p_i = \sigma(f_\theta(\Phi(x_i))).$$

# %%
def top_model(feature_shape):
    """The slides' top model: Flatten -> Dense 256 relu -> Dropout 0.5 -> Dense 1 sigmoid."""
    inputs = keras.Input(feature_shape)
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(256, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(x), name="top_model")


top = top_model(x_train.shape[1:])
top.compile(optimizer="rmsprop", loss="binary_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
history = top.fit(x_train, y_train, epochs=TOP_EPOCHS, batch_size=BATCH_SIZE,
                  validation_data=(x_validation, y_validation), verbose=0)
top_accuracy = history.history["val_accuracy"][-1]
print(f"top model: val_accuracy {top_accuracy:.3f} after {TOP_EPOCHS} epochs ({time.perf_counter() - start:.1f} s)")

plt.plot(history.history["accuracy"], label="training")
plt.plot(history.history["val_accuracy"], label="validation")
plt.xlabel("epoch")
plt.ylabel("accuracy")
plt.legend()
plt.show()

# %% [markdown]
# ## 5. Fine-tuning the last block
#
# Model-based transfer (eq. 3 of 12.2.3): start from the pretrained $\theta$ and move it to $\theta'$
# on the new task, $\min_{\theta'} \frac{1}{n}\sum_i L(\Phi(x_i^s), y_i^s, \theta')$, but only in the
# last block: the lower layers hold general features (12.4.1), the top ones task-specific ones.
# The slides freeze VGG16's `layers[:15]` and train block 5; for MobileNetV2 the counterpart is the
# last 7 x 7 stage, from `block_14_expand`. SGD with a small rate (1e-4, momentum 0.9), the slides'
# augmentation on the training photos only. `freeze_below` also keeps the BatchNorm layers frozen:
# with batches of 16-32 their statistics would drift from ImageNet's.

# %%
model, _ = build_model(BACKBONE, base=base, head=top, name="cats_vs_dogs")
first_trainable = freeze_below(base, "block_14_expand")
model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9), loss="binary_crossentropy", metrics=["accuracy"])
trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
print(f"layers[:{first_trainable}] frozen; {trainable:,} trainable weights (base and top model)")

training = make_dataset(train_paths, train_labels, (IMAGE_SIZE, IMAGE_SIZE), BATCH_SIZE, shuffle=True,
                        augment=Augmenter(**SLIDES_AUGMENTATION, seed=1), cache_in_memory=True)
validation = make_dataset(validation_paths, validation_labels, (IMAGE_SIZE, IMAGE_SIZE), BATCH_SIZE,
                          cache_in_memory=True)
before = model.evaluate(validation, verbose=0)[1]
start = time.perf_counter()
finetune = model.fit(training, validation_data=validation, epochs=FINETUNE_EPOCHS, verbose=0)
after = finetune.history["val_accuracy"][-1]
print(f"val_accuracy before fine-tuning {before:.3f}, after {FINETUNE_EPOCHS} epoch(s) {after:.3f} "
      f"({time.perf_counter() - start:.1f} s)")

# %% [markdown]
# ## Exercises
#
# Each exercise is followed by a check cell: run it after your answer; it says whether the answer holds.
# (The cells between `### BEGIN SOLUTION` and `### END SOLUTION` hold a reference answer: a teacher
# removes them before handing the lab out, see labs/README.md.)
#
# ### Exercise 1: what does a flip-only generator produce?
#
# Build an `Augmenter` that only flips horizontally (`horizontal_flip=True`, every other transform
# off, `seed=3`), apply it to 20 copies of the cat photo `cat`, and store the result (a numpy array of
# shape (20, height, width, 3)) in `flipped`. Every view should be either the photo or its mirror
# image $x'(i, j) = x(i, W - 1 - j)$, each with probability $1/2$.

# %%
### BEGIN SOLUTION
flip_only = Augmenter(horizontal_flip=True, seed=3)
flipped = np.asarray(flip_only(np.repeat(cat[None], 20, axis=0), training=True))
### END SOLUTION

# %% tags=["check"]
mirrored = np.array([np.array_equal(view, cat[:, ::-1]) for view in flipped])
unchanged = np.array([np.array_equal(view, cat) for view in flipped])
assert flipped.shape == (20, *cat.shape), f"expected 20 views of shape {cat.shape}, got {flipped.shape}"
assert (mirrored | unchanged).all(), "some views are neither the photo nor its mirror: switch every other transform off"
assert 0 < mirrored.sum() < 20, f"{mirrored.sum()} of 20 views are mirrored: the flip should be a coin toss"
print(f"correct: {mirrored.sum()} of 20 views mirrored, {unchanged.sum()} unchanged")

# %% [markdown]
# ### Exercise 2: the slides' VGG16 and `layers[:15]`
#
# Build the slides' base, VGG16 at 150 x 150, with random weights (`build_base("vgg16", "none", 150)`:
# the architecture is what counts here). The slides freeze `model.layers[:15]`: store the name of
# the first layer left trainable in `first_trainable_name`, and, after `freeze_below(vgg, 15)`, the
# number of trainable weights of the base in `vgg_trainable`. Each 3 x 3 convolution from 512 to 512
# channels has $3 \cdot 3 \cdot 512 \cdot 512 + 512$ weights: does your count agree?

# %%
### BEGIN SOLUTION
vgg = build_base("vgg16", "none", 150)
first_trainable_name = vgg.layers[15].name
freeze_below(vgg, 15)
vgg_trainable = sum(int(np.prod(w.shape)) for w in vgg.trainable_weights)
### END SOLUTION
print(first_trainable_name, f"{vgg_trainable:,}")

# %% tags=["check"]
assert first_trainable_name == "block5_conv1", f"layer 15 is block5_conv1, not {first_trainable_name!r}"
assert vgg_trainable == 3 * (3 * 3 * 512 * 512 + 512), (
    f"{vgg_trainable:,} trainable weights; block 5 is three 3x3 convolutions of 512 -> 512 channels")
print(f"correct: block 5 alone is trained, {vgg_trainable:,} weights = 3 x (3*3*512*512 + 512)")

# %% [markdown]
# ### Exercise 3: average pooling instead of Flatten
#
# The flattened map has $h \cdot w \cdot 1280$ inputs per photo. Average it over the spatial positions
# instead, $\bar{\Phi}(x) = \frac{1}{hw} \sum_{i,j} \Phi(x)_{ij} \in \mathbb{R}^{1280}$ (from the cached
# `x_train`, `x_validation`: no new extraction), train a scikit-learn `LogisticRegression(max_iter=1000)`
# on the pooled training vectors and store its validation accuracy in `pooled_accuracy`.

# %%
### BEGIN SOLUTION
pooled_train, pooled_validation = x_train.mean(axis=(1, 2)), x_validation.mean(axis=(1, 2))
probe = LogisticRegression(max_iter=1000).fit(pooled_train, y_train)
pooled_accuracy = float(probe.score(pooled_validation, y_validation))
### END SOLUTION
print(f"logistic regression on pooled features: {pooled_accuracy:.3f} (top model on flattened maps: {top_accuracy:.3f})")

# %% tags=["check"]
low = 0.75 if QUICK else 0.95
assert pooled_train.shape[1] == 1280, f"pooled vectors should be 1280-d, not {pooled_train.shape[1]}"
assert low <= pooled_accuracy <= 1.0, (
    f"validation accuracy {pooled_accuracy:.3f} is below {low}: pretrained pooled features separate cats from dogs")
print(f"correct: {pooled_accuracy:.3f} >= {low} with {pooled_train.shape[1]} features instead of {np.prod(x_train.shape[1:]):,}")
