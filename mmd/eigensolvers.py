"""Eq. 20, (X M X^T + lambda I) a = phi X H X^T a: the k smallest eigenpairs.

Two solvers, in float64 (the iterative one's first step in float32):

* `solve_exact` - one dense symmetric eigenproblem.  The pencil is
  symmetric-definite: S = X M X^T + lambda I is positive definite and
  B = X H X^T positive semi-definite, so eq. 20 becomes the ordinary
  symmetric problem (S^-1/2 B S^-1/2) y = nu y with nu = 1/phi and
  a = S^-1/2 y; the k smallest phi are the k largest nu.  S is lambda I plus
  a rank <= C + 1 term, so S^-1/2 is too and the reduced matrix costs
  O(p^2 r) to form; only its k wanted pairs are computed.  (A general `eig`
  of (S, B), what the public numpy code does, returns complex and infinite
  eigenvalues when B is singular and costs a dense QZ iteration.)  With
  fewer samples than dimensions, B = Pc^T Pc has rank < n and the problem is
  solved on the n x n matrix Pc S^-1 Pc^T instead (same non-zero spectrum).
  The symmetry is that of X M X^T + lambda I and X H X^T, not of A (d x k),
  which the text calls Hermitian (docs/textbook-errata.md, E8).  The dense
  eigen-solves run in LAPACK through SciPy on a CPU and in TensorFlow on a
  GPU (`lapack_preferred`, `symmetric_eigh`).

* `Eq20Solver(..., method="iterative")` - the same eigenpairs, to a stated
  residual, for a *sequence* of problems that share B and differ only in M,
  as JDA's iterations do.  Three facts make it cheap:

  1. S is lambda I plus a rank-r term (r <= C + 1: M is built from the C + 1
     mean-difference vectors).  Any power of it is therefore
     S^alpha = lambda^alpha I + Z diag(s^alpha - lambda^alpha) Z^T with Z the
     r orthonormal directions of that term: no Cholesky, no p x p inverse.
  2. B never changes.  Its eigendecomposition is computed once per fit (one
     full `eigh`, LAPACK's dsyevd on a CPU), and only its numerical range
     is kept: B = W W^T with W = V_q Lambda_q^1/2 from its q non-zero
     eigenpairs (on the Gram side W = Pc^T V_q, V_q from Pc Pc^T).  The
     non-zero spectrum of S^-1/2 B S^-1/2 is that of the q x q matrix
     T = W^T S^-1 W = Lambda_q / lambda + F diag(1/s - 1/lambda) F^T with
     F = W^T Z, and a = S^-1 W y: a diagonal matrix plus a rank-r term, so
     applying T to a block of m vectors costs O(q r m), and
     (T - sigma I)^-1 is a Woodbury formula with an r x r solve.  Keeping
     B's zero eigenvalues out matters when B is singular (duplicate
     samples, zero or constant features, a linear kernel with n > d): they
     would be eigenvalues 0 of T inside the search space (issue 24).
  3. Consecutive JDA iterations have close solutions.  The previous
     iteration's m = k + `guard` Ritz vectors are the start ("warm start").
     Measured on Office-Caltech, this saves no step there: the cold start
     (the coordinate vectors of the largest diagonal entries) also needs
     two, because facts 1-2 make each step cubically convergent.  A repeated
     problem needs none.

  Each step applies one shift-and-invert, x_j <- (T - theta_j I)^-1 x_j,
  with every vector's own Ritz value as its shift (a block Rayleigh quotient
  iteration, cubically convergent), then a Rayleigh-Ritz projection on the
  span of the old and new vectors (a 2m x 2m `eigh`) keeps the block
  orthogonal and sorts out clusters.  The step repeats until every wanted
  pair has ||T x - theta x|| <= tol * theta_max (`tol`, default 1e-12; two
  steps reach about 1e-15 on the Office-Caltech tasks).  If it does not get
  there within `max_steps` steps, or meets a non-finite number or a failed
  TensorFlow solve, the exact solver answers that problem instead (counted
  in `n_fallbacks`).

  The steps are TensorFlow graphs (`mmd.graph_steps`), what a GPU
  runs; on a CPU `mmd.lapack_steps` runs the same iteration in NumPy /
  LAPACK, about twice as fast (CholeskyQR2, a warm start's first step on
  the m inverted vectors only, and an inertia count that proves the k pairs
  are the largest).  `Eq20Solver(backend=...)` picks one; the default goes
  by device.

Both return phi ascending and A with unit-norm columns, each column's
largest-magnitude entry positive.  `solve_exact` marks a direction B cannot
see with phi = inf; `Eq20Solver` never gets there: it refuses more
components than B's rank (its docstring says why no answer exists then).
"""
from __future__ import annotations

import functools
import time

import numpy as np
import scipy.linalg
import tensorflow as tf

from . import graph_steps, lapack_steps
from .validation import InputError

#: eq. 20 solvers of the estimators' `solver` parameter
SOLVERS = ("iterative", "exact")

_TINY = np.finfo(np.float64).tiny


# --------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------

def _finish(V, nu):
    """(phi = 1/nu, V); phi = inf where nu = 0 (a direction B cannot see)."""
    nu = np.asarray(nu)
    with np.errstate(divide="ignore"):
        phi = np.where(nu > 0, 1.0 / np.maximum(nu, _TINY), np.inf)
    return phi, V


@functools.cache
def lapack_preferred() -> bool:
    """Whether the dense numerics of eq. 20 (B, the symmetric eigen-solves)
    run in NumPy / LAPACK through SciPy (no GPU visible to TensorFlow) or in
    TensorFlow (a GPU: its `eigh` and matmuls run where the data already are,
    which no SciPy call can; no GPU was available to measure that side).

    The rule is the device, measured on the 2-core CPU (mmd/README.md,
    "Where a fit's time goes"): an 800 x 800 `tf.linalg.eigh` took 0.255 s
    against 0.054-0.083 s for LAPACK's divide and conquer (dsyevd), the
    k = 100 wanted pairs alone (dsyevr) about 0.05 s, and TensorFlow's
    float64 matmul (Eigen) twice the time of OpenBLAS's syrk for B.
    Cached: the visible devices cannot change once TensorFlow has started.
    """
    return not tf.config.list_logical_devices("GPU")


#: BLAS / LAPACK threads of the CPU path's dense calls.  One, measured on the
#: shared 2-core machine (load average 3.6-5.9, best of 5): dsyevd of an
#: 800 x 800 matrix took 0.083 s with one OpenBLAS thread and 1.25 s with
#: two, the syrk of C->A's 2081 x 800 rows 0.027 s against 0.16 s.  OpenBLAS's
#: threads wait for each other by spinning, and under load one of them is
#: always descheduled.  The estimators limit the threads only around their
#: own calls (`blas_threads`).
BLAS_THREADS = 1
_controller = []


def blas_threads():
    """Context manager: OpenBLAS (NumPy's and SciPy's) at `BLAS_THREADS`
    threads for the block, restored after it (0.2 ms)."""
    if not _controller:
        from threadpoolctl import ThreadpoolController
        _controller.append(ThreadpoolController())
    return _controller[0].limit(limits=BLAS_THREADS, user_api="blas")


def symmetric_eigh(A, top: int | None = None):
    """Eigenpairs of the symmetric A (p, p), eigenvalues descending, as
    float64 NumPy arrays; only the `top` largest when given.  Reads the lower
    triangle.

    On the CPU path all pairs come from LAPACK's divide and conquer
    (dsyevd, the fastest for every eigenvector), the `top` largest from
    dsyevr's bisection and inverse iteration (it never forms the others:
    0.05 s for 100 of 800, against 0.08 s for all)."""
    p = int(A.shape[0])
    top = p if top is None else min(int(top), p)
    if p == 0:
        return np.zeros(0), np.zeros((0, 0))
    if lapack_preferred():
        A = np.asarray(A, dtype=np.float64)
        if top == p:
            ev, V = scipy.linalg.eigh(A, driver="evd", check_finite=False)
        else:
            ev, V = scipy.linalg.eigh(A, driver="evr", subset_by_index=[p - top, p - 1],
                                      check_finite=False)
        return ev[::-1], V[:, ::-1]
    ev, V = tf.linalg.eigh(tf.convert_to_tensor(A, tf.float64))
    return ev.numpy()[::-1][:top], V.numpy()[:, ::-1][:, :top]


def _rank_of(ev) -> int:
    """Numerical rank from eigenvalues (any order): those above dim * eps
    times the largest (rounding leaves the zero ones at about eps times the
    largest)."""
    ev = np.asarray(ev)
    if ev.size == 0:
        return 0
    floor = ev.size * np.finfo(np.float64).eps * max(float(ev.max()), 0.0)
    return int(np.count_nonzero(ev > floor)) if floor > 0 else 0


def _rank_error(k, rank, n_features):
    return InputError(
        f"n_components={k} exceeds the rank {rank} of the centred scatter "
        "X H X^T of eq. 20 (K H K with a kernel): duplicate samples, zero or constant "
        f"features or a low-rank kernel leave {rank} directions with finite phi "
        f"(n_features = {int(n_features)})")


def _low_rank_s(U, w, lam: float):
    """S = U diag(w) U^T + lambda I as lambda I + Z diag(s - lambda) Z^T
    (NumPy: Z (p, r) orthonormal, s (r,) the eigenvalues of S on span(Z));
    M = 0 (no columns) gives one direction with s = lambda."""
    U = np.asarray(U, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    if U.shape[1] == 0:
        U, w = np.zeros((U.shape[0], 1)), np.zeros(1)
    Q, R = np.linalg.qr(U)
    small = (R * w[None, :]) @ R.T
    s, E = np.linalg.eigh(0.5 * (small + small.T) + lam * np.eye(len(w)))
    return Q @ E, np.maximum(s, lam)          # S >= lambda I: clip rounding


def solve_exact(U, w, lambda_: float, n_components: int, B=None, Pc=None, *, gram=None,
                _with_bound=False):
    """k smallest eigenpairs of eq. 20, (U diag(w) U^T + lambda I) a = phi B a.

    U (p, r) and w (r,) are the low-rank factors of X M X^T (already divided
    by ||M||_F).  Give either B = X H X^T (p, p), or, when there are fewer
    samples than dimensions, the centred data Pc (n, p) with B = Pc^T Pc
    (and, if the caller has it, `gram` = Pc Pc^T, so it is formed once).

    S = X M X^T + lambda I is lambda I plus a rank-r term, so its inverse
    square root is too: S^-1/2 = c I + Z diag(g) Z^T with c = lambda^-1/2, Z
    the r orthonormal directions of the term and g = s^-1/2 - c.  The reduced
    matrix S^-1/2 B S^-1/2 is then c^2 B plus rank-2r corrections (O(p^2 r):
    no Cholesky, no p x p triangular solves, which is what the earlier
    Cholesky form cost), and only its k wanted eigenpairs are computed
    (`symmetric_eigh(top=k)`); a = S^-1/2 y.  On the Gram side the same
    holds for the n x n matrix Pc S^-1 Pc^T (same non-zero spectrum).

    Returns (phi, V): phi (k,) ascending, V (p, k) float64 tensor with
    unit-norm columns (with `_with_bound` also (nu, s_max / lambda), the
    certificate of `Eq20Solver._check_rank`).
    """
    lam = float(lambda_)
    k = int(n_components)
    Z, s = _low_rank_s(U, w, lam)
    if Pc is None:
        B = np.asarray(B, dtype=np.float64)
        c = lam ** -0.5
        g = s ** -0.5 - c                        # S^-1/2 = c I + Z diag(g) Z^T
        BZg = (B @ Z) * g[None, :]
        # S^-1/2 B S^-1/2 = c^2 B + c (B Z g Z^T + Z g Z^T B) + Z g (Z^T B Z g) Z^T
        C = c * (BZg @ Z.T)
        T = c * c * B + C + C.T + Z @ ((g[:, None] * (Z.T @ BZg)) @ Z.T)
        nu, Y = symmetric_eigh(T, top=k)
        V = c * Y + Z @ (g[:, None] * (Z.T @ Y))  # a = S^-1/2 y
    else:
        # S^-1/2 B S^-1/2 = R R^T with R = S^-1/2 Pc^T (p x n): its non-zero
        # eigenpairs come from the n x n matrix R^T R = Pc S^-1 Pc^T, and
        # a = S^-1/2 R q / sqrt(nu) = S^-1 Pc^T q / sqrt(nu)
        Pc = np.asarray(Pc, dtype=np.float64)
        gram = Pc @ Pc.T if gram is None else np.asarray(gram, dtype=np.float64)
        h = 1.0 / s - 1.0 / lam                  # S^-1 = I / lambda + Z diag(h) Z^T
        PZ = Pc @ Z
        nu, Q = symmetric_eigh(gram / lam + (PZ * h[None, :]) @ PZ.T, top=k)
        X = Pc.T @ Q
        V = (X / lam + Z @ (h[:, None] * (Z.T @ X))) / np.sqrt(np.maximum(nu, _TINY))[None, :]
    phi, V = _finish(graph_steps.unit_columns(tf.constant(V)), nu)
    if _with_bound:     # nu_k / nu_1 bounds B's own eigenvalue ratio from below, up to S's condition
        return phi, V, (np.asarray(nu), float(s.max()) / lam)
    return phi, V


# --------------------------------------------------------------------------
# eq. 20 for a sequence of M's sharing B
# --------------------------------------------------------------------------

class Eq20Solver:
    """Solves eq. 20 for one fit: B (or the centred data Pc) fixed, one M per
    call of `solve(U, w)`.

    B = X H X^T is only semi-definite: duplicate samples, zero or constant
    features and a linear kernel with more samples than features all make it
    singular.  Its directions of (numerically) zero scatter have phi = inf
    (B a = 0 while S a != 0), so only `rank` components of eq. 20 are
    defined: the rank is the number of B's (or Pc Pc^T's) eigenvalues above
    dim * eps times the largest (rounding leaves the zero ones at about eps
    times the largest), and n_components > rank is refused with an
    InputError that names it and the problem's `n_features` (the estimators
    pass their input's; default: the columns of B or of Pc), in
    scikit-learn's wording "n_features = 1", which its check_fit2d_1feature
    accepts for a one-feature fit that cannot work.  Beyond rank the answer
    does not exist: on B's null space S = lambda I (M's columns sum to zero),
    so any basis of it would do, and the labels would depend on which one
    rounding picked.  The exact solve usually proves k <= rank from its own
    eigenvalues (`_check_rank`), so B's spectrum is computed only when the
    iterative solver needs it anyway, or when that proof fails.

    method="exact" calls `solve_exact` every time.  method="iterative" keeps
    the eigenbasis of B (or of Pc Pc^T when n < p) and the last Ritz vectors
    between calls (module docstring).  It works on the range of B only:
    with B = W W^T (W = V_r Lambda_r^1/2 from B's r non-zero eigenpairs, or
    Pc^T V_r on the Gram side), the non-zero spectrum of S^-1/2 B S^-1/2 is
    that of the r x r matrix W^T S^-1 W = Lambda_r / lambda + (W^T Z)
    diag(1/s - 1/lambda) (W^T Z)^T and a = S^-1 W y.  Carrying B's zero
    eigenvalues instead put eigenvalues 0 inside the search space whenever
    k + guard > r, and the shifted systems of `top_eigenpairs` became
    exactly singular (issue 24: "Input matrix is not invertible").  When
    2 (k + guard) >= r the dense solve is as cheap and answers instead.  A
    shifted solve that still fails is a fallback to the exact solver, as a
    non-converged iteration is.

    `backend` runs the iterative steps in NumPy / LAPACK ("lapack", what a
    CPU gets: `mmd.lapack_steps`) or as TensorFlow graphs ("tensorflow", what
    a GPU gets); None chooses by device (`lapack_preferred`).

    `n_solves` is how many problems the caller will pass, when it knows
    (TCA: 1).  B's eigenbasis costs one full eigendecomposition, more than
    the exact solve's k wanted pairs of one problem (0.08 against 0.05 s on
    the 800 x 800 problems), so a single problem is solved exactly and the
    basis is never built; for a sequence (JDA, BDA; None: unknown) it is
    built on the first call and every call iterates.

    On the Gram side a caller that has formed Pc Pc^T passes it as `gram`.

    Counters, for the estimators' attributes: `steps` (shift-and-invert
    steps per call, 0 for an exact solve), `warm_starts` (calls started from
    the previous solution) and `fallbacks` (calls the iterative solver handed
    to the exact one).
    """

    def __init__(self, lambda_: float, n_components: int, B=None, Pc=None,
                 method: str = "iterative", tol: float = 1e-12, guard: int = 10,
                 max_steps: int = 6, n_features: int | None = None, n_solves: int | None = None,
                 gram=None, backend: str | None = None):
        self.lambda_, self.k = float(lambda_), int(n_components)
        # the dense steps read NumPy arrays: converted once per fit
        self.B = None if B is None else np.asarray(B, dtype=np.float64)
        self.Pc = None if Pc is None else np.asarray(Pc, dtype=np.float64)
        self.method, self.tol, self.guard, self.max_steps = method, tol, guard, max_steps
        self.n_features = int((self.B if Pc is None else self.Pc).shape[-1]) \
            if n_features is None else int(n_features)
        self.n_solves = n_solves
        self.steps, self.warm_starts, self.fallbacks = [], 0, 0
        self.rank = None       # B's numerical rank, once something needed it
        # Pc Pc^T (Gram side), formed once (here, or given by a caller that has it)
        self._gram = None if gram is None or Pc is None else np.asarray(gram, dtype=np.float64)
        self._range = self._Wt = None
        self._small = False
        self._previous = None  # Ritz vectors of the last solve, in the basis of B's range
        self.basis_seconds = 0.0   # spent on B's eigenbasis (`_build_range`)
        if backend not in (None, "lapack", "tensorflow"):
            raise InputError(f"backend must be 'lapack', 'tensorflow' or None (by device), "
                             f"got {backend!r}")
        self.backend = backend      # of the iterative steps: "lapack", "tensorflow", None: by device

    def _lapack_steps(self):
        """Whether the iterative steps run in NumPy / LAPACK (the CPU path)
        or as TensorFlow graphs (a GPU's; `backend="tensorflow"` runs them
        on a CPU too)."""
        return lapack_preferred() if self.backend is None else self.backend == "lapack"

    def _gram_matrix(self):
        if self._gram is None:
            self._gram = self.Pc @ self.Pc.T
        return self._gram

    def _check_rank(self, nu, condition):
        """Refuse k > rank (class docstring).  The exact solve's eigenvalues
        nu of S^-1/2 B S^-1/2 prove k <= rank without B's spectrum: by
        Ostrowski's theorem ev_k(B) >= lambda nu_k and ev_1(B) <= s_max nu_1,
        so nu_k / nu_1 > (s_max / lambda) dim eps puts ev_k(B) above the rank
        rule's floor.  Otherwise (a rank-deficient B, or k = rank) B's
        eigenvalues decide, and name the rank."""
        dim = self.B.shape[0] if self.Pc is None else self.Pc.shape[0]
        if len(nu) >= self.k > 0 and \
                nu[self.k - 1] > condition * dim * np.finfo(np.float64).eps * nu[0]:
            return
        if self.rank is None:
            matrix = self.B if self.Pc is None else self._gram_matrix()
            self.rank = _rank_of(scipy.linalg.eigh(matrix, eigvals_only=True, driver="evd",
                                                   check_finite=False)
                                 if lapack_preferred()
                                 else tf.linalg.eigvalsh(tf.constant(matrix)).numpy())
        if self.k > self.rank:
            raise _rank_error(self.k, self.rank, self.n_features)

    def _build_range(self):
        """B's eigenpairs on its numerical range (class docstring), once."""
        start = time.perf_counter()
        ev, V = symmetric_eigh(self.B if self.Pc is None else self._gram_matrix())
        self.rank = _rank_of(ev)
        if self.k > self.rank:
            raise _rank_error(self.k, self.rank, self.n_features)
        ev, V = ev[:self.rank], V[:, :self.rank]
        Wt = np.sqrt(ev)[:, None] * V.T if self.Pc is None else V.T @ self.Pc
        # the CPU path's steps are NumPy / LAPACK (mmd.lapack_steps), a GPU's TF graphs
        self._range = ev if self._lapack_steps() else tf.constant(ev)
        self._Wt = Wt if self._lapack_steps() else tf.constant(Wt)
        # the iterative method needs room for the 2m-dimensional search
        # space; on small problems (or a low rank) a dense eigh is as cheap
        self._small = 2 * (self.k + self.guard) >= self.rank
        self.basis_seconds += time.perf_counter() - start

    def _exact(self, U, w):
        phi, V, (nu, condition) = solve_exact(U, w, self.lambda_, self.k, B=self.B, Pc=self.Pc,
                                              gram=None if self.Pc is None else self._gram_matrix(),
                                              _with_bound=True)
        if self.rank is None or self.k > self.rank:
            self._check_rank(nu, condition)
        return phi, V

    def solve(self, U, w):
        """phi (k,) ascending and A (p, k) of the problem with X M X^T =
        U diag(w) U^T."""
        with blas_threads():
            return self._solve(U, w)

    def _solve(self, U, w):
        if self.method != "exact" and self.n_solves != 1 and self._range is None:
            self._build_range()
        if self.method == "exact" or self.n_solves == 1 or self._small:
            self.steps.append(0)
            return self._exact(U, w)
        iterate = self._iterate_lapack if self._lapack_steps() else self._iterate_graphs
        warm = self._previous
        try:
            theta, X, steps, converged, vectors = iterate(U, w, warm)
        except (np.linalg.LinAlgError, tf.errors.InvalidArgumentError):   # a singular shifted system
            steps, converged = 0, False
        self.steps.append(steps)
        if not converged:
            self.fallbacks += 1
            self._previous = None
            return self._exact(U, w)
        self.warm_starts += warm is not None
        self._previous = X
        return _finish(vectors(X[:, :self.k]), theta[:self.k])

    def _iterate_graphs(self, U, w, warm):
        """The iteration as TensorFlow graphs (`mmd.graph_steps`, a GPU's path):
        (theta, Ritz vectors, steps, converged, y -> a = S^-1 W y)."""
        lam = graph_steps._scalar(self.lambda_)
        U = tf.convert_to_tensor(U, tf.float64)
        w = tf.constant(np.asarray(w, dtype=np.float64))
        if int(U.shape[1]) == 0:             # M = 0: S = lambda I (BDA mu = 1, no labels yet)
            U, w = tf.zeros([int(U.shape[0]), 1], tf.float64), tf.zeros([1], tf.float64)
        F, K, Z, s = graph_steps._range_operator(self._Wt, U, w, lam)
        result = graph_steps.top_eigenpairs(self._range / self.lambda_, F, K, self.k, X0=warm,
                                            guard=self.guard, tol=self.tol, max_steps=self.max_steps)
        return (result.theta.numpy(), result.X, result.steps, result.converged,
                lambda Y: graph_steps._range_vectors(self._Wt, Z, s, Y, lam))

    def _iterate_lapack(self, U, w, warm):
        """The same on the CPU path, in NumPy / LAPACK (`mmd.lapack_steps`)."""
        lam = self.lambda_
        Z, s = _low_rank_s(U, w, lam)          # S = lambda I + Z diag(s - lambda) Z^T
        kappa = 1.0 / s - 1.0 / lam            # S^-1 = I / lambda + Z diag(kappa) Z^T
        theta, X, steps, _, converged = lapack_steps.top_eigenpairs(
            self._range / lam, self._Wt @ Z, kappa, self.k, X0=warm, guard=self.guard,
            tol=self.tol, max_steps=self.max_steps)

        def vectors(Y):                        # a = S^-1 W y, unit columns
            Q = self._Wt.T @ Y
            return tf.constant(lapack_steps.unit_columns(Q / lam + Z @ (kappa[:, None] * (Z.T @ Q))))

        return theta, X, steps, converged, vectors

def warm_up():
    """Trace the iterative solver's graphs on two small problems (B side
    and Gram side) and make the first LAPACK calls; later problems of any
    size reuse the graphs, so a command can keep the one-off compilation out
    of its timings (`mmd.solvers.warm_up` also traces the estimators')."""
    rng = np.random.default_rng(0)
    for n, p in ((60, 40), (40, 60)):
        X = rng.standard_normal((n, p))
        Pc = X - X.mean(axis=0)
        side = {"B": Pc.T @ Pc} if n >= p else {"Pc": Pc}
        solver = Eq20Solver(1.0, 5, **side)
        for r in (1, 3):   # a cold solve, then a warm one
            solver.solve(rng.standard_normal((p, r)), np.full(r, 1.0 / r))
        Eq20Solver(1.0, 5, n_solves=1, **side).solve(rng.standard_normal((p, 2)), np.full(2, 0.5))
