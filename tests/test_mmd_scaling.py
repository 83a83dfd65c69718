"""python -m mmd.scaling: rows, skipped rows, plot; the synthetic domains."""
import json
import sys

import numpy as np
import pytest

from mmd import scaling

KEYS = {"method", "kernel", "n", "d", "seconds", "peak_rss_bytes", "accuracy"}


def test_synthetic_domains_are_seeded_shifted_and_sized():
    Xs, ys, Xt, yt = scaling.synthetic_domains(301, d=12, n_classes=3, shift=1.0, seed=4)
    again = scaling.synthetic_domains(301, d=12, n_classes=3, shift=1.0, seed=4)
    assert Xs.shape == (150, 12) and Xt.shape == (151, 12) and set(ys) == set(yt) == {0, 1, 2}
    np.testing.assert_array_equal(Xt, again[2])
    unshifted = scaling.synthetic_domains(301, d=12, n_classes=3, shift=0.0, seed=4)
    np.testing.assert_array_equal(Xs, unshifted[0])           # only the target moves
    assert np.linalg.norm((Xt - unshifted[2]).mean(0)) > 2.0  # 3 along the shift direction


def test_scaling_measures_a_fit_in_a_child_process_and_skips_what_would_not_fit(
        tmp_path, capsys, monkeypatch):
    children = []
    real_popen = scaling.subprocess.Popen
    monkeypatch.setattr(scaling.subprocess, "Popen", lambda args, **kw: children.append(args) or real_popen(args, **kw))
    out = tmp_path / "rows.json"
    assert scaling.main(["--sizes", "200", "--methods", "primal", "--dim", "10", "--classes", "3",
                         "--n-components", "5", "--n-landmarks", "20", "--n-iter", "2",
                         "--output-dir", str(tmp_path / "run"), "--json", str(out)]) == 0
    [row] = json.loads(out.read_text())
    assert set(row) == KEYS and row["method"] == "primal" and row["n"] == 200
    assert row["seconds"] > 0 and row["accuracy"] > 80
    assert row["peak_rss_bytes"] > 100 * 2 ** 20          # a process with TensorFlow loaded
    assert len(children) == 1 and children[0][:2] == [sys.executable, "-c"] and "_worker" in children[0][2]
    assert (tmp_path / "run" / "scaling.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "run" / "rows.json").read_text()) == [row]
    # an exact kernel at n = 100,000 needs ~400 GB: a row that says so, no crash
    assert scaling.main(["--sizes", "100000", "--methods", "kernel-exact", "--max-memory-gib", "8",
                         "--output-dir", str(tmp_path / "big"), "--json", str(tmp_path / "big.json")]) == 0
    [row] = json.loads((tmp_path / "big.json").read_text())
    assert set(row) == KEYS and row["seconds"] is None and row["peak_rss_bytes"] is None
    assert "not run: needs about" in capsys.readouterr().out


def test_scaling_bad_input_exits_2(tmp_path, capsys):
    for argv, message in [(["--sizes", "10,abc"], "--sizes"),
                          (["--methods", "primal,svd"], "--methods"),
                          (["--sizes", "50"], "must exceed")]:
        with pytest.raises(SystemExit) as exit_info:
            scaling.main(argv + ["--output-dir", str(tmp_path / "x")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
