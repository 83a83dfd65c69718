"""The bottleneck cache: hits, resumes, invalidation, alignment. A tiny model keeps it fast."""
import keras
import numpy as np
import pytest
from conftest import draw_folder

import common.features as features_module
from common.data import UnreadableImageWarning, decode_image
from common.features import FeatureCache, extract_features


def tiny_extractor(size=16):
    """Mean colour per image: a 'backbone' whose output can be checked by hand."""
    inputs = keras.Input((size, size, 3))
    outputs = keras.layers.GlobalAveragePooling2D()(inputs)
    return keras.Model(inputs, outputs)


@pytest.fixture
def folder(tmp_path):
    draw_folder(tmp_path / "images", count=5)
    return sorted(str(p) for p in (tmp_path / "images").rglob("*.jpg"))


def expected(paths, size=16):
    return np.stack([decode_image(p, (size, size)).numpy().mean(axis=(0, 1)) for p in paths])


def test_features_align_with_paths_including_a_partial_last_batch(folder, tmp_path):
    assert len(folder) % 4 != 0  # the last batch is partial
    result = extract_features(tiny_extractor(), folder, None, 16, batch_size=4, progress=False)
    assert result.kept.tolist() == list(range(len(folder)))
    assert np.allclose(result.features, expected(folder), atol=1e-3)


def test_second_run_reads_everything_from_the_cache(folder, tmp_path):
    cache = FeatureCache(tmp_path / "cache", {"backbone": "tiny"})
    first = extract_features(tiny_extractor(), folder, cache, 16, batch_size=4, progress=False)
    assert (first.computed, first.reused) == (len(folder), 0)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the network ran on a cached image")

    model = tiny_extractor()
    model.call = must_not_run
    second = extract_features(model, folder, FeatureCache(tmp_path / "cache", {"backbone": "tiny"}), 16,
                              progress=False)
    assert (second.computed, second.reused) == (0, len(folder))
    assert np.array_equal(first.features, second.features)


def test_a_killed_run_resumes_and_computes_only_what_is_missing(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(features_module, "SHARD_IMAGES", 2)
    cache = FeatureCache(tmp_path / "cache", {"backbone": "tiny"})

    def kill_after_second_batch(batch_number):
        if batch_number == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_features(tiny_extractor(), folder, cache, 16, batch_size=2, progress=False,
                         _after_batch=kill_after_second_batch)
    # A half-written shard from a kill at the worst moment must be ignored.
    (cache.directory / "shard-half.npz.tmp").write_bytes(b"PK\x03\x04 truncated")
    assert len(cache.load()) == 4

    resumed = extract_features(tiny_extractor(), folder, cache, 16, batch_size=2, progress=False)
    assert resumed.reused == 4 and resumed.computed == len(folder) - 4
    assert np.allclose(resumed.features, expected(folder), atol=1e-3)


def test_an_image_whose_bytes_change_is_recomputed(folder, tmp_path):
    from PIL import Image

    cache = FeatureCache(tmp_path / "cache", {"backbone": "tiny"})
    extract_features(tiny_extractor(), folder, cache, 16, progress=False)
    Image.new("RGB", (20, 20), (255, 255, 0)).save(folder[0])
    again = extract_features(tiny_extractor(), folder, cache, 16, progress=False)
    assert again.computed == 1 and again.reused == len(folder) - 1
    assert np.allclose(again.features[0], [255, 255, 0], atol=2)


def test_namespaces_do_not_share_features(folder, tmp_path):
    one = FeatureCache(tmp_path / "cache", {"backbone": "tiny", "image_size": 16})
    other = FeatureCache(tmp_path / "cache", {"backbone": "tiny", "image_size": 32})
    extract_features(tiny_extractor(), folder, one, 16, progress=False)
    assert one.directory != other.directory and other.load() == {}


def test_an_undecodable_file_is_dropped_with_its_label_and_named(folder, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg \xff\xd9")
    paths = folder[:3] + [str(broken)] + folder[3:]
    with pytest.warns(UnreadableImageWarning, match="broken.jpg"):
        result = extract_features(tiny_extractor(), paths, None, 16, batch_size=2, progress=False)
    assert 3 not in result.kept and len(result.kept) == len(folder)
    assert np.allclose(result.features, expected(folder), atol=1e-3)
