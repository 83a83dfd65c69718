"""CDAN and CDAN+E (adaptation.cdan): the multilinear map, the entropy weights, the reversed
gradient, and a shift that conditional alignment recovers and a source-only classifier does not."""
import numpy as np
import pytest
import tensorflow as tf

from adaptation.adapter import DomainAdapter
from adaptation.cdan import ConditionalAdversarialLoss, RandomizedMultilinearMap, entropy_weights, map_dim, multilinear_map
from adaptation.model import build_discriminator


def test_multilinear_map_is_the_flattened_outer_product():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(5, 7)).astype("float32")
    g = rng.dirichlet(np.ones(3), size=5).astype("float32")
    mapped = multilinear_map(f, g).numpy()
    assert mapped.shape == (5, 21)
    expected = np.stack([np.outer(f[i], g[i]).ravel() for i in range(5)])
    np.testing.assert_allclose(mapped, expected, rtol=1e-6)
    np.testing.assert_allclose(multilinear_map([[1.0, 2.0]], [[0.25, 0.75]]).numpy(), [[0.25, 0.75, 0.5, 1.5]])


def test_randomized_map_preserves_inner_products_of_the_exact_map_in_expectation():
    rng = np.random.default_rng(1)
    f = rng.normal(size=(2, 6)).astype("float32")
    g = rng.dirichlet(np.ones(3), size=2).astype("float32")
    randomized = RandomizedMultilinearMap(6, 3, output_dim=200_000, seed=3)
    mapped = randomized(f, g).numpy()
    assert mapped.shape == (2, 200_000)
    # the formula, with its own matrices
    by_hand = (f @ randomized.feature_matrix.numpy()) * (g @ randomized.prediction_matrix.numpy()) / np.sqrt(200_000)
    np.testing.assert_allclose(mapped, by_hand, rtol=1e-4, atol=1e-6)
    exact = multilinear_map(f, g).numpy()
    np.testing.assert_allclose(mapped @ mapped.T, exact @ exact.T, rtol=0.05, atol=0.02)
    # the same seed, the same matrices: the map does not change between calls or fits
    np.testing.assert_array_equal(RandomizedMultilinearMap(6, 3, output_dim=8, seed=3).feature_matrix.numpy(),
                                  RandomizedMultilinearMap(6, 3, output_dim=8, seed=3).feature_matrix.numpy())


def test_exact_map_up_to_4096_values_then_the_randomized_one():
    assert map_dim(256, 4) == 1024
    assert map_dim(256, 16) == 4096
    assert map_dim(256, 17) == 1024
    small = ConditionalAdversarialLoss(build_discriminator(1024, (8,)), 256, 4)
    large = ConditionalAdversarialLoss(build_discriminator(1024, (8,)), 256, 31, seed=0)
    assert small.map is multilinear_map
    assert isinstance(large.map, RandomizedMultilinearMap)
    f = tf.random.normal([3, 256])
    assert large.map(f, tf.nn.softmax(tf.random.normal([3, 31]))).shape == (3, 1024)


def test_entropy_weights_against_a_hand_computation_and_without_gradient():
    source = tf.constant([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    target = tf.constant([[0.5, 0.5, 0.0, 0.0], [0.7, 0.1, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]])
    source_w, target_w = entropy_weights(source, target)
    # w = 1 + exp(-H): 2 (one-hot) and 1 + 1/4 (uniform over 4), normalised to mean 1 per domain
    np.testing.assert_allclose(source_w.numpy(), [2 / 1.625, 1.25 / 1.625], rtol=1e-6)
    h = np.array([np.log(2), -(0.7 * np.log(0.7) + 3 * 0.1 * np.log(0.1)), np.log(4)])
    raw = 1 + np.exp(-h)
    np.testing.assert_allclose(target_w.numpy(), raw / raw.mean(), rtol=1e-5)
    with tf.GradientTape() as tape:
        tape.watch(target)
        weighted = tf.reduce_sum(entropy_weights(source, target)[1] * tf.constant([1.0, 2.0, 3.0]))
    assert tape.gradient(weighted, target) is None


def adversarial_case(entropy_conditioning, seed=0):
    tf.keras.utils.set_random_seed(seed)
    discriminator = build_discriminator(5 * 3, units=(16,), dropout=0.0)
    loss = ConditionalAdversarialLoss(discriminator, 5, 3, entropy_conditioning=entropy_conditioning)
    rng = np.random.default_rng(seed)
    f_s, f_t = (tf.constant(rng.normal(size=(6, 5)), tf.float32), tf.constant(rng.normal(1, 1, size=(4, 5)), tf.float32))
    l_s, l_t = (tf.constant(rng.normal(size=(6, 3)) * 2, tf.float32), tf.constant(rng.normal(size=(4, 3)) * 2, tf.float32))
    return discriminator, loss, f_s, f_t, l_s, l_t


@pytest.mark.parametrize("entropy_conditioning", [False, True])
def test_loss_value_is_the_weighted_cross_entropy_of_d_on_the_map(entropy_conditioning):
    discriminator, loss, f_s, f_t, l_s, l_t = adversarial_case(entropy_conditioning)
    value, _ = loss(f_s, f_t, l_s, l_t, weight=0.7, training=False)
    g = tf.nn.softmax(tf.concat([l_s, l_t], 0)).numpy()
    f = tf.concat([f_s, f_t], 0).numpy()
    mapped = np.stack([np.outer(f[i], g[i]).ravel() for i in range(10)]).astype("float32")
    logits = discriminator(mapped).numpy().ravel().astype(np.float64)
    labels = np.r_[np.ones(6), np.zeros(4)]
    per_example = np.log1p(np.exp(-logits)) * labels + np.log1p(np.exp(logits)) * (1 - labels)
    weights = np.ones(10)
    if entropy_conditioning:
        raw = 1 + np.exp(np.sum(g * np.log(g), axis=1))
        weights = np.r_[raw[:6] / raw[:6].mean(), raw[6:] / raw[6:].mean()]
    assert not np.allclose(weights, 1.0) or not entropy_conditioning
    assert float(value) == pytest.approx(np.mean(weights * per_example), rel=1e-5)
    # under a strategy: the same per-example terms averaged over the global batch
    averaged, _ = loss(f_s, f_t, l_s, l_t, weight=0.7, training=False, global_batch_size=20)
    assert float(averaged) == pytest.approx(np.sum(weights * per_example) / 20, rel=1e-5)


@pytest.mark.parametrize("entropy_conditioning", [False, True])
def test_reversal_reaches_the_features_and_the_predictions_get_no_adversarial_gradient(entropy_conditioning):
    discriminator, loss, f_s, f_t, l_s, l_t = adversarial_case(entropy_conditioning, seed=1)
    weight = 0.37
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([f_s, f_t, l_s, l_t])
        value, _ = loss(f_s, f_t, l_s, l_t, weight=weight, training=False)
    reversed_f = tape.gradient(value, [f_s, f_t])
    assert tape.gradient(value, [l_s, l_t]) == [None, None]
    d_gradient = tape.gradient(value, discriminator.trainable_variables)
    # the same loss with no reversal, written out: its feature gradient times -lambda
    g = tf.stop_gradient(tf.nn.softmax(tf.concat([l_s, l_t], 0)))
    with tf.GradientTape(persistent=True) as plain_tape:
        plain_tape.watch([f_s, f_t])
        logits = tf.reshape(discriminator(multilinear_map(tf.concat([f_s, f_t], 0), g)), [-1])
        labels = tf.concat([tf.ones(6), tf.zeros(4)], 0)
        per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
        if entropy_conditioning:
            w_s, w_t = entropy_weights(g[:6], g[6:])
            per_example = per_example * tf.concat([w_s, w_t], 0)
        plain = tf.reduce_mean(per_example)
    for got, want in zip(reversed_f, plain_tape.gradient(plain, [f_s, f_t]), strict=True):
        assert float(tf.reduce_max(tf.abs(want))) > 1e-4
        np.testing.assert_allclose(got.numpy(), -weight * want.numpy(), rtol=1e-4, atol=1e-7)
    # the discriminator descends the loss itself (no reversal above it)
    for got, want in zip(d_gradient, plain_tape.gradient(plain, discriminator.trainable_variables), strict=True):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-7)


def test_cdan_and_cdan_e_beat_source_only_on_a_synthetic_shift():
    from tests.test_adaptation_adapter import shifted_blobs, small_adapter

    (source_x, source_y), (target_x, target_y) = shifted_blobs()
    scores = {}
    for method in ("source-only", "cdan", "cdan+e"):
        adapter = small_adapter(method, epochs=30).fit(source_x, source_y, Xt=target_x)
        scores[method] = adapter.score(target_x, target_y)
        assert adapter.score(source_x, source_y, domain="source") > 0.95
        if method != "source-only":
            # D reads the 32 x 2 multilinear map, not the 32 bottleneck features
            assert adapter.network_.discriminator.input_shape == (None, 64)
            logged = adapter.history_.steps[-1]
            assert {"l_c", "l_d", "lambda", "discriminator_accuracy"} <= set(logged)
            assert logged["lambda"] == pytest.approx(2 / (1 + np.exp(-10 * 299 / 300)) - 1, rel=1e-5)
    assert scores["source-only"] < 0.8
    assert scores["cdan"] > scores["source-only"] + 0.1, scores
    assert scores["cdan+e"] > scores["source-only"] + 0.1, scores


def test_the_commands_accept_the_new_methods():
    from adaptation import benchmark, train

    assert {"cdan", "cdan+e"} <= set(benchmark.METHODS)
    assert {"cdan+adabn", "cdan+e+adabn"} <= set(benchmark.WITH_ADABN)
    args = benchmark.parse_args(["--methods", "cdan,cdan+e,cdan+e+adabn", "--directions", "flower_photos->flower17"])
    assert args.methods == ["cdan", "cdan+e", "cdan+e+adabn"]
    parsed = train.parse_args(["--method", "cdan+e", "--source", "flower_photos", "--target", "flower17"])
    assert parsed.method == "cdan+e" and parsed.lambda_schedule == "dann"
    assert DomainAdapter(method="cdan+e")._settings()["lambda_schedule"] == "dann"
