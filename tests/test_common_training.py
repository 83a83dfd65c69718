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
