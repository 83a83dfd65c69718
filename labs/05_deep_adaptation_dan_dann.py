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
# # Lab 5: deep domain adaptation, DAN and DANN
#
# **Book section:** 12.4.3 (深度网络自适应, eq. 21) and 12.4.4 (深度对抗网络迁移, eq. 22): a network
# trained on a labelled source and an unlabelled target, with an adaptation loss on one layer: the
# multi-kernel MMD between the two domains' features (DAN), or a domain discriminator that the
# features learn to fool through a gradient reversal layer (DANN).
#
# **Data:** two flower collections with four flowers in common (daisy, dandelion, sunflower, tulip):
# `flower_photos` (the source, labelled) and `flower17` (the target: its labels are read only to score).
# Different photographers, framing and backgrounds: a real domain shift. **Library:**
# `adaptation.dan.MultipleKernelMMD` ($\ell_A$ of eq. 21), `adaptation.dann.DomainAdversarialLoss`
# ($\ell_d$ of eq. 22), `adaptation.layers.GradientReversal`, `mmd.mmd2`, and `common.features` for the
# frozen MobileNetV2 features (ImageNet file of `../shared/weights/`).
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
import tensorflow as tf

from adaptation.dan import MultipleKernelMMD
from adaptation.dann import DomainAdversarialLoss
from adaptation.layers import GradientReversal
from common.backbones import build_model, weights_fingerprint
from common.data import load_image_folder
from common.features import FeatureCache, cache_namespace, extract_features
from mmd import mmd2

# %% tags=["parameters"]
# Parameters (papermill style): LABS_QUICK=1 is the CI setting, tiny and fast.
QUICK = os.environ.get("LABS_QUICK", "0") == "1"
SHARED = Path(os.environ.get("LABS_SHARED", ROOT.parent / "shared"))  # holds data/ and weights/
DATA = SHARED / "data"
WEIGHTS_FILE = SHARED / "weights" / "mobilenet_v2_1.0_224_no_top.h5"
WEIGHTS = str(WEIGHTS_FILE) if WEIGHTS_FILE.is_file() else "imagenet"  # a path, "imagenet" (download) or "none"
BACKBONE = "mobilenet_v2"
IMAGE_SIZE = 96 if QUICK else 224
PER_CLASS = 24 if QUICK else None       # photos per class in each domain (None: all; flower17 has 80)
STEPS = 300 if QUICK else 2000          # training steps, a source and a target batch each
BATCH = 32                              # per domain
WORK_DIR = Path(tempfile.mkdtemp()) if QUICK else ROOT / "runs" / "labs" / "adaptation"
# the four shared flowers: flower_photos folder, flower17 class (image k is class (k - 1) // 80)
FLOWERS = {"daisy": ("daisy", 10), "dandelion": ("dandelion", 12), "sunflower": ("sunflowers", 9),
           "tulip": ("tulips", 7)}
print(f"quick setting: {QUICK}; data: {DATA}; weights: {WEIGHTS}")

# %% [markdown]
# ## 1. Source and target, and their frozen features
#
# Both collections go through the same frozen base and global average pooling once (the feature
# cache); only the new layers train below. Source $D_s = \{(x_i, y_i)\}_{i=1}^{n}$, target
# $D_t = \{x_j\}_{j=n+1}^{n+m}$ without labels, same classes, $P(x_s) \neq P(x_t)$ (12.2.1).

# %%
photos = load_image_folder(DATA / "flower_photos", class_names=[folder for folder, _ in FLOWERS.values()])
source_paths, source_labels = [], []
for label in range(len(FLOWERS)):
    members = np.flatnonzero(photos.labels == label)[:PER_CLASS]
    source_paths += [photos.paths[i] for i in members]
    source_labels += [label] * len(members)
target_paths, target_labels = [], []
for label, (_, number) in enumerate(FLOWERS.values()):
    files = [DATA / "flower17" / "jpg" / f"image_{80 * number + k:04d}.jpg" for k in range(1, 81)][:PER_CLASS]
    target_paths += [str(path) for path in files]
    target_labels += [label] * len(files)
source_labels, target_labels = np.array(source_labels), np.array(target_labels)

extractor, base = build_model(BACKBONE, WEIGHTS, IMAGE_SIZE, pooling="avg")
cache = FeatureCache(WORK_DIR / "features", cache_namespace(BACKBONE, weights_fingerprint(base), IMAGE_SIZE, "avg"))
source_run = extract_features(extractor, source_paths, cache, IMAGE_SIZE, progress=False)
target_run = extract_features(extractor, target_paths, cache, IMAGE_SIZE, progress=False)
xs, ys = source_run.features.astype("float32"), source_labels[source_run.kept]
xt, yt = target_run.features.astype("float32"), target_labels[target_run.kept]
print(f"source {xs.shape}, target {xt.shape}; {source_run.computed + target_run.computed} features computed in "
      f"{source_run.seconds + target_run.seconds:.1f} s")
print(f"MMD^2 between the domains' backbone features (RBF, median heuristic): {float(mmd2(xs, xt)):.4f}")

# %% [markdown]
# ## 2. One network, three losses
#
# Features $f = $ bottleneck(backbone features) (Dense 256, BatchNorm, ReLU), then a linear classifier.
# The loss of eq. 21 (DAN):
#
# $$\ell = \ell_c(D_s, y_s) + \lambda\, \ell_A(D_s, D_t), \qquad
# \ell_A = \mathrm{MK\text{-}MMD}^2(f_s, f_t) = \Big\| \mathbb{E}_s\, \phi(f_s) - \mathbb{E}_t\, \phi(f_t) \Big\|^2_{\mathcal{H}_k},
# \quad k = \frac{1}{m}\sum_{u=1}^{m} e^{-\gamma_u \|x - y\|^2}$$
#
# and of eq. 22 (DANN), with a domain discriminator $G_d$ reading $f$ through the gradient reversal
# layer $R_\lambda$ (identity forward, $-\lambda$ times the gradient backward):
#
# $$\ell = \ell_c(D_s, y_s) + \ell_d\big(G_d(R_\lambda(f_s)), G_d(R_\lambda(f_t))\big), \qquad
# \lambda_p = \frac{2}{1 + e^{-10 p}} - 1$$
#
# so one minimisation trains $G_d$ to tell the domains apart and the features to make that impossible;
# $p \in [0, 1]$ is the training progress. The source-only baseline uses $\ell_c$ alone.

# %%
CLASSES = len(FLOWERS)
cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def dann_lambda(progress, maximum=1.0):
    """DANN's schedule: 0 at the start (the discriminator is still random), rising to the maximum."""
    return maximum * (2.0 / (1.0 + np.exp(-10.0 * progress)) - 1.0)


def train(method, lam=1.0, steps=STEPS, seed=0):
    """(bottleneck, classifier) trained by 'source-only', 'dan' or 'dann' on (xs, ys) and unlabelled xt."""
    keras.utils.set_random_seed(seed)
    bottleneck = keras.Sequential([keras.Input((xs.shape[1],)), keras.layers.Dense(256),
                                   keras.layers.BatchNormalization(), keras.layers.ReLU()], name="bottleneck")
    classifier = keras.Sequential([keras.Input((256,)), keras.layers.Dense(CLASSES)], name="classifier")
    parts = [bottleneck, classifier]
    if method == "dann":
        discriminator = keras.Sequential([keras.Input((256,)), keras.layers.Dense(1024, activation="relu"),
                                          keras.layers.Dropout(0.5), keras.layers.Dense(1024, activation="relu"),
                                          keras.layers.Dropout(0.5), keras.layers.Dense(1)], name="discriminator")
        adversarial = DomainAdversarialLoss(discriminator)
        parts.append(discriminator)
    discrepancy = MultipleKernelMMD()
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
    variables = [v for part in parts for v in part.trainable_variables]

    @tf.function
    def step(x_source, y_source, x_target, weight):
        with tf.GradientTape() as tape:
            if method == "source-only":
                loss = cross_entropy(y_source, classifier(bottleneck(x_source, training=True)))
                extra = tf.constant(0.0)
            else:  # both domains in one batch: the BatchNorm statistics are those of both
                features = bottleneck(tf.concat([x_source, x_target], axis=0), training=True)
                f_s, f_t = features[:BATCH], features[BATCH:]
                loss = cross_entropy(y_source, classifier(f_s, training=True))
                if method == "dan":
                    extra = discrepancy(f_s, f_t)
                    loss += weight * extra
                else:
                    extra, _ = adversarial(f_s, f_t, weight=weight, training=True)
                    loss += extra
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=False))
        return loss, extra

    rng = np.random.default_rng(seed)
    for number in range(steps):
        s, t = rng.choice(len(xs), BATCH), rng.choice(len(xt), BATCH)
        weight = dann_lambda(number / steps, lam) if method == "dann" else lam
        step(xs[s], ys[s], xt[t], tf.constant(weight, tf.float32))
    return bottleneck, classifier


def evaluate(bottleneck, classifier):
    """Target accuracy (labels read only here) and the MMD^2 between the domains' bottleneck features."""
    f_s, f_t = bottleneck(xs, training=False), bottleneck(xt, training=False)
    accuracy = float(np.mean(np.argmax(classifier(f_t), axis=1) == yt))
    return accuracy, float(mmd2(np.asarray(f_s, "float64"), np.asarray(f_t, "float64")))

# %% [markdown]
# ## 3. Source-only, DAN, DANN
#
# The same network, steps and optimizer (SGD, 0.01, momentum 0.9) for each; only the loss differs.
# Accuracy is on the whole target collection, whose labels are never used for training or choices.

# %%
results = {}
start = time.perf_counter()
for method in ("source-only", "dan", "dann"):
    results[method] = evaluate(*train(method, lam=1.0))
    print(f"{method:12s} target accuracy {results[method][0]:.3f}, bottleneck MMD^2 {results[method][1]:.4f}")
print(f"{time.perf_counter() - start:.0f} s")
assert all(accuracy > 0.5 for accuracy, _ in results.values()), "every method should beat chance (0.25) by far"

figure, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].bar(results.keys(), [accuracy for accuracy, _ in results.values()])
axes[0].set_ylabel("target accuracy")
axes[1].bar(results.keys(), [distance for _, distance in results.values()])
axes[1].set_ylabel("MMD$^2$ of the bottleneck features")
plt.show()

# %% [markdown]
# ## Exercises
#
# Each exercise is followed by a check cell: run it after your answer; it says whether the answer holds.
# (The cells between `### BEGIN SOLUTION` and `### END SOLUTION` hold a reference answer: a teacher
# removes them before handing the lab out, see labs/README.md.)
#
# ### Exercise 1: the gradient reversal layer
#
# Forward, $R_\lambda(x) = x$; backward, $\frac{\partial R_\lambda}{\partial x} = -\lambda I$. Take
# `x = tf.random.normal([4, 3])`, compute $y = \sum R_{0.5}(x)$ with `GradientReversal()(x, weight=0.5)`
# under a `tf.GradientTape`, and store the forward output in `reversed_forward` and the gradient
# $\partial y / \partial x$ in `reversed_gradient` (numpy arrays).

# %%
### BEGIN SOLUTION
x = tf.random.normal([4, 3])
with tf.GradientTape() as tape:
    tape.watch(x)
    output = GradientReversal()(x, weight=0.5)
    total = tf.reduce_sum(output)
reversed_forward, reversed_gradient = output.numpy(), tape.gradient(total, x).numpy()
### END SOLUTION

# %% tags=["check"]
assert np.allclose(reversed_forward, x.numpy()), "forward, the layer is the identity"
assert np.allclose(reversed_gradient, -0.5), f"the gradient should be -0.5 everywhere, not {reversed_gradient}"
print("correct: identity forward, -lambda backward: the features climb the discriminator's loss")

# %% [markdown]
# ### Exercise 2: change $\lambda$ in eq. 21
#
# Train DAN with $\lambda \in \{0, 1, 10\}$ (`train("dan", lam=...)`), evaluate each, and store the
# bottleneck MMD$^2$ in a dict `mmd_by_lambda` and the target accuracy in `accuracy_by_lambda` (keys:
# the three values). What does a larger weight on $\ell_A$ do to the distance between the domains?
# Does a smaller distance always mean a better target accuracy?

# %%
### BEGIN SOLUTION
mmd_by_lambda, accuracy_by_lambda = {}, {}
for lam in (0, 1, 10):
    accuracy_by_lambda[lam], mmd_by_lambda[lam] = evaluate(*train("dan", lam=lam))
### END SOLUTION
print({lam: round(value, 4) for lam, value in mmd_by_lambda.items()},
      {lam: round(value, 3) for lam, value in accuracy_by_lambda.items()})

# %% tags=["check"]
assert set(mmd_by_lambda) == {0, 1, 10} and set(accuracy_by_lambda) == {0, 1, 10}
assert mmd_by_lambda[10] < mmd_by_lambda[0], (
    f"with lambda = 10 the bottleneck MMD^2 ({mmd_by_lambda[10]:.4f}) should be below lambda = 0's "
    f"({mmd_by_lambda[0]:.4f}): l_A is what the weight pushes down")
assert all(0.25 < value <= 1 for value in accuracy_by_lambda.values()), accuracy_by_lambda
print(f"correct: MMD^2 {mmd_by_lambda[0]:.4f} (lambda 0) -> {mmd_by_lambda[10]:.4f} (lambda 10); target accuracy "
      f"{accuracy_by_lambda[0]:.3f} -> {accuracy_by_lambda[10]:.3f}")

# %% [markdown]
# ### Exercise 3: DANN's schedule
#
# Compute $\lambda_p$ for $p = 0, 0.1, 0.5, 1$ with a maximum of 1 *by hand from the formula* (not
# with `dann_lambda`), store them in a list `schedule`, and the first $p$ of the grid
# `np.linspace(0, 1, 101)` at which $\lambda_p \geq 0.9$ in `p_ninety`. Why does the reversed gradient
# start at zero?

# %%
### BEGIN SOLUTION
schedule = [2 / (1 + np.exp(-10 * p)) - 1 for p in (0, 0.1, 0.5, 1)]
grid = np.linspace(0, 1, 101)
p_ninety = float(grid[np.argmax(2 / (1 + np.exp(-10 * grid)) - 1 >= 0.9)])
### END SOLUTION
print(np.round(schedule, 4), p_ninety)

# %% tags=["check"]
assert np.allclose(schedule, [dann_lambda(p) for p in (0, 0.1, 0.5, 1)]), f"schedule {schedule}"
assert np.isclose(p_ninety, 0.3), f"lambda_p first reaches 0.9 at p = 0.3 (2 / (1 + e^-3) - 1 = 0.905), not {p_ninety}"
print("correct: 0 at the start, while the discriminator is still random and its gradient only noise; 0.905 at p = 0.3")
