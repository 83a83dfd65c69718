"""Overlap scores of a predicted mask X against the expert's mask Y, per image.

- Dice ``2|X n Y| / (|X| + |Y|)`` and Jaccard ``|X n Y| / |X u Y|`` (textbook eq. 25-26).
- Sensitivity (recall) ``|X n Y| / |Y|``: the share of the expert's ventricle
  that was found. The textbook prints sensitivity as ``|X n Y| / |X|`` with X
  the algorithm's segmentation; that ratio is the *precision*, reported here
  beside it under its own name.
- Precision ``|X n Y| / |X|``: the share of the prediction that is ventricle.

Empty masks: when a ratio's denominator is empty, the image scores 1 if the
prediction and the expert's mask are both empty (nothing to find, nothing
found) and 0 otherwise. So an empty prediction of a visible ventricle scores
0 on all four (its precision is not "undefined and skipped", which would hide
the miss), and a spurious prediction on an empty slice scores 0 too. Every
Sunnybrook mask holds at least 10 pixels, so on this data only predictions can
be empty.

Means and standard deviations are over images (population standard
deviation, ddof 0); ``per_patient`` averages each patient's images.
"""
from __future__ import annotations

import numpy as np

METRICS = ("dice", "jaccard", "sensitivity", "precision")


def _ratio(numerator, denominator, both_empty):
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, np.where(both_empty, 1.0, 0.0))


def overlap_scores(predicted, expert) -> dict[str, np.ndarray]:
    """Per-image Dice, Jaccard, sensitivity and precision of binary masks (n, height, width)."""
    predicted = np.asarray(predicted).astype(bool)
    expert = np.asarray(expert).astype(bool)
    if predicted.shape != expert.shape:
        raise ValueError(f"predicted masks {predicted.shape} and expert masks {expert.shape} differ in shape")
    if predicted.ndim == 2:
        predicted, expert = predicted[None], expert[None]
    flat_x = predicted.reshape(len(predicted), -1)
    flat_y = expert.reshape(len(expert), -1)
    x = flat_x.sum(axis=1)
    y = flat_y.sum(axis=1)
    both = (flat_x & flat_y).sum(axis=1)
    union = (flat_x | flat_y).sum(axis=1)
    both_empty = (x == 0) & (y == 0)
    return {
        "dice": _ratio(2 * both, x + y, both_empty),
        "jaccard": _ratio(both, union, both_empty),
        "sensitivity": _ratio(both, y, both_empty),
        "precision": _ratio(both, x, both_empty),
    }


def summarise(scores: dict[str, np.ndarray], patients=None) -> dict:
    """``{"test": {metric: {"mean", "std"}, "images": n}, "per_patient": {...}}`` of per-image scores."""
    count = len(next(iter(scores.values())))
    overall = {name: _mean_std(scores[name]) for name in METRICS}
    overall["images"] = int(count)
    result = {"test": overall, "per_patient": {}}
    if patients is not None:
        patients = np.asarray(list(patients))
        for patient in sorted(set(patients.tolist())):
            rows = patients == patient
            entry = {name: _mean_std(scores[name][rows]) for name in METRICS}
            entry["images"] = int(rows.sum())
            result["per_patient"][patient] = entry
    return result


def _mean_std(values) -> dict:
    values = np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std())}


def mean_dice(probabilities, expert, threshold: float = 0.5) -> float:
    """Mean Dice over images of ``probabilities >= threshold``: the validation score."""
    return float(overlap_scores(np.asarray(probabilities) >= threshold, expert)["dice"].mean())


def best_threshold(probabilities, expert, candidates=None) -> tuple[float, dict[float, float]]:
    """The threshold with the highest mean Dice (ties: the one closest to 0.5) and every candidate's Dice."""
    if candidates is None:
        candidates = np.round(np.arange(0.3, 0.71, 0.05), 2)
    table = {float(t): mean_dice(probabilities, expert, t) for t in candidates}
    best = max(table, key=lambda t: (round(table[t], 6), -abs(t - 0.5)))
    return best, table
