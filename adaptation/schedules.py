"""DANN's two schedules over training progress p in [0, 1] (Ganin & Lempitsky 2015, section 5.1).

* lambda_p = 2 / (1 + exp(-gamma p)) - 1, gamma = 10: the adaptation weight
  rises from 0 to (almost) 1. Early in training the discriminator reads
  features that mean nothing yet; its reversed gradient would be noise, so it
  is switched on gradually.
* lr_p = lr0 / (1 + alpha p)^beta, alpha = 10, beta = 0.75: the learning rate
  anneals to about a sixth of lr0, so the adversarial game settles.

Both are switchable (``"constant"``), and both are plain functions of p, the
``progress`` that ``common.loop.train_loop`` passes to every step.
"""
from __future__ import annotations

import keras

LAMBDA_SCHEDULES = ("dann", "constant")
LEARNING_RATE_SCHEDULES = ("annealed", "constant")


def dann_lambda(progress, gamma: float = 10.0, maximum: float = 1.0):
    """lambda_p = maximum * (2 / (1 + exp(-gamma p)) - 1).

    Example: dann_lambda(0.0) = 0, dann_lambda(0.1) = 0.462, dann_lambda(1.0) = 0.99991.
    """
    progress = keras.ops.convert_to_tensor(progress, "float32")
    return maximum * (2.0 / (1.0 + keras.ops.exp(-gamma * progress)) - 1.0)


def adaptation_weight(progress, schedule: str = "dann", maximum: float = 1.0, gamma: float = 10.0):
    """lambda at progress p: DANN's rising schedule, or ``maximum`` throughout."""
    if schedule == "dann":
        return dann_lambda(progress, gamma, maximum)
    if schedule == "constant":
        return keras.ops.convert_to_tensor(maximum, "float32")
    raise ValueError(f"lambda schedule must be one of {', '.join(LAMBDA_SCHEDULES)}, not {schedule!r}")


def annealed_rate(progress, initial: float, alpha: float = 10.0, beta: float = 0.75):
    """lr_p = initial / (1 + alpha p)^beta.

    Example: annealed_rate(0.0, 0.01) = 0.01, annealed_rate(1.0, 0.01) = 0.01 / 11^0.75 = 0.00166.
    """
    progress = keras.ops.convert_to_tensor(progress, "float32")
    return initial / keras.ops.power(1.0 + alpha * progress, beta)


@keras.saving.register_keras_serializable(package="adaptation")
class AnnealedLearningRate(keras.optimizers.schedules.LearningRateSchedule):
    """lr_p as an optimizer schedule: p = optimizer iterations / ``total_steps``.

    Driving the rate from the optimizer's own step counter (instead of
    assigning it inside the training step) keeps the step function free of
    variable writes, so it runs unchanged under ``strategy.run``.
    ``schedule="constant"`` keeps ``initial`` throughout.
    """

    def __init__(self, initial: float, total_steps: int, schedule: str = "annealed",
                 alpha: float = 10.0, beta: float = 0.75):
        if schedule not in LEARNING_RATE_SCHEDULES:
            raise ValueError(
                f"learning-rate schedule must be one of {', '.join(LEARNING_RATE_SCHEDULES)}, not {schedule!r}"
            )
        self.initial = float(initial)
        self.total_steps = max(1, int(total_steps))
        self.schedule = schedule
        self.alpha = float(alpha)
        self.beta = float(beta)

    def __call__(self, step):
        if self.schedule == "constant":
            return keras.ops.convert_to_tensor(self.initial, "float32")
        progress = keras.ops.minimum(keras.ops.cast(step, "float32") / self.total_steps, 1.0)
        return annealed_rate(progress, self.initial, self.alpha, self.beta)

    def get_config(self):
        return {"initial": self.initial, "total_steps": self.total_steps, "schedule": self.schedule,
                "alpha": self.alpha, "beta": self.beta}
