"""Backbones: the right layers frozen, the right preprocessing saved, clear errors for bad weights."""
import socket

import keras
import numpy as np
import pytest

from common.backbones import (
    BackbonePreprocess,
    build_base,
    build_model,
    freeze_below,
    weights_fingerprint,
)
from common.errors import UserError


def test_vgg16_last_conv_block_starts_at_layer_15():
    base = build_base("vgg16", "none", 32)
    index = freeze_below(base, "block5_conv1")
    assert index == 15
    trainable = [layer.name for layer in base.layers if layer.trainable and layer.weights]
    assert trainable == ["block5_conv1", "block5_conv2", "block5_conv3"]
    assert len(base.trainable_weights) == 6


def test_preprocessing_is_the_backbones_own_and_survives_saving(tmp_path):
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    for name in ("vgg16", "inception_v3", "mobilenet_v2"):
        layer = BackbonePreprocess(name)
        expected = getattr(keras.applications, name).preprocess_input(pixels.copy())
        assert np.allclose(np.asarray(layer(pixels)), expected, atol=1e-4)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, BackbonePreprocess("vgg16")(inputs))
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert np.allclose(loaded.predict(pixels, verbose=0), model.predict(pixels, verbose=0))
    # VGG16 wants BGR with the ImageNet mean removed, not pixels / 255
    assert not np.allclose(np.asarray(BackbonePreprocess("vgg16")(pixels)), pixels / 255)


def test_fingerprint_follows_the_weight_values():
    keras.utils.set_random_seed(1)
    extractor, base = build_model("mobilenet_v2", "none", 32, pooling="avg")
    first = weights_fingerprint(base)
    assert weights_fingerprint(base) == first
    base.layers[1].kernel.assign(base.layers[1].kernel + 1.0)
    assert weights_fingerprint(base) != first
    assert extractor.output_shape == (None, 1280)


def test_a_missing_weights_file_is_named(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_base("vgg16", str(tmp_path / "nope.h5"), 32)


def test_a_weights_file_for_another_architecture_is_refused(tmp_path):
    path = tmp_path / "mobilenet.weights.h5"
    build_base("mobilenet_v2", "none", 32).save_weights(path)
    with pytest.raises(UserError, match="does not fit vgg16"):
        build_base("vgg16", str(path), 32)


def test_offline_imagenet_download_says_which_file_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(UserError) as error:
        build_base("vgg16", "imagenet", 32)
    message = str(error.value)
    assert "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" in message
    assert str(tmp_path / "keras" / "models") in message and "--weights" in message


def test_too_small_an_image_size_is_refused():
    with pytest.raises(UserError, match="at least 75x75"):
        build_base("inception_v3", "none", 32)


def test_one_builder_wraps_pixels_preprocessing_base_pooling_and_head():
    keras.utils.set_random_seed(0)
    head = keras.layers.Dense(3, activation="softmax", name="head")
    model, base = build_model("mobilenet_v2", "none", 32, head=head, pooling="avg")
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    by_hand = head(keras.ops.mean(base(BackbonePreprocess("mobilenet_v2")(pixels), training=False), axis=(1, 2)))
    assert model.output_shape == (None, 3)
    assert np.allclose(model.predict(pixels, verbose=0), np.asarray(by_hand), atol=1e-5)
    # an existing base is wrapped, not rebuilt: the same variables
    again, same_base = build_model("mobilenet_v2", base=base, pooling="max")
    assert same_base is base and again.output_shape == (None, 1280)


def test_freezing_by_name_index_or_none_and_the_default_table():
    from common.backbones import UNFREEZE_FROM, default_unfreeze_from, layer_index

    base = build_base("mobilenet_v2", "none", 32)
    def trainable_apart_from_batchnorm(layers):
        return [layer.trainable for layer in layers if not isinstance(layer, keras.layers.BatchNormalization)]

    assert freeze_below(base, "4") == 4 and trainable_apart_from_batchnorm(base.layers[:5]) == [False] * 3 + [True]
    assert freeze_below(base, 0) == 0 and all(trainable_apart_from_batchnorm(base.layers))
    assert not any(layer.trainable for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization))
    assert freeze_below(base, "none") == len(base.layers) and not base.trainable_weights
    cut = freeze_below(base, default_unfreeze_from("mobilenet_v2"))
    assert base.layers[cut].name == "block_14_expand" == UNFREEZE_FROM["mobilenet_v2"][0]
    assert not any(layer.trainable_weights for layer in base.layers[:cut])
    with pytest.raises(UserError, match="no layer named 'block_99_expand'"):
        layer_index(base, "block_99_expand")
    with pytest.raises(UserError, match="outside"):
        layer_index(base, 10_000)


def test_batchnorm_stays_in_inference_mode_when_the_model_around_the_base_is_trained():
    """Keras 3 lets fit's training=True override base(x, training=False); freezing BN is what holds.

    Fails without the BatchNormalization clause of freeze_below: the moving
    mean of an unfrozen block moves (by about 1e-6 here) and the layer
    normalises with batch statistics.
    """
    keras.utils.set_random_seed(0)
    model, base = build_model("mobilenet_v2", "none", 32, head=keras.layers.Dense(2, activation="softmax"),
                              pooling="avg")
    index = freeze_below(base, "block_14_expand")
    norms = [layer for layer in base.layers[index:] if isinstance(layer, keras.layers.BatchNormalization)]
    convolutions = [layer for layer in base.layers[index:] if layer.trainable_weights]
    assert norms and convolutions  # the unfrozen part trains, its BatchNorm layers do not
    before = [np.array(layer.moving_mean) for layer in norms]
    trained = {id(variable) for variable in model.trainable_weights}
    assert all(id(layer.trainable_weights[0]) in trained for layer in convolutions)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="sparse_categorical_crossentropy")
    pixels = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    model.fit(pixels, np.array([0, 1] * 4), epochs=2, verbose=0)
    assert all(np.array_equal(b, np.array(layer.moving_mean)) for b, layer in zip(before, norms, strict=False))
    # and the model's output is what inference mode gives
    assert np.allclose(model(pixels, training=True), model(pixels, training=False), atol=1e-6)
