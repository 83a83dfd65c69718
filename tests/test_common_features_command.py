"""python -m common.features: a lesson's feature cache filled in disjoint parts, then found whole by the lesson."""
from __future__ import annotations

import pytest

from common.features.__main__ import main, parse_args

TINY = ["--backbone", "vgg16", "--weights", "none", "--image-size", "32"]


@pytest.mark.parametrize("text", ["2/2", "-1/2", "0/0", "1", "a/b", "0/2/3"])
def test_a_bad_shard_is_refused_by_the_parser(text, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--for", "flowers.train", "--shard", text])
    assert exit_info.value.code == 2 and "--shard" in capsys.readouterr().err
    own, lesson = parse_args(["--for", "flowers.train", "--shard", "1/2", "--backbone", "mobilenet_v2"])
    assert str(own.shard) == "1/2" and lesson.backbone == "mobilenet_v2" and lesson.image_size == 224


def test_the_lesson_parses_its_own_flags_with_its_own_defaults(capsys):
    _, flowers = parse_args(["--for", "flowers.train"])
    assert (flowers.backbone, flowers.image_size, flowers.data_dir) == ("inception_v3", 299, "data/flowers")
    _, cats = parse_args(["--for", "cats_dogs.bottleneck"])
    assert (cats.backbone, cats.image_size) == ("vgg16", 150)
    with pytest.raises(SystemExit) as exit_info:  # the lesson's own checks
        parse_args(["--for", "flowers.train", "--finetune-epochs", "1", "--unfreeze-from", "none"])
    assert exit_info.value.code == 2 and "leaves nothing of the base to fine-tune" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_args(["--for", "segmentation.train"])
    assert "invalid choice" in capsys.readouterr().err


def test_cats_dogs_bottleneck_after_two_parts_computes_nothing(cats_dogs_dir, tmp_path, capsys):
    from cats_dogs import bottleneck

    flags = ["--data-dir", str(cats_dogs_dir), "--cache-dir", str(tmp_path / "cache"), *TINY]
    parts = [main(["--for", "cats_dogs.bottleneck", "--shard", f"{i}/2", *flags]) for i in range(2)]
    assert sum(part["computed"] for part in parts) == 24 and min(part["computed"] for part in parts) > 0
    assert parts[0]["cache"] == parts[1]["cache"]  # one namespace: what the lesson will look for
    assert main(["--for", "cats_dogs.bottleneck", *flags])["computed"] == 0
    metrics = bottleneck.main([*flags, "--epochs", "1", "--output-dir", str(tmp_path / "run")])
    assert metrics["features_computed"] == 0 and metrics["features_reused"] == 24


def test_an_unprepared_folder_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--for", "flowers.train", "--data-dir", str(tmp_path), *TINY])
    assert exit_info.value.code == 2 and "has no train/ and validation/" in capsys.readouterr().err
