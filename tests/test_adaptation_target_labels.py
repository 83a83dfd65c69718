"""--target-labels K (semi-supervised adaptation): K labelled target images per class, drawn with the seed,
trained on beside the source and never scored; DomainAdapter.fit_domains(labelled_target=...)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import draw_folder
from test_adaptation_adapter import shifted_blobs, small_adapter
from test_adaptation_benchmark import TARGET_PER_CLASS, data_dir  # noqa: F401  (the miniature flower pair)
from test_adaptation_cli import TINY

from adaptation import benchmark
from adaptation.data import SHARED_FLOWERS, load_pair
from adaptation.inputs import hold_out_labelled_target
from common.errors import UserError
from mmd.validation import InputError


def labelled_rows(x, y, per_class, seed=0):
    rng = np.random.default_rng(seed)
    rows = np.concatenate([rng.choice(np.flatnonzero(y == label), per_class, replace=False) for label in (0, 1)])
    return x[rows], y[rows]


def test_a_few_labelled_target_samples_fix_what_the_source_misleads():
    """In the shifted blobs the source-only boundary misreads the target; three labelled target points
    per class in l_c move it, and the logged l_c_target is the loss on them."""
    (source_x, source_y), (target_x, target_y) = shifted_blobs(seed=3)
    plain = small_adapter("source-only", epochs=30).fit_domains((source_x, source_y), target_x, n_classes=2)
    known = labelled_rows(target_x, target_y, 3)
    helped = small_adapter("source-only", epochs=30).fit_domains((source_x, source_y), target_x, n_classes=2,
                                                                 labelled_target=known)
    assert plain.score(target_x, target_y) < 0.8
    assert helped.score(target_x, target_y) > plain.score(target_x, target_y) + 0.1
    assert "l_c_target" not in plain.history_.steps[0]
    first, last = helped.history_.steps[0], helped.history_.steps[-1]
    assert last["l_c_target"] < first["l_c_target"]
    assert len(helped.history_.steps) == len(plain.history_.steps)  # the same budget: steps follow the domains
    # DAN with the labels: the adaptation loss still runs (l_A logged) and the target is read right
    dan = small_adapter("dan", epochs=30).fit_domains((source_x, source_y), target_x, n_classes=2,
                                                      labelled_target=known)
    assert "l_A" in dan.history_.steps[-1] and dan.score(target_x, target_y) > 0.9


def test_labelled_target_labels_are_checked_like_the_source_labels():
    (source_x, source_y), (target_x, target_y) = shifted_blobs(count=40, seed=1)
    with pytest.raises(InputError, match=r"class indices in 0\.\.1"):
        small_adapter("dann", epochs=1).fit_domains((source_x, source_y), target_x, n_classes=2,
                                                    labelled_target=(target_x[:4], target_y[:4] + 2))


def test_the_labelled_images_are_drawn_per_class_with_the_seed_and_kept_out_of_the_target(tmp_path):
    source = draw_folder(tmp_path / "photos", classes=("disc", "square"), count=10, seed=1)
    target = draw_folder(tmp_path / "sketches", classes=("disc", "square"), count=6, seed=2)
    pair = load_pair(None, None, None, source, target)
    rest, known = hold_out_labelled_target(pair, 2, seed=5)
    assert np.bincount(known.labels).tolist() == [2, 2]
    assert sorted(rest.target.paths + known.paths) == sorted(pair.target.paths)
    assert not set(rest.target.paths) & set(known.paths)
    assert all(pair.target.labels[pair.target.paths.index(path)] == label
               for path, label in zip(known.paths, known.labels, strict=True))
    again = hold_out_labelled_target(pair, 2, seed=5)[1]
    assert again.paths == known.paths
    draws = {tuple(hold_out_labelled_target(pair, 2, seed=seed)[1].paths) for seed in range(6)}
    assert len(draws) > 1  # the seed decides which
    unchanged, none = hold_out_labelled_target(pair, 0, seed=5)
    assert unchanged is pair and none is None
    with pytest.raises(UserError, match="at most 5 per class"):
        hold_out_labelled_target(pair, 6, seed=5)


def test_train_with_target_labels_scores_only_the_unlabelled_rest(tmp_path, capsys):
    from adaptation.train import main

    source = draw_folder(tmp_path / "photos", classes=("disc", "square"), count=10, seed=1)
    target = draw_folder(tmp_path / "sketches", classes=("disc", "square"), count=6, seed=2)
    out = tmp_path / "run"
    metrics = main(["--source-dir", str(source), "--target-dir", str(target), "--method", "dan", "--epochs", "1",
                    "--trade-off", "1", "--target-labels", "2", "--views", "original,mirror",
                    "--cache-dir", str(tmp_path / "cache"), "--output-dir", str(out), "--embedding", "pca", *TINY])
    assert metrics["labelled_target_images"] == 4 and metrics["target_labels_per_class"] == 2
    assert np.sum(metrics["target_confusion_matrix"]) == 12 - 4  # the labelled four are never scored
    config = json.loads((out / "config.json").read_text())
    assert config["target_labels"] == 2 and config["labelled_target_images"] == 4 and config["target_images"] == 8
    header = (out / "steps.csv").read_text().splitlines()[0].split(",")
    assert "l_c_target" in header and "l_A" in header
    assert "8 target images (and 4 labelled ones, 2 per class)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["--source-dir", str(source), "--target-dir", str(target), "--target-labels", "-1", *TINY])
    assert stop.value.code == 2 and "--target-labels" in capsys.readouterr().err


def test_benchmark_rows_with_target_labels(data_dir, tmp_path, capsys, monkeypatch):  # noqa: F811
    scored = []
    real_predict_views = benchmark.predict_views
    monkeypatch.setattr(benchmark, "predict_views",
                        lambda adapter, inputs, domain: scored.append(len(inputs[0])) or real_predict_views(
                            adapter, inputs, domain))
    rows = benchmark.main([
        "--data-dir", str(data_dir), "--directions", "flower_photos->flower17", "--seeds", "1",
        "--methods", "source-only,dan,tca", "--epochs", "1", "--trade-off", "1", "--views", "original",
        "--target-labels", "1", "--cache-dir", str(tmp_path / "cache"),
        "--backbone", "vgg16", "--weights", "none", "--image-size", "32", "--batch-size", "4",
    ])
    rest = (TARGET_PER_CLASS - 1) * len(SHARED_FLOWERS)
    assert [row["method"] for row in rows] == ["source-only", "dan", "tca"]
    for row in rows:
        assert row["target_labels"] == 1
        assert abs(row["accuracy"][0] * rest - round(row["accuracy"][0] * rest)) < 1e-3
    assert scored and set(scored) == {rest}  # every deep score reads the unlabelled rest alone
    assert "--target-labels 1:" in capsys.readouterr().out
