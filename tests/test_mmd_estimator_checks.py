"""TCA / JDA / BDA against scikit-learn's estimator contract (issue 24, part 3).

`parametrize_with_checks` runs every check of `check_estimator` on each
instance below, and every check passes (`EXPECTED_FAILURES` is empty).
check_estimator only calls `fit(X, y)`, so what it tests is the no-target
fit (X is its own target); the tests after it cover what it cannot see:
the same contract (pickle, clone, idempotence, dtypes, untouched inputs)
for a real adaptation with the target given as the `Xt` parameter, and the
behaviours that used to be errors.
"""
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import parametrize_with_checks

from mmd.solvers import BDA, JDA, TCA, unit_rows
from mmd.validation import InputError, InputTypeError

# Defaults first (check_estimator's data has 1 to 10 features, so the default
# n_components=100 is clipped there), then the kernel and Nystrom problems.
# Without a target JDA / BDA solve eq. 20 once, so the default n_iter=10 costs
# nothing here.  The RBF kernel's spectrum decays fast on the checks' 2-5
# features (numerical rank 12 of 80 samples with the median bandwidth), so
# it asks for 2 components: beyond the data's numerical rank fit refuses.
ESTIMATORS = [
    TCA(), JDA(), BDA(mu=0.3),
    JDA(kernel="rbf", gamma="median", n_components=2),
    TCA(kernel="linear", n_landmarks=3, landmarks="kmeans++", random_state=0),
]

# check_fit2d_1feature passes: its one feature is positive, so the unit-norm
# rows of the reference protocol are all 1, the centred scatter has rank 0 and
# no component exists; fit's InputError (a ValueError) names the rank and, in
# scikit-learn's wording, "n_features = 1", which that check accepts.
EXPECTED_FAILURES = {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_one_positive_feature_is_a_rank_0_error_naming_n_features():
    X = 3 * np.random.default_rng(0).uniform(size=(10, 1))
    y = np.arange(10) % 2
    with pytest.raises(InputError, match=r"rank 0 .*\(n_features = 1\)$"):
        JDA().fit(X, y)
    # a feature of both signs keeps one direction: the 1-feature fit works
    fitted = JDA().fit(X - 1.5, y)
    assert fitted.n_components_ == 1 and fitted.transform(X).shape == (10, 1)


def domains(seed=0, n_classes=3, ns=60, nt=50, d=8, shift=1.5):
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((n_classes, d))
    ys = np.arange(ns) % n_classes
    yt = rng.integers(0, n_classes, nt)
    Xs = centres[ys] + rng.standard_normal((ns, d))
    Xt = centres[yt] + rng.standard_normal((nt, d)) + shift * np.linspace(1, 0, d)
    return Xs, ys, Xt, yt


# ------------------------------------------------------------ no target

@pytest.mark.parametrize("make", [TCA, JDA, lambda **kw: BDA(mu=0.8, **kw)])
def test_fit_without_target_is_pca_of_the_unit_norm_samples(make):
    # X its own target: M = 0, eq. 20 is lambda a = phi X H X^T a, so A holds
    # the leading eigenvectors of the centred scatter and phi = lambda / ev
    Xs, ys, _, _ = domains(seed=1)
    est = make(n_components=3, lambda_=2.0).fit(Xs, ys)
    U = unit_rows(Xs).numpy()
    Uc = U - U.mean(axis=0)
    ev, vecs = np.linalg.eigh(Uc.T @ Uc)
    np.testing.assert_allclose(est.eigenvalues_, 2.0 / ev[::-1][:3], rtol=1e-9)
    np.testing.assert_allclose(np.abs(est.components_.T @ vecs[:, ::-1][:, :3]), np.eye(3),
                               atol=1e-8)
    assert est.n_iter_ == 1 and est.n_eigensolves_ == 1
    # distinct samples: each is its own nearest neighbour
    np.testing.assert_array_equal(est.pseudo_labels_, ys)
    np.testing.assert_array_equal(est.predict(Xs), ys)


# ------------------------------------------------------------ clipping

def test_n_components_is_clipped_to_the_rank_of_the_problem():
    Xs, ys, Xt, _ = domains(seed=2, ns=6, nt=5)          # d = 8, n = 11
    assert JDA(n_components=100, n_iter=2).fit(Xs, ys, Xt).n_components_ == 8   # p = d
    assert JDA().fit(Xs[:4], ys[:4], Xt[:3]).n_components_ == 6               # n - 1
    assert TCA().fit(Xs[:5]).n_components_ == 4                              # own target
    est = JDA(kernel="rbf", n_landmarks=4, random_state=0, n_iter=2).fit(Xs, ys, Xt)
    assert est.n_components_ == 4 and est.components_.shape == (4, 4)       # Nystrom rank
    assert est.transform(Xt).shape == (5, 4)
    # the benchmark's sizes (more features and samples than 100): not clipped
    Xs, ys, Xt, _ = domains(seed=3, ns=150, nt=120, d=120)
    assert JDA(n_iter=1).fit(Xs, ys, Xt).components_.shape == (120, 100)


def test_clipped_fit_equals_the_fit_asking_for_the_rank():
    Xs, ys, Xt, _ = domains(seed=4)
    clipped = JDA(n_components=50, n_iter=3).fit(Xs, ys, Xt)
    asked = JDA(n_components=8, n_iter=3).fit(Xs, ys, Xt)
    np.testing.assert_array_equal(clipped.components_, asked.components_)
    np.testing.assert_array_equal(clipped.pseudo_labels_, asked.pseudo_labels_)


# ------------------------------------------------------------ one class

def test_one_class_in_y_is_predicted_for_every_sample():
    Xs, _, Xt, _ = domains(seed=5)
    ones = np.full(len(Xs), 7)
    for est in (JDA(n_components=3, n_iter=3), BDA(n_components=3, mu=0.9, n_iter=3)):
        est.fit(Xs, ones, Xt)
        np.testing.assert_array_equal(est.predict(Xt), 7)
        assert list(est.classes_) == [7] and np.all(np.isfinite(est.components_))


# ------------------------------------------------------------ messages

def test_bad_arrays_get_scikit_learns_messages_on_one_line():
    Xs, ys, Xt, _ = domains(seed=6)
    nan, inf = Xs.copy(), Xt.copy()
    nan[0, 0], inf[1, 1] = np.nan, np.inf
    cases = [
        ((nan, ys, Xt), InputError, r"^Input X contains NaN\.$"),
        ((Xs, ys, inf), InputError, r"^Input Xt contains infinity or a value too large"),
        ((Xs + 1j, ys, Xt), InputError, "Complex data not supported"),
        ((sp.csr_matrix(Xs), ys, Xt), InputTypeError, "^Sparse data was passed for X, but dense"),
        ((Xs[:0], ys[:0], Xt), InputError, r"0 sample\(s\) \(shape=\(0, 8\)\) while a minimum"),
        ((Xs[:, :0], ys, Xt), InputError, r"0 feature\(s\)"),
        ((Xs[0], ys[:1]), InputError, "Expected 2D array, got 1D array instead: Reshape your"),
        ((Xs[:1], ys[:1]), InputError, r"1 sample\(s\) \(shape=\(1, 8\)\) while a minimum of 2"),
        ((Xs, ys + 0.25, Xt), InputError, "Unknown label type: continuous"),
        ((Xs, ys[:-1], Xt), InputError, "inconsistent numbers of samples: \\[60, 59\\]"),
        ((Xs, np.r_[np.nan, ys[1:]], Xt), InputError, "Input y contains NaN"),
        ((Xs, None, Xt), InputError, "requires y to be passed, but the target y is None"),
        ((Xs.astype(str), ys, Xt), InputError, "must contain numbers"),
    ]
    for args, kind, match in cases:
        with pytest.raises(kind, match=match) as info:
            JDA(n_components=3, n_iter=2).fit(*args)
        assert "\n" not in str(info.value), args
    assert issubclass(InputTypeError, TypeError) and issubclass(InputTypeError, ValueError)
    with pytest.raises(NotFittedError):
        JDA().transform(Xs)
    with pytest.raises(NotFittedError):
        TCA().predict(Xs)
    fitted = JDA(n_components=3, n_iter=2).fit(Xs, ys, Xt)
    with pytest.raises(InputError, match="X has 7 features, but JDA is expecting 8"):
        fitted.predict(Xt[:, 1:])
    # one sample is enough with a target: n = 51 samples in all
    assert JDA(n_components=3, n_iter=2).fit(Xs[:1], ys[:1], Xt).n_components_ == 3


# ------------------------------------------------------------ the contract with a target

def test_adaptation_with_the_target_as_a_parameter_keeps_the_contract():
    Xs, ys, Xt, _ = domains(seed=7)
    Xs32, Xt_before = Xs.astype(np.float32), Xt.copy()
    est = JDA(n_components=4, n_iter=4, Xt=Xt)
    fitted = est.fit(Xs32, ys)
    assert fitted is est and est.get_params()["Xt"] is Xt
    np.testing.assert_array_equal(Xt, Xt_before)
    assert est.transform(Xs32).dtype == np.float64            # computed in float64
    # idempotent, and clone + refit gives the same model
    first = est.transform(Xt)
    np.testing.assert_array_equal(est.fit(Xs32, ys).transform(Xt), first)
    np.testing.assert_array_equal(clone(est).fit(Xs32, ys).transform(Xt), first)
    # a real adaptation, not the no-target fit
    assert not np.allclose(np.abs(JDA(n_components=4).fit(Xs32, ys).transform(Xt)),
                           np.abs(first))
    # pickled and restored: the same predictions and adapted features
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.transform(Xt), first)
    np.testing.assert_array_equal(again.predict(Xt), est.predict(Xt))
