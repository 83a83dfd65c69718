"""What a fitted ``DomainAdapter`` answers: outputs per domain and AdaBN's statistics.

``adaptation.adapter`` trains the network; this mixin holds the side a fitted
adapter is used by: the BatchNorm statistics of each domain (AdaBN, Li et al.
2016: the target's re-estimated after training, ``adapt_batchnorm``), the
predictions, bottleneck features and score under the statistics of the domain
asked for, and pickling without the compiled pass and the optimizer.  It reads
the fitted attributes the training writes: ``network_``, ``statistics_``,
``classes_`` and ``_forward``.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from sklearn.metrics import accuracy_score
from sklearn.utils.validation import check_is_fitted, validate_data

from adaptation import adabn, steps, streams
from mmd.validation import InputError


class FittedAdapter:
    """Mixin of ``adaptation.adapter.DomainAdapter``: its fitted side (module docstring)."""

    # ----------------------------------------------------------------- AdaBN
    def batchnorm_layers(self) -> list:
        """The BatchNorm layers AdaBN re-estimates: the encoder's trainable ones and the bottleneck's
        (a frozen pretrained base keeps the statistics its features were computed with)."""
        check_is_fitted(self, "network_")
        encoder_layers = [layer for layer in adabn.batchnorm_layers(self.network_.encoder) if layer.trainable]
        return encoder_layers + adabn.batchnorm_layers(self.network_.bottleneck)

    def adapt_batchnorm(self, target, batch_size: int = 4096) -> None:
        """AdaBN: estimate the target's statistics in every adapted BatchNorm layer and keep both sets;
        ``predict(..., domain=...)`` uses the one of the domain asked for."""
        layers = self.batchnorm_layers()
        source_statistics = adabn.get_statistics(layers)
        examples, _ = streams.examples(target, False, len(self.network_.encoder.input_shape) - 1)
        batches = examples.batch(batch_size)
        network = self.network_

        def forward(x):
            network.features(x, training=True)

        target_statistics = adabn.estimate_statistics(forward, layers, batches)
        self.statistics_ = {"source": source_statistics, "target": target_statistics}
        adabn.set_statistics(layers, target_statistics)

    def use_statistics(self, domain: str) -> None:
        """Put the BatchNorm statistics of ``domain`` in place (AdaBN keeps one set per domain)."""
        if domain not in ("source", "target"):
            raise InputError(f"domain must be 'source' or 'target', not {domain!r}")
        check_is_fitted(self, "network_")
        chosen = self.statistics_.get(domain) or self.statistics_.get("source")
        if chosen is not None:
            adabn.set_statistics(self.batchnorm_layers(), chosen)

    # ------------------------------------------------------------ prediction
    def _outputs(self, X, domain: str, batch_size: int):
        check_is_fitted(self, "network_")
        if isinstance(X, tf.data.Dataset):
            examples, _ = streams.examples(X, False, len(self.network_.encoder.input_shape) - 1)
            batches = examples.batch(batch_size)
        else:
            X = validate_data(self, X, dtype=np.float32, allow_nd=True, reset=False)
            batches = (X[start : start + batch_size] for start in range(0, len(X), batch_size))
        self.use_statistics(domain)
        features, probabilities = [], []
        try:
            for batch in batches:
                f, p = self._forward(batch)
                features.append(f.numpy())
                probabilities.append(p.numpy())
        finally:
            if "target" in self.statistics_:
                self.use_statistics("target")
        if not features:
            return (np.zeros((0, self.network_.bottleneck.output_shape[-1]), np.float32),
                    np.zeros((0, len(self.classes_)), np.float32))
        return np.concatenate(features), np.concatenate(probabilities)

    def predict_proba(self, X, domain: str = "target", batch_size: int = 256) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``; ``domain`` picks AdaBN's statistics."""
        return self._outputs(X, domain, batch_size)[1]

    def predict(self, X, domain: str = "target", batch_size: int = 256) -> np.ndarray:
        probabilities = self.predict_proba(X, domain, batch_size)  # raises NotFittedError first
        return self.classes_[probabilities.argmax(axis=1)]

    def transform(self, X, domain: str = "target", batch_size: int = 256) -> np.ndarray:
        """The bottleneck features: the space the adaptation losses act on."""
        return self._outputs(X, domain, batch_size)[0]

    def score(self, X, y, sample_weight=None, domain: str = "target") -> float:
        return float(accuracy_score(np.asarray(y).ravel(), self.predict(X, domain), sample_weight=sample_weight))

    # -------------------------------------------------------------- pickling
    def __getstate__(self):
        """The networks pickle as Keras models (their configs and weights); the compiled forward
        pass and the optimizer do not pickle and are not needed to predict."""
        state = dict(super().__getstate__())
        state.pop("_forward", None)
        state.pop("optimizer_", None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "network_" in state:
            self.optimizer_ = None
            self._forward = steps.make_forward(self.network_)
