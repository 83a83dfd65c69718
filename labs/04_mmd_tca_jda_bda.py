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
# # Lab 4: MMD, TCA, JDA and BDA on Office-Caltech10
#
# **Book section:** 12.3 (最大均值差异法, eq. 4-20): the maximum mean discrepancy, the MMD matrix $M$,
# and the adaptation map $A$ of TCA / JDA / BDA as a generalised eigenproblem.
#
# **Data:** the Office-Caltech10 SURF features (800-bin bags of SURF words; Caltech, Amazon, Webcam,
# DSLR; 10 shared classes), the benchmark of the TCA/JDA/BDA papers.
# **Library:** `mmd.data` (loading and the published normalisation), `mmd.mmd2`, `mmd.TCA`,
# `mmd.JDA`, `mmd.BDA` (scikit-learn estimators).
#
# The chapter's text has a few formula errors; where this lab shows such an equation it shows the
# corrected form and says so (see [docs/textbook-errata.md](../docs/textbook-errata.md)).
#
# The quick setting (`LABS_QUICK=1`) runs one task, the full setting the papers' 12 tasks.
# **Runtime:** both settings' measured times are in labs/README.md.

# %%
# Setup: the repository root on sys.path (the notebook runs in labs/), then every import of the lab.
import os
import sys
import time
from pathlib import Path

ROOT = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "pyproject.toml").is_file() and (p / "mmd").is_dir())
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np

from mmd import BDA, JDA, TCA, mmd2
from mmd.data import DOMAINS, TASKS, load_domain
from mmd.distance import mmd_test

# %% tags=["parameters"]
# Parameters (papermill style): LABS_QUICK=1 is the CI setting, tiny and fast.
QUICK = os.environ.get("LABS_QUICK", "0") == "1"
SHARED = Path(os.environ.get("LABS_SHARED", ROOT.parent / "shared"))  # holds data/ and weights/
DATA_DIR = SHARED / "data" / "office_caltech10_surf"
TASK = "C->A"                                 # the lesson's task: Caltech (source) to Amazon (target)
ALL_TASKS = [TASK] if QUICK else list(TASKS)  # the table at the end: one task, or the papers' 12
PERMUTATIONS = 50 if QUICK else 500           # permutations of the MMD two-sample test
print(f"quick setting: {QUICK}; data: {DATA_DIR}")

# %% [markdown]
# ## 1. Two domains
#
# A domain is a feature space with a distribution over it, $\mathcal{D} = \{\mathcal{X}, P(\mathbf{x})\}$;
# here source and target share the feature space and the classes, but $P(\mathbf{x}_s) \neq P(\mathbf{x}_t)$
# (domain adaptation, 12.2.1). The published protocol divides each 800-count histogram by its sum (L1)
# and z-scores every feature *within its own domain*; `normalize="l1"` stops after the first step.

# %%
source, target = TASK.split("->")
Xs, ys = load_domain(DATA_DIR, source)                    # the published protocol: L1, then per-domain z-score
Xt, yt = load_domain(DATA_DIR, target)
Xs_l1, _ = load_domain(DATA_DIR, source, normalize="l1")  # L1 only: the shift is still visible
Xt_l1, _ = load_domain(DATA_DIR, target, normalize="l1")
print(f"{DOMAINS[source]}: {Xs.shape}, {DOMAINS[target]}: {Xt.shape}, classes {np.unique(ys)}")

figure, axes = plt.subplots(1, 2, figsize=(10, 3))
for axis, labels, name in ((axes[0], ys, DOMAINS[source]), (axes[1], yt, DOMAINS[target])):
    axis.bar(*np.unique(labels, return_counts=True))
    axis.set_title(f"{name}: images per class")
    axis.set_xlabel("class")
plt.show()

# %% [markdown]
# ## 2. The maximum mean discrepancy (eq. 4, eq. 7)
#
# The squared MMD between samples $a_1..a_{n_1}$ and $b_1..b_{n_2}$ is the distance between their
# **means** in the reproducing-kernel Hilbert space $\mathcal{H}$:
#
# $$\mathrm{MMD}^2(A, B) = \Big\| \frac{1}{n_1}\sum_{i=1}^{n_1} \phi(a_i) - \frac{1}{n_2}\sum_{j=1}^{n_2} \phi(b_j) \Big\|_{\mathcal{H}}^2
# = \overline{k(a, a')} + \overline{k(b, b')} - 2\,\overline{k(a, b)} .$$
#
# *Correction* (errata [E1](../docs/textbook-errata.md#E1)): the book's eq. 4 prints the sums without the factors $1/n_1$,
# $1/n_2$; without them the "distance" grows with the sample sizes (eq. 7 has them). With the linear kernel $k(x, y) = x^\top y$
# it is the squared distance between the two sample means.

# %%
linear = float(mmd2(Xs_l1, Xt_l1, kernel="linear"))
means = float(np.sum((Xs_l1.mean(axis=0) - Xt_l1.mean(axis=0)) ** 2))
print(f"linear-kernel MMD^2 = {linear:.6g}; squared distance of the means = {means:.6g}")
print(f"after the per-domain z-score both means are 0: linear MMD^2 = {float(mmd2(Xs, Xt, kernel='linear')):.2g}")

# RBF kernel (median heuristic): the shift between the domains against a split of one domain in two halves
rng = np.random.default_rng(0)
half = rng.permutation(len(Xs_l1))
between = mmd_test(Xs_l1, Xt_l1, n_permutations=PERMUTATIONS, seed=0)
within = mmd_test(Xs_l1[half[::2]], Xs_l1[half[1::2]], n_permutations=PERMUTATIONS, seed=0)
print(f"{TASK}: MMD^2 = {between.statistic:.5f} (p = {between.p_value:.3f}); "
      f"two halves of {DOMAINS[source]}: {within.statistic:.5f} (p = {within.p_value:.3f})")

# %% [markdown]
# ## 3. The MMD matrix (eq. 9-13)
#
# Stack the $n = N_s + N_t$ samples as the columns of $X$. The marginal MMD after a linear map $A$ is
# $\mathrm{tr}(A^\top X M_0 X^\top A)$ (eq. 9, 13), with
#
# $$(M_0)_{ij} = \begin{cases} \frac{1}{N_s^2} & x_i, x_j \in D_s \\ \frac{1}{N_t^2} & x_i, x_j \in D_t \\ -\frac{1}{N_s N_t} & \text{otherwise} \end{cases}
# \qquad M = (1-\mu) M_0 + \mu \sum_{c=1}^{C} M_c \quad \text{(eq. 10-12)}$$
#
# $M_c$ is the same construction restricted to the source samples of class $c$ and the target samples
# *pseudo-labelled* $c$ (the target has no labels: a classifier trained on the source guesses them).
# $M_0 = e_0 e_0^\top$ with $e_0 = [\frac{1}{N_s}, \dots, -\frac{1}{N_t}, \dots]$; the picture shows its
# four blocks on a small sample.

# %%
small_s, small_t = 6, 4
e0 = np.r_[np.full(small_s, 1 / small_s), np.full(small_t, -1 / small_t)]
M0_small = np.outer(e0, e0)
plt.imshow(M0_small, cmap="coolwarm")
plt.colorbar()
plt.title(f"M0 for Ns = {small_s}, Nt = {small_t} (eq. 11)")
plt.show()

# %% [markdown]
# ## 4. TCA, JDA, BDA: the eigenproblem of eq. 20
#
# Minimise the MMD while keeping the scatter $X H X^\top$, $H = I - \frac{1}{n}\mathbf{1}\mathbf{1}^\top$
# (eq. 15), of the mapped data:
#
# $$\min_A \ \mathrm{tr}(A^\top X M X^\top A) + \lambda \|A\|_F^2 \quad \text{s.t.} \quad A^\top X H X^\top A = I \qquad \text{(eq. 18)}$$
#
# The Lagrangian $L = \mathrm{tr}\big(A^\top (X M X^\top + \lambda I) A\big) + \mathrm{tr}\big((I - A^\top X H X^\top A)\Phi\big)$
# (eq. 19, corrected, errata [E9](../docs/textbook-errata.md#E9): the book prints $XAX^\top$) is stationary where
#
# $$(X M X^\top + \lambda I) A = X H X^\top A \Phi \qquad \text{(eq. 20)},$$
#
# a generalised eigenproblem: $A$ holds the $k$ eigenvectors with the **smallest** eigenvalues (the book's
# 12.3.4 says "the first m", errata [E10](../docs/textbook-errata.md#E10); on eq. 13-16 see [E4](../docs/textbook-errata.md#E4), [E6](../docs/textbook-errata.md#E6), [E7](../docs/textbook-errata.md#E7)).
# TCA uses $\mu = 0$ (marginal only, one solve); JDA $\mu = 0.5$ with $T$ rounds of pseudo labels;
# BDA any $\mu \in [0, 1]$. The papers' settings (the estimators' defaults): the primal problem,
# $k = 100$, $\lambda = 1$, $T = 10$, then a 1-nearest-neighbour classifier on the mapped features.

# %%
def nearest_neighbour_accuracy(Xs, ys, Xt, yt):
    """The baseline: 1-NN on the features as they are."""
    from sklearn.neighbors import KNeighborsClassifier

    return float(np.mean(KNeighborsClassifier(1).fit(Xs, ys).predict(Xt) == yt))


start = time.perf_counter()
tca = TCA().fit(Xs, ys, Xt)
jda = JDA().fit(Xs, ys, Xt, yt=yt)            # yt only records each iteration's accuracy, never fits
results = {
    "1-NN": nearest_neighbour_accuracy(Xs, ys, Xt, yt),
    "TCA": float(np.mean(tca.predict(Xt) == yt)),
    "JDA": float(np.mean(jda.predict(Xt) == yt)),
}
print({name: round(value, 4) for name, value in results.items()}, f"({time.perf_counter() - start:.1f} s)")

plt.plot(range(1, len(jda.accuracies_) + 1), jda.accuracies_, marker="o", label="JDA")
plt.axhline(results["TCA"], color="grey", linestyle="--", label="TCA")
plt.axhline(results["1-NN"], color="black", linestyle=":", label="1-NN, no adaptation")
plt.xlabel("iteration (pseudo labels refined)")
plt.ylabel(f"target accuracy, {TASK}")
plt.legend()
plt.show()

# %% [markdown]
# The adapted features are closer: the RBF-kernel MMD between the mapped source and target (TCA fitted
# on the L1 features, where the shift is visible) against the same measure before the map.

# %%
tca_l1 = TCA().fit(Xs_l1, ys, Xt_l1)
before = float(mmd2(Xs_l1, Xt_l1))
after = float(mmd2(tca_l1.transform(Xs_l1), tca_l1.transform(Xt_l1)))
print(f"MMD^2 before TCA: {before:.5f}; after: {after:.5f} (each with its own median-heuristic bandwidth)")

# %% [markdown]
# ## 5. The table over tasks
#
# The quick setting runs the lesson's task only; the full setting the papers' 12 tasks (about half a
# minute). The JDA paper's averages: 1-NN 31.37 %, TCA 43.61 %, JDA 46.31 %.

# %%
rows = []
start = time.perf_counter()
for task in ALL_TASKS:
    s, t = task.split("->")
    (Xa, ya), (Xb, yb) = load_domain(DATA_DIR, s), load_domain(DATA_DIR, t)
    rows.append((task, nearest_neighbour_accuracy(Xa, ya, Xb, yb),
                 float(np.mean(TCA().fit(Xa, ya, Xb).predict(Xb) == yb)),
                 float(np.mean(JDA().fit(Xa, ya, Xb).predict(Xb) == yb))))
print(f"{'task':6} {'1-NN':>7} {'TCA':>7} {'JDA':>7}")
for task, *accuracies in rows:
    print(f"{task:6} " + " ".join(f"{100 * a:7.2f}" for a in accuracies))
average = np.mean([row[1:] for row in rows], axis=0)
print(f"{'mean':6} " + " ".join(f"{100 * a:7.2f}" for a in average), f"({time.perf_counter() - start:.1f} s)")

# %% [markdown]
# ## Exercises
#
# Each exercise is followed by a check cell: run it after your answer; it says whether the answer holds.
# (The cells between `### BEGIN SOLUTION` and `### END SOLUTION` hold a reference answer: a teacher
# removes them before handing the lab out, see labs/README.md.)
#
# ### Exercise 1: eq. 13 by hand
#
# Build the $n \times n$ matrix $M_0$ of eq. 11 for the L1-normalised task (`Xs_l1`, `Xt_l1`), and
# compute $\mathrm{tr}(X M_0 X^\top)$ with the samples as the columns of $X$ (in numpy the samples are
# rows, so it is `np.trace(X.T @ M0 @ X)`). Eq. 13 says it equals the squared distance between the two
# means, i.e. `mmd2(..., kernel="linear")`. Store it in `trace_M0`.

# %%
### BEGIN SOLUTION
X_all = np.vstack([Xs_l1, Xt_l1])
e = np.r_[np.full(len(Xs_l1), 1 / len(Xs_l1)), np.full(len(Xt_l1), -1 / len(Xt_l1))]
M0 = np.outer(e, e)
trace_M0 = float(np.trace(X_all.T @ M0 @ X_all))
### END SOLUTION

# %% tags=["check"]
expected = float(mmd2(Xs_l1, Xt_l1, kernel="linear"))
assert np.isclose(trace_M0, expected, rtol=1e-6), (
    f"tr(X M0 X^T) = {trace_M0:.6g}, but the linear MMD^2 is {expected:.6g}: check the signs and the "
    "1/Ns^2, 1/Nt^2, -1/(Ns Nt) blocks of M0")
print(f"correct: tr(X M0 X^T) = {trace_M0:.6g} = the linear MMD^2 (eq. 13)")

# %% [markdown]
# ### Exercise 2: change $\mu$ (BDA)
#
# Fit `BDA(mu=mu)` on the lesson's task for $\mu \in \{0, 0.25, 0.5, 0.75, 1\}$ and store the target
# accuracies in a dict `bda_accuracy` (keys: the $\mu$ values). Which $\mu$ gives exactly JDA's accuracy,
# and why? (The implementation follows the public code: $M = (1-\mu) C M_0 + \mu \sum_c M_c$, scaled to
# unit Frobenius norm.) Store that value in `mu_like_jda`. Note: choosing $\mu$ by these accuracies
# would be tuning on the target's labels, which an unsupervised method may not read.

# %%
### BEGIN SOLUTION
bda_accuracy = {mu: float(np.mean(BDA(mu=mu).fit(Xs, ys, Xt).predict(Xt) == yt)) for mu in (0, 0.25, 0.5, 0.75, 1)}
mu_like_jda = 0.5
### END SOLUTION
print(bda_accuracy)

# %% tags=["check"]
assert set(bda_accuracy) == {0, 0.25, 0.5, 0.75, 1}, "give the accuracy for each of the five values of mu"
assert mu_like_jda == 0.5 and bda_accuracy[mu_like_jda] == results["JDA"], (
    f"BDA(mu={mu_like_jda}) gives {bda_accuracy.get(mu_like_jda)}, JDA {results['JDA']}: which mu is eq. 10's JDA?")
assert all(0.2 <= value <= 0.6 for value in bda_accuracy.values()), (
    f"on {TASK} every mu should land between 20 % and 60 %: {bda_accuracy}")
print(f"correct: mu = 0.5 is JDA ({100 * results['JDA']:.2f} %); the curve over mu is flat: "
      f"{min(bda_accuracy.values()):.3f}..{max(bda_accuracy.values()):.3f}")

# %% [markdown]
# ### Exercise 3: eq. 20 holds for the fitted $A$
#
# Fit `TCA(n_components=20)` on the lesson's task. The estimator scales every sample to unit L2 norm
# before the map and uses $M = M_0 / \|M_0\|_F$ and $\lambda = 1$. Rebuild $X M X^\top + \lambda I$ and
# $X H X^\top$ (`H = I - 1/n`) from the unit-norm samples and compute the relative residual
# $\|(X M X^\top + \lambda I) A - X H X^\top A \Phi\| / \|(X M X^\top + \lambda I) A\|$ with
# `A = tca20.components_` and `Phi = np.diag(tca20.eigenvalues_)`. Store it in `residual`.
# Then fit with $\lambda = 10$: are the eigenvalues $\Phi$ larger or smaller? Store `"larger"` or
# `"smaller"` in `lambda_effect` (hint: multiply eq. 20 by $a^\top$ on the left).

# %%
### BEGIN SOLUTION
tca20 = TCA(n_components=20).fit(Xs, ys, Xt)
P = np.vstack([Xs, Xt])
P = P / np.linalg.norm(P, axis=1, keepdims=True)
n = len(P)
e = np.r_[np.full(len(Xs), 1 / len(Xs)), np.full(len(Xt), -1 / len(Xt))]
M = np.outer(e, e) / np.linalg.norm(np.outer(e, e))
left = P.T @ M @ P + np.eye(P.shape[1])
right = P.T @ (np.eye(n) - np.ones((n, n)) / n) @ P
A = tca20.components_
residual = float(np.linalg.norm(left @ A - right @ A @ np.diag(tca20.eigenvalues_)) / np.linalg.norm(left @ A))
eigenvalues_10 = TCA(n_components=20, lambda_=10).fit(Xs, ys, Xt).eigenvalues_
lambda_effect = "larger" if eigenvalues_10[0] > tca20.eigenvalues_[0] else "smaller"
### END SOLUTION
print(f"relative residual of eq. 20: {residual:.2e}")

# %% tags=["check"]
assert residual < 1e-6, (
    f"the residual is {residual:.2e}: check the unit-norm rows, M0 / ||M0||_F, lambda = 1 and the order A Phi")
larger = TCA(n_components=20, lambda_=10).fit(Xs, ys, Xt).eigenvalues_ > TCA(n_components=20).fit(Xs, ys, Xt).eigenvalues_
assert lambda_effect == ("larger" if larger.all() else "smaller"), (
    "not what the fits show: phi = a^T (X M X^T + lambda I) a / a^T X H X^T a for each column a")
print(f"correct: (X M X^T + lambda I) A = X H X^T A Phi holds to {residual:.1e}, "
      f"and a larger lambda gives {lambda_effect} eigenvalues")
