"""The eq. 20 eigensolvers (mmd.eigensolvers): the iterative one against the exact one."""
import numpy as np
import pytest
import scipy.linalg
import tensorflow as tf

from mmd import eigensolvers, lapack_steps
from mmd.eigensolvers import Eq20Solver, solve_exact, symmetric_eigh
from mmd.graph_steps import top_eigenpairs
from mmd.validation import InputError


def pencil(seed=0, n=300, p=120, r=4, decay=0.98):
    """Centred data Pc (n, p) with a slowly decaying spectrum (near-equal
    eigenvalues around k, as on the real data) and low-rank M factors."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((p, p)))
    X = rng.standard_normal((n, p)) @ (decay ** np.arange(p) * Q).T
    Pc = X - X.mean(0)
    U = rng.standard_normal((p, r))
    w = rng.uniform(0.5, 2.0, r)
    return Pc, U, w / np.sqrt(np.sum(w ** 2))


def eq20_residual(U, w, lam, B, phi, V):
    """max_j ||S a_j - phi_j B a_j|| / ||S a_j||, S = U diag(w) U^T + lam I."""
    S = U @ np.diag(w) @ U.T + lam * np.eye(U.shape[0])
    return float(np.max(np.linalg.norm(S @ V - (B @ V) * phi[None, :], axis=0)
                        / np.linalg.norm(S @ V, axis=0)))


def sin_largest_angle(V1, V2):
    """Sine of the largest principal angle between span(V1) and span(V2)."""
    Q1, Q2 = np.linalg.qr(V1)[0], np.linalg.qr(V2)[0]
    return float(np.linalg.norm(Q2 - Q1 @ (Q1.T @ Q2), 2))


def _top_tf(delta, F, K, k, **kw):
    res = top_eigenpairs(delta, F, K, k, **kw)
    return res.theta.numpy(), res.X.numpy(), res.steps, res.residual, res.converged


#: the iterative solver's inner loop: TensorFlow graphs (a GPU's path) and
#: NumPy / LAPACK (the CPU's), the same contract
TOP = {"tensorflow": _top_tf, "lapack": lapack_steps.top_eigenpairs}


@pytest.mark.parametrize("path", sorted(TOP))
def test_top_eigenpairs_of_diagonal_plus_low_rank_match_a_dense_eigh(path):
    rng = np.random.default_rng(1)
    N, f, k = 200, 6, 15
    delta = np.sort(rng.gamma(2.0, 1.0, N))[::-1]
    F = rng.standard_normal((N, f))
    K = rng.standard_normal((f, f))
    K = (K + K.T) / 2
    A = np.diag(delta) + F @ K @ F.T
    theta, X = np.linalg.eigh(A)
    theta, X = theta[::-1][:k], X[:, ::-1][:, :k]
    got, V, steps, residual, converged = TOP[path](delta, F, K, k, tol=1e-12)
    assert converged and residual < 1e-12 and steps >= 1
    np.testing.assert_allclose(got[:k], theta, rtol=1e-11, atol=1e-11)
    assert sin_largest_angle(V[:, :k], X) < 1e-9
    # started from its own answer it has nothing left to do
    again = TOP[path](delta, F, K, k, X0=V, tol=1e-12)
    assert again[2] == 0 and again[4]


@pytest.mark.parametrize("path", sorted(TOP))
def test_top_eigenpairs_with_repeated_eigenvalues_stay_orthonormal_and_complete(path):
    rng = np.random.default_rng(6)
    N, k = 120, 20
    delta = np.repeat(np.sort(rng.gamma(2.0, 1.0, N // 3))[::-1], 3)   # each value three times
    F = 1e-3 * rng.standard_normal((N, 2))
    K = np.eye(2)
    theta = np.linalg.eigvalsh(np.diag(delta) + F @ F.T)[::-1][:k]
    got, X, steps, _, converged = TOP[path](delta, F, K, k)
    assert converged and steps >= 1
    np.testing.assert_allclose(got[:k], theta, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(X.T @ X, np.eye(X.shape[1]), atol=1e-12)


def test_the_inertia_count_matches_the_dense_spectrum():
    """Sylvester's count of the eigenvalues above sigma (mmd.lapack_steps)
    against a dense eigvalsh: kappa of both signs and zeros, sigma between
    eigenvalues, below all and above all."""
    rng = np.random.default_rng(7)
    N, f = 150, 5
    delta = np.sort(rng.gamma(2.0, 1.0, N))[::-1]
    F = rng.standard_normal((N, f))
    for kappa in (-rng.uniform(0.1, 1.0, f), rng.standard_normal(f), np.array([-1, 0, 0.5, 0, -2.0])):
        ev = np.linalg.eigvalsh(np.diag(delta) + (F * kappa) @ F.T)[::-1]
        for sigma in [(ev[i] + ev[i + 1]) / 2 for i in (0, 4, 40, 120)] + [ev[-1] - 1, ev[0] + 1]:
            assert lapack_steps.count_above(delta, F, kappa, sigma) == np.count_nonzero(ev > sigma)


def test_a_warm_start_that_misses_an_eigenvector_is_not_accepted():
    """The NumPy steps search the inverted vectors only, so a start block
    without the top eigenvector would converge to the next ones; the inertia
    count sees the missing eigenvalue and refuses (the caller then solves
    exactly)."""
    rng = np.random.default_rng(8)
    N, f, k = 200, 4, 12
    delta = np.sort(rng.gamma(2.0, 1.0, N))[::-1]
    F = rng.standard_normal((N, f))
    kappa = -rng.uniform(0.1, 1.0, f)
    ev, V = np.linalg.eigh(np.diag(delta) + (F * kappa) @ F.T)
    V = V[:, ::-1]
    blind = V[:, 1:k + 11] + 1e-3 * (np.eye(N)[:, :k + 10] - V[:, :1] @ V[:1, :k + 10])  # no v_1 in it
    _, _, _, residual, converged = lapack_steps.top_eigenpairs(delta, F, kappa, k, X0=blind)
    assert residual < 1e-12 and not converged
    assert lapack_steps.top_eigenpairs(delta, F, kappa, k)[4]     # a cold start finds it
    # two vectors standing for one eigenvector (a lost orthogonality) are
    # refused too, even where the count alone would pass
    theta = ev[::-1][:k + 10].copy()
    twice = V[:, :k + 10].copy()
    twice[:, k - 1], theta[k - 1] = twice[:, 0], theta[0]
    order = np.argsort(-theta, kind="stable")
    assert not lapack_steps._complete(delta, F, kappa, theta[order], twice[:, order], k, 1e-15)
    assert lapack_steps._complete(delta, F, kappa, ev[::-1][:k + 10], V[:, :k + 10], k, 1e-15)


@pytest.mark.parametrize("backend", ["lapack", "tensorflow"])
@pytest.mark.parametrize("gram", [False, True])
def test_iterative_solver_matches_the_exact_one_on_a_sequence_of_problems(gram, backend):
    Pc, U, w = pencil(seed=2, n=90 if gram else 300)
    B = Pc.T @ Pc
    lam, k = 0.7, 20
    rng = np.random.default_rng(3)
    kwargs = {"Pc": tf.constant(Pc)} if gram else {"B": tf.constant(B)}
    iterative = Eq20Solver(lam, k, method="iterative", tol=1e-12, backend=backend, **kwargs)
    exact = Eq20Solver(lam, k, method="exact", **kwargs)
    for t in range(4):
        Ut = U + 0.05 * t * rng.standard_normal(U.shape)   # M changes a little per iteration
        phi_i, V_i = iterative.solve(tf.constant(Ut), w)
        phi_e, V_e = exact.solve(tf.constant(Ut), w)
        V_i, V_e = V_i.numpy(), V_e.numpy()
        assert eq20_residual(Ut, w, lam, B, phi_i, V_i) < 1e-9
        np.testing.assert_allclose(phi_i, phi_e, rtol=1e-9)
        # the same columns (same signs), not just the same subspace
        np.testing.assert_allclose(V_i, V_e, atol=1e-7)
        assert sin_largest_angle(V_i, V_e) < 1e-8
    # one cold start, then warm starts only; the exact solver never iterates
    assert iterative.warm_starts == 3 and iterative.fallbacks == 0
    assert all(s >= 1 for s in iterative.steps) and exact.steps == [0, 0, 0, 0]


def test_an_unknown_backend_is_refused():
    with pytest.raises(InputError, match="backend must be"):
        Eq20Solver(1.0, 2, B=np.eye(4), backend="cuda")


def test_a_warm_start_from_the_solved_problem_takes_no_step():
    """What the warm start guarantees; on Office-Caltech's changing problems warm and cold take two steps alike
    (README)."""
    Pc, U, w = pencil(seed=4)
    B = tf.constant(Pc.T @ Pc)
    solver = Eq20Solver(1.0, 20, B=B, tol=1e-12)
    solver.solve(tf.constant(U), w)
    solver.solve(tf.constant(U), w)          # the same problem again: already solved
    cold = Eq20Solver(1.0, 20, B=B, tol=1e-12)
    cold.solve(tf.constant(U), w)
    assert solver.steps[1] == 0 < cold.steps[0] and solver.warm_starts == 1


def test_fallback_to_the_exact_solver_when_the_iteration_stops_short():
    Pc, U, w = pencil(seed=5)
    B = tf.constant(Pc.T @ Pc)
    stubborn = Eq20Solver(1.0, 20, B=B, tol=1e-12, max_steps=0)   # no step allowed
    phi, V = stubborn.solve(tf.constant(U), w)
    phi_e, V_e = solve_exact(tf.constant(U), w, 1.0, 20, B=B)
    assert stubborn.fallbacks == 1 and stubborn.warm_starts == 0
    np.testing.assert_allclose(phi, phi_e, rtol=1e-12)
    np.testing.assert_allclose(V.numpy(), V_e.numpy(), atol=1e-12)


@pytest.mark.parametrize("n", [40, 9])   # more samples than dimensions, and fewer (Gram path)
def test_exact_solution_satisfies_eq20_and_the_scatter_constraint(n):
    rng = np.random.default_rng(2)
    d, k, lam = 12, 5, 0.7
    X = rng.standard_normal((n, d))
    Xc = X - X.mean(0)
    B = Xc.T @ Xc                          # X H X^T
    U = rng.standard_normal((d, 3))
    w = np.array([0.5, 0.3, 0.2])
    phi, V = solve_exact(U, w, lam, k, B=None if n < d else tf.constant(B),
                         Pc=tf.constant(Xc) if n < d else None)
    V = V.numpy()
    assert eq20_residual(U, w, lam, B, phi, V) < 1e-10
    assert np.all(np.diff(phi) > 0) and np.allclose(np.linalg.norm(V, axis=0), 1)
    # the k smallest: compare with scipy's symmetric-definite solver
    S = U @ np.diag(w) @ U.T + lam * np.eye(d)
    nu = scipy.linalg.eigh(B, S, eigvals_only=True)[::-1][:k]
    np.testing.assert_allclose(1 / phi, nu, rtol=1e-9)
    # scatter constraint A^T X H X^T A = I once each column is rescaled
    A = V / np.sqrt(np.einsum("ij,ij->j", V, B @ V))[None, :]
    np.testing.assert_allclose(A.T @ B @ A, np.eye(k), atol=1e-9)


@pytest.mark.parametrize("lapack", [True, False])
def test_symmetric_eigh_gives_the_top_pairs_descending_on_either_backend(lapack, monkeypatch):
    monkeypatch.setattr(eigensolvers, "lapack_preferred", lambda: lapack)
    rng = np.random.default_rng(7)
    X = rng.standard_normal((80, 50))
    A = X.T @ X
    ev_ref, V_ref = np.linalg.eigh(A)
    ev, V = symmetric_eigh(A)
    np.testing.assert_allclose(ev, ev_ref[::-1], rtol=1e-12)
    top, W = symmetric_eigh(A, top=7)
    assert top.shape == (7,) and W.shape == (50, 7)
    np.testing.assert_allclose(top, ev_ref[::-1][:7], rtol=1e-12)
    # the same vectors up to sign, orthonormal
    np.testing.assert_allclose(np.abs(W.T @ V_ref[:, ::-1][:, :7]), np.eye(7), atol=1e-10)
    np.testing.assert_allclose(A @ W, W * top[None, :], atol=1e-9 * ev_ref[-1])


@pytest.mark.parametrize("gram", [False, True])
def test_a_single_problem_is_solved_exactly_without_bs_eigenbasis(gram):
    """TCA's case (n_solves=1): no full eigendecomposition of B, and the
    rank check is the exact solve's own certificate (B's spectrum never
    computed), with the answer of method="exact"."""
    Pc, U, w = pencil(seed=8, n=90 if gram else 300)
    side = {"Pc": Pc} if gram else {"B": Pc.T @ Pc}
    single = Eq20Solver(1.0, 20, n_solves=1, **side)
    phi, V = single.solve(U, w)
    assert single._range is None and single.rank is None and single.basis_seconds == 0
    assert single.steps == [0]
    phi_e, V_e = Eq20Solver(1.0, 20, method="exact", **side).solve(U, w)
    np.testing.assert_allclose(phi, phi_e, rtol=1e-12)
    # a sequence builds the basis on its first call, which iterates
    sequence = Eq20Solver(1.0, 20, **side)
    phi_s, V_s = sequence.solve(U, w)
    assert sequence._range is not None and sequence.rank == (89 if gram else 120)
    assert sequence.basis_seconds > 0 and sequence.steps[0] >= 1
    np.testing.assert_allclose(phi_s, phi_e, rtol=1e-9)
    np.testing.assert_allclose(V_s.numpy(), V_e.numpy(), atol=1e-7)


def test_the_rank_certificate_fails_over_to_bs_spectrum_when_k_exceeds_the_rank():
    rng = np.random.default_rng(9)
    X = rng.standard_normal((200, 12)) @ rng.standard_normal((12, 40))   # rank 12 in d = 40
    Pc = X - X.mean(0)
    U, w = rng.standard_normal((40, 2)), np.array([0.6, 0.4])
    ok = Eq20Solver(1.0, 12, B=Pc.T @ Pc, n_solves=1)
    ok.solve(U, w)
    assert ok.rank is None                     # k = rank: proven from the solve's eigenvalues
    too_many = Eq20Solver(1.0, 13, B=Pc.T @ Pc, n_solves=1)
    with pytest.raises(InputError, match=r"n_components=13 exceeds the rank 12\b"):
        too_many.solve(U, w)
    assert too_many.rank == 12


def test_blas_threads_limits_openblas_inside_the_block_only():
    from threadpoolctl import threadpool_info

    def blas_threads():
        return {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()
                if lib["user_api"] == "blas"}

    before = blas_threads()
    with eigensolvers.blas_threads():
        inside = blas_threads()
    assert inside and set(inside.values()) == {eigensolvers.BLAS_THREADS}
    assert blas_threads() == before
