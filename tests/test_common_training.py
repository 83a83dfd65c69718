import keras
import pytest

from common.training import learning_rate


def test_cosine_schedule_starts_at_the_rate_and_ends_at_zero():
    schedule = learning_rate(1e-3, steps=100, schedule="cosine")
    assert float(schedule(0)) == pytest.approx(1e-3)
    assert float(schedule(50)) == pytest.approx(5e-4, rel=1e-3)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-9)
    optimizer = keras.optimizers.Adam(learning_rate=schedule)
    assert float(optimizer.learning_rate) == pytest.approx(1e-3)


def test_constant_schedule_and_unknown_names():
    assert learning_rate(1e-4, steps=10, schedule="constant") == 1e-4
    with pytest.raises(ValueError, match="cosine, constant"):
        learning_rate(1e-4, steps=10, schedule="step")


@pytest.mark.parametrize("module, argv, message", [
    ("cats_dogs.bottleneck", ["--batch-size", "0"], "--batch-size must be at least 1, not 0"),
    ("cats_dogs.bottleneck", ["--epochs", "0"], "--epochs must be at least 1, not 0"),
    ("cats_dogs.finetune", ["--learning-rate", "-1"], "--learning-rate must be positive"),
    ("cats_dogs.finetune", ["--momentum", "1.5"], "--momentum must be in [0, 1)"),
    ("flowers.train", ["--learning-rate", "-1"], "--learning-rate must be positive"),
    ("flowers.train", ["--epochs", "-1"], "--epochs must be at least 0, not -1"),
    ("flowers.train", ["--finetune-epochs", "-2"], "--finetune-epochs must be 0 or more"),
    ("flowers.flower17", ["--patience", "-1"], "--patience must be 0 or more"),
    ("segmentation.train", ["--roi-size", "0"], "--roi-size must be at least 32, not 0"),
    ("segmentation.train", ["--decoder-width", "0"], "--decoder-width"),
    ("adaptation.train", ["--batch-size", "0"], "--batch-size must be at least 1"),
])
def test_bad_numbers_are_one_line_and_exit_status_2(module, argv, message, capsys):
    """Checked before anything runs; before, these exited with status 1, --epochs 0 trained nothing and reported
    an untrained model, a negative learning rate trained uphill to the end, --roi-size 0 blamed --image-size."""
    import importlib

    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err




@pytest.mark.parametrize("module, argv, message", [
    ("common.extraction_speed", ["--data-dir", "x", "--repeats", "0"], "--repeats"),          # was a ZeroDivisionError
    ("segmentation.evaluate", ["some-run", "--batch-size", "0"], "--batch-size must be at least 1"),  # was a ValueError
])
def test_more_bad_numbers_are_refused_before_anything_runs(module, argv, message, capsys):
    import importlib

    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_skipped_images_are_one_plain_warning_line_in_a_command(tmp_path):
    """Before, the warning came with the file and line of the code that raised it and that source line."""
    import subprocess
    import sys

    code = ("from common.errors import main_guard\nfrom common.data import warn_skipped\n"
            "main_guard(lambda: warn_skipped([('a.jpg', 'empty file (0 bytes)')]))()\n"
            "import warnings\nwarnings.warn('a bug', RuntimeWarning)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "warning: skipped 1 unreadable image file(s):\n  a.jpg: empty file (0 bytes)\n" in result.stderr
    assert "data.py" not in result.stderr
    assert "RuntimeWarning: a bug" in result.stderr          # other warnings keep Python's format


@pytest.mark.parametrize("epochs_done, stop", [(0, RuntimeError("a crash in the first step")), (0, KeyboardInterrupt()),
                                               (1, RuntimeError("a crash later")), (1, KeyboardInterrupt())])
def test_a_stopped_run_takes_back_its_folder_unless_an_epoch_finished(tmp_path, capsys, epochs_done, stop):
    """Before, a crash in the first step (config.json, a header-only history.csv, tensorboard/) left a folder
    that refused the rerun's --output-dir; a folder with a finished epoch is the user's and stays."""
    from common.errors import main_guard
    from common.training import make_run_dir, save_config

    out = tmp_path / "run"

    @main_guard
    def command():
        run_dir = make_run_dir(str(out), "unused", "stage")
        save_config(run_dir, {"epochs": 3})
        (run_dir / "tensorboard" / "train").mkdir(parents=True)
        (run_dir / "history.csv").write_text("epoch,loss\n" + "".join(f"{e},0.5\n" for e in range(1, epochs_done + 1)))
        raise stop

    with pytest.raises((RuntimeError, SystemExit)):
        command()
    assert out.exists() == bool(epochs_done)
    if isinstance(stop, KeyboardInterrupt):
        assert (str(out) in capsys.readouterr().err) == bool(epochs_done)   # says where the partial run is
    if not epochs_done:
        assert make_run_dir(str(out), "unused", "stage") == out            # the rerun may use the folder
        import common.training

        common.training.forget_opened_runs()                               # opened outside a command
