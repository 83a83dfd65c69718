"""DomainAdapter on small synthetic domains: what each method does to a known shift."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from adaptation.adapter import DomainAdapter
from adaptation.model import vector_encoder


def shifted_blobs(count=300, seed=0, shift=5.0):
    """Two classes that two features tell apart equally well; in the target the first one is shifted.

    A source-only classifier leans on both features and misreads the shifted
    one; a representation that matches the domains can only keep the second
    (unshifted) feature, which alone still separates the classes, so alignment
    is what recovers the target accuracy. Eight more features are noise.
    """
    rng = np.random.default_rng(seed)

    def draw(offset, salt):
        labels = rng.integers(0, 2, count)
        centres = np.where(labels[:, None] == 1, 2.0, -2.0) * np.array([1.0, 1.0] + [0.0] * 8)
        points = centres + rng.normal(size=(count, 10)) + np.array([offset] + [0.0] * 9)
        return points.astype("float32"), labels

    source = draw(0.0, 1)
    target = draw(shift, 2)
    return source, target


def small_adapter(method, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)  # the encoder is built here, before the adapter seeds the rest
    return DomainAdapter(vector_encoder(10, units=(32,)), 2, method, bottleneck=32, discriminator_units=(64, 64),
                         seed=seed, **kwargs)


def test_dann_and_dan_raise_target_accuracy_over_source_only():
    (source_x, source_y), (target_x, target_y) = shifted_blobs()
    scores = {}
    for method in ("source-only", "dan", "dann"):
        adapter = small_adapter(method)
        history = adapter.fit((source_x, source_y), target_x, epochs=30, progress_bar=False)
        scores[method] = adapter.score(target_x, target_y)
        assert len(history.steps) == 30 * 10  # one pass over the larger domain per epoch, 32 + 32 per step
        assert adapter.score(source_x, source_y, domain="source") > 0.95
    assert scores["source-only"] < 0.8
    assert scores["dan"] > scores["source-only"] + 0.1
    assert scores["dann"] > scores["source-only"] + 0.1
    logged = history.steps[-1]
    assert {"l_c", "l_d", "lambda", "learning_rate", "discriminator_accuracy"} <= set(logged)
    assert logged["lambda"] == pytest.approx(2 / (1 + np.exp(-10 * 299 / 300)) - 1, rel=1e-5)
    assert history.steps[0]["lambda"] == 0.0


def test_target_labels_cannot_influence_training():
    (source_x, source_y), (target_x, target_y) = shifted_blobs(count=120, seed=1)
    permuted = np.random.default_rng(0).permutation(target_y)
    flipped = 1 - target_y
    predictions, scores = [], []
    for labels in (target_y, permuted, flipped):
        adapter = small_adapter("dann", seed=3)
        # given to fit as (inputs, labels), the labels are dropped before any batch is made
        adapter.fit((source_x, source_y), (target_x, labels), epochs=3, progress_bar=False)
        predictions.append(adapter.predict_proba(target_x))
        scores.append(adapter.score(target_x, labels))
    np.testing.assert_array_equal(predictions[0], predictions[1])
    np.testing.assert_array_equal(predictions[0], predictions[2])
    assert scores[2] == pytest.approx(1.0 - scores[0])  # the same predictions, only the score moves


def test_arrays_and_datasets_train_the_same_network():
    (source_x, source_y), (target_x, _) = shifted_blobs(count=96, seed=2)
    from_arrays = small_adapter("dan", seed=4)
    from_arrays.fit((source_x, source_y), target_x, epochs=2, progress_bar=False)
    from_datasets = small_adapter("dan", seed=4)
    source = tf.data.Dataset.from_tensor_slices((source_x, source_y))
    target = tf.data.Dataset.from_tensor_slices(target_x)
    from_datasets.fit(source, target, epochs=2, progress_bar=False)
    np.testing.assert_allclose(from_arrays.predict_proba(target_x), from_datasets.predict_proba(target.batch(50)),
                               rtol=1e-5, atol=1e-6)
    # batched datasets (as image_dataset_from_directory gives) are unbatched inside; their size is then unknown
    with pytest.raises(ValueError, match="need steps_per_epoch"):
        small_adapter("dan").fit(source.batch(7), target, epochs=1, progress_bar=False)
    history = small_adapter("dan").fit(source.batch(7), target.batch(5), epochs=2, steps_per_epoch=3, progress_bar=False)
    assert len(history.steps) == 6
    with pytest.raises(ValueError, match=r"\(inputs, labels\) pairs"):
        small_adapter("dan").fit(target, target, epochs=1, progress_bar=False)


def test_adabn_uses_the_target_statistics_and_keeps_the_source_ones():
    (source_x, source_y), (target_x, target_y) = shifted_blobs(count=200, seed=3)
    adapter = DomainAdapter(vector_encoder(10), 2, "adabn", bottleneck=16, seed=0)
    adapter.fit((source_x, source_y), target_x, epochs=10, progress_bar=False)
    layer = adapter.network.bottleneck.get_layer("bottleneck_norm")
    pre_activations = adapter.network.bottleneck.get_layer("bottleneck_dense")(target_x).numpy()
    # exact population moments of the target (one batch holds it all)
    np.testing.assert_allclose(layer.moving_mean.numpy(), pre_activations.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_variance.numpy(), pre_activations.var(axis=0), rtol=1e-4, atol=1e-4)
    source_pre = adapter.network.bottleneck.get_layer("bottleneck_dense")(source_x).numpy()
    assert np.abs(adapter.statistics["source"][0][0] - source_pre.mean(axis=0)).max() < 0.5
    assert np.abs(adapter.statistics["source"][0][0] - adapter.statistics["target"][0][0]).max() > 0.5
    source_only = DomainAdapter(vector_encoder(10), 2, "source-only", bottleneck=16, seed=0)
    source_only.fit((source_x, source_y), target_x, epochs=10, progress_bar=False)
    # the same weights; only the statistics differ, and they fix the shift
    for mine, theirs in zip(adapter.network.classifier.get_weights(), source_only.network.classifier.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    assert adapter.score(target_x, target_y) > source_only.score(target_x, target_y) + 0.1
    # source data are still predicted with the source's statistics
    assert adapter.score(source_x, source_y, domain="source") == pytest.approx(source_only.score(source_x, source_y))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="method must be one of"):
        small_adapter("mmd")
    with pytest.raises(ValueError, match="estimator"):
        small_adapter("dan", estimator="quadratic")
    (source_x, source_y), (target_x, _) = shifted_blobs(count=20)
    with pytest.raises(ValueError, match="labels must be in 0..1"):
        small_adapter("dann").fit((source_x, source_y + 1), target_x, epochs=1, progress_bar=False)


def test_steps_run_unchanged_under_a_distribution_strategy():
    """What --distribute (common.loop's strategy=) will do: the same numbers on one replica."""
    (source_x, source_y), (target_x, _) = shifted_blobs(count=64, seed=4)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    for method in ("dann", "dan"):
        with strategy.scope():
            keras.utils.set_random_seed(0)
            encoder = vector_encoder(10, units=(8,))
        distributed = DomainAdapter(encoder, 2, method, bottleneck=8, discriminator_units=(16,), strategy=strategy)
        distributed.fit((source_x, source_y), target_x, epochs=1, progress_bar=False)
        keras.utils.set_random_seed(0)
        plain = DomainAdapter(vector_encoder(10, units=(8,)), 2, method, bottleneck=8, discriminator_units=(16,))
        plain.fit((source_x, source_y), target_x, epochs=1, progress_bar=False)
        assert len(distributed.history.steps) == len(plain.history.steps) > 0
        for ours, theirs in zip(distributed.history.steps, plain.history.steps):
            assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(distributed.predict_proba(target_x), plain.predict_proba(target_x), atol=1e-6)
