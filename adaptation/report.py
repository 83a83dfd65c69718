"""What an adaptation run measures and writes once training is over.

The target is scored here (its labels read for the first and only time), the
two domains are compared before (the pretrained backbone's features) and
after (the adapted bottleneck) with MMD^2 and the proxy A-distance, and the
run folder gets its files: ``history.csv``, ``steps.csv``, the curves, the
2-D picture of both domains, the target's confusion matrix and a
``model.keras`` that takes pixels, whichever way the encoder was trained.
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

import keras
import numpy as np

from adaptation.adapter import DomainAdapter
from adaptation.inputs import predict_views
from adaptation.measures import domain_mmd2, proxy_a_distance
from adaptation.plots import plot_epochs, plot_features, plot_steps
from common.predict import MODEL_FILE, write_labels
from common.reports import classification_metrics, plot_confusion, write_history
from common.training import save_model


def score(adapter: DomainAdapter, prepared: dict, class_names) -> tuple[dict, float]:
    """(the target's classification metrics, the source validation accuracy) of the adapted classifier."""
    target = classification_metrics(prepared["target_labels"],
                                    predict_views(adapter, prepared["target_views"], "target"), class_names)
    predicted = predict_views(adapter, prepared["source_validation_views"], "source").argmax(axis=1)
    return target, float(np.mean(predicted == prepared["source_validation"][1]))


def measure(adapter: DomainAdapter, prepared: dict, seed: int) -> tuple[dict, tuple]:
    """MMD^2 and the proxy A-distance before and after, and the 'after' features of both domains."""
    started = time.perf_counter()
    print("measuring the domains' distance before and after (MMD^2, proxy A-distance)", flush=True)
    after_source = adapter.transform(prepared["source_all"][0], domain="source")
    after_target = adapter.transform(prepared["target_all"], domain="target")
    before = prepared["before_source"], prepared["before_target"]
    measures = {
        "mmd2": {"before": domain_mmd2(*before, seed=seed), "after": domain_mmd2(after_source, after_target, seed=seed)},
        "a_distance": {"before": proxy_a_distance(*before, seed=seed),
                       "after": proxy_a_distance(after_source, after_target, seed=seed)},
    }
    print(f"  {time.perf_counter() - started:.1f} s", flush=True)
    return measures, (after_source, after_target)


def saved_model(args, adapter: DomainAdapter, prepared: dict) -> keras.Model:
    """Pixels (0..255) in, class probabilities out, whichever way the encoder was trained."""
    network = adapter.network_
    name = f"adapted_{args.backbone}_{args.method.replace('-', '_')}"
    if prepared["frozen"] is None:
        return network.full_model(name=name)
    from common.backbones import build_model

    def head(pooled):
        return keras.layers.Softmax(name="probabilities")(network.classifier(network.bottleneck(pooled)))

    model, _ = build_model(args.backbone, args.weights, args.image_size, head=head, pooling="avg",
                           base=prepared["frozen"].base, name=name)
    return model


def write_steps(path, steps: list[dict]) -> Path:
    """Every training step's logged values, one row each (the per-step curves of the papers)."""
    keys = list(steps[0]) if steps else []
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(steps)
    return Path(path)


def write_run(folder, args, adapter: DomainAdapter, history, prepared: dict, after: tuple, target: dict,
              class_names, title: str) -> None:
    """The run folder's files besides config.json and metrics.json (module docstring)."""
    folder = Path(folder)
    epochs = history.epochs
    write_history(folder / "history.csv", {key: [row.get(key) for row in epochs] for key in epochs[0]})
    write_steps(folder / "steps.csv", history.steps)
    plot_epochs(epochs, folder / "curves.png", title=title)
    plot_steps(history.steps, folder / "steps.png", title=title)
    plot_confusion(target["confusion_matrix"], class_names, folder / "confusion.png",
                   title=f"target confusion ({title})")
    print(f"drawing the domains before and after ({args.embedding})", flush=True)
    plot_features(
        [(f"before: {args.backbone} features", prepared["before_source"], prepared["before_target"]),
         (f"after: {args.method} bottleneck", *after)],
        prepared["source_all"][1], prepared["target_labels"], class_names, folder / "features.png",
        method=args.embedding, seed=args.seed,
    )
    save_model(saved_model(args, adapter, prepared), folder / MODEL_FILE)
    write_labels(folder, class_names)


def print_summary(metrics: dict, target_name: str, target_images: int, training_seconds: float) -> None:
    """The run's results, the target's first."""
    print(f"target accuracy {metrics['target_accuracy']:.4f} ({target_name}, {target_images} images)")
    for name, accuracy in metrics["target_per_class_accuracy"].items():
        print(f"  {name:>12s}: {accuracy:.4f}" if accuracy is not None else f"  {name:>12s}: -")
    print(f"source validation accuracy {metrics['source_val_accuracy']:.4f}")
    mmd2, a_distance = metrics["mmd2"], metrics["a_distance"]
    print(f"MMD^2 {mmd2['before']:.4f} -> {mmd2['after']:.4f}, "
          f"proxy A-distance {a_distance['before']:.3f} -> {a_distance['after']:.3f}")
    print(f"trained {metrics['trained']}: {metrics['steps']} steps, {training_seconds:.1f} s")
