"""The newcomer's slips get the answer they need (issue: "what a newcomer hit"): a near-miss layer name, a
--data-dir one folder too deep, a task or direction whose '->' the shell ate."""
from __future__ import annotations

import pytest
from conftest import draw_folder

from common.errors import UserError


def test_a_mistyped_layer_gets_did_you_mean():
    from common.backbones import build_base, freeze_below, layer_index

    base = build_base("mobilenet_v2", "none", 32)
    with pytest.raises(UserError, match=r"no layer named 'block14_expand' \(--unfreeze-from\); did you mean "
                                        r"block_14_expand"):
        layer_index(base, "block14_expand")
    with pytest.raises(UserError, match="did you mean block_16_project"):
        freeze_below(base, "block16_project")
    with pytest.raises(UserError, match="its layers are named like"):   # nothing close: what names look like
        layer_index(base, "fc7")


def run_command(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("inside", ["train", "validation", "train/cats"])
def test_cats_dogs_data_dir_one_level_too_deep_names_the_parent(cats_dogs_dir, tmp_path, capsys, inside):
    from cats_dogs import bottleneck

    err = run_command(bottleneck.main, ["--data-dir", str(cats_dogs_dir / inside), "--cache-dir", str(tmp_path / "c"),
                                        "--output-dir", str(tmp_path / "run"), "--weights", "none"], capsys)
    assert f"point --data-dir at {cats_dogs_dir}, which holds train/" in err, err


def test_flowers_train_data_dir_inside_the_prepared_folder(tmp_path, capsys, monkeypatch):
    from flowers import train

    monkeypatch.chdir(tmp_path)   # the run folder it opens (and takes back) goes under ./runs

    prepared = tmp_path / "prepared"
    for part in ("train", "validation"):
        draw_folder(prepared / part, classes=("daisy", "roses"), count=2)
    err = run_command(train.main, ["--data-dir", str(prepared / "train"), "--weights", "none"], capsys)
    assert f"point --data-dir at {prepared}, which holds train/" in err and "flowers.prepare" not in err


def test_segmentation_data_dir_inside_the_data_set(tmp_path, capsys):
    from segmentation_synthetic import make_dataset_folder

    from segmentation import train

    data = make_dataset_folder(tmp_path / "lv", train_per_group=1, test_patients=1, frames=1, size=64)
    err = run_command(train.main, ["--data-dir", str(data / "train"), "--weights", "none"], capsys)
    assert f"point --data-dir at {data}, which holds train/" in err, err


def test_a_class_folder_given_as_the_folder_of_classes(tmp_path):
    from common.data import load_image_folder

    root = draw_folder(tmp_path / "photos", classes=("daisy", "roses"), count=2)
    with pytest.raises(UserError, match=rf"looks like one class's folder; point at the folder above it, {root}"):
        load_image_folder(root / "daisy", description="source folder")


def test_mmd_tasks_without_the_shells_arrow():
    from mmd.data import parse_tasks
    from mmd.validation import InputError

    assert parse_tasks("C-A,CtoW,dtoa") == ["C->A", "C->W", "D->A"]
    with pytest.raises(InputError, match=r"cut at '>' by the shell .* write C-X or CtoX"):
        parse_tasks("C-")   # what `--tasks C->A` unquoted passes (and a file named A holds the output)


def test_adaptation_directions_without_the_shells_arrow(tmp_path, capsys):
    from adaptation import benchmark

    args = benchmark.parse_args(["--directions", "flower_photos-flower17,flower17->flower_photos"])
    assert args.directions == ["flower_photos->flower17", "flower17->flower_photos"]
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--directions", "flower_photos-"])
    assert "cut at '>' by the shell" in capsys.readouterr().err
