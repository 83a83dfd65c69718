"""``DomainAdapter``: one network, one training step per method, on ``common.loop.train_loop``.

Every method trains the same network (encoder -> bottleneck -> classifier)
with the same optimizer, schedules and number of steps, and each step sees a
source batch and a target batch of the same size; they differ only in the
loss (textbook eq. 21-22):

=============  ==============================================================
source-only    l_c(Ds, ys): the baseline (the target batch is not used)
adabn          source-only, then the target's BatchNorm statistics (Li et al. 2016)
coral          l_c + lambda * l_CORAL(f_s, f_t)          (Sun & Saenko 2016)
dan            l_c + lambda * MK-MMD^2(f_s, f_t)         (eq. 21, Long et al. 2015)
dann           l_c + l_d(D(R_lambda(f_s)), D(R_lambda(f_t)))  (eq. 22, Ganin & Lempitsky 2015)
=============  ==============================================================

f is the bottleneck's output; R_lambda the gradient reversal layer. For the
adaptation methods the source and the target batch go through the network
together (one batch of 2B), so the BatchNorm statistics it learns are those of
both domains; source-only sees the source alone.

Inputs are arrays or ``tf.data`` datasets, of images or of feature vectors
alike: source as ``(x, y)``, target as ``x`` (a target dataset of ``(x, y)``
pairs has its labels dropped before anything else sees it). Target labels
never enter ``fit``.

Under a ``tf.distribute`` strategy (``strategy=``) the networks and
optimizers are created in its scope and each step runs per replica; the
losses are averaged over the global batch.
"""
from __future__ import annotations

import contextlib
import math

import keras
import numpy as np
import tensorflow as tf

from adaptation import adabn
from adaptation.coral import CorrelationAlignment
from adaptation.dan import MultipleKernelMMD
from adaptation.dann import DomainAdversarialLoss
from adaptation.model import BOTTLENECK_UNITS, DISCRIMINATOR_UNITS, build_network
from adaptation.schedules import AnnealedLearningRate, adaptation_weight
from common.loop import train_loop

METHODS = ("source-only", "adabn", "coral", "dan", "dann")
#: lambda's schedule unless one is given: DANN's rising one for the adversarial
#: loss (its paper), a constant weight for the discrepancies (DAN's and Deep CORAL's papers)
DEFAULT_LAMBDA_SCHEDULE = {"dann": "dann", "dan": "constant", "coral": "constant"}


class DomainAdapter:
    """Unsupervised domain adaptation of a classifier, scikit-learn style: ``fit``, ``predict``, ``score``.

    Example (feature vectors)::

        adapter = DomainAdapter(vector_encoder(800), num_classes=10, method="dann")
        adapter.fit((source_x, source_y), target_x, epochs=10)
        adapter.score(target_x, target_y)        # target labels: for scoring only

    The defaults are the DANN paper's (Ganin & Lempitsky 2015): SGD with
    momentum 0.9, lr0 = 0.01 annealed as lr0 / (1 + 10 p)^0.75, lambda rising
    as 2 / (1 + exp(-10 p)) - 1, a 256-unit bottleneck and a 1024-1024
    discriminator, with TLlib's batch of 32 per domain and weight decay 1e-3.
    A pretrained encoder trains at ``encoder_learning_rate_scale`` (0.1 in the
    papers) times the rate of the new layers.
    """

    def __init__(
        self,
        encoder: keras.Model,
        num_classes: int,
        method: str = "dann",
        *,
        bottleneck: int = BOTTLENECK_UNITS,
        discriminator_units=DISCRIMINATOR_UNITS,
        batch_size: int = 32,
        learning_rate: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 1e-3,
        learning_rate_schedule: str = "annealed",
        trade_off: float = 1.0,
        lambda_schedule: str | None = None,
        encoder_learning_rate_scale: float = 1.0,
        n_kernels: int = 5,
        kernel_factor: float = 2.0,
        estimator: str = "biased",
        seed: int = 0,
        strategy=None,
    ):
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, not {batch_size}")
        self.method = method
        self.num_classes = int(num_classes)
        self.batch_size = int(batch_size)
        self.learning_rate = float(learning_rate)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.learning_rate_schedule = learning_rate_schedule
        self.trade_off = float(trade_off)
        self.lambda_schedule = lambda_schedule or DEFAULT_LAMBDA_SCHEDULE.get(method, "constant")
        self.encoder_learning_rate_scale = float(encoder_learning_rate_scale)
        self.seed = int(seed)
        self.strategy = strategy
        self.statistics: dict[str, list] = {}
        keras.utils.set_random_seed(self.seed)
        with self._scope():
            self.network = build_network(
                encoder, num_classes, bottleneck, discriminator_units, with_discriminator=method == "dann",
            )
        self.discrepancy = None
        if method == "dan":
            self.discrepancy = MultipleKernelMMD(n_kernels, kernel_factor, estimator)
        elif method == "coral":
            self.discrepancy = CorrelationAlignment()
        self.adversarial = DomainAdversarialLoss(self.network.discriminator) if method == "dann" else None
        self.history = None
        self.optimizer = None
        self._forward = None

    # ------------------------------------------------------------------ data
    @property
    def input_rank(self) -> int:
        return len(self.network.encoder.input_shape) - 1

    def _examples(self, data, labelled: bool):
        """An unbatched dataset of (x, y) (labelled) or x, and its size (None if unknown)."""
        if isinstance(data, tf.data.Dataset):
            spec = data.element_spec
            paired = isinstance(spec, tuple)
            x_spec = spec[0] if paired else spec
            if len(x_spec.shape) == self.input_rank + 1:
                data = data.unbatch()
            elif len(x_spec.shape) != self.input_rank:
                raise ValueError(
                    f"dataset elements of shape {x_spec.shape} do not fit the encoder's input "
                    f"{self.network.encoder.input_shape}"
                )
            if labelled and not paired:
                raise ValueError("the source dataset must yield (inputs, labels) pairs")
            if not labelled and paired:
                data = data.map(lambda x, *rest: x)  # the target's labels go no further
            size = int(data.cardinality())
            return data, (size if size >= 0 else None)
        if labelled:
            if not isinstance(data, (tuple, list)) or len(data) != 2:
                raise ValueError("the source must be (inputs, labels) arrays or a dataset of such pairs")
            x, y = np.asarray(data[0], np.float32), np.asarray(data[1]).astype(np.int32).ravel()
            if len(x) != len(y):
                raise ValueError(f"{len(x)} source inputs but {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise ValueError(f"source labels must be in 0..{self.num_classes - 1}")
            return tf.data.Dataset.from_tensor_slices((x, y)), len(x)
        if isinstance(data, (tuple, list)) and len(data) == 2 and np.ndim(data[1]) == 1:
            data = data[0]  # (x, y): the labels are dropped here
        x = np.asarray(data, np.float32)
        return tf.data.Dataset.from_tensor_slices(x), len(x)

    def training_batches(self, source, target):
        """Endless ((source x, source y), target x) batches of ``batch_size`` each, reshuffled every pass;
        returns the dataset and the two domain sizes."""
        source_examples, source_size = self._examples(source, labelled=True)
        target_examples, target_size = self._examples(target, labelled=False)
        for size, name in ((source_size, "source"), (target_size, "target")):
            if size is not None and size < 1:
                raise ValueError(f"the {name} data is empty")

        def endless(examples, size, salt):
            buffer = size if size is not None else 10_000
            examples = examples.shuffle(buffer, seed=self.seed * 1009 + salt, reshuffle_each_iteration=True)
            return examples.repeat().batch(self.batch_size, drop_remainder=True)

        batches = tf.data.Dataset.zip((endless(source_examples, source_size, 1), endless(target_examples, target_size, 2)))
        return batches.prefetch(tf.data.AUTOTUNE), source_size, target_size

    # -------------------------------------------------------------- training
    def _scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def _optimizers(self, total_steps: int):
        """(optimizer, variables) pairs: the new layers at lr0, a pretrained encoder at a scaled lr0."""
        network = self.network
        head_variables = network.bottleneck.trainable_variables + network.classifier.trainable_variables
        if network.discriminator is not None:
            head_variables += network.discriminator.trainable_variables
        groups = []
        encoder_variables = network.encoder.trainable_variables
        if encoder_variables:
            scale = self.encoder_learning_rate_scale
            groups.append((self._sgd(self.learning_rate * scale, total_steps), encoder_variables))
        groups.append((self._sgd(self.learning_rate, total_steps), head_variables))
        for optimizer, variables in groups:
            optimizer.build(variables)
        return groups

    def _sgd(self, rate: float, total_steps: int):
        schedule = AnnealedLearningRate(rate, total_steps, self.learning_rate_schedule)
        return keras.optimizers.SGD(learning_rate=schedule, momentum=self.momentum, weight_decay=self.weight_decay or None)

    def make_step(self, groups):
        """The training step for ``common.loop.train_loop``: step(batch, progress) -> logged scalars."""
        network = self.network
        method = self.method
        global_batch = self.batch_size
        variables = [variable for _, group in groups for variable in group]

        def step(batch, progress):
            (source_x, source_y), target_x = batch
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            weight = self.trade_off * adaptation_weight(progress, self.lambda_schedule)
            values = {}
            with tf.GradientTape() as tape:
                if method in ("source-only", "adabn"):
                    source_features = network.features(source_x, training=True)
                    target_features = None
                else:
                    both = network.features(tf.concat([source_x, target_x], axis=0), training=True)
                    count = tf.shape(source_x)[0]
                    source_features, target_features = both[:count], both[count:]
                logits = network.classifier(source_features, training=True)
                per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(source_y, tf.int32), logits=logits)
                classification = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
                total = classification
                if self.discrepancy is not None:
                    discrepancy = tf.cast(self.discrepancy(source_features, target_features), total.dtype) / replicas
                    total = total + weight * discrepancy
                    values["l_A"] = discrepancy * replicas
                if self.adversarial is not None:
                    domain_loss, domain_accuracy = self.adversarial(
                        source_features, target_features, weight, training=True, global_batch_size=2 * global_batch,
                    )
                    total = total + domain_loss
                    values["l_d"] = domain_loss * replicas
                    values["discriminator_accuracy"] = domain_accuracy
            gradients = tape.gradient(total, variables)
            start = 0
            for optimizer, group in groups:
                optimizer.apply_gradients(zip(gradients[start : start + len(group)], group))
                start += len(group)
            correct = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.cast(source_y, tf.int32))
            values = {"l_c": classification * replicas, **values}
            if self.discrepancy is not None or self.adversarial is not None:
                values["lambda"] = weight
            values = {
                **values,
                "learning_rate": tf.convert_to_tensor(groups[-1][0].learning_rate),
                "accuracy": tf.reduce_mean(tf.cast(correct, tf.float32)),
            }
            return values

        return step

    def fit(self, source, target, *, epochs: int = 20, steps_per_epoch: int | None = None,
            on_epoch_end=None, progress_bar: bool = True, description: str | None = None):
        """Train on labelled ``source`` and unlabelled ``target``; returns ``common.loop.LoopHistory``.

        An epoch is ``steps_per_epoch`` steps; by default enough for one pass
        over the larger domain. ``on_epoch_end(epoch, row)`` may return more
        values for the epoch's row (a source-validation score); nothing here
        looks at target labels.
        """
        batches, source_size, target_size = self.training_batches(source, target)
        if steps_per_epoch is None:
            if source_size is None or target_size is None:
                raise ValueError("datasets of unknown size need steps_per_epoch")
            steps_per_epoch = max(1, math.ceil(max(source_size, target_size) / self.batch_size))
        with self._scope():
            groups = self._optimizers(max(1, epochs * steps_per_epoch))
        self.optimizer = groups[-1][0]  # the new layers' optimizer: its learning rate is lr_p
        self.history = train_loop(
            self.make_step(groups), batches, epochs=epochs, steps_per_epoch=steps_per_epoch,
            on_epoch_end=on_epoch_end, description=description or self.method, progress_bar=progress_bar,
            strategy=self.strategy,
        )
        self.statistics = {"source": adabn.get_statistics(self.batchnorm_layers())}
        if self.method == "adabn":
            self.adapt_batchnorm(target)
        return self.history

    # ----------------------------------------------------------------- AdaBN
    def batchnorm_layers(self) -> list:
        """The BatchNorm layers AdaBN re-estimates: the encoder's trainable ones and the bottleneck's
        (a frozen pretrained base keeps the statistics its features were computed with)."""
        encoder_layers = [layer for layer in adabn.batchnorm_layers(self.network.encoder) if layer.trainable]
        return encoder_layers + adabn.batchnorm_layers(self.network.bottleneck)

    def adapt_batchnorm(self, target, batch_size: int = 4096) -> None:
        """AdaBN: estimate the target's statistics in every adapted BatchNorm layer and keep both sets;
        ``predict(..., domain=...)`` uses the one of the domain asked for."""
        layers = self.batchnorm_layers()
        source_statistics = adabn.get_statistics(layers)
        examples, _ = self._examples(target, labelled=False)
        batches = examples.batch(batch_size)

        def forward(x):
            self.network.features(x, training=True)

        target_statistics = adabn.estimate_statistics(forward, layers, batches)
        self.statistics = {"source": source_statistics, "target": target_statistics}
        adabn.set_statistics(layers, target_statistics)

    def use_statistics(self, domain: str) -> None:
        """Put the BatchNorm statistics of ``domain`` in place (AdaBN keeps one set per domain)."""
        if domain not in ("source", "target"):
            raise ValueError(f"domain must be 'source' or 'target', not {domain!r}")
        chosen = self.statistics.get(domain) or self.statistics.get("source")
        if chosen is not None:
            adabn.set_statistics(self.batchnorm_layers(), chosen)

    # ------------------------------------------------------------ prediction
    def _outputs(self, x, domain: str, batch_size: int):
        if self._forward is None:
            network = self.network

            signature = tf.TensorSpec([None, *network.encoder.input_shape[1:]], tf.float32)

            @tf.function(input_signature=[signature])
            def forward(inputs):
                features = network.features(inputs, training=False)
                return features, tf.nn.softmax(network.classifier(features, training=False))

            self._forward = forward
        self.use_statistics(domain)
        try:
            if isinstance(x, tf.data.Dataset):
                examples, _ = self._examples(x, labelled=False)
                batches = examples.batch(batch_size)
            else:
                batches = tf.data.Dataset.from_tensor_slices(np.asarray(x, np.float32)).batch(batch_size)
            features, probabilities = [], []
            for batch in batches:
                f, p = self._forward(batch)
                features.append(f.numpy())
                probabilities.append(p.numpy())
        finally:
            if "target" in self.statistics:
                self.use_statistics("target")
        if not features:
            return np.zeros((0, self.network.bottleneck.output_shape[-1]), np.float32), np.zeros((0, self.num_classes), np.float32)
        return np.concatenate(features), np.concatenate(probabilities)

    def predict_proba(self, x, domain: str = "target", batch_size: int = 256) -> np.ndarray:
        return self._outputs(x, domain, batch_size)[1]

    def predict(self, x, domain: str = "target", batch_size: int = 256) -> np.ndarray:
        return self.predict_proba(x, domain, batch_size).argmax(axis=1)

    def transform(self, x, domain: str = "target", batch_size: int = 256) -> np.ndarray:
        """The bottleneck features: the space the adaptation losses act on."""
        return self._outputs(x, domain, batch_size)[0]

    def score(self, x, y, domain: str = "target") -> float:
        return float(np.mean(self.predict(x, domain) == np.asarray(y).ravel()))
