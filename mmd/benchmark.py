"""The Office-Caltech10 SURF benchmark of the TCA / JDA / BDA papers.

    python -m mmd.benchmark --data-dir ../shared/data/office_caltech10_surf --method jda

runs the 12 tasks (C->A ... D->W) with the papers' settings (primal, k = 100,
lambda = 1, T = 10, 1-NN) and prints accuracy (%) and seconds per task and
the average; `--json PATH` writes the same numbers.  `nn` is the baseline
without adaptation: 1-NN on the protocol-normalised features.

`--solver scipy-eig` swaps the TensorFlow solver for a dense reference that
follows the public numpy implementation's approach (n x n M and H matrices,
a general `scipy.linalg.eig` of the pencil), so the speed-up can be measured
on the same machine rather than quoted; it builds the same M (rebuilt each
iteration from the current pseudo labels) and should give the same
accuracies.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402

from .data import DOMAINS, load_domain, parse_tasks  # noqa: E402

METHODS = ("nn", "tca", "jda", "bda")

#: average accuracy (%) over the 12 tasks reported in the JDA paper
#: (Long et al., ICCV 2013, Table 2, Office+Caltech SURF)
PUBLISHED = {"nn": 31.37, "tca": 43.61, "jda": 46.31}


def dense_reference(Xs, ys, Xt, method, n_components, lambda_, n_iter, mu, progress=None):
    """Target pseudo labels by the dense approach of the public numpy code.

    Forms the n x n matrices M and H, the d x d products X M X^T and X H X^T
    by dense multiplication, and solves eq. 20 with the general (QZ)
    `scipy.linalg.eig`; 1-NN from scikit-learn.  Kept only as a timing and
    agreement baseline for `--solver scipy-eig`.
    """
    import scipy.linalg
    from sklearn.neighbors import KNeighborsClassifier

    X = np.vstack([Xs, Xt]).T                           # d x n, samples as columns
    X = X / np.linalg.norm(X, axis=0)
    d, n = X.shape
    ns, nt = Xs.shape[0], Xt.shape[0]
    classes = np.unique(ys)
    C = len(classes)
    H = np.eye(n) - np.ones((n, n)) / n
    e0 = np.concatenate([np.full(ns, 1.0 / ns), np.full(nt, -1.0 / nt)])[:, None]
    mu = {"tca": 0.0, "jda": 0.5}.get(method, mu)
    pseudo = None
    for t in range(1 if method == "tca" else n_iter):
        M = (1 - mu) * C * (e0 @ e0.T)
        if pseudo is not None:
            for c in classes:
                e = np.zeros((n, 1))
                if np.any(pseudo == c):
                    e[:ns][ys == c] = 1.0 / np.sum(ys == c)
                    e[ns:][pseudo == c] = -1.0 / np.sum(pseudo == c)
                M = M + mu * (e @ e.T)
        M = M / np.linalg.norm(M, "fro")
        a = X @ M @ X.T + lambda_ * np.eye(d)
        b = X @ H @ X.T
        w, V = scipy.linalg.eig(a, b)
        order = np.argsort(w.real)[:n_components]
        A = V[:, order].real
        Z = A.T @ X
        Z = Z / np.linalg.norm(Z, axis=0)
        clf = KNeighborsClassifier(n_neighbors=1).fit(Z[:, :ns].T, ys)
        pseudo = clf.predict(Z[:, ns:].T)
        if progress:
            progress(f"    iteration {t + 1}: eig done")
    return pseudo


def run_task(task, data, args):
    """(accuracy %, seconds, extra info) of one task; seconds cover fit and
    prediction, not data loading."""
    from .solvers import BDA, JDA, TCA, NearestNeighbour

    src, tgt = task.split("->")
    Xs, ys = data[src]
    Xt, yt = data[tgt]
    info = {}
    t0 = time.perf_counter()
    if args.method == "nn":
        pred = NearestNeighbour().fit(Xs, ys).predict(Xt)
    elif args.solver == "scipy-eig":
        pred = dense_reference(Xs, ys, Xt, args.method, args.n_components, args.lambda_,
                               args.n_iter, args.mu, progress=_say if args.jobs == 1 else None)
    else:
        common = dict(n_components=args.n_components, kernel=args.kernel,
                      lambda_=args.lambda_, gamma=args.gamma)
        if args.method == "tca":
            est = TCA(**common)
        elif args.method == "jda":
            est = JDA(n_iter=args.n_iter, **common)
        else:
            est = BDA(n_iter=args.n_iter, mu=args.mu, **common)
        est.fit(Xs, ys, Xt, yt)
        pred = est.pseudo_labels_
        info = {"iterations": [round(100 * a, 2) for a in est.accuracies_],
                "eigensolves": est.n_eigensolves_}
    seconds = time.perf_counter() - t0
    return 100.0 * float(np.mean(pred == yt)), seconds, info


_print_lock = threading.Lock()


def _say(msg):
    with _print_lock:
        print(msg, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mmd.benchmark",
        description="Office-Caltech10 SURF benchmark (12 tasks) of 1-NN without adaptation, "
                    "TCA, JDA and BDA, with the published protocol and settings.",
        epilog="example:\n  python -m mmd.benchmark --data-dir ../shared/data/office_caltech10_surf "
               "--method jda --json jda.json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("OFFICE_CALTECH_DIR",
                                                        "data/office_caltech10_surf"),
                   help="folder with the four *_SURF_L10.mat files "
                        "(default: $OFFICE_CALTECH_DIR or data/office_caltech10_surf)")
    p.add_argument("--method", required=True, choices=METHODS, help="what to run")
    p.add_argument("--tasks", default="all",
                   help="'all' or a comma list such as 'C->A,W->D' (quote it in a shell: "
                        "> is a redirect)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    p.add_argument("--n-components", type=int, default=100, help="k (paper: 100)")
    p.add_argument("--lambda", dest="lambda_", type=float, default=1.0, help="lambda (paper: 1)")
    p.add_argument("--n-iter", type=int, default=10, help="T, JDA/BDA iterations (paper: 10)")
    p.add_argument("--kernel", default="primal", choices=("primal", "linear", "rbf"),
                   help="primal (paper), or a kernelised problem")
    p.add_argument("--gamma", default=1.0, type=_gamma, help="RBF gamma, or 'median' (1.0)")
    p.add_argument("--mu", type=float, default=0.5,
                   help="BDA balance factor mu in [0, 1] (0.5, which equals JDA)")
    p.add_argument("--jobs", type=int, default=None,
                   help="tasks run concurrently, one thread and one core each (default: the "
                        "number of usable CPU cores, at most the number of tasks; 1 = one "
                        "task at a time with all cores)")
    p.add_argument("--solver", default="tf", choices=("tf", "scipy-eig"),
                   help="tf: this package; scipy-eig: dense reference baseline (slow, primal only)")
    return p


def _gamma(text):
    if text == "median":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"gamma must be a number or 'median', got {text!r}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        tasks = parse_tasks(args.tasks)
        if args.jobs is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
                else (os.cpu_count() or 1)
            args.jobs = max(1, min(cores, len(tasks)))
        if args.jobs < 1:
            raise ValueError("--jobs must be >= 1")
        if not 0.0 <= args.mu <= 1.0:
            raise ValueError(f"--mu must be in [0, 1], got {args.mu}")
        if args.n_components < 1 or args.n_iter < 1 or not args.lambda_ > 0:
            raise ValueError("--n-components and --n-iter must be >= 1 and --lambda > 0")
        if args.solver == "scipy-eig" and args.kernel != "primal":
            raise ValueError("--solver scipy-eig implements the primal problem only")
        if not os.path.isdir(args.data_dir):
            raise ValueError(f"--data-dir {args.data_dir!r} is not a folder; point it at the "
                             "Office-Caltech10 SURF files (e.g. ../shared/data/office_caltech10_surf)")
        needed = sorted({d for t in tasks for d in t.split("->")}, key=list(DOMAINS).index)
        data = {d: load_domain(args.data_dir, d) for d in needed}
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    settings = {"kernel": args.kernel, "n_components": args.n_components,
                "lambda": args.lambda_, "n_iter": args.n_iter, "solver": args.solver}
    if args.method == "bda":
        settings["mu"] = args.mu
    if args.kernel == "rbf":
        settings["gamma"] = args.gamma
    desc = "no adaptation" if args.method == "nn" else \
        ", ".join(f"{k}={v}" for k, v in settings.items())
    _say(f"{args.method.upper()} on Office-Caltech10 SURF, {len(tasks)} task(s) ({desc}), "
         f"jobs={args.jobs}")

    import tensorflow as tf  # imported here, and configured before its first op

    if args.jobs > 1:
        # one core per task: TF's own thread pool would make the concurrent
        # tasks' matmuls fight over the same cores
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(args.jobs)
        except RuntimeError:  # TF already running (main() called in-process): share
            pass
    from . import solvers  # noqa: F401  (import before the clock starts)

    results = {}
    done = [0]

    def one(task):
        try:
            acc, secs, info = run_task(task, data, args)
        except ValueError as exc:
            raise ValueError(f"{task}: {exc}") from None
        with _print_lock:
            done[0] += 1
            extra = f" ({info['eigensolves']} eigensolves)" if "eigensolves" in info else ""
            print(f"[{done[0]:2d}/{len(tasks)}] {task}  {acc:6.2f} %  {secs:7.2f} s{extra}",
                  flush=True)
        results[task] = {"accuracy": round(acc, 2), "seconds": round(secs, 2), **info}

    wall0 = time.perf_counter()
    try:
        if args.jobs == 1:
            for task in tasks:
                one(task)
        else:
            with ThreadPoolExecutor(max_workers=args.jobs) as pool:
                list(pool.map(one, tasks))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - wall0

    average = float(np.mean([results[t]["accuracy"] for t in tasks]))
    total = float(sum(results[t]["seconds"] for t in tasks))
    print()
    print(f"{'task':<6} {'accuracy %':>10} {'seconds':>8}")
    for t in tasks:
        print(f"{t:<6} {results[t]['accuracy']:>10.2f} {results[t]['seconds']:>8.2f}")
    print(f"{'avg':<6} {average:>10.2f} {total:>8.2f}  (sum of task seconds; wall {wall:.2f} s)")
    if len(tasks) == 12 and args.method in PUBLISHED:
        print(f"published average (JDA paper): {PUBLISHED[args.method]:.2f}")
    if args.json:
        out = {"method": args.method, "settings": settings,
               "tasks": {t: results[t] for t in tasks}, "average": round(average, 2),
               "total_seconds": round(total, 2), "wall_seconds": round(wall, 2),
               "jobs": args.jobs}
        try:
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=2)
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
