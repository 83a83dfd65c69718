"""One prediction convention: both predict commands take the same arguments and print the same table."""
import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def run_dir(tmp_path):
    """A run folder as any training command leaves it: model.keras (pixels in) and labels.txt."""
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3), name="pixels")
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    run = tmp_path / "run"
    run.mkdir()
    keras.Model(inputs, outputs).save(run / "model.keras")
    (run / "labels.txt").write_text("daisy\nroses\ntulips\n")
    return run


def test_both_predict_commands_print_the_same_table(run_dir, tmp_path, capsys):
    from cats_dogs import predict as cats_dogs_predict
    from flowers import predict as flowers_predict

    images = []
    for name, colour in (("red.png", (220, 30, 30)), ("blue.png", (30, 30, 220))):
        Image.new("RGB", (20, 24), colour).save(tmp_path / name)
        images.append(str(tmp_path / name))
    argv = ["--run-dir", str(run_dir), "--top-k", "2", *images]
    outputs, results = [], []
    for command in (cats_dogs_predict, flowers_predict):
        results.append(command.main(argv))
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1] and results[0] == results[1]
    lines = outputs[0].splitlines()
    assert lines[1].split() == ["image", "rank", "class", "probability"]
    assert len(lines) == 2 + 2 * 2  # model line, header, two rows for each image
    for result in results[0]:
        ranked = sorted(result["probabilities"].items(), key=lambda item: -item[1])
        assert result["top_k"] == ranked[:2] and result["class"] == ranked[0][0]
        assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    # The two colours give different probabilities: each image went through the model on its own pixels.
    assert not np.allclose(list(results[0][0]["probabilities"].values()), list(results[0][1]["probabilities"].values()))


def test_top_k_must_be_positive(run_dir, tmp_path, capsys):
    from flowers import predict

    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--run-dir", str(run_dir), "--top-k", "0", str(tmp_path / "x.jpg")])
    assert exit_info.value.code == 2
    assert "--top-k must be at least 1" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["cats_dogs", "flowers"])
def test_a_run_folder_before_the_images_is_the_model_used(command, run_dir, tmp_path, capsys, monkeypatch):
    """``predict RUN_DIR IMAGE`` answers with that run, the same as ``--run-dir``; a folder among the images is refused.

    Before, the folder was skipped as an unreadable image and the newest default run answered (none here: an error).
    """
    import importlib

    predict = importlib.import_module(f"{command}.predict")
    monkeypatch.chdir(tmp_path)          # no default runs/ here: only the named run can answer
    image = tmp_path / "red.png"
    Image.new("RGB", (20, 24), (220, 30, 30)).save(image)
    leading = predict.main([str(run_dir), str(image)])
    leading_out = capsys.readouterr().out
    flagged = predict.main(["--run-dir", str(run_dir), str(image)])
    assert leading == flagged and leading_out == capsys.readouterr().out
    assert leading_out.splitlines()[0] == f"model: {run_dir / 'model.keras'}"
    for argv, message in (([str(image), str(run_dir)], "is a run folder"),
                          ([str(run_dir), str(tmp_path), str(image)], "is a folder, not an image file"),
                          ([str(run_dir)], "name the images to predict")):
        with pytest.raises(SystemExit) as exit_info:
            predict.main(argv)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
