"""deploy.export: every format written, each measured against the Keras model on the run's validation images."""
import json

import keras
import numpy as np
import pytest
from deploy_tiny import CLASSES, SIZE, make_run

from common.data import decode_image, load_image_folder
from deploy import export as export_command
from deploy import formats, runtime


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(run folder, export folder, parity record) of one export of every format."""
    run = make_run(tmp_path_factory.mktemp("deploy_export"))
    parity = export_command.main(["--run-dir", str(run), "--batch-size", "4"])
    return run, run / "export", parity


def test_every_format_is_written_beside_the_labels_and_the_preprocessing(exported):
    run, folder, _ = exported
    for name in ("saved_model/saved_model.pb", "model.tflite", "model_int8.tflite", "model.onnx",
                 "labels.txt", "preprocessing.json", "parity.json"):
        assert (folder / name).is_file(), name
    assert (folder / "labels.txt").read_text().split() == list(CLASSES)
    manifest = json.loads((folder / "preprocessing.json").read_text())
    assert manifest["image_size"] == SIZE and manifest["backbone"] == "mobilenet_v2"
    assert manifest["input"]["range"] == [0, 255] and manifest["input"]["channels"] == "RGB"
    assert "antialias" in manifest["resize"] and "softmax" in manifest["output"]
    assert set(manifest["formats"]) == {"saved_model", "tflite", "tflite_int8", "onnx"}


def test_parity_is_measured_on_the_runs_validation_images(exported):
    run, folder, parity = exported
    assert json.loads((folder / "parity.json").read_text()) == parity
    validation = load_image_folder(run.parent / "data" / "validation", list(CLASSES))
    assert parity["n_images"] == len(validation) == 15 and not parity["left_out"]
    # the reference accuracy is the Keras model's own on those images
    model = keras.saving.load_model(run / "model.keras")
    pixels = np.stack([np.asarray(decode_image(path, (SIZE, SIZE))) for path in validation.paths])
    reference = model.predict(pixels, verbose=0)
    assert parity["keras_accuracy"] == pytest.approx(np.mean(reference.argmax(1) == validation.labels))
    formats = parity["formats"]
    for name in runtime.FLOAT_FORMATS:
        assert formats[name]["max_abs_diff"] <= 1e-4 and formats[name]["accuracy_change"] == 0
    assert parity["float_formats_within_tolerance"] is True
    # int8 weights really change the probabilities (a measurement, not a copy of the float model's)
    assert 1e-4 < formats["tflite_int8"]["max_abs_diff"] < 0.5
    change = formats["tflite_int8"]["accuracy"] - parity["keras_accuracy"]
    assert formats["tflite_int8"]["accuracy_change"] == pytest.approx(change)


def test_sizes_are_the_files_sizes(exported):
    run, folder, parity = exported
    sizes = parity["sizes_bytes"]
    assert sizes["model.keras"] == (run / "model.keras").stat().st_size
    assert sizes["tflite"] == (folder / "model.tflite").stat().st_size == parity["formats"]["tflite"]["size_bytes"]
    assert sizes["onnx"] == (folder / "model.onnx").stat().st_size
    assert sizes["saved_model"] == sum(p.stat().st_size for p in (folder / "saved_model").rglob("*") if p.is_file())
    assert sizes["tflite_int8"] < 0.6 * sizes["tflite"]  # int8 weights: about a quarter of the float weights


def test_each_format_loads_back_and_answers_like_the_keras_model(exported):
    run, folder, _ = exported
    model = keras.saving.load_model(run / "model.keras")
    for batch in (1, 3):  # TFLite's input is resized to each batch
        pixels = np.random.default_rng(batch).uniform(0, 255, (batch, SIZE, SIZE, 3)).astype("float32")
        expected = model.predict(pixels, verbose=0)
        for name in runtime.FLOAT_FORMATS:
            got = runtime.load_format(folder, name)(pixels)
            assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-4, name


def test_an_upload_is_decoded_as_training_decodes_a_file(exported):
    run, _, _ = exported
    path = sorted((run.parent / "data" / "validation" / CLASSES[0]).iterdir())[0]
    from_bytes = runtime.decode_bytes(path.read_bytes(), SIZE)
    from_file = np.asarray(decode_image(str(path), (SIZE, SIZE)))
    assert from_bytes.dtype == np.float32 and np.array_equal(from_bytes, from_file)


def test_a_sigmoid_run_exports_with_two_class_probabilities(tmp_path):
    """The cats-vs-dogs top model has one sigmoid unit: its probability p is the second class's, 1 - p the first's."""
    run = make_run(tmp_path, classes=("cats", "dogs"))
    parity = export_command.main(["--run-dir", str(run), "--output-dir", str(tmp_path / "out"), "--formats", "tflite"])
    assert parity["n_images"] == 10 and set(parity["formats"]) == {"tflite"}
    assert parity["formats"]["tflite"]["max_abs_diff"] <= 1e-4
    validation = load_image_folder(run.parent / "data" / "validation", ["cats", "dogs"])
    pixels = np.stack([np.asarray(decode_image(path, (SIZE, SIZE))) for path in validation.paths])
    p = keras.saving.load_model(run / "model.keras").predict(pixels, verbose=0)[:, 0]
    assert parity["keras_accuracy"] == pytest.approx(np.mean((p > 0.5) == validation.labels))
    manifest = json.loads((tmp_path / "out" / "preprocessing.json").read_text())
    assert "sigmoid" in manifest["output"] and not (tmp_path / "out" / "saved_model").exists()
    assert runtime.class_probabilities(np.array([[0.25]]), 2).tolist() == [[0.75, 0.25]]


def test_flower17_runs_are_measured_on_their_split(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "split" / "validation").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"data_dir": str(tmp_path / "17flowers"),
                                                 "split_dir": str(tmp_path / "split")}))
    assert export_command.validation_folder(run) == tmp_path / "split" / "validation"
    (run / "config.json").write_text(json.dumps({"data_dir": str(tmp_path / "gone")}))
    with pytest.raises(Exception, match="--validation-dir"):
        export_command.validation_folder(run)
    assert export_command.validation_folder(run, tmp_path / "mine") == tmp_path / "mine"


def test_onnx_is_left_out_with_the_reason_when_tf2onnx_fails(exported, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("unsupported op")

    monkeypatch.setattr(formats, "write_onnx", broken)
    left_out = formats.convert(None, tmp_path, ["onnx"], SIZE)
    assert "onnx" in left_out and "failed on this model: ValueError: unsupported op" in left_out["onnx"]


@pytest.mark.parametrize("problem, message", [
    ("no model", "does not exist; point --run-dir"),
    ("output not empty", "exists and is not empty"),
    ("float too far", "differ from the Keras model by more than"),
])
def test_bad_input_gets_one_line(exported, tmp_path, capsys, monkeypatch, problem, message):
    run, _, _ = exported
    argv = ["--run-dir", str(run), "--output-dir", str(tmp_path / "out"), "--formats", "saved_model"]
    if problem == "no model":
        argv[1] = str(tmp_path)
    if problem == "output not empty":
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "keep.txt").write_text("mine")
    if problem == "float too far":
        monkeypatch.setattr(export_command, "FLOAT_TOLERANCE", -1.0)
    with pytest.raises(SystemExit) as exit_info:
        export_command.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and err[-1].startswith("error: ") and message in err[-1]
    if problem == "output not empty":
        assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]
    if problem == "float too far":  # the measurement that failed is kept
        parity = json.loads((tmp_path / "out" / "parity.json").read_text())
        assert parity["float_formats_within_tolerance"] is False
