"""flowers.prepare: split first, then augment the training photos only; the user's folder is only read."""
from __future__ import annotations

import json

import numpy as np
import pytest
from flowers_synthetic import make_flower_folder, pixels, snapshot

from common.data import UnreadableImageWarning
from flowers import prepare


def same_picture(a: np.ndarray, b: np.ndarray) -> bool:
    # JPEG re-encoding moves pixels a little; different noise images differ by ~40 on average.
    return a.shape == b.shape and float(np.abs(a - b).mean()) < 6.0


def views_of(image: np.ndarray) -> list[np.ndarray]:
    return [image, image[:, ::-1], np.rot90(image)]


def test_split_before_augment_no_view_of_a_validation_image_is_trained_on(tmp_path, capsys):
    source = make_flower_folder(tmp_path / "photos", {"daisy": 9, "roses": 8, "tulips": 10})
    before = snapshot(source)
    out = tmp_path / "prepared"
    prepare.main(["--from", str(source), "--data-dir", str(out), "--validation-per-class", "3", "--seed", "1"])
    assert "wrote" in capsys.readouterr().out

    for name, total in (("daisy", 9), ("roses", 8), ("tulips", 10)):
        validation = sorted((out / "validation" / name).glob("*.jpg"))
        train = sorted((out / "train" / name).glob("*.jpg"))
        views = sorted((out / "train_views" / name).glob("*.jpg"))
        assert len(validation) == 3 and len(train) == total - 3
        assert len(views) == 2 * len(train)
        # The views are made from the training originals only, by name ...
        assert {v.name.rsplit("_", 1)[0] for v in views} == {t.stem for t in train}
        # ... and by content: no validation image, nor a flip or rotation of one, is in training.
        trained = [pixels(p) for p in train + views]
        for held_out in validation:
            for view in views_of(pixels(held_out)):
                assert not any(same_picture(view, seen) for seen in trained), held_out.name
        # The detector itself works: every training original's flip is found among its views.
        for original in train:
            flipped = pixels(original)[:, ::-1]
            assert any(same_picture(flipped, pixels(v)) for v in views)

    record = json.loads((out / "split.json").read_text())
    assert record["seed"] == 1 and len(record["files"]["validation"]) == 9
    assert snapshot(source) == before  # the user's folder is untouched

    # The same command again changes nothing; a different split into the same folder is refused.
    prepare.main(["--from", str(source), "--data-dir", str(out), "--validation-per-class", "3", "--seed", "1"])
    assert "nothing to do" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--from", str(source), "--data-dir", str(out), "--validation-per-class", "3", "--seed", "2"])
    assert exit_info.value.code == 2
    assert "different split" in capsys.readouterr().err


def test_split_is_seeded(tmp_path):
    source = make_flower_folder(tmp_path / "photos", {"a": 6, "b": 6})
    records = []
    for run, seed in (("one", "0"), ("two", "0"), ("other", "1")):
        prepare.main(["--from", str(source), "--data-dir", str(tmp_path / run), "--validation-per-class", "2",
                      "--seed", seed])
        records.append(json.loads((tmp_path / run / "split.json").read_text())["files"])
    assert records[0] == records[1]                                   # the same seed, the same split
    assert records[0]["validation"] != records[2]["validation"]       # another seed, another split


def test_class_with_too_few_images_is_a_clear_error(tmp_path, capsys):
    source = make_flower_folder(tmp_path / "photos", {"daisy": 8, "roses": 2})
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--from", str(source), "--data-dir", str(tmp_path / "out"), "--validation-per-class", "2"])
    assert exit_info.value.code == 2
    assert "too few" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.jpg"))


def test_unreadable_images_are_skipped_and_named(tmp_path):
    source = make_flower_folder(tmp_path / "photos", {"daisy": 5, "roses": 5})
    (source / "daisy" / "empty.jpg").write_bytes(b"")
    (source / "roses" / "notes.jpg").write_text("not a picture")
    before = snapshot(source)
    with pytest.warns(UnreadableImageWarning, match="empty.jpg") as caught:
        prepare.main(["--from", str(source), "--data-dir", str(tmp_path / "out"), "--validation-per-class", "1"])
    assert "notes.jpg" in str(caught[0].message)
    written = {p.name for p in (tmp_path / "out").rglob("*.jpg")}
    assert not {"empty.jpg", "notes.jpg", "empty_flip.jpg", "notes_rot90.jpg"} & written
    record = json.loads((tmp_path / "out" / "split.json").read_text())
    assert sorted(item[0].rsplit("/", 1)[1] for item in record["skipped"]) == ["empty.jpg", "notes.jpg"]
    assert snapshot(source) == before


def test_output_inside_the_source_folder_is_refused(tmp_path, capsys):
    source = make_flower_folder(tmp_path / "photos", {"a": 4, "b": 4})
    before = snapshot(source)
    with pytest.raises(SystemExit):
        prepare.main(["--from", str(source), "--data-dir", str(source / "prepared")])
    assert "never written to" in capsys.readouterr().err
    assert snapshot(source) == before


def test_offline_download_names_the_file_and_where_to_put_it(tmp_path, monkeypatch, capsys):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--data-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "flower_photos.tgz" in message and "datasets" in message and "--from" in message


def test_flower17_is_placed_where_the_exercise_reads_it(tmp_path, monkeypatch, capsys):
    """The README's `python -m flowers.flower17 --data-dir data/flower17` had no command that made that folder."""
    from flowers_synthetic import make_flower17

    from common.flower_sets import find_images

    raw = make_flower17(tmp_path / "downloaded", classes=2, per_class=5)
    (raw / "jpg" / "README.txt").write_text("not a photo")
    before = snapshot(raw)
    monkeypatch.chdir(tmp_path)
    assert prepare.main(["--flower17", "--from", str(raw)]) == 10
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "next: python -m flowers.flower17 --data-dir data/flower17"
    placed = tmp_path / "data" / "flower17" / "jpg"
    assert find_images(tmp_path / "data" / "flower17") == placed
    assert sorted(p.name for p in placed.iterdir()) == [f"image_{n:04d}.jpg" for n in (*range(1, 6), *range(81, 86))]
    assert snapshot(raw) == before
    # again: nothing new; from the archive in Keras's cache when no --from is given
    monkeypatch.setattr(prepare, "download_flower17", lambda alternative: raw / "jpg")
    assert prepare.main(["--flower17", "--data-dir", str(tmp_path / "elsewhere")]) == 10
    assert capsys.readouterr().out.strip().endswith(f"--data-dir {tmp_path / 'elsewhere'}")


def test_flower17_offline_names_the_archive_and_where_to_put_it(tmp_path, monkeypatch, capsys):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure on https://www.robots.ox.ac.uk/...: None -- [Errno -3] name resolution")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--flower17", "--data-dir", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err
    assert "17flowers.tgz" in message and "datasets" in message and "--flower17 --from" in message
    with pytest.raises(SystemExit):
        prepare.main(["--flower17", "--from", str(tmp_path), "--data-dir", str(tmp_path / "out")])
    assert "holds no jpg/image_0001.jpg" in capsys.readouterr().err


def test_every_flower17_command_of_the_readmes_has_its_data_made_first():
    """A README command that reads data/flower17 comes after the command that writes it, in the same README."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for readme in [root / "README.md", *root.glob("*/README.md")]:
        text = readme.read_text()
        for match in re.finditer(r"python -m \S+ [^\n`]*--data-dir data/flower17\b", text):
            made = text.find("python -m flowers.prepare --flower17")
            assert 0 <= made < match.start(), f"{readme.name}: {match.group(0)}"
