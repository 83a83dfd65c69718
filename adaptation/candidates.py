"""One training per candidate lambda, with the command's settings, and the choice without target labels.

The deep methods' weight lambda (eq. 21-22) cannot be validated on target
labels, which unsupervised adaptation does not have; ``--trade-off auto``
therefore trains once per value of the grid from the same starting point and
keeps the candidate whose predictions on the unlabelled target are the most
confident (``adaptation.selection``). ``adaptation.train`` and
``adaptation.benchmark`` both train through ``train_once``, so a row of the
table is what the training command would have given.
"""
from __future__ import annotations

import time

import numpy as np

from adaptation.adapter import DomainAdapter
from adaptation.inputs import frozen, predict_views
from adaptation.selection import prediction_entropy
from common.selection import dev_risk
from common.training import set_seed

#: the papers train pretrained layers at a tenth of the new layers' rate
PRETRAINED_RATE_SCALE = 0.1
#: the methods without a lambda: one training, whatever --trade-off says
NO_TRADE_OFF = ("source-only", "adabn")


def make_adapter(args, encoder, pretrained: bool, trade_off: float = 1.0, strategy=None,
                 steps_per_epoch=None) -> DomainAdapter:
    """The command's flags as a ``DomainAdapter`` (the same settings for every method)."""
    return DomainAdapter(
        encoder, args.method, epochs=args.epochs, steps_per_epoch=steps_per_epoch, verbose=True,
        bottleneck=args.bottleneck, batch_size=args.batch_size, learning_rate=args.learning_rate,
        momentum=args.momentum, weight_decay=args.weight_decay, learning_rate_schedule=args.lr_schedule,
        trade_off=trade_off, lambda_schedule=args.lambda_schedule,
        encoder_learning_rate_scale=PRETRAINED_RATE_SCALE if pretrained else 1.0,
        n_kernels=args.kernels, mmd_estimator=args.estimator, random_state=args.seed, strategy=strategy,
    )


def trade_off_candidates(args) -> list[float]:
    """The values of lambda's maximum to train with: the grid for --trade-off auto, else the one given."""
    if args.method in NO_TRADE_OFF:
        return [0.0]
    if args.trade_off == "auto":
        return list(args.trade_off_grid)
    return [float(args.trade_off)]


def train_once(args, pair, prepared, trade_off: float, encoder_weights=None, board=None, strategy=None) -> dict:
    """One training with lambda's maximum ``trade_off``; its target entropy is the only target statistic.

    ``encoder_weights``: where every candidate starts from (they share one
    encoder), or None. ``board(model, optimizer)``: a TensorBoard writer for
    this training's epochs (``Run.board``), or None. ``strategy``: the run's
    ``tf.distribute`` strategy for the replicated step, or None.
    """
    set_seed(args.seed)
    if encoder_weights is not None:
        prepared["encoder"].set_weights(encoder_weights)
    steps_per_epoch = None
    if not frozen(args):
        steps_per_epoch = -(-max(prepared["source_train_size"], prepared["target_train_size"]) // args.batch_size)
    adapter = make_adapter(args, prepared["encoder"], pretrained=not frozen(args), trade_off=trade_off,
                           strategy=strategy, steps_per_epoch=steps_per_epoch)
    validation_labels = prepared["source_validation"][1]
    writer = []  # made at the first epoch's end, once the optimizer exists

    def on_epoch_end(epoch, row):
        probabilities = predict_views(adapter, prepared["source_validation_views"], "source")
        extra = {"source_val_accuracy": float(np.mean(probabilities.argmax(axis=1) == validation_labels))}
        if board is not None:
            if not writer:
                writer.append(board(adapter.network_.full_model(), adapter.optimizer_))
            if writer[0] is not None:
                writer[0].on_epoch_end(epoch - 1, {key: float(value) for key, value in {**row, **extra}.items()
                                                   if key != "epoch"})
        return extra

    started = time.perf_counter()
    label = f"{args.method} {pair.direction}" + (f" trade-off {trade_off:g}" if args.method not in NO_TRADE_OFF else "")
    history = adapter.fit_domains(prepared["source_train"], prepared["target_train"], n_classes=len(pair.class_names),
                                  labelled_target=prepared.get("target_labelled"), on_epoch_end=on_epoch_end,
                                  description=label).history_
    seconds = time.perf_counter() - started
    if writer and writer[0] is not None:
        writer[0].on_train_end()
    # unsupervised: the predicted distributions on the unlabelled target, no labels
    entropy = prediction_entropy(predict_views(adapter, prepared["target_views"], "target"))
    return {"adapter": adapter, "history": history, "trade_off": trade_off, "target_entropy": entropy,
            "dev_risk": deep_embedded_validation(adapter, prepared, args.seed),
            "source_val_accuracy": history.epochs[-1]["source_val_accuracy"], "seconds": seconds,
            "encoder_weights": prepared["encoder"].get_weights() if encoder_weights is not None else None}


#: source training rows the DEV domain classifier reads at most (a logistic regression on bottleneck features)
DEV_ROWS = 4000


def deep_embedded_validation(adapter, prepared, seed: int) -> float | None:
    """DEV (You et al. 2019, ``common.selection``) of a trained adapter: its source validation losses,
    importance-weighted towards the target by a domain classifier on its own bottleneck features.
    Label-free on the target; None where the inputs are images rather than cached features."""
    if not isinstance(prepared["source_train"], tuple) or not isinstance(prepared["source_train"][0], np.ndarray):
        return None  # images through the backbone (--unfreeze-from): no cached features to weigh
    source_x = prepared["source_train"][0]
    validation_x, validation_y = prepared["source_validation"]
    if len(validation_y) < 2:
        return None
    rows = np.random.default_rng(seed).permutation(len(source_x))[:DEV_ROWS]
    probabilities = adapter.predict_proba(validation_x, domain="source")
    losses = -np.log(np.clip(probabilities[np.arange(len(validation_y)), validation_y], 1e-12, 1.0))
    return dev_risk(adapter.transform(source_x[rows], domain="source"), adapter.transform(validation_x, domain="source"),
                    losses, adapter.transform(prepared["target_all"], domain="target"), random_state=seed)
