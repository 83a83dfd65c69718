"""Time and peak memory of a JDA fit against the number of samples.

    python -m mmd.scaling --sizes 1000,3000,10000,30000,100000 --json scaling.json

fits JDA on synthetic two-domain data (seeded; `--classes` Gaussian classes
in a low-dimensional subspace of `--dim` features, the target domain shrunk
towards the origin and moved along a fixed direction by `--shift`) with

* primal       - the published setting: A acts on the d features;
* kernel-exact - "X becomes K": the n x n kernel matrix;
* kernel-nystrom - K through `--n-landmarks` landmarks: K_nm, n x m,

each fit in a fresh process, so that its peak resident memory (RSS, of the
whole process: Python, TensorFlow and the data included) can be read back.
The seconds cover the fit alone (not data generation, not the one-off
compilation of the solver's graphs).  lambda grows with n (`--lambda-scale`).  A fit whose estimated memory or time
exceeds `--max-memory-gib` / `--max-seconds` is not started, and one that
dies or runs out of time is stopped: both give a row whose measurements are
null, with the reason printed.

Writes a folder (`--output-dir`, default runs/mmd/scaling-<time>/) with
config.json, rows.json and scaling.png (log-log seconds and peak memory
against n), and `--json PATH` if given: a list of rows
{"method", "kernel", "n", "d", "seconds", "peak_rss_bytes", "accuracy"}.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from common.errors import main_guard  # noqa: E402
from common.files import check_new_file  # noqa: E402
from common.reports import pyplot, save_figure  # noqa: E402
from common.startup import add_verbose_argument  # noqa: E402
from common.training import make_run_dir, save_config  # noqa: E402

from .validation import InputError  # noqa: E402

METHODS = ("primal", "kernel-exact", "kernel-nystrom")

#: rough costs behind the skip rule, measured on the 2-core machine: a full
#: float64 eigh of an 800 x 800 matrix takes 0.3 s (cubic in n); the exact
#: kernel fit holds about five n x n float64 matrices (K, its scatter, the
#: eigenbasis, temporaries)
_EIGH_800_SECONDS = 0.3
_EXACT_NN_MATRICES = 5


def synthetic_domains(n: int, d: int = 256, n_classes: int = 5, shift: float = 1.0,
                      seed: int = 0):
    """(Xs, ys, Xt, yt), n // 2 source and n - n // 2 target samples.

    Class centres lie in a random 2C-dimensional subspace; the target domain
    has its centres shrunk by 1 - 0.3 shift and moved by 3 shift along a
    fixed direction of that subspace (a marginal and a conditional shift);
    isotropic noise of standard deviation 0.3.  At shift = 1, 1-NN without
    adaptation is ~80 % accurate on the target and JDA ~98 % (n = 2000).
    """
    rng = np.random.default_rng(seed)
    ns, nt = n // 2, n - n // 2
    basis = np.linalg.qr(rng.standard_normal((d, 2 * n_classes)))[0]
    centres = 1.5 * rng.standard_normal((n_classes, 2 * n_classes)) @ basis.T
    direction = basis @ rng.standard_normal(2 * n_classes)
    direction /= np.linalg.norm(direction)
    ys = rng.integers(n_classes, size=ns)
    yt = rng.integers(n_classes, size=nt)
    Xs = centres[ys] + 0.3 * rng.standard_normal((ns, d))
    Xt = (centres[yt] * (1.0 - 0.3 * shift) + 3.0 * shift * direction
          + 0.3 * rng.standard_normal((nt, d)))
    return Xs, ys, Xt, yt


def estimate(method: str, n: int, d: int, m: int, k: int):
    """(bytes, seconds) a fit is expected to need, for the skip rule."""
    double = 8
    data = 6 * n * d * double                      # inputs, stacked, unit rows, copies
    if method == "primal":
        return data + 4 * n * k * double, 0.0
    if method == "kernel-exact":
        return (data + _EXACT_NN_MATRICES * n * n * double,
                _EIGH_800_SECONDS * (n / 800.0) ** 3 * 3)   # eigh + scatter + products
    m = min(m, n)
    return data + 3 * n * m * double, _EIGH_800_SECONDS * (m / 800.0) ** 3 * 3


def _worker(spec: dict):
    """One fit in this (fresh) process; prints a JSON line with the results."""
    Xs, ys, Xt, yt = synthetic_domains(spec["n"], spec["d"], spec["classes"], spec["shift"],
                                       spec["seed"])
    from .solvers import JDA, warm_up
    warm_up()
    params = dict(n_components=spec["n_components"], n_iter=spec["n_iter"],
                  lambda_=spec["lambda_scale"] * spec["n"] / 1000.0)
    if spec["method"] != "primal":
        params.update(kernel=spec["kernel"], gamma=spec["gamma"])
    if spec["method"] == "kernel-nystrom":
        params.update(n_landmarks=min(spec["n_landmarks"], spec["n"]), random_state=spec["seed"])
    t0, c0 = time.perf_counter(), time.process_time()
    est = JDA(**params).fit(Xs, ys, Xt, yt)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    # the process's own high-water mark (KiB on Linux), data and TensorFlow included
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu, "peak_rss_bytes": peak,
                      "accuracy": 100.0 * est.accuracies_[-1]}), flush=True)


def run_one(spec: dict, timeout: float):
    """(results, note) of one fit in a child process: results holds seconds,
    cpu_seconds, peak_rss_bytes and accuracy, or is None with the reason."""
    code = ("import json, sys\nfrom mmd.scaling import _worker\n"
            f"_worker(json.loads({json.dumps(json.dumps(spec))}))")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        return None, f"stopped after {timeout:.0f} s (--max-seconds)"
    if child.returncode != 0:
        last = (err.strip().splitlines() or ["no message"])[-1]
        return None, f"failed (status {child.returncode}): {last}"
    return json.loads(out.strip().splitlines()[-1]), ""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mmd.scaling",
        description="Time and peak memory of JDA fits (primal, exact kernel, Nystrom kernel) "
                    "against the number of samples, on seeded synthetic two-domain data.",
        epilog="examples:\n"
               "  python -m mmd.scaling --json scaling.json\n"
               "  python -m mmd.scaling --sizes 1000,3000 --methods primal,kernel-nystrom",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verbose_argument(p)
    p.add_argument("--sizes", default="1000,3000,10000,30000,100000",
                   help="comma list of n, source + target samples (1000,3000,10000,30000,100000)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma list of {', '.join(METHODS)} (all)")
    p.add_argument("--json", metavar="PATH", help="also write the rows here")
    p.add_argument("--output-dir", help="folder for config.json, rows.json and scaling.png "
                                        "(default: a new runs/mmd/scaling-<time>/)")
    data = p.add_argument_group("synthetic data")
    data.add_argument("--dim", type=int, default=256, help="features d (256)")
    data.add_argument("--classes", type=int, default=5, help="classes (5)")
    data.add_argument("--shift", type=float, default=1.0, help="domain shift, 0 = none (1.0)")
    data.add_argument("--seed", type=int, default=0, help="seed of data and landmarks (0)")
    model = p.add_argument_group("model")
    model.add_argument("--kernel", default="rbf", choices=("rbf", "linear"),
                       help="kernel of the kernel methods (rbf, median-heuristic bandwidth)")
    model.add_argument("--n-landmarks", type=int, default=1000, help="Nystrom landmarks m (1000)")
    model.add_argument("--n-components", type=int, default=100, help="k (100)")
    model.add_argument("--n-iter", type=int, default=10, help="T, JDA iterations (10)")
    model.add_argument("--lambda-scale", type=float, default=1.0,
                       help="lambda = this x n / 1000 (1.0): X M X^T and X H X^T are sums "
                            "over the n samples, so a fixed lambda would weigh less and less "
                            "(at n = 30,000 with lambda = 1 the pseudo labels drift to chance)")
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-memory-gib", type=float, default=8.0,
                        help="skip fits estimated to need more memory (8)")
    limits.add_argument("--max-seconds", type=float, default=600.0,
                        help="skip fits estimated to take longer, stop those that do (600)")
    return p


def _parse_list(text, name, convert, allowed=None):
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        values = [convert(t) for t in items]
    except ValueError:
        raise InputError(f"{name} takes a comma list, got {text!r}") from None
    if not values or (allowed and any(v not in allowed for v in values)):
        raise InputError(f"{name} takes a comma list of {', '.join(allowed or ['numbers'])}, "
                         f"got {text!r}")
    return values


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    sizes = _parse_list(args.sizes, "--sizes", int)
    methods = _parse_list(args.methods, "--methods", str, METHODS)
    if min(sizes) <= args.n_components + 1:
        raise InputError(f"every size must exceed --n-components + 1 = {args.n_components + 1}")
    if args.dim < 1 or args.classes < 2 or args.n_landmarks <= args.n_components \
            or args.n_iter < 1 or not args.lambda_scale > 0:
        raise InputError("--dim >= 1, --classes >= 2, --n-iter >= 1, --lambda-scale > 0 and "
                         "--n-landmarks > --n-components are needed")
    if args.n_components > args.dim and "primal" in methods:
        raise InputError(f"--n-components {args.n_components} exceeds --dim {args.dim} "
                         "(the primal problem has d dimensions)")
    check_new_file(args.json)
    run_dir = make_run_dir(args.output_dir, "runs/mmd", "scaling")
    save_config(run_dir, vars(args))
    print(f"writing to {run_dir}", flush=True)

    rows, cpu = [], {}
    for n in sizes:
        for method in methods:
            spec = {"method": method, "n": n, "d": args.dim, "classes": args.classes,
                    "shift": args.shift, "seed": args.seed, "kernel": args.kernel,
                    "gamma": "median", "n_landmarks": args.n_landmarks,
                    "n_components": args.n_components, "n_iter": args.n_iter,
                    "lambda_scale": args.lambda_scale}
            need_bytes, need_seconds = estimate(method, n, args.dim, args.n_landmarks,
                                                args.n_components)
            kernel = "none" if method == "primal" else args.kernel
            row = {"method": method, "kernel": kernel, "n": n, "d": args.dim,
                   "seconds": None, "peak_rss_bytes": None, "accuracy": None}
            if need_bytes > args.max_memory_gib * 2 ** 30:
                note = (f"not run: needs about {need_bytes / 2 ** 30:.0f} GiB "
                        f"> --max-memory-gib {args.max_memory_gib:g}")
            elif need_seconds > args.max_seconds:
                note = (f"not run: estimated {need_seconds:.0f} s > --max-seconds "
                        f"{args.max_seconds:g}")
            else:
                print(f"  {method:<15} n = {n:>7} ...", end="", flush=True)
                result, note = run_one(spec, args.max_seconds)
                if result:
                    row.update(seconds=round(result["seconds"], 3),
                               peak_rss_bytes=result["peak_rss_bytes"],
                               accuracy=round(result["accuracy"], 2))
                    cpu[method, n] = result["cpu_seconds"]
                print(f" {row['seconds']} s" if result else " " + note, flush=True)
            rows.append(row)
            _print_row(row, note)
    _print_table(rows, cpu)
    (run_dir / "rows.json").write_text(json.dumps(rows, indent=1))
    plot = _plot(rows, run_dir / "scaling.png", args)
    print(f"wrote {run_dir / 'rows.json'} and {plot}")
    if args.json:
        try:
            with open(args.json, "w") as fh:
                json.dump(rows, fh, indent=1)
        except OSError as exc:
            raise InputError(f"cannot write {args.json}: {exc}") from None
        print(f"wrote {args.json}")
    return 0


def _print_row(row, note):
    if note and row["seconds"] is None:
        print(f"  {row['method']:<15} n = {row['n']:>7}: {note}", flush=True)


def _print_table(rows, cpu):
    print()
    print(f"{'method':<15} {'kernel':<6} {'n':>7} {'d':>4} {'seconds':>9} {'CPU s':>9} "
          f"{'peak RSS GiB':>12} {'accuracy %':>10}")
    for r in rows:
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.2f}"
        cpu_s = f"{cpu[r['method'], r['n']]:.2f}" if (r["method"], r["n"]) in cpu else "-"
        rss = "-" if r["peak_rss_bytes"] is None else f"{r['peak_rss_bytes'] / 2 ** 30:.2f}"
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.2f}"
        print(f"{r['method']:<15} {r['kernel']:<6} {r['n']:>7} {r['d']:>4} {secs:>9} {cpu_s:>9} "
              f"{rss:>12} {acc:>10}")


def _plot(rows, path, args):
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method, style in zip(METHODS, ("o-", "s-", "^-"), strict=False):
        done = [r for r in rows if r["method"] == method and r["seconds"] is not None]
        if not done:
            continue
        n = [r["n"] for r in done]
        left.plot(n, [r["seconds"] for r in done], style, label=method)
        right.plot(n, [r["peak_rss_bytes"] / 2 ** 30 for r in done], style, label=method)
    for axis, label in ((left, "fit seconds"), (right, "peak RSS (GiB, whole process)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("n = source + target samples")
        axis.set_ylabel(label)
        axis.grid(alpha=0.3, which="both")
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
    save_figure(figure, path, f"JDA on synthetic data, d = {args.dim}, k = {args.n_components}, "
                f"T = {args.n_iter}, m = {args.n_landmarks} landmarks ({args.kernel})")
    return path


if __name__ == "__main__":
    sys.exit(main())
