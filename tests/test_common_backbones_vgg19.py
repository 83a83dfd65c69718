"""VGG19 (the backbone of textbook text 004) wherever VGG16 is accepted, built with weights=None."""
import json

import keras
import numpy as np
import pytest

from cats_dogs import bottleneck, finetune
from common.backbones import (
    BACKBONES,
    UNFREEZE_FROM,
    BackbonePreprocess,
    build_base,
    build_model,
    default_unfreeze_from,
    freeze_below,
)
from flowers import flower17
from flowers import train as flowers_train
from segmentation import networks
from segmentation import train as segmentation_train


def test_vgg19_is_a_backbone_with_its_own_cut_point():
    assert "vgg19" in BACKBONES and UNFREEZE_FROM["vgg19"][0] == "block5_conv1"
    base = build_base("vgg19", "none", 32)
    assert base.name == "vgg19" and base.output_shape == (None, 1, 1, 512)
    index = freeze_below(base, default_unfreeze_from("vgg19"))
    assert index == 17  # blocks 1-4: 2 + 2 + 4 + 4 convolutions, 4 poolings, the input layer
    trainable = [layer.name for layer in base.layers if layer.trainable and layer.weights]
    assert trainable == ["block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4"]


def test_vgg19_preprocessing_is_its_own_and_survives_saving(tmp_path):
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    expected = keras.applications.vgg19.preprocess_input(pixels.copy())
    assert np.allclose(np.asarray(BackbonePreprocess("vgg19")(pixels)), expected, atol=1e-4)
    keras.utils.set_random_seed(0)
    model, _ = build_model("vgg19", "none", 32, head=keras.layers.Dense(3, activation="softmax"), pooling="avg")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.layers[1].get_config()["backbone"] == "vgg19"
    assert np.allclose(loaded.predict(pixels, verbose=0), model.predict(pixels, verbose=0), atol=1e-6)


@pytest.mark.parametrize("command", [bottleneck, finetune, flowers_train, flower17])
def test_every_classifier_command_accepts_vgg19(command):
    args = command.parse_args(["--backbone", "vgg19", "--weights", "none"])
    assert args.backbone == "vgg19" and args.image_size in (150, 224)
    if hasattr(args, "unfreeze_from") and command is not flower17:  # flower17 keeps the exercise's layers[:5]
        assert args.unfreeze_from == "block5_conv1"


def test_a_bottleneck_run_on_vgg19(cats_dogs_dir, tmp_path):
    out = tmp_path / "run"
    metrics = bottleneck.main(["--data-dir", str(cats_dogs_dir), "--cache-dir", str(tmp_path / "cache"),
                               "--output-dir", str(out), "--backbone", "vgg19", "--weights", "none",
                               "--image-size", "32", "--epochs", "1"])
    assert metrics["backbone"] == "vgg19" and metrics["n_val"] == 8
    assert json.loads((out / "config.json").read_text())["backbone"] == "vgg19"
    model = keras.saving.load_model(out / "model.keras", compile=False)
    assert model.get_layer("vgg19").count_params() == build_base("vgg19", "none", 32).count_params()


def test_segmentation_mirrors_the_vgg19_encoder():
    assert "vgg19" in segmentation_train.parse_args(["--backbone", "vgg19", "--weights", "none"]).backbone
    model, base = networks.build_tlbsn("vgg19", "none", 32, width=4)
    assert model.output_shape == (None, 32, 32, 1)
    assert networks.encoder_blocks("vgg19") == 5
    networks.set_trainable_depth(base, "vgg19", 1)
    trainable = [layer.name for layer in base.layers if layer.trainable_weights]
    assert trainable == ["block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4"]
