"""flowers.train's counts agree with each other, say what they count, and come in the order things happen.

Before, on the real split: "8010 training images", then a bar of 0/8004 (train only, duplicates left out
unsaid), then "9003 computed, 1 read from the cache" on an empty cache (a validation photo whose bytes were
also a training photo's), and the weights fingerprint once printed after "wrote ...".
"""
from __future__ import annotations

import re
import shutil

from flowers_synthetic import make_flower_folder

from common import progress
from flowers import prepare, train

TINY = ["--backbone", "mobilenet_v2", "--weights", "none", "--image-size", "32", "--batch-size", "8", "--epochs", "1"]


def lines_in_order(out: str, *patterns: str) -> list[re.Match]:
    """The first line matching each pattern, each after the one before."""
    found, start = [], 0
    for pattern in patterns:
        match = re.compile(pattern, re.M).search(out, start)
        assert match, f"{pattern!r} not found after position {start} in:\n{out}"
        found.append(match)
        start = match.end()
    return found


def test_counts_and_their_order(tmp_path, monkeypatch, capsys):
    source = make_flower_folder(tmp_path / "photos", {"daisy": 6, "roses": 6, "tulips": 6})
    data = tmp_path / "prepared"
    prepare.main(["--from", str(source), "--data-dir", str(data), "--validation-per-class", "2"])
    # flower_photos' kind of duplicates: a photo twice in train/, and a validation photo that is a training one
    shutil.copyfile(data / "train" / "roses" / "roses_000.jpg", data / "train" / "roses" / "roses_copy.jpg")
    daisy = sorted((data / "train" / "daisy").glob("*.jpg"))[0]
    shutil.copyfile(daisy, data / "validation" / "daisy" / "daisy_copy.jpg")
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)
    monkeypatch.setattr(progress, "interactive", lambda: False)
    capsys.readouterr()

    run = train.main(["--data-dir", str(data), "--output-dir", str(tmp_path / "run"), "--cache-dir",
                      str(tmp_path / "cache"), *TINY])
    out = capsys.readouterr().out
    # 3 x 4 training originals + the copy, 2 views each of the 12, 3 x 2 validation originals + the copy
    lines_in_order(
        out,
        r"^37 training images \(13 originals, 24 views\), 7 validation images$",
        r"^bottlenecks: 44 images, 42 distinct \(2 byte-for-byte copies of another image, computed once\); "
        r"0 already in the cache \S+, 42 to compute$",
        r"^bottlenecks: \d+/42 images",
        r"^bottlenecks: 42/42 images",
        r"^bottlenecks: 42 computed, 0 read from the cache",
        r"^Epoch 1/1",
        r"^saved model\.keras \([\d,]+ weights\), weights fingerprint: \w+$",
        r"^stage2: val_accuracy",
        rf"^wrote {re.escape(str(run.resolve()))}$",
    )
    assert not re.search(r"^bottlenecks \(", out, re.M)   # one bar over both splits, not one per split

    again = train.main(["--data-dir", str(data), "--output-dir", str(tmp_path / "run2"), "--cache-dir",
                        str(tmp_path / "cache"), *TINY])
    assert again.is_dir()
    out = capsys.readouterr().out
    lines_in_order(out, r"; 42 already in the cache \S+, 0 to compute$", r"^bottlenecks: 0 computed, 42 read from the cache")
