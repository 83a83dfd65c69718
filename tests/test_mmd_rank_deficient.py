"""Eq. 20 when X H X^T is singular (issue 24): duplicate samples, zero or
constant features, a linear kernel of rank d < n, n_components equal to the
rank.  Every solver path must return scipy.linalg.eigh's answer (the
subspace of the k largest nu of B a = nu S a, S = X M X^T + lambda I, and the
1-NN labels it leads to), or, where k exceeds the rank and no answer exists,
a one-line InputError that names the rank.

The inputs are exactly singular by construction, not by chance, so the old
code's failures (a TensorFlow 'Input matrix is not invertible' from the
iterative solver's shifted solves) happen on every run.
"""
import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from mmd import eigensolvers, graph_steps, lapack_steps
from mmd.benchmark import dense_reference
from mmd.eigensolvers import Eq20Solver
from mmd.solvers import BDA, JDA, TCA, kernel_rows
from mmd.validation import InputError


def gaussian_classes(rng, n, d, centres):
    y = np.arange(n) % len(centres)
    return centres[y] + rng.standard_normal((n, d)), y


def make_case(case, seed=0):
    """(Xs, ys, Xt, n_components, rank of X H X^T, or of K H K for "low-rank").

    The ranks (8-10) are below k + guard = 13, the vectors the iterative
    solver carries, while the dimension (48-90) keeps it iterating: that is
    where the old code's shifted solves were singular."""
    rng = np.random.default_rng(seed)
    if case == "duplicates":     # 11 distinct samples, each 8 times, in d = 60: rank 10
        d = 60
        centres = 3.0 * rng.standard_normal((3, d))
        Xs, ys = gaussian_classes(rng, 6, d, centres)
        Xt, _ = gaussian_classes(rng, 5, d, centres + 1.0)
        return np.repeat(Xs, 8, axis=0), np.repeat(ys, 8), np.repeat(Xt, 8, axis=0), 3, 10
    if case == "near-duplicates":    # the same, each copy moved by 1e-4: full rank,
        Xs, ys, Xt, k, _ = make_case("duplicates", seed)    # 50 eigenvalues ~1e-11
        return (Xs + 1e-4 * rng.standard_normal(Xs.shape), ys,
                Xt + 1e-4 * rng.standard_normal(Xt.shape), k, None)
    d = 8
    centres = 3.0 * rng.standard_normal((3, d))
    Xs, ys = gaussian_classes(rng, 60, d, centres)
    Xt, _ = gaussian_classes(rng, 50, d, centres + 1.0)
    if case == "zero-columns":       # 8 informative features, 52 exact zeros: rank 8
        return np.hstack([Xs, np.zeros((60, 52))]), ys, np.hstack([Xt, np.zeros((50, 52))]), 3, 8
    if case == "constant-columns":   # unit rows + 40 features of 0.3 (still constant
        Xs /= np.linalg.norm(Xs, axis=1, keepdims=True)      # after the unit-row
        Xt /= np.linalg.norm(Xt, axis=1, keepdims=True)      # scaling): rank 8
        return (np.hstack([Xs, np.full((60, 40), 0.3)]), ys,
                np.hstack([Xt, np.full((50, 40), 0.3)]), 3, 8)
    if case == "low-rank":           # d = 8 < n = 110: the linear kernel has rank 8
        return Xs, ys, Xt, 6, 8
    if case == "k-equals-rank":      # zero columns (primal) or the linear kernel, k = 8
        Xs, ys, Xt, _, rank = make_case("zero-columns", seed)
        return Xs, ys, Xt, rank, rank
    raise AssertionError(case)


def wide_case(case, seed=0):
    """Singular scatters of rank 40-44 > 2 (k + guard): the iterative solver
    itself runs on them."""
    rng = np.random.default_rng(seed)
    d = 40
    centres = 3.0 * rng.standard_normal((3, d))
    if case == "duplicates":         # 45 distinct samples, each twice, in d = 60
        centres = 3.0 * rng.standard_normal((3, 60))
        Xs, ys = gaussian_classes(rng, 24, 60, centres)
        Xt, _ = gaussian_classes(rng, 21, 60, centres + 1.0)
        return np.repeat(Xs, 2, axis=0), np.repeat(ys, 2), np.repeat(Xt, 2, axis=0)
    Xs, ys = gaussian_classes(rng, 60, d, centres)
    Xt, _ = gaussian_classes(rng, 50, d, centres + 1.0)
    if case == "zero-columns":
        return np.hstack([Xs, np.zeros((60, 40))]), ys, np.hstack([Xt, np.zeros((50, 40))])
    Xs /= np.linalg.norm(Xs, axis=1, keepdims=True)
    Xt /= np.linalg.norm(Xt, axis=1, keepdims=True)
    return np.hstack([Xs, np.full((60, 10), 0.3)]), ys, np.hstack([Xt, np.full((50, 10), 0.3)])


CASES = ["duplicates", "near-duplicates", "zero-columns", "constant-columns", "low-rank",
         "k-equals-rank"]
#: (kernel, gamma, n_landmarks) of the estimators
KERNELS = {"primal": ("primal", 1.0, None), "linear": ("linear", 1.0, None),
           "rbf": ("rbf", 0.5, None), "nystrom-linear": ("linear", 1.0, 50),
           "nystrom-rbf": ("rbf", 0.5, 50)}


def unit_rows(X):
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def dense_mmd_matrix(ys, yt, nt, n_classes, mu):
    """M of eq. 10-12 entry by entry (the reference's C * M0 weighting), unit
    Frobenius norm; yt None: no pseudo labels yet."""
    ns = len(ys)
    n = ns + nt
    e0 = np.concatenate([np.full(ns, 1 / ns), np.full(n - ns, -1 / (n - ns))])
    M = (1 - mu) * max(n_classes, 1) * np.outer(e0, e0)
    if yt is not None:
        for c in range(n_classes):
            if np.any(ys == c) and np.any(yt == c):
                e = np.concatenate([(ys == c) / np.sum(ys == c), -1.0 * (yt == c) / np.sum(yt == c)])
                M += mu * np.outer(e, e)
    return M / np.linalg.norm(M)


def reference_fit(P, ns, ys, mu, n_iter, k, lam=1.0):
    """Dense eq. 20 by scipy.linalg.eigh(B, S) (S positive definite, B = P^T H P
    only semi-definite: the k largest nu = 1/phi are the k smallest phi) and
    1-NN, iterated as JDA does.  Returns (labels per iteration, phi, A)."""
    n = len(P)
    H = np.eye(n) - 1.0 / n
    B = P.T @ H @ P
    history, pseudo = [], None
    for _ in range(n_iter):
        M = dense_mmd_matrix(ys, pseudo, n - ns, len(np.unique(ys)), mu)
        S = P.T @ M @ P + lam * np.eye(P.shape[1])
        nu, V = scipy.linalg.eigh(0.5 * (B + B.T), 0.5 * (S + S.T))
        nu, A = nu[::-1], V[:, ::-1]
        Z = unit_rows(P @ A[:, :k])
        d2 = ((Z[ns:, None, :] - Z[None, :ns, :]) ** 2).sum(-1)
        pseudo = ys[np.argmin(d2, axis=1)]
        history.append(pseudo)
    return history, 1.0 / nu[:k], A, nu


def sin_largest_angle(V1, V2):
    Q1, Q2 = np.linalg.qr(V1)[0], np.linalg.qr(V2)[0]
    return float(np.linalg.norm(Q2 - Q1 @ (Q1.T @ Q2), 2))


def design(est, Xs, Xt):
    """The rows eq. 20 works on, as the estimator defines them: the unit-norm
    samples, their kernel values, or their Nystrom design rows."""
    X = tf.constant(unit_rows(np.vstack([Xs, Xt])))
    if est.kernel == "primal":
        return X.numpy()
    return kernel_rows(X, est.X_fit_, est.kernel, est.gamma_, est.nystrom_map_).numpy()


@pytest.mark.parametrize("solver", ["iterative", "exact"])
@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("case", CASES)
def test_singular_scatter_gives_scipys_subspace_and_labels(case, kernel, solver):
    Xs, ys, Xt, k, _ = make_case(case)
    if case == "k-equals-rank" and kernel in ("rbf", "nystrom-rbf"):
        pytest.skip("the rbf kernel has full rank")
    name, gamma, landmarks = KERNELS[kernel]
    est = JDA(n_components=k, kernel=name, gamma=gamma, n_iter=3, solver=solver,
              n_landmarks=landmarks, random_state=0).fit(Xs, ys, Xt)
    P = design(est, Xs, Xt)
    history, phi, A, nu = reference_fit(P, len(Xs), ys, 0.5, est.n_iter_, k)
    # the problem is well posed: the k-th nu far above rounding, a gap after it
    # (with k = rank, nu[k] is rounding)
    assert nu[k - 1] > 1e-8 * nu[0] and (k == len(nu) or nu[k - 1] > 1.01 * nu[k])
    np.testing.assert_array_equal(est.pseudo_labels_, history[-1])
    np.testing.assert_allclose(est.eigenvalues_, phi, rtol=1e-7)
    assert np.all(np.isfinite(est.components_))
    assert sin_largest_angle(est.components_, A[:, :k]) < 1e-6
    assert np.all(np.isfinite(est.transform(Xt)))
    # and no rescue was needed: a singular B is not a reason to give up iterating
    assert est.n_solver_fallbacks_ == 0


@pytest.mark.parametrize("case", ["duplicates", "zero-columns", "constant-columns"])
def test_the_iterative_solver_itself_solves_the_singular_primal_problems(case):
    # rank 40-44 > 2 (k + guard): the iterative solver runs, and needs no
    # fallback to the exact one to get there
    Xs, ys, Xt = wide_case(case)
    k = 3
    est = JDA(n_components=k, n_iter=3).fit(Xs, ys, Xt)
    assert est.n_solver_fallbacks_ == 0 and min(est.n_solver_steps_) >= 1
    exact = JDA(n_components=k, n_iter=3, solver="exact").fit(Xs, ys, Xt)
    np.testing.assert_array_equal(est.pseudo_labels_, exact.pseudo_labels_)
    np.testing.assert_allclose(est.eigenvalues_, exact.eigenvalues_, rtol=1e-9)


@pytest.mark.parametrize("case, kernel", [("duplicates", "primal"), ("zero-columns", "primal"),
                                          ("constant-columns", "primal"), ("low-rank", "linear"),
                                          ("duplicates", "rbf")])
@pytest.mark.parametrize("solver", ["iterative", "exact"])
def test_more_components_than_the_rank_is_a_one_line_error(case, kernel, solver):
    # the rank of X H X^T, or of K H K: 11 distinct samples give 10 (for K
    # too: the constant vector is inside its column space); the linear kernel
    # of d = 8 features gives 8
    Xs, ys, Xt, _, rank = make_case(case)
    for est in (JDA(n_components=rank + 1, kernel=kernel, n_iter=2, solver=solver),
                TCA(n_components=rank + 1, kernel=kernel, solver=solver)):
        with pytest.raises(InputError, match=rf"n_components={rank + 1}.*rank {rank}\b") as info:
            est.fit(Xs, ys, Xt)
        assert "\n" not in str(info.value)


def test_tca_on_duplicates_matches_scipy():
    Xs, ys, Xt, k, _ = make_case("duplicates", seed=3)
    est = TCA(n_components=k).fit(Xs, ys, Xt)
    history, phi, A, _ = reference_fit(design(est, Xs, Xt), len(Xs), ys, 0.0, 1, k)
    np.testing.assert_array_equal(est.pseudo_labels_, history[-1])
    assert sin_largest_angle(est.components_, A[:, :k]) < 1e-6


@pytest.mark.parametrize("case", ["duplicates", "zero-columns", "constant-columns"])
def test_the_benchmarks_scipy_eig_reference_survives_a_singular_scatter(case):
    Xs, ys, Xt, k, _ = make_case(case)
    labels = dense_reference(Xs, ys, Xt, "jda", k, 1.0, 3, 0.5)
    history, _, _, _ = reference_fit(unit_rows(np.vstack([Xs, Xt])), len(Xs), ys, 0.5, 3, k)
    np.testing.assert_array_equal(labels, history[-1])


def test_the_benchmarks_scipy_eig_reference_names_the_rank():
    Xs, ys, Xt, _, rank = make_case("zero-columns")
    with pytest.raises(InputError, match=rf"rank {rank}\b"):
        dense_reference(Xs, ys, Xt, "jda", rank + 1, 1.0, 2, 0.5)


@pytest.mark.parametrize("path", ["lapack", "tensorflow"])
def test_a_failed_shifted_solve_hands_the_problem_to_the_exact_solver(path, monkeypatch):
    """The last line of defence: a singular shifted system inside the
    iterative solver is a fallback, never a TensorFlow or LinAlgError, on
    the CPU's NumPy steps and on the TensorFlow graphs alike."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 60))
    Pc = X - X.mean(0)
    B = tf.constant(Pc.T @ Pc)
    U, w = tf.constant(rng.standard_normal((60, 3))), np.full(3, 1 / 3)

    if path == "tensorflow":
        def singular(*args):
            raise tf.errors.InvalidArgumentError(None, None, "Input matrix is not invertible.")

        monkeypatch.setattr(eigensolvers, "lapack_preferred", lambda: False)
        monkeypatch.setattr(graph_steps, "_first_cold", singular)
    else:
        def singular(*args):
            raise np.linalg.LinAlgError("Singular matrix")

        monkeypatch.setattr(lapack_steps, "shift_invert", singular)
    solver = Eq20Solver(1.0, 5, B=B)
    phi, V = solver.solve(U, w)
    phi_e, V_e = eigensolvers.solve_exact(U, w, 1.0, 5, B=B)
    assert solver.fallbacks == 1
    np.testing.assert_allclose(phi, phi_e, rtol=1e-12)
    np.testing.assert_allclose(V.numpy(), V_e.numpy(), atol=1e-12)


# ------------------------------------------------ the fast path and scipy-eig

@pytest.fixture(params=["lapack", "tensorflow"])
def backend(request, monkeypatch):
    """The dense eigen-solves through LAPACK (what a CPU gets) or through
    TensorFlow (what a GPU gets), both run here on the CPU."""
    if request.param == "tensorflow":
        monkeypatch.setattr(eigensolvers, "lapack_preferred", lambda: False)
    return request.param


def ordinary_case(n_features, seed=0):
    """Full-rank Gaussian classes, the target shifted: the B side
    (n = 110 > d) or the Gram side (d > n); rank 60 or 109, above the
    2 (k + guard) = 40 vectors where the iterative solver takes over."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * rng.standard_normal((3, n_features))
    Xs, ys = gaussian_classes(rng, 60, n_features, centres)
    Xt, _ = gaussian_classes(rng, 50, n_features, 0.8 * centres + 1.0)
    return Xs, ys, Xt


@pytest.mark.parametrize("method", ["tca", "jda", "bda"])
@pytest.mark.parametrize("case", ["duplicates", "zero-columns", "constant-columns",
                                  "ordinary", "ordinary-gram"])
def test_the_fast_path_and_the_scipy_eig_path_give_the_same_subspaces_and_labels(
        case, method, backend):
    """The estimators (LAPACK or TensorFlow eigen-solves, the iterative
    solver for JDA / BDA, one dense solve for TCA) against the benchmark's
    `--solver scipy-eig` reference (n x n M and H, a general QZ eig)."""
    if case.startswith("ordinary"):
        Xs, ys, Xt = ordinary_case(60 if case == "ordinary" else 150)
        k = 10
    else:
        Xs, ys, Xt, k, _ = make_case(case)
    mu = {"tca": 0.0, "jda": 0.5, "bda": 0.75}[method]
    est = (TCA(n_components=k) if method == "tca" else
           JDA(n_components=k, n_iter=3) if method == "jda" else
           BDA(n_components=k, n_iter=3, mu=mu)).fit(Xs, ys, Xt)
    labels, phi, A = dense_reference(Xs, ys, Xt, method, k, 1.0, 3, mu, return_solution=True)
    np.testing.assert_array_equal(est.pseudo_labels_, labels)
    np.testing.assert_allclose(est.eigenvalues_, phi, rtol=1e-7)
    assert sin_largest_angle(est.components_, A) < 1e-6
    assert est.n_solver_fallbacks_ == 0
    if method != "tca" and case in ("ordinary", "ordinary-gram"):
        assert min(est.n_solver_steps_) >= 1        # the iterative solver did the work


@pytest.mark.parametrize("case", ["duplicates", "zero-columns", "ordinary-gram"])
def test_the_lapack_and_tensorflow_eigen_solves_give_the_same_model(case, monkeypatch):
    if case == "ordinary-gram":
        Xs, ys, Xt = ordinary_case(150)
        k = 10
    else:
        Xs, ys, Xt, k, _ = make_case(case)
    fits = []
    for preferred in (True, False):
        monkeypatch.setattr(eigensolvers, "lapack_preferred", lambda p=preferred: p)
        fits.append([cls(n_components=k).fit(Xs, ys, Xt) for cls in (TCA, JDA)])
    for lapack, tensorflow in zip(*fits, strict=True):
        np.testing.assert_array_equal(lapack.pseudo_labels_, tensorflow.pseudo_labels_)
        np.testing.assert_allclose(lapack.eigenvalues_, tensorflow.eigenvalues_, rtol=1e-9)
        # same columns, signs included (each column's largest entry positive)
        np.testing.assert_allclose(lapack.components_, tensorflow.components_, atol=1e-7)
