"""TCA / JDA / BDA (mmd.solvers) checked against the equations of section 12.3."""
import os

import numpy as np
import pytest
import tensorflow as tf
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score, cross_validate
from sklearn.pipeline import Pipeline
from tensorflow.python.framework import op_callbacks

from mmd import solvers
from mmd.distance import mmd2
from mmd.solvers import BDA, JDA, TCA, mmd_directions, unit_rows
from mmd.validation import InputError

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
def test_low_rank_factors_equal_x_m_x_from_the_dense_mmd_matrix(mu):
    rng = np.random.default_rng(1)
    ys = rng.integers(0, 4, 30)
    yt = rng.integers(0, 3, 20)           # class 3 has no pseudo-labelled target sample
    P = rng.standard_normal((50, 6))
    U, w, fro = mmd_directions(tf.constant(P), 30, ys, yt, 4, mu)
    M = dense_M(ys, yt, 4, mu)
    assert fro == pytest.approx(np.linalg.norm(M, "fro"), rel=1e-12)
    np.testing.assert_allclose(U.numpy() @ np.diag(w) @ U.numpy().T, P.T @ M @ P,
                               rtol=1e-12, atol=1e-14)
    assert U.shape[1] == (mu < 1) + (3 if mu > 0 else 0)   # empty class: no column


def test_no_pseudo_labels_gives_the_marginal_term_only():
    P = np.arange(10.0).reshape(5, 2)
    U, w, fro = mmd_directions(tf.constant(P), 3, np.array([0, 1, 1]), None, 2, 0.5)
    np.testing.assert_allclose(U.numpy()[:, 0], P[:3].mean(0) - P[3:].mean(0))
    U, w, fro = mmd_directions(tf.constant(P), 2, np.array([0, 1]), None, 2, 1.0)
    assert U.shape[1] == 0 and fro == 0.0  # mu = 1 and no labels: M = 0


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


def test_iterative_and_exact_solvers_give_the_same_model():
    # d = 40 > 2 (k + guard): the iterative solver runs (smaller problems go
    # straight to the exact one)
    Xs, ys, Xt, yt = domains(seed=11, d=40, shift=2.0)
    iterative = JDA(n_components=5, n_iter=5).fit(Xs, ys, Xt, yt)
    exact = JDA(n_components=5, n_iter=5, solver="exact").fit(Xs, ys, Xt, yt)
    np.testing.assert_allclose(iterative.components_, exact.components_, atol=1e-8)
    np.testing.assert_allclose(iterative.eigenvalues_, exact.eigenvalues_, rtol=1e-9)
    np.testing.assert_array_equal(iterative.pseudo_labels_, exact.pseudo_labels_)
    assert iterative.n_eigensolves_ >= 2
    assert iterative.n_warm_starts_ == iterative.n_eigensolves_ - 1   # all but the first
    assert min(iterative.n_solver_steps_) >= 1 and iterative.n_solver_fallbacks_ == 0
    assert exact.n_solver_steps_ == [0] * exact.n_eigensolves_ and exact.n_warm_starts_ == 0


@pytest.mark.parametrize("path", ["lapack", "tensorflow"])
def test_a_fit_retraces_no_graph_once_warmed_up(path, monkeypatch):
    """JDA's iterations call compiled graphs with size-free signatures:
    after `warm_up` a fit of any new size traces nothing (no per-iteration
    retracing, no per-fit compilation).  On the CPU path the solver's steps
    are NumPy (mmd.lapack_steps) and only the projection and the 1-NN are
    graphs; the TensorFlow path (a GPU's) has the solver's too."""
    from mmd import eigensolvers, graph_steps
    graphs = [solvers._project, solvers._nearest, solvers._reference_parts]
    if path == "tensorflow":
        monkeypatch.setattr(eigensolvers, "lapack_preferred", lambda: False)
        graphs += [graph_steps._first_cold, graph_steps._first_warm, graph_steps._later_step,
                   graph_steps._range_operator, graph_steps._range_vectors]
    solvers.warm_up()
    before = [g.experimental_get_tracing_count() for g in graphs]
    assert min(before) >= 1
    for d in (40, 130):               # the B side, then the Gram side (n = 110 < 130)
        Xs, ys, Xt, yt = domains(seed=14, d=d, shift=2.0)
        jda = JDA(n_components=5, n_iter=6).fit(Xs, ys, Xt, yt)
        assert min(jda.n_solver_steps_) >= 1 and jda.n_eigensolves_ >= 2   # it iterated
        TCA(n_components=5).fit(Xs, ys, Xt)
    assert [g.experimental_get_tracing_count() for g in graphs] == before


def test_the_float32_nearest_neighbour_search_gives_the_float64_answer():
    """Float32 distances, float64 rechecks where rounding could decide: the
    same indices as the float64 search, on random unit rows with exact
    duplicates (ties) and near ties (1e-9 apart) among the references."""
    rng = np.random.default_rng(16)
    ref = unit_rows(tf.constant(rng.standard_normal((300, 40)))).numpy()
    ref[150:170] = ref[:20]                                     # exact duplicates
    queries = np.vstack([ref[:40] + 1e-3 * rng.standard_normal((40, 40)),
                         unit_rows(tf.constant(rng.standard_normal((200, 40)))).numpy()])
    ref[200:220] = ref[40:60] + 1e-9 * rng.standard_normal((20, 40))   # near ties
    ref, queries = tf.constant(ref), unit_rows(tf.constant(queries))
    np.testing.assert_array_equal(solvers._nearest(ref, *solvers._reference_parts(ref),
                                                   queries).numpy(),
                                  solvers._nearest64(ref, queries).numpy())
    # the rounding bound the recheck relies on holds (a bf16 matmul would break it)
    sq = tf.reduce_sum(ref * ref, axis=1)
    d64 = sq[None, :] - 2.0 * tf.matmul(queries, ref, transpose_b=True)
    d32 = tf.cast(sq, tf.float32)[None, :] - 2.0 * tf.matmul(
        tf.cast(queries, tf.float32), tf.cast(ref, tf.float32), transpose_b=True)
    assert float(tf.reduce_max(tf.abs(tf.cast(d32, tf.float64) - d64))) < \
        (2 * 40 + 5) * np.finfo(np.float32).eps * 2


def test_fit_seconds_split_the_fit_into_its_stages():
    import time
    Xs, ys, Xt, yt = domains(seed=15, d=40, shift=2.0)
    start = time.perf_counter()
    jda = JDA(n_components=5, n_iter=4).fit(Xs, ys, Xt, yt)
    wall = time.perf_counter() - start
    stages = jda.fit_seconds_
    assert set(stages) == {"normalise", "B", "eigenbasis", "M", "solves", "projection", "1-NN"}
    assert min(stages.values()) >= 0 and sum(stages.values()) <= wall
    tca = TCA(n_components=5).fit(Xs, ys, Xt, yt)
    assert "eigenbasis" not in tca.fit_seconds_     # one problem: solved without B's eigenbasis
    exact = JDA(n_components=5, n_iter=4, solver="exact").fit(Xs, ys, Xt, yt)
    assert "eigenbasis" not in exact.fit_seconds_


def test_tca_without_source_labels_is_tca_with_them():
    Xs, ys, Xt, _ = domains(seed=12, shift=3.0)
    with_labels = TCA(n_components=3).fit(Xs, ys, Xt)
    without = TCA(n_components=3).fit(Xs, None, Xt)
    np.testing.assert_allclose(without.components_, with_labels.components_, atol=1e-12)


# ------------------------------------------------------------------- Nystrom

@pytest.mark.parametrize("landmarks", ["uniform", "kmeans++"])
def test_nystrom_with_every_sample_a_landmark_is_the_exact_kernel_solution(landmarks):
    Xs, ys, Xt, yt = domains(seed=13, ns=70, nt=60)
    exact = JDA(n_components=6, kernel="rbf", gamma=0.5, n_iter=3).fit(Xs, ys, Xt, yt)
    nystrom = JDA(n_components=6, kernel="rbf", gamma=0.5, n_iter=3, n_landmarks=130,
                  landmarks=landmarks, random_state=0).fit(Xs, ys, Xt, yt)
    # every sample once, in another order
    assert sorted(nystrom.landmark_indices_) == list(range(130))
    assert list(nystrom.landmark_indices_) != list(range(130))
    assert nystrom.nystrom_map_.shape == (130, 130)
    np.testing.assert_allclose(nystrom.eigenvalues_, exact.eigenvalues_, rtol=1e-9)
    np.testing.assert_array_equal(nystrom.pseudo_labels_, exact.pseudo_labels_)
    # the same adapted features; A lives in another basis, so each
    # column's sign convention may differ
    Zn, Ze = nystrom.transform(Xt), exact.transform(Xt)
    np.testing.assert_allclose(Zn * np.sign(np.sum(Zn * Ze, axis=0)), Ze, atol=1e-8)


def test_nystrom_with_few_landmarks_approximates_the_exact_kernel():
    Xs, ys, Xt, yt = domains(seed=17, ns=200, nt=200, d=6, shift=2.0)
    exact = JDA(n_components=5, kernel="rbf", gamma=0.2, n_iter=3).fit(Xs, ys, Xt, yt)
    for m, agree in ((40, 0.9), (200, 0.99)):
        nystrom = JDA(n_components=5, kernel="rbf", gamma=0.2, n_iter=3, n_landmarks=m,
                      random_state=0).fit(Xs, ys, Xt, yt)
        assert np.mean(nystrom.pseudo_labels_ == exact.pseudo_labels_) >= agree, m


def test_nystrom_transforms_new_samples_through_the_same_landmarks():
    Xs, ys, Xt, yt = domains(seed=14, ns=150, nt=150, d=6, shift=2.0)
    est = JDA(n_components=5, kernel="rbf", gamma=0.5, n_iter=4, n_landmarks=25,
              random_state=3).fit(Xs, ys, Xt, yt)
    assert est.components_.shape == (25, 5) and est.nystrom_map_.shape == (25, 25)
    X_all = unit_rows(tf.constant(np.vstack([Xs, Xt])))
    landmarks = tf.gather(X_all, est.landmark_indices_).numpy()
    new = Xt[:9] + 0.1
    new_rows = unit_rows(tf.constant(new)).numpy()
    K = np.exp(-0.5 * ((new_rows[:, None, :] - landmarks[None, :, :]) ** 2).sum(-1))
    Z = K @ est.nystrom_map_.numpy() @ est.components_
    by_hand = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    np.testing.assert_allclose(est.transform(new), by_hand, atol=1e-12)
    exact = JDA(n_components=5, kernel="rbf", gamma=0.5, n_iter=4).fit(Xs, ys, Xt, yt)
    assert est.score(Xt, yt) >= exact.score(Xt, yt) - 0.05   # 25 of 300 landmarks suffice here
    # the same seed draws the same landmarks
    again = JDA(n_components=5, kernel="rbf", gamma=0.5, n_iter=4, n_landmarks=25,
                random_state=3).fit(Xs, ys, Xt)
    np.testing.assert_array_equal(again.landmark_indices_, est.landmark_indices_)


def _largest_square_side(fit, monkeypatch):
    """Run fit() with every TensorFlow op's output shape recorded; return the
    largest s such that some tensor had two dimensions >= s."""
    monkeypatch.setattr(solvers, "BLOCK_ENTRIES", 40 * 300)   # 40-row blocks at n = 600
    shapes = []

    def record(op_type, inputs, attrs, outputs, op_name=None, graph=None):
        shapes.extend(tuple(int(s) for s in o.shape if s is not None) for o in outputs or [])

    op_callbacks.add_op_callback(record)
    try:
        fit()
    finally:
        op_callbacks.remove_op_callback(record)
    return max(sorted(shape)[-2] for shape in shapes if len(shape) >= 2)


def test_nystrom_never_holds_an_n_by_n_array(monkeypatch):
    Xs, ys, Xt, yt = domains(seed=15, ns=300, nt=300, d=5)     # n = 600, m = 30

    def nystrom():
        est = JDA(n_components=4, kernel="rbf", gamma=0.5, n_iter=3, n_landmarks=30,
                  random_state=0).fit(Xs, ys, Xt, yt)
        est.transform(Xt)

    # kernel blocks (600 x 30), 1-NN blocks (40 x 300), m x m: nothing n x n
    assert _largest_square_side(nystrom, monkeypatch) <= 40
    # the check sees an n x n matrix where there is one: the exact kernel's K
    exact = lambda: JDA(n_components=4, kernel="rbf", gamma=0.5, n_iter=1).fit(Xs, ys, Xt)  # noqa: E731
    assert _largest_square_side(exact, monkeypatch) == 600


# --------------------------------------------------------------- sklearn API

def test_clone_get_set_params_and_pipeline():
    est = BDA(n_components=7, mu=0.3, lambda_=2.0, classifier=LogisticRegression())
    twin = clone(est)
    assert twin.get_params() == {**est.get_params(), "classifier": twin.classifier}
    twin.set_params(mu=0.8)
    assert est.mu == 0.3 and twin.classifier is not est.classifier   # independent copies
    Xs, ys, Xt, yt = domains(seed=9, shift=2.0)
    pipe = Pipeline([("jda", JDA(n_components=4, n_iter=3)),
                     ("clf", LogisticRegression(max_iter=500))])
    pipe.fit(Xs, ys, jda__Xt=Xt)
    assert pipe.score(Xt, yt) > 0.8
    # fit trains a copy of the classifier parameter and leaves the parameter as given
    est.fit(Xs, ys, Xt)
    assert hasattr(est.classifier_, "coef_") and not hasattr(est.classifier, "coef_")
    np.testing.assert_array_equal(
        est.predict(Xt), est.classes_[est.classifier_.predict(est.transform(Xt))])


def test_target_given_at_construction_is_safe_in_cross_validation_with_equal_sized_domains():
    # len(Xt) == len(Xs): the size at which scikit-learn cuts fit arguments into folds
    Xs, ys, Xt, _ = domains(seed=16, ns=60, nt=60, shift=2.5)
    folds = KFold(3, shuffle=True, random_state=0)
    by_hand = [JDA(n_components=3, n_iter=3).fit(Xs[tr], ys[tr], Xt) for tr, _ in folds.split(Xs)]
    safe = cross_validate(JDA(n_components=3, n_iter=3, Xt=Xt), Xs, ys, cv=folds,
                          return_estimator=True)
    for fitted, reference in zip(safe["estimator"], by_hand, strict=False):     # every fold saw all of Xt
        np.testing.assert_allclose(fitted.components_, reference.components_, atol=1e-12)
        assert fitted.pseudo_labels_.shape == (60,)
    np.testing.assert_allclose(
        cross_val_score(JDA(n_components=3, n_iter=3, Xt=Xt), Xs, ys, cv=folds),
        [est.score(Xs[te], ys[te]) for est, (_, te) in zip(by_hand, folds.split(Xs), strict=False)])
    search = GridSearchCV(JDA(n_iter=3, Xt=Xt), {"n_components": [2, 3]}, cv=folds).fit(Xs, ys)
    assert search.best_estimator_.pseudo_labels_.shape == (60,)
    # what the parameter protects against: a fit argument is cut into folds
    sliced = cross_validate(JDA(n_components=3, n_iter=3), Xs, ys, cv=folds,
                            params={"Xt": Xt}, return_estimator=True)
    assert sliced["estimator"][0].pseudo_labels_.shape == (40,)


# ------------------------------------------------------------------ bad input

def test_bad_input_raises_an_input_error_and_inputs_are_not_modified():
    Xs, ys, Xt, yt = domains(seed=10)
    copies = [a.copy() for a in (Xs, ys, Xt, yt)]
    JDA(n_components=3, n_iter=2).fit(Xs, ys, Xt, yt)
    for a, b in zip((Xs, ys, Xt, yt), copies, strict=False):
        np.testing.assert_array_equal(a, b)
    nan = Xt.copy()
    nan[0, 0] = np.nan
    inf = Xs.copy()
    inf[1, 1] = np.inf
    cases = [
        (JDA(), (Xs, ys, Xt[:, :-1]), "features"),
        (JDA(n_components=3), (Xs, ys, nan), "NaN"),
        (JDA(n_components=3), (inf, ys, Xt), "infinity"),
        (JDA(n_components=3), (Xs, "labels", Xt), "string"),
        (JDA(n_components=3), (Xs, ys + 0.25 * np.arange(len(ys)), Xt), "continuous"),
        (JDA(n_components=3), (Xs, ys[:-1], Xt), "inconsistent numbers of samples"),
        (JDA(n_components=3, kernel="sigmoid"), (Xs, ys, Xt), "unknown kernel 'sigmoid'"),
        (JDA(n_components=3, lambda_=0), (Xs, ys, Xt), "lambda_"),
        (BDA(n_components=3, mu=1.5), (Xs, ys, Xt), "mu"),
        (JDA(n_components=3, n_iter=0), (Xs, ys, Xt), "n_iter"),
        (JDA(n_components=3), (Xs, None, Xt), "requires y to be passed"),
        (JDA(n_components=3), (Xs.astype(str), ys, Xt), "numbers"),
        (JDA(n_components=3, solver="lobpcg"), (Xs, ys, Xt), "unknown solver 'lobpcg'"),
        (JDA(n_components=3, tol=0.0), (Xs, ys, Xt), "tol"),
        (JDA(n_components=3, kernel="rbf", n_landmarks=0), (Xs, ys, Xt), "n_landmarks must be >= 1"),
        (JDA(n_components=3, kernel="rbf", n_landmarks=111), (Xs, ys, Xt),
         "n_landmarks must be <= 110"),
        (JDA(n_components=3, kernel="rbf", n_landmarks=2.5), (Xs, ys, Xt), "integer"),
        (JDA(n_components=3, n_landmarks=10), (Xs, ys, Xt), "not to the primal"),
        (JDA(n_components=3, landmarks="random"), (Xs, ys, Xt), "unknown landmarks"),
        (JDA(n_components=3, Xt=Xt), (Xs, ys, Xt), "given twice"),
    ]
    for est, args, match in cases:
        with pytest.raises(InputError, match=match):
            est.fit(*args)
    # defined behaviour since issue 24 (tests/test_mmd_estimator_checks.py):
    # k above the rank is clipped, one class is fitted, no target = no adaptation
    assert JDA(n_components=200, n_iter=2).fit(Xs, ys, Xt).n_components_ == 8
    assert JDA(n_components=12, kernel="rbf", n_landmarks=10, n_iter=2).fit(
        Xs, ys, Xt).n_components_ == 10
    assert set(JDA(n_components=3, n_iter=2).fit(Xs, np.zeros_like(ys), Xt).predict(Xt)) == {0}
    assert JDA(n_components=3).fit(Xs, ys).n_iter_ == 1
    fitted = TCA(n_components=3).fit(Xs, None, Xt)
    with pytest.raises(InputError, match="features"):
        fitted.transform(Xt[:, :-2])
    with pytest.raises(InputError, match="source labels"):
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
    assert 100 * jda.accuracies_[-1] == pytest.approx(84.75, abs=0.005)
    assert min(jda.n_solver_steps_) >= 1     # the iterative solver ran (n x n Gram side)
    exact = JDA(solver="exact").fit(Xs, ys, Xt, yt)
    np.testing.assert_array_equal(jda.pseudo_labels_, exact.pseudo_labels_)
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
