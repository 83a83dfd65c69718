"""Choosing lambda without target labels: the mean entropy of the target predictions.

Unsupervised domain adaptation has no labelled target data to validate on,
and the source's validation accuracy cannot tell how well the domains were
aligned (a network that ignores the target scores the same on it). The
weight lambda of eq. 21-22 is therefore chosen here by an *unsupervised*
criterion computed on the unlabelled target alone: the mean entropy of the
predicted class distribution,

    H = -(1 / n_t) sum_i sum_k p_ik log p_ik,

the lower the better (Morerio et al. 2018 choose Deep CORAL's weight this
way): a representation in which the target points sit inside the source's
class clusters is predicted confidently, one in which they sit between
clusters is not. The target's labels play no part; it is still a heuristic
(a network that collapses every target point into one class would also be
confident), which is why the grid is small and centred on the papers' value.
"""
from __future__ import annotations

import numpy as np

from common import selection as common_selection

#: lambda's candidates: the papers' 1 and a factor of about 3 either side
TRADE_OFF_GRID = (0.3, 1.0, 3.0)


# the mean entropy of the rows (0 for one-hot rows, log K for uniform ones): one copy, shared with mmd.scoring
prediction_entropy = common_selection.prediction_entropy


def select_by_entropy(candidates):
    """The candidate with the lowest target entropy: ``candidates`` is a list of dicts with "target_entropy"."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    return min(candidates, key=lambda candidate: candidate["target_entropy"])


#: the label-free criteria of the selection table: (name, key of a candidate, lower is better)
CRITERIA = (("entropy", "target_entropy", True), ("DEV", "dev_risk", True),
            ("source validation", "source_val_accuracy", False))


def selection_rows(rows) -> list[dict]:
    """Per method and criterion: the lambda each seed's criterion picks, the target accuracy it lands on,
    and how far that is below the oracle's pick (the candidate the target labels would choose)."""
    table = []
    for item in rows:
        seeds = item.get("candidates") or []
        if not seeds:
            continue
        oracle = [max(c["oracle_target_accuracy"] for c in seed) for seed in seeds]
        for name, key, lower in CRITERIA:
            if any(c[key] is None for seed in seeds for c in seed):
                continue
            picks = [(min if lower else max)(seed, key=lambda c, key=key: c[key]) for seed in seeds]
            landed = [pick["oracle_target_accuracy"] for pick in picks]
            table.append({"direction": item["direction"], "method": item["method"], "criterion": name,
                          "picked": [pick["trade_off"] for pick in picks], "accuracy": float(np.mean(landed)),
                          "oracle": float(np.mean(oracle)), "gap": float(np.mean(oracle) - np.mean(landed))})
    return table


def print_selection_table(rows) -> list[dict]:
    """The selection table (``selection_rows``) as text; the oracle is shown, never used to choose."""
    table = selection_rows(rows)
    if table:
        print("\nlambda chosen without target labels (the oracle column reads the target labels: shown, never used)")
        print(f"{'direction':<26} {'method':<8} {'criterion':<18} {'lambda per seed':<16} {'accuracy':>8} "
              f"{'oracle':>7} {'gap':>6}")
        for entry in table:
            picked = ",".join(f"{value:g}" for value in entry["picked"])
            print(f"{entry['direction']:<26} {entry['method']:<8} {entry['criterion']:<18} {picked:<16} "
                  f"{entry['accuracy']:>8.4f} {entry['oracle']:>7.4f} {entry['gap']:>6.4f}")
    return table
