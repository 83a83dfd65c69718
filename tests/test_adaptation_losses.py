"""The adaptation losses and schedules against their equations (textbook eq. 21-22)."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from adaptation.coral import CorrelationAlignment, covariance
from adaptation.dan import MultipleKernelMMD
from adaptation.dann import DomainAdversarialLoss, domain_accuracy, domain_classification_loss
from adaptation.layers import GradientReversal
from adaptation.model import build_discriminator
from adaptation.schedules import AnnealedLearningRate, adaptation_weight, annealed_rate, dann_lambda
from mmd.distance import mmd2
from mmd.kernels import median_heuristic, median_squared_distance


def two_samples(seed=0, count=(37, 41), width=12, shift=0.7):
    rng = np.random.default_rng(seed)
    source = rng.normal(size=(count[0], width))
    target = rng.normal(size=(count[1], width)) * 1.3 + shift
    return source, target


@pytest.mark.parametrize("weight", [1.0, 0.37, 0.0])
def test_reversal_gradient_is_exactly_minus_lambda_times_the_identity_gradient(weight):
    rng = np.random.default_rng(1)
    x = tf.constant(rng.normal(size=(6, 5)), tf.float32)
    upstream = tf.constant(rng.normal(size=(6, 5)), tf.float32)
    reversal = GradientReversal()

    def run(x, through_reversal, loss_of):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = reversal(x, weight=tf.constant(weight)) if through_reversal else tf.identity(x)
            loss = tf.reduce_sum(loss_of(y) * upstream)
        return y, tape.gradient(loss, x)

    # eagerly, behind a non-linear loss; compiled, behind a linear one (grappler may
    # reassociate a chain of products in a graph, which moves the last bit)
    for compiled, loss_of in ((False, tf.sin), (True, lambda y: y)):
        function = tf.function(run) if compiled else run
        forward, reversed_gradient = function(x, True, loss_of)
        _, identity_gradient = function(x, False, loss_of)
        np.testing.assert_array_equal(forward.numpy(), x.numpy())  # identity forward
        # bit for bit: -lambda (in float32, the layer's dtype) times the identity's gradient
        expected = tf.constant(-weight, tf.float32) * identity_gradient
        np.testing.assert_array_equal(reversed_gradient.numpy(), expected.numpy())
        assert np.abs(identity_gradient.numpy()).max() > 0.1


def test_reversal_constant_weight_and_serialisation():
    layer = GradientReversal(weight=2.5)
    x = tf.ones((2, 3))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x))
    np.testing.assert_array_equal(tape.gradient(loss, x).numpy(), np.full((2, 3), -2.5, np.float32))
    assert keras.layers.deserialize(keras.layers.serialize(layer)).weight == 2.5


@pytest.mark.parametrize("estimator", ["biased", "unbiased", "linear"])
def test_multi_kernel_loss_equals_mmd_distance_with_the_median_heuristic(estimator):
    source, target = two_samples()
    ours = float(MultipleKernelMMD(estimator=estimator)(source, target))
    reference = float(mmd2(source, target, kernel="multi-rbf", estimator=estimator))  # median heuristic, 5 x 2
    assert ours == pytest.approx(reference, rel=1e-9, abs=1e-12)
    assert abs(reference) > 1e-3
    # other families too, against the same kernels built by mmd.kernels
    ours = float(MultipleKernelMMD(n_kernels=3, factor=4.0, estimator=estimator)(source, target))
    reference = float(mmd2(source, target, kernel="multi-rbf", n_kernels=3, factor=4.0, estimator=estimator))
    assert ours == pytest.approx(reference, rel=1e-9, abs=1e-12)


def test_multi_kernel_loss_inside_a_compiled_step_and_its_gradient():
    source, target = two_samples(seed=3, count=(32, 32))
    loss = MultipleKernelMMD()
    source32 = tf.constant(source, tf.float32)
    target32 = tf.constant(target, tf.float32)

    @tf.function
    def value_and_gradient(s, t):
        with tf.GradientTape() as tape:
            tape.watch(s)
            value = loss(s, t)
        return value, tape.gradient(value, s)

    value, gradient = value_and_gradient(source32, target32)
    assert float(value) == pytest.approx(float(mmd2(source, target, kernel="multi-rbf")), rel=1e-4)
    # moving the source towards the target lowers the loss: the gradient points away from it
    assert np.isfinite(gradient.numpy()).all()
    moved = source32 - 2.0 * gradient
    assert float(loss(moved, target32)) < float(value)
    # the same sample on both sides: no discrepancy
    assert float(loss(source32, source32)) == pytest.approx(0.0, abs=1e-6)


def test_in_graph_median_is_numpys_median_of_the_pairwise_squared_distances():
    """DAN's per-batch bandwidth: mmd.kernels' median, compiled, against numpy's from scratch."""
    compiled = tf.function(median_squared_distance)

    def reference(points):
        squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
        upper = squared[np.triu_indices(len(points), k=1)]
        return float(np.median(upper[upper > 0]))

    source, target = two_samples(seed=5, count=(20, 25))
    pooled = np.concatenate([source, target])  # 990 pairs: the mean of the two middle ones
    assert float(compiled(tf.constant(pooled))) == pytest.approx(reference(pooled), rel=1e-10)
    odd = pooled[:6]  # 15 pairs: the middle one
    assert float(compiled(tf.constant(odd))) == pytest.approx(reference(odd), rel=1e-10)
    assert float(compiled(tf.constant(np.ones((4, 3))))) == 0.5  # all the same: gamma = 1
    assert median_heuristic(pooled) == pytest.approx(1.0 / (2.0 * reference(pooled)), rel=1e-10)


def test_coral_is_the_scaled_frobenius_distance_of_the_covariances():
    source, target = two_samples(seed=2)
    expected = np.sum((np.cov(source, rowvar=False) - np.cov(target, rowvar=False)) ** 2) / (4 * 12**2)
    assert float(CorrelationAlignment()(source, target)) == pytest.approx(expected, rel=1e-10)
    np.testing.assert_allclose(covariance(tf.constant(source)).numpy(), np.cov(source, rowvar=False), atol=1e-12)
    # invariant to a shift of either domain: only second-order statistics count
    assert float(CorrelationAlignment()(source, source + 5.0)) == pytest.approx(0.0, abs=1e-9)


def test_domain_classification_loss_values():
    source = tf.fill([4, 1], 2.0)
    target = tf.fill([6, 1], -2.0)
    assert float(domain_classification_loss(source, target)) == pytest.approx(math.log1p(math.exp(-2.0)), rel=1e-6)
    assert float(domain_classification_loss(tf.zeros([4, 1]), tf.zeros([6, 1]))) == pytest.approx(math.log(2.0))
    # wrong way round: log(1 + e^2)
    assert float(domain_classification_loss(target[:4], -target)) == pytest.approx(math.log1p(math.exp(2.0)), rel=1e-6)
    assert float(domain_accuracy(source, target)) == 1.0
    assert float(domain_accuracy(-source, target)) == pytest.approx(0.6)
    # over a global batch of 20 instead of these 10: half the mean
    assert float(domain_classification_loss(tf.zeros([4, 1]), tf.zeros([6, 1]), global_batch_size=20)) == \
        pytest.approx(math.log(2.0) / 2)


def test_adversarial_loss_trains_the_discriminator_down_and_the_features_up():
    keras.utils.set_random_seed(0)
    discriminator = build_discriminator(3, units=(8,), dropout=0.0)
    adversarial = DomainAdversarialLoss(discriminator)
    source = tf.constant(np.random.default_rng(0).normal(size=(5, 3)), tf.float32)
    target = tf.constant(np.random.default_rng(1).normal(size=(5, 3)) + 1.0, tf.float32)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(source)
        loss, _ = adversarial(source, target, weight=0.25)
        plain = domain_classification_loss(*tf.split(discriminator(tf.concat([source, target], 0)), 2))
    np.testing.assert_allclose(tape.gradient(loss, source).numpy(), -0.25 * tape.gradient(plain, source).numpy(),
                               rtol=1e-5, atol=1e-7)
    for ours, reference in zip(tape.gradient(loss, discriminator.trainable_variables),
                               tape.gradient(plain, discriminator.trainable_variables), strict=False):
        np.testing.assert_allclose(ours.numpy(), reference.numpy(), rtol=1e-5, atol=1e-7)


def test_dann_schedules():
    assert float(dann_lambda(0.0)) == 0.0
    assert float(dann_lambda(0.1)) == pytest.approx(2 / (1 + math.exp(-1)) - 1, rel=1e-6)
    assert float(dann_lambda(1.0)) == pytest.approx(2 / (1 + math.exp(-10)) - 1, rel=1e-6)
    assert float(adaptation_weight(0.0, "constant", maximum=0.3)) == pytest.approx(0.3)
    assert float(adaptation_weight(0.5, "dann", maximum=0.3)) == pytest.approx(0.3 * (2 / (1 + math.exp(-5)) - 1), rel=1e-6)
    with pytest.raises(ValueError, match="lambda schedule"):
        adaptation_weight(0.5, "linear")
    assert float(annealed_rate(1.0, 0.01)) == pytest.approx(0.01 / 11**0.75, rel=1e-6)
    schedule = AnnealedLearningRate(0.01, total_steps=200)
    assert float(schedule(0)) == pytest.approx(0.01)
    assert float(schedule(100)) == pytest.approx(0.01 / 6**0.75, rel=1e-6)
    assert float(AnnealedLearningRate(0.01, 200, schedule="constant")(100)) == pytest.approx(0.01)
    # the optimizer reads it from its own step counter
    variable = keras.Variable(1.0)
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    for _ in range(100):
        optimizer.apply_gradients([(tf.constant(0.0), variable)])
    assert float(optimizer.learning_rate) == pytest.approx(0.01 / 6**0.75, rel=1e-6)


def test_entropy_selection():
    from adaptation.selection import prediction_entropy, select_by_entropy

    assert prediction_entropy([[1.0, 0.0], [0.5, 0.5]]) == pytest.approx(math.log(2) / 2)
    assert prediction_entropy(np.full((3, 4), 0.25)) == pytest.approx(math.log(4))
    candidates = [{"trade_off": 0.3, "target_entropy": 0.2}, {"trade_off": 1.0, "target_entropy": 0.1},
                  {"trade_off": 3.0, "target_entropy": 0.15}]
    assert select_by_entropy(candidates)["trade_off"] == 1.0
    with pytest.raises(ValueError):
        select_by_entropy([])
