"""Every long phase shows where it is (common.progress): the steps of an epoch, a validation or scoring pass.

Output to a file or a pipe (as under pytest) gets a line every LINE_SECONDS; set to 0 here, each step prints one.
Before, Keras' verbose=2 printed an epoch only when it ended, evaluation and scoring printed nothing, and the
custom loop drew its bar only on a terminal.
"""
import re

import keras
import numpy as np
import pytest

from common import distribute, progress
from common.loop import train_loop
from common.reports import predictions_and_losses


@pytest.fixture
def every_step(monkeypatch):
    monkeypatch.setattr(progress, "LINE_SECONDS", 0.0)
    monkeypatch.setattr(progress, "interactive", lambda: False)


def tiny_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.SGD(0.1), "binary_crossentropy", metrics=["accuracy"])
    return model


def data(count=12):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(count, 3)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


def test_a_line_per_update_without_a_terminal(every_step, capsys):
    with progress.Progress(3, "phase") as shown:
        for _ in range(3):
            shown.update(1, loss=0.5)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == ["phase: 1/3 steps", "phase: 2/3 steps", "phase: 3/3 steps"]
    assert all("loss 0.5" in line for line in lines)


def test_a_line_only_when_the_last_one_is_long_ago_whichever_phase_printed_it(monkeypatch, capsys):
    monkeypatch.setattr(progress, "interactive", lambda: False)
    monkeypatch.setattr(progress, "LINE_SECONDS", 3600.0)
    monkeypatch.setattr(progress, "_last_line", progress.time.perf_counter())
    for phase in ("one", "two"):
        with progress.Progress(3, phase) as shown:
            shown.update(3)
    assert capsys.readouterr().out == ""
    monkeypatch.setattr(progress, "_last_line", progress.time.perf_counter() - 3601)
    for phase in ("one", "two"):   # a row of short phases: the first update after a long silence speaks
        with progress.Progress(3, phase) as shown:
            shown.update(1)
            shown.update(2)
    assert capsys.readouterr().out.splitlines() == ["one: 1/3 steps, 0 s"]


def test_fit_shows_each_epochs_steps_and_its_validation(every_step, capsys):
    x, y = data()
    distribute.fit(tiny_model(), (x, y), epochs=2, batch_size=4, validation=(x, y),
                   distribution=distribute.setup("none"))
    out = capsys.readouterr().out
    for epoch in (1, 2):
        steps = re.findall(rf"^training epoch {epoch}/2: (\d+)/3 steps", out, re.M)
        assert steps == ["1", "2", "3"], out
    assert len(re.findall(r"^validation: 1 batches", out, re.M)) == 2, out   # fit's own pass, once per epoch


def test_evaluate_and_scoring_show_their_batches(every_step, capsys):
    import tensorflow as tf

    x, y = data()
    model = tiny_model()
    batches = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    distribute.evaluate(model, batches, distribute.setup("none"))
    predictions_and_losses(model, (x, y), batch_size=4)
    out = capsys.readouterr().out
    assert re.findall(r"^validation: (\d)/3 batches", out, re.M) == ["1", "2", "3"], out
    assert re.findall(r"^scoring: (\d)/3 batches", out, re.M) == ["1", "2", "3"], out


def test_the_custom_loop_shows_its_steps_without_a_terminal(every_step, capsys):
    import tensorflow as tf

    counter = tf.Variable(0.0)

    def step(batch, fraction):
        counter.assign_add(1.0)
        return {"loss": counter * 1.0}

    train_loop(step, tf.data.Dataset.range(10).repeat(), epochs=1, steps_per_epoch=4, description="stage 3")
    out = capsys.readouterr().out
    assert re.findall(r"^stage 3 1/1: (\d)/4 steps", out, re.M) == ["1", "2", "3", "4"], out
