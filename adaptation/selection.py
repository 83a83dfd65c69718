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
