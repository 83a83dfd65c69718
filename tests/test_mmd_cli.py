"""The data protocol and the two commands, python -m mmd.benchmark / mmd.distance."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.io

from mmd import benchmark, distance, solvers
from mmd.data import TASKS, parse_tasks, protocol_normalize

ROOT = os.path.join(os.path.dirname(__file__), "..")
DATA_DIR = os.path.join(ROOT, "..", "shared", "data", "office_caltech10_surf")
needs_data = pytest.mark.skipif(not os.path.isdir(DATA_DIR),
                                reason=f"Office-Caltech10 SURF not found at {DATA_DIR}")


def test_protocol_normalize_is_l1_then_domain_zscore_without_nan():
    X = np.array([[1, 3, 5, 0], [2, 2, 5, 0], [0, 0, 0, 0]], dtype=np.float64)
    before = X.copy()
    Z = protocol_normalize(X)
    assert np.all(np.isfinite(Z))
    np.testing.assert_array_equal(X, before)                   # a float input is not normalised in place
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


@pytest.mark.parametrize("module", ["mmd.benchmark", "mmd.distance", "mmd.scaling",
                                    "mmd.solver_timing"])
def test_help_says_how_to_run_each_command(module, capsys):
    import importlib
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and out.startswith("usage: python -m " + module)
    assert "example" in out


def test_commands_run_as_modules():
    out = subprocess.run([sys.executable, "-m", "mmd.benchmark", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage: python -m mmd.benchmark" in out.stdout


def fake_office_caltech(folder, seed=0):
    """Four small random domains in the SURF_L10 .mat layout (fts, labels)."""
    rng = np.random.default_rng(seed)
    for i, stem in enumerate(("Caltech10", "amazon", "webcam", "dslr")):
        labels = np.arange(1, 41) % 4 + 1
        counts = rng.poisson(2.0 + labels[:, None] * np.linspace(0, 1, 30) + i, (40, 30))
        scipy.io.savemat(folder / f"{stem}_SURF_L10.mat",
                         {"fts": counts.astype(np.uint8), "labels": labels[:, None]})
    return str(folder)


def run_command(module, args, cwd=ROOT, prelude=""):
    """python -m module args, optionally after `prelude` (code run first in
    the same interpreter, e.g. to break something on purpose)."""
    code = (f"import sys\n{prelude}\nimport {module} as m\n"
            "sys.argv[0] = 'python -m {module}'\nsys.exit(m.main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_benchmark_bad_input_exits_2_with_one_line_errors(capsys, tmp_path):
    cases = [(["--data-dir", str(tmp_path), "--method", "jda", "--tasks", "C->Q"], "error: bad task"),
             (["--data-dir", str(tmp_path / "missing"), "--method", "nn"], "is not a folder"),
             (["--data-dir", str(tmp_path), "--method", "nn"], "no Caltech10_SURF_L10.mat"),
             (["--data-dir", str(tmp_path), "--method", "jda", "--solver", "lobpcg"], "--solver"),
             (["--data-dir", str(tmp_path), "--method", "jda", "--n-landmarks", "5"],
              "--n-landmarks needs --kernel")]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            benchmark.main(argv)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and message in err and "\n" not in err, argv


def test_commands_exit_1_on_a_failure_of_their_own_and_2_on_bad_input(tmp_path, monkeypatch):
    data = fake_office_caltech(tmp_path)
    good = ["--data-dir", data, "--method", "jda", "--tasks", "C->A", "--n-components", "5",
            "--n-iter", "2", "--jobs", "1"]
    # as a process: bad input is status 2 with one line; a bug inside the
    # package (here a ValueError that is not an input error) keeps its
    # traceback and gives status 1
    bad = run_command("mmd.benchmark", good[:-2] + ["--jobs", "0"])
    assert bad.returncode == 2 and bad.stderr.strip() == "error: --jobs must be >= 1"
    broken = "import mmd.data\ndef boom(*a, **k): raise ValueError('internal')\n" \
             "mmd.data.protocol_normalize = boom"
    failed = run_command("mmd.benchmark", good, prelude=broken)
    assert failed.returncode == 1 and "Traceback" in failed.stderr and "internal" in failed.stderr
    # in process, for both commands, deeper inside: the error is not caught
    assert benchmark.main(good) == 0
    np.save(tmp_path / "a.npy", np.ones((5, 3)))
    np.save(tmp_path / "b.npy", np.random.default_rng(0).standard_normal((6, 3)))
    with pytest.raises(SystemExit) as exit_info:
        distance.main([str(tmp_path / "a.npy"), str(tmp_path / "missing.npy")])
    assert exit_info.value.code == 2

    def boom(*args, **kwargs):
        raise ValueError("internal")

    monkeypatch.setattr(solvers, "mmd_directions", boom)
    with pytest.raises(ValueError, match="internal"):
        benchmark.main(good)
    monkeypatch.setattr(distance, "mmd_test", boom)
    with pytest.raises(ValueError, match="internal"):
        distance.main([str(tmp_path / "a.npy"), str(tmp_path / "b.npy")])


def test_benchmark_compares_solvers_task_by_task(capsys, tmp_path):
    data = fake_office_caltech(tmp_path, seed=1)
    path = tmp_path / "out.json"
    assert benchmark.main(["--data-dir", data, "--method", "bda", "--mu", "0.3", "--tasks",
                           "C->A,W->D", "--n-components", "5", "--n-iter", "3", "--jobs", "1",
                           "--solver", "iterative,exact", "--json", str(path)]) == 0
    res = json.loads(path.read_text())
    assert res["solvers"] == ["iterative", "exact"] and set(res["tasks"]) == {"C->A", "W->D"}
    for task in res["tasks"].values():
        assert task["iterative"]["labels"] == task["exact"]["labels"]
        assert task["exact"]["solver_steps"] == [0] * task["exact"]["eigensolves"]
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if "->" in line[:6]}
    assert rows["C->A"][-1] == "0"            # labels on which the solvers differ


def test_benchmark_profile_splits_each_tasks_seconds_into_stages(capsys, tmp_path):
    data = fake_office_caltech(tmp_path, seed=2)
    path = tmp_path / "profile.json"
    assert benchmark.main(["--data-dir", data, "--method", "jda", "--tasks", "C->A,W->D",
                           "--n-components", "5", "--n-iter", "3", "--jobs", "1", "--profile",
                           "--json", str(path)]) == 0
    out = capsys.readouterr().out
    table = out[out.index("where the time goes"):].splitlines()
    assert table[1].split() == ["task", "load", *benchmark.STAGES, "other", "total"]
    res = json.loads(path.read_text())
    assert set(res["load_seconds"]) == {"C", "A", "W", "D"}
    for task in ("C->A", "W->D"):
        r = res["tasks"][task]["iterative"]
        assert set(r["stages"]) <= set(benchmark.STAGES) and {"B", "solves", "1-NN"} <= set(r["stages"])
        assert sum(r["stages"].values()) <= r["seconds"] + 1e-3
        assert r["cpu_seconds"] > 0                       # one task at a time: its CPU seconds
        row = next(line.split() for line in table if line.startswith(task))
        assert float(row[-1]) == pytest.approx(r["seconds"], abs=0.0015)   # the task's own seconds
    assert next(line for line in table if line.startswith("share"))
    assert res["summary"]["iterative"]["total_cpu_seconds"] == pytest.approx(
        sum(res["tasks"][t]["iterative"]["cpu_seconds"] for t in ("C->A", "W->D")), abs=0.01)


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
    tca_row = next(line for line in out.splitlines() if line.startswith("tca"))
    assert float(tca_row.split()[3]) > 0.2     # the mean shift is gone after TCA
    for argv, message in [([str(tmp_path / "a.npy"), str(tmp_path / "c.csv")], "3 features"),
                          ([str(tmp_path / "a.npy")], "two feature files"),
                          ([str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--adapt", "jda"],
                           "needs source labels")]:
        with pytest.raises(SystemExit) as exit_info:
            distance.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


@needs_data
def test_benchmark_on_two_small_tasks_writes_json(capsys, tmp_path):
    path = tmp_path / "jda.json"
    assert benchmark.main(["--data-dir", DATA_DIR, "--method", "jda", "--tasks", "W->D,D->W",
                           "--json", str(path)]) == 0
    res = json.loads(path.read_text())
    tasks = {t: v["iterative"] for t, v in res["tasks"].items()}
    assert res["method"] == "jda" and set(tasks) == {"W->D", "D->W"}
    # as the reference protocol gives (README table)
    assert tasks["W->D"]["accuracy"] == pytest.approx(85.35, abs=0.005)
    assert tasks["D->W"]["accuracy"] == pytest.approx(84.75, abs=0.005)
    assert res["summary"]["iterative"]["average"] == pytest.approx(85.05, abs=0.005)
    assert "avg" in capsys.readouterr().out


@needs_data
def test_distance_between_two_domains_before_and_after_adaptation(capsys):
    rc = distance.main(["--data-dir", DATA_DIR, "--source", "D", "--target", "W",
                        "--adapt", "none,jda", "--permutations", "30", "--max-samples", "120"])
    out = capsys.readouterr().out
    assert rc == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.split() and line.split()[0] in ("none", "jda")}
    assert float(rows["none"][4]) == pytest.approx(63.39, abs=0.005)   # 1-NN, no adaptation
    assert float(rows["jda"][4]) == pytest.approx(84.75, abs=0.005)


def test_an_existing_json_is_refused_before_the_table_is_computed(tmp_path, capsys):
    """Results are never overwritten, and a --json that cannot be written is found in a second, not after
    the whole table (before: overwritten silently, or the run lost at its end)."""
    data = fake_office_caltech(tmp_path, seed=1)
    existing = tmp_path / "kept.json"
    existing.write_text("{}")
    (tmp_path / "a-file").write_text("x")
    for path, message in ((existing, "already exists"), (tmp_path / "a-file" / "x.json", "cannot write")):
        with pytest.raises(SystemExit) as exit_info:
            benchmark.main(["--data-dir", data, "--method", "jda", "--tasks", "C->A", "--json", str(path)])
        assert exit_info.value.code == 2
        err = capsys.readouterr()
        assert message in err.err and "->" not in err.out      # no task was run
    assert existing.read_text() == "{}"
