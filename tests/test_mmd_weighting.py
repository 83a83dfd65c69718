"""KMM, KLIEP (mmd.weighting) and TrAdaBoost (mmd.boosting): instance
weighting, eq. 2 of 12.2.3.

The weights are checked against a covariate shift whose density ratio is
known in closed form (two Gaussians), the KMM solver against scipy's SLSQP
on the same quadratic programme, and the weighted classifier against the
unweighted one on a shift where a linear model is misspecified (the case
that reweighting is for).  TrAdaBoost: its weight update against the
paper's formulas, and a source half of which follows another concept.
"""
import os

import numpy as np
import pytest
import scipy.optimize
from scipy.stats import norm, spearmanr
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from mmd.boosting import TrAdaBoost
from mmd.validation import InputError
from mmd.weighting import KLIEP, KMM, kliep_alpha, kmm_weights, median_gamma, squared_distances


@parametrize_with_checks([KMM(), KLIEP(random_state=0),
                          KMM(estimator=LogisticRegression(C=0.5), gamma=0.3, B=5.0, eps=0.5),
                          TrAdaBoost()])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def gaussian_shift(seed=0, ns=400, nt=300):
    """p_s = N(0, 1), p_t = N(0.5, 0.6^2): w(x) = p_t(x) / p_s(x) is known."""
    rng = np.random.default_rng(seed)
    Xs = rng.normal(0.0, 1.0, (ns, 1))
    Xt = rng.normal(0.5, 0.6, (nt, 1))
    ratio = lambda X: norm.pdf(X[:, 0], 0.5, 0.6) / norm.pdf(X[:, 0], 0.0, 1.0)  # noqa: E731
    return Xs, (Xs[:, 0] > 0).astype(int), Xt, ratio


@pytest.mark.parametrize("make, min_corr, max_error", [
    (lambda: KMM(), 0.98, 0.12),
    (lambda: KLIEP(random_state=0), 0.85, 0.35),
])
def test_weights_track_the_true_density_ratio(make, min_corr, max_error):
    Xs, ys, Xt, ratio = gaussian_shift()
    est = make().fit(Xs, ys, Xt)
    w, true = est.weights_, ratio(Xs)
    assert w.shape == (len(Xs),) and np.all(w >= 0)
    assert abs(w.mean() - 1.0) < 0.05
    assert np.corrcoef(w, true)[0, 1] > min_corr
    assert spearmanr(w, true)[0] > min_corr - 0.05
    # relative mean absolute error; all-ones weights give 0.69 here
    assert np.mean(np.abs(w - true)) / np.mean(true) < max_error


def test_kliep_density_ratio_at_new_points_and_its_normalisation():
    Xs, ys, Xt, ratio = gaussian_shift(seed=1)
    est = KLIEP(Xt=Xt, random_state=0).fit(Xs, ys)
    grid = np.linspace(-1.0, 1.5, 26)[:, None]        # where both densities have mass
    assert np.corrcoef(est.density_ratio(grid), ratio(grid))[0, 1] > 0.9
    # the constraint of the programme: the source mean of w is 1
    assert est.density_ratio(Xs).mean() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(est.density_ratio(Xs), est.weights_)


def test_kliep_likelihood_cross_validation_rejects_absurd_widths():
    Xs, ys, Xt, _ = gaussian_shift(seed=2)
    est = KLIEP(sigmas=[0.001, 0.3, 100.0], random_state=0).fit(Xs, ys, Xt)
    assert est.sigma_ == 0.3
    assert est.cv_scores_[0.3] > max(est.cv_scores_[0.001], est.cv_scores_[100.0])


def test_kliep_alpha_satisfies_the_constraints_and_beats_the_start():
    rng = np.random.default_rng(3)
    A, b = rng.uniform(0.0, 1.0, (50, 8)), rng.uniform(0.2, 1.0, 8)
    alpha = kliep_alpha(A, b)
    assert np.all(alpha >= 0) and b @ alpha == pytest.approx(1.0)
    start = np.ones(8) / b.sum()
    assert np.mean(np.log(A @ alpha)) > np.mean(np.log(A @ start))


@pytest.mark.parametrize("B, eps", [(1000.0, 0.8), (3.0, 0.8), (3.0, 0.01), (1000.0, 0.002)])
def test_kmm_solver_agrees_with_slsqp(B, eps):
    # the four cases: no constraint active, the bound B, the sum and both
    rng = np.random.default_rng(4)
    Xs, Xt = rng.normal(0.0, 1.0, (40, 2)), rng.normal(1.0, 0.5, (30, 2))
    g = median_gamma(np.vstack([Xs, Xt]))
    K = np.exp(-g * squared_distances(Xs, Xs))
    kappa = 40 / 30 * np.exp(-g * squared_distances(Xs, Xt)).sum(axis=1)
    beta, _ = kmm_weights(K, kappa, B, eps)

    def f(b):
        return 0.5 * b @ K @ b - kappa @ b

    ref = scipy.optimize.minimize(
        f, np.ones(40), jac=lambda b: K @ b - kappa, method="SLSQP", bounds=[(0, B)] * 40,
        constraints=[{"type": "ineq", "fun": lambda b: 40 * (1 + eps) - b.sum()},
                     {"type": "ineq", "fun": lambda b: b.sum() - 40 * (1 - eps)}],
        options={"maxiter": 1000, "ftol": 1e-14})
    assert f(beta) <= ref.fun + 1e-7 * abs(ref.fun)
    np.testing.assert_allclose(beta, ref.x, atol=1e-4)
    assert np.all(beta >= 0) and np.all(beta <= B + 1e-12)
    assert 40 * (1 - eps) - 1e-6 <= beta.sum() <= 40 * (1 + eps) + 1e-6


def misspecified_shift(seed):
    """Label y = [x2 > x1^2 - 1]: no line fits it everywhere, but one fits
    it near the target's centre (1.5, 1.5); the unweighted fit spends itself
    on the wide source."""
    rng = np.random.default_rng(seed)
    Xs = 1.5 * rng.standard_normal((150, 2))
    Xt = 0.4 * rng.standard_normal((100, 2)) + 1.5

    def label(X):
        return (X[:, 1] > X[:, 0] ** 2 - 1).astype(int)

    return Xs, label(Xs), Xt, label(Xt)


@pytest.mark.parametrize("make", [lambda Xt: KMM(Xt=Xt),
                                  lambda Xt: KLIEP(Xt=Xt, random_state=0)])
def test_weighting_beats_the_unweighted_classifier_under_covariate_shift(make):
    plain, weighted = [], []
    for seed in range(5):
        Xs, ys, Xt, yt = misspecified_shift(seed)
        plain.append(LogisticRegression(max_iter=1000).fit(Xs, ys).score(Xt, yt))
        weighted.append(make(Xt).fit(Xs, ys).score(Xt, yt))
    assert np.mean(weighted) > np.mean(plain) + 0.2


def test_without_target_every_weight_is_one_and_the_classifier_is_the_plain_one():
    Xs, ys, _, _ = misspecified_shift(0)
    for est in (KMM(), KLIEP()):
        est.fit(Xs, ys)
        np.testing.assert_array_equal(est.weights_, 1.0)
        plain = LogisticRegression(max_iter=1000).fit(Xs, ys)
        np.testing.assert_array_equal(est.predict(Xs), plain.predict(Xs))
        np.testing.assert_allclose(est.predict_proba(Xs), plain.predict_proba(Xs))


def test_target_as_parameter_and_to_fit_are_the_same_and_grid_search_works():
    Xs, ys, Xt, yt = misspecified_shift(1)
    a = KMM(Xt=Xt).fit(Xs, ys)
    b = KMM().fit(Xs, ys, Xt)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    grid = GridSearchCV(KMM(Xt=Xt), {"B": [2.0, 1000.0]}, cv=3).fit(Xs, ys)
    assert grid.best_estimator_.weights_.shape == (len(Xs),)


def test_bad_input_is_one_line():
    Xs, ys, Xt, _ = misspecified_shift(2)
    with pytest.raises(InputError, match="given twice"):
        KMM(Xt=Xt).fit(Xs, ys, Xt)
    with pytest.raises(InputError, match="does not accept sample_weight"):
        KMM(estimator=KNeighborsClassifier(1)).fit(Xs, ys, Xt)
    with pytest.raises(InputError, match="Xt has 3 features but X has 2"):
        KLIEP().fit(Xs, ys, np.ones((5, 3)))
    with pytest.raises(InputError, match="eps must be"):
        KMM(eps=1.5).fit(Xs, ys, Xt)
    with pytest.raises(InputError, match="B=0.001 is too small"):
        KMM(B=0.001, eps=0.1).fit(Xs, ys, Xt)
    with pytest.raises(InputError, match="sigmas"):
        KLIEP(sigmas=[]).fit(Xs, ys, Xt)


# ------------------------------------------------------------ TrAdaBoost

class SignOfFirstFeature(ClassifierMixin, BaseEstimator):
    """Predicts [x0 > 0] whatever it is fitted on; keeps the weights it got."""

    def fit(self, X, y, sample_weight=None):
        self.classes_ = np.unique(y)
        self.seen_weight_ = np.asarray(sample_weight)
        return self

    def predict(self, X):
        return (np.asarray(X)[:, 0] > 0).astype(int)


def test_tradaboost_weight_update_is_the_papers():
    rng = np.random.default_rng(0)
    Xs, Xt = rng.standard_normal((50, 2)), rng.standard_normal((10, 2))
    ys = (Xs[:, 0] > 0).astype(int)
    ys[:10] = 1 - ys[:10]                                  # 10 source samples disagree
    yt = (Xt[:, 0] > 0).astype(int)
    yt[:3] = 1 - yt[:3]                                    # 3 of 10 target samples wrong
    est = TrAdaBoost(SignOfFirstFeature(), n_estimators=2).fit(Xs, ys, Xt, yt)
    assert est.errors_[0] == pytest.approx(0.3)
    beta_t = 0.3 / 0.7
    beta = 1 / (1 + np.sqrt(2 * np.log(50) / 2))
    w = np.ones(60)
    w[:10] *= beta
    w[50:53] /= beta_t
    # round 2 is fitted with p = w / sum w, scaled to mean 1
    np.testing.assert_allclose(est.estimators_[1].seen_weight_, 60 * w / w.sum())
    # round 2's target error is weighted: 3 / beta_t against 7
    e2 = (3 / beta_t) / (3 / beta_t + 7)
    assert est.errors_[1] == pytest.approx(e2)
    assert est.betas_ == pytest.approx([beta_t, e2 / (1 - e2)])
    np.testing.assert_allclose(est.estimator_weights_, np.log(1 / np.asarray(est.betas_)))


def few_labelled_targets(seed, d=20, ns=400, n_labelled=20, n_test=500):
    """Half of the source follows the target's concept [x0 + x1 > 0], the
    other half another one, [x0 - x1 > 0]; 20 labelled target samples in
    20 dimensions are too few alone."""
    rng = np.random.default_rng(seed)
    same, other = np.zeros(d), np.zeros(d)
    same[:2], other[:2] = (1, 1), (1, -1)
    Xs = rng.standard_normal((ns, d))
    ys = np.concatenate([Xs[: ns // 2] @ same > 0, Xs[ns // 2:] @ other > 0]).astype(int)
    Xl, Xe = rng.standard_normal((n_labelled, d)), rng.standard_normal((n_test, d))
    return Xs, ys, Xl, (Xl @ same > 0).astype(int), Xe, (Xe @ same > 0).astype(int)


def test_tradaboost_beats_source_target_and_pooled_training():
    boosted, best_other = [], []
    for seed in range(4):
        Xs, ys, Xl, yl, Xe, ye = few_labelled_targets(seed)
        lr = LogisticRegression(max_iter=1000)
        others = [clone(lr).fit(Xs, ys).score(Xe, ye), clone(lr).fit(Xl, yl).score(Xe, ye),
                  clone(lr).fit(np.vstack([Xs, Xl]), np.concatenate([ys, yl])).score(Xe, ye)]
        best_other.append(max(others))
        boosted.append(TrAdaBoost(n_estimators=20).fit(Xs, ys, Xl, yl).score(Xe, ye))
    assert np.mean(boosted) > np.mean(best_other) + 0.03


def test_tradaboost_contract():
    Xs, ys, Xl, yl, Xe, _ = few_labelled_targets(5, ns=60)
    a = TrAdaBoost(n_estimators=4, Xt=Xl, yt=yl).fit(Xs, ys)
    b = TrAdaBoost(n_estimators=4).fit(Xs, ys, Xl, yl)
    np.testing.assert_array_equal(a.predict(Xe), b.predict(Xe))
    assert len(a.estimators_) == 4 and a.estimator_weights_[0] == 0.0   # round 1 of 4 does not vote
    alone = TrAdaBoost().fit(Xs, ys)                                   # no target: the base model
    np.testing.assert_array_equal(alone.predict(Xe),
                                  LogisticRegression(max_iter=1000).fit(Xs, ys).predict(Xe))
    with pytest.raises(InputError, match="together"):
        TrAdaBoost().fit(Xs, ys, Xl)
    with pytest.raises(InputError, match="given twice"):
        TrAdaBoost(Xt=Xl, yt=yl).fit(Xs, ys, Xl, yl)
    with pytest.raises(InputError, match="does not accept sample_weight"):
        TrAdaBoost(KNeighborsClassifier(1)).fit(Xs, ys, Xl, yl)
    with pytest.raises(InputError, match="yt has 3 labels for 20 samples"):
        TrAdaBoost().fit(Xs, ys, Xl, yl[:3])


DATA_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                        "office_caltech10_surf")


@pytest.mark.skipif(not os.path.isdir(DATA_DIR), reason="Office-Caltech10 SURF not found")
@pytest.mark.parametrize("method, expected", [
    ("lr", {"W->D": 87.26, "D->W": 79.32}),
    ("kmm", {"W->D": 87.26, "D->W": 78.31}),
    ("kliep", {"W->D": 87.26, "D->W": 79.32}),
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
