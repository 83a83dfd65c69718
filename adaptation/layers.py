"""The gradient reversal layer of DANN (textbook eq. 22; Ganin & Lempitsky 2015).

The domain discriminator learns to tell source features from target features
by minimising l_d; the feature extractor should do the opposite, maximise
l_d, so that the two domains become indistinguishable. Both happen in one
ordinary backward pass when the discriminator reads the features through
this layer: forward it is the identity, backward it multiplies the gradient
by -lambda, so every parameter below it climbs l_d while the discriminator
above it descends.
"""
from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="adaptation")
class GradientReversal(keras.layers.Layer):
    """Identity forward; ``-weight`` times the incoming gradient backward.

    ``weight`` is lambda: a constant given at construction, or a per-call
    value (a tensor that follows training progress, as DANN's schedule does)::

        reversal = GradientReversal()
        domain_logits = discriminator(reversal(features, weight=lambda_p))

    Example: the gradient of sum(reversal(x, weight=0.5)) is -0.5 everywhere.
    """

    def __init__(self, weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)

    def call(self, inputs, weight=None):
        weight = self.weight if weight is None else weight
        weight = keras.ops.cast(weight, inputs.dtype)

        @keras.ops.custom_gradient
        def reverse(x):
            def gradient(*args, upstream=None):
                if upstream is None:
                    (upstream,) = args
                return -weight * upstream

            return keras.ops.copy(x), gradient

        return reverse(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "weight": self.weight}
