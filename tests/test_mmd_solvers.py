"""TCA / JDA / BDA (mmd.solvers) checked against the equations of section 12.3."""
import os

import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from mmd.distance import mmd2
from mmd.solvers import BDA, JDA, TCA, mmd_factors, solve_eq20, unit_rows

DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                        "office_caltech10_surf")


def domains(seed=0, n_classes=3, ns=60, nt=50, d=8, shift=1.5):
    """Gaussian classes; the target is the source moved along a fixed direction."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((n_classes, d))
    ys = np.arange(ns) % n_classes
    yt = rng.integers(0, n_classes, nt)
    Xs = centres[ys] + rng.standard_normal((ns, d))
    Xt = centres[yt] + rng.standard_normal((nt, d)) + shift * np.linspace(1, 0, d)
    return Xs, ys, Xt, yt


def dense_M(ys, yt, n_classes, mu):
    """M of eq. 10-12 written entry by entry, the reference's C * M0 weighting."""
    ns, nt = len(ys), 0 if yt is None else len(yt)
    n = ns + nt
    M0 = np.zeros((n, n))
    M0[:ns, :ns] = 1 / ns ** 2
    M0[ns:, ns:] = 1 / nt ** 2
    M0[:ns, ns:] = M0[ns:, :ns] = -1 / (ns * nt)
    M = (1 - mu) * n_classes * M0
    if yt is not None:
        for c in range(n_classes):
            src = np.flatnonzero(ys == c)
            tgt = ns + np.flatnonzero(yt == c)
            if len(src) == 0 or len(tgt) == 0:
                continue
            Mc = np.zeros((n, n))
            Mc[np.ix_(src, src)] = 1 / len(src) ** 2
            Mc[np.ix_(tgt, tgt)] = 1 / len(tgt) ** 2
            Mc[np.ix_(src, tgt)] = -1 / (len(src) * len(tgt))
            Mc[np.ix_(tgt, src)] = -1 / (len(src) * len(tgt))
            M += mu * Mc
    return M


# ------------------------------------------------------------ building blocks

@pytest.mark.parametrize("mu", [0.0, 0.3, 0.5, 1.0])
def test_rank_one_factors_equal_the_dense_mmd_matrix(mu):
    rng = np.random.default_rng(1)
    ys = rng.integers(0, 4, 30)
    yt = rng.integers(0, 3, 20)           # class 3 has no pseudo-labelled target sample
    E, w, fro = mmd_factors(ys, yt, 4, mu)
    M = dense_M(ys, yt, 4, mu)
    assert fro == pytest.approx(np.linalg.norm(M, "fro"), rel=1e-12)
    np.testing.assert_allclose(E @ np.diag(w) @ E.T, M, atol=1e-15)
    assert E.shape[1] == (mu < 1) + (3 if mu > 0 else 0)   # empty class: no column
    assert np.all(np.isfinite(E))


def test_no_pseudo_labels_gives_the_marginal_term_only():
    E, w, fro = mmd_factors(np.array([0, 1, 1]), None, 2, 0.5, n_target=2)
    np.testing.assert_allclose(E[:, 0], [1 / 3, 1 / 3, 1 / 3, -1 / 2, -1 / 2])
    E, w, fro = mmd_factors(np.array([0, 1]), None, 2, 1.0, n_target=2)
    assert E.shape[1] == 0 and fro == 0.0  # mu = 1 and no labels: M = 0


@pytest.mark.parametrize("n", [40, 9])   # more samples than dimensions, and fewer (Gram path)
def test_eigensolution_satisfies_eq20_and_the_scatter_constraint(n):
    rng = np.random.default_rng(2)
    d, k, lam = 12, 5, 0.7
    X = unit_rows(tf.constant(rng.standard_normal((n, d)))).numpy()
    ys = np.arange(n // 2) % 2
    yt = rng.integers(0, 2, n - n // 2)
    E, w, fro = mmd_factors(ys, yt, 2, 0.5)
    M = dense_M(ys, yt, 2, 0.5) / fro
    H = np.eye(n) - np.ones((n, n)) / n
    S = X.T @ M @ X + lam * np.eye(d)      # X M X^T + lambda I (samples are rows here)
    B = X.T @ H @ X                        # X H X^T
    Xc = X - X.mean(0)
    phi, V = solve_eq20(X.T @ E, w / fro, lam, k, B=None if n < d else tf.constant(B),
                        Pc=tf.constant(Xc) if n < d else None)
    V = V.numpy()
    # eq. 20: S a = phi B a, to machine precision
    resid = np.linalg.norm(S @ V - (B @ V) * phi[None, :]) / np.linalg.norm(S @ V)
    assert resid < 1e-10
    assert np.all(np.diff(phi) >= 0) and np.allclose(np.linalg.norm(V, axis=0), 1)
    # they are the k smallest: compare with scipy's symmetric-definite solver
    nu = scipy.linalg.eigh(B, S, eigvals_only=True)[::-1][:k]
    np.testing.assert_allclose(1 / phi, nu, rtol=1e-9)
    # scatter constraint A^T X H X^T A = I once each column is rescaled
    A = V / np.sqrt(np.einsum("ij,ij->j", V, B @ V))[None, :]
    np.testing.assert_allclose(A.T @ B @ A, np.eye(k), atol=1e-9)


def test_fitted_tca_solves_eq20_built_from_the_equations():
    Xs, ys, Xt, _ = domains()
    tca = TCA(n_components=4, lambda_=0.5).fit(Xs, ys, Xt)
    X = unit_rows(tf.constant(np.vstack([Xs, Xt]))).numpy()
    n = X.shape[0]
    ns, nt = len(Xs), len(Xt)
    e0 = np.r_[np.full(ns, 1 / ns), np.full(nt, -1 / nt)]
    M = np.outer(e0, e0)
    M /= np.linalg.norm(M)
    H = np.eye(n) - np.ones((n, n)) / n
    S = X.T @ M @ X + 0.5 * np.eye(X.shape[1])
    B = X.T @ H @ X
    A, phi = tca.components_, tca.eigenvalues_
    assert np.linalg.norm(S @ A - (B @ A) * phi) / np.linalg.norm(S @ A) < 1e-10
    offdiag = A.T @ B @ A - np.diag(np.diag(A.T @ B @ A))
    assert np.abs(offdiag).max() < 1e-10


def test_tca_reduces_the_mmd_between_domains():
    Xs, ys, Xt, _ = domains(shift=4.0, d=10)
    raw = [unit_rows(tf.constant(X)).numpy() for X in (Xs, Xt)]
    tca = TCA(n_components=3).fit(Xs, ys, Xt)
    adapted = [tca.transform(Xs), tca.transform(Xt)]
    before = float(mmd2(*raw, kernel="linear"))
    after = float(mmd2(*adapted, kernel="linear"))
    assert after < 0.2 * before
    # a rbf view of the same thing
    assert float(mmd2(*adapted, gamma=1.0)) < float(mmd2(*raw, gamma=1.0))


# ----------------------------------------------------------------- estimators

def test_jda_adapts_and_records_its_iterations():
    Xs, ys, Xt, yt = domains(seed=3, shift=3.0)
    jda = JDA(n_components=5, n_iter=6).fit(Xs, ys, Xt, yt)
    assert len(jda.accuracies_) == jda.n_iter_ == 6 and 1 <= jda.n_eigensolves_ <= 6
    assert jda.accuracies_[-1] == pytest.approx(np.mean(jda.predict(Xt) == yt))
    np.testing.assert_array_equal(jda.predict(Xt), jda.pseudo_labels_)
    assert jda.score(Xt, yt) > 0.9
    Z = jda.fit_transform(Xs, ys, Xt=Xt)
    assert Z.shape == (len(Xs), 5) and np.allclose(np.linalg.norm(Z, axis=1), 1)


def test_skipping_repeated_labellings_changes_nothing():
    Xs, ys, Xt, yt = domains(seed=4, shift=2.5)
    fast = JDA(n_components=4, n_iter=8).fit(Xs, ys, Xt, yt)
    slow = JDA(n_components=4, n_iter=8)
    slow._skip_repeats = False
    slow.fit(Xs, ys, Xt, yt)
    assert fast.n_eigensolves_ < slow.n_eigensolves_ == 8
    np.testing.assert_allclose(fast.components_, slow.components_, atol=1e-10)
    np.testing.assert_array_equal(fast.pseudo_labels_, slow.pseudo_labels_)
    assert fast.accuracies_ == slow.accuracies_
    assert fast.label_changes_ == slow.label_changes_


def test_bda_half_is_jda_and_mu_changes_the_solution():
    Xs, ys, Xt, _ = domains(seed=5)
    jda = JDA(n_components=4, n_iter=3).fit(Xs, ys, Xt)
    bda = BDA(n_components=4, n_iter=3, mu=0.5).fit(Xs, ys, Xt)
    np.testing.assert_allclose(bda.components_, jda.components_, atol=1e-12)
    other = BDA(n_components=4, n_iter=3, mu=0.9).fit(Xs, ys, Xt)
    assert not np.allclose(other.components_, jda.components_)
    tca = TCA(n_components=4).fit(Xs, ys, Xt)
    np.testing.assert_allclose(BDA(n_components=4, mu=0.0).fit(Xs, ys, Xt).components_,
                               tca.components_, atol=1e-12)


def test_labels_of_any_values_give_the_same_model():
    Xs, ys, Xt, _ = domains(seed=6)
    ref = JDA(n_components=4, n_iter=3).fit(Xs, ys, Xt)
    for mapping in (np.array(["cat", "dog", "bird"]), np.array([-7, 10, 3]),
                    np.array([1.0, 2.0, 30.0])):
        est = JDA(n_components=4, n_iter=3).fit(Xs, mapping[ys], Xt)
        np.testing.assert_allclose(est.components_, ref.components_, atol=1e-12)
        # codes follow sorted order, so map the reference through the sorted classes
        np.testing.assert_array_equal(est.pseudo_labels_,
                                      mapping[ref.pseudo_labels_])


def test_empty_pseudo_class_and_constant_features_give_no_nan():
    rng = np.random.default_rng(7)
    Xs, ys, Xt, _ = domains(seed=7, n_classes=4)
    Xt = Xt[:6]
    const = np.ones((len(Xs), 2)), np.ones((len(Xt), 2))
    Xs2 = np.hstack([Xs, const[0], np.zeros((len(Xs), 1))])
    Xt2 = np.hstack([Xt, const[1], np.zeros((len(Xt), 1))])
    est = JDA(n_components=3, n_iter=4).fit(Xs2, ys, Xt2)
    assert np.all(np.isfinite(est.components_)) and np.all(np.isfinite(est.eigenvalues_))
    assert np.all(np.isfinite(est.transform(Xt2)))
    # an all-zero sample stays zero instead of NaN
    assert np.all(np.isfinite(est.transform(np.zeros((2, Xs2.shape[1])))))
    # a target far from all but one class: the other pseudo classes are empty
    far = np.tile(Xs[ys == 0].mean(0), (5, 1)) + 0.01 * rng.standard_normal((5, Xs.shape[1]))
    est = JDA(n_components=3, n_iter=3).fit(Xs, ys, far)
    assert set(est.pseudo_labels_) == {0} and np.all(np.isfinite(est.components_))


@pytest.mark.parametrize("kernel, gamma", [("linear", 1.0), ("rbf", 0.5), ("rbf", "median")])
def test_kernelised_problems(kernel, gamma):
    Xs, ys, Xt, yt = domains(seed=8, ns=40, nt=30)
    est = JDA(n_components=6, kernel=kernel, gamma=gamma, n_iter=3).fit(Xs, ys, Xt, yt)
    assert est.components_.shape == (70, 6)
    Z = est.transform(Xt[:7])
    assert Z.shape == (7, 6) and np.all(np.isfinite(Z))
    assert est.score(Xt, yt) > 0.5


# --------------------------------------------------------------- sklearn API

def test_clone_get_set_params_pipeline_and_grid_search():
    est = BDA(n_components=7, mu=0.3, lambda_=2.0, classifier=LogisticRegression())
    twin = clone(est)
    assert twin.get_params()["mu"] == 0.3 and twin.get_params()["n_components"] == 7
    assert twin.set_params(mu=0.8).mu == 0.8 and est.mu == 0.3
    Xs, ys, Xt, yt = domains(seed=9, shift=2.0)
    pipe = Pipeline([("jda", JDA(n_components=4, n_iter=3)),
                     ("clf", LogisticRegression(max_iter=500))])
    pipe.fit(Xs, ys, jda__Xt=Xt)
    assert pipe.predict(Xt).shape == yt.shape and pipe.score(Xt, yt) > 0.8
    search = GridSearchCV(JDA(n_iter=2), {"n_components": [2, 4]}, cv=3)
    search.fit(Xs, ys, Xt=Xt)               # model selection on held-out source folds
    assert search.best_params_["n_components"] in (2, 4)
    with_clf = clone(est).fit(Xs, ys, Xt)
    assert with_clf.classifier is est.classifier or isinstance(with_clf.classifier,
                                                               LogisticRegression)
    assert with_clf.predict(Xt).shape == yt.shape


# ------------------------------------------------------------------ bad input

def test_bad_input_raises_value_error_and_inputs_are_not_modified():
    Xs, ys, Xt, yt = domains(seed=10)
    copies = [a.copy() for a in (Xs, ys, Xt, yt)]
    JDA(n_components=3, n_iter=2).fit(Xs, ys, Xt, yt)
    for a, b in zip((Xs, ys, Xt, yt), copies):
        np.testing.assert_array_equal(a, b)
    nan = Xt.copy()
    nan[0, 0] = np.nan
    inf = Xs.copy()
    inf[1, 1] = np.inf
    cases = [
        (JDA(), (Xs, ys, Xt[:, :-1]), "features"),
        (JDA(n_components=200), (Xs, ys, Xt), "n_components=200"),
        (JDA(n_components=9), (Xs, ys, Xt), "exceeds the 8 features"),
        (JDA(n_components=3), (Xs, ys, nan), "NaN"),
        (JDA(n_components=3), (inf, ys, Xt), "infinite"),
        (JDA(n_components=3), (Xs, np.zeros_like(ys), Xt), "at least 2"),
        (JDA(n_components=3), (Xs, "labels", Xt), "string"),
        (JDA(n_components=3), (Xs, ys + 0.25 * np.arange(len(ys)), Xt), "continuous"),
        (JDA(n_components=3), (Xs, ys[:-1], Xt), "labels for"),
        (JDA(n_components=3, kernel="sigmoid"), (Xs, ys, Xt), "unknown kernel 'sigmoid'"),
        (JDA(n_components=3, lambda_=0), (Xs, ys, Xt), "lambda_"),
        (BDA(n_components=3, mu=1.5), (Xs, ys, Xt), "mu"),
        (JDA(n_components=3, n_iter=0), (Xs, ys, Xt), "n_iter"),
        (JDA(n_components=3), (Xs, ys), "Xt"),
        (JDA(n_components=3), (Xs, None, Xt), "needs the source labels"),
        (JDA(n_components=3), (Xs.astype(str), ys, Xt), "numbers"),
    ]
    for est, args, match in cases:
        with pytest.raises(ValueError, match=match):
            est.fit(*args)
    fitted = TCA(n_components=3).fit(Xs, None, Xt)
    with pytest.raises(ValueError, match="features"):
        fitted.transform(Xt[:, :-2])
    with pytest.raises(ValueError, match="source labels"):
        fitted.predict(Xt)


# ------------------------------------------------------------------ real data

@pytest.mark.skipif(not os.path.isdir(DATA_DIR),
                    reason=f"Office-Caltech10 SURF not found at {DATA_DIR}")
def test_office_caltech_dslr_to_webcam_matches_the_dense_reference():
    from mmd.benchmark import dense_reference
    from mmd.data import load_domain
    Xs, ys = load_domain(DATA_DIR, "D")
    Xt, yt = load_domain(DATA_DIR, "W")
    # the paper's setting on the full 800 features: 84.75 % (n = 452 < d, Gram path)
    jda = JDA().fit(Xs, ys, Xt, yt)
    assert round(100 * jda.accuracies_[-1], 2) == 84.75
    # the dense public-code approach (general eig) agrees label for label on a
    # reduced problem small enough for a quick test
    sub = slice(0, 120)
    ours = JDA(n_components=20, n_iter=4).fit(Xs[:, sub], ys, Xt[:, sub]).pseudo_labels_
    dense = dense_reference(Xs[:, sub], ys, Xt[:, sub], "jda", 20, 1.0, 4, 0.5)
    np.testing.assert_array_equal(ours, dense)
    # and TCA shrinks the MMD between the domains
    # (the per-domain z-score already zeroes the mean difference, so the
    # linear-kernel MMD says nothing here; the RBF one does)
    tca = TCA().fit(Xs, ys, Xt)
    raw = [unit_rows(tf.constant(X)).numpy() for X in (Xs, Xt)]
    assert float(mmd2(tca.transform(Xs), tca.transform(Xt), gamma=1.0)) < \
        float(mmd2(*raw, gamma=1.0))
