"""MMD estimators, kernels and the permutation test (mmd.kernels, mmd.distance)."""
import numpy as np
import pytest
import tensorflow as tf
from sklearn.metrics.pairwise import polynomial_kernel as sk_poly
from sklearn.metrics.pairwise import rbf_kernel as sk_rbf

from mmd.distance import mmd2, mmd_test
from mmd.kernels import make_kernel, median_heuristic, multi_rbf_kernel, polynomial_kernel, rbf_bandwidths, rbf_kernel
from mmd.validation import InputError


def gauss(rng, n, d=3, shift=0.0):
    X = rng.standard_normal((n, d))
    X[:, 0] += shift
    return X


# --------------------------------------------------------------------- kernels

def test_kernels_match_scikit_learn():
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((7, 4)), rng.standard_normal((5, 4))
    np.testing.assert_allclose(rbf_kernel(X, Y, gamma=0.3).numpy(), sk_rbf(X, Y, gamma=0.3),
                               rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(polynomial_kernel(X, Y, degree=2, gamma=0.5, coef0=1.0).numpy(),
                               sk_poly(X, Y, degree=2, gamma=0.5, coef0=1.0), rtol=1e-12)
    # multi-kernel = average of RBFs
    ref = (sk_rbf(X, Y, gamma=0.5) + sk_rbf(X, Y, gamma=2.0)) / 2
    np.testing.assert_allclose(multi_rbf_kernel(X, Y, gammas=[0.5, 2.0]).numpy(), ref, rtol=1e-12)


def test_median_heuristic_and_bandwidths():
    X = np.array([[0.0], [1.0], [3.0]])  # distances 1, 2, 3 -> median 2, gamma = 1/(2*4)
    assert median_heuristic(X) == pytest.approx(1 / 8)
    assert median_heuristic(np.ones((4, 2))) == 1.0  # all identical: no NaN
    assert rbf_bandwidths(1.0, 5, 2.0) == [0.25, 0.5, 1.0, 2.0, 4.0]


def test_paired_evaluation_matches_gram_diagonal():
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    for name, kw in [("linear", {}), ("rbf", {"gamma": 0.7}), ("polynomial", {"gamma": 0.2}),
                     ("multi-rbf", {"gamma": 0.5})]:
        k = make_kernel(name, X, Y, **kw)
        np.testing.assert_allclose(k.paired(X, Y).numpy(), np.diag(k.gram(X, Y).numpy()),
                                   rtol=1e-12, err_msg=name)


# ------------------------------------------------------------------------ mmd2

def test_mmd2_equals_its_definition_from_scikit_learn_kernels():
    """Biased: mean Kxx + mean Kyy - 2 mean Kxy; unbiased: the same without the diagonals, / m(m-1).
    (A sample against itself gives 0 for any kernel under the biased form, so that checks nothing.)"""
    rng = np.random.default_rng(2)
    X, Y = rng.standard_normal((40, 5)), rng.standard_normal((30, 5)) + 0.4
    for kernel, reference in (("rbf", lambda A, B: sk_rbf(A, B, gamma=0.2)),
                              ("polynomial", lambda A, B: sk_poly(A, B, degree=2, gamma=0.5, coef0=1.0)),
                              ("linear", lambda A, B: A @ B.T)):
        params = {"rbf": {"gamma": 0.2}, "polynomial": {"degree": 2, "gamma": 0.5, "coef0": 1.0}}.get(kernel, {})
        Kxx, Kyy, Kxy = reference(X, X), reference(Y, Y), reference(X, Y)
        biased = Kxx.mean() + Kyy.mean() - 2 * Kxy.mean()
        m, n = len(X), len(Y)
        unbiased = ((Kxx.sum() - np.trace(Kxx)) / (m * (m - 1)) + (Kyy.sum() - np.trace(Kyy)) / (n * (n - 1))
                    - 2 * Kxy.mean())
        assert float(mmd2(X, Y, kernel=kernel, **params)) == pytest.approx(biased, rel=1e-10), kernel
        assert float(mmd2(X, Y, kernel=kernel, estimator="unbiased", **params)) == pytest.approx(unbiased, rel=1e-9), kernel


@pytest.mark.parametrize("kernel", ["linear", "rbf", "multi-rbf"])
def test_mmd_grows_with_mean_shift(kernel):
    rng = np.random.default_rng(3)
    X, Y0 = gauss(rng, 200), gauss(rng, 200)
    values = [float(mmd2(X, Y0 + [s, 0, 0], kernel=kernel, gamma=0.2)) for s in (0, 0.5, 1, 2)]
    assert np.all(np.diff(values) > 0), values


def test_linear_kernel_mmd_is_distance_of_means():
    rng = np.random.default_rng(4)
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((20, 4)) + 1
    expected = np.sum((X.mean(0) - Y.mean(0)) ** 2)
    assert float(mmd2(X, Y, kernel="linear")) == pytest.approx(expected, rel=1e-10)


def test_unbiased_estimator_is_unbiased_and_biased_is_not():
    # linear kernel: the population MMD^2 is ||delta||^2 and the V-statistic
    # is off by tr(Sigma)/m + tr(Sigma)/n = 3/15 + 3/10 = 0.5 in expectation
    rng = np.random.default_rng(5)
    delta = np.array([0.6, 0.0, 0.0])
    unbiased, biased = [], []
    for _ in range(300):
        X, Y = rng.standard_normal((15, 3)), rng.standard_normal((10, 3)) + delta
        unbiased.append(float(mmd2(X, Y, kernel="linear", estimator="unbiased")))
        biased.append(float(mmd2(X, Y, kernel="linear", estimator="biased")))
    truth = delta @ delta
    se = np.std(unbiased) / np.sqrt(len(unbiased))
    assert abs(np.mean(unbiased) - truth) < 4 * se
    assert np.mean(biased) - truth == pytest.approx(0.5, abs=4 * np.std(biased) / np.sqrt(300))


def test_unbiased_rbf_is_centred_at_zero_under_the_null():
    rng = np.random.default_rng(6)
    vals = [float(mmd2(gauss(rng, 20), gauss(rng, 25), gamma=0.5, estimator="unbiased"))
            for _ in range(200)]
    assert abs(np.mean(vals)) < 4 * np.std(vals) / np.sqrt(len(vals))


def test_linear_time_estimator_tracks_the_shift():
    rng = np.random.default_rng(7)
    X = gauss(rng, 2000)
    near = float(mmd2(X, gauss(rng, 2000), gamma=0.5, estimator="linear"))
    far = float(mmd2(X, gauss(rng, 2000, shift=1.5), gamma=0.5, estimator="linear"))
    assert abs(near) < 0.02 < far


def test_mmd2_is_differentiable_and_can_be_minimised():
    rng = np.random.default_rng(8)
    X = tf.constant(rng.standard_normal((50, 2)), tf.float32)
    Y = tf.Variable(rng.standard_normal((50, 2)) + 2.0, dtype=tf.float32)
    opt_values = []
    for _ in range(30):
        with tf.GradientTape() as tape:
            loss = mmd2(X, Y, kernel="rbf", gamma=0.5)
        grad = tape.gradient(loss, Y)
        assert loss.dtype == tf.float32 and np.all(np.isfinite(grad.numpy()))
        Y.assign_sub(5.0 * grad)
        opt_values.append(float(loss))
    assert opt_values[-1] < 0.5 * opt_values[0]


# ------------------------------------------------------------------- the test

def test_p_values_are_uniform_under_the_null_and_small_under_a_shift():
    rng = np.random.default_rng(9)
    p_null = np.array([mmd_test(gauss(rng, 25), gauss(rng, 25), gamma=0.5,
                                n_permutations=99, seed=i).p_value for i in range(120)])
    # valid test: about 5 % rejections at 0.05, p spread over [0, 1]
    assert np.mean(p_null <= 0.05) < 0.12
    assert 0.4 < np.mean(p_null) < 0.6
    assert np.mean(p_null <= 0.5) == pytest.approx(0.5, abs=0.15)
    res = mmd_test(gauss(rng, 50), gauss(rng, 50, shift=1.0), n_permutations=200, seed=0)
    # 1 / 201 is the smallest p-value 200 permutations can give
    assert res.p_value == pytest.approx(1 / 201) and res.statistic > 0


def test_permutation_statistic_equals_mmd2_and_is_reproducible():
    rng = np.random.default_rng(10)
    X, Y = gauss(rng, 20), gauss(rng, 30, shift=0.3)
    for est in ("biased", "unbiased"):
        r1 = mmd_test(X, Y, estimator=est, gamma=0.4, n_permutations=50, seed=3)
        r2 = mmd_test(X, Y, estimator=est, gamma=0.4, n_permutations=50, seed=3)
        assert r1 == r2
        assert r1.statistic == pytest.approx(float(mmd2(X, Y, estimator=est, gamma=0.4)),
                                             rel=1e-9)


def test_linear_estimator_test_uses_normal_null():
    rng = np.random.default_rng(11)
    shifted = mmd_test(gauss(rng, 2000), gauss(rng, 2000, shift=1.0), estimator="linear")
    same = mmd_test(gauss(rng, 2000), gauss(rng, 2000), estimator="linear")
    assert shifted.p_value < 1e-3 and same.p_value > 1e-3 and shifted.n_permutations == 0


# ------------------------------------------------------------------ bad input

@pytest.mark.parametrize("X, Y, match", [
    (np.ones((5, 3)), np.ones((5, 4)), "features"),
    (np.full((5, 3), np.nan), np.ones((5, 3)), "NaN"),
    (np.array([[1.0, np.inf]]), np.ones((3, 2)), "infinity"),
    (np.ones(5), np.ones((5, 1)), "Expected 2D array"),
    ("abc", np.ones((5, 3)), "string"),
    (np.array([["a", "b"]]), np.ones((5, 2)), "numbers"),
])
def test_bad_samples_raise_value_error(X, Y, match):
    with pytest.raises(InputError, match=match):
        mmd2(X, Y)


def test_bad_kernel_and_estimator_names():
    X = np.ones((4, 2))
    with pytest.raises(InputError, match="unknown kernel 'gauss'"):
        mmd2(X, X, kernel="gauss")
    with pytest.raises(InputError, match="unknown estimator"):
        mmd2(X, X, estimator="fast")
    with pytest.raises(InputError, match="minimum of 2"):
        mmd2(np.ones((1, 2)), X, estimator="unbiased")
    with pytest.raises(InputError, match="gamma"):
        mmd2(X, X, kernel="rbf", gamma=-1.0)
    with pytest.raises(InputError, match="n_permutations"):
        mmd_test(X, X, n_permutations=0)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(12)
    X, Y = rng.standard_normal((10, 3)), rng.standard_normal((12, 3))
    X0, Y0 = X.copy(), Y.copy()
    mmd2(X, Y)
    mmd_test(X, Y, n_permutations=10)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)
