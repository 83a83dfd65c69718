"""Stage 1 of the cats-vs-dogs lab: bottleneck features, then a small classifier on them.

    python -m cats_dogs.bottleneck                       # textbook: VGG16, 150x150, 50 epochs
    python -m cats_dogs.bottleneck --backbone mobilenet_v2 \\
        --weights ../shared/weights/mobilenet_v2_1.0_224_no_top.h5

The pretrained convolutional base turns every training and validation image
into its last feature map once; the features go to the on-disk cache, so a
second run (or a run killed half-way) computes nothing it already has. A top
model (Flatten, Dense 256, Dropout 0.5, Dense 1 sigmoid; rmsprop) is then
trained on the cached features. The run's one model file, ``model.keras``
(pixels in: the base with the top model on it, no optimizer state), is what
``python -m cats_dogs.predict`` uses, and its layer ``top_model`` is where
``python -m cats_dogs.finetune`` starts (the slides save the top model's
weights to a file of their own, ``bottleneck_fc_model.h5``, E27).

Where the slides' Keras 2 code is not followed (docs/textbook-errata.md): no
``ImageDataGenerator(rescale=1/255)`` (E16, E23: the backbone's own
``preprocess_input`` is inside the model), and ``Model.predict`` on tf.data in
place of ``predict_generator`` with hard-coded labels (E18, E19).
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import time

import keras

from cats_dogs.model import OUTPUT_PARENT, build_top_model, full_model, load_splits, loss_for, make_parser
from common import cli
from common.backbones import build_model, weights_fingerprint
from common.errors import main_guard
from common.features import FeatureCache, cache_namespace, extract_features
from common.predict import write_labels
from common.reports import classification_metrics, predictions_and_losses
from common.run import Run


def parse_args(argv=None):
    return cli.resolve(make_parser(__doc__).parse_args(argv))


@main_guard
def main(argv=None) -> dict:
    args = parse_args(argv)
    start = time.perf_counter()
    train, validation = load_splits(args.data_dir, args.limit)
    with Run(args, "bottleneck", parent=OUTPUT_PARENT, config={"class_names": train.class_names}) as run:
        print(f"{len(train)} training and {len(validation)} validation images, classes {train.class_names}")

        # 1. Bottleneck features, computed once per image and cached on disk.
        extractor, base = build_model(args.backbone, args.weights, args.image_size)
        namespace = cache_namespace(args.backbone, weights_fingerprint(base), args.image_size, None)
        cache = FeatureCache(args.cache_dir, namespace)
        train_features = extract_features(extractor, train.paths, cache, args.image_size, args.batch_size,
                                          "train features")
        validation_features = extract_features(extractor, validation.paths, cache, args.image_size,
                                               args.batch_size, "validation features")
        # Labels are selected by the indices that came out of the same pass.
        train_labels = train.labels[train_features.kept]
        validation_labels = validation.labels[validation_features.kept]
        feature_seconds = train_features.seconds + validation_features.seconds
        computed = train_features.computed + validation_features.computed
        print(f"features: {computed} computed, {train_features.reused + validation_features.reused} "
              f"from the cache {cache.directory}, {feature_seconds:.1f} s")

        # 2. The top model, trained on the cached features.
        top = build_top_model(train_features.features.shape[1:], train.num_classes)
        top.compile(optimizer=keras.optimizers.RMSprop(learning_rate=run.learning_rate(0.001)),
                    loss=loss_for(train.num_classes), metrics=["accuracy"])
        fit_start = time.perf_counter()
        history = run.fit(top, (train_features.features, train_labels), batch_size=args.batch_size,
                          validation=(validation_features.features, validation_labels), epochs=args.epochs)
        fit_seconds = time.perf_counter() - fit_start
        run.save(full_model(args.backbone, base, top))  # the top model inside, as the layer finetune reads
        write_labels(run.folder, train.class_names)

        # 3. Report on the validation images.
        # The last epoch's model (nothing is restored), its loss scored as Model.fit logged it (from the logits).
        probabilities, losses = predictions_and_losses(top, (validation_features.features, validation_labels))
        metrics = classification_metrics(validation_labels, probabilities, train.class_names, losses)
        metrics.update(
            stage="bottleneck",
            reported_epoch=len(history.history.get("val_loss", [])),
            n_train=int(len(train_labels)),
            n_val=int(len(validation_labels)),
            backbone=args.backbone,
            weights=str(args.weights),
            image_size=args.image_size,
            epochs=args.epochs,
            features_computed=int(computed),
            features_reused=int(train_features.reused + validation_features.reused),
            feature_seconds=round(feature_seconds, 2),
            fit_seconds=round(fit_seconds, 2),
            skipped_images=[path for path, _ in train.skipped + validation.skipped + train_features.skipped
                            + validation_features.skipped],
            seconds=round(time.perf_counter() - start, 2),
        )
        return run.finish(history.history, metrics, title=f"bottleneck ({args.backbone})")


if __name__ == "__main__":
    main()
