"""The data protocol and the two commands, python -m mmd.benchmark / mmd.distance."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mmd import benchmark, distance
from mmd.data import TASKS, parse_tasks, protocol_normalize

ROOT = os.path.join(os.path.dirname(__file__), "..")
DATA_DIR = os.path.join(ROOT, "..", "shared", "data", "office_caltech10_surf")
needs_data = pytest.mark.skipif(not os.path.isdir(DATA_DIR),
                                reason=f"Office-Caltech10 SURF not found at {DATA_DIR}")


def test_protocol_normalize_is_l1_then_domain_zscore_without_nan():
    X = np.array([[1, 3, 5, 0], [2, 2, 5, 0], [0, 0, 0, 0]], dtype=np.uint8)
    Z = protocol_normalize(X)
    assert np.all(np.isfinite(Z)) and X[0, 0] == 1           # input untouched
    np.testing.assert_allclose(Z[:, 3], 0)                     # constant column -> 0
    L1 = np.array([[1 / 9, 3 / 9, 5 / 9, 0], [2 / 9, 2 / 9, 5 / 9, 0], [0, 0, 0, 0]])
    ref = (L1[:, 0] - L1[:, 0].mean()) / L1[:, 0].std()
    np.testing.assert_allclose(Z[:, 0], ref)
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(protocol_normalize(X, zscore=False), L1)


def test_parse_tasks():
    assert parse_tasks("all") == list(TASKS) and len(TASKS) == 12
    assert parse_tasks("C->A, w-d,DA") == ["C->A", "W->D", "D->A"]
    for bad in ("C->C", "X->A", "C->A->W", ","):
        with pytest.raises(ValueError):
            parse_tasks(bad)


def test_help_of_both_commands():
    for module in ("mmd.benchmark", "mmd.distance"):
        out = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0 and "usage: python -m " + module in out.stdout


def test_benchmark_bad_input_gives_one_line_errors(capsys, tmp_path):
    assert benchmark.main(["--data-dir", str(tmp_path), "--method", "jda",
                           "--tasks", "C->Q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: bad task") and "\n" not in err
    assert benchmark.main(["--data-dir", str(tmp_path / "missing"), "--method", "nn"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert benchmark.main(["--data-dir", str(tmp_path), "--method", "nn"]) == 2
    assert "no Caltech10_SURF_L10.mat" in capsys.readouterr().err


def test_distance_on_feature_files(capsys, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "a.npy", rng.standard_normal((40, 3)))
    np.save(tmp_path / "b.npy", rng.standard_normal((30, 3)) + 2.0)
    np.savetxt(tmp_path / "c.csv", rng.standard_normal((30, 4)), delimiter=",")
    rc = distance.main([str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--adapt",
                        "none,tca", "--n-components", "2", "--permutations", "50"])
    out = capsys.readouterr().out
    assert rc == 0
    none_row = next(line for line in out.splitlines() if line.startswith("none"))
    assert float(none_row.split()[3]) == pytest.approx(1 / 51, abs=1e-4)  # every split is lower
    assert any(line.startswith("tca") for line in out.splitlines())
    rc = distance.main([str(tmp_path / "a.npy"), str(tmp_path / "c.csv")])
    err = capsys.readouterr().err
    assert rc == 2 and "3 features" in err and "4" in err
    assert distance.main([str(tmp_path / "a.npy")]) == 2
    assert "two feature files" in capsys.readouterr().err
    assert distance.main([str(tmp_path / "a.npy"), str(tmp_path / "b.npy"),
                          "--adapt", "jda"]) == 2
    assert "needs source labels" in capsys.readouterr().err


@needs_data
def test_benchmark_on_two_small_tasks_writes_json(capsys, tmp_path):
    path = tmp_path / "jda.json"
    rc = benchmark.main(["--data-dir", DATA_DIR, "--method", "jda", "--tasks", "W->D,D->W",
                         "--json", str(path)])
    assert rc == 0
    res = json.loads(path.read_text())
    assert res["method"] == "jda" and set(res["tasks"]) == {"W->D", "D->W"}
    assert res["tasks"]["W->D"]["accuracy"] == 85.35      # as the reference protocol gives
    assert res["tasks"]["D->W"]["accuracy"] == 84.75
    assert res["average"] == pytest.approx(85.05)
    assert "avg" in capsys.readouterr().out


@needs_data
def test_distance_between_two_domains_before_and_after_adaptation(capsys):
    rc = distance.main(["--data-dir", DATA_DIR, "--source", "D", "--target", "W",
                        "--adapt", "none,jda", "--permutations", "30", "--max-samples", "120"])
    out = capsys.readouterr().out
    assert rc == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("none", "jda")}
    assert float(rows["none"][4]) == pytest.approx(63.39)   # 1-NN without adaptation
    assert float(rows["jda"][4]) == pytest.approx(84.75)
