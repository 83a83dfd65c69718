"""Dice, Jaccard, sensitivity (recall) and precision against values computed by hand, empty masks included."""
from __future__ import annotations

import numpy as np
import pytest
from segmentation_synthetic import draw_pair

from segmentation.metrics import choose_binarisation, largest_component, mean_dice, overlap_scores, summarise


def masks_from(pixels_x, pixels_y, shape=(6, 6)):
    x, y = np.zeros(shape, bool), np.zeros(shape, bool)
    for row, column in pixels_x:
        x[row, column] = True
    for row, column in pixels_y:
        y[row, column] = True
    return x, y


def test_scores_of_a_hand_counted_pair():
    # X: 4 predicted pixels, Y: 6 expert pixels, 3 in common, union 7.
    x, y = masks_from([(0, 0), (0, 1), (0, 2), (5, 5)], [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)])
    scores = overlap_scores(x, y)
    assert scores["dice"][0] == pytest.approx(2 * 3 / (4 + 6))
    assert scores["jaccard"][0] == pytest.approx(3 / 7)
    assert scores["sensitivity"][0] == pytest.approx(3 / 6)  # |X n Y| / |Y|: recall
    assert scores["precision"][0] == pytest.approx(3 / 4)  # |X n Y| / |X|: the textbook's "sensitivity" formula


def test_sensitivity_is_recall_not_the_textbook_formula():
    rng = np.random.default_rng(0)
    _, expert = draw_pair(rng, 48, "disc", centre=(24, 24), radius=8)
    _, larger = draw_pair(rng, 48, "disc", centre=(24, 24), radius=12)
    scores = overlap_scores(larger[None], expert[None])
    # a prediction that covers the whole ventricle finds all of it ...
    assert scores["sensitivity"][0] == pytest.approx(1.0)
    # ... but only expert / predicted of it is ventricle
    assert scores["precision"][0] == pytest.approx(expert.sum() / larger.sum())
    assert scores["precision"][0] < 0.5


def test_empty_masks_follow_the_stated_convention():
    empty = np.zeros((3, 5, 5), bool)
    some = empty.copy()
    some[:, 1:3, 1:3] = True
    both_empty = overlap_scores(empty[:1], empty[:1])
    missed = overlap_scores(empty[:1], some[:1])
    spurious = overlap_scores(some[:1], empty[:1])
    for name in ("dice", "jaccard", "sensitivity", "precision"):
        assert both_empty[name][0] == 1.0, name
        assert missed[name][0] == 0.0, name
        assert spurious[name][0] == 0.0, name


def test_ring_against_its_filled_disc():
    rng = np.random.default_rng(3)
    _, ring = draw_pair(rng, 40, "ring", centre=(20, 20), radius=9)
    _, disc = draw_pair(rng, 40, "disc", centre=(20, 20), radius=9)
    scores = overlap_scores(ring[None], disc[None])
    r, d = ring.sum(), disc.sum()
    assert 0 < r < d
    assert scores["dice"][0] == pytest.approx(2 * r / (r + d))
    assert scores["jaccard"][0] == pytest.approx(r / d)
    assert scores["sensitivity"][0] == pytest.approx(r / d)
    assert scores["precision"][0] == pytest.approx(1.0)


def test_summary_means_standard_deviations_and_patients():
    scores = {name: np.array([1.0, 0.5, 0.0, 0.5]) for name in ("dice", "jaccard", "sensitivity", "precision")}
    summary = summarise(scores, ["A", "A", "B", "B"])
    assert summary["test"]["images"] == 4
    assert summary["test"]["dice"]["mean"] == pytest.approx(0.5)
    assert summary["test"]["dice"]["std"] == pytest.approx(np.sqrt(0.125))  # population std
    assert summary["per_patient"]["A"]["dice"]["mean"] == pytest.approx(0.75)
    assert summary["per_patient"]["B"]["precision"]["mean"] == pytest.approx(0.25)
    assert summary["per_patient"]["B"]["images"] == 2


def test_threshold_and_post_processing_are_chosen_by_dice():
    expert = np.zeros((1, 8, 8), bool)
    expert[0, :2, :2] = True
    probabilities = np.where(expert, 0.62, 0.0)
    probabilities[0, 7, 7] = 0.45  # a faint false positive, kept by any threshold up to 0.45
    assert mean_dice(probabilities, expert, 0.5) == pytest.approx(1.0)
    assert mean_dice(probabilities, expert, 0.4) == pytest.approx(8 / 9)
    choice, table = choose_binarisation(probabilities, expert)
    assert choice == {"threshold": 0.5, "largest_component": False}  # ties: no post-processing, closest to 0.5
    assert table["0.30"] == pytest.approx(8 / 9) and table["0.70"] == 0.0
    assert table["0.30 largest region"] == pytest.approx(1.0)  # the island is dropped
    # a strong island only the largest-region rule removes
    probabilities[0, 7, 7] = 0.9
    choice, _ = choose_binarisation(probabilities, expert)
    assert choice == {"threshold": 0.5, "largest_component": True}


def test_largest_component_keeps_one_region_and_fills_its_holes():
    masks = np.zeros((2, 9, 9), bool)
    masks[0, 1:6, 1:6] = True
    masks[0, 3, 3] = False  # a hole
    masks[0, 7:9, 7:9] = True  # an island
    kept = largest_component(masks)
    expected = np.zeros((9, 9), bool)
    expected[1:6, 1:6] = True
    assert np.array_equal(kept[0], expected)
    assert not kept[1].any()  # an empty prediction stays empty
