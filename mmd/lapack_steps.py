"""The iterative eq. 20 solver's inner loop on a CPU, in NumPy / LAPACK.

`mmd.graph_steps.top_eigenpairs` runs the block shift-and-invert steps as
TensorFlow graphs, which is what a GPU wants: its `eigh` and QR run where the
data are.  On a CPU the same steps are small dense kernels, and there the
graphs lose to OpenBLAS / LAPACK called directly (measured on the 10
problems of a C->A JDA fit, N = 800, 110 vectors, one thread: 22-30 ms a
solve's steps in the graphs, 9.5-17 ms here; with the operator and the
vectors a = S^-1 W y, 0.035-0.039 s against 0.016-0.018 s: mmd/README.md,
"How eq. 20 is solved" and "Where a fit's time goes").  Three things make the difference, none of them a change of the
answer (the tests hold both paths to the exact solver):

1. Orthonormalisation by CholeskyQR2 (two Gram products and two triangular
   solves, level-3 BLAS) instead of Householder QR: 800 x 110 in 2.65
   against 2.91 ms in float64, 1.18 against 1.31 ms in float32 (best of 31,
   idle), the smallest of the three gains.  The shift-inverted vectors approximate distinct eigenvectors, so
   the block is well conditioned; when it is not (a collapsed pair, exactly
   repeated eigenvalues) Cholesky fails and Householder QR takes over.
2. A warm start's first step searches the inverted vectors only (110, not
   the 220 of [old, inverted]): the Rayleigh-Ritz `eigh` and the products are
   four to eight times smaller.  On Office-Caltech the step still takes a
   residual of 1e-2 to 1e-6 in float32, and one float64 step takes it to
   1e-13..1e-15.  A start far from the answer (`KEEP_ABOVE`) keeps the old
   vectors, as a cold start does.
3. What the search space no longer guarantees is checked instead: no
   eigenvalue above the k-th may be missing.  Sylvester's law of inertia
   counts the eigenvalues of A = diag(delta) + F diag(kappa) F^T above a
   shift sigma from an f x f matrix (`count_above`); with orthonormal Ritz
   vectors that proves the k Ritz pairs to be the k largest, or the caller
   falls back to the exact solver.  (The graphs guard the same with a
   Ritz-value drop test.)

Float32 only in the first step, as in the graphs: its vectors are
re-measured in float64 and the float64 steps after it must meet `tol`.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.linalg import blas, lapack

_TINY = np.finfo(np.float64).tiny


def apply(delta, F, kappa, X):
    """(diag(delta) + F diag(kappa) F^T) X in O(N f m)."""
    return delta[:, None] * X + F @ (kappa[:, None] * (F.T @ X))


def orthonormal(Y):
    """Orthonormal basis of span(Y) (N, m): CholeskyQR2, or Householder QR
    when the Gram matrix is not numerically positive definite."""
    trsm = blas.dtrsm if Y.dtype == np.float64 else blas.strsm
    Q = Y
    for _ in range(2):
        L, info = lapack.dpotrf(Q.T @ Q, lower=1) if Y.dtype == np.float64 else \
            lapack.spotrf(Q.T @ Q, lower=1)
        if info != 0:
            return scipy.linalg.qr(Y, mode="economic", check_finite=False)[0]
        # Q L^-T: L (Q^T)' = Q^T on the Fortran view of Q, no copy
        Q = trsm(1.0, L, Q.T, lower=1).T
    return Q


def shift_invert(delta, F, kappa, FF, X, shifts, floor):
    """y_j = (A - shifts_j I)^-1 x_j for every column, by Woodbury with one
    f x f system per column (see `mmd.graph_steps._shift_invert`): LU, and
    where a shift at an eigenvalue makes a system exactly singular (the
    secular equation), the pivot-guarded QR of the graphs, since inverse
    iteration wants the limit.  Unit columns."""
    D = delta[:, None] - shifts[None, :]
    Di = 1.0 / np.copysign(np.maximum(np.abs(D), floor), D)
    f, m = F.shape[1], X.shape[1]
    Y = Di * X
    lhs = np.eye(f, dtype=F.dtype)[None] + kappa[None, :, None] * \
        (Di.T @ FF).reshape(m, f, f)
    rhs = (kappa[:, None] * (F.T @ Y)).T[:, :, None]                 # (m, f, 1)
    try:    # LU; a shift at an eigenvalue is singular only by exact cancellation
        z = np.linalg.solve(lhs, rhs)[:, :, 0]
    except np.linalg.LinAlgError:
        z = _guarded_solve(lhs, rhs)
    Y = Y - Di * (F @ z.T)
    Y = Y / np.maximum(np.abs(Y).max(axis=0, keepdims=True), np.finfo(Y.dtype).tiny)
    return Y / np.linalg.norm(Y, axis=0, keepdims=True)


def _guarded_solve(lhs, rhs):
    """The f x f systems by QR, each pivot of R kept at least eps max(1, max |R|)
    in magnitude: a perturbation within rounding that leaves the answer
    dominated by the eigenvector (`mmd.graph_steps._shift_invert`)."""
    Q, R = np.linalg.qr(lhs)
    diag = np.arange(lhs.shape[1])
    pivots = R[:, diag, diag]
    least = np.finfo(lhs.dtype).eps * np.maximum(np.abs(R).max(axis=(1, 2)), 1.0)[:, None]
    R[:, diag, diag] = np.where(np.abs(pivots) < least, np.where(pivots < 0, -least, least),
                                pivots)
    return np.linalg.solve(R, np.swapaxes(Q, 1, 2) @ rhs)[:, :, 0]


def unit_columns(V):
    """Unit 2-norm columns, each column's largest-magnitude entry positive
    (`mmd.graph_steps.unit_columns` in NumPy)."""
    V = V / np.linalg.norm(V, axis=0, keepdims=True)
    signs = np.sign(V[np.argmax(np.abs(V), axis=0), np.arange(V.shape[1])])
    return V * np.where(signs == 0, 1.0, signs)[None, :]


def residual(X, AX, theta, k):
    """max_j ||A x_j - theta_j x_j|| / max |theta| over the k wanted pairs."""
    R = AX[:, :k] - X[:, :k] * theta[None, :k]
    return float(np.linalg.norm(R, axis=0).max() / max(float(np.abs(theta).max()), _TINY))


def rayleigh_ritz(Q, delta, F, kappa, m, k):
    """The best m pairs inside span(Q) (orthonormal columns): (theta
    descending, X, A X, residual)."""
    H = Q.T @ apply(delta, F, kappa, Q)
    theta, C = scipy.linalg.eigh(H, driver="evd", overwrite_a=True, check_finite=False)
    theta, C = theta[::-1][:m], C[:, ::-1][:, :m]
    X = Q @ C
    AX = apply(delta, F, kappa, X)
    return theta, X, AX, residual(X, AX, theta, k)


def rayleigh_quotients(delta, F, kappa, X, k):
    """Unit columns of X, their Rayleigh quotients (descending), A X and the
    residual: a start, or a float32 step's vectors measured in float64."""
    X = X / np.linalg.norm(X, axis=0, keepdims=True)
    AX = apply(delta, F, kappa, X)
    theta = np.einsum("ij,ij->j", X, AX)
    order = np.argsort(-theta, kind="stable")
    X, AX, theta = X[:, order], AX[:, order], theta[order]
    return theta, X, AX, residual(X, AX, theta, k)


def step(delta, F, kappa, FF, X, theta, k, keep_old):
    """One shift-and-invert + Rayleigh-Ritz step; `keep_old` keeps X in the
    search space (a cold start, whose shifts are those of coordinate
    vectors)."""
    m = X.shape[1]
    floor = np.finfo(X.dtype).eps * float(np.abs(theta).max())
    Y = shift_invert(delta, F, kappa, FF, X, theta, floor)
    if keep_old:
        # Householder on [X, Y]: the columns of Y nearly inside span(X) carry
        # the correction, which a Gram-based QR would round away
        Q = scipy.linalg.qr(np.concatenate([X, Y], axis=1), mode="economic",
                            overwrite_a=True, check_finite=False)[0]
    else:
        Q = orthonormal(Y)
    return rayleigh_ritz(Q, delta, F, kappa, m, k)


def count_above(delta, F, kappa, sigma):
    """The number of eigenvalues of A = diag(delta) + F diag(kappa) F^T above
    sigma, without A's eigenvalues.

    Zero entries of kappa add nothing and are dropped (F', kappa').  The block
    matrix [[D - sigma, F'], [F'^T, -diag(kappa')^-1]] has two Schur
    complements, A - sigma and -diag(kappa')^-1 - F'^T (D - sigma)^-1 F', so by
    Sylvester's law of inertia
    #pos(A - sigma) = #pos(D - sigma) + #pos(-diag(kappa')^-1 - F'^T (D - sigma)^-1 F')
    - #(kappa' < 0): an O(N f^2) product and an f x f `eigvalsh`.  Returns
    None when sigma is an entry of delta (D - sigma singular)."""
    keep = kappa != 0
    D = delta - sigma
    if np.any(D == 0):
        return None
    Fk = F[:, keep]
    G = -np.diag(1.0 / kappa[keep]) - Fk.T @ (Fk / D[:, None])
    return int(np.count_nonzero(D > 0) + np.count_nonzero(np.linalg.eigvalsh(G) > 0)
               - np.count_nonzero(kappa[keep] < 0))


#: a warm start whose residual is above this keeps its vectors in the first
#: step's search space, as a cold start does.  Measured on the 64 warm solves
#: of JDA and BDA (mu 0.75) on A->C, W->C, C->D and C->A: the first warm
#: start of a fit, where the class terms first enter M, starts at 6e-2 to
#: 1.2e-1; searching the inverted vectors alone it needed 3-6 steps and twice
#: fell back to the exact solver, keeping the old vectors it needs 2.  The
#: later ones start at 5e-3 to 2.4e-2 and need 2-3 steps either way, the
#: smaller step being cheaper (all 64: 1.29 s at 3e-2, 1.50 s at 1e-2, 2.36 s
#: always keeping, 1.22 s never plus the two exact solves).
KEEP_ABOVE = 3e-2


def top_eigenpairs(delta, F, K, k: int, X0=None, guard: int = 10, tol: float = 1e-12,
                   max_steps: int = 6):
    """The k largest eigenpairs of diag(delta) + F K F^T (NumPy, float64):
    (theta (m,) descending, X (N, m), steps, residual, converged), the
    contract of `mmd.graph_steps.top_eigenpairs`.  K is the f x f symmetric
    matrix or, when diagonal, its diagonal (f,).  `converged` also requires
    the inertia count (`count_above`) to confirm that no eigenvalue above the
    k-th Ritz value is missing."""
    delta = np.asarray(delta, dtype=np.float64)
    F = np.asarray(F, dtype=np.float64)
    kappa = np.asarray(K, dtype=np.float64)
    if kappa.ndim == 2:     # F K F^T = (F E) diag(kappa) (F E)^T
        kappa, E = np.linalg.eigh(0.5 * (kappa + kappa.T))
        F = F @ E
    N, f = F.shape
    m = min(k + guard, N)
    FF = (F[:, :, None] * F[:, None, :]).reshape(N, f * f)
    cold = X0 is None
    if cold:
        X = np.eye(N)[:, np.argsort(-delta, kind="stable")[:m]]
        theta, X, AX, r = rayleigh_ritz(X, delta, F, kappa, m, k)
    else:
        theta, X, AX, r = rayleigh_quotients(delta, F, kappa, np.asarray(X0, np.float64), k)
    steps = 0
    if r > tol and max_steps > 0:
        args32 = [a.astype(np.float32) for a in (delta, F, kappa, FF, X, theta)]
        X32 = step(*args32, k, cold or r > KEEP_ABOVE)[1]
        theta, X, AX, r = rayleigh_quotients(delta, F, kappa, X32.astype(np.float64), k)
        steps = 1
    while r > tol and steps < max_steps and np.isfinite(r):
        theta, X, AX, r = step(delta, F, kappa, FF, X, theta, k, False)
        steps += 1
    converged = bool(r <= tol) and _complete(delta, F, kappa, theta, X, k, r)
    return theta, X, steps, r, converged


def _complete(delta, F, kappa, theta, X, k, r):
    """Whether the k Ritz pairs are the k largest eigenpairs.  Their vectors
    are orthonormal (so two of them cannot stand for one eigenvector: a
    CholeskyQR that lost orthogonality would show here), and exactly k
    eigenvalues lie above sigma, halfway from the k-th Ritz value to the
    next one (each wanted Ritz value is within its residual of an
    eigenvalue, and no Ritz value exceeds the eigenvalue of its rank).
    A tie at the k-th value (no gap beyond the residuals) has no such
    sigma, and no unique answer either: accepted, as the exact solver
    would."""
    Xk = X[:, :k]
    if np.abs(Xk.T @ Xk - np.eye(k)).max() > 1e-10:
        return False
    scale = float(np.abs(theta).max())
    if k >= len(theta):
        return True
    gap = float(theta[k - 1] - theta[k])
    if gap <= 4 * r * scale:
        return True
    for fraction in (0.5, 0.4):   # the second only if the first sigma is an entry of delta
        count = count_above(delta, F, kappa, float(theta[k - 1] - fraction * gap))
        if count is not None:
            return count == k
    return False
