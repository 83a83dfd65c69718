"""The Office-Caltech10 SURF benchmark of the TCA / JDA / BDA papers.

    python -m mmd.benchmark --data-dir ../shared/data/office_caltech10_surf --method jda

runs the 12 tasks (C->A ... D->W) with the papers' settings (primal, k = 100,
lambda = 1, T = 10, 1-NN) and prints accuracy (%) and seconds per task and
the average; `--json PATH` writes the same numbers.  `nn` is the baseline
without adaptation: scikit-learn's 1-NN on the protocol-normalised features.

The other methods, on the same features and tasks (`mmd.weighting`,
`mmd.alignment`): `nn-normalised`, 1-NN on the same rows scaled to unit L2
norm as TCA / JDA / BDA scale them before their projection (so that the
difference to TCA is the adaptation alone); `sa` (k = `--n-components`)
and `coral` (lambda = 1) with 1-NN; `kmm` and `kliep`, instance weights
for a LogisticRegression(max_iter=1000) (1-NN takes no sample weights),
and `lr`, the same classifier without weights, their baseline.

`--solver` picks how eq. 20 is solved: `iterative` (the default, warm-
started), `exact` (a dense solve of the k wanted pairs at every iteration)
or `scipy-eig`, a dense reference that follows the public numpy implementation's approach
(n x n M and H matrices, a general `scipy.linalg.eig` of the pencil), so a
speed-up can be measured on the same machine rather than quoted; it runs with
the estimators' BLAS threads (`mmd.eigensolvers.blas_threads`), the same
conditions for both.  A comma
list (`--solver iterative,scipy-eig`) runs every task with each solver,
back to back, and adds the per-task speed-up and the number of target labels
on which the solvers disagree.  `--profile` adds, per task, where the time
went (the estimators' `fit_seconds_`: normalising, B, B's eigenbasis, M,
the solves, the projection, the 1-NN, and the domains' loading); `--json`
saves it in any case.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import numpy as np  # noqa: E402

from common.errors import main_guard  # noqa: E402
from common.files import check_new_file  # noqa: E402
from common.startup import add_verbose_argument  # noqa: E402

from .data import DOMAINS, load_domain, parse_tasks  # noqa: E402
from .validation import InputError  # noqa: E402

METHODS = ("nn", "tca", "jda", "bda", "nn-normalised", "lr", "kmm", "kliep", "sa", "coral")
#: methods without an eq. 20 solve (no --solver, no warm-up); see `run_simple`
SIMPLE_METHODS = ("nn", "nn-normalised", "lr", "kmm", "kliep", "sa", "coral")
SOLVER_CHOICES = ("iterative", "exact", "scipy-eig")

#: average accuracy (%) over the 12 tasks reported in the JDA paper
#: (Long et al., ICCV 2013, Table 2, Office+Caltech SURF)
PUBLISHED = {"nn": 31.37, "tca": 43.61, "jda": 46.31}


def dense_reference(Xs, ys, Xt, method, n_components, lambda_, n_iter, mu, progress=None,
                    return_solution=False):
    """Target pseudo labels by the dense approach of the public numpy code.

    Forms the n x n matrices M and H, the d x d products X M X^T and X H X^T
    by dense multiplication, and solves eq. 20 with the general (QZ)
    `scipy.linalg.eig`; 1-NN from scikit-learn.  Kept only as a timing and
    agreement baseline for `--solver scipy-eig`.  `return_solution` also
    returns the last iteration's k eigenvalues phi (ascending) and their
    eigenvectors A (d, k), so that tests can compare subspaces too.
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
        if t == 0:
            # b = X H X^T is singular with duplicate samples or zero/constant
            # features: its null space gives infinite eigenvalues, and rounding
            # turns some into huge finite ones of either sign, so only the
            # `rank` smallest positive ones are eq. 20's answer (the same
            # rank rule as mmd.eigensolvers.Eq20Solver)
            ev = np.linalg.eigvalsh(b)
            rank = int(np.count_nonzero(ev > d * np.finfo(float).eps * max(ev.max(), 0.0)))
            if n_components > rank:
                raise InputError(f"n_components={n_components} exceeds the rank {rank} of the "
                                 "centred scatter X H X^T (duplicate samples or zero/constant "
                                 "features)")
        w, V = scipy.linalg.eig(a, b)
        real = np.where(np.isfinite(w) & (w.real > 0), w.real, np.inf)
        order = np.argsort(real, kind="stable")[:n_components]
        A = V[:, order].real
        Z = A.T @ X
        Z = Z / np.linalg.norm(Z, axis=0)
        clf = KNeighborsClassifier(n_neighbors=1).fit(Z[:, :ns].T, ys)
        pseudo = clf.predict(Z[:, ns:].T)
        if progress:
            progress(f"    iteration {t + 1}: eig done")
    if return_solution:
        return pseudo, real[order], A
    return pseudo


def make_estimator(args, n_samples: int):
    """TCA / JDA / BDA with the command's settings; n_landmarks is capped at
    the task's number of samples (where it is the exact kernel)."""
    from .solvers import BDA, JDA, TCA
    common = dict(n_components=args.n_components, kernel=args.kernel, lambda_=args.lambda_,
                  gamma=args.gamma, n_landmarks=None if args.n_landmarks is None
                  else min(args.n_landmarks, n_samples),
                  landmarks=args.landmarks, random_state=args.seed)
    if args.method == "tca":
        return TCA(**common)
    if args.method == "jda":
        return JDA(n_iter=args.n_iter, **common)
    return BDA(n_iter=args.n_iter, mu=args.mu, **common)


def run_simple(method, Xs, ys, Xt, args):
    """Target labels and extra information of the methods without eq. 20
    (`SIMPLE_METHODS`)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    if method == "nn":
        return KNeighborsClassifier(n_neighbors=1).fit(Xs, ys).predict(Xt), {}
    if method == "nn-normalised":
        from sklearn.preprocessing import normalize
        return (KNeighborsClassifier(n_neighbors=1).fit(normalize(Xs), ys)
                .predict(normalize(Xt))), {}
    if method == "lr":
        return LogisticRegression(max_iter=1000).fit(Xs, ys).predict(Xt), {}
    if method in ("kmm", "kliep"):
        from .weighting import KLIEP, KMM
        est = (KMM() if method == "kmm" else KLIEP(random_state=args.seed)).fit(Xs, ys, Xt)
        w = est.weights_
        info = {"weights_min": round(float(w.min()), 4), "weights_max": round(float(w.max()), 4),
                "weights_effective_n": round(float(w.sum() ** 2 / (w @ w)), 1)}
        if method == "kliep":
            info["sigma"] = round(float(est.sigma_), 4)
        return est.predict(Xt), info
    from .alignment import CORAL, SA
    clf = None if args.classifier == "nn" else LogisticRegression(max_iter=1000)
    est = SA(n_components=args.n_components, classifier=clf) if method == "sa" \
        else CORAL(classifier=clf)
    return est.fit(Xs, ys, Xt).predict(Xt), {}


def run_task(task, data, args, solver):
    """Accuracy %, seconds (fit and prediction, not data loading), target
    labels and extra information of one task with one solver; with one task
    at a time the information has the process's CPU seconds too (every
    thread's; concurrent tasks would share them)."""
    src, tgt = task.split("->")
    Xs, ys = data[src]
    Xt, yt = data[tgt]
    info = {}
    t0, c0 = time.perf_counter(), time.process_time()
    if args.method in SIMPLE_METHODS:
        pred, info = run_simple(args.method, Xs, ys, Xt, args)
    elif solver == "scipy-eig":
        from .eigensolvers import blas_threads
        # with the estimators' BLAS threads (one): on the shared 2-core
        # machine two made this baseline twice as slow (TCA C->A: 19.2 s
        # against 9.9 s), which would flatter the speed-up
        with blas_threads():
            pred = dense_reference(Xs, ys, Xt, args.method, args.n_components, args.lambda_,
                                   args.n_iter, args.mu, progress=_say if args.jobs == 1 else None)
    else:
        est = make_estimator(args, len(Xs) + len(Xt)).set_params(solver=solver)
        est.fit(Xs, ys, Xt, yt)
        pred = est.pseudo_labels_
        info = {"iterations": [round(100 * a, 2) for a in est.accuracies_],
                "eigensolves": est.n_eigensolves_, "solver_steps": est.n_solver_steps_,
                "solver_fallbacks": est.n_solver_fallbacks_,
                "stages": {s: round(v, 4) for s, v in est.fit_seconds_.items()}}
        if est.landmark_indices_ is not None:
            info["n_landmarks"] = len(est.landmark_indices_)
    seconds = time.perf_counter() - t0
    if args.jobs == 1:
        info["cpu_seconds"] = round(time.process_time() - c0, 3)
    return 100.0 * float(np.mean(pred == yt)), seconds, np.asarray(pred), info


_print_lock = threading.Lock()


def _say(msg):
    with _print_lock:
        print(msg, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mmd.benchmark",
        description="Office-Caltech10 SURF benchmark (12 tasks) of 1-NN without adaptation, "
                    "TCA, JDA and BDA, with the published protocol and settings; also 1-NN on "
                    "unit-norm rows, LogisticRegression without and with KMM / KLIEP weights, "
                    "SA and CORAL.",
        epilog="examples:\n"
               "  python -m mmd.benchmark --data-dir ../shared/data/office_caltech10_surf "
               "--method jda --json jda.json\n"
               "  python -m mmd.benchmark --data-dir ../shared/data/office_caltech10_surf "
               "--method jda --jobs 1 --solver iterative,scipy-eig   # per-task speed-up\n"
               "  python -m mmd.benchmark --data-dir ../shared/data/office_caltech10_surf "
               "--method jda --kernel rbf --n-landmarks 1000   # Nystrom",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verbose_argument(p)
    p.add_argument("--data-dir", default=os.environ.get("OFFICE_CALTECH_DIR",
                                                        "data/office_caltech10_surf"),
                   help="folder with the four *_SURF_L10.mat files "
                        "(default: $OFFICE_CALTECH_DIR or data/office_caltech10_surf)")
    p.add_argument("--method", required=True, choices=METHODS, help="what to run")
    p.add_argument("--tasks", default="all",
                   help="'all' or a comma list such as C-A,W-D or CtoA (C->A must be quoted in a shell: "
                        "> is a redirect)")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    p.add_argument("--profile", action="store_true",
                   help="also print where each task's time goes (loading, normalising, B, B's "
                        "eigenbasis, M, the solves, the projection, the 1-NN; the estimators' "
                        "fit_seconds_); --json saves it in any case")
    p.add_argument("--jobs", type=int, default=None,
                   help="tasks run concurrently, one thread and one core each (default: the "
                        "number of usable CPU cores, at most the number of tasks; 1 = one "
                        "task at a time with all cores)")
    model = p.add_argument_group("model")
    model.add_argument("--n-components", type=int, default=100, help="k (paper: 100)")
    model.add_argument("--lambda", dest="lambda_", type=float, default=1.0,
                       help="lambda (paper: 1)")
    model.add_argument("--n-iter", type=int, default=10, help="T, JDA/BDA iterations (paper: 10)")
    model.add_argument("--kernel", default="primal", choices=("primal", "linear", "rbf"),
                       help="primal (paper), or a kernelised problem")
    model.add_argument("--gamma", default=1.0, type=_gamma,
                       help="RBF gamma, or 'median' (1.0)")
    model.add_argument("--mu", type=float, default=0.5,
                       help="BDA balance factor mu in [0, 1] (0.5, which equals JDA)")
    model.add_argument("--n-landmarks", type=int, default=None,
                       help="with --kernel: Nystrom approximation through this many landmark "
                            "samples (capped at a task's ns + nt, where it is exact)")
    model.add_argument("--landmarks", default="uniform", choices=("uniform", "kmeans++"),
                       help="how the landmarks are drawn (uniform)")
    model.add_argument("--seed", type=int, default=0,
                       help="seed of the landmark draw and of KLIEP's centres and folds (0)")
    model.add_argument("--classifier", default="nn", choices=("nn", "lr"),
                       help="classifier of sa and coral: nn, the protocol's 1-NN (default), or "
                            "lr, LogisticRegression(max_iter=1000)")
    model.add_argument("--solver", default="iterative",
                       help="eq. 20 solver: iterative (default), exact, or scipy-eig (dense "
                            "reference, slow, primal only); a comma list runs each")
    return p


def _gamma(text):
    if text == "median":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"gamma must be a number or 'median', got {text!r}") from None


def _check_args(args):
    """Everything about the arguments that argparse cannot check; InputError."""
    tasks = parse_tasks(args.tasks)
    solvers = [s.strip() for s in args.solver.split(",") if s.strip()]
    bad = [s for s in solvers if s not in SOLVER_CHOICES]
    if bad or not solvers or len(set(solvers)) != len(solvers):
        raise InputError(f"--solver takes a comma list of {', '.join(SOLVER_CHOICES)} "
                         f"(each once); got {args.solver!r}")
    if args.method in SIMPLE_METHODS:
        solvers = solvers[:1]
    if args.jobs is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else (os.cpu_count() or 1)
        args.jobs = max(1, min(cores, len(tasks)))
    if args.jobs < 1:
        raise InputError("--jobs must be >= 1")
    if not 0.0 <= args.mu <= 1.0:
        raise InputError(f"--mu must be in [0, 1], got {args.mu}")
    if args.n_components < 1 or args.n_iter < 1 or not args.lambda_ > 0:
        raise InputError("--n-components and --n-iter must be >= 1 and --lambda > 0")
    if args.n_landmarks is not None:
        if args.kernel == "primal":
            raise InputError("--n-landmarks needs --kernel linear or rbf")
        if args.n_landmarks < 1:
            raise InputError(f"--n-landmarks must be >= 1, got {args.n_landmarks}")
    if "scipy-eig" in solvers and (args.kernel != "primal" or args.method in SIMPLE_METHODS):
        raise InputError("--solver scipy-eig implements the primal TCA / JDA / BDA only")
    if not os.path.isdir(args.data_dir):
        raise InputError(f"--data-dir {args.data_dir!r} is not a folder; point it at the "
                         "Office-Caltech10 SURF files (e.g. ../shared/data/office_caltech10_surf)")
    return tasks, solvers


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    tasks, solvers = _check_args(args)
    check_new_file(args.json)
    needed = sorted({d for t in tasks for d in t.split("->")}, key=list(DOMAINS).index)
    data, load_seconds = {}, {}
    for d in needed:
        t0 = time.perf_counter()
        data[d] = load_domain(args.data_dir, d)   # read and normalised once per process
        load_seconds[d] = time.perf_counter() - t0

    settings = {"kernel": args.kernel, "n_components": args.n_components, "lambda": args.lambda_}
    if args.method in ("jda", "bda"):   # TCA is one solve: no iterations, no mu
        settings["n_iter"] = args.n_iter
    if args.method == "bda":
        settings["mu"] = args.mu
    if args.kernel == "rbf":
        settings["gamma"] = args.gamma
    if args.n_landmarks is not None:
        settings.update(n_landmarks=args.n_landmarks, landmarks=args.landmarks, seed=args.seed)
    desc = SIMPLE_DESCRIPTIONS.get(args.method) or \
        ", ".join(f"{k}={v}" for k, v in settings.items())
    if args.method in ("sa", "coral"):
        desc = desc.format(k=args.n_components, clf="1-NN" if args.classifier == "nn"
                           else "LogisticRegression(max_iter=1000)")
    elif args.method == "kliep":
        desc = desc.format(seed=args.seed)
    _say(f"{args.method.upper()} on Office-Caltech10 SURF, {len(tasks)} task(s) ({desc}), "
         f"solver {', '.join(solvers)}, jobs={args.jobs}")

    import tensorflow as tf  # imported here, and configured before its first op

    if args.jobs > 1:
        # one core per task: TF's own thread pool would make the concurrent
        # tasks' matmuls fight over the same cores
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(args.jobs)
        except RuntimeError:  # TF already running (main() called in-process): share
            pass
        # and numpy's BLAS (SA, CORAL, KMM, ...): its threads on top of the
        # concurrent tasks slowed a 150-sample KMM solve 20-fold
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=1, user_api="blas")
    if args.method not in SIMPLE_METHODS and any(s != "scipy-eig" for s in solvers):
        # compile the fit's graphs before the clock starts (a one-off per
        # process; the time is printed, not hidden)
        from .solvers import warm_up
        t0 = time.perf_counter()
        src, tgt = max((t.split("->") for t in tasks),
                       key=lambda st: len(data[st[0]][0]) + len(data[st[1]][0]))
        warm_up(size=(len(data[src][0]), len(data[tgt][0]), data[src][0].shape[1]))
        _say(f"compiled the fit's graphs and fitted TCA and JDA once at {src}->{tgt}'s size, "
             f"on random data, in {time.perf_counter() - t0:.2f} s "
             "(once per process, not in the task times)")

    results = {task: {} for task in tasks}
    done = [0]

    def one(task):
        for solver in solvers:
            try:
                acc, secs, labels, info = run_task(task, data, args, solver)
            except InputError as exc:
                raise InputError(f"{task}: {exc}") from None
            results[task][solver] = {"accuracy": round(acc, 2), "seconds": round(secs, 3),
                                     "labels": labels, **info}
        with _print_lock:
            done[0] += 1
            parts = [f"{results[task][s]['accuracy']:6.2f} % {results[task][s]['seconds']:8.2f} s"
                     + (f" ({s})" if len(solvers) > 1 else "") for s in solvers]
            print(f"[{done[0]:2d}/{len(tasks)}] {task}  " + "   ".join(parts), flush=True)

    wall0 = time.perf_counter()
    if args.jobs == 1:
        for task in tasks:
            one(task)
    else:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            list(pool.map(one, tasks))
    wall = time.perf_counter() - wall0

    summary = {}
    for s in solvers:
        summary[s] = {"average": round(float(np.mean([results[t][s]["accuracy"] for t in tasks])), 2),
                      "total_seconds": round(float(sum(results[t][s]["seconds"] for t in tasks)), 2)}
        if args.jobs == 1:
            summary[s]["total_cpu_seconds"] = round(
                float(sum(results[t][s]["cpu_seconds"] for t in tasks)), 2)
    _print_table(tasks, solvers, results, summary, wall, args)
    if args.profile:
        _print_profile(tasks, solvers, results, load_seconds)
    if args.json:
        out = {"method": args.method, "settings": settings, "solvers": solvers,
               "jobs": args.jobs, "wall_seconds": round(wall, 2), "summary": summary,
               "load_seconds": {d: round(s, 4) for d, s in load_seconds.items()},
               "tasks": {t: {s: {k: (v.tolist() if k == "labels" else v)
                                 for k, v in results[t][s].items()} for s in solvers}
                         for t in tasks}}
        try:
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=1)
        except OSError as exc:
            raise InputError(f"cannot write {args.json}: {exc}") from None
        print(f"wrote {args.json}")
    return 0


#: what the header line says for the methods without eq. 20
SIMPLE_DESCRIPTIONS = {
    "nn": "no adaptation",
    "nn-normalised": "no adaptation, 1-NN on unit-L2-norm rows",
    "lr": "no adaptation, LogisticRegression(max_iter=1000)",
    "kmm": "KMM weights (RBF, median gamma, B=1000), LogisticRegression(max_iter=1000)",
    "kliep": "KLIEP weights (100 target centres, sigma by 5-fold likelihood CV, seed={seed}), "
             "LogisticRegression(max_iter=1000)",
    "sa": "subspace alignment, k={k}, {clf}",
    "coral": "CORAL, lambda=1, {clf}",
}


def _print_table(tasks, solvers, results, summary, wall, args):
    """Accuracy and seconds per task and solver; with several solvers the
    speed-up over the first and the labels on which they differ; with one
    task at a time also the CPU seconds and their ratio (under a shared
    machine's load the CPU seconds vary far less than the wall seconds)."""
    cpu = args.jobs == 1
    print()
    head = f"{'task':<6}" + "".join(f" {'acc % ' + s:>18} {'s ' + s:>14}"
                                    + (f" {'cpu s ' + s:>16}" if cpu else "") for s in solvers)
    base = solvers[0]
    others = solvers[1:]
    head += "".join(f" {'x faster than ' + o:>22}" + (f" {'x less cpu':>10}" if cpu else "")
                    + f" {'labels differ':>13}" for o in others)
    print(head)

    def ratio(o, t, key):
        return results[t][o][key] / max(results[t][base][key], 1e-9)

    for t in tasks:
        row = f"{t:<6}" + "".join(f" {results[t][s]['accuracy']:>18.2f} "
                                  f"{results[t][s]['seconds']:>14.2f}"
                                  + (f" {results[t][s]['cpu_seconds']:>16.2f}" if cpu else "")
                                  for s in solvers)
        for o in others:
            differ = int(np.count_nonzero(results[t][o]["labels"] != results[t][base]["labels"]))
            row += f" {ratio(o, t, 'seconds'):>22.1f}" \
                + (f" {ratio(o, t, 'cpu_seconds'):>10.1f}" if cpu else "") + f" {differ:>13d}"
        print(row)
    row = f"{'avg':<6}" + "".join(f" {summary[s]['average']:>18.2f} "
                                  f"{summary[s]['total_seconds']:>14.2f}"
                                  + (f" {summary[s]['total_cpu_seconds']:>16.2f}" if cpu else "")
                                  for s in solvers)
    for o in others:
        row += f" {summary[o]['total_seconds'] / max(summary[base]['total_seconds'], 1e-9):>22.1f}"
        if cpu:
            row += f" {summary[o]['total_cpu_seconds'] / max(summary[base]['total_cpu_seconds'], 1e-9):>10.1f}"
    print(row)
    print(f"(seconds: fit and prediction per task; the avg row sums them; wall {wall:.2f} s"
          + (" for all solvers" if others else "") + ")")
    if len(tasks) == 12 and args.method in PUBLISHED:
        print(f"published average (JDA paper): {PUBLISHED[args.method]:.2f}")


#: the columns of --profile, in the order a fit runs them (`fit_seconds_`)
STAGES = ("normalise", "B", "eigenbasis", "M", "solves", "projection", "1-NN")


def _print_profile(tasks, solvers, results, load_seconds):
    """Where each task's seconds went, per solver that records it: the fit's
    stages, `other` (the rest of the task's seconds: the estimator's set-up,
    the bookkeeping), and `load`, the reading and protocol normalisation of
    its two domains (done once per process and shared, not in the task's
    seconds)."""
    for s in solvers:
        if "stages" not in results[tasks[0]][s]:
            continue
        print()
        print(f"where the time goes, solver {s} (seconds; load, each domain read and normalised "
              "once per process, is not part of a task's seconds, and its sum counts each domain once)")
        head = f"{'task':<6} {'load':>7}" + "".join(f" {c:>10}" for c in STAGES) \
            + f" {'other':>7} {'total':>7}"
        print(head)
        sums = np.zeros(len(STAGES) + 3)
        for t in tasks:
            r = results[t][s]
            src, tgt = t.split("->")
            load = load_seconds[src] + load_seconds[tgt]
            stages = [r["stages"].get(c, 0.0) for c in STAGES]
            other = r["seconds"] - sum(stages)
            row = [load, *stages, other, r["seconds"]]
            sums += row
            print(f"{t:<6} {load:>7.3f}" + "".join(f" {v:>10.3f}" for v in stages)
                  + f" {other:>7.3f} {r['seconds']:>7.3f}")
        print(f"{'sum':<6} {sum(load_seconds.values()):>7.3f}" + "".join(f" {v:>10.3f}" for v in sums[1:-2])
              + f" {sums[-2]:>7.3f} {sums[-1]:>7.3f}")
        share = sums[1:-1] / max(sums[-1], 1e-12)
        print(f"{'share':<6} {'':>7}" + "".join(f" {100 * v:>9.1f}%" for v in share[:-1])
              + f" {100 * share[-1]:>6.1f}%")


if __name__ == "__main__":
    sys.exit(main())
