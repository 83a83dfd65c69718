"""L2-SP against its formula, and what it does to training that weight decay does not."""
from __future__ import annotations

import argparse

import keras
import numpy as np
import pytest

from common.regularizers import add_l2_sp, add_regularization_arguments, add_weight_decay, check_regularization_arguments


def two_part_model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6,))
    base = keras.Sequential([keras.Input((6,)), keras.layers.Dense(8, activation="relu"),
                             keras.layers.BatchNormalization()], name="base")
    head = keras.Sequential([keras.Input((8,)), keras.layers.Dense(3)], name="head")
    return keras.Model(inputs, head(base(inputs))), base, head


def test_the_penalty_is_beta_times_the_distance_to_the_start_plus_alpha_times_the_heads_norm():
    model, base, head = two_part_model()
    start = [v.numpy().copy() for v in base.trainable_weights]
    anchored = add_l2_sp(base, head, beta=0.3, alpha=0.05)
    assert anchored == 4  # kernel, bias, BatchNorm's gamma and beta; not its moving statistics
    assert float(sum(model.losses)) == pytest.approx(0.05 * sum(float(np.sum(v.numpy() ** 2))
                                                                 for v in head.trainable_weights), rel=1e-5)
    rng = np.random.default_rng(1)
    for variable in base.trainable_weights:
        variable.assign(variable.numpy() + rng.normal(size=variable.shape).astype("float32"))
    expected = 0.3 * sum(float(np.sum((v.numpy() - s) ** 2)) for v, s in zip(base.trainable_weights, start, strict=True))
    expected += 0.05 * sum(float(np.sum(v.numpy() ** 2)) for v in head.trainable_weights)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-5)


def test_frozen_weights_cost_nothing_until_they_are_released():
    model, base, head = two_part_model()
    add_l2_sp(base, head, beta=1.0, alpha=0.0)
    for variable in base.trainable_weights:
        variable.assign(variable.numpy() + 1.0)
    base.trainable = False
    assert float(sum(model.losses)) == 0.0
    base.trainable = True
    assert float(sum(model.losses)) > 1.0


def fitted_distance(regularize):
    model, base, head = two_part_model()
    start = [v.numpy().copy() for v in base.trainable_weights]
    regularize(model, base, head)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, 64)
    model.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=20, batch_size=16, verbose=0)
    return sum(float(np.sum((v.numpy() - s) ** 2)) for v, s in zip(base.trainable_weights, start, strict=True)), \
        sum(float(np.sum(v.numpy() ** 2)) for v in base.trainable_weights)


def test_l2_sp_keeps_the_transferred_weights_near_their_start_where_weight_decay_shrinks_them():
    free_distance, free_norm = fitted_distance(lambda model, base, head: None)
    sp_distance, _ = fitted_distance(lambda model, base, head: add_l2_sp(base, head, beta=1.0, alpha=0.0))
    _, decay_norm = fitted_distance(lambda model, base, head: add_weight_decay(model, 0.5))
    assert sp_distance < 0.3 * free_distance
    assert decay_norm < 0.7 * free_norm


def test_the_flags_refuse_both_regularisers_at_once_and_negative_strengths(capsys):
    parser = argparse.ArgumentParser()
    add_regularization_arguments(parser)
    for argv, flag in ((["--l2-sp", "--weight-decay", "0.1"], "--weight-decay"), (["--l2-sp-beta", "-1"], "--l2-sp-beta")):
        with pytest.raises(SystemExit) as exit_:
            check_regularization_arguments(parser.parse_args(argv))
        assert exit_.value.code == 2
        assert flag in capsys.readouterr().err
