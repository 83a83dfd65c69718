"""DomainAdapter on small synthetic domains: what each method does to a known shift, and the
scikit-learn contract it keeps with the project's own uses (encoders, datasets, strategies)."""
import pickle

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV

from adaptation.adapter import DomainAdapter
from adaptation.model import vector_encoder
from common.loop import LoopHistory
from mmd.validation import InputError


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
    return DomainAdapter(method=method, encoder_units=(32,), bottleneck=32, discriminator_units=(64, 64),
                         random_state=seed, **kwargs)


def test_dann_and_dan_raise_target_accuracy_over_source_only():
    (source_x, source_y), (target_x, target_y) = shifted_blobs()
    scores = {}
    for method in ("source-only", "dan", "dann"):
        adapter = small_adapter(method, epochs=30).fit(source_x, source_y, Xt=target_x)
        history = adapter.history_
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
        adapter = small_adapter("dann", seed=3, epochs=3)
        # given to fit_domains as (inputs, labels), the labels are dropped before any batch is made
        adapter.fit_domains((source_x, source_y), (target_x, labels), n_classes=2)
        predictions.append(adapter.predict_proba(target_x))
        scores.append(adapter.score(target_x, labels))
    np.testing.assert_array_equal(predictions[0], predictions[1])
    np.testing.assert_array_equal(predictions[0], predictions[2])
    assert scores[2] == pytest.approx(1.0 - scores[0])  # the same predictions, only the score moves


def test_arrays_and_datasets_train_the_same_network():
    (source_x, source_y), (target_x, _) = shifted_blobs(count=96, seed=2)
    from_arrays = small_adapter("dan", seed=4, epochs=2).fit(source_x, source_y, target_x)
    source = tf.data.Dataset.from_tensor_slices((source_x, source_y))
    target = tf.data.Dataset.from_tensor_slices(target_x)
    from_datasets = small_adapter("dan", seed=4, epochs=2).fit_domains(source, target, n_classes=2)
    np.testing.assert_allclose(from_arrays.predict_proba(target_x), from_datasets.predict_proba(target.batch(50)),
                               rtol=1e-5, atol=1e-6)
    assert from_datasets.n_features_in_ == from_arrays.n_features_in_ == 10
    np.testing.assert_array_equal(from_datasets.classes_, [0, 1])
    # batched datasets (as image_dataset_from_directory gives) are unbatched inside; their size is then unknown
    with pytest.raises(InputError, match="need steps_per_epoch"):
        small_adapter("dan", epochs=1).fit_domains(source.batch(7), target, n_classes=2)
    adapter = small_adapter("dan", epochs=2, steps_per_epoch=3)
    adapter.fit_domains(source.batch(7), target.batch(5), n_classes=2)
    assert len(adapter.history_.steps) == 6
    with pytest.raises(InputError, match=r"\(inputs, labels\) pairs"):
        small_adapter("dan", epochs=1).fit_domains(target, target, n_classes=2)


def test_adabn_uses_the_target_statistics_and_keeps_the_source_ones():
    (source_x, source_y), (target_x, target_y) = shifted_blobs(count=200, seed=3)
    adapter = DomainAdapter(method="adabn", bottleneck=16, epochs=10, random_state=0).fit(source_x, source_y, target_x)
    layer = adapter.network_.bottleneck.get_layer("bottleneck_norm")
    pre_activations = adapter.network_.bottleneck.get_layer("bottleneck_dense")(target_x).numpy()
    # exact population moments of the target (one batch holds it all)
    np.testing.assert_allclose(layer.moving_mean.numpy(), pre_activations.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(layer.moving_variance.numpy(), pre_activations.var(axis=0), rtol=1e-4, atol=1e-4)
    source_pre = adapter.network_.bottleneck.get_layer("bottleneck_dense")(source_x).numpy()
    assert np.abs(adapter.statistics_["source"][0][0] - source_pre.mean(axis=0)).max() < 0.5
    assert np.abs(adapter.statistics_["source"][0][0] - adapter.statistics_["target"][0][0]).max() > 0.5
    source_only = DomainAdapter(method="source-only", bottleneck=16, epochs=10, random_state=0)
    source_only.fit(source_x, source_y, target_x)
    # the same weights; only the statistics differ, and they fix the shift
    for mine, theirs in zip(adapter.network_.classifier.get_weights(), source_only.network_.classifier.get_weights(),
                            strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-5, atol=1e-6)
    assert adapter.score(target_x, target_y) > source_only.score(target_x, target_y) + 0.1
    # source data are still predicted with the source's statistics
    assert adapter.score(source_x, source_y, domain="source") == pytest.approx(source_only.score(source_x, source_y))
    # and both sets survive pickling (scikit-learn's check only compares the default domain)
    restored = pickle.loads(pickle.dumps(adapter))
    for domain in ("source", "target"):
        np.testing.assert_array_equal(restored.predict_proba(source_x, domain=domain),
                                      adapter.predict_proba(source_x, domain=domain))


def test_bad_settings_are_refused_in_fit_with_one_line():
    (source_x, source_y), (target_x, _) = shifted_blobs(count=20)
    for settings, message in (({"method": "mmd"}, "method must be one of"),
                              ({"method": "dan", "mmd_estimator": "quadratic"}, "mmd_estimator must be one of"),
                              ({"method": "dann", "batch_size": 1}, "batch_size must be an integer >= 2"),
                              ({"method": "dann", "discriminator_units": (8, 0)}, "discriminator_units"),
                              ({"method": "dann", "momentum": 1.0}, "momentum must be a number")):
        adapter = DomainAdapter(**settings)  # stored as given: construction and set_params never refuse
        assert {key: adapter.get_params()[key] for key in settings} == settings
        with pytest.raises(InputError, match=message) as raised:
            adapter.fit(source_x, source_y, target_x)
        assert "\n" not in str(raised.value)
    with pytest.raises(InputError, match=r"labels must be class indices in 0\.\.1"):
        small_adapter("dann", epochs=1).fit_domains((source_x, source_y + 1), target_x, n_classes=2)
    with pytest.raises(InputError, match="given twice"):
        small_adapter("dann", epochs=1, Xt=target_x).fit(source_x, source_y, target_x)
    with pytest.raises(InputError, match="same input space"):
        small_adapter("dann", epochs=1).fit(source_x, source_y, target_x[:, :4])


def test_steps_run_unchanged_under_a_distribution_strategy():
    """What --distribute (common.loop's strategy=) will do: the same numbers on one replica."""
    (source_x, source_y), (target_x, _) = shifted_blobs(count=64, seed=4)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    for method in ("dann", "dan"):
        settings = dict(method=method, encoder_units=(8,), bottleneck=8, discriminator_units=(16,), epochs=1,
                        random_state=0)
        distributed = DomainAdapter(**settings, strategy=strategy).fit(source_x, source_y, target_x)
        plain = DomainAdapter(**settings).fit(source_x, source_y, target_x)
        assert len(distributed.history_.steps) == len(plain.history_.steps) > 0
        for ours, theirs in zip(distributed.history_.steps, plain.history_.steps, strict=True):
            assert ours == pytest.approx(theirs, rel=1e-5, abs=1e-6)
        np.testing.assert_allclose(distributed.predict_proba(target_x), plain.predict_proba(target_x), atol=1e-6)


# ----------------------------------------------------------- the scikit-learn contract (issue 25 section 5)
def test_parameters_are_stored_as_given_and_the_network_is_built_in_fit():
    (source_x, source_y), (target_x, _) = shifted_blobs(count=40, seed=5)
    encoder = vector_encoder(10, units=(8,))
    given = encoder.get_weights()
    adapter = DomainAdapter(encoder, "dan", discriminator_units=[4], bottleneck=8, epochs=1, Xt=target_x)
    params = adapter.get_params()
    assert params["encoder"] is encoder and params["Xt"] is target_x and params["discriminator_units"] == [4]
    assert not [name for name in vars(adapter) if name.endswith("_")]
    assert adapter.fit(source_x, source_y) is adapter
    assert isinstance(adapter.history_, LoopHistory) and len(adapter.history_.steps) == 2  # 40 rows, batches of 32
    # the model given is the starting point, never trained in place: a fit owns a clone
    assert adapter.network_.encoder is not encoder
    for before, after in zip(given, encoder.get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    assert adapter.get_params()["encoder"] is encoder
    frozen = DomainAdapter(encoder, "source-only", bottleneck=8, epochs=1, encoder_learning_rate_scale=0.0)
    frozen.fit(source_x, source_y)
    # its weights, copied (the learnable ones: training still moves the BatchNorm statistics)
    assert len(encoder.trainable_weights) == len(frozen.network_.encoder.trainable_weights) == 4
    for start, trained in zip(encoder.trainable_weights, frozen.network_.encoder.trainable_weights, strict=True):
        np.testing.assert_array_equal(start.numpy(), trained.numpy())


def test_labels_of_any_kind_come_back_from_predict():
    (source_x, source_y), (target_x, _) = shifted_blobs(count=60, seed=6)
    names = np.array(["cat", "dog"])[source_y]
    adapter = small_adapter("dann", epochs=3).fit(source_x, names, target_x)
    np.testing.assert_array_equal(adapter.classes_, ["cat", "dog"])
    assert set(adapter.predict(target_x)) <= {"cat", "dog"}
    assert adapter.predict_proba(target_x).shape == (60, 2)
    assert adapter.transform(target_x).shape == (60, 32)


def test_no_target_means_x_is_its_own_target():
    (source_x, source_y), _ = shifted_blobs(count=60, seed=7)
    alone = small_adapter("dann", epochs=2).fit(source_x, source_y)
    itself = small_adapter("dann", epochs=2).fit(source_x, source_y, Xt=source_x)
    np.testing.assert_array_equal(alone.predict_proba(source_x), itself.predict_proba(source_x))


def test_the_target_parameter_survives_grid_search_and_clone():
    """GridSearchCV splits X and y only; the target given at construction reaches every fit."""
    (source_x, source_y), (target_x, _) = shifted_blobs(count=64, seed=8)
    adapter = DomainAdapter(method="dann", bottleneck=8, discriminator_units=(8,), epochs=2, batch_size=16,
                            learning_rate=0.1, random_state=0, Xt=target_x)
    search = GridSearchCV(adapter, {"trade_off": [0.0, 1.0]}, cv=2).fit(source_x, source_y)
    assert search.best_estimator_.Xt is not None and len(search.cv_results_["mean_test_score"]) == 2
    direct = clone(adapter).set_params(trade_off=search.best_params_["trade_off"]).fit(source_x, source_y)
    np.testing.assert_array_equal(direct.predict_proba(target_x), search.best_estimator_.predict_proba(target_x))
    # a Keras encoder clones too (scikit-learn deep-copies it), and so does a builder
    with_model = clone(DomainAdapter(vector_encoder(10, units=(4,)), bottleneck=8, epochs=1)).fit(source_x, source_y)
    assert with_model.network_.encoder.output_shape == (None, 4)
    built = DomainAdapter(lambda: vector_encoder(10, units=(6,)), bottleneck=8, epochs=1).fit(source_x, source_y)
    assert built.network_.encoder.output_shape == (None, 6)


def test_images_as_arrays_and_as_datasets():
    """An image encoder's inputs: 4-D arrays through fit, datasets through fit_domains."""
    rng = np.random.default_rng(9)
    labels = rng.integers(0, 2, 48)
    images = rng.normal(size=(48, 8, 8, 3)).astype("float32") + labels[:, None, None, None]
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    encoder = keras.Model(inputs, pooled)
    settings = dict(encoder=encoder, method="dann", bottleneck=8, discriminator_units=(8,), epochs=2, random_state=1)
    from_arrays = DomainAdapter(**settings).fit(images, labels, images[::-1])
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    target = tf.data.Dataset.from_tensor_slices(images[::-1])
    from_datasets = DomainAdapter(**settings).fit_domains(dataset, target, n_classes=2)
    np.testing.assert_allclose(from_arrays.predict_proba(images), from_datasets.predict_proba(dataset.batch(16)),
                               rtol=1e-5, atol=1e-6)
    assert not hasattr(from_datasets, "n_features_in_")  # images have no feature count
    with pytest.raises(InputError, match="encoder=None builds a vector encoder"):
        DomainAdapter(epochs=1).fit(images, labels)
