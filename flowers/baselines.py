"""The textbook's two other rows of Table 2: an SVM on handcrafted features and a small CNN from scratch.

    python -m flowers.baselines
    python -m flowers.baselines --deep-run runs/flowers/train-mobilenet --cnn-epochs 10

Both are trained on exactly the images ``flowers.train`` trains on (the
``train/`` originals and their ``train_views/``) and measured on the same 200
validation originals per class, so the three rows of Table 2 compare methods,
not splits.

- SVM: per image, a global colour feature (an HSV histogram, 8x8x8 bins, OpenCV)
  and a local shape feature (HOG of the 128x128 grey image: 16-pixel cells,
  2x2-cell blocks, 9 orientations, scikit-image), standardised; an RBF-kernel
  SVM (scikit-learn) on the concatenation.
- CNN: four convolution / max-pooling blocks, global average pooling, dropout,
  softmax, trained from random weights on small images.

The deep-transfer row is read from a ``flowers.train`` run folder (``--deep-run``,
default the newest one); the whole table goes to ``table2.md``.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import json
import pickle
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from common import cli
from common.data import make_dataset, warn_skipped
from common.errors import UserError, main_guard
from common.predict import MODEL_FILE, write_labels
from common.reports import classification_metrics, finish_run, label_metrics, plot_confusion, print_summary
from common.training import latest_run, make_run_dir, save_config, set_seed, standard_callbacks
from flowers.data import DEFAULT_DATA_DIR, OUTPUT_PARENT, PreparedFlowers, load_prepared
from flowers.table2 import row_from_metrics, write_table2

HOG_SIZE = 128
HISTOGRAM_BINS = (8, 8, 8)


def parse_args(argv=None):
    parser = cli.parser_from_doc(__doc__)
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help=f"the folder written by flowers.prepare (default: {DEFAULT_DATA_DIR})"
    )
    data.add_argument("--output-dir", default=None, help=f"this run's folder (default: a new {OUTPUT_PARENT}/baselines-<time>/)")
    data.add_argument(
        "--deep-run", default=None,
        help=f"flowers.train run folder for the deep-transfer row (default: the newest {OUTPUT_PARENT}/train-*)"
    )
    svm = parser.add_argument_group("SVM on handcrafted features")
    svm.add_argument("--svm-c", type=float, default=10.0, help="SVM regularisation C (default: 10)")
    svm.add_argument("--skip-svm", action="store_true", help="leave out the SVM row")
    cnn = parser.add_argument_group("small CNN from scratch")
    cnn.add_argument("--cnn-size", type=int, default=96, help="input size of the CNN (default: 96)")
    cnn.add_argument("--cnn-epochs", type=int, default=20, help="(default: 20)")
    cnn.add_argument("--batch-size", type=int, default=32, help="(default: 32)")
    cnn.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    cnn.add_argument("--skip-cnn", action="store_true", help="leave out the CNN row")
    cli.add_tensorboard_argument(cnn)
    parser.add_argument("--seed", type=int, default=0, help="(default: 0)")
    args = parser.parse_args(argv)
    if args.skip_svm and args.skip_cnn:
        parser.error("nothing to do: both --skip-svm and --skip-cnn")
    if args.cnn_size < 16 or args.cnn_epochs < 1 or args.batch_size < 1:
        parser.error("--cnn-size must be at least 16, --cnn-epochs and --batch-size at least 1")
    if not args.learning_rate > 0 or not args.svm_c > 0:
        parser.error("--learning-rate and --svm-c must be positive")
    return args


# ---------------------------------------------------------------- SVM row
def handcrafted_features(path) -> np.ndarray | None:
    """Colour histogram (global, L1-normalised) + HOG (local) of one image, or None if OpenCV cannot read it."""
    import cv2
    from skimage.feature import hog
    from sklearn.preprocessing import normalize

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)  # BGR
    if image is None:
        return None
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    histogram = cv2.calcHist([hsv], [0, 1, 2], None, list(HISTOGRAM_BINS), [0, 180, 0, 256, 0, 256]).reshape(1, -1)
    grey = cv2.cvtColor(cv2.resize(image, (HOG_SIZE, HOG_SIZE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    # Dalal-Triggs HOG with OpenCV's HOGDescriptor parameters (which OpenCV 5 no longer ships).
    shape = hog(grey, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2), block_norm="L2-Hys")
    return np.concatenate([normalize(histogram, norm="l1")[0], shape]).astype(np.float32)


def feature_matrix(paths, description: str):
    rows, kept, skipped = [], [], []
    for index, path in enumerate(tqdm(paths, desc=description, unit="img")):
        feature = handcrafted_features(path)
        if feature is None:
            skipped.append((str(path), "OpenCV cannot read it"))
            continue
        rows.append(feature)
        kept.append(index)
    if skipped:
        warn_skipped(skipped)
    return np.stack(rows), np.asarray(kept, dtype=int), skipped


def svm_row(data: PreparedFlowers, c: float, run_dir: Path) -> dict:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    start = time.perf_counter()
    class_names = data.class_names
    x_train, kept_train, skipped_train = feature_matrix(data.train_paths, "handcrafted features (train)")
    x_validation, kept_validation, skipped_validation = feature_matrix(data.validation_paths, "handcrafted features (validation)")
    y_train, y_validation = data.train_labels[kept_train], data.validation_labels[kept_validation]
    feature_seconds = time.perf_counter() - start
    print(f"SVM: {x_train.shape[1]} features per image; fitting on {len(y_train)} images")
    classifier = make_pipeline(StandardScaler(), SVC(C=c, kernel="rbf", gamma="scale"))
    classifier.fit(x_train, y_train)
    metrics = label_metrics(y_validation, classifier.predict(x_validation), class_names)  # an SVM gives no probabilities
    metrics.update(
        method="SVM (RBF) on HSV colour histogram + HOG",
        n_features=int(x_train.shape[1]),
        n_train=int(len(y_train)),
        n_val=int(len(y_validation)),
        feature_seconds=round(feature_seconds, 2),
        seconds=round(time.perf_counter() - start, 2),
        skipped=[list(s) for s in skipped_train + skipped_validation],
    )
    with open(run_dir / "svm.pkl", "wb") as handle:
        pickle.dump(classifier, handle)
    plot_confusion(metrics["confusion_matrix"], class_names, run_dir / "confusion_svm.png", title="SVM, handcrafted features")
    print(f"SVM: val_accuracy {metrics['val_accuracy']:.4f} ({metrics['seconds']:.1f} s)")
    return metrics


# ---------------------------------------------------------------- CNN row
def build_small_cnn(size: int, classes: int):
    """A small CNN from random weights; raw pixels in, rescaled inside like every model here."""
    import keras

    inputs = keras.Input((size, size, 3), name="pixels")
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for filters in (32, 64, 128, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.5)(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def cnn_row(data: PreparedFlowers, args, run_dir: Path) -> tuple[dict, dict]:
    import keras

    start = time.perf_counter()
    size = (args.cnn_size, args.cnn_size)
    train = make_dataset(data.train_paths, data.train_labels, size, args.batch_size, shuffle=True, seed=args.seed,
                         cache_in_memory=True)
    validation = make_dataset(data.validation_paths, data.validation_labels, size, 64, cache_in_memory=True)
    model = build_small_cnn(args.cnn_size, len(data.class_names))
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=args.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    # No checkpoint selection on the validation set: the last epoch is reported.
    history = model.fit(
        train, validation_data=validation, epochs=args.cnn_epochs,
        callbacks=standard_callbacks(run_dir, tensorboard_log=args.tensorboard), shuffle=False, verbose=2,
    )
    probabilities = model.predict(validation, verbose=0)
    metrics = classification_metrics(data.validation_labels, probabilities, data.class_names)
    metrics.update(
        method=f"small CNN from scratch ({args.cnn_size}x{args.cnn_size}, {args.cnn_epochs} epochs)",
        n_train=len(data.train_labels),
        n_val=len(data.validation_labels),
        epochs=args.cnn_epochs,
        seconds=round(time.perf_counter() - start, 2),
    )
    model.save(run_dir / MODEL_FILE)
    print(f"CNN: val_accuracy {metrics['val_accuracy']:.4f} ({metrics['seconds']:.1f} s)")
    return metrics, history.history


def deep_rows(deep_run, data: PreparedFlowers, data_dir) -> list:
    """The deep-transfer row(s) from a flowers.train run folder, if there is one scored on the same split.

    Table 2 compares methods on the same validation images; a run on another
    data folder, other classes or another split would compare splits. Named
    with --deep-run it is refused; found as the newest default run it is left
    out, with a note.
    """
    run = Path(deep_run) if deep_run else latest_run(OUTPUT_PARENT, "train", "metrics.json")
    if run is None:
        print(f"no flowers.train run under {OUTPUT_PARENT}/: Table 2 is written without the deep-transfer row")
        return []
    metrics_file = run / "metrics.json"
    if not metrics_file.is_file():
        raise UserError(f"--deep-run {run} holds no metrics.json; point it at a finished flowers.train run")
    metrics = json.loads(metrics_file.read_text())
    config_file = run / "config.json"
    trained_on = json.loads(config_file.read_text()).get("data_dir") if config_file.is_file() else None
    problems = []
    if trained_on is not None and Path(trained_on).resolve() != Path(data_dir).resolve():
        problems.append(f"it was trained on {trained_on}")
    if metrics.get("class_names") != list(data.class_names):
        problems.append(f"its classes are {metrics.get('class_names')}")
    if metrics.get("n_val") not in (None, len(data.validation_paths)):
        problems.append(f"it was scored on {metrics['n_val']} validation images, not {len(data.validation_paths)}")
    if problems:
        why = f"{run} is not a run on this data folder ({data_dir}): {'; '.join(problems)}"
        if deep_run:
            raise UserError(f"--deep-run {why}; Table 2 compares methods on the same validation images")
        print(f"note: Table 2 is written without the deep-transfer row: the newest {why}")
        return []
    backbone = metrics.get("backbone", "?")
    rows = [row_from_metrics(f"this project: deep transfer, {backbone}, stage 2 ({run.name})", metrics["stage2"])]
    if metrics.get("stage3"):
        rows.append(row_from_metrics(f"this project: deep transfer, {backbone}, stage 3 ({run.name})", metrics["stage3"]))
    return rows


@main_guard
def main(argv=None):
    args = parse_args(argv)
    set_seed(args.seed)
    started = time.perf_counter()
    data = load_prepared(args.data_dir)
    deep = deep_rows(args.deep_run, data, args.data_dir)  # checked before the long work starts
    run_dir = make_run_dir(args.output_dir, OUTPUT_PARENT, "baselines")
    save_config(run_dir, vars(args))
    write_labels(run_dir, data.class_names)

    rows, metrics, history = [], {}, {}
    if not args.skip_svm:
        metrics["svm"] = svm_row(data, args.svm_c, run_dir)
        rows.append(row_from_metrics("this project: SVM, HSV histogram + HOG", metrics["svm"]))
    if not args.skip_cnn:
        metrics["cnn"], history = cnn_row(data, args, run_dir)
        rows.append(row_from_metrics(f"this project: small CNN from scratch, {args.cnn_epochs} epochs", metrics["cnn"]))
    rows.extend(deep)
    # The top-level keys describe the trained Keras model when there is one (the CNN), else the SVM.
    main_metrics = metrics.get("cnn") or metrics["svm"]
    summary = {
        **{k: v for k, v in main_metrics.items() if k != "seconds"},
        "val_loss": main_metrics.get("val_loss"),
        "backbone": "none (handcrafted features / trained from scratch)",
        "seconds": round(time.perf_counter() - started, 2),
        **metrics,
    }
    write_table2(run_dir, rows, data.class_names)
    finish_run(run_dir, history, summary, title="flowers baselines")
    print((run_dir / "table2.md").read_text())
    print_summary(run_dir, summary)
    return run_dir


if __name__ == "__main__":
    main()
