"""common.backbones' surgery: where fine-tuning cuts a base, and the one pass that gives vector and cut map."""
from __future__ import annotations

import argparse

import numpy as np
import pytest

from common.backbones import bottleneck_extractor, build_base, build_model, cut_point, split_base
from common.errors import UserError


@pytest.fixture(scope="module")
def base():
    import keras

    keras.utils.set_random_seed(0)
    return build_base("mobilenet_v2", "none", 32)


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")


def test_bottom_then_top_is_the_base(base, pixels):
    bottom, top, name = split_base(base, "block_14_expand")
    assert name == "block_14_expand" and top.input_shape[1:] == bottom.output_shape[1:]
    np.testing.assert_allclose(top(bottom(pixels)).numpy(), base(pixels).numpy(), atol=1e-5)
    assert split_base(base, "0")[2] == base.layers[0].name  # an index works, and is named


def test_a_layer_inside_a_block_is_refused(base):
    with pytest.raises(UserError, match="not a block boundary"):
        split_base(base, "block_14_project")  # block 14's residual Add also reads block 13's output
    with pytest.raises(UserError, match="no layer named"):
        split_base(base, "block14_expand")


def test_cut_point_follows_the_commands_flags(base):
    args = argparse.Namespace
    assert cut_point(args(), base) is None                                   # a command without fine-tuning
    assert cut_point(args(finetune_epochs=0, unfreeze_from="block_14_expand"), base) is None
    assert cut_point(args(finetune_epochs=2, finetune_augment=True, unfreeze_from="Conv1"), base) is None
    with pytest.raises(UserError):                                           # ... but the layer must exist
        cut_point(args(finetune_epochs=2, finetune_augment=True, unfreeze_from="conv99"), base)
    assert cut_point(args(finetune_epochs=2, finetune_augment=False, unfreeze_from="block_14_expand"), base)[2] \
        == "block_14_expand"


def test_the_extractor_gives_the_pooled_vector_then_the_flattened_cut_map(base, pixels):
    cut = split_base(base, "block_14_expand")
    both = bottleneck_extractor("mobilenet_v2", base, "avg", cut)(pixels).numpy()
    vector = bottleneck_extractor("mobilenet_v2", base, "avg")(pixels).numpy()
    maps = build_model("mobilenet_v2", base=cut[0])[0](pixels).numpy()
    dim = base.output_shape[-1]
    assert both.shape == (3, dim + int(np.prod(maps.shape[1:])))
    np.testing.assert_allclose(both[:, :dim], vector, atol=1e-5)
    np.testing.assert_allclose(both[:, dim:], maps.reshape(3, -1), atol=1e-6)
    with pytest.raises(ValueError, match="pooling='avg'"):
        bottleneck_extractor("mobilenet_v2", base, None, cut)
