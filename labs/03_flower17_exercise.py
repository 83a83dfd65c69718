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
# # Lab 3: the flower17 exercise (习题)
#
# **Book section:** 12.5, the chapter's exercise (习题): two classes of the Oxford flower17 set, a 7:1
# split per class, a pretrained base with its first five layers frozen (`model.layers[:5]`), a new
# dense top (Flatten, Dense 1024, Dropout 0.5, Dense 1024, softmax), SGD with learning rate $10^{-4}$
# and momentum 0.9, the exercise's augmentation, a best-model checkpoint and early stopping, then the
# prediction of one validation photo, which "should be close to [1., 0.]".
#
# **Data:** flower17, 17 classes x 80 photos, `jpg/image_0001.jpg` .. `image_1360.jpg`, the class of
# image $k$ is $\lfloor (k - 1) / 80 \rfloor$. **Library:** `common.backbones`, `common.data`,
# `common.augment`; keras' own callbacks.
#
# Changes from the book's code, each a bug there: the validation photos are not augmented; the
# callbacks watch `val_accuracy` (Keras 3's name: `val_acc` never matches); the test photo read by
# OpenCV is converted from BGR to RGB before the model sees it (errata [E21](../docs/textbook-errata.md#E21),
# [E24](../docs/textbook-errata.md#E24), [E25](../docs/textbook-errata.md#E25)). The exercise uses VGG16; this lab
# uses MobileNetV2 with the ImageNet file of `../shared/weights/` (VGG16's file is not available on
# the course machines). **Runtime:** both settings' measured times are in labs/README.md.

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
import cv2
import keras
import matplotlib.pyplot as plt
import numpy as np

from common.augment import Augmenter
from common.backbones import build_model, freeze_below
from common.data import make_dataset

# %% tags=["parameters"]
# Parameters (papermill style): LABS_QUICK=1 is the CI setting, tiny and fast.
QUICK = os.environ.get("LABS_QUICK", "0") == "1"
SHARED = Path(os.environ.get("LABS_SHARED", ROOT.parent / "shared"))  # holds data/ and weights/
IMAGES = SHARED / "data" / "flower17" / "jpg"
WEIGHTS_FILE = SHARED / "weights" / "mobilenet_v2_1.0_224_no_top.h5"
WEIGHTS = str(WEIGHTS_FILE) if WEIGHTS_FILE.is_file() else "imagenet"  # a path, "imagenet" (download) or "none"
BACKBONE = "mobilenet_v2"
CLASSES = (0, 1)                         # the exercise's "first two classes"
IMAGE_SIZE = 96 if QUICK else 224
TRAIN_PER_CLASS = 16 if QUICK else 70    # the 7:1 split: photos 1-70 of a class train, 71-80 validate
EPOCHS = 4 if QUICK else 30              # the book: up to 100, early stopping with patience 10
BATCH_SIZE = 16
WORK_DIR = Path(tempfile.mkdtemp()) if QUICK else ROOT / "runs" / "labs" / "flower17"
keras.utils.set_random_seed(0)
print(f"quick setting: {QUICK}; images: {IMAGES}; weights: {WEIGHTS}")

# %% [markdown]
# ## 1. The 7:1 split
#
# The book lays the files out as `data/train/0/image_0001.jpg .. image_0070.jpg` and
# `data/validation/0/image_0071.jpg .. image_0080.jpg`, and so on for class 1 (`image_0081` ..). The
# same split as lists (no copies): of each class's 80 photos, $\frac{7}{8} \cdot 80 = 70$ train and
# $\frac{1}{8} \cdot 80 = 10$ validate. The quick setting trains on fewer of the 70.

# %%
def flower17_split(classes, train_per_class):
    """(train paths, train labels, validation paths, validation labels): the book's split, labels 0..len-1."""
    train, validation = ([], []), ([], [])
    for label, number in enumerate(classes):
        files = [IMAGES / f"image_{80 * number + k:04d}.jpg" for k in range(1, 81)]
        train[0].extend(map(str, files[:train_per_class]))
        train[1].extend([label] * train_per_class)
        validation[0].extend(map(str, files[70:]))
        validation[1].extend([label] * 10)
    return train[0], np.array(train[1]), validation[0], np.array(validation[1])


train_paths, train_labels, validation_paths, validation_labels = flower17_split(CLASSES, TRAIN_PER_CLASS)
print(f"{len(train_paths)} training, {len(validation_paths)} validation photos; "
      f"first validation photo {Path(validation_paths[0]).name}")

figure, axes = plt.subplots(1, 6, figsize=(12, 2.4))
for axis, index in zip(axes, [0, 1, 2, -1, -2, -3], strict=False):
    axis.imshow(cv2.cvtColor(cv2.imread(train_paths[index]), cv2.COLOR_BGR2RGB))
    axis.set_title(f"class {CLASSES[train_labels[index]]}")
    axis.axis("off")
plt.show()

# %% [markdown]
# ## 2. The model: `layers[:5]` frozen, a new dense top
#
# The base keeps its lower layers' ImageNet filters (general features, 12.4.1) and the rest is
# fine-tuned with the new top, trained with categorical cross-entropy over the $C = 2$ classes,
#
# $$\ell = -\frac{1}{N}\sum_{i=1}^{N} \sum_{c=1}^{C} y_{ic} \log \mathrm{softmax}(z_i)_c, \qquad
# \mathrm{softmax}(z)_c = \frac{e^{z_c}}{\sum_{c'} e^{z_{c'}}} .$$
#
# `build_model` puts the backbone's own `preprocess_input` inside the model (the book trains with
# `rescale=1/255` but predicts with `preprocess_input`: two different inputs).

# %%
def exercise_top(classes):
    """The exercise's top: Flatten -> Dense 1024 relu -> Dropout 0.5 -> Dense 1024 relu -> Dense softmax."""
    return keras.Sequential([
        keras.layers.Flatten(),
        keras.layers.Dense(1024, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(1024, activation="relu"),
        keras.layers.Dense(classes, activation="softmax"),
    ], name="exercise_top")


model, base = build_model(BACKBONE, WEIGHTS, IMAGE_SIZE, head=exercise_top(len(CLASSES)), name="flower17")
freeze_below(base, 5)  # the book's `for layer in model.layers[:5]: layer.trainable = False`
model.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(1e-4, momentum=0.9),
              metrics=["accuracy"])
print(f"frozen: {[layer.name for layer in base.layers[:5]]}")
print(f"trainable weights: {sum(int(np.prod(w.shape)) for w in model.trainable_weights):,}")

# %% [markdown]
# ## 3. Training with the exercise's augmentation
#
# `ImageDataGenerator(horizontal_flip=True, fill_mode="nearest", zoom_range=0.3, width_shift_range=0.3,
# height_shift_range=0.3, rotation_range=30)` on the training photos; the validation photos are seen
# as they are. A checkpoint keeps the best model by `val_accuracy`, early stopping waits 10 epochs.

# %%
EXERCISE_AUGMENTATION = dict(horizontal_flip=True, fill_mode="nearest", zoom_range=0.3, width_shift_range=0.3,
                             height_shift_range=0.3, rotation_range=30)
size = (IMAGE_SIZE, IMAGE_SIZE)
training = make_dataset(train_paths, train_labels, size, BATCH_SIZE, shuffle=True, one_hot=len(CLASSES),
                        augment=Augmenter(**EXERCISE_AUGMENTATION, seed=0), cache_in_memory=True)
validation = make_dataset(validation_paths, validation_labels, size, BATCH_SIZE, one_hot=len(CLASSES),
                          cache_in_memory=True)
checkpoint_path = WORK_DIR / "flower17_best.keras"
checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
callbacks = [
    keras.callbacks.ModelCheckpoint(checkpoint_path, monitor="val_accuracy", save_best_only=True),
    keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=10),
]
start = time.perf_counter()
history = model.fit(training, validation_data=validation, epochs=EPOCHS, callbacks=callbacks, verbose=0)
best_epoch = int(np.argmax(history.history["val_accuracy"]))
print(f"{len(history.history['loss'])} epochs in {time.perf_counter() - start:.1f} s; best val_accuracy "
      f"{history.history['val_accuracy'][best_epoch]:.3f} at epoch {best_epoch + 1}")

plt.plot(history.history["loss"], label="training loss")
plt.plot(history.history["val_loss"], label="validation loss")
plt.xlabel("epoch")
plt.legend()
plt.show()

# %% [markdown]
# ## 4. The best model on one validation photo
#
# The book reads `image_0071.jpg` with OpenCV, resizes it and calls `preprocess_input` by hand. OpenCV
# reads **BGR**; the network was trained on RGB, so the channels are swapped first. The preprocessing
# is inside the model, so the raw 0..255 pixels go in.

# %%
best = keras.models.load_model(checkpoint_path)
photo = cv2.cvtColor(cv2.imread(validation_paths[0]), cv2.COLOR_BGR2RGB)
photo = cv2.resize(photo, size, interpolation=cv2.INTER_AREA).astype(np.float32)
out = best.predict(photo[None], verbose=0)[0]
print(f"{Path(validation_paths[0]).name}: probabilities {np.round(out, 4)}, argmax {np.argmax(out)}")
validation_accuracy = float(best.evaluate(validation, verbose=0)[1])
print(f"best model: validation accuracy {validation_accuracy:.3f}")

# %% [markdown]
# ## Exercises
#
# Each exercise is followed by a check cell: run it after your answer; it says whether the answer holds.
# (The cells between `### BEGIN SOLUTION` and `### END SOLUTION` hold a reference answer: a teacher
# removes them before handing the lab out, see labs/README.md.)
#
# ### Exercise 1: what do `layers[:5]` freeze?
#
# In VGG16, `layers[:5]` are the input and block 1 and 2's first layers. In MobileNetV2 they are
# different: store their names in `frozen_names`, and the number of weights of the **base** that
# `freeze_below(base, 5)` leaves trainable in `base_trainable`. Is "the first five layers" a sensible
# rule across architectures? (BatchNorm layers stay frozen above the cut too, see `freeze_below`.)

# %%
### BEGIN SOLUTION
frozen_names = [layer.name for layer in base.layers[:5]]
base_trainable = sum(int(np.prod(w.shape)) for w in base.trainable_weights)
### END SOLUTION
print(frozen_names, f"{base_trainable:,}")

# %% tags=["check"]
assert frozen_names == ["input_layer", "Conv1", "bn_Conv1", "Conv1_relu", "expanded_conv_depthwise"], frozen_names
all_but_batchnorm = sum(int(np.prod(w.shape)) for layer in base.layers[5:]
                        if not isinstance(layer, keras.layers.BatchNormalization) for w in layer.weights)
assert base_trainable == all_but_batchnorm == 2_188_608, f"{base_trainable:,} trainable base weights"
print(f"correct: only the first convolution and one depthwise layer are frozen; {base_trainable:,} of "
      f"{base.count_params():,} base weights train")

# %% [markdown]
# ### Exercise 2: the book's last step, with the channels right
#
# Predict the same photo again, but as the book's code does: OpenCV's BGR array straight into the
# model. Store the probabilities in `bgr_probabilities` and the RGB ones (section 4's `out`) in
# `rgb_probabilities`. Which one is "close to [1., 0.]"? How much does the channel order matter for
# this photo?

# %%
### BEGIN SOLUTION
bgr = cv2.resize(cv2.imread(validation_paths[0]), size, interpolation=cv2.INTER_AREA).astype(np.float32)
bgr_probabilities = best.predict(bgr[None], verbose=0)[0]
rgb_probabilities = out
### END SOLUTION
print(f"BGR: {np.round(bgr_probabilities, 4)}; RGB: {np.round(rgb_probabilities, 4)}")

# %% tags=["check"]
low = 0.5 if QUICK else 0.9
assert np.allclose(rgb_probabilities, out), "rgb_probabilities should be the prediction of section 4"
assert np.argmax(rgb_probabilities) == 0 and rgb_probabilities[0] >= low, (
    f"the RGB prediction {np.round(rgb_probabilities, 3)} should favour class 0 with at least {low}")
assert not np.allclose(bgr_probabilities, rgb_probabilities), "the BGR input should give a different prediction"
print(f"correct: RGB gives {rgb_probabilities[0]:.3f} for class 0, BGR {bgr_probabilities[0]:.3f}")

# %% [markdown]
# ### Exercise 3: freeze the whole base, other classes
#
# Another pair: tulips (class 7) against daisies (class 10). Freeze the whole base
# (`freeze_below(base2, "none")`: a feature extractor, only the top trains), train the exercise's top
# for 10 epochs with the same augmentation and SGD, but a ten times larger rate ($10^{-3}$: only
# the new, randomly initialised top moves), and store the last epoch's validation accuracy in
# `frozen_accuracy`.

# %%
### BEGIN SOLUTION
keras.utils.set_random_seed(1)
paths2, labels2, val_paths2, val_labels2 = flower17_split((7, 10), TRAIN_PER_CLASS)
model2, base2 = build_model(BACKBONE, WEIGHTS, IMAGE_SIZE, head=exercise_top(2))
freeze_below(base2, "none")
model2.compile(loss="categorical_crossentropy", optimizer=keras.optimizers.SGD(1e-3, momentum=0.9),
               metrics=["accuracy"])
history2 = model2.fit(
    make_dataset(paths2, labels2, size, BATCH_SIZE, shuffle=True, one_hot=2,
                 augment=Augmenter(**EXERCISE_AUGMENTATION, seed=0), cache_in_memory=True),
    validation_data=make_dataset(val_paths2, val_labels2, size, BATCH_SIZE, one_hot=2, cache_in_memory=True),
    epochs=10, verbose=0)
frozen_accuracy = float(history2.history["val_accuracy"][-1])
### END SOLUTION
print(f"tulips vs daisies, base frozen: validation accuracy {frozen_accuracy:.3f}")

# %% tags=["check"]
low = 0.7 if QUICK else 0.9
assert sum(int(np.prod(w.shape)) for w in base2.trainable_weights) == 0, "the base should have no trainable weight"
assert low <= frozen_accuracy <= 1.0, f"validation accuracy {frozen_accuracy:.3f} is below {low}"
print(f"correct: {frozen_accuracy:.3f} with the ImageNet features alone")
