"""12.4.1's question on a real ImageNet network: freeze the first n blocks, fine-tune the rest.

Used by ``python -m digits.transferability --backbone mobilenet_v2 --weights FILE
--data-dir .../flower_photos``. Here A is ImageNet (the backbone's pretrained
weights) and B a flower collection; unlike the digits' AnB, the layers above
the cut keep their pretrained weights and are fine-tuned (the usual
finetune of 12.4.2), so the curve says how much of a pretrained network can
stay frozen before B's accuracy suffers. Each depth is scored once on a
held-out split of B; no depth is chosen by it.
"""
from __future__ import annotations

import re

import numpy as np

from common.backbones import build_model, freeze_below
from common.data import load_image_folder, make_dataset, split_per_class

_BLOCK = re.compile(r"^(block_?\d+|mixed\d+)")


def block_starts(base) -> list[tuple[str, int]]:
    """(block name, index of its first layer) in order: MobileNetV2's block_N, VGG's blockN, Inception's mixedN."""
    starts, seen = [], set()
    for index, layer in enumerate(base.layers):
        match = _BLOCK.match(layer.name)
        if match and match.group(1) not in seen:
            seen.add(match.group(1))
            starts.append((match.group(1), index))
    return starts


def grid(count: int, points: int = 5) -> list[int]:
    """A coarse grid of frozen-block counts from 0 (all trainable) to ``count`` (every block frozen)."""
    return sorted({int(round(i * count / (points - 1))) for i in range(points)})


def run(args, progress) -> dict:
    """Fine-tune once per depth of the grid; return the curve and what was measured on."""
    import keras

    folder = load_image_folder(args.data_dir)
    labels = folder.labels
    keep = np.concatenate([np.flatnonzero(labels == c)[: args.limit or None] for c in range(folder.num_classes)])
    paths, labels = [folder.paths[i] for i in keep], labels[keep]
    train, test = split_per_class(labels, 0.3, seed=0, class_names=folder.class_names)
    size = (args.image_size, args.image_size)
    train_data = make_dataset([paths[i] for i in train], labels[train], size, args.batch_size, shuffle=True,
                              seed=args.seed, cache_in_memory=True)
    test_data = make_dataset([paths[i] for i in test], labels[test], size, 64, cache_in_memory=True)
    starts = block_starts(build_model(args.backbone, args.weights, args.image_size)[1])
    depths = grid(len(starts))
    accuracies, trainable = [], []
    for n in progress(depths, desc="depths", unit="model"):
        keras.utils.set_random_seed(args.seed)
        head = keras.layers.Dense(folder.num_classes, activation="softmax", name="head")
        model, base = build_model(args.backbone, args.weights, args.image_size, head=head, pooling="avg")
        blocks = block_starts(base)
        freeze_below(base, blocks[n][1] if n < len(blocks) else "none")
        model.compile(optimizer=keras.optimizers.Adam(args.learning_rate), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(train_data, epochs=args.epochs, verbose=0)
        predicted = model.predict(test_data, verbose=0).argmax(axis=1)
        accuracies.append(float(np.mean(predicted == labels[test])))
        trainable.append(int(sum(int(w.shape.num_elements()) for w in model.trainable_weights)))
        keras.backend.clear_session(free_memory=True)
    return {"frozen_blocks": depths, "blocks": len(starts), "accuracy": accuracies, "trainable_weights": trainable,
            "classes": folder.class_names, "n_train": int(len(train)), "n_test": int(len(test)),
            "split": "accuracy on a held-out 30 % of each class of --data-dir (seed 0), each model scored once"}
