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
# # Lab 2: flower recognition by deep transfer, Table 2
#
# **Book section:** 12.5.1 (基于深度迁移学习模型的花卉种类识别): five flowers (daisy, dandelion,
# roses, sunflowers, tulips), the data set tripled offline by horizontal flips and 90° rotations, 200
# photos per class for validation, the pretrained base's pooled features ("a 2048-dimensional tensor",
# Inception-v3) stored once in a cache file, a retrained fully connected layer with dropout (stage ②),
# fine-tuning (stage ③), and the per-class recognition rates of Table 2.
#
# **Data:** TensorFlow's `flower_photos` (3670 photos: daisy 633, dandelion 898, roses 641,
# sunflowers 699, tulips 799), the same counts as the book's. **Library:** `common.data`
# (`load_image_folder`, `split_per_class`, `make_dataset`), `common.features` (the content-keyed
# bottleneck cache), `common.backbones`. The book uses Inception-v3; this lab uses MobileNetV2 with
# the ImageNet file of `../shared/weights/` (1280-d pooled features; Inception-v3's file is not
# available on the course machines). **Runtime:** both settings' measured times are in labs/README.md.

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
from sklearn.metrics import balanced_accuracy_score, confusion_matrix

from common.backbones import build_base, build_model, freeze_below, weights_fingerprint
from common.data import load_image_folder, make_dataset, split_per_class
from common.features import FeatureCache, cache_namespace, extract_features

# %% tags=["parameters"]
# Parameters (papermill style): LABS_QUICK=1 is the CI setting, tiny and fast.
QUICK = os.environ.get("LABS_QUICK", "0") == "1"
SHARED = Path(os.environ.get("LABS_SHARED", ROOT.parent / "shared"))  # holds data/ and weights/
DATA_DIR = SHARED / "data" / "flower_photos"
WEIGHTS_FILE = SHARED / "weights" / "mobilenet_v2_1.0_224_no_top.h5"
WEIGHTS = str(WEIGHTS_FILE) if WEIGHTS_FILE.is_file() else "imagenet"  # a path, "imagenet" (download) or "none"
BACKBONE = "mobilenet_v2"
IMAGE_SIZE = 128 if QUICK else 224
PER_CLASS = 30 if QUICK else None        # photos per class used (None: all 3670)
VALIDATION_PER_CLASS = 6 if QUICK else 200
HEAD_EPOCHS = 60 if QUICK else 30
FINETUNE_EPOCHS = 1
WORK_DIR = Path(tempfile.mkdtemp()) if QUICK else ROOT / "runs" / "labs" / "flowers"
keras.utils.set_random_seed(0)
TEXTBOOK_TABLE2 = {  # per-class recognition rate (%), daisy, dandelion, roses, sunflowers, tulips
    "SVM": [50.61, 47.58, 45.69, 54.29, 57.27],
    "CNN": [82.52, 81.25, 84.19, 80.11, 81.24],
    "deep transfer (Inception-v3)": [94.25, 95.14, 92.21, 93.17, 93.89],
}
print(f"quick setting: {QUICK}; data: {DATA_DIR}; weights: {WEIGHTS}")

# %% [markdown]
# ## 1. The split, then the offline views
#
# 200 photos per class are held out for validation *before* any copy is made (the book splits after
# tripling, so views of its validation photos are in its training set: its 93.73 % is optimistic;
# errata [E11](../docs/textbook-errata.md#E11)).
# Each training original then gets two views, its mirror image and a 90° rotation, written once as
# files: the book's tripled set.

# %%
folder = load_image_folder(DATA_DIR)
keep = np.concatenate([np.flatnonzero(folder.labels == c)[:PER_CLASS] for c in range(folder.num_classes)])
paths, labels = [folder.paths[i] for i in keep], folder.labels[keep]
train_index, validation_index = split_per_class(labels, VALIDATION_PER_CLASS, seed=0,
                                                class_names=folder.class_names)
validation_paths, validation_labels = [paths[i] for i in validation_index], labels[validation_index]


def write_views(path, out_dir):
    """The book's offline augmentation: the mirror image and the 90-degree rotation of one photo."""
    written = []
    with Image.open(path) as photo:
        photo = photo.convert("RGB")
        for name, view in (("flip", photo.transpose(Image.FLIP_LEFT_RIGHT)), ("rot90", photo.rotate(90, expand=True))):
            target = out_dir / f"{Path(path).stem}_{name}.jpg"
            if not target.exists():
                view.save(target, quality=90)
            written.append(str(target))
    return written


views_dir = WORK_DIR / "views"
views_dir.mkdir(parents=True, exist_ok=True)
train_paths, train_labels = [], []
for i in train_index:
    train_paths += [paths[i], *write_views(paths[i], views_dir)]
    train_labels += [labels[i]] * 3
train_labels = np.array(train_labels)
print(f"classes {folder.class_names}")
print(f"{len(train_index)} training originals -> {len(train_paths)} with their views; "
      f"{len(validation_paths)} validation photos")

figure, axes = plt.subplots(1, 3, figsize=(8, 2.8))
for axis, path, title in zip(axes, train_paths[:3], ["original", "mirror", "rotated 90°"], strict=False):
    axis.imshow(Image.open(path))
    axis.set_title(title)
    axis.axis("off")
plt.show()

# %% [markdown]
# ## 2. The bottleneck cache
#
# Every image goes once through the frozen base and global average pooling,
# $\bar{\Phi}(x) = \frac{1}{hw}\sum_{i,j} \Phi(x)_{ij}$, a 1280-d vector for MobileNetV2 (2048-d for the
# book's Inception-v3). The cache is keyed by a hash of each file's bytes and of the weights'
# values: a rerun reads every vector back (exercise 2).

# %%
extractor, base = build_model(BACKBONE, WEIGHTS, IMAGE_SIZE, pooling="avg")
namespace = cache_namespace(BACKBONE, weights_fingerprint(base), IMAGE_SIZE, "avg")
cache = FeatureCache(WORK_DIR / "features", namespace)
train_run = extract_features(extractor, train_paths, cache, IMAGE_SIZE, progress=False)
validation_run = extract_features(extractor, validation_paths, cache, IMAGE_SIZE, progress=False)
x_train, y_train = train_run.features, train_labels[train_run.kept]
x_validation, y_validation = validation_run.features, validation_labels[validation_run.kept]
print(f"{x_train.shape[1]}-d bottlenecks: {train_run.computed + validation_run.computed} computed in "
      f"{train_run.seconds + validation_run.seconds:.1f} s, {train_run.reused + validation_run.reused} read back")

# %% [markdown]
# ## 3. Stage ②: the new fully connected layer
#
# Dropout ($p = 0.5$: each input kept with probability $1 - p$ and scaled by $\frac{1}{1-p}$ while
# training) and a softmax layer over the $C = 5$ flowers, trained with cross-entropy on the cached
# vectors:
#
# $$\hat{y} = \mathrm{softmax}\big(W\, \mathrm{dropout}(\bar{\Phi}(x)) + b\big), \qquad
# \ell = -\frac{1}{N}\sum_{i=1}^{N} \log \hat{y}_{i, y_i} .$$

# %%
def flower_head(dimension, classes):
    """Stage 2's new layers: Dropout 0.5 -> Dense softmax."""
    return keras.Sequential([keras.Input((dimension,)), keras.layers.Dropout(0.5),
                             keras.layers.Dense(classes, activation="softmax")], name="flower_head")


head = flower_head(x_train.shape[1], folder.num_classes)
head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
start = time.perf_counter()
history = head.fit(x_train, y_train, epochs=HEAD_EPOCHS, batch_size=32 if QUICK else 100,
                   validation_data=(x_validation, y_validation), verbose=0)
print(f"stage 2: val_accuracy {history.history['val_accuracy'][-1]:.3f} ({time.perf_counter() - start:.1f} s)")

plt.plot(history.history["accuracy"], label="training")
plt.plot(history.history["val_accuracy"], label="validation")
plt.xlabel("epoch")
plt.ylabel("accuracy")
plt.legend()
plt.show()

# %% [markdown]
# ## 4. Table 2: the recognition rate of each flower
#
# Table 2 reports, per class $c$, the share of its validation photos recognised as $c$,
#
# $$r_c = \frac{|\{i : y_i = c,\ \hat{y}_i = c\}|}{|\{i : y_i = c\}|}, \qquad \bar{r} = \frac{1}{C}\sum_{c=1}^{C} r_c ,$$
#
# and the average $\bar{r}$ (93.73 % for the book's deep transfer row).

# %%
predicted = head.predict(x_validation, verbose=0).argmax(axis=1)
matrix = confusion_matrix(y_validation, predicted, labels=range(folder.num_classes))
stage2_rates = 100 * matrix.diagonal() / matrix.sum(axis=1)
print("stage 2, per class (%):", {name: round(float(r), 2) for name, r in zip(folder.class_names, stage2_rates, strict=False)},
      f"average {stage2_rates.mean():.2f}")

positions = np.arange(folder.num_classes)
rows = {**TEXTBOOK_TABLE2, "this lab, stage 2": stage2_rates}
for offset, (name, rates) in enumerate(rows.items()):
    plt.bar(positions + 0.2 * offset, rates, width=0.2, label=name)
plt.xticks(positions + 0.3, folder.class_names)
plt.ylabel("recognition rate (%)")
plt.legend(fontsize=8, bbox_to_anchor=(1.02, 1), loc="upper left")
plt.show()

# %% [markdown]
# ## 5. Stage ③: fine-tuning the top of the base
#
# The base's last stage (from `block_14_expand`) is released and trained with the head at a small rate
# (Adam, $10^{-4}$), on the training photos with their views, end to end from pixels.

# %%
model, _ = build_model(BACKBONE, base=base, pooling="avg", head=head, name="flowers")
freeze_below(base, "block_14_expand")
model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
size = (IMAGE_SIZE, IMAGE_SIZE)
training = make_dataset(train_paths, train_labels, size, 32, shuffle=True)
validation = make_dataset(validation_paths, validation_labels, size, 32)
start = time.perf_counter()
model.fit(training, epochs=FINETUNE_EPOCHS, verbose=0)
stage3_predicted = model.predict(validation, verbose=0).argmax(axis=1)
stage3_matrix = confusion_matrix(validation_labels, stage3_predicted, labels=range(folder.num_classes))
stage3_rates = 100 * stage3_matrix.diagonal() / stage3_matrix.sum(axis=1)
print(f"stage 3 ({FINETUNE_EPOCHS} epoch, {time.perf_counter() - start:.1f} s): per class (%)",
      {name: round(float(r), 2) for name, r in zip(folder.class_names, stage3_rates, strict=False)},
      f"average {stage3_rates.mean():.2f}")

# %% [markdown]
# ## Exercises
#
# Each exercise is followed by a check cell: run it after your answer; it says whether the answer holds.
# (The cells between `### BEGIN SOLUTION` and `### END SOLUTION` hold a reference answer: a teacher
# removes them before handing the lab out, see labs/README.md.)
#
# ### Exercise 1: the average of Table 2
#
# From stage 2's validation predictions `predicted` and the labels `y_validation`, compute the
# per-class rates $r_c$ (in %) without the confusion matrix, store them in `rates` (a numpy array in
# class order) and their mean $\bar{r}$ in `average_rate`. Is $\bar{r}$ the plain accuracy? When do the
# two differ?

# %%
### BEGIN SOLUTION
rates = np.array([100 * np.mean(predicted[y_validation == c] == c) for c in range(folder.num_classes)])
average_rate = float(rates.mean())
### END SOLUTION
print(np.round(rates, 2), f"average {average_rate:.2f}, accuracy {100 * np.mean(predicted == y_validation):.2f}")

# %% tags=["check"]
low = 50 if QUICK else 85
assert np.allclose(rates, stage2_rates), f"rates {np.round(rates, 2)} differ from the confusion matrix's"
assert np.isclose(average_rate, 100 * balanced_accuracy_score(y_validation, predicted)), (
    "the mean of the per-class rates is scikit-learn's balanced accuracy")
assert low <= average_rate <= 100, f"average {average_rate:.2f} % is below {low} %"
print(f"correct: average {average_rate:.2f} % (the balanced accuracy; equal to the accuracy here because "
      "every class has the same number of validation photos)")

# %% [markdown]
# ### Exercise 2: the cache on a rerun
#
# Call `extract_features` again on the training paths with the same `cache`. Store the number of images
# it had to compute in `computed_again` and its features in `again`. Then think: what would a changed
# weight file, or one re-saved JPEG, do to the cache?

# %%
### BEGIN SOLUTION
rerun = extract_features(extractor, train_paths, cache, IMAGE_SIZE, progress=False)
computed_again, again = rerun.computed, rerun.features
### END SOLUTION
print(f"computed {computed_again}, read back {rerun.reused}")

# %% tags=["check"]
assert computed_again == 0, f"{computed_again} images were computed again: the cache should hold them all"
assert np.array_equal(again, x_train), "the cached features should be exactly the first run's"
print(f"correct: 0 computed, {len(again)} read back (the key is the file's bytes and the weights' values)")

# %% [markdown]
# ### Exercise 3: another backbone, the book's 2048-d vectors
#
# The book's base is Inception-v3. Build it with random weights (`build_base("inception_v3", "none",
# 75)`: only its shape matters here), store the dimension of its pooled vector in `inception_dim`, and
# the number of weights of stage 2's head for it (Dropout has none; Dense has $d \cdot C + C$) in
# `inception_head_weights`; the same for this lab's MobileNetV2 head in `mobilenet_head_weights`.

# %%
### BEGIN SOLUTION
inception = build_base("inception_v3", "none", 75)
inception_dim = int(inception.output_shape[-1])
inception_head_weights = flower_head(inception_dim, 5).count_params()
mobilenet_head_weights = head.count_params()
### END SOLUTION
print(inception_dim, inception_head_weights, mobilenet_head_weights)

# %% tags=["check"]
assert inception_dim == 2048, f"Inception-v3's last map has 2048 channels, not {inception_dim}"
assert inception_head_weights == 2048 * 5 + 5, f"{inception_head_weights}: d * C + C with d = 2048, C = 5"
assert mobilenet_head_weights == 1280 * 5 + 5, f"{mobilenet_head_weights}: d * C + C with d = 1280, C = 5"
print(f"correct: {inception_head_weights:,} weights on Inception-v3's 2048-d vectors, "
      f"{mobilenet_head_weights:,} on MobileNetV2's 1280-d ones")
