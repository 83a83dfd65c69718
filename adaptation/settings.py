"""The methods ``DomainAdapter`` knows and its parameters checked as ``fit`` uses them.

A scikit-learn estimator stores its parameters as given and checks them in
``fit`` (so that ``set_params`` and ``clone`` never fail half-way); the
check is this module's: each mistake is one line, an ``InputError`` naming
the parameter, its value and what it must be, and the result is the settings
dict that the network, the batches and the training step are built from
(``lambda_schedule`` filled in per method, ``seed`` drawn once).
"""
from __future__ import annotations

import numbers

import keras
import numpy as np
from sklearn.utils import check_random_state

from adaptation.schedules import LAMBDA_SCHEDULES, LEARNING_RATE_SCHEDULES
from mmd.distance import ESTIMATORS
from mmd.validation import InputError

METHODS = ("source-only", "adabn", "coral", "dan", "dann", "cdan", "cdan+e")
#: the methods with a domain discriminator; CDAN's reads the multilinear map of features and predictions
ADVERSARIAL = ("dann", "cdan", "cdan+e")
#: lambda's schedule unless one is given: DANN's rising one for the adversarial
#: loss (its paper), a constant weight for the discrepancies (DAN's and Deep CORAL's papers)
DEFAULT_LAMBDA_SCHEDULE = {"dann": "dann", "cdan": "dann", "cdan+e": "dann", "dan": "constant", "coral": "constant"}


def check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def check_number(value, name: str, minimum: float, strict: bool = False, maximum: float | None = None) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum) and (maximum is None or value < maximum)
    if not ok:
        bound = f"> {minimum}" if strict else f">= {minimum}"
        bound += f" and < {maximum}" if maximum is not None else ""
        raise InputError(f"{name} must be a number {bound}, not {value!r}")
    return float(value)


def check_units(value, name: str) -> tuple:
    try:
        units = tuple(value)
    except TypeError:
        raise InputError(f"{name} must be a sequence of layer widths, not {value!r}") from None
    for width in units:
        check_int(width, f"every width in {name}", 1)
    return tuple(int(width) for width in units)


def checked_settings(adapter) -> dict:
    """The parameters checked, as the training uses them (one line per mistake)."""
    def choice(value, name, choices):
        if not isinstance(value, str) or value not in choices:
            raise InputError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value

    method = choice(adapter.method, "method", METHODS)
    lambda_schedule = adapter.lambda_schedule
    if lambda_schedule is None:
        lambda_schedule = DEFAULT_LAMBDA_SCHEDULE.get(method, "constant")
    settings = {
        "method": method,
        "lambda_schedule": choice(lambda_schedule, "lambda_schedule", LAMBDA_SCHEDULES),
        "learning_rate_schedule": choice(adapter.learning_rate_schedule, "learning_rate_schedule",
                                         LEARNING_RATE_SCHEDULES),
        "mmd_estimator": choice(adapter.mmd_estimator, "mmd_estimator", ESTIMATORS),
        "encoder_units": check_units(adapter.encoder_units, "encoder_units"),
        "bottleneck": check_int(adapter.bottleneck, "bottleneck", 1),
        "discriminator_units": check_units(adapter.discriminator_units, "discriminator_units"),
        "epochs": check_int(adapter.epochs, "epochs", 1),
        "steps_per_epoch": None if adapter.steps_per_epoch is None
        else check_int(adapter.steps_per_epoch, "steps_per_epoch", 1),
        "batch_size": check_int(adapter.batch_size, "batch_size", 2),
        "learning_rate": check_number(adapter.learning_rate, "learning_rate", 0.0, strict=True),
        "momentum": check_number(adapter.momentum, "momentum", 0.0, maximum=1.0),
        "weight_decay": check_number(adapter.weight_decay, "weight_decay", 0.0),
        "trade_off": check_number(adapter.trade_off, "trade_off", 0.0),
        "encoder_learning_rate_scale": check_number(adapter.encoder_learning_rate_scale,
                                                    "encoder_learning_rate_scale", 0.0),
        "n_kernels": check_int(adapter.n_kernels, "n_kernels", 1),
        "kernel_factor": check_number(adapter.kernel_factor, "kernel_factor", 0.0, strict=True),
    }
    if not (adapter.encoder is None or isinstance(adapter.encoder, keras.Model) or callable(adapter.encoder)):
        raise InputError(f"encoder must be None, a keras.Model or a callable that builds one, "
                         f"not {type(adapter.encoder).__name__}")
    try:
        rng = check_random_state(adapter.random_state)
    except ValueError as error:
        raise InputError(f"random_state: {error}") from None
    # an integer is the seed itself; None or a RandomState draws one (a new network every fit)
    settings["seed"] = (int(adapter.random_state) if isinstance(adapter.random_state, numbers.Integral)
                        else int(rng.randint(2**31 - 1)))
    return settings
