"""Overlap scores of a predicted mask X against the expert's mask Y, per image.

- Dice ``2|X n Y| / (|X| + |Y|)`` and Jaccard ``|X n Y| / |X u Y|`` (the
  unnumbered formulas of textbook 12.5.2 (4); the chapter's equations end at 24).
- Sensitivity (recall) ``|X n Y| / |Y|``: the share of the expert's ventricle
  that was found. The textbook prints sensitivity as ``|X n Y| / |X|`` with X
  the algorithm's segmentation; that ratio is the *precision*, reported here
  beside it under its own name (docs/textbook-errata.md, E14).
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


def largest_component(masks) -> np.ndarray:
    """Each mask reduced to its largest connected region, holes filled.

    The endocardium is one region without holes (the expert contour encloses
    the papillary muscles), so stray islands of a prediction are errors.
    """
    from scipy import ndimage

    masks = np.asarray(masks).astype(bool)
    result = np.zeros_like(masks)
    for index, mask in enumerate(masks):
        labels, count = ndimage.label(mask)
        if count == 0:
            continue
        sizes = np.bincount(labels.ravel())[1:]
        result[index] = ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))
    return result


def binarise(probabilities, threshold: float, keep_largest: bool = False) -> np.ndarray:
    """Probabilities to masks: the threshold, then (optionally) the largest region, holes filled."""
    masks = np.asarray(probabilities) >= threshold
    return largest_component(masks) if keep_largest else masks


def choose_binarisation(probabilities, expert, candidates=None) -> tuple[dict, dict[str, float]]:
    """The threshold and post-processing with the highest mean Dice, and every candidate's Dice.

    Made on validation frames. Ties go to no post-processing and to the
    threshold closest to 0.5.
    """
    if candidates is None:
        candidates = np.round(np.arange(0.3, 0.71, 0.05), 2)
    table = {}
    for keep in (False, True):
        for threshold in candidates:
            masks = binarise(probabilities, float(threshold), keep)
            table[(float(threshold), keep)] = float(overlap_scores(masks, expert)["dice"].mean())
    best = max(table, key=lambda key: (round(table[key], 6), not key[1], -abs(key[0] - 0.5)))
    readable = {f"{threshold:.2f}{' largest region' if keep else ''}": dice for (threshold, keep), dice in table.items()}
    return {"threshold": best[0], "largest_component": best[1]}, readable
