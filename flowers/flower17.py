"""The chapter's exercise: Oxford flower17 with VGG16, its first five layers frozen, and a new dense top.

    python -m flowers.flower17 --data-dir ../shared/data/flower17                 # classes 0 and 1
    python -m flowers.flower17 --data-dir ../shared/data/flower17 --classes all \\
        --backbone mobilenet_v2 --weights ../shared/weights/mobilenet_v2_1.0_224_no_top.h5

Flower17 is 17 classes x 80 photos, ``jpg/image_0001.jpg`` .. ``image_1360.jpg``,
class = (number - 1) // 80. The chosen classes are split 7:1 per class (70
training, 10 validation photos) into ``--split-dir`` as ``train/<k>`` and
``validation/<k>``; the raw data folder is only read.

The model is the textbook's: the pretrained base without its top, the layers
before ``--unfreeze-from`` frozen (the textbook's ``layers[:5]``), then Flatten,
Dense 1024 relu, Dropout 0.5, Dense 1024 relu, Dense softmax; categorical
cross-entropy, SGD with learning rate 1e-4 and momentum 0.9, batch 16, up to
100 epochs, with the textbook's augmentation (horizontal flip, zoom 0.3, shifts
0.3, rotation 30 degrees, nearest fill). A checkpoint of the best model and
early stopping (patience 10) both watch ``val_accuracy``; the checkpoint is the
run's ``model.keras`` itself (the textbook's ``vgg16_1.h5``), without the
optimizer's state.

Fixed from the textbook (each point a row of docs/textbook-errata.md): the
validation images are not augmented (E25); an epoch is one pass over the 70
training photos per class, not ``nb_train_samples = 300`` (E26); ``Model.fit``
on tf.data with ``SGD(learning_rate=...)`` and ``keras.Model(inputs, outputs)``
replace ``fit_generator``, ``lr=`` and ``output=`` (E16, E18, E20, E22); the
callbacks monitor ``val_accuracy`` (Keras 3's name; with the text's
``mode='auto'`` Keras 3 refuses ``val_acc`` at the start of ``fit``, E21); the
final single-image prediction converts OpenCV's BGR to RGB and uses exactly the
training preprocessing (the backbone's ``preprocess_input`` is inside the
model, and the resize is the training pipeline's; E23, E24).

``python -m flowers.prepare --flower17`` places the photos in the default
``data/flower17/jpg/``; without them there (or another ``--data-dir``) the
archive is downloaded from its official URL into Keras's cache. Offline: put
``17flowers.tgz`` in ``$KERAS_HOME/datasets/``, or unpack it and pass
``--data-dir`` the folder holding ``jpg/``.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from common import cli
from common.augment import Augmenter
from common.backbones import build_model, freeze_below
from common.data import check_image_file, load_image_folder, make_dataset, split_per_class, warn_skipped
from common.errors import UserError, main_guard
from common.files import check_apart
from common.flower_sets import FLOWER17_CLASSES as CLASSES
from common.flower_sets import FLOWER17_DEFAULT_DIR as DEFAULT_DATA_DIR
from common.flower_sets import FLOWER17_FILE as FILE_PATTERN
from common.flower_sets import FLOWER17_PER_CLASS as IMAGES_PER_CLASS
from common.flower_sets import find_images
from common.predict import MODEL_FILE, read_image_opencv, write_labels
from common.regularizers import add_regularization_arguments, check_regularization_arguments, regularize
from common.reports import classification_metrics, predictions_and_losses
from common.run import Run

OUTPUT_PARENT = "runs/flower17"
VALIDATION_FRACTION = 1 / 8  # 7:1, 70 / 10 of 80
TEXTBOOK_AUGMENTATION = dict(
    horizontal_flip=True, zoom_range=0.3, width_shift_range=0.3, height_shift_range=0.3,
    rotation_range=30, fill_mode="nearest",
)


def parse_args(argv=None):
    parser = cli.parser_from_doc(__doc__)
    cli.add_common_arguments(
        parser,
        data_dir=DEFAULT_DATA_DIR,
        output_parent=OUTPUT_PARENT,
        backbone="vgg16",
        image_size=224,
        epochs=100,
        batch_size=16,
        data_help="the raw flower17 folder, the one that holds jpg/ (only read; downloaded if it is the default and missing)",
    )
    group = parser.add_argument_group("flower17")
    group.add_argument(
        "--classes", nargs="+", default=["0", "1"],
        help="class numbers 0..16 to train on, at least two, or 'all' (default: 0 1)",
    )
    group.add_argument(
        "--split-dir", default=None,
        help="where the train/<k> and validation/<k> split is written (default: data/flower17_split/<classes>-seed<seed>)",
    )
    cli.add_unfreeze_argument(group, default="5", why="the textbook's layers[:5] frozen")
    group.add_argument("--learning-rate", type=float, default=1e-4,
                       help="learning rate of --optimizer (default: 1e-4)")
    group.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                       help="sgd: the textbook's SGD with momentum 0.9; adam: Adam, which fine-tunes a MobileNetV2 "
                       "base from layers[:5] with the textbook's head in a few epochs, where SGD at 1e-4 stayed at "
                       "chance for three (flowers/README.md) (default: sgd)")
    group.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs, 0 for none (default: 10)")
    group.add_argument(
        "--predict", default=None, metavar="IMAGE",
        help="image to classify at the end, read with OpenCV (default: the first validation image)",
    )
    add_regularization_arguments(parser.add_argument_group("regularisation (002, 4.1.3)"))
    args = cli.resolve(parser.parse_args(argv))
    check_regularization_arguments(args)
    args.class_numbers = parse_classes(args.classes)
    return args


def parse_classes(values: list[str]) -> list[int]:
    if [v.lower() for v in values] == ["all"]:
        return list(range(CLASSES))
    numbers = []
    for value in values:
        try:
            number = int(value)
        except ValueError:
            raise UserError(f"--classes takes class numbers 0..{CLASSES - 1} or 'all', not {value!r}") from None
        if not 0 <= number < CLASSES:
            raise UserError(f"--classes {number} is outside 0..{CLASSES - 1} (flower17 has {CLASSES} classes)")
        numbers.append(number)
    numbers = sorted(set(numbers))
    if len(numbers) < 2:
        raise UserError("--classes needs at least two different classes")
    return numbers


def make_split(images_dir: Path, class_numbers: list[int], split_dir: Path, seed: int, data_dir: Path | None = None) -> dict:
    """Copy the chosen classes into split_dir/{train,validation}/<k>, 7:1 per class (seeded)."""
    for protected in (images_dir, data_dir or images_dir):
        check_apart(split_dir, protected, flag="--split-dir")
    paths, labels, skipped = [], [], []
    for file in sorted(images_dir.iterdir()):
        match = FILE_PATTERN.match(file.name)
        if not match:
            continue
        number = (int(match.group(1)) - 1) // IMAGES_PER_CLASS
        if number not in class_numbers:
            continue
        reason = check_image_file(file)
        if reason is not None:
            skipped.append((str(file), reason))
            continue
        paths.append(file)
        labels.append(number)
    if skipped:
        warn_skipped(skipped)
    labels = np.asarray(labels)
    for number in class_numbers:
        count = int((labels == number).sum())
        if round(count * VALIDATION_FRACTION) < 1:
            raise UserError(
                f"class {number} has {count} readable image(s) in {images_dir}: too few for a 7:1 split "
                "(at least 4 are needed, 80 expected)"
            )
    train_index, validation_index = split_per_class(labels, VALIDATION_FRACTION, seed=seed)
    record = {
        "source": str(images_dir.resolve()),
        "classes": class_numbers,
        "seed": seed,
        "train": [paths[i].name for i in train_index],
        "validation": [paths[i].name for i in validation_index],
        "skipped": [list(s) for s in skipped],
    }
    record_file = split_dir / "split.json"
    if record_file.exists():
        if json.loads(record_file.read_text()) == record:
            return record
        raise UserError(f"{split_dir} holds a different split; choose another --split-dir or delete it")
    if split_dir.exists() and any(split_dir.iterdir()):
        raise UserError(f"--split-dir {split_dir} exists and is not empty; choose a new folder")
    for part, indices in (("train", train_index), ("validation", validation_index)):
        for i in indices:
            target = split_dir / part / f"{labels[i]:02d}"
            target.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(paths[i], target / paths[i].name)
    record_file.write_text(json.dumps(record, indent=1) + "\n")
    return record


def textbook_head(classes: int) -> keras.Sequential:
    """The textbook's new top: Flatten, Dense 1024 relu, Dropout 0.5, Dense 1024 relu, Dense softmax."""
    return keras.Sequential(
        [
            keras.layers.Flatten(),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dropout(0.5),
            keras.layers.Dense(1024, activation="relu"),
            keras.layers.Dense(classes, activation="softmax"),
        ],
        name="flower17_head",
    )


@main_guard
def main(argv=None):
    args = parse_args(argv)
    started = time.perf_counter()
    if args.predict:   # checked now, not after the whole training
        reason = check_image_file(Path(args.predict))
        if reason is not None:
            raise UserError(f"--predict {args.predict}: {reason}")
    data_dir = Path(args.data_dir)
    images_dir = find_images(data_dir)
    label = "all" if len(args.class_numbers) == CLASSES else "-".join(str(k) for k in args.class_numbers)
    split_dir = Path(args.split_dir or f"data/flower17_split/{label}-seed{args.seed}")
    record = make_split(images_dir, args.class_numbers, split_dir, args.seed, data_dir)
    train = load_image_folder(split_dir / "train", description="flower17 training split", limit=args.limit)
    validation = load_image_folder(split_dir / "validation", train.class_names, description="flower17 validation split",
                                   limit=args.limit)
    class_names = train.class_names
    classes = len(class_names)
    print(f"classes {', '.join(class_names)}: {len(train)} training, {len(validation)} validation images ({split_dir})")

    config = {"split_dir": str(split_dir), "augmentation": TEXTBOOK_AUGMENTATION}
    with Run(args, f"classes-{label}", parent=OUTPUT_PARENT, config=config) as run:
        write_labels(run.folder, class_names)
        size = (args.image_size, args.image_size)
        augmenter = Augmenter(**TEXTBOOK_AUGMENTATION, seed=args.seed)
        train_data = run.images(train.paths, train.labels, size, args.batch_size, shuffle=True, seed=args.seed,
                                augment=augmenter, one_hot=classes, cache_in_memory=True)
        # Validation images are never augmented.
        validation_data = make_dataset(validation.paths, validation.labels, size, args.batch_size, one_hot=classes,
                                       cache_in_memory=True)

        model, base = build_model(
            args.backbone, args.weights, args.image_size, head=textbook_head(classes), name=f"flower17_{args.backbone}"
        )
        frozen = freeze_below(base, args.unfreeze_from)
        regularization = regularize(args, base, None, model)  # L2-SP's start: the pretrained weights, as loaded
        rate = run.learning_rate(args.learning_rate)
        model.compile(
            optimizer=(keras.optimizers.SGD(learning_rate=rate, momentum=0.9) if args.optimizer == "sgd"
                       else keras.optimizers.Adam(learning_rate=rate)),
            loss="categorical_crossentropy",
            metrics=["accuracy"],
        )
        frozen_names = [layer.name for layer in base.layers[:frozen]]
        print(f"{args.backbone}: {frozen} of {len(base.layers)} base layers frozen "
              f"({', '.join(frozen_names[:6])}{' ...' if frozen > 6 else ''})")
        fit_start = time.perf_counter()
        history = run.fit(model, train_data, steps_per_epoch=-(-len(train) // args.batch_size),
                          validation=validation_data, epochs=args.epochs,
                          callbacks=run.callbacks(MODEL_FILE, patience=args.patience))
        fit_seconds = time.perf_counter() - fit_start
        epochs_run = len(history.history["loss"])

        # The best checkpoint (on val_accuracy) is the model that is reported and used: the run's model file.
        best = keras.saving.load_model(run.folder / MODEL_FILE)
        probabilities, losses = predictions_and_losses(best, validation_data, loss="categorical_crossentropy")
        metrics = classification_metrics(validation.labels, probabilities, class_names, losses)
        metrics.update(
            n_train=len(train),
            n_val=len(validation),
            backbone=args.backbone,
            weights=args.weights,
            classes=args.class_numbers,
            frozen_layers=frozen,
            regularization=regularization,
            frozen_layer_names=frozen_names,
            base_layers=len(base.layers),
            epochs_run=epochs_run,
            best_epoch=int(np.argmax(history.history["val_accuracy"])) + 1,
            reported_epoch=int(np.argmax(history.history["val_accuracy"])) + 1,  # the best checkpoint's epoch
            fit_seconds=round(fit_seconds, 2),
            seconds=round(time.perf_counter() - started, 2),
            skipped=record["skipped"],
        )

        # The textbook's last step: one image through OpenCV, the probability vector and its argmax.
        image = Path(args.predict) if args.predict else Path(validation.paths[0])
        pixels = read_image_opencv(image, args.image_size)
        vector = np.asarray(best.predict_on_batch(pixels[None]))[0]
        predicted = class_names[int(vector.argmax())]
        metrics["single_image"] = {"image": str(image), "probabilities": vector.round(6).tolist(), "argmax": predicted}
        np.set_printoptions(precision=4, suppress=True)
        print(f"{image}: probabilities {vector}")
        print(f"argmax: class {predicted}")
        print(f"{epochs_run} epochs ({fit_seconds:.0f} s), best epoch {metrics['best_epoch']}")
        run.finish(history.history, metrics, title=f"flower17, classes {label}, {args.backbone}")
    return run.folder


if __name__ == "__main__":
    main()
