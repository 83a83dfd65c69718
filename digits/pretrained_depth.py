"""12.4.1's question on a real ImageNet network: freeze the first n blocks, fine-tune the rest.

Used by ``python -m digits.transferability --backbone mobilenet_v2 --weights FILE
--data-dir .../flower_photos``. Here A is ImageNet (the backbone's pretrained
weights) and B a flower collection; unlike the digits' AnB, the layers above
the cut keep their pretrained weights and are fine-tuned (the usual
finetune of 12.4.2), so the curve says how much of a pretrained network can
stay frozen before B's accuracy suffers. The new head is trained first on
the frozen base (a linear probe, 50 epochs at 1e-3), and every depth starts
its fine-tuning from that head. Each depth is scored once on a held-out
split of B; no depth is chosen by it.
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
    # The new head first, on the frozen base's pooled features (computed once): every depth then starts
    # fine-tuning from the same trained head, as 12.4.2's finetune does, so a depth is not judged by how
    # fast a random head learns at the fine-tuning rate.
    extractor, base = build_model(args.backbone, args.weights, args.image_size, pooling="avg")
    starts = block_starts(base)
    depths = grid(len(starts))
    in_order = make_dataset([paths[i] for i in train], labels[train], size, 64)   # unshuffled: rows match labels
    features, train_labels = extractor.predict(in_order, verbose=0), labels[train]
    keras.utils.set_random_seed(args.seed)
    head = keras.Sequential([keras.Input(features.shape[1:]),
                             keras.layers.Dense(folder.num_classes, activation="softmax", name="head")])
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    head.fit(features, train_labels, epochs=50, batch_size=32, verbose=0)
    head_weights = head.get_weights()
    accuracies, trainable = [], []
    for n in progress(depths, desc="depths", unit="model"):
        keras.utils.set_random_seed(args.seed)
        layer = keras.layers.Dense(folder.num_classes, activation="softmax", name="head")
        model, base = build_model(args.backbone, args.weights, args.image_size, head=layer, pooling="avg")
        layer.set_weights(head_weights)
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
