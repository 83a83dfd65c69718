"""Keep-near-pretrained fine-tuning: L2-SP, and plain weight decay to compare it with.

The overview of transfer strategies (002, 4.1.3) names a regulariser that keeps
a fine-tuned network close to the weights it started from. L2-SP (Li,
Grandvalet and Davoine, "Explicit inductive bias for transfer learning with
convolutional networks", ICML 2018) is that regulariser::

    Omega(w) = beta * ||w_S - w_S^0||^2  +  alpha * ||w_new||^2

w_S are the transferred weights (the pretrained backbone) and w_S^0 their
pretrained values, w_new the weights of the new head, which have no starting
point to return to and get plain weight decay. Plain weight decay,
alpha * ||w||^2 on every weight, pulls the transferred weights towards zero
instead, i.e. away from what was learned on ImageNet; with little target data
that is the wrong prior, which is the paper's argument and what the lessons'
``--l2-sp`` measures against ``--weight-decay``. (The paper calls the
starting-point strength alpha and the head's beta; the flags here follow the
project's issue: beta for the starting point, alpha for the head.)

Both are attached to the variables themselves (``variable.regularizer``), so
Keras adds them to ``model.losses`` for ``Model.fit`` and for the custom steps
(which add ``model.losses`` to the loss), counted only while a variable is
trainable: a frozen layer costs nothing, and the layers a fine-tuning stage
releases start being held near their pretrained values at once. Nothing of
this is saved with the model (the regularisers are not in the layers'
configs), so a saved ``.keras`` file loads without this module.
"""
from __future__ import annotations

import keras
import numpy as np
from keras import ops


class ToStartingPoint(keras.regularizers.Regularizer):
    """``strength * ||w - start||^2`` for one variable (L2-SP's first term)."""

    def __init__(self, strength: float, start):
        self.strength = float(strength)
        self.start = np.array(start, dtype="float32", copy=True)

    def __call__(self, weights):
        return self.strength * ops.sum(ops.square(weights - ops.convert_to_tensor(self.start, weights.dtype)))

    def get_config(self) -> dict:
        return {"strength": self.strength}


def _regularizable(layers):
    """Every float weight of a layer, a model or a list of variables (trainable now or later), BatchNorm's
    moving statistics excepted."""
    variables = layers if isinstance(layers, (list, tuple)) else layers.weights
    return [variable for variable in variables
            if variable.dtype.startswith("float") and "moving_" not in variable.path]


def add_l2_sp(transferred, head, *, beta: float, alpha: float) -> int:
    """Hold ``transferred``'s weights near their values now (beta) and decay ``head``'s (alpha).

    Call it right after the pretrained weights are loaded (and before any
    training changes them); returns how many variables were given a
    starting point.
    """
    if beta < 0 or alpha < 0:
        raise ValueError(f"L2-SP strengths must be 0 or more, not beta={beta}, alpha={alpha}")
    anchored = _regularizable(transferred)
    for variable in anchored:
        variable.regularizer = ToStartingPoint(beta, keras.ops.convert_to_numpy(variable))
    for variable in _regularizable(head):
        variable.regularizer = keras.regularizers.L2(alpha)
    return len(anchored)


def add_weight_decay(model, alpha: float) -> int:
    """Plain L2 weight decay, alpha * ||w||^2 on every weight of ``model``: the baseline of L2-SP."""
    if alpha < 0:
        raise ValueError(f"the weight decay must be 0 or more, not {alpha}")
    variables = _regularizable(model)
    for variable in variables:
        variable.regularizer = keras.regularizers.L2(alpha)
    return len(variables)


def add_regularization_arguments(group) -> None:
    """``--l2-sp`` / ``--weight-decay`` for the fine-tuning commands (one of the two, or neither)."""
    group.add_argument(
        "--l2-sp", action="store_true",
        help="L2-SP (Li et al. 2018): keep the transferred weights near their pretrained values, "
        "beta ||w - w0||^2, and decay the new head's, alpha ||w||^2 (see --l2-sp-beta, --l2-sp-alpha)")
    group.add_argument("--l2-sp-beta", type=float, default=0.01,
                       help="L2-SP's strength towards the pretrained weights (default: 0.01)")
    group.add_argument("--l2-sp-alpha", type=float, default=0.01,
                       help="L2-SP's weight decay of the new head (default: 0.01)")
    group.add_argument("--weight-decay", type=float, default=0.0,
                       help="plain L2 weight decay alpha ||w||^2 on every weight, the baseline L2-SP is measured "
                       "against (default: 0, none); not with --l2-sp")


def check_regularization_arguments(args) -> None:
    """One line for the combinations that make no sense (argparse's exit status 2)."""
    from common.cli import refuse

    if getattr(args, "l2_sp", False) and getattr(args, "weight_decay", 0.0):
        refuse("--l2-sp and --weight-decay are two regularisers to compare; give one of them")
    for name in ("l2_sp_beta", "l2_sp_alpha", "weight_decay"):
        value = getattr(args, name, 0.0)
        if value is not None and value < 0:
            refuse(f"--{name.replace('_', '-')} must be 0 or more, not {value}")


def regularize(args, transferred, head, whole) -> str:
    """Apply what the flags ask for and say it in one line (also returned, for config and metrics).

    ``head=None``: the new layers are whatever of ``whole`` is not in ``transferred``.
    """
    if head is None:
        own = {id(variable) for variable in transferred.weights}
        head = [variable for variable in whole.weights if id(variable) not in own]
    if getattr(args, "l2_sp", False):
        count = add_l2_sp(transferred, head, beta=args.l2_sp_beta, alpha=args.l2_sp_alpha)
        text = f"L2-SP: {count} transferred weights held near their start (beta {args.l2_sp_beta}), " \
               f"the head decayed (alpha {args.l2_sp_alpha})"
    elif getattr(args, "weight_decay", 0.0):
        count = add_weight_decay(whole, args.weight_decay)
        text = f"weight decay {args.weight_decay} on {count} weights"
    else:
        return "none"
    print(text, flush=True)
    return text
