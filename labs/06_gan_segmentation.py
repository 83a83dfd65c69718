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
# # Lab 6: left-ventricle segmentation by a transfer-learning GAN
#
# **Book section:** 12.5.2 (基于迁移学习的对抗生成网络实现医学图像分割, eq. 22-24 and the Dice,
# Jaccard and sensitivity formulas): a 128 x 128 region of interest of each cardiac MRI frame, a
# segmentation network whose encoder is a pretrained ImageNet classifier (TLBSN, figure 10), released
# block by block (figure 11), a multi-scale discriminator (figure 9), and the loss of eq. 24.
#
# **Data:** the Sunnybrook Cardiac Data (MICCAI 2009 LV challenge): 526 training frames of 30
# patients, 279 test frames of 15 other patients, with expert endocardium masks (the book's own
# Toronto data set is not public). **Library:** `segmentation.data`, `segmentation.roi`,
# `segmentation.networks`, `segmentation.discriminator`, `segmentation.losses`,
# `segmentation.metrics`. The book's encoder is VGG16; this lab uses MobileNetV2 with the ImageNet
# file of `../shared/weights/` (VGG16's file is not available on the course machines).
# **Runtime:** both settings' measured times are in labs/README.md.

# %%
# Setup: the repository root on sys.path (the notebook runs in labs/), then every import of the lab.
import os
import sys
import time
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "pyproject.toml").is_file() and (p / "common").is_dir())
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# %matplotlib inline
import keras
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

from segmentation import losses
from segmentation.data import load_pairs, split_patients
from segmentation.discriminator import build_discriminator
from segmentation.metrics import overlap_scores
from segmentation.networks import build_tlbsn, encoder_blocks, set_trainable_depth
from segmentation.roi import CropBox, segment_frames, to_network_input

# %% tags=["parameters"]
# Parameters (papermill style): LABS_QUICK=1 is the CI setting, tiny and fast.
QUICK = os.environ.get("LABS_QUICK", "0") == "1"
SHARED = Path(os.environ.get("LABS_SHARED", ROOT.parent / "shared"))  # holds data/ and weights/
DATA_DIR = SHARED / "data" / "sunnybrook_lv"
WEIGHTS_FILE = SHARED / "weights" / "mobilenet_v2_1.0_224_no_top.h5"
WEIGHTS = str(WEIGHTS_FILE) if WEIGHTS_FILE.is_file() else "imagenet"  # a path, "imagenet" (download) or "none"
BACKBONE = "mobilenet_v2"
ROI_SIZE = 128                          # the book's window
IMAGE_SIZE = 64 if QUICK else 128       # the network's input (the quick setting halves the window)
FIT_FRAMES = 60 if QUICK else None      # training frames used (None: all of the fit patients)
VALIDATION_PATIENTS = 2 if QUICK else 6
EPOCHS = 6 if QUICK else 20
RELEASE_AFTER = 3 if QUICK else 8       # epochs with a frozen encoder, then every block trains
BATCH_SIZE = 10                         # the book's batch size
LEARNING_RATE = 2e-4                    # the book's: "the learning rate must be small", 0.0002, Adam
BETA = 100.0                            # eq. 24's weight of the pixel loss
keras.utils.set_random_seed(0)
print(f"quick setting: {QUICK}; data: {DATA_DIR}; weights: {WEIGHTS}")

# %% [markdown]
# ## 1. The frames, the patients, the region of interest
#
# Slices of one patient look alike, so validation holds out whole patients (from the training folder;
# `test/` is never used for a choice). The book cuts a 128 x 128 window around the ventricle; placing
# it on each frame's *own* mask would give the answer away, so the window is one fixed box, fitted on
# the training masks only.

# %%
frames = load_pairs(DATA_DIR / "train", "training folder")
fit_rows, validation_rows = split_patients(frames.patients, VALIDATION_PATIENTS, seed=0)
if FIT_FRAMES is not None:
    fit_rows = np.random.default_rng(0).choice(fit_rows, FIT_FRAMES, replace=False)
fit, validation = frames.subset(fit_rows), frames.subset(validation_rows)
box = CropBox.fit(fit.masks, ROI_SIZE)
print(f"{len(fit)} fit frames, {len(validation)} validation frames of {len(set(validation.patients))} other patients")
print(f"region of interest: rows {box.top}..{box.top + box.size}, columns {box.left}..{box.left + box.size}; "
      f"it holds {box.holds(validation.masks).mean():.0%} of the validation ventricles whole")

figure, axes = plt.subplots(1, 3, figsize=(10, 3.4))
axes[0].imshow(fit.images[0], cmap="gray")
axes[0].add_patch(plt.Rectangle((box.left, box.top), box.size, box.size, fill=False, color="yellow"))
axes[0].set_title("frame and window")
axes[1].imshow(box.crop(fit.images[:1])[0], cmap="gray")
axes[1].set_title("the 128 x 128 window")
axes[2].imshow(box.crop(fit.masks[:1])[0], cmap="gray")
axes[2].set_title("expert mask")
for axis in axes:
    axis.axis("off")
plt.show()

# %% [markdown]
# ## 2. Generator and discriminator
#
# The generator $G$ (TLBSN) is an encoder-decoder: the pretrained MobileNetV2 base, frozen at first,
# and a decoder that upsamples through skip connections to a per-pixel ventricle probability. The
# discriminator $D$ judges (image, segmentation) pairs, the expert's (real) or $G$'s (generated), at
# three scales. The book's value function (numbered a second eq. 22, errata [E12](../docs/textbook-errata.md#E12)), with $D$
# reading pairs:
#
# $$\min_G \max_D V(G, D) = \mathbb{E}_{(x, y)}\big[\log D(x, y)\big] + \mathbb{E}_{x}\big[\log\big(1 - D(x, G(x))\big)\big]$$

# %%
generator, base = build_tlbsn(BACKBONE, WEIGHTS, IMAGE_SIZE)
discriminator = build_discriminator(IMAGE_SIZE, scales=3)
print(f"generator {generator.count_params():,} weights ({base.count_params():,} in the encoder), "
      f"discriminator {discriminator.count_params():,}; encoder blocks: {encoder_blocks(BACKBONE)}")

# %% [markdown]
# ## 3. The loss of eq. 23-24, one training step
#
# The segmentation term of eq. 23 is the mean **absolute** error per image (the book calls it "L1
# mean squared error": it is L1, not MSE, and its $\frac{1}{N}\sum_n \|F(x_i) - Y_i\|$ mixes the indices
# $n$ and $i$; errata [E13](../docs/textbook-errata.md#E13)):
#
# $$L_{mae}(F(x), y) = \frac{1}{N}\sum_{i=1}^{N} \big| F(x)_i - y_i \big| \qquad \text{(eq. 23, over the } N \text{ pixels)}$$
#
# $$\min_G \max_D\ V(G, D) + \beta\, L_{pixel}(G(x), y) \qquad \text{(eq. 24)}$$
#
# This lab's $L_{pixel}$ is eq. 23's L1 plus the soft Dice loss $1 - \frac{2\sum p y + 1}{\sum p + \sum y + 1}$:
# the ventricle covers a few per cent of the window, and L1 alone is dominated by the background.
# $G$ minimises $-\log D(x, G(x))$ (the non-saturating form of $\log(1 - D)$, same fixed point).

# %%
def pixel_loss(masks, probabilities):
    return losses.l1_loss(masks, probabilities) + losses.dice_loss(masks, probabilities)


def make_step(generator_optimizer, discriminator_optimizer):
    """One step of eq. 24: D and G each take one Adam step (compiled anew when the trainable set changes)."""
    @tf.function
    def step(images, masks):
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            probabilities = generator(images, training=True)
            real = discriminator([images, masks], training=True)
            fake = discriminator([images, probabilities], training=True)
            d_loss = tf.reduce_mean(losses.discriminator_loss(real, fake)[0])
            adversarial = tf.reduce_mean(losses.generator_adversarial_loss(fake))
            pixel = tf.reduce_mean(pixel_loss(masks, probabilities))
            g_loss = adversarial + BETA * pixel
        g_variables, d_variables = generator.trainable_variables, discriminator.trainable_variables
        generator_optimizer.apply_gradients(zip(g_tape.gradient(g_loss, g_variables), g_variables, strict=False))
        discriminator_optimizer.apply_gradients(zip(d_tape.gradient(d_loss, d_variables), d_variables, strict=False))
        return pixel, adversarial, d_loss

    return step


def windows_and_masks(pairs):
    """Network inputs (n, size, size, 3) in 0..255 and masks (n, size, size, 1) of the fixed window."""
    images = to_network_input(box.crop(pairs.images), IMAGE_SIZE)
    masks = tf.image.resize(box.crop(pairs.masks)[..., None].astype("float32"), (IMAGE_SIZE, IMAGE_SIZE))
    return images, tf.cast(masks >= 0.5, tf.float32)


x_fit, y_fit = windows_and_masks(fit)
print(f"windows {tuple(x_fit.shape)}, masks {tuple(y_fit.shape)}; ventricle share {float(tf.reduce_mean(y_fit)):.1%}")

# %% [markdown]
# ## 4. Training: frozen encoder, then every block released (figure 11)
#
# The book fine-tunes layer by layer and keeps the depth that validates best; this lab runs two phases:
# `RELEASE_AFTER` epochs with the encoder frozen (only the decoder learns), then the whole encoder
# released (its BatchNorm layers keep ImageNet's statistics). Validation Dice after each epoch is
# measured on full frames: crop, segment, paste back.

# %%
set_trainable_depth(base, BACKBONE, encoder_blocks(BACKBONE))   # build the optimizers on every variable
generator_optimizer, discriminator_optimizer = keras.optimizers.Adam(LEARNING_RATE), keras.optimizers.Adam(LEARNING_RATE)
generator_optimizer.build(generator.trainable_variables)
discriminator_optimizer.build(discriminator.trainable_variables)
set_trainable_depth(base, BACKBONE, 0)
step = make_step(generator_optimizer, discriminator_optimizer)

log = []
start = time.perf_counter()
rng = np.random.default_rng(0)
for epoch in range(1, EPOCHS + 1):
    if epoch == RELEASE_AFTER + 1:
        set_trainable_depth(base, BACKBONE, encoder_blocks(BACKBONE))
        step = make_step(generator_optimizer, discriminator_optimizer)
    order = rng.permutation(len(x_fit))
    values = [step(tf.gather(x_fit, batch), tf.gather(y_fit, batch)) for batch in
              np.array_split(order, len(order) // BATCH_SIZE)]
    pixel, adversarial, d_loss = np.mean(np.array(values, dtype=float), axis=0)
    probabilities = segment_frames(generator, box, validation.images)
    dice = float(overlap_scores(probabilities >= 0.5, validation.masks)["dice"].mean())
    log.append((epoch, pixel, adversarial, d_loss, dice))
    print(f"epoch {epoch:2d}: pixel loss {pixel:.3f}, adversarial {adversarial:.3f}, D loss {d_loss:.3f}, "
          f"validation Dice {dice:.3f}")
print(f"{time.perf_counter() - start:.0f} s")

log = np.array(log)
plt.plot(log[:, 0], log[:, 4], marker="o")
plt.axvline(RELEASE_AFTER + 0.5, color="grey", linestyle="--", label="encoder released")
plt.xlabel("epoch")
plt.ylabel("validation Dice")
plt.legend()
plt.show()

# %% [markdown]
# ## 5. Dice, Jaccard, sensitivity
#
# With $X$ the predicted ventricle and $Y$ the expert's:
#
# $$\mathrm{Dice} = \frac{2|X \cap Y|}{|X| + |Y|}, \qquad J = \frac{|X \cap Y|}{|X \cup Y|}, \qquad
# \mathrm{Sensitivity} = \frac{|X \cap Y|}{|Y|}$$
#
# The book prints sensitivity as $|X \cap Y| / |X|$ with $X$ the algorithm's segmentation: that ratio is
# the *precision* (exercise 2; errata [E14](../docs/textbook-errata.md#E14)). Book's Table 3 (its own data, endocardium): GAN Dice 0.9399.

# %%
predicted = probabilities >= 0.5
scores = overlap_scores(predicted, validation.masks)
print({name: round(float(values.mean()), 4) for name, values in scores.items()})
assert scores["dice"].mean() >= (0.4 if QUICK else 0.8), "the network did not learn to find the ventricle"

figure, axes = plt.subplots(2, 4, figsize=(11, 5.6))
for column, index in enumerate(np.linspace(0, len(validation) - 1, 4).astype(int)):
    window = box.crop(validation.images[index:index + 1])[0]
    axes[0, column].imshow(window, cmap="gray")
    axes[0, column].contour(box.crop(validation.masks[index:index + 1])[0], levels=[0.5], colors="lime")
    axes[0, column].set_title(f"expert, Dice {scores['dice'][index]:.2f}", fontsize=9)
    axes[1, column].imshow(window, cmap="gray")
    axes[1, column].contour(box.crop(predicted[index:index + 1])[0], levels=[0.5], colors="red")
    axes[1, column].set_title("prediction", fontsize=9)
for axis in axes.flat:
    axis.axis("off")
plt.show()

# %% [markdown]
# ## Exercises
#
# Each exercise is followed by a check cell: run it after your answer; it says whether the answer holds.
# (The cells between `### BEGIN SOLUTION` and `### END SOLUTION` hold a reference answer: a teacher
# removes them before handing the lab out, see labs/README.md.)
#
# ### Exercise 1: Jaccard from Dice
#
# Show that for every image $J = \frac{D}{2 - D}$ (hint: $|X \cup Y| = |X| + |Y| - |X \cap Y|$).
# Compute `jaccard_from_dice` from `scores["dice"]` with this formula and compare it with
# `scores["jaccard"]`. So why does Table 3 report both?

# %%
### BEGIN SOLUTION
jaccard_from_dice = scores["dice"] / (2 - scores["dice"])
### END SOLUTION

# %% tags=["check"]
assert np.allclose(jaccard_from_dice, scores["jaccard"]), "J = D / (2 - D) should hold image by image"
print(f"correct: J = D / (2 - D) on all {len(jaccard_from_dice)} frames; a mean of J is not J of the mean "
      f"Dice though: {scores['jaccard'].mean():.4f} against {scores['dice'].mean() / (2 - scores['dice'].mean()):.4f}")

# %% [markdown]
# ### Exercise 2: the book's "sensitivity"
#
# Compute, per validation frame, the book's formula $|X \cap Y| / |X|$ with $X$ = `predicted` and $Y$ =
# `validation.masks` (count pixels with numpy; give a frame with an empty prediction the value 0), and
# store it in `book_sensitivity`. Which of `scores`' four entries is it?  Store its name in `book_name`.

# %%
### BEGIN SOLUTION
x_area = predicted.reshape(len(predicted), -1).sum(axis=1)
overlap = (predicted & validation.masks.astype(bool)).reshape(len(predicted), -1).sum(axis=1)
book_sensitivity = np.where(x_area > 0, overlap / np.maximum(x_area, 1), 0.0)
book_name = "precision"
### END SOLUTION

# %% tags=["check"]
assert np.allclose(book_sensitivity, scores[book_name]), f"the book's formula is not scores[{book_name!r}]"
assert book_name == "precision", "|X n Y| / |X| is the share of the prediction that is ventricle: the precision"
print(f"correct: the book's 'sensitivity' is the precision ({scores['precision'].mean():.4f}); the recall "
      f"|X n Y| / |Y| is {scores['sensitivity'].mean():.4f}")

# %% [markdown]
# ### Exercise 3: how much trains at each depth (figure 11)
#
# `set_trainable_depth(base, BACKBONE, depth)` releases the top `depth` encoder blocks. For depth 0 to 5
# store the number of trainable weights of the **encoder** in a list `trainable_by_depth`. Then see why
# eq. 23 alone is a weak loss here: store in `l1_all_background` the L1 loss (eq. 23, mean over the fit
# windows `y_fit`) of a "prediction" that says background everywhere. Compare it with the ventricle's
# share of the window.

# %%
### BEGIN SOLUTION
trainable_by_depth = []
for depth in range(encoder_blocks(BACKBONE) + 1):
    set_trainable_depth(base, BACKBONE, depth)
    trainable_by_depth.append(sum(int(np.prod(w.shape)) for w in base.trainable_weights))
l1_all_background = float(tf.reduce_mean(losses.l1_loss(y_fit, tf.zeros_like(y_fit))))
### END SOLUTION
print([f"{count:,}" for count in trainable_by_depth], f"L1 of an all-background prediction: {l1_all_background:.4f}")

# %% tags=["check"]
assert trainable_by_depth[0] == 0, "depth 0 freezes the whole encoder"
assert all(a < b for a, b in zip(trainable_by_depth, trainable_by_depth[1:], strict=False)), "each block adds weights"
assert trainable_by_depth[-1] == sum(int(np.prod(w.shape)) for layer in base.layers[1:]
                                     if not isinstance(layer, keras.layers.BatchNormalization) for w in layer.weights)
assert np.isclose(l1_all_background, float(tf.reduce_mean(y_fit))), (
    "an all-zero prediction is off by 1 exactly on the ventricle's pixels: its L1 is the ventricle's share")
print(f"correct: from 0 to {trainable_by_depth[-1]:,} trainable encoder weights (the deepest block alone holds "
      f"{trainable_by_depth[1]:,}); predicting no ventricle at all already scores L1 = {l1_all_background:.3f}")
