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
# # Lab 7: which layers transfer? A digit model fine-tuned on new digits
#
# **Book section:** 12.4.1 (深度网络的可迁移性, Yosinski et al. 2014) with the example of blog post 003
# (a source model trained on MNIST, its layers copied into a target model).
#
# **Data:** scikit-learn's bundled 8x8 digits (`load_digits`, 1797 images) stand in for MNIST, which
# cannot be downloaded on the course machines. Task A (the source): digits 0-4; task B (the target):
# digits 5-9. **Library:** `digits.data` (the tasks and their fixed train / validation / test split),
# `digits.model` (the CNN, `copy_first`).
#
# The blog's code does not run as printed (no convolution in its "CNN", a weight copy by names that
# never match, scoring on the training images): [docs/textbook-errata.md](../docs/textbook-errata.md),
# E29-E31. The commands `python -m digits.transfer` and `python -m digits.transferability` run the full
# experiments (digits/README.md has their measured tables).

# %%
# Setup: the repository root on sys.path (the notebook runs in labs/), then every import of the lab.
import os
import sys
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "pyproject.toml").is_file() and (p / "digits").is_dir())
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# %matplotlib inline
import keras
import matplotlib.pyplot as plt
import numpy as np

from digits import data
from digits.model import LAYERS, build_cnn, compile_for_training, copy_first, trainable_count

# %% tags=["parameters"]
# Parameters (papermill style): LABS_QUICK=1 is the CI setting, tiny and fast.
QUICK = os.environ.get("LABS_QUICK", "0") == "1"
LIMIT = 60 if QUICK else None          # images per digit (None: all, about 180)
SOURCE_EPOCHS = 8 if QUICK else 30
TARGET_EPOCHS = 30 if QUICK else 60
DEPTH_EPOCHS = 6 if QUICK else 20      # the transferability networks
K = 10                                  # labelled target images per class
SEED = 0
print(f"quick setting: {QUICK}")

# %% [markdown]
# ## 1. Two tasks
#
# Transfer learning needs a source domain and task $\{\mathcal{D}_s, \mathcal{T}_s\}$ and a target
# $\{\mathcal{D}_t, \mathcal{T}_t\}$ (12.1). Here the images come from one distribution, but the tasks
# differ: the label spaces $\mathcal{Y}_s = \{0, \dots, 4\}$ and $\mathcal{Y}_t = \{5, \dots, 9\}$ share
# nothing. The target has only $K$ labelled images per class, the situation where transfer should pay.

# %%
x, y = data.load("digits")
A = data.task(x, y, range(0, 5), limit=LIMIT)
B = data.task(x, y, range(5, 10), limit=LIMIT)
print(f"A {A.classes}: {len(A.y_train)} training, {len(A.y_test)} test images; "
      f"B {B.classes}: {len(B.y_train)} training, {len(B.y_test)} test images")
figure, axes = plt.subplots(2, 5, figsize=(8, 3.4))
for axis, (task, code) in zip(axes.ravel(), [(A, c) for c in range(5)] + [(B, c) for c in range(5)], strict=False):
    axis.imshow(task.x_train[np.flatnonzero(task.y_train == code)[0], ..., 0], cmap="gray_r")
    axis.set_title(f"digit {task.classes[code]}")
    axis.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 2. The source model
#
# Seven weight layers: four $3 \times 3$ convolutions in two pooled stages, two dense layers, the head.
# Trained on A, scored on A's test split.

# %%
def test_accuracy(model, task):
    return float(np.mean(model.predict(task.x_test, verbose=0).argmax(axis=1) == task.y_test))


keras.utils.set_random_seed(SEED)
source = compile_for_training(build_cnn(x.shape[1:], 5, "source"), 1e-3)
history = source.fit(A.x_train, A.y_train, validation_data=(A.x_val, A.y_val), epochs=SOURCE_EPOCHS,
                     batch_size=32, verbose=0)
source_accuracy = test_accuracy(source, A)
plt.plot(history.history["accuracy"], label="train (A)")
plt.plot(history.history["val_accuracy"], "--", label="validation (A)")
plt.xlabel("epoch")
plt.legend()
plt.show()
source.summary()
print(f"source model, A's test accuracy: {source_accuracy:.3f}")

# %% [markdown]
# ## 3. The blog's transfer: copy `layers[:-1]`, new head, K labels per class
#
# 003 copies every layer but the head into the target model and trains it on the target. Frozen, only the
# new head learns; fine-tuned, everything does, starting from the source's weights. Against both: the same
# network from scratch. With $\theta$ the weights, frozen transfer minimises the target loss over the head
# alone, $\min_{\theta_\text{head}} \sum_i \ell(f(x_i; \theta_{1..6}^{A}, \theta_\text{head}), y_i)$.

# %%
xk, yk = B.few_shot(K, SEED)


def target_model(copy, frozen):
    keras.utils.set_random_seed(SEED)
    model = build_cnn(x.shape[1:], 5, "target")
    if copy:
        copy_first(source, model, copy, frozen=frozen)
    compile_for_training(model, 1e-3)
    model.fit(xk, yk, epochs=TARGET_EPOCHS, batch_size=32, verbose=0)
    return model


blog = {name: target_model(copy, frozen) for name, (copy, frozen) in
        {"scratch": (0, False), "frozen copy": (6, True), "fine-tuned copy": (6, False)}.items()}
blog_accuracy = {name: test_accuracy(model, B) for name, model in blog.items()}
plt.bar(list(blog_accuracy), list(blog_accuracy.values()), color=["grey", "tab:red", "lightcoral"])
plt.ylabel(f"B's test accuracy, K = {K}")
plt.show()
print(blog_accuracy)

# %% [markdown]
# ## 4. Transferability by depth (12.4.1)
#
# Yosinski et al. chop the network after layer $n$: AnB keeps A's first $n$ layers frozen and trains the
# rest, re-initialised, on B; BnB does the same from a network trained on B (a control); AnB+ and BnB+
# fine-tune the copied layers too. The chapter's conclusions: the first layers are general, the later ones
# specific, and fine-tuning recovers the loss.

# %%
keras.utils.set_random_seed(SEED)
base_B = compile_for_training(build_cnn(x.shape[1:], 5, "baseB"), 1e-3)
base_B.fit(B.x_train, B.y_train, epochs=DEPTH_EPOCHS, batch_size=64, verbose=0)
bases = {"A": source, "B": base_B}
DEPTHS = [2, 6] if QUICK else list(range(1, len(LAYERS)))
curves = {name: [] for name in ("BnB", "AnB", "AnB+")}
for n in DEPTHS:
    for name in curves:
        keras.utils.set_random_seed(SEED + n)
        model = copy_first(bases[name[0]], build_cnn(x.shape[1:], 5, "chopped"), n, frozen=not name.endswith("+"))
        compile_for_training(model, 1e-3).fit(B.x_train, B.y_train, epochs=DEPTH_EPOCHS, batch_size=64, verbose=0)
        curves[name].append(test_accuracy(model, B))
for name, values in curves.items():
    plt.plot(DEPTHS, values, marker="o", label=name)
plt.axhline(test_accuracy(base_B, B), color="black", linestyle=":", label="base B")
plt.xlabel("layer n")
plt.ylabel("B's test accuracy")
plt.legend()
plt.show()
print({name: [round(v, 3) for v in values] for name, values in curves.items()})

# %% [markdown]
# ## Exercises
#
# Each exercise is followed by a check cell: run it after your answer; it says whether the answer holds.
# (The cells between `### BEGIN SOLUTION` and `### END SOLUTION` hold a reference answer: a teacher
# removes them before handing the lab out, see labs/README.md.)
#
# ### Exercise 1: what does the blog's frozen copy train?
#
# Count the trainable weights of `blog["frozen copy"]` by hand from the architecture (the head is a dense
# layer from `fc6`'s 64 units to 5 classes) and store it in `head_weights`.

# %%
### BEGIN SOLUTION
head_weights = 64 * 5 + 5
### END SOLUTION

# %% tags=["check"]
assert head_weights == trainable_count(blog["frozen copy"]), (
    f"{head_weights} is not what the model trains: {trainable_count(blog['frozen copy'])} (weights and biases)")
print(f"correct: the frozen copy trains {head_weights} weights, the head alone")

# %% [markdown]
# ### Exercise 2: copy the general layers only
#
# 12.4.1 says the first layers are general. Build the target model with only the four convolutions copied
# and frozen (`target_model(copy=..., frozen=True)`), score it on B's test split and store the accuracy in
# `conv_only_accuracy`.

# %%
### BEGIN SOLUTION
conv_only_accuracy = test_accuracy(target_model(4, True), B)
### END SOLUTION
print(f"convolutions only, frozen: {conv_only_accuracy:.3f}; the blog's frozen copy: {blog_accuracy['frozen copy']:.3f}")

# %% tags=["check"]
assert conv_only_accuracy > blog_accuracy["frozen copy"] + 0.1, (
    "copying the convolutions alone should beat the blog's frozen copy by more than 0.1: did you copy 4 layers?")
print("correct: the dense layers of A were specific to 0-4; the convolutions transfer")

# %% [markdown]
# ### Exercise 3: where does AnB fall?
#
# From `curves`, find the depth in `DEPTHS` at which AnB is lowest and store it in `worst_depth`. Is it a
# shallow or a deep cut? Does fine-tuning (AnB+) recover there? Store the AnB+ accuracy at that depth in
# `recovered`.

# %%
### BEGIN SOLUTION
worst_depth = DEPTHS[int(np.argmin(curves["AnB"]))]
recovered = curves["AnB+"][DEPTHS.index(worst_depth)]
### END SOLUTION

# %% tags=["check"]
assert worst_depth == DEPTHS[int(np.argmin(curves["AnB"]))], (
    f"AnB is lowest at n = {DEPTHS[int(np.argmin(curves['AnB']))]}, not {worst_depth}")
assert recovered > min(curves["AnB"]) + 0.1, "AnB+ should recover most of the loss at the deepest cut"
print(f"correct: the deepest cut (n = {worst_depth}) transfers worst (AnB {min(curves['AnB']):.3f}); "
      f"fine-tuning recovers {recovered:.3f}")
