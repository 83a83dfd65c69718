"""A tiny seeded training run under a given --distribute mode, for tests/test_common_distribute.py.

    python tests/distribute_tiny.py MODE OUT_DIR [--logical-cpus N] [--binary]

Trains a small CNN for a few steps on drawn images through common.distribute
and writes weights.npy and history.json into OUT_DIR (the chief's run
folder); run in a subprocess, because logical devices and
MultiWorkerMirroredStrategy must be set up before TensorFlow starts.
"""
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main():
    mode, out = sys.argv[1], Path(sys.argv[2])
    import numpy as np
    import tensorflow as tf

    if "--logical-cpus" in sys.argv:
        count = int(sys.argv[sys.argv.index("--logical-cpus") + 1])
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    from common import distribute

    distribution = distribute.setup(mode)
    import keras
    from conftest import draw_folder

    from common.data import load_image_folder, make_dataset

    keras.utils.set_random_seed(0)
    images = out.parent / "images"
    if not images.exists():
        draw_folder(images, count=16, seed=3)
    folder = load_image_folder(images)
    with distribution.scope():
        model = keras.Sequential([
            keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
            # --binary: cats vs dogs' head, one sigmoid output against labels of shape (N,)
            keras.layers.Dense(1, activation="sigmoid") if "--binary" in sys.argv
            else keras.layers.Dense(2, activation="softmax"),
        ])
        model.compile(optimizer=keras.optimizers.SGD(0.5),
                      loss="binary_crossentropy" if "--binary" in sys.argv else "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
    train = distribution.dataset(
        lambda batch, shard: make_dataset(folder.paths, folder.labels, (16, 16), batch, shuffle=True, seed=1,
                                          shard=shard),
        global_batch_size=8,
    )
    validation = make_dataset(folder.paths, folder.labels, (16, 16), 8)
    run_dir = distribution.make_run_dir(str(out), "unused", "tiny")
    history = distribute.fit(model, train, epochs=2, steps_per_epoch=4, validation=validation,
                             distribution=distribution, verbose=0)
    np.save(run_dir / "weights.npy", np.concatenate([w.numpy().ravel() for w in model.weights]))
    (run_dir / "history.json").write_text(json.dumps({**history.history, **distribution.describe(),
                                                       "chief": distribution.is_chief}))
    print(f"worker {distribution.worker_index} wrote {run_dir}", flush=True)
    distribution.finish()


if __name__ == "__main__":
    main()
