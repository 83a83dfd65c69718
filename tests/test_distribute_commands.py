"""--distribute and the cache command through the real commands: flowers.train on two workers, its cache filled by two."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from flowers_synthetic import make_flower_folder
from test_common_distribute import free_ports

from flowers import prepare

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32", "--batch-size", "8",
        "--epochs", "2", "--dropout", "0"]  # no dropout: its masks are drawn per replica


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("distribute")
    source = make_flower_folder(root / "photos", {"daisy": 8, "roses": 8, "tulips": 8}, seed=5)
    prepare.main(["--from", str(source), "--data-dir", str(root / "prepared"), "--validation-per-class", "3"])
    return root


def start(arguments, env=None, module="flowers.train"):
    return subprocess.Popen([sys.executable, "-m", module, *arguments], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def fill(arguments):
    """``python -m common.features --for flowers.train ...``: the cache command, in a process of its own."""
    return start(["--for", "flowers.train", *arguments], module="common.features")


def output_of(process, timeout=400):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-3000:]
    return output


def fingerprint(output):
    return re.search(r"weights fingerprint: (\w+)", output).group(1)


def test_two_workers_train_like_one_process_and_only_the_chief_writes(prepared):
    common = ["--data-dir", str(prepared / "prepared"), "--cache-dir", str(prepared / "cache"),
              "--finetune-epochs", "1", *TINY]
    output_of(start([*common, "--output-dir", str(prepared / "one")]))
    ports = free_ports(2)
    cluster = {"worker": [f"localhost:{port}" for port in ports]}
    workers = [
        start([*common, "--distribute", "multi-worker", "--output-dir", str(prepared / "multi")],
              env={**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
        for i in range(2)
    ]
    outputs = [output_of(worker) for worker in workers]
    assert fingerprint(outputs[0]) == fingerprint(outputs[1])  # identical weights on both workers
    one = json.loads((prepared / "one" / "metrics.json").read_text())
    multi = json.loads((prepared / "multi" / "metrics.json").read_text())
    config = json.loads((prepared / "multi" / "config.json").read_text())
    assert (config["distribute"], config["replicas"], config["workers"]) == ("multi-worker", 2, 2)
    # Both stages, 45 training images in batches of 8 (short last batches), agree with one process
    # to float round-off of the all-reduce.
    for stage in ("stage2", "stage3"):
        assert multi[stage]["val_accuracy"] == pytest.approx(one[stage]["val_accuracy"], abs=1e-6)
        assert multi[stage]["val_loss"] == pytest.approx(one[stage]["val_loss"], rel=1e-4)
    history = {name: (prepared / name / "history.csv").read_text().splitlines() for name in ("one", "multi")}
    assert len(history["one"]) == len(history["multi"]) == 4  # header + 2 + 1 epochs
    # the second worker wrote into a temporary folder, removed at the end; only the chief's folder stays
    worker_folder = Path(re.search(r"wrote (\S+)", outputs[1].split("validation accuracy")[-1]).group(1))
    assert not worker_folder.exists()
    assert sorted(p.name for p in prepared.iterdir()) == ["cache", "multi", "one", "photos", "prepared"]


def cache_entries(cache: Path) -> dict[str, np.ndarray]:
    entries = {}
    for shard in sorted(cache.rglob("shard-*.npz")):
        with np.load(shard) as contents:
            for key, feature in zip(contents["keys"], contents["features"], strict=False):
                assert str(key) not in entries, f"{key} stored twice"
                entries[str(key)] = feature
    return entries


def test_two_shard_processes_fill_the_cache_exactly_as_one(prepared, capsys):
    """The cache command's parts are disjoint and cover the data; flowers.train after them computes nothing.

    With --finetune-epochs the cache also holds stage 3's cut maps (another
    namespace): the command decides that from the lesson's own flags.
    """
    common = ["--data-dir", str(prepared / "prepared"), "--finetune-epochs", "1", *TINY]
    one = output_of(fill([*common, "--cache-dir", str(prepared / "cache-one"), "--shard", "0/1"]))
    assert "shard 0/1: 54 features computed" in one  # 45 training + 9 validation images
    assert "1x1x160 = 160 values per image" in one     # the block_14_expand cut maps are cached too
    both = [fill([*common, "--cache-dir", str(prepared / "cache-two"), "--shard", f"{i}/2"]) for i in range(2)]
    counts = [int(re.search(r"shard \d/2: (\d+) features computed", output_of(p)).group(1)) for p in both]
    assert sum(counts) == 54 and min(counts) > 0
    single, parallel = cache_entries(prepared / "cache-one"), cache_entries(prepared / "cache-two")  # none twice
    assert sorted(single) == sorted(parallel) and len(single) == 54
    for key, feature in single.items():
        assert np.allclose(parallel[key], feature, atol=1e-5)
    again = output_of(fill([*common, "--cache-dir", str(prepared / "cache-two"), "--shard", "1/2"]))
    assert "shard 1/2: 0 features computed" in again
    # the run that trains finds everything cached, and the lesson has no --shard of its own any more
    trained = output_of(start([*common, "--cache-dir", str(prepared / "cache-two"),
                               "--output-dir", str(prepared / "after-shards")]))
    assert "bottlenecks: 0 computed, 54 read" in trained
    from flowers import train

    with pytest.raises(SystemExit):
        train.parse_args(["--shard", "0/2"])
    assert "unrecognized arguments: --shard" in capsys.readouterr().err
