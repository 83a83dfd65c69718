"""TensorFlow's start-up messages: hidden by default on every command, shown with --verbose (common.startup)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.startup import is_start_up_noise

ROOT = Path(__file__).resolve().parents[1]

#: lines a command printed before its first own line on TensorFlow 2.21 without a GPU (measured)
MEASURED = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796661769.232275    1520 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders.",
    "I0000 00:00:1796661769.233255    1520 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU "
    "will not be used.",
    "E0000 00:00:1796662231.997971    3609 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: "
    "Failed call to cuInit: UNKNOWN ERROR (303)",
]


def command(*argv) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", *argv], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600)


def tensorflow_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if is_start_up_noise(line)]


def test_the_measured_start_up_lines_are_noise_and_nothing_else_is():
    assert all(is_start_up_noise(line) for line in MEASURED)
    for kept in ("warning: skipped 1 unreadable image file(s):",
                 "E0000 00:00:1796662231.997971    3609 bfc_allocator.cc:1] Out of memory while trying to allocate",
                 "Traceback (most recent call last):", "UserWarning: something a user should read"):
        assert not is_start_up_noise(kept), kept


def test_a_training_run_prints_no_tensorflow_start_up_line(cats_dogs_dir, tmp_path):
    """Before: five lines (the oneDNN and CUDA banners twice, then cuInit) above the command's first own line."""
    result = command("cats_dogs.bottleneck", "--data-dir", str(cats_dogs_dir), "--cache-dir", str(tmp_path / "cache"),
                     "--output-dir", str(tmp_path / "run"), "--weights", "none", "--image-size", "32",
                     "--epochs", "1", "--batch-size", "4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("run folder: ")
    assert not tensorflow_lines(result.stderr), result.stderr
    assert "oneDNN" not in result.stderr and "cuInit" not in result.stderr


#: commands that never load TensorFlow (nothing to hide); every other command imports common.startup first
NO_TENSORFLOW = {"mmd/scoring.py"}


def test_every_command_imports_common_startup_before_anything_else():
    """The hook only works if it is in place before TensorFlow's first import; the subprocess test below runs
    three commands (each costs a TensorFlow start), this one reads the import order of all of them."""
    import ast

    commands = [path for path in sorted(ROOT.glob("*/*.py")) + sorted(ROOT.glob("*/*/__main__.py"))
                if path.parts[len(ROOT.parts)] not in {"tests", "labs"}
                and ('__name__ == "__main__"' in path.read_text() or path.name == "__main__.py")]
    assert len(commands) >= 20
    late = []
    for path in commands:
        if str(path.relative_to(ROOT)) in NO_TENSORFLOW:
            continue
        first = next(statement for statement in ast.parse(path.read_text()).body
                     if isinstance(statement, (ast.Import, ast.ImportFrom))
                     and not (isinstance(statement, ast.ImportFrom) and statement.module == "__future__"))
        if not (isinstance(first, ast.Import) and first.names[0].name == "common.startup"):
            late.append(str(path.relative_to(ROOT)))
    assert not late, late


@pytest.mark.parametrize("module", ["cats_dogs.bottleneck", "adaptation.train", "mmd.distance"])
def test_verbose_shows_them(module):
    quiet, verbose = command(module, "--help"), command(module, "--help", "--verbose")
    assert quiet.returncode == verbose.returncode == 0
    assert "--verbose" in quiet.stdout
    assert not tensorflow_lines(quiet.stderr), quiet.stderr
    assert tensorflow_lines(verbose.stderr), verbose.stderr
