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

Each method's step is ``adaptation.steps``', the batches ``adaptation.streams``',
the method table (``METHODS``, ``ADVERSARIAL``, ``DEFAULT_LAMBDA_SCHEDULE``)
and the parameter checks ``adaptation.settings``', the fresh encoder of each fit
``adaptation.model``'s; what a fitted adapter answers (predictions per domain,
AdaBN's statistics, pickling) is ``adaptation.fitted``'s mixin.

Under a ``tf.distribute`` strategy (``strategy=``) the networks and
optimizers are created in its scope and each step runs per replica; the
losses are averaged over the global batch.
"""
from __future__ import annotations

import contextlib
import io
import math

import keras
import numpy as np
import tensorflow as tf
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, validate_data

from adaptation import adabn, steps, streams
from adaptation.cdan import map_dim
from adaptation.fitted import FittedAdapter
from adaptation.model import BOTTLENECK_UNITS, DISCRIMINATOR_UNITS, build_network, fresh_encoder
from adaptation.settings import ADVERSARIAL, check_int, checked_settings
from common.loop import train_loop
from mmd.validation import InputError


class DomainAdapter(FittedAdapter, ClassifierMixin, TransformerMixin, BaseEstimator):
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
        """The parameters checked, as the training uses them (one line per mistake; ``adaptation.settings``)."""
        return checked_settings(self)

    def _scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

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
        n_classes = check_int(n_classes, "n_classes", 1)
        if target is None:
            target = source.map(lambda x, y: x) if isinstance(source, tf.data.Dataset) else source
        example_shape = streams.example_shape(source, labelled=True, encoder=self.encoder)
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
            encoder = fresh_encoder(self.encoder, example_shape, settings["encoder_units"])
            conditional = settings["method"] in ("cdan", "cdan+e")
            network = build_network(encoder, n_classes, settings["bottleneck"], settings["discriminator_units"],
                                    with_discriminator=settings["method"] in ADVERSARIAL,
                                    discriminator_inputs=map_dim(settings["bottleneck"], n_classes)
                                    if conditional else None)
        rank = len(encoder.input_shape) - 1
        batches, source_size, target_size = streams.training_batches(source, target, rank, n_classes, settings,
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
        self._forward = steps.make_forward(network)
        with self._scope():
            groups = steps.optimizers(network, max(1, epochs * steps_per_epoch), settings)
        self.optimizer_ = groups[-1][0]  # the new layers' optimizer: its learning rate is lr_p
        replicas = 1 if self.strategy is None else int(self.strategy.num_replicas_in_sync)
        step = steps.make_step(network, groups, settings, replicas, labelled=labelled_target is not None)
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
