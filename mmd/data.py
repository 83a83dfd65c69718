"""Office-Caltech10 SURF features and the normalisation of the published tables.

The benchmark numbers of TCA / JDA / BDA are only comparable when the
features are prepared exactly as in the papers' code: each 800-bin SURF
histogram divided by its sum (L1), then every feature z-scored within its own
domain (population std, ddof = 0; a constant feature becomes 0 rather than
NaN).  The per-domain z-score is itself a crude adaptation step, which is why
the plain 1-NN baseline is ~31 % and not lower.
"""
from __future__ import annotations

import os

import numpy as np
import scipy.io
from sklearn.preprocessing import StandardScaler, normalize

from .validation import InputError

#: letter -> file stem, as the tasks are named in the papers (C->A = Caltech to Amazon)
DOMAINS = {"C": "Caltech10", "A": "amazon", "W": "webcam", "D": "dslr"}

#: the 12 tasks in the order of the JDA paper's table
TASKS = ("C->A", "C->W", "C->D", "A->C", "A->W", "A->D",
         "W->C", "W->A", "W->D", "D->C", "D->A", "D->W")


def protocol_normalize(X, zscore: bool = True) -> np.ndarray:
    """L1-normalise each sample, then z-score each feature within the domain.

    Returns a new float64 array; `X` is not touched.  An all-zero sample stays
    zero and a constant feature becomes zero, so no NaN can appear.
    `zscore=False` stops after the L1 step: the z-score equalises each
    feature's mean and variance across domains, which hides most of the shift
    from an MMD test.
    """
    X = np.asarray(X, dtype=np.float64)  # uint8 counts would overflow in the sum
    X = normalize(X, norm="l1")          # counts are >= 0: |x| sums are the sums
    if not zscore:
        return X
    return StandardScaler().fit_transform(X)   # population std (ddof = 0), as published


def domain_path(data_dir: str, domain: str) -> str:
    """File of one domain; accepts the SURF_L10 names of the original release
    and the short names (caltech.mat, ...) used by some public repositories."""
    if domain not in DOMAINS:
        raise InputError(f"unknown domain {domain!r}; expected one of {', '.join(DOMAINS)}")
    stem = DOMAINS[domain]
    candidates = [f"{stem}_SURF_L10.mat", f"{stem.lower()}.mat",
                  "caltech.mat" if domain == "C" else f"{stem}.mat"]
    for name in candidates:
        path = os.path.join(data_dir, name)
        if os.path.isfile(path):
            return path
    raise InputError(
        f"no {stem}_SURF_L10.mat in {data_dir!r}; pass --data-dir pointing at the "
        "Office-Caltech10 SURF folder (e.g. ../shared/data/office_caltech10_surf)")


def read_mat(path: str, features_key: str | None = None, labels_key: str | None = None):
    """(features, labels or None) of a .mat file; the keys default to the two
    spellings in circulation (fts/labels and feas/label)."""
    try:
        mat = scipy.io.loadmat(path)
    except Exception as exc:
        raise InputError(f"cannot read {path!r} as a .mat file: {exc}") from None
    fkeys = [features_key] if features_key else ["fts", "feas", "X"]
    lkeys = [labels_key] if labels_key else ["labels", "label", "y"]
    fkey = next((k for k in fkeys if k in mat), None)
    if fkey is None:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise InputError(f"{path!r} has no {'/'.join(fkeys)} array (keys: {', '.join(keys)})")
    lkey = next((k for k in lkeys if k in mat), None)
    y = None if lkey is None else np.asarray(mat[lkey]).ravel()
    return np.asarray(mat[fkey]), y


def load_domain(data_dir: str, domain: str, normalize: str | None = "protocol"):
    """(X, y) of one Office-Caltech10 domain.

    normalize: "protocol" (L1 + per-domain z-score, the published setting),
    "l1" (L1 only) or None (raw counts as float64).
    """
    if normalize not in ("protocol", "l1", None):
        raise InputError(f"normalize must be 'protocol', 'l1' or None, got {normalize!r}")
    X, y = read_mat(domain_path(data_dir, domain))
    if y is None:
        raise InputError(f"{domain_path(data_dir, domain)!r} has no labels")
    if normalize is None:
        X = X.astype(np.float64)
    else:
        X = protocol_normalize(X, zscore=normalize == "protocol")
    return X, y.astype(np.int64)


def parse_tasks(spec: str) -> list[str]:
    """'all' or a comma list such as 'C->A,W->D' (also 'C-A', 'CtoA', 'CA').

    An unquoted ``C->A`` never arrives: the shell reads ``>`` as a redirection,
    passes ``C-`` and writes the output to a file named ``A``; a task ending in
    ``-`` says so.
    """
    if spec is None or spec.strip().lower() == "all":
        return list(TASKS)
    tasks = []
    for item in spec.split(","):
        item = item.strip().upper().replace(" ", "")
        if not item:
            continue
        if item.endswith("-"):
            raise InputError(
                f"bad task {item!r}: an unquoted {item}>X is cut at '>' by the shell (the output went to a file "
                f"named X); write {item}X or {item[:-1]}toX without '>', or quote it: '{item}>X'")
        if "->" in item:
            parts = item.split("->")
        elif "TO" in item:   # no domain letter is T or O
            parts = item.split("TO")
        elif "-" in item:
            parts = item.split("-")
        else:
            parts = list(item)
        if len(parts) != 2 or parts[0] not in DOMAINS or parts[1] not in DOMAINS \
                or parts[0] == parts[1]:
            raise InputError(
                f"bad task {item!r}; use SOURCE->TARGET with two different letters of "
                f"{'/'.join(DOMAINS)}, e.g. C->A, or 'all'")
        task = f"{parts[0]}->{parts[1]}"
        if task not in tasks:
            tasks.append(task)
    if not tasks:
        raise InputError("no task given; use 'all' or e.g. C->A,W->D")
    return tasks
