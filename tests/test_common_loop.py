"""The shared custom loop: steps see the right progress, values are logged, epochs call back."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from common.loop import train_loop


def regression_problem(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(64, 3)).astype("float32")
    y = x @ np.array([[1.5], [-2.0], [0.5]], "float32") + 0.3
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()


def test_a_linear_model_is_fitted_and_every_step_is_logged():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    optimizer = keras.optimizers.SGD(learning_rate=0.1)
    seen_progress = []

    def step(batch, progress):
        x, y = batch
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.square(model(x, training=True) - y))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables, strict=False))
        return {"loss": loss, "progress_seen": progress}

    def on_epoch_end(epoch, row):
        seen_progress.append(row["progress_seen"])
        return {"checked": epoch * 10}

    history = train_loop(step, regression_problem(), epochs=5, steps_per_epoch=4, on_epoch_end=on_epoch_end,
                         progress_bar=False)
    assert len(history.steps) == 20 and [r["step"] for r in history.steps] == list(range(1, 21))
    # progress is completed / total steps, the same value the step function received
    assert [r["progress"] for r in history.steps] == pytest.approx([i / 20 for i in range(20)])
    assert [r["progress_seen"] for r in history.steps] == pytest.approx([i / 20 for i in range(20)], abs=1e-6)
    assert [r["epoch"] for r in history.epochs] == [1, 2, 3, 4, 5]
    assert [r["checked"] for r in history.epochs] == [10, 20, 30, 40, 50]
    assert history.epochs[0]["loss"] == pytest.approx(np.mean([r["loss"] for r in history.steps[:4]]))
    assert history.steps[-1]["loss"] < 0.05 * history.steps[0]["loss"]
    weights = model.layers[0].kernel.numpy().ravel()
    assert np.allclose(weights, [1.5, -2.0, 0.5], atol=0.1)


def test_stop_from_the_epoch_callback_and_a_short_dataset():
    calls = []

    def step(batch, progress):
        return {"value": tf.reduce_sum(batch[0])}

    history = train_loop(step, regression_problem(), epochs=10, steps_per_epoch=2,
                         on_epoch_end=lambda epoch, row: calls.append(epoch) or {"stop": epoch == 3},
                         progress_bar=False)
    assert calls == [1, 2, 3] and history.stopped_early and len(history.steps) == 6
    finite = tf.data.Dataset.from_tensor_slices((np.zeros((4, 1), "float32"),)).batch(2)
    with pytest.raises(ValueError, match="ran out after 2 steps"):
        train_loop(step, finite, epochs=1, steps_per_epoch=3, progress_bar=False)


def test_each_epoch_gets_its_own_seconds_and_the_running_total_beside_them():
    """``seconds`` used to be the time since the loop began, so every later epoch looked slower."""
    import time

    def step(batch, progress):
        return {"value": tf.reduce_sum(batch[0])}

    history = train_loop(step, regression_problem(), epochs=3, steps_per_epoch=2,
                         on_epoch_end=lambda epoch, row: time.sleep(0.3), progress_bar=False)
    seconds = [row["seconds"] for row in history.epochs]
    elapsed = [row["elapsed_seconds"] for row in history.epochs]
    assert seconds[1] < 0.25 and seconds[2] < 0.25            # two trivial steps, not the 0.3 s callbacks before
    assert elapsed[1] - elapsed[0] >= 0.3 and elapsed[2] - elapsed[1] >= 0.3
    assert elapsed[0] == pytest.approx(seconds[0], abs=0.02)
