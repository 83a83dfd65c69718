"""adaptation.benchmark end to end on a miniature flower_photos / flower17 pair (random VGG16 weights).

It checks the table's plumbing, not accuracy: every requested row, one score
per seed on the whole target, one training serving source-only and AdaBN,
the JSON equal to what is printed, the data folders untouched.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import draw_image, snapshot

from adaptation import benchmark, train
from adaptation.data import FLOWER17_PER_CLASS, SHARED_FLOWERS
from adaptation.selection import selection_rows

TARGET_PER_CLASS = 3


@pytest.fixture
def data_dir(tmp_path):
    """<root>/flower_photos/<folder>/ (26 each: TCA keeps 100 components) and
    <root>/flower17/jpg/image_NNNN.jpg (3 of each shared class)."""
    root = tmp_path / "shared"
    rng = np.random.default_rng(0)
    images = root / "flower17" / "jpg"
    images.mkdir(parents=True)
    for label, (folder, number) in enumerate(SHARED_FLOWERS.values()):
        (root / "flower_photos" / folder).mkdir(parents=True)
        for i in range(26):
            draw_image(label % 2, rng).save(root / "flower_photos" / folder / f"{folder}{i}.jpg", quality=90)
        for i in range(TARGET_PER_CLASS):
            index = number * FLOWER17_PER_CLASS + i + 1
            draw_image(label % 2, rng).save(images / f"image_{index:04d}.jpg", quality=90)
    return root


def test_benchmark_table_end_to_end(data_dir, tmp_path, capsys, monkeypatch):
    trainings, scored_rows = [], []
    real_train_once, real_predict_views = benchmark.train_once, benchmark.predict_views
    monkeypatch.setattr(benchmark, "train_once", lambda *a, **k: trainings.append(a[3]) or real_train_once(*a, **k))

    def counting_predict_views(adapter, inputs, domain):
        probabilities = real_predict_views(adapter, inputs, domain)
        scored_rows.append((domain, len(probabilities)))
        return probabilities

    monkeypatch.setattr(benchmark, "predict_views", counting_predict_views)
    before = snapshot(data_dir)
    table = tmp_path / "out" / "table.json"
    methods = ["source-only", "adabn", "dan", "tca"]
    rows = benchmark.main([
        "--data-dir", str(data_dir), "--directions", "flower_photos->flower17", "--seeds", "2",
        "--methods", ",".join(methods), "--epochs", "1", "--trade-off", "1", "--views", "original",
        "--cache-dir", str(tmp_path / "cache"), "--json", str(table),
        "--backbone", "vgg16", "--weights", "none", "--image-size", "32", "--batch-size", "4",
    ])
    assert snapshot(data_dir) == before
    assert [row["method"] for row in rows] == methods
    target_size = TARGET_PER_CLASS * len(SHARED_FLOWERS)
    for row in rows:
        assert row["direction"] == "flower_photos->flower17" and len(row["accuracy"]) == 2
        # every score counts whole target images: the whole flower17 side, scored once per seed
        for accuracy in row["accuracy"]:
            assert abs(accuracy * target_size - round(accuracy * target_size)) < 1e-3  # rows keep 4 decimals
        assert row["accuracy_mean"] == pytest.approx(np.mean(row["accuracy"]), abs=1e-4)
        assert row["accuracy_std"] == pytest.approx(np.std(row["accuracy"]), abs=1e-4)
    by_method = {row["method"]: row for row in rows}
    assert by_method["source-only"]["seconds"] == by_method["adabn"]["seconds"]
    # one training serves source-only and AdaBN, one more for DAN: 2 per seed, each at the given lambda
    assert len(trainings) == 4 and set(trainings) <= {0.0, 1.0}, trainings
    # every scoring predicts the whole flower17 side (with the target's, then the source's BatchNorm statistics)
    assert len(scored_rows) == 2 * 3 and {rows for _, rows in scored_rows} == {target_size}
    assert json.loads(table.read_text()) == rows
    printed = capsys.readouterr().out
    assert f"wrote {table.resolve()}" in printed
    for method in methods:
        assert f"flower_photos->flower17 seed 1 {method}:" in printed


@pytest.mark.parametrize("module", [benchmark, train])
def test_both_commands_read_trade_off_and_views_alike(module, capsys):
    args = module.parse_args(["--trade-off", "0.5", "--trade-off-grid", "1,3", "--views", "mirror,original"])
    assert args.trade_off == 0.5 and args.trade_off_grid == [1.0, 3.0]
    assert args.views == "original,mirror"   # the original view first: TCA/JDA and the measures read it
    for bad in (["--trade-off", "-1"], ["--trade-off-grid", "1,x"], ["--views", "zoom"]):
        with pytest.raises(SystemExit) as stop:
            module.parse_args(bad)
        assert stop.value.code == 2
        assert ("--trade-off" if "--views" not in bad else "--views") in capsys.readouterr().err


def test_the_benchmark_refuses_an_output_dir_it_would_not_write(capsys):
    """Its rows go to --json; --output-dir was accepted and silently ignored."""
    with pytest.raises(SystemExit) as stop:
        benchmark.parse_args(["--output-dir", "somewhere"])
    assert stop.value.code == 2 and "--json PATH" in capsys.readouterr().err


def test_lambda_chosen_by_each_label_free_criterion_beside_the_oracle(data_dir, tmp_path, capsys):
    rows = benchmark.main([
        "--data-dir", str(data_dir), "--directions", "flower_photos->flower17", "--seeds", "1",
        "--methods", "dan", "--epochs", "1", "--trade-off", "auto", "--trade-off-grid", "0.3,3", "--views", "original",
        "--cache-dir", str(tmp_path / "cache"),
        "--backbone", "vgg16", "--weights", "none", "--image-size", "32", "--batch-size", "4",
    ])
    (seed,) = rows[0]["candidates"]
    assert [c["trade_off"] for c in seed] == [0.3, 3.0]
    for candidate in seed:
        assert np.isfinite(candidate["dev_risk"]) and candidate["dev_risk"] > 0  # a weighted cross-entropy
        assert 0 <= candidate["oracle_target_accuracy"] <= 1
    printed = capsys.readouterr().out
    assert "never used" in printed
    table = selection_rows(rows)
    assert {entry["criterion"] for entry in table} == {"entropy", "DEV", "source validation"}
    by_entropy = next(entry for entry in table if entry["criterion"] == "entropy")
    assert by_entropy["picked"] == [min(seed, key=lambda c: c["target_entropy"])["trade_off"]]
    assert all(entry["gap"] >= 0 for entry in table)


def test_the_selection_table_reads_each_criterion_the_right_way_round():
    seeds = [[{"trade_off": 0.3, "target_entropy": 0.1, "dev_risk": 0.9, "source_val_accuracy": 0.7,
               "oracle_target_accuracy": 0.6},
              {"trade_off": 1.0, "target_entropy": 0.3, "dev_risk": 0.2, "source_val_accuracy": 0.9,
               "oracle_target_accuracy": 0.8}]]
    table = {entry["criterion"]: entry for entry in selection_rows([{"direction": "a->b", "method": "dan",
                                                                      "candidates": seeds}])}
    assert table["entropy"]["picked"] == [0.3] and table["entropy"]["gap"] == pytest.approx(0.2)
    assert table["DEV"]["picked"] == [1.0] and table["DEV"]["gap"] == 0
    assert table["source validation"]["picked"] == [1.0]
