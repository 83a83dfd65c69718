"""Eq. 20 solvers timed on the eigenproblems of one Office-Caltech JDA fit.

    python -m mmd.solver_timing --data-dir ../shared/data/office_caltech10_surf --task 'C->A'

records the M of every iteration of a JDA fit (primal, k = 100: an 800 x 800
pencil for the SURF features) and solves each problem with

* tf-eigh-full  - `tf.linalg.eigh` of the reduced symmetric matrix
                  L^-1 B L^-T (formed beforehand, not timed), all 800 pairs;
* scipy-subset  - `scipy.linalg.eigh(..., subset_by_index=...)` (LAPACK's
                  partial solver, dsyevr) of the same matrix, the k wanted
                  pairs;
* exact         - this package's solver="exact" from M's factors: the
                  reduced matrix S^-1/2 B S^-1/2 (O(p^2 r)) and its k wanted
                  pairs (dsyevr on a CPU, `mmd.eigensolvers.symmetric_eigh`);
* iterative     - solver="iterative", warm-started from the previous
                  iteration like inside a fit (the first problem cold), from
                  M's factors, with the steps of this device (NumPy / LAPACK
                  on a CPU, `mmd.lapack_steps`); B's eigendecomposition,
                  computed once per fit, is timed on its own line (LAPACK's
                  dsyevd on a CPU, and `tf.linalg.eigh` beside it);
* iterative-tf  - the same with the steps as TensorFlow graphs (a GPU's
                  path), on whatever device this is.

The SciPy / LAPACK calls run with the estimators' BLAS threads
(`mmd.eigensolvers.blas_threads`).
Each time is the best of `--repeats` runs (a shared machine adds noise, not
speed).  The largest eq. 20 residual of each solver is printed beside it.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from common.errors import main_guard  # noqa: E402
from common.files import check_new_file  # noqa: E402
from common.startup import add_verbose_argument  # noqa: E402

from .data import load_domain, parse_tasks  # noqa: E402
from .validation import InputError  # noqa: E402


def best_time(fn, repeats: int):
    """(best seconds, last result) of `repeats` calls."""
    best, result = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mmd.solver_timing",
        description="Time the eq. 20 eigensolvers (TF full eigh, LAPACK partial eigh, this "
                    "package's exact and iterative solvers) on the problems of one JDA fit.",
        epilog="example:\n  python -m mmd.solver_timing --data-dir "
               "../shared/data/office_caltech10_surf --task 'C->A' --json timing.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verbose_argument(p)
    p.add_argument("--data-dir", default=os.environ.get("OFFICE_CALTECH_DIR",
                                                        "data/office_caltech10_surf"),
                   help="Office-Caltech10 SURF folder (default: $OFFICE_CALTECH_DIR or "
                        "data/office_caltech10_surf)")
    p.add_argument("--task", default="C->A", help="one task, quoted for the shell (default: 'C->A')")
    p.add_argument("--n-components", type=int, default=100, help="k (100)")
    p.add_argument("--n-iter", type=int, default=10, help="JDA iterations recorded (10)")
    p.add_argument("--repeats", type=int, default=3, help="runs per timing, best kept (3)")
    p.add_argument("--json", metavar="PATH", help="also write the timings here")
    return p


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    tasks = parse_tasks(args.task)
    if len(tasks) != 1:
        raise InputError(f"--task takes one task, got {args.task!r}")
    if args.repeats < 1 or args.n_iter < 1 or args.n_components < 1:
        raise InputError("--repeats, --n-iter and --n-components must be >= 1")
    if not os.path.isdir(args.data_dir):
        raise InputError(f"--data-dir {args.data_dir!r} is not a folder")
    check_new_file(args.json)
    src, tgt = tasks[0].split("->")
    Xs, ys = load_domain(args.data_dir, src)
    Xt, yt = load_domain(args.data_dir, tgt)

    import scipy.linalg
    import tensorflow as tf

    from . import eigensolvers as eig
    from . import solvers

    k = args.n_components
    # the problems: replay a JDA fit and keep each iteration's (U, w)
    problems = []
    original = eig.Eq20Solver.solve

    def recording(self, U, w):
        problems.append((tf.identity(U), np.array(w)))
        return original(self, U, w)

    eig.Eq20Solver.solve = recording
    try:
        fit = solvers.JDA(n_components=k, n_iter=args.n_iter, solver="exact")
        fit.fit(Xs, ys, Xt, yt)
    finally:
        eig.Eq20Solver.solve = original
    X = solvers.unit_rows(tf.constant(np.vstack([Xs, Xt])))
    Pc = X - tf.reduce_mean(X, axis=0, keepdims=True)
    if int(X.shape[0]) < int(X.shape[1]):
        raise InputError(f"{tasks[0]} has fewer samples than features (the n x n Gram side); "
                         "time a task with ns + nt > 800, e.g. C->A")
    B = tf.matmul(Pc, Pc, transpose_a=True)
    Bn = B.numpy()
    p = int(B.shape[0])
    eig.warm_up()
    print(f"{tasks[0]}: {len(problems)} eigenproblems of size {p}, k = {k}, "
          f"best of {args.repeats}", flush=True)

    def reduced(U, w):
        S = tf.matmul(U * w[None, :], U, transpose_b=True) + tf.eye(p, dtype=tf.float64)
        L = tf.linalg.cholesky(S)
        W = tf.linalg.triangular_solve(L, B, lower=True)
        T = tf.linalg.triangular_solve(L, tf.transpose(W), lower=True)
        return 0.5 * (T + tf.transpose(T))

    def residual(U, w, phi, V):
        S = tf.matmul(U * w[None, :], U, transpose_b=True) + tf.eye(p, dtype=tf.float64)
        SV, BV = tf.matmul(S, V), tf.matmul(B, V)
        return float(tf.reduce_max(tf.norm(SV - BV * phi[None, :], axis=0)
                                   / tf.norm(SV, axis=0)))

    with eig.blas_threads():
        basis_seconds, _ = best_time(lambda: eig.symmetric_eigh(Bn), args.repeats)
    tf_basis_seconds, _ = best_time(lambda: tf.linalg.eigh(B)[0].numpy(), args.repeats)
    rows = []
    warm = eig.Eq20Solver(1.0, k, B=Bn)                            # this device's steps
    graphs = eig.Eq20Solver(1.0, k, B=Bn, backend="tensorflow")    # the TF graphs
    with eig.blas_threads():
        warm._build_range()            # once per fit, timed above
        graphs._build_range()

    def replay(solver, U, w):
        """best_time of one warm-started solve: the same warm start (the previous
        problem's answer) for every repeat, as inside a fit."""
        previous = solver._previous

        def once():
            solver._previous = previous
            return solver.solve(U, w)

        return best_time(once, args.repeats)

    for i, (U, w) in enumerate(problems):
        T = reduced(U, w)
        Tn = T.numpy()
        full, _ = best_time(lambda T=T: tf.linalg.eigh(T)[0].numpy(), args.repeats)
        with eig.blas_threads():
            subset, _ = best_time(lambda Tn=Tn: scipy.linalg.eigh(Tn, subset_by_index=[p - k, p - 1]),
                                  args.repeats)
            exact, (phi_e, V_e) = best_time(lambda U=U, w=w: eig.solve_exact(U, w, 1.0, k, B=Bn),
                                            args.repeats)
        previous = warm._previous
        # B's eigenbasis is computed once per fit (by _build_range), timed apart
        seconds, (phi_i, V_i) = replay(warm, U, w)
        steps = warm.steps[-1]
        seconds_tf, _ = replay(graphs, U, w)
        rows.append({"iteration": i + 1, "tf_eigh_full": full, "scipy_subset": subset,
                     "exact": exact, "iterative": seconds, "iterative_tf": seconds_tf,
                     "iterative_steps": steps,
                     "warm": previous is not None,
                     "residual_exact": residual(U, w, tf.constant(phi_e), V_e),
                     "residual_iterative": residual(U, w, tf.constant(phi_i), V_i)})
    print()
    print(f"{'iter':>4} {'tf eigh full':>12} {'scipy subset':>12} {'exact':>9} "
          f"{'iterative':>9} {'iterative-tf':>12} {'steps':>5} {'residual exact':>14} "
          f"{'residual iter.':>14}")
    for r in rows:
        print(f"{r['iteration']:>4} {r['tf_eigh_full']:>12.4f} {r['scipy_subset']:>12.4f} "
              f"{r['exact']:>9.4f} {r['iterative']:>9.4f} {r['iterative_tf']:>12.4f} "
              f"{r['iterative_steps']:>5} {r['residual_exact']:>14.1e} "
              f"{r['residual_iterative']:>14.1e}")
    median = {key: float(np.median([r[key] for r in rows[1:] or rows]))
              for key in ("tf_eigh_full", "scipy_subset", "exact", "iterative", "iterative_tf")}
    print(f"median of the warm iterations: tf eigh full {median['tf_eigh_full']:.4f} s, "
          f"scipy subset {median['scipy_subset']:.4f} s, exact {median['exact']:.4f} s, "
          f"iterative {median['iterative']:.4f} s, iterative-tf {median['iterative_tf']:.4f} s")
    print(f"B's eigendecomposition (once per fit, by the first iterative solve): "
          f"{basis_seconds:.4f} s (tf.linalg.eigh: {tf_basis_seconds:.4f} s)")
    if args.json:
        try:
            with open(args.json, "w") as fh:
                json.dump({"task": tasks[0], "size": p, "k": k, "repeats": args.repeats,
                           "basis_eigh_seconds": basis_seconds,
                           "basis_tf_eigh_seconds": tf_basis_seconds, "median_warm": median,
                           "iterations": rows}, fh, indent=1)
        except OSError as exc:
            raise InputError(f"cannot write {args.json}: {exc}") from None
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
