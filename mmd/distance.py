"""Maximum mean discrepancy (eq. 4, with the 1/n1, 1/n2 of the means the text omits:
docs/textbook-errata.md, E1) and the kernel two-sample test.

MMD(P, Q) = || E_P phi(x) - E_Q phi(y) ||_H, and squared it expands into
kernel means only: E k(x, x') + E k(y, y') - 2 E k(x, y).  Three estimators
of MMD^2 are offered because they trade bias for cost:

* "biased" (V-statistic): all pairs, including i = j.  What the adaptation
  solvers minimise (tr(X M X^T) with M of eq. 11 is exactly this with the
  linear kernel); always >= 0, but positive in expectation even when P = Q.
* "unbiased" (U-statistic): drops the i = j terms, so its expectation is
  exactly MMD^2 (it can be negative).  The usual statistic for the test.
* "linear": Gretton et al.'s linear-time estimator over disjoint pairs; O(n)
  time and memory for samples too large for an n x n Gram matrix, at the
  price of more variance.

`mmd2` is built from TensorFlow ops, so it can serve as a differentiable loss
(float32 tensors stay float32).  `mmd_test` attaches a p-value: under
H0: P = Q the split of the pooled sample into "X" and "Y" is arbitrary, so
re-splitting it at random gives the null distribution of the statistic.

Command line (see `python -m mmd.distance --help`): MMD^2 and its p-value
between two feature files or two Office-Caltech10 domains, before and after
TCA / JDA / BDA.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import argparse  # noqa: E402
import collections  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from common.errors import main_guard  # noqa: E402
from common.startup import add_verbose_argument  # noqa: E402

from .kernels import KERNEL_NAMES, as_tensor, make_kernel  # noqa: E402
from .validation import InputError, check_features, check_int, check_same_width  # noqa: E402

ESTIMATORS = ("biased", "unbiased", "linear")

MMDTestResult = collections.namedtuple(
    "MMDTestResult", ["statistic", "p_value", "n_permutations", "estimator", "kernel"])
MMDTestResult.__doc__ = """Outcome of `mmd_test`: the observed MMD^2 estimate, its p-value
(permutation, or the normal approximation for the linear estimator, where
`n_permutations` is 0) and the kernel as resolved (bandwidths included)."""


def _pair(X, Y, min_samples: int):
    """Validate and convert a pair of samples; tensors keep their dtype so a
    float32 training loss stays float32, everything else becomes float64."""
    out = []
    for arr, name in ((X, "X"), (Y, "Y")):
        if isinstance(arr, (tf.Tensor, tf.Variable)):
            t = as_tensor(arr)
            if t.shape.rank != 2:
                raise InputError(f"{name} must be 2-D (n_samples, n_features), got shape {t.shape}")
            if t.shape[0] is not None and t.shape[0] < min_samples:
                raise InputError(f"{name} needs at least {min_samples} samples, got {t.shape[0]}")
            if tf.executing_eagerly() and not bool(tf.reduce_all(tf.math.is_finite(t))):
                raise InputError(f"{name} contains NaN or infinite values")
            out.append(t)
        else:
            out.append(tf.constant(check_features(arr, name, min_samples)))
    X, Y = out
    if X.shape[1] != Y.shape[1]:
        raise InputError(
            f"X has {X.shape[1]} features but Y has {Y.shape[1]}; MMD compares samples "
            "of the same space")
    if X.dtype != Y.dtype:  # mixed precision: compute in the wider one
        X, Y = tf.cast(X, tf.float64), tf.cast(Y, tf.float64)
    return X, Y


def _check_estimator(estimator):
    if estimator not in ESTIMATORS:
        raise InputError(f"unknown estimator {estimator!r}; expected one of {', '.join(ESTIMATORS)}")


def _linear_terms(X, Y, k):
    """h_i = k(x, x') + k(y, y') - k(x, y') - k(x', y) over disjoint pairs;
    their mean is the linear-time estimate (Gretton et al. 2012, Lemma 14)."""
    m2 = min(int(X.shape[0]), int(Y.shape[0])) // 2
    x1, x2 = X[0:2 * m2:2], X[1:2 * m2:2]
    y1, y2 = Y[0:2 * m2:2], Y[1:2 * m2:2]
    return k.paired(x1, x2) + k.paired(y1, y2) - k.paired(x1, y2) - k.paired(x2, y1)


def mmd2(X, Y, kernel="rbf", estimator="biased", **kernel_params) -> tf.Tensor:
    """Squared MMD between the samples X (m, d) and Y (n, d), a scalar tensor.

    kernel : 'linear', 'rbf', 'polynomial', 'multi-rbf', a `Kernel` or a
        callable k(A, B) -> Gram tensor.  RBF bandwidths default to the median
        heuristic on the pooled sample (`gamma=None`); pass `gamma=` to fix it
        (a loss inside a training loop usually should, so that the kernel does
        not move with the batch).
    estimator : 'biased', 'unbiased' or 'linear' (see the module docstring).
    """
    _check_estimator(estimator)
    X, Y = _pair(X, Y, 2 if estimator != "biased" else 1)
    k = make_kernel(kernel, X, Y, **kernel_params)
    if estimator == "linear":
        return tf.reduce_mean(_linear_terms(X, Y, k))
    Kxx, Kyy, Kxy = k.gram(X, X), k.gram(Y, Y), k.gram(X, Y)
    if estimator == "biased":
        return tf.reduce_mean(Kxx) + tf.reduce_mean(Kyy) - 2.0 * tf.reduce_mean(Kxy)
    m = tf.cast(tf.shape(X)[0], Kxx.dtype)
    n = tf.cast(tf.shape(Y)[0], Kxx.dtype)
    xx = (tf.reduce_sum(Kxx) - tf.linalg.trace(Kxx)) / (m * (m - 1.0))
    yy = (tf.reduce_sum(Kyy) - tf.linalg.trace(Kyy)) / (n * (n - 1.0))
    return xx + yy - 2.0 * tf.reduce_mean(Kxy)


def _split_statistics(K, diag, member, m, n, estimator):
    """MMD^2 of many splits of the pooled sample at once.

    `member` is (b, N) with 1 where a pooled point is assigned to X.  With
    a = member and c = 1 - a the biased estimate is w^T K w for
    w = a/m - c/n, and the unbiased one removes the diagonal from the
    within-sample sums; one (b, N) x (N, N) matmul serves all b splits.
    """
    a = member
    c = 1.0 - member
    Ka = tf.matmul(a, K)
    Kc = tf.matmul(c, K)
    aa = tf.reduce_sum(Ka * a, axis=1)
    cc = tf.reduce_sum(Kc * c, axis=1)
    ac = tf.reduce_sum(Ka * c, axis=1)
    if estimator == "biased":
        return aa / m ** 2 + cc / n ** 2 - 2.0 * ac / (m * n)
    aa = aa - tf.linalg.matvec(a, diag)
    cc = cc - tf.linalg.matvec(c, diag)
    return aa / (m * (m - 1)) + cc / (n * (n - 1)) - 2.0 * ac / (m * n)


def mmd_test(X, Y, kernel="rbf", estimator="unbiased", n_permutations=1000, seed=None,
             batch_size=200, **kernel_params) -> MMDTestResult:
    """Two-sample test of H0: X and Y come from the same distribution.

    The p-value is (1 + #{splits with statistic >= observed}) / (1 + B) over
    B random re-splits of the pooled sample, which is valid (never
    anti-conservative) for any B.  The kernel - including a median-heuristic
    bandwidth - is fixed from the pooled sample before permuting, as the
    permutation argument requires.  The 'linear' estimator uses its
    asymptotic normal null instead (one-sided, variance from the h_i terms),
    which is what makes it usable on samples too large for permutations.
    """
    _check_estimator(estimator)
    X, Y = _pair(X, Y, 2)
    X, Y = tf.cast(X, tf.float64), tf.cast(Y, tf.float64)
    k = make_kernel(kernel, X, Y, **kernel_params)
    if estimator == "linear":
        h = _linear_terms(X, Y, k).numpy()
        stat = float(h.mean())
        sd = float(h.std(ddof=1)) if h.size > 1 else 0.0
        if sd == 0.0:
            p = 1.0 if stat <= 0 else 0.0
        else:
            z = stat / (sd / math.sqrt(h.size))
            p = 0.5 * math.erfc(z / math.sqrt(2.0))
        return MMDTestResult(stat, p, 0, estimator, repr(k))
    n_permutations = check_int(n_permutations, "n_permutations", minimum=1)
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    m, n = int(X.shape[0]), int(Y.shape[0])
    Z = tf.concat([X, Y], axis=0)
    K = k.gram(Z, Z)
    diag = tf.linalg.diag_part(K)
    observed_split = np.concatenate([np.ones(m), np.zeros(n)])[None, :]
    stat = float(_split_statistics(K, diag, tf.constant(observed_split), m, n, estimator)[0])
    rng = np.random.default_rng(seed)
    exceed = 0
    tol = 1e-12 * max(1.0, abs(stat))  # equal splits must count as ">=" despite rounding
    for start in range(0, n_permutations, batch_size):
        b = min(batch_size, n_permutations - start)
        member = np.zeros((b, m + n))
        for i in range(b):
            member[i, rng.permutation(m + n)[:m]] = 1.0
        null = _split_statistics(K, diag, tf.constant(member), m, n, estimator).numpy()
        exceed += int(np.count_nonzero(null >= stat - tol))
    return MMDTestResult(stat, (1 + exceed) / (1 + n_permutations), n_permutations,
                         estimator, repr(k))


# --------------------------------------------------------------------------
# command line
# --------------------------------------------------------------------------

def _read_features(path: str, key: str | None):
    """(features, labels or None) from .npy / .npz / .csv / .txt / .mat."""
    from .data import read_mat  # the .mat conventions live with the data loader
    if not os.path.isfile(path):
        raise InputError(f"no such file: {path}")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".mat":
            return read_mat(path, features_key=key)
        if ext == ".npy":
            return np.load(path, allow_pickle=False), None
        if ext == ".npz":
            with np.load(path, allow_pickle=False) as z:
                name = key or ("X" if "X" in z.files else z.files[0])
                if name not in z.files:
                    raise InputError(f"{path} has no array {name!r} (has {', '.join(z.files)})")
                y = z["y"] if "y" in z.files else None
                return z[name], y
        if ext in (".csv", ".txt", ".tsv"):
            delimiter = "," if ext == ".csv" else None
            return np.loadtxt(path, delimiter=delimiter, ndmin=2), None
    except InputError:
        raise
    except Exception as exc:   # whatever the parser says about a malformed file
        raise InputError(f"cannot read {path}: {exc}") from None
    raise InputError(f"unsupported file type {ext!r} for {path}; use .npy, .npz, .csv, .txt or .mat")


def _subsample(X, y, max_samples, rng):
    if max_samples is None or X.shape[0] <= max_samples:
        return X, y
    idx = np.sort(rng.choice(X.shape[0], max_samples, replace=False))
    return X[idx], None if y is None else y[idx]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mmd.distance",
        description="MMD^2 and a two-sample test p-value between two samples, before and "
                    "after MMD-based adaptation (TCA / JDA / BDA).",
        epilog="examples:\n"
               "  python -m mmd.distance --data-dir ../shared/data/office_caltech10_surf "
               "--source C --target A --adapt jda\n"
               "  python -m mmd.distance source.npy target.npy --kernel rbf --permutations 500",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_verbose_argument(p)
    p.add_argument("files", nargs="*", metavar="FILE",
                   help="two feature files (source, target): .npy, .npz, .csv, .txt or .mat; "
                        "rows are samples")
    p.add_argument("--data-dir", help="Office-Caltech10 SURF folder (use with --source/--target)")
    p.add_argument("--source", help="source domain letter C, A, W or D")
    p.add_argument("--target", help="target domain letter C, A, W or D")
    p.add_argument("--key", help="array name inside .mat/.npz files (default: fts/feas/X)")
    p.add_argument("--labels", nargs=2, metavar=("SRC_LABELS", "TGT_LABELS"),
                   help="label files (.npy/.txt) for feature files without labels; the source "
                        "labels are needed by --adapt jda/bda, the target ones only for accuracy")
    p.add_argument("--protocol", action="store_true",
                   help="apply the Office-Caltech protocol (L1, per-domain z-score) to feature "
                        "files too (always applied to --data-dir domains, unless --l1-only)")
    p.add_argument("--l1-only", action="store_true",
                   help="--data-dir domains: L1-normalise only, skip the per-domain z-score "
                        "(which equalises feature means and variances and so hides the shift)")
    p.add_argument("--adapt", default="none",
                   help="comma list of none, tca, jda, bda: spaces to compare (default: none)")
    p.add_argument("--n-components", type=int, default=100, help="k for the adaptation (100)")
    p.add_argument("--lambda", dest="lambda_", type=float, default=1.0, help="lambda (1.0)")
    p.add_argument("--n-iter", type=int, default=10, help="JDA/BDA iterations (10)")
    p.add_argument("--mu", type=float, default=0.5, help="BDA balance factor (0.5)")
    p.add_argument("--kernel", default="rbf", choices=KERNEL_NAMES,
                   help="kernel of the MMD statistic (rbf, median-heuristic bandwidth)")
    p.add_argument("--gamma", type=float, default=None,
                   help="RBF gamma of the statistic; default: median heuristic per space")
    p.add_argument("--estimator", default="unbiased", choices=ESTIMATORS,
                   help="MMD^2 estimator (unbiased)")
    p.add_argument("--permutations", type=int, default=500,
                   help="permutations for the p-value (500)")
    p.add_argument("--max-samples", type=int, default=None,
                   help="test on at most this many random samples per side (speed)")
    p.add_argument("--seed", type=int, default=0, help="seed of permutations and subsampling")
    return p


def _load_inputs(args):
    from . import data as d
    if args.data_dir or args.source or args.target:
        if args.files:
            raise InputError("give either two FILEs or --data-dir/--source/--target, not both")
        if not (args.data_dir and args.source and args.target):
            raise InputError("--data-dir, --source and --target go together")
        norm = "l1" if args.l1_only else "protocol"
        Xs, ys = d.load_domain(args.data_dir, args.source.upper(), normalize=norm)
        Xt, yt = d.load_domain(args.data_dir, args.target.upper(), normalize=norm)
        return Xs, ys, Xt, yt, f"{args.source.upper()}->{args.target.upper()}"
    if args.l1_only:
        raise InputError("--l1-only applies to --data-dir domains; for files use --protocol or not")
    if len(args.files) != 2:
        raise InputError(f"need exactly two feature files (source, target), got {len(args.files)}")
    (Xs, ys), (Xt, yt) = (_read_features(f, args.key) for f in args.files)
    if args.labels:
        ys = _read_features(args.labels[0], None)[0].ravel()
        yt = _read_features(args.labels[1], None)[0].ravel()
    Xs = check_features(Xs, args.files[0], 2)
    Xt = check_features(Xt, args.files[1], 2)
    check_same_width(Xs, Xt, args.files[0], args.files[1])
    if args.protocol:
        Xs, Xt = d.protocol_normalize(Xs), d.protocol_normalize(Xt)
    return Xs, ys, Xt, yt, f"{os.path.basename(args.files[0])} vs {os.path.basename(args.files[1])}"


@main_guard
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from sklearn.neighbors import KNeighborsClassifier

    from .solvers import BDA, JDA, TCA
    spaces = [s.strip().lower() for s in args.adapt.split(",") if s.strip()]
    bad = [s for s in spaces if s not in ("none", "tca", "jda", "bda")]
    if bad or not spaces:
        raise InputError(f"--adapt takes none, tca, jda, bda; got {args.adapt!r}")
    if args.permutations < 1:
        raise InputError("--permutations must be >= 1")
    if args.max_samples is not None and args.max_samples < 2:
        raise InputError("--max-samples must be >= 2")
    Xs, ys, Xt, yt, title = _load_inputs(args)
    print(f"{title}: {Xs.shape[0]} source and {Xt.shape[0]} target samples, "
          f"{Xs.shape[1]} features", flush=True)
    rows = []
    for space in spaces:
        t0 = time.perf_counter()
        acc = None
        if space == "none":
            Zs, Zt = Xs, Xt
            if yt is not None and ys is not None:
                pred = KNeighborsClassifier(1).fit(Xs, np.asarray(ys).ravel()).predict(Xt)
                acc = 100.0 * float(np.mean(pred == np.asarray(yt).ravel()))
        else:
            params = dict(n_components=args.n_components, lambda_=args.lambda_)
            if space == "tca":
                est = TCA(**params)
            elif space == "jda":
                est = JDA(n_iter=args.n_iter, **params)
            else:
                est = BDA(n_iter=args.n_iter, mu=args.mu, **params)
            if space != "tca" and ys is None:
                raise InputError(f"--adapt {space} needs source labels (a .mat with labels, "
                                 "or --labels)")
            print(f"  fitting {space.upper()} ...", flush=True)
            est.fit(Xs, ys, Xt)
            Zs, Zt = est.transform(Xs), est.transform(Xt)
            if yt is not None and ys is not None:
                acc = 100.0 * float(np.mean(est.predict(Xt) == np.asarray(yt).ravel()))
        rng = np.random.default_rng(args.seed)
        Zs_, _ = _subsample(Zs, None, args.max_samples, rng)
        Zt_, _ = _subsample(Zt, None, args.max_samples, rng)
        print(f"  testing {space} space ({args.permutations} permutations) ...", flush=True)
        res = mmd_test(Zs_, Zt_, kernel=args.kernel, estimator=args.estimator,
                       n_permutations=args.permutations, seed=args.seed, gamma=args.gamma)
        rows.append((space, Zs.shape[1], res, acc, time.perf_counter() - t0))
    print()
    print(f"{'space':<8} {'dim':>5} {'MMD^2 (' + args.estimator + ')':>20} {'p-value':>9} "
          f"{'1-NN acc %':>10} {'seconds':>8}")
    for space, dim, res, acc, secs in rows:
        acc_s = "-" if acc is None else f"{acc:.2f}"
        print(f"{space:<8} {dim:>5} {res.statistic:>20.6f} {res.p_value:>9.4f} "
              f"{acc_s:>10} {secs:>8.1f}")
    print(f"kernel per space: {', '.join(f'{r[0]}={r[2].kernel}' for r in rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
