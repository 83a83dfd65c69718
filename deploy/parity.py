"""How far each exported format is from the Keras model, on the same validation batches.

A deployment format is only as good as its agreement with the model that was
scored: ``measure`` feeds the Keras model and every written format the same
batches of validation pixels and returns, per format, the largest and mean
absolute difference in class probabilities, the accuracy and its change, how
many images changed their top class and the seconds per image.
``deploy.export`` writes that to parity.json and shows it with ``print_parity``.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from deploy.runtime import class_probabilities, load_format


def measure(model, folder: Path, formats: list[str], validation, indices, class_names, image_size, batch_size) -> dict:
    """Run the Keras model and every written format over the same batches of validation pixels."""
    from common.data import make_dataset

    runners = {name: load_format(folder, name) for name in formats}
    paths = [validation.paths[i] for i in indices]
    labels = validation.labels[indices]
    data = make_dataset(paths, labels, (image_size, image_size), batch_size)
    reference, outputs, seconds = [], {name: [] for name in runners}, {name: 0.0 for name in ["keras", *runners]}
    for pixels, _ in data:
        pixels = np.asarray(pixels, dtype=np.float32)
        start = time.perf_counter()
        reference.append(class_probabilities(model(pixels, training=False), len(class_names)))
        seconds["keras"] += time.perf_counter() - start
        for name, runner in runners.items():
            start = time.perf_counter()
            outputs[name].append(class_probabilities(runner(pixels), len(class_names)))
            seconds[name] += time.perf_counter() - start
    reference = np.concatenate(reference)
    keras_accuracy = float(np.mean(reference.argmax(1) == labels))
    results = {}
    for name, parts in outputs.items():
        probabilities = np.concatenate(parts)
        accuracy = float(np.mean(probabilities.argmax(1) == labels))
        difference = np.abs(probabilities - reference)
        results[name] = {
            "max_abs_diff": float(np.max(difference)),
            "mean_abs_diff": float(np.mean(difference)),
            "accuracy": accuracy,
            "accuracy_change": accuracy - keras_accuracy,
            "changed_top_class": int(np.sum(probabilities.argmax(1) != reference.argmax(1))),
            "seconds_per_image": seconds[name] / len(labels),
        }
    return {"keras_accuracy": keras_accuracy, "keras_seconds_per_image": seconds["keras"] / len(labels),
            "formats": results, "n_images": int(len(labels))}


def print_parity(parity: dict) -> None:
    print(f"Keras model: accuracy {parity['keras_accuracy']:.4f} on {parity['n_images']} images, "
          f"{parity['sizes_bytes']['model.keras'] / 2**20:.2f} MiB")
    print(f"{'format':<12} {'max |diff|':>11} {'accuracy':>9} {'change':>8} {'MiB':>7}")
    for name, result in parity["formats"].items():
        print(f"{name:<12} {result['max_abs_diff']:>11.2e} {result['accuracy']:>9.4f} "
              f"{result['accuracy_change']:>+8.4f} {result['size_bytes'] / 2**20:>7.2f}")
    for name, why in parity["left_out"].items():
        print(f"{name:<12} left out: {why}")
