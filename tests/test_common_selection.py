"""The label-free selection criteria against their definitions and under a shift whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest

from common.selection import deep_embedded_validation, dev_risk, domain_density_ratio, prediction_entropy


def test_prediction_entropy_of_one_hot_and_uniform_rows():
    assert prediction_entropy([[1, 0], [0.5, 0.5]]) == pytest.approx(np.log(2) / 2)


def test_dev_is_the_control_variate_estimate_by_hand():
    rng = np.random.default_rng(0)
    losses, weights = rng.random(50), rng.random(50) * 2
    weighted = weights * losses
    eta = -np.cov(weighted, weights)[0, 1] / np.var(weights, ddof=1)
    assert deep_embedded_validation(losses, weights) == pytest.approx(weighted.mean() + eta * weights.mean() - eta)
    assert deep_embedded_validation(losses, np.ones(50)) == pytest.approx(losses.mean())  # no shift: the plain mean
    with pytest.raises(ValueError, match="one weight per"):
        deep_embedded_validation(losses, weights[:10])


def test_the_density_ratio_of_two_gaussians_is_recovered():
    rng = np.random.default_rng(1)
    source, target = rng.normal(0, 1, (4000, 1)), rng.normal(1, 1, (4000, 1))
    grid = np.linspace(-1, 2, 7)[:, None]
    true = np.exp(grid[:, 0] - 0.5)  # N(1,1) / N(0,1)
    assert np.allclose(domain_density_ratio(source, target, grid), true, rtol=0.15)


def test_dev_estimates_the_target_risk_where_the_source_validation_loss_does_not():
    """A fixed classifier [x > 1] of labels y = [x > 2]: its errors lie in (1, 2), where the target lives."""
    rng = np.random.default_rng(2)
    train, validation = rng.normal(0, 1, (3000, 1)), rng.normal(0, 1, (3000, 1))
    target = rng.normal(1.0, 1, (3000, 1))

    def loss(x):
        return ((x[:, 0] > 1) != (x[:, 0] > 2)).astype(float)  # 0/1 loss: 0.136 under N(0, 1), 0.341 under N(1, 1)

    true_target_risk = loss(rng.normal(1.0, 1, (200000, 1))).mean()
    source_estimate = loss(validation).mean()
    dev = dev_risk(train, validation, loss(validation), target)
    assert abs(source_estimate - true_target_risk) > 0.15
    assert abs(dev - true_target_risk) < 0.3 * abs(source_estimate - true_target_risk)
