"""--distribute: two replicas give one device's result; workers agree; only the chief writes."""
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("distribute_tiny.py")
# Float round-off of an all-reduce against a single device's sum; a different
# batch order or a missing gradient scale moves the weights by 1e-2 or more.
TOLERANCE = 1e-5


def run_tiny(mode, out, *extra, env=None):
    return subprocess.Popen([sys.executable, str(SCRIPT), mode, str(out), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process, timeout=240):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return output


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for item in sockets:
        item.bind(("localhost", 0))
    ports = [item.getsockname()[1] for item in sockets]
    for item in sockets:
        item.close()
    return ports


def load(run):
    return np.load(run / "weights.npy"), json.loads((run / "history.json").read_text())


@pytest.mark.parametrize("head", [[], ["--binary"]], ids=["softmax", "one-sigmoid"])
def test_mirrored_on_two_logical_cpus_ends_with_one_devices_weights(tmp_path, head):
    """The one-sigmoid head (cats vs dogs: labels (N,) against outputs (N, 1)) crashed the replicated step."""
    finished(run_tiny("none", tmp_path / "none", *head))
    finished(run_tiny("mirrored", tmp_path / "mirrored", "--logical-cpus", "2", *head))
    single, single_history = load(tmp_path / "none")
    mirrored, mirrored_history = load(tmp_path / "mirrored")
    assert mirrored_history["replicas"] == 2 and single_history["replicas"] == 1
    assert np.abs(single - mirrored).max() < TOLERANCE
    assert single_history["val_loss"][-1] < single_history["val_loss"][0]  # it learned something
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert np.allclose(single_history[key], mirrored_history[key], atol=1e-4), key


def test_two_workers_on_localhost_agree_and_only_the_chief_writes(tmp_path):
    finished(run_tiny("none", tmp_path / "none"))
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    workers = []
    for index in range(2):
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        workers.append(run_tiny("multi-worker", tmp_path / "multi", env=env))
    outputs = [finished(worker) for worker in workers]
    chief, chief_history = load(tmp_path / "multi")
    assert chief_history["chief"] and chief_history["workers"] == 2 and chief_history["replicas"] == 2
    # the second worker wrote into a temporary folder and removed it
    temporary = Path(re.search(r"worker 1 wrote (\S+)", outputs[1]).group(1))
    assert not temporary.exists() and not temporary.is_relative_to(tmp_path)
    assert f"worker 1: the chief writes the run folder; this worker's temporary copy {temporary} was removed" \
        in outputs[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "multi", "none"]
    single, single_history = load(tmp_path / "none")
    assert np.abs(single - chief).max() < TOLERANCE
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert np.allclose(single_history[key], chief_history[key], atol=1e-4), key


def test_multi_worker_without_tf_config_is_a_one_line_error(monkeypatch):
    from common import distribute
    from common.errors import UserError

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UserError, match="needs TF_CONFIG"):
        distribute.setup("multi-worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(UserError, match="TF_CONFIG is not valid"):
        distribute.setup("multi-worker")


@pytest.mark.parametrize("config", [
    '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 5}}',
    '{"cluster": {"worker": "localhost:1"}, "task": {"type": "worker", "index": 0}}',
    '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "ps", "index": 0}}',
])
def test_a_tf_config_that_tensorflow_rejects_is_a_one_line_error(config):
    """Well-formed JSON that TensorFlow's cluster checks refuse was a ValueError / TypeError traceback."""
    code = ("from common import distribute\nfrom common.errors import main_guard\n"
            "main_guard(lambda: distribute.setup('multi-worker'))()\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "TF_CONFIG": config}, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 2, result.stderr[-2000:]
    assert "error: TF_CONFIG is not valid" in result.stderr and "Traceback" not in result.stderr
