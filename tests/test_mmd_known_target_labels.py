"""JDA / BDA / TCA with a few target samples of known class (issue 27, item 4):
`fit(..., labelled_index=rows of Xt, labelled_y=their labels)`.

The labelled rows count in their true class in eq. 12's class-conditional
MMD from the first M on and train the 1-NN beside the source; without them
every result is what it was (tests/test_mmd_solvers.py and
tests/test_mmd_estimator_checks.py hold those)."""
import numpy as np
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline

from mmd import solvers
from mmd.solvers import BDA, JDA, TCA, mmd_directions
from mmd.validation import InputError

C = 4


def rotated(seed, angle=1.6, ns=120, nt=120, d=6):
    """Gaussian classes; the target is the source rotated by `angle` in two
    coordinate planes and shifted, so that target classes sit near other
    source classes: JDA's pseudo labels start (and stay) mostly wrong."""
    rng = np.random.default_rng(seed)
    centres = 2.5 * rng.standard_normal((C, d))
    ys = np.arange(ns) % C
    yt = rng.integers(0, C, nt)
    Xs = centres[ys] + rng.standard_normal((ns, d))
    R = np.eye(d)
    c, s = np.cos(angle), np.sin(angle)
    R[:2, :2] = R[2:4, 2:4] = [[c, -s], [s, c]]
    Xt = (centres[yt] + rng.standard_normal((nt, d))) @ R.T + 1.0
    return Xs, ys, Xt, yt


def labelled_rows(yt, per_class, seed):
    """`per_class` target rows of each class, drawn with the seed."""
    rng = np.random.default_rng(100 + seed)
    return np.concatenate([rng.choice(np.flatnonzero(yt == c), per_class, replace=False)
                           for c in range(C)])


def dense_partial_M(ys, yt, n_classes, mu):
    """Eq. 10-12 entry by entry, target code -1 = class unknown: such a row is
    in no Mc, and each class's target mean is over the rows assigned to it."""
    ns, nt = len(ys), len(yt)
    n = ns + nt
    e0 = np.r_[np.full(ns, 1 / ns), np.full(nt, -1 / nt)]
    M = (1 - mu) * n_classes * np.outer(e0, e0)
    for c in range(n_classes):
        src, tgt = np.flatnonzero(ys == c), ns + np.flatnonzero(yt == c)
        if len(src) and len(tgt):
            ec = np.zeros(n)
            ec[src], ec[tgt] = 1 / len(src), -1 / len(tgt)
            M += mu * np.outer(ec, ec)
    return M


# ------------------------------------------------------------ eq. 12 with unknown classes

@pytest.mark.parametrize("mu", [0.5, 1.0])
def test_mmd_directions_with_unknown_target_classes_match_the_dense_matrix(mu):
    rng = np.random.default_rng(2)
    ys = rng.integers(0, 3, 25)
    yt = np.full(20, -1)
    yt[[1, 4, 7]] = [0, 0, 2]            # class 1: no labelled target row, no term
    P = rng.standard_normal((45, 5))
    U, w, fro = mmd_directions(P, 25, ys, yt, 3, mu)
    M = dense_partial_M(ys, yt, 3, mu)
    assert fro == pytest.approx(np.linalg.norm(M, "fro"), rel=1e-12)
    np.testing.assert_allclose(U @ np.diag(w) @ U.T, P.T @ M @ P, rtol=1e-12, atol=1e-14)
    assert U.shape[1] == (mu < 1) + 2
    # the class-0 column is the difference of the class means (target: rows 1 and 4 only)
    column = U[:, int(mu < 1)]
    np.testing.assert_allclose(column, P[:25][ys == 0].mean(0) - P[25 + np.array([1, 4])].mean(0))


def test_no_known_target_class_is_the_marginal_term_alone():
    rng = np.random.default_rng(3)
    ys, P = rng.integers(0, 3, 10), rng.standard_normal((18, 4))
    none = mmd_directions(P, 10, ys, None, 3, 0.5)
    unknown = mmd_directions(P, 10, ys, np.full(8, -1), 3, 0.5)
    np.testing.assert_array_equal(none[0], unknown[0])
    assert none[2] == unknown[2]


# ------------------------------------------------------------ what the labels change

def test_labelled_targets_improve_the_accuracy_on_the_unlabelled_rest():
    gains = []
    for seed in range(4):
        Xs, ys, Xt, yt = rotated(seed)
        known = labelled_rows(yt, 2, seed)
        rest = np.setdiff1d(np.arange(len(yt)), known)
        plain = JDA(n_components=4).fit(Xs, ys, Xt)
        semi = JDA(n_components=4).fit(Xs, ys, Xt, labelled_index=known, labelled_y=yt[known])
        before = np.mean(plain.pseudo_labels_[rest] == yt[rest])
        after = np.mean(semi.pseudo_labels_[rest] == yt[rest])
        assert after >= before, seed
        np.testing.assert_array_equal(semi.predict(Xt[rest]), semi.pseudo_labels_[rest])
        gains.append(after - before)
    # without the labels JDA gets 4 to 49 % of the rest right on these seeds
    assert np.mean(gains) > 0.3, gains


@pytest.mark.parametrize("make", [
    lambda: JDA(n_components=4, n_iter=3),
    lambda: BDA(n_components=4, n_iter=3, mu=0.8, kernel="linear"),
    lambda: TCA(n_components=4),
    lambda: JDA(n_components=4, n_iter=3, classifier=DummyClassifier(strategy="most_frequent")),
])
def test_labelled_rows_keep_their_labels(make):
    Xs, ys, Xt, yt = rotated(1)
    known = labelled_rows(yt, 3, 1)
    est = make().fit(Xs, ys, Xt, labelled_index=known, labelled_y=yt[known])
    # the dummy predicts one class for everything: only the override makes them right
    np.testing.assert_array_equal(est.pseudo_labels_[known], yt[known])
    if est.classifier is None:   # 1-NN trained on them: each is its own nearest neighbour
        np.testing.assert_array_equal(est.predict(Xt[known]), yt[known])


def test_the_classifier_is_trained_on_source_and_labelled_target_rows():
    Xs, ys, Xt, yt = rotated(0)
    known = labelled_rows(yt, 2, 0)
    knn = KNeighborsClassifier(n_neighbors=1)
    est = JDA(n_components=4, n_iter=2, classifier=knn).fit(
        Xs, ys, Xt, labelled_index=known, labelled_y=yt[known])
    assert est.classifier_.n_samples_fit_ == len(Xs) + len(known)
    plain = JDA(n_components=4, n_iter=2, classifier=knn).fit(Xs, ys, Xt)
    assert plain.classifier_.n_samples_fit_ == len(Xs)


def test_m_sees_the_true_classes_from_the_first_iteration(monkeypatch):
    Xs, ys, Xt, yt = rotated(0)
    known = labelled_rows(yt, 2, 0)
    seen = []
    real = solvers.mmd_directions

    def recording(P, ns, ys_codes, yt_codes, n_classes, mu):
        seen.append(None if yt_codes is None else np.array(yt_codes))
        return real(P, ns, ys_codes, yt_codes, n_classes, mu)

    monkeypatch.setattr(solvers, "mmd_directions", recording)
    est = JDA(n_components=4, n_iter=4)
    est._skip_repeats = False
    est.fit(Xs, ys, Xt, labelled_index=known, labelled_y=yt[known])
    assert len(seen) == 4
    first = seen[0]
    np.testing.assert_array_equal(first[known], yt[known])       # classes are 0..3 = codes
    assert np.all(np.delete(first, known) == -1)
    for later in seen[1:]:
        np.testing.assert_array_equal(later[known], yt[known])
        assert np.all(later >= 0)
    seen.clear()
    JDA(n_components=4, n_iter=2).fit(Xs, ys, Xt)
    assert seen[0] is None           # without labels the first M is TCA's, as before


def test_only_labelled_rows_change_the_first_components():
    Xs, ys, Xt, yt = rotated(2)
    known = labelled_rows(yt, 2, 2)
    plain = JDA(n_components=4, n_iter=1).fit(Xs, ys, Xt)
    empty = JDA(n_components=4, n_iter=1).fit(Xs, ys, Xt, labelled_index=[], labelled_y=[])
    semi = JDA(n_components=4, n_iter=1).fit(Xs, ys, Xt, labelled_index=known,
                                             labelled_y=yt[known])
    np.testing.assert_array_equal(empty.components_, plain.components_)
    np.testing.assert_array_equal(empty.pseudo_labels_, plain.pseudo_labels_)
    assert np.abs(np.abs(semi.components_) - np.abs(plain.components_)).max() > 1e-3
    # TCA's M has no class terms: the same map, only the 1-NN knows more
    tca = TCA(n_components=4).fit(Xs, ys, Xt)
    tca_semi = TCA(n_components=4).fit(Xs, ys, Xt, labelled_index=known, labelled_y=yt[known])
    np.testing.assert_array_equal(tca_semi.components_, tca.components_)
    assert np.any(tca_semi.pseudo_labels_ != tca.pseudo_labels_)


def test_skipping_repeated_labellings_stays_exact_with_labelled_rows():
    Xs, ys, Xt, yt = rotated(4, angle=0.6)
    known = labelled_rows(yt, 2, 4)
    kwargs = {"labelled_index": known, "labelled_y": yt[known]}
    fast = JDA(n_components=4, n_iter=8).fit(Xs, ys, Xt, yt, **kwargs)
    slow = JDA(n_components=4, n_iter=8)
    slow._skip_repeats = False
    slow.fit(Xs, ys, Xt, yt, **kwargs)
    assert fast.n_eigensolves_ < slow.n_eigensolves_ == 8
    np.testing.assert_allclose(fast.components_, slow.components_, atol=1e-10)
    np.testing.assert_array_equal(fast.pseudo_labels_, slow.pseudo_labels_)
    assert fast.accuracies_ == slow.accuracies_ and fast.label_changes_ == slow.label_changes_


def test_labels_of_any_type_and_the_pipeline_route():
    Xs, ys, Xt, yt = rotated(1)
    names = np.array(["ant", "bee", "cat", "dog"])
    known = labelled_rows(yt, 2, 1)
    est = JDA(n_components=4, n_iter=2).fit(Xs, names[ys], Xt, labelled_index=known.tolist(),
                                            labelled_y=list(names[yt[known]]))
    np.testing.assert_array_equal(est.pseudo_labels_[known], names[yt[known]])
    pipe = Pipeline([("jda", JDA(n_components=4, n_iter=2, Xt=Xt))]).fit(
        Xs, ys, jda__labelled_index=known, jda__labelled_y=yt[known])
    np.testing.assert_array_equal(pipe[0].pseudo_labels_[known], yt[known])


# ------------------------------------------------------------ input errors

@pytest.mark.parametrize("kwargs, words", [
    ({"labelled_index": [0, 1]}, "without labelled_y"),
    ({"labelled_y": [0, 1]}, "without labelled_index"),
    ({"labelled_index": [0, 120], "labelled_y": [0, 1]}, "0..119"),
    ({"labelled_index": [-1], "labelled_y": [0]}, "0..119"),
    ({"labelled_index": [3, 3], "labelled_y": [0, 0]}, "repeats rows [3]"),
    ({"labelled_index": np.ones(120, bool), "labelled_y": [0]}, "np.flatnonzero"),
    ({"labelled_index": [0.0, 1.0], "labelled_y": [0, 1]}, "integer row indices"),
    ({"labelled_index": [[0, 1]], "labelled_y": [0, 1]}, "1-D"),
    ({"labelled_index": "0,1", "labelled_y": [0, 1]}, "string"),
    ({"labelled_index": [0, 1], "labelled_y": [0]}, "one label per row"),
    ({"labelled_index": [0, 1], "labelled_y": [0, 7]}, "not source classes: 7"),
    ({"labelled_index": [0, 1], "labelled_y": ["a", 0]}, "'a'"),
    ({"labelled_index": [], "labelled_y": [1]}, "0 rows"),
])
def test_bad_labelled_targets_are_input_errors(kwargs, words):
    Xs, ys, Xt, _ = rotated(0)
    with pytest.raises(InputError) as raised:
        JDA(n_components=4, n_iter=1).fit(Xs, ys, Xt, **kwargs)
    assert words in str(raised.value)


def test_labelled_targets_need_a_target_and_source_labels():
    Xs, ys, Xt, _ = rotated(0)
    with pytest.raises(InputError, match="no Xt was given"):
        JDA(n_components=4).fit(Xs, ys, labelled_index=[0], labelled_y=[0])
    with pytest.raises(InputError, match="needs the source labels y"):
        TCA(n_components=4).fit(Xs, None, Xt, labelled_index=[0], labelled_y=[0])
