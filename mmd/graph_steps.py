"""The iterative eq. 20 solver's steps as TensorFlow graphs: a GPU's path.

`mmd.eigensolvers.Eq20Solver` (its docstring and the module's give the
method: block shift-and-invert with Rayleigh-Ritz on the q x q matrix
T = diag(delta) + F K F^T of B's range) runs these graphs where TensorFlow
sees a GPU: its `eigh`, QR and matmuls run where the data already are.  On
a CPU the same iteration runs in NumPy / LAPACK (`mmd.lapack_steps`), about
twice as fast there; `Eq20Solver(backend="tensorflow")` runs these on a CPU
too, which is how the tests and `mmd.solver_timing` exercise them.

Every function is compiled with a size-free signature and traced once per
process (`mmd.solvers.warm_up`): no fit retraces.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf


def _spec(*shape, dtype=tf.float64):
    return tf.TensorSpec(shape, dtype)


def _compiled(*signature):
    """tf.function with a fixed signature of unknown sizes: each solver step
    is a dozen small ops, and graph execution halves their cost against eager
    dispatch (measured: one shift-and-invert of 110 vectors, N = 800,
    f = 22: 14 -> 7 ms); one trace then serves every problem size."""
    return lambda fn: tf.function(fn, input_signature=list(signature))


_VECTOR, _MATRIX, _SCALAR = _spec(None), _spec(None, None), _spec()
_INT = _spec(dtype=tf.int32)


def unit_columns(V):
    """Unit 2-norm columns, each column's largest-magnitude entry positive
    (eigenvectors are only defined up to sign; fixing it makes runs
    comparable)."""
    V = V / tf.norm(V, axis=0, keepdims=True)
    idx = tf.argmax(tf.abs(V), axis=0)
    signs = tf.sign(tf.gather(tf.transpose(V), idx, batch_dims=1))
    return V * tf.where(signs == 0, tf.ones_like(signs), signs)[None, :]


# --------------------------------------------------------------------------
# the iterative solver: top-k eigenpairs of diag(delta) + F K F^T
# --------------------------------------------------------------------------

class TopEigen:
    """Result of `top_eigenpairs`: Ritz values (m,) descending, vectors
    (N, m), the number of shift-and-invert steps taken, and the largest
    relative residual of the k wanted pairs."""

    def __init__(self, theta, X, steps, residual, converged):
        self.theta, self.X, self.steps = theta, X, steps
        self.residual, self.converged = residual, converged


def _apply(delta, F, K, X):
    """(diag(delta) + F K F^T) X in O(N f m)."""
    return delta[:, None] * X + tf.matmul(F, tf.matmul(K, tf.matmul(F, X, transpose_a=True)))


def _shift_invert(delta, F, K, FF, X, shifts, floor):
    """y_j = (A - shifts_j I)^-1 x_j for every column at once, by Woodbury:
    (D + F K F^T)^-1 = D^-1 - D^-1 F (I + K F^T D^-1 F)^-1 K F^T D^-1 with
    D = diag(delta) - shift, one f x f solve per column (F^T D^-1 F for all
    columns is one (m x N) (N x f^2) product with FF_i = F_i (x) F_i).  A
    shift that hits a diagonal entry exactly is nudged by `floor` (the
    direction, which is all inverse iteration needs, is unaffected).

    A shift that is an eigenvalue of A (a converged Ritz value, common in
    the float32 first step) makes the f x f system singular too: it is the
    secular equation of diag(delta) + F K F^T.  tf.linalg.solve then raises
    "Input matrix is not invertible" (issue 24).  The system is solved by QR
    instead, each pivot of R kept at least eps * max(1, max |R|) in magnitude: a
    perturbation within rounding, which leaves the answer dominated by the
    eigenvector, the limit inverse iteration wants.  Columns come back with
    unit norm."""
    D = delta[:, None] - shifts[None, :]                                   # (N, m)
    D = tf.where(tf.abs(D) < floor, tf.where(D < 0, -floor, floor), D)
    Di = 1.0 / D
    f = tf.shape(F)[1]
    Y = Di * X
    Mj = tf.reshape(tf.matmul(Di, FF, transpose_a=True), tf.stack([-1, f, f]))
    lhs = tf.eye(f, dtype=F.dtype)[None] + tf.matmul(K[None], Mj)
    rhs = tf.matmul(K, tf.matmul(F, Y, transpose_a=True))                  # K F^T D^-1 X
    Q, R = tf.linalg.qr(lhs)
    pivots = tf.linalg.diag_part(R)                                        # (m, f)
    # the scale of lhs = I + K F^T D^-1 F is at least that of I: a system
    # that cancels to exactly 0 (f = 1) still gets a pivot of eps
    least = np.finfo(F.dtype.as_numpy_dtype).eps * tf.maximum(
        tf.reduce_max(tf.abs(R), axis=[1, 2]), 1.0)[:, None]
    pivots = tf.where(tf.abs(pivots) < least, tf.where(pivots < 0, -least, least), pivots)
    z = tf.linalg.triangular_solve(tf.linalg.set_diag(R, pivots),
                                   tf.matmul(Q, tf.transpose(rhs)[:, :, None], transpose_a=True),
                                   lower=False)[:, :, 0]                   # (m, f)
    Y = Y - Di * tf.matmul(F, z, transpose_b=True)
    # by the largest entry first: a (nearly) singular shift amplifies the
    # eigenvector so much that its squared norm overflows in float32
    Y = Y / tf.maximum(tf.reduce_max(tf.abs(Y), axis=0, keepdims=True), _tiny(Y.dtype))
    return Y / tf.maximum(tf.norm(Y, axis=0, keepdims=True), _tiny(Y.dtype))


def _tiny(dtype):
    return np.finfo(dtype.as_numpy_dtype).tiny


def _rayleigh_ritz(Q, AQ, m):
    """Best m-dimensional approximation of the top eigenspace inside span(Q)
    (orthonormal columns, AQ = A Q): a small `eigh`, then (theta, X, A X)."""
    H = tf.matmul(Q, AQ, transpose_a=True)
    theta, C = tf.linalg.eigh(0.5 * (H + tf.transpose(H)))
    C = C[:, ::-1][:, :m]
    return theta[::-1][:m], tf.matmul(Q, C), tf.matmul(AQ, C)


def _largest_residual(X, AX, theta, k):
    """max_j ||A x_j - theta_j x_j|| / max |theta| over the k wanted pairs."""
    R = AX[:, :k] - X[:, :k] * theta[None, :k]
    return tf.reduce_max(tf.norm(R, axis=0)) / tf.maximum(tf.reduce_max(tf.abs(theta)),
                                                          _tiny(theta.dtype))


def _rayleigh_quotients(delta, F, K, X, k):
    """Unit columns, their Rayleigh quotients (descending) and residual."""
    X = X / tf.norm(X, axis=0, keepdims=True)
    AX = _apply(delta, F, K, X)
    theta = tf.reduce_sum(X * AX, axis=0)
    order = tf.argsort(theta, direction="DESCENDING")
    theta, X, AX = tf.gather(theta, order), tf.gather(X, order, axis=1), \
        tf.gather(AX, order, axis=1)
    return theta, X, AX, _largest_residual(X, AX, theta, k)


def _step(delta, F, K, FF, X, AX, theta, k, keep_old):
    """One shift-and-invert + Rayleigh-Ritz step (module docstring)."""
    m = tf.shape(X)[1]
    floor = np.finfo(X.dtype.as_numpy_dtype).eps * tf.reduce_max(tf.abs(theta))
    Y = _shift_invert(delta, F, K, FF, X, theta, floor)
    if keep_old:
        # the old vectors stay in the search space: a warm start's shifts can
        # be poor.  One Householder QR of [X, Y]: projecting Y on X's
        # complement first and orthonormalising the rest loses orthogonality
        # exactly where it matters, in the columns of Y that are (nearly)
        # inside span(X) already
        Y = tf.concat([X, Y], axis=1)
    Q = tf.linalg.qr(Y)[0]
    theta, X, AX = _rayleigh_ritz(Q, _apply(delta, F, K, Q), m)
    return theta, X, AX, _largest_residual(X, AX, theta, k)


def _first_step(delta, F, K, X, k, cold):
    """Ritz pairs of the start block (Rayleigh-Ritz when cold, Rayleigh
    quotients when warm) and the first step from there.

    The first step takes a start with residuals of 1e-4..1e-1 to about
    1e-7; float32 is enough for that and 3-4x faster.  Its vectors are then
    re-measured in float64, and the following (float64) steps converge
    cubically from there.  Returns the start's (theta, X, AX, residual), the
    step's, and FF for the later steps."""
    f = tf.shape(F)[1]
    FF = tf.reshape(F[:, :, None] * F[:, None, :], tf.stack([-1, f * f]))
    if cold:
        theta, X, AX = _rayleigh_ritz(X, _apply(delta, F, K, X), tf.shape(X)[1])
        start = theta, X, AX, _largest_residual(X, AX, theta, k)
    else:
        start = _rayleigh_quotients(delta, F, K, X, k)
    theta, X, AX, _ = start
    args32 = [tf.cast(a, tf.float32) for a in (delta, F, K, FF, X, AX, theta)]
    X32 = _step(*args32, k, True)[1]
    return start, _rayleigh_quotients(delta, F, K, tf.cast(X32, tf.float64), k), FF


_first_cold = _compiled(_VECTOR, _MATRIX, _MATRIX, _MATRIX, _INT)(
    lambda delta, F, K, X, k: _first_step(delta, F, K, X, k, True))
_first_warm = _compiled(_VECTOR, _MATRIX, _MATRIX, _MATRIX, _INT)(
    lambda delta, F, K, X, k: _first_step(delta, F, K, X, k, False))
#: the later steps, in float64: the accurate shifts make the inverted vectors suffice
_later_step = _compiled(_VECTOR, _MATRIX, _MATRIX, _MATRIX, _MATRIX, _MATRIX, _VECTOR, _INT)(
    lambda delta, F, K, FF, X, AX, theta, k: _step(delta, F, K, FF, X, AX, theta, k, False))


def top_eigenpairs(delta, F, K, k: int, X0=None, guard: int = 10, tol: float = 1e-12,
                   max_steps: int = 6) -> TopEigen:
    """The k largest eigenpairs of A = diag(delta) + F K F^T (N x N, symmetric,
    F (N, f) and K (f, f) with f << N), by block shift-and-invert with
    Rayleigh-Ritz (see the module docstring).

    X0 (N, m) is a warm start with orthonormal columns (the previous
    problem's Ritz vectors); without it the search starts from the m
    coordinate vectors with the largest delta, which is right when F K F^T
    is small.  m = k + guard vectors are carried: the guard vectors absorb
    eigenvalues just below the k-th, whose gap to the k-th is often < 1 %.
    Stops when every wanted pair has ||A x - theta x|| <= tol * |theta_max|.
    """
    delta = tf.convert_to_tensor(delta, tf.float64)
    F = tf.convert_to_tensor(F, tf.float64)
    K = tf.convert_to_tensor(K, tf.float64)
    N = int(delta.shape[0])
    if X0 is None:
        top = tf.argsort(delta, direction="DESCENDING")[:min(k + guard, N)]
        X = tf.gather(tf.eye(N, dtype=tf.float64), top, axis=1)
    else:
        X = tf.convert_to_tensor(X0, tf.float64)
    kk = tf.constant(k, tf.int32)
    # the start and the first step in one call (the step is wasted only
    # when the start is already good enough)
    start, stepped, FF = (_first_cold if X0 is None else _first_warm)(delta, F, K, X, kk)
    theta, X, AX, residual = start
    residual, steps = float(residual), 0
    if residual > tol and max_steps > 0:
        theta, X, AX, residual = stepped
        residual, steps = float(residual), 1
    lost = False
    while residual > tol and steps < max_steps and np.isfinite(residual) and not lost:
        before, before_residual = theta.numpy()[:k], residual
        theta, X, AX, residual = _later_step(delta, F, K, FF, X, AX, theta, kk)
        residual = float(residual)
        steps += 1
        # A later step searches the inverted vectors only: had two of them
        # collapsed onto one eigenvector, a wanted pair would be missing
        # although every residual is small, and a Ritz value would drop to
        # the next eigenvalue.  Each Ritz value is within its residual of an
        # eigenvalue, so a drop beyond both steps' residuals means a loss.
        scale = np.max(np.abs(before))
        lost = bool(np.any(theta.numpy()[:k] < before - 2 * (before_residual + residual) * scale))
    return TopEigen(theta, X, steps, residual, bool(residual <= tol and not lost))


# --------------------------------------------------------------------------
# the operator of B's range and the eq. 20 vectors from its eigenvectors
# --------------------------------------------------------------------------

def _s_factors(U, w, lam):
    """S = U diag(w) U^T + lambda I as lambda I + Z diag(s - lambda) Z^T:
    Z (p, r) orthonormal, s the eigenvalues of S on span(Z) (S is lambda on
    the rest); a thin QR of U and an r x r eigh."""
    Q, R = tf.linalg.qr(U)
    small = tf.matmul(R * w[None, :], R, transpose_b=True)
    small = 0.5 * (small + tf.transpose(small)) + lam * tf.eye(tf.shape(U)[1], dtype=U.dtype)
    s, E = tf.linalg.eigh(small)
    return tf.matmul(Q, E), tf.maximum(s, lam)   # S >= lambda I: clip rounding


@_compiled(_MATRIX, _MATRIX, _VECTOR, _SCALAR)
def _range_operator(Wt, U, w, lam):
    """W^T S^-1 W - W^T W / lambda as F K F^T: S^-1 = I / lambda +
    Z diag(1/s - 1/lambda) Z^T, so F = W^T Z and K = diag(1/s - 1/lambda)
    (W^T W = diag(ev) is the diagonal part, in the eigenbasis of B's range)."""
    Z, s = _s_factors(U, w, lam)
    return tf.matmul(Wt, Z), tf.linalg.diag(1.0 / s - 1.0 / lam), Z, s


@_compiled(_MATRIX, _MATRIX, _VECTOR, _MATRIX, _SCALAR)
def _range_vectors(Wt, Z, s, Y, lam):
    """a = S^-1 W y, unit columns."""
    Q = tf.matmul(Wt, Y, transpose_a=True)
    return unit_columns(
        Q / lam + tf.matmul(Z, (1.0 / s - 1.0 / lam)[:, None] * tf.matmul(Z, Q, transpose_a=True)))


def _scalar(x):
    return tf.constant(float(x), tf.float64)
