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
cdan           l_c + l_d(D(R_lambda(f) (x) g))  (Long et al. 2018; ``adaptation.cdan``)
cdan+e         cdan with each sample's l_d weighted by 1 + exp(-H(g))
=============  ==============================================================

f is the bottleneck's output; R_lambda the gradient reversal layer. For the
adaptation methods the source and the target batch go through the network
together (one batch of 2B), so the BatchNorm statistics it learns are those of
both domains; source-only sees the source alone.

Two ways in, one training:

* ``fit(X, y, Xt=None)``, the scikit-learn face, for arrays: any class
  labels, validated by scikit-learn (``validate_data``), so that the adapter
  goes into ``clone``, ``Pipeline``, ``GridSearchCV`` and pickles like any
  classifier. The unlabelled target is ``Xt``, given to ``fit`` or at
  construction (``DomainAdapter(Xt=...)``, the form that survives
  ``GridSearchCV``, whose folds only split X and y).
* ``fit_domains(source, target, n_classes=...)`` for what scikit-learn does
  not validate: ``tf.data`` datasets (images decoded on the fly, the training
  command's input) or ``(x, y)`` arrays whose labels already are class
  indices 0..n_classes-1 (a class may be missing from the source's training
  rows and still own an output). A target dataset of ``(x, y)`` pairs has its
  labels dropped before anything else sees it. Target labels never enter
  either ``fit``, except those of ``fit_domains(labelled_target=...)``: a few
  target samples labelled on purpose (semi-supervised adaptation), trained on
  beside the source in every step's classification loss.

Both build the network in ``fit`` (the given encoder is cloned, never
trained in place), so a fitted adapter owns everything it learned, in
attributes ending in ``_``.

Under a ``tf.distribute`` strategy (``strategy=``) the networks and
optimizers are created in its scope and each step runs per replica; the
losses are averaged over the global batch.
"""
from __future__ import annotations

import contextlib
import io
import math
import numbers

import keras
import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.metrics import accuracy_score
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from adaptation import adabn
from adaptation.cdan import ConditionalAdversarialLoss, map_dim
from adaptation.coral import CorrelationAlignment
from adaptation.dan import MultipleKernelMMD
from adaptation.dann import DomainAdversarialLoss
from adaptation.model import BOTTLENECK_UNITS, DISCRIMINATOR_UNITS, build_network, vector_encoder
from adaptation.schedules import LAMBDA_SCHEDULES, LEARNING_RATE_SCHEDULES, AnnealedLearningRate, adaptation_weight
from common.loop import train_loop
from mmd.distance import ESTIMATORS
from mmd.validation import InputError

METHODS = ("source-only", "adabn", "coral", "dan", "dann", "cdan", "cdan+e")
#: the methods with a domain discriminator; CDAN's reads the multilinear map of features and predictions
ADVERSARIAL = ("dann", "cdan", "cdan+e")
#: lambda's schedule unless one is given: DANN's rising one for the adversarial
#: loss (its paper), a constant weight for the discrepancies (DAN's and Deep CORAL's papers)
DEFAULT_LAMBDA_SCHEDULE = {"dann": "dann", "cdan": "dann", "cdan+e": "dann", "dan": "constant", "coral": "constant"}


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, not {value!r}")
    return int(value)


def _check_number(value, name: str, minimum: float, strict: bool = False, maximum: float | None = None) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value > minimum if strict else value >= minimum) and (maximum is None or value < maximum)
    if not ok:
        bound = f"> {minimum}" if strict else f">= {minimum}"
        bound += f" and < {maximum}" if maximum is not None else ""
        raise InputError(f"{name} must be a number {bound}, not {value!r}")
    return float(value)


def _check_units(value, name: str) -> tuple:
    try:
        units = tuple(value)
    except TypeError:
        raise InputError(f"{name} must be a sequence of layer widths, not {value!r}") from None
    for width in units:
        _check_int(width, f"every width in {name}", 1)
    return tuple(int(width) for width in units)


class DomainAdapter(ClassifierMixin, TransformerMixin, BaseEstimator):
    """Unsupervised domain adaptation of a classifier, a scikit-learn estimator.

    Example (feature vectors)::

        adapter = DomainAdapter(method="dann", epochs=10, Xt=target_x)
        adapter.fit(source_x, source_y)            # learns classes_ from source_y
        adapter.score(target_x, target_y)          # target labels: for scoring only

    The defaults are the DANN paper's (Ganin & Lempitsky 2015): SGD with
    momentum 0.9, lr0 = 0.01 annealed as lr0 / (1 + 10 p)^0.75, lambda rising
    as 2 / (1 + exp(-10 p)) - 1, a 256-unit bottleneck and a 1024-1024
    discriminator, with TLlib's batch of 32 per domain and weight decay 1e-3.
    A pretrained encoder trains at ``encoder_learning_rate_scale`` (0.1 in the
    papers) times the rate of the new layers.

    Parameters (stored as given; checked in ``fit``, so that ``set_params``
    and ``clone`` never fail half-way):

    encoder : None, a ``keras.Model`` or a callable returning one
        None builds ``vector_encoder(n_features_in_, encoder_units)`` for 2-D
        X (with ``encoder_units=()`` the identity: the bottleneck reads X). A
        model is cloned in ``fit`` with its weights (a pretrained image
        backbone starts from them; the model given is never trained), a
        callable is called once per ``fit``.
    method : one of ``METHODS``.
    epochs, steps_per_epoch : an epoch is ``steps_per_epoch`` steps; None is
        one pass over the larger domain (datasets of unknown size need it).
    random_state : int, RandomState or None
        Seeds every fit through ``keras.utils.set_random_seed`` (which also
        seeds Python's and NumPy's global generators): the same integer, the
        same network, batches and predictions.
    strategy : a ``tf.distribute`` strategy or None.
    verbose : progress bar and one line per epoch, as the training command shows them.
    Xt : the unlabelled target samples, or None. Without target samples
        (neither here nor in ``fit``) X is its own target: there is no shift
        to adapt to, the adaptation losses compare X with itself, and what is
        learned is a classifier of X (so that ``fit(X, y)`` means what it
        means for any scikit-learn classifier).

    Attributes: ``classes_``, ``n_features_in_`` (2-D inputs), ``network_``
    (``adaptation.model.AdaptationNetwork``), ``history_``
    (``common.loop.LoopHistory``), ``statistics_`` (BatchNorm statistics per
    domain; AdaBN keeps a ``"target"`` set), ``optimizer_`` (the new layers'
    optimizer; not pickled).
    """

    def __init__(
        self,
        encoder=None,
        method: str = "dann",
        *,
        encoder_units=(),
        bottleneck: int = BOTTLENECK_UNITS,
        discriminator_units=DISCRIMINATOR_UNITS,
        epochs: int = 20,
        steps_per_epoch: int | None = None,
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
        mmd_estimator: str = "biased",
        random_state=None,
        strategy=None,
        verbose: bool = False,
        Xt=None,
    ):
        self.encoder = encoder
        self.method = method
        self.encoder_units = encoder_units
        self.bottleneck = bottleneck
        self.discriminator_units = discriminator_units
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.learning_rate_schedule = learning_rate_schedule
        self.trade_off = trade_off
        self.lambda_schedule = lambda_schedule
        self.encoder_learning_rate_scale = encoder_learning_rate_scale
        self.n_kernels = n_kernels
        self.kernel_factor = kernel_factor
        self.mmd_estimator = mmd_estimator
        self.random_state = random_state
        self.strategy = strategy
        self.verbose = verbose
        self.Xt = Xt

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # the networks compute in float32, whatever X came as (the bottleneck features of transform)
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags

    # ------------------------------------------------------------ parameters
    def _settings(self) -> dict:
        """The parameters checked, as the training uses them (one line per mistake)."""
        def choice(value, name, choices):
            if not isinstance(value, str) or value not in choices:
                raise InputError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
            return value

        method = choice(self.method, "method", METHODS)
        lambda_schedule = self.lambda_schedule
        if lambda_schedule is None:
            lambda_schedule = DEFAULT_LAMBDA_SCHEDULE.get(method, "constant")
        settings = {
            "method": method,
            "lambda_schedule": choice(lambda_schedule, "lambda_schedule", LAMBDA_SCHEDULES),
            "learning_rate_schedule": choice(self.learning_rate_schedule, "learning_rate_schedule",
                                             LEARNING_RATE_SCHEDULES),
            "mmd_estimator": choice(self.mmd_estimator, "mmd_estimator", ESTIMATORS),
            "encoder_units": _check_units(self.encoder_units, "encoder_units"),
            "bottleneck": _check_int(self.bottleneck, "bottleneck", 1),
            "discriminator_units": _check_units(self.discriminator_units, "discriminator_units"),
            "epochs": _check_int(self.epochs, "epochs", 1),
            "steps_per_epoch": None if self.steps_per_epoch is None
            else _check_int(self.steps_per_epoch, "steps_per_epoch", 1),
            "batch_size": _check_int(self.batch_size, "batch_size", 2),
            "learning_rate": _check_number(self.learning_rate, "learning_rate", 0.0, strict=True),
            "momentum": _check_number(self.momentum, "momentum", 0.0, maximum=1.0),
            "weight_decay": _check_number(self.weight_decay, "weight_decay", 0.0),
            "trade_off": _check_number(self.trade_off, "trade_off", 0.0),
            "encoder_learning_rate_scale": _check_number(self.encoder_learning_rate_scale,
                                                         "encoder_learning_rate_scale", 0.0),
            "n_kernels": _check_int(self.n_kernels, "n_kernels", 1),
            "kernel_factor": _check_number(self.kernel_factor, "kernel_factor", 0.0, strict=True),
        }
        if not (self.encoder is None or isinstance(self.encoder, keras.Model) or callable(self.encoder)):
            raise InputError(f"encoder must be None, a keras.Model or a callable that builds one, "
                             f"not {type(self.encoder).__name__}")
        try:
            rng = check_random_state(self.random_state)
        except ValueError as error:
            raise InputError(f"random_state: {error}") from None
        # an integer is the seed itself; None or a RandomState draws one (a new network every fit)
        settings["seed"] = (int(self.random_state) if isinstance(self.random_state, numbers.Integral)
                            else int(rng.randint(2**31 - 1)))
        return settings

    def _scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def _make_encoder(self, example_shape, settings: dict) -> keras.Model:
        """A new encoder for this fit; ``example_shape`` (one sample's, or None: unknown) is checked against it."""
        if self.encoder is None:
            if len(example_shape) != 1:
                raise InputError(f"encoder=None builds a vector encoder for samples x features; these samples "
                                 f"have shape {example_shape}: pass an encoder (a keras.Model) for them")
            return vector_encoder(example_shape[0], units=settings["encoder_units"])
        if isinstance(self.encoder, keras.Model):
            encoder = keras.models.clone_model(self.encoder)
            encoder.set_weights(self.encoder.get_weights())
        else:
            encoder = self.encoder()
            if not isinstance(encoder, keras.Model):
                raise InputError(f"the encoder builder returned {type(encoder).__name__}, not a keras.Model")
        expected = tuple(encoder.input_shape[1:])
        if example_shape is not None and (len(expected) != len(example_shape) or any(
                e is not None and s is not None and e != s for e, s in zip(expected, example_shape, strict=True))):
            raise InputError(f"samples of shape {example_shape} do not fit the encoder's input {expected}")
        return encoder

    # ------------------------------------------------------------------ data
    def _example_shape(self, data, labelled: bool):
        """The shape of one sample; None where a dataset's encoder decides (a dataset may be batched
        or not, and only the encoder's input rank tells which)."""
        if isinstance(data, tf.data.Dataset):
            if self.encoder is not None:
                return None
            spec = data.element_spec
            shape = tuple((spec[0] if isinstance(spec, tuple) else spec).shape)
            return shape[-1:] if len(shape) in (1, 2) else shape  # vectors, batched or not
        x = data[0] if labelled and isinstance(data, (tuple, list)) else data
        return tuple(np.shape(x)[1:])

    def _examples(self, data, labelled: bool, rank: int, n_classes: int | None = None):
        """An unbatched dataset of (x, y) (labelled) or x, and its size (None if unknown)."""
        if isinstance(data, tf.data.Dataset):
            spec = data.element_spec
            paired = isinstance(spec, tuple)
            x_spec = spec[0] if paired else spec
            if len(x_spec.shape) == rank + 1:
                data = data.unbatch()
            elif len(x_spec.shape) != rank:
                raise InputError(f"dataset elements of shape {x_spec.shape} do not fit an encoder of "
                                 f"{rank}-d samples")
            if labelled and not paired:
                raise InputError("the source dataset must yield (inputs, labels) pairs")
            if not labelled and paired:
                data = data.map(lambda x, *rest: x)  # the target's labels go no further
            if x_spec.dtype != tf.float32:  # the networks compute in float32, as for arrays
                data = data.map(lambda x, *y: (tf.cast(x, tf.float32), *y) if y else tf.cast(x, tf.float32))
            size = int(data.cardinality())
            return data, (size if size >= 0 else None)
        if labelled:
            if not isinstance(data, (tuple, list)) or len(data) != 2:
                raise InputError("the source must be (inputs, labels) arrays or a dataset of such pairs")
            x, y = np.asarray(data[0], np.float32), np.asarray(data[1]).ravel()
            if len(x) != len(y):
                raise InputError(f"{len(x)} source inputs but {len(y)} labels")
            if len(y) and (not np.all(np.mod(y, 1) == 0) or y.min() < 0 or y.max() >= n_classes):
                raise InputError(f"source labels must be class indices in 0..{n_classes - 1}")
            return tf.data.Dataset.from_tensor_slices((x, y.astype(np.int32))), len(x)
        if isinstance(data, (tuple, list)) and len(data) == 2 and np.ndim(data[1]) == 1:
            data = data[0]  # (x, y): the labels are dropped here
        x = np.asarray(data, np.float32)
        return tf.data.Dataset.from_tensor_slices(x), len(x)

    def _training_batches(self, source, target, rank: int, n_classes: int, settings: dict, labelled_target=None):
        """Endless ((source x, source y), target x) batches of ``batch_size`` each, reshuffled every pass
        (and a third, (x, y) of ``labelled_target``, when given); returns the dataset and the two domain sizes."""
        source_examples, source_size = self._examples(source, True, rank, n_classes)
        target_examples, target_size = self._examples(target, False, rank)
        for size, name in ((source_size, "source"), (target_size, "target")):
            if size is not None and size < 1:
                raise InputError(f"the {name} data is empty")
        batch_size, seed = settings["batch_size"], settings["seed"]

        def endless(examples, size, salt):
            buffer = size if size is not None else 10_000
            examples = examples.shuffle(buffer, seed=seed * 1009 + salt, reshuffle_each_iteration=True)
            return examples.repeat().batch(batch_size, drop_remainder=True)

        streams = [endless(source_examples, source_size, 1), endless(target_examples, target_size, 2)]
        if labelled_target is not None:
            known_examples, known_size = self._examples(labelled_target, True, rank, n_classes)
            if known_size is not None and known_size < 1:
                raise InputError("the labelled target data is empty")
            streams.append(endless(known_examples, known_size, 3))
        batches = tf.data.Dataset.zip(tuple(streams))
        return batches.prefetch(tf.data.AUTOTUNE), source_size, target_size

    # -------------------------------------------------------------- fitting
    def fit(self, X, y, Xt=None, *, on_epoch_end=None):
        """Train on labelled (X, y) and the unlabelled target ``Xt``; returns self.

        ``Xt`` here or as the parameter, not both. Without either, X is its
        own target (no adaptation; see the class docstring). ``on_epoch_end``
        as in ``fit_domains``.
        """
        X, y = validate_data(self, X, y, dtype=np.float32, allow_nd=True)
        check_classification_targets(y)
        if Xt is not None and self.Xt is not None:
            raise InputError("the target samples were given twice: as the Xt parameter and to fit; give them once")
        Xt = self.Xt if Xt is None else Xt
        if Xt is None:
            target = X
        else:
            target = check_array(Xt, dtype=np.float32, allow_nd=True, input_name="Xt", estimator=self)
            if target.shape[1:] != X.shape[1:]:
                raise InputError(f"Xt's samples have shape {target.shape[1:]} but X's {X.shape[1:]}; "
                                 "both domains must live in the same input space")
        classes, codes = np.unique(y, return_inverse=True)
        self.classes_ = classes
        self._train((X, codes.ravel().astype(np.int32)), target, len(classes), X.shape[1:],
                    on_epoch_end=on_epoch_end, description=None)
        return self

    def fit_domains(self, source, target=None, *, n_classes: int, labelled_target=None, on_epoch_end=None,
                    description: str | None = None):
        """Train on ``source`` (``(x, y)`` arrays or a dataset of pairs, y in 0..n_classes-1) and
        ``target`` (arrays or a dataset; None: the source's inputs); returns self.

        The lower-level entry of the training command: datasets of images
        are not scikit-learn's to validate, and its classes are the folder's,
        whichever of them the source's training rows contain
        (``classes_ = arange(n_classes)``). ``on_epoch_end(epoch, row)`` may
        return more values for the epoch's row (a source-validation score).

        ``labelled_target``: None, or a few target samples whose labels are
        known, as ``source`` is given. Each step then also draws a batch of
        them (``batch_size``, repeated as needed) and l_c is the mean over
        the source and that batch together (the S+T objective of
        semi-supervised adaptation, Saito et al. 2019); the adaptation loss
        still compares the source batch with the unlabelled target batch.
        No other target label is looked at.
        """
        n_classes = _check_int(n_classes, "n_classes", 1)
        if target is None:
            target = source.map(lambda x, y: x) if isinstance(source, tf.data.Dataset) else source
        example_shape = self._example_shape(source, labelled=True)
        self.classes_ = np.arange(n_classes)
        for stale in ("n_features_in_", "feature_names_in_"):  # from an earlier fit(X, y)
            self.__dict__.pop(stale, None)
        self._train(source, target, n_classes, example_shape, on_epoch_end=on_epoch_end, description=description,
                    labelled_target=labelled_target)
        encoder_input = self.network_.encoder.input_shape
        if len(encoder_input) == 2 and encoder_input[1] is not None:
            self.n_features_in_ = int(encoder_input[1])
        return self

    def _train(self, source, target, n_classes: int, example_shape: tuple, on_epoch_end, description,
               labelled_target=None):
        settings = self._settings()
        keras.utils.set_random_seed(settings["seed"])
        with self._scope():
            encoder = self._make_encoder(example_shape, settings)
            conditional = settings["method"] in ("cdan", "cdan+e")
            network = build_network(encoder, n_classes, settings["bottleneck"], settings["discriminator_units"],
                                    with_discriminator=settings["method"] in ADVERSARIAL,
                                    discriminator_inputs=map_dim(settings["bottleneck"], n_classes)
                                    if conditional else None)
        rank = len(encoder.input_shape) - 1
        batches, source_size, target_size = self._training_batches(source, target, rank, n_classes, settings,
                                                                    labelled_target)
        steps_per_epoch = settings["steps_per_epoch"]
        if steps_per_epoch is None:
            if source_size is None or target_size is None:
                raise InputError("datasets of unknown size need steps_per_epoch")
            steps_per_epoch = max(1, math.ceil(max(source_size, target_size) / settings["batch_size"]))
        epochs = settings["epochs"]
        # what on_epoch_end may already use (predictions on validation data)
        self.network_ = network
        self.statistics_ = {}
        self._forward = self._make_forward(network)
        with self._scope():
            groups = self._optimizers(network, max(1, epochs * steps_per_epoch), settings)
        self.optimizer_ = groups[-1][0]  # the new layers' optimizer: its learning rate is lr_p
        replicas = 1 if self.strategy is None else int(self.strategy.num_replicas_in_sync)
        step = self._make_step(network, groups, settings, replicas, labelled=labelled_target is not None)
        quiet = contextlib.nullcontext() if self.verbose else contextlib.redirect_stdout(io.StringIO())
        with quiet:
            self.history_ = train_loop(
                step, batches, epochs=epochs, steps_per_epoch=steps_per_epoch, on_epoch_end=on_epoch_end,
                description=description or settings["method"], progress_bar=bool(self.verbose),
                strategy=self.strategy,
            )
        self.statistics_ = {"source": adabn.get_statistics(self.batchnorm_layers())}
        if settings["method"] == "adabn":
            self.adapt_batchnorm(target)

    # -------------------------------------------------------------- training
    def _optimizers(self, network, total_steps: int, settings: dict):
        """(optimizer, variables) pairs: the new layers at lr0, a pretrained encoder at a scaled lr0."""
        head_variables = network.bottleneck.trainable_variables + network.classifier.trainable_variables
        if network.discriminator is not None:
            head_variables += network.discriminator.trainable_variables
        groups = []
        encoder_variables = network.encoder.trainable_variables
        rate = settings["learning_rate"]
        if encoder_variables:
            groups.append((self._sgd(rate * settings["encoder_learning_rate_scale"], total_steps, settings),
                           encoder_variables))
        groups.append((self._sgd(rate, total_steps, settings), head_variables))
        for optimizer, variables in groups:
            optimizer.build(variables)
        return groups

    @staticmethod
    def _sgd(rate: float, total_steps: int, settings: dict):
        schedule = AnnealedLearningRate(rate, total_steps, settings["learning_rate_schedule"])
        return keras.optimizers.SGD(learning_rate=schedule, momentum=settings["momentum"],
                                    weight_decay=settings["weight_decay"] or None)

    @staticmethod
    def _make_step(network, groups, settings: dict, replicas: int = 1, labelled: bool = False):
        """The training step for ``common.loop.train_loop``: step(batch, progress) -> logged scalars.

        Each of the ``replicas`` computes its share of the global batch's loss
        (the summed gradients are one device's); the logged values are this
        replica's, which the loop averages. With ``labelled`` each batch carries a third part, labelled
        target samples, which join the source in l_c (not in the adaptation loss)."""
        method = settings["method"]
        global_batch = settings["batch_size"]
        trade_off, lambda_schedule = settings["trade_off"], settings["lambda_schedule"]
        variables = [variable for _, group in groups for variable in group]
        discrepancy = None
        if method == "dan":
            discrepancy = MultipleKernelMMD(settings["n_kernels"], settings["kernel_factor"], settings["mmd_estimator"])
        elif method == "coral":
            discrepancy = CorrelationAlignment()
        adversarial = DomainAdversarialLoss(network.discriminator) if method == "dann" else None
        conditional = None
        if method in ("cdan", "cdan+e"):
            conditional = ConditionalAdversarialLoss(
                network.discriminator, int(network.bottleneck.output_shape[-1]), network.num_classes,
                entropy_conditioning=method == "cdan+e", seed=settings["seed"])

        def step(batch, progress):
            if labelled:  # the source and the known target samples: one labelled batch of 2B
                (source_x, source_y), target_x, (known_x, known_y) = batch
                inputs = tf.concat([source_x, tf.cast(known_x, source_x.dtype)], axis=0)
                labels = tf.concat([tf.cast(source_y, tf.int32), tf.cast(known_y, tf.int32)], axis=0)
            else:
                (source_x, source_y), target_x = batch
                inputs, labels = source_x, source_y
            weight = trade_off * adaptation_weight(progress, lambda_schedule)
            values = {}
            with tf.GradientTape() as tape:
                count, labelled_count = tf.shape(source_x)[0], tf.shape(inputs)[0]
                if method in ("source-only", "adabn"):
                    labelled_features = network.features(inputs, training=True)
                    source_features, target_features = labelled_features[:count], None
                else:
                    both = network.features(tf.concat([inputs, target_x], axis=0), training=True)
                    labelled_features = both[:labelled_count]
                    source_features, target_features = both[:count], both[labelled_count:]
                if conditional is not None:  # D is conditioned on the target's predictions too
                    both_logits = network.classifier(both, training=True)
                    logits = both_logits[:labelled_count]
                else:
                    logits = network.classifier(labelled_features, training=True)
                per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=tf.cast(labels, tf.int32), logits=logits)
                classification = tf.nn.compute_average_loss(
                    per_example, global_batch_size=global_batch * (2 if labelled else 1))
                if labelled:
                    values["l_c_target"] = tf.reduce_mean(per_example[count:])
                total = classification
                if discrepancy is not None:
                    distance = tf.cast(discrepancy(source_features, target_features), total.dtype) / replicas
                    total = total + weight * distance
                    values["l_A"] = distance * replicas
                if adversarial is not None:
                    domain_loss, domain_accuracy = adversarial(
                        source_features, target_features, weight, training=True, global_batch_size=2 * global_batch,
                    )
                    total = total + domain_loss
                    values["l_d"] = domain_loss * replicas
                    values["discriminator_accuracy"] = domain_accuracy
                if conditional is not None:
                    domain_loss, domain_accuracy = conditional(
                        source_features, target_features, logits[:count], both_logits[labelled_count:], weight,
                        training=True,
                        global_batch_size=2 * global_batch,
                    )
                    total = total + domain_loss
                    values["l_d"] = domain_loss * replicas
                    values["discriminator_accuracy"] = domain_accuracy
            gradients = tape.gradient(total, variables)
            start = 0
            for optimizer, group in groups:
                optimizer.apply_gradients(zip(gradients[start : start + len(group)], group, strict=True))
                start += len(group)
            correct = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), tf.cast(labels, tf.int32))
            values = {"l_c": classification * replicas, **values}
            if discrepancy is not None or adversarial is not None or conditional is not None:
                values["lambda"] = weight
            return {
                **values,
                "learning_rate": tf.convert_to_tensor(groups[-1][0].learning_rate),
                "accuracy": tf.reduce_mean(tf.cast(correct, tf.float32)),
            }

        return step

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
        examples, _ = self._examples(target, False, len(self.network_.encoder.input_shape) - 1)
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
    @staticmethod
    def _make_forward(network):
        """Made in ``fit`` (and after unpickling), so that predicting adds nothing to the adapter."""
        signature = tf.TensorSpec([None, *network.encoder.input_shape[1:]], tf.float32)

        @tf.function(input_signature=[signature])
        def forward(inputs):
            features = network.features(inputs, training=False)
            return features, tf.nn.softmax(network.classifier(features, training=False))

        return forward

    def _outputs(self, X, domain: str, batch_size: int):
        check_is_fitted(self, "network_")
        if isinstance(X, tf.data.Dataset):
            examples, _ = self._examples(X, False, len(self.network_.encoder.input_shape) - 1)
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
            self._forward = self._make_forward(self.network_)
