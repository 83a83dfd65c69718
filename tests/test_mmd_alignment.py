"""SA and CORAL (mmd.alignment): feature adaptation, eq. 1 of 12.2.3.

Each method is checked against its defining equation and on a synthetic
shift it is built to undo: a tilted signal subspace for SA, a per-feature
rescaling for CORAL; plain 1-NN fails on both.
"""
import os

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from mmd.alignment import CORAL, SA, sym_power
from mmd.validation import InputError


@parametrize_with_checks([SA(), CORAL(), SA(n_components=2, classifier=LogisticRegression()),
                          CORAL(lambda_=0.1)])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def tilted(seed, degrees=70.0, d=20, n=200, noise=0.5):
    """Four classes in a 2-D signal plane plus isotropic noise in d
    dimensions; the target's plane is the source's tilted towards
    two other axes by `degrees`."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * np.array([[1, 0], [-1, 0], [0, 1], [0, -1]])
    Bs, Bt = np.zeros((d, 2)), np.zeros((d, 2))
    Bs[0, 0] = Bs[1, 1] = 1.0
    theta = np.deg2rad(degrees)
    Bt[0, 0] = Bt[1, 1] = np.cos(theta)
    Bt[2, 0] = Bt[3, 1] = np.sin(theta)

    def draw(basis):
        y = rng.integers(0, 4, n)
        z = centres[y] + 0.7 * rng.standard_normal((n, 2))
        return z @ basis.T + noise * rng.standard_normal((n, d)), y

    return (*draw(Bs), *draw(Bt))


def test_sa_is_the_least_squares_alignment_of_the_two_pca_bases():
    Xs, ys, Xt, _ = tilted(0)
    sa = SA(n_components=3).fit(Xs, ys, Xt)
    Ps, Pt = sa.source_components_, sa.target_components_
    for P, X in ((Ps, Xs), (Pt, Xt)):   # the spans of the k leading principal directions
        V = PCA(n_components=3).fit(X).components_.T
        np.testing.assert_allclose(P @ P.T, V @ V.T, atol=1e-8)
    # M = Ps^T Pt minimises ||Ps M - Pt||_F (Fernando et al., eq. 3)
    np.testing.assert_allclose(sa.alignment_, np.linalg.lstsq(Ps, Pt, rcond=None)[0], atol=1e-10)
    x = Xs[:5]
    np.testing.assert_allclose(sa.transform_source(x), (x - Xs.mean(0)) @ Ps @ Ps.T @ Pt)
    np.testing.assert_allclose(sa.transform(Xt[:5]), (Xt[:5] - Xt.mean(0)) @ Pt)


def test_sa_undoes_a_tilted_signal_subspace():
    plain, aligned = [], []
    for seed in range(3):
        Xs, ys, Xt, yt = tilted(seed)
        plain.append(KNeighborsClassifier(1).fit(Xs, ys).score(Xt, yt))
        aligned.append(SA(n_components=2, Xt=Xt).fit(Xs, ys).score(Xt, yt))
    assert np.mean(aligned) > 0.9 and np.mean(aligned) > np.mean(plain) + 0.2


def test_sa_without_target_is_pca():
    Xs, ys, _, _ = tilted(1)
    sa = SA(n_components=2).fit(Xs, ys)
    np.testing.assert_allclose(np.abs(sa.alignment_), np.eye(2), atol=1e-12)
    ref = PCA(n_components=2).fit(Xs).transform(Xs)
    np.testing.assert_allclose(np.abs(sa.transform(Xs)), np.abs(ref), atol=1e-8)


def rescaled(seed, n=300, d=6):
    """Independent features, the class along feature 0 (means 0 and 6); the
    target scales the features by 0.5, 10, 8, 1, 1, 1, so a linear
    classifier's threshold learnt on the source (x0 = 3) falls on the
    target's class-1 mean."""
    rng = np.random.default_rng(seed)
    scale = np.array([0.5, 10.0, 8.0, 1.0, 1.0, 1.0])

    def draw(s):
        y = rng.integers(0, 2, n)
        X = rng.standard_normal((n, d))
        X[:, 0] += 6.0 * y
        return X * s, y

    return (*draw(np.ones(d)), *draw(scale))


def test_coral_recolours_the_source_with_the_target_covariance():
    Xs, ys, Xt, _ = rescaled(0)
    est = CORAL(lambda_=1e-9).fit(Xs, ys, Xt)   # lambda -> 0: the covariances match
    np.testing.assert_allclose(np.cov(est.transform_source(Xs), rowvar=False),
                               np.cov(Xt, rowvar=False), atol=1e-6)
    np.testing.assert_array_equal(est.transform(Xt), Xt)   # the target stays
    # Algorithm 1 with lambda = 1: (Cs + I)^-1/2 (Ct + I)^1/2
    est = CORAL().fit(Xs, ys, Xt)
    eye = np.eye(Xs.shape[1])
    expected = sym_power(np.cov(Xs, rowvar=False) + eye, -0.5) @ \
        sym_power(np.cov(Xt, rowvar=False) + eye, 0.5)
    np.testing.assert_allclose(est.coral_map_, expected, atol=1e-12)


def test_sym_power():
    rng = np.random.default_rng(1)
    A = rng.standard_normal((5, 5))
    C = A @ A.T + np.eye(5)
    root = sym_power(C, 0.5)
    np.testing.assert_allclose(root @ root, C, atol=1e-10)
    np.testing.assert_allclose(sym_power(C, -0.5) @ root, np.eye(5), atol=1e-10)


def test_coral_undoes_a_per_feature_rescaling():
    # a linear classifier: 1-NN in the target's own space would drown in the
    # large nuisance features whatever the alignment
    plain, aligned = [], []
    for seed in range(3):
        Xs, ys, Xt, yt = rescaled(seed)
        plain.append(LogisticRegression().fit(Xs, ys).score(Xt, yt))
        aligned.append(CORAL(classifier=LogisticRegression(), Xt=Xt).fit(Xs, ys).score(Xt, yt))
    assert np.mean(aligned) > 0.95 and np.mean(aligned) > np.mean(plain) + 0.15


def test_coral_without_target_is_the_identity_map():
    Xs, ys, _, _ = rescaled(2)
    est = CORAL().fit(Xs, ys)
    np.testing.assert_allclose(est.coral_map_, np.eye(Xs.shape[1]), atol=1e-10)
    np.testing.assert_array_equal(est.predict(Xs), ys)   # 1-NN on its own samples


def test_grid_search_with_the_target_as_parameter():
    Xs, ys, Xt, _ = tilted(2)
    grid = GridSearchCV(SA(Xt=Xt), {"n_components": [1, 2, 5]}, cv=3).fit(Xs, ys)
    assert grid.best_estimator_.target_components_.shape[0] == Xs.shape[1]
    np.testing.assert_array_equal(SA(Xt=Xt).fit(Xs, ys).predict(Xt),
                                  SA().fit(Xs, ys, Xt).predict(Xt))


def test_bad_input_is_one_line():
    Xs, ys, Xt, _ = tilted(3)
    with pytest.raises(InputError, match="given twice"):
        SA(Xt=Xt).fit(Xs, ys, Xt)
    with pytest.raises(InputError, match="Xt has 3 features but X has 20"):
        CORAL().fit(Xs, ys, Xt[:, :3])
    with pytest.raises(InputError, match="needs the source labels"):
        SA().fit(Xs, Xt=Xt).predict(Xt)
    with pytest.raises(InputError, match="lambda_ must be a positive"):
        CORAL(lambda_=0).fit(Xs, ys)
    with pytest.raises(InputError, match="n_components must be"):
        SA(n_components=0).fit(Xs, ys)


DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                        "office_caltech10_surf")


@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason="Office-Caltech10 SURF not found")
@pytest.mark.parametrize("method, expected", [
    ("nn-normalised", {"W->D": 84.71, "D->W": 83.73}),
    ("sa", {"W->D": 88.54, "D->W": 89.15}),
    ("coral", {"W->D": 84.08, "D->W": 84.41}),
])
def test_benchmark_rows_on_the_two_small_tasks(method, expected):
    # the per-task accuracies of mmd/README.md's table, through the
    # benchmark's own run_simple (the command minus its TensorFlow set-up);
    # one BLAS thread as the benchmark's concurrent tasks get (on the shared
    # 2-core machine two threads made the 800 x 800 eigh ten times slower)
    from threadpoolctl import threadpool_limits

    from mmd import benchmark
    from mmd.data import load_domain

    args = benchmark.build_parser().parse_args(["--method", method])
    data = {d: load_domain(DATA_DIR, d) for d in "WD"}
    for task, acc in expected.items():
        (Xs, ys), (Xt, yt) = data[task[0]], data[task[-1]]
        with threadpool_limits(limits=1, user_api="blas"):
            pred, _ = benchmark.run_simple(method, Xs, ys, Xt, args)
        assert 100 * np.mean(pred == yt) == pytest.approx(acc, abs=0.005)
