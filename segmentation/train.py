"""Segment the left ventricle in cardiac MRI (textbook 12.5.2): U-Net, TLBSN or the transfer-learning GAN.

    python -m segmentation.train --method gan --backbone mobilenet_v2 \\
        --weights ../shared/weights/mobilenet_v2_1.0_224_no_top.h5
    python -m segmentation.train --method tlbsn --backbone mobilenet_v2 --weights PATH
    python -m segmentation.train --method unet
    python -m segmentation.train --method gan            # VGG16 with ImageNet weights (downloads them)

Methods: ``unet`` a U-Net trained from scratch; ``tlbsn`` the segmentation
network whose encoder is an ImageNet classifier's base (VGG16 by default, as
in the textbook), trained with a pixel loss; ``gan`` the same network as the
generator of a GAN with a multi-scale discriminator, trained on eq. 24,
``min_G max_D V(G, D) + beta * L_pixel``, Adam for both networks.

Data (``--data-dir``): ``train/images``, ``train/masks``, ``test/images``,
``test/masks``, image and mask sharing a file name (the Sunnybrook export's
layout). A few whole patients of ``train/`` are held out for validation
(``--validation-patients``); every choice (the epoch kept, the number of
encoder blocks fine-tuned, the probability threshold) is made on them, and
``test/`` is scored once, at the end (``--skip-test`` leaves it unscored, for
tuning runs).

Region of interest: one fixed 128 x 128 window for every frame, placed on the
union of the training patients' masks (never on the mask of the frame being
segmented); the prediction is pasted back and every metric is computed on the
full frame.

Layer-wise fine-tuning (figure 11): the encoder starts frozen, and
``--unfreeze E1,E2,...`` releases its top block after epoch E1, the next one
after E2, and so on; the validation Dice of every epoch is recorded with the
number of released blocks, and the best epoch fixes the depth. ``all``
trains the whole encoder from the start, ``none`` never releases it.

The output folder (default ``runs/segmentation/<method>-<time>/``) holds
config.json, history.csv (per epoch) and steps.csv (every step), validation.json
(the choices and the Dice per depth), metrics.json, per_image.csv, table3.md,
curves.png, overlays.png, model.keras (the segmentation network: pixels of
the window in, probabilities out) and segmenter.json (its window and threshold);
with ``--tensorboard``, tensorboard/ (``tensorboard --logdir RUN_DIR``).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse
import contextlib
import json
import time
from pathlib import Path

import numpy as np

from common import cli, distribute
from common.errors import UserError, main_guard
from common.training import SCHEDULES, learning_rate, save_config, set_seed
from segmentation import losses
from segmentation.data import load_pairs, split_patients
from segmentation.evaluate import MODEL_FILE, SEGMENTER_FILE, print_metrics, score_pairs, write_evaluation
from segmentation.metrics import choose_binarisation, mean_dice
from segmentation.networks import BACKBONES, encoder_blocks, set_trainable_depth
from segmentation.report import METHOD_NAMES, plot_curves, write_rows
from segmentation.roi import CropBox, segment_frames

OUTPUT_PARENT = "runs/segmentation"
DEFAULT_DATA_DIR = "../shared/data/sunnybrook_lv"
METHODS = ("unet", "tlbsn", "gan")


def parse_args(argv=None):
    parser = cli.parser_from_doc(__doc__)
    cli.add_common_arguments(
        parser,
        data_dir=DEFAULT_DATA_DIR,
        output_parent=OUTPUT_PARENT,
        backbone="vgg16",
        image_size=None,
        epochs=25,
        batch_size=10,
        data_help="folder holding train/{images,masks} and test/{images,masks}",
    )
    # No bottleneck cache here: the encoder is fine-tuned, so its features change.
    parser._option_string_actions["--cache-dir"].help = argparse.SUPPRESS
    parser._option_string_actions["--backbone"].choices = sorted(BACKBONES)   # the encoders it can mirror
    parser._option_string_actions["--image-size"].help = (
        "side of the network's input; the window is resized to it (default: --roi-size, whatever the backbone)"
    )
    method = parser.add_argument_group("method")
    method.add_argument("--method", choices=METHODS, default="gan",
                        help="unet (from scratch), tlbsn (pretrained encoder) or gan (tlbsn as the generator "
                        "of a GAN with a multi-scale discriminator) (default: gan)")
    method.add_argument("--learning-rate", type=float, default=2e-4,
                        help="Adam learning rate of both networks (default: 2e-4, the textbook's)")
    method.add_argument("--schedule", choices=SCHEDULES, default="constant",
                        help="learning rate over the run: constant (the textbook) or cosine decay to zero "
                        "(default: constant)")
    method.add_argument("--pixel-loss", choices=losses.PIXEL_LOSSES, default="l1+dice",
                        help="segmentation loss of unet and tlbsn, and the beta term of the GAN: l1 (eq. 23), "
                        "dice, bce, or a sum (default: l1+dice, eq. 23 plus a soft Dice term)")
    method.add_argument("--beta", type=float, default=100.0,
                        help="weight of the pixel loss against the adversarial loss in eq. 24 (default: 100)")
    method.add_argument("--discriminator-scales", type=int, default=3,
                        help="resolutions the discriminator judges a pair at: full, 1/2, 1/4, ... (default: 3)")
    method.add_argument("--decoder-width", type=int, default=16,
                        help="decoder filters at full resolution, doubling per level up to 128 (default: 16)")
    method.add_argument("--unfreeze", default="5,9,13,17,21",
                        help="layer-wise fine-tuning: release the encoder's top block after epoch E1, the next "
                        "after E2, ... ('E1,E2,...'); 'all' trains the whole encoder from the start, 'none' "
                        "keeps it frozen (default: 5,9,13,17,21: every block released within 25 epochs)")
    split = parser.add_argument_group("region of interest and validation")
    split.add_argument("--roi-size", type=int, default=128,
                       help="side of the fixed window cut out of every frame (default: 128, the textbook's)")
    split.add_argument("--validation-patients", type=int, default=6,
                       help="training patients held out for validation, spread over the categories (default: 6)")
    split.add_argument("--skip-test", action="store_true",
                       help="do not score test/ (tuning runs: every choice is made on validation anyway)")
    augment = parser.add_argument_group("augmentation (image and mask moved together)")
    augment.add_argument("--rotation-range", type=float, default=15.0, help="degrees (default: 15)")
    augment.add_argument("--shift-range", type=float, default=0.1, help="fraction of the window (default: 0.1)")
    augment.add_argument("--zoom-range", type=float, default=0.1, help="(default: 0.1)")
    augment.add_argument("--no-flip", dest="flip", action="store_false", help="no horizontal flips")
    augment.add_argument("--no-augment", dest="augment", action="store_false", help="no augmentation at all")
    args = parser.parse_args(argv)
    if args.roi_size < 32:
        parser.error(f"--roi-size must be at least 32, not {args.roi_size}")
    if args.decoder_width < 1 or args.discriminator_scales < 1:
        parser.error("--decoder-width and --discriminator-scales must be at least 1")
    if args.image_size is None:
        # The network sees the region of interest at its own resolution whatever the backbone:
        # common.cli would give MobileNetV2 its ImageNet 224, and upsampling the 128-pixel window
        # to 224 adds no information but triples the pixels (4x the step time on a CPU).
        args.image_size = args.roi_size
    args = cli.resolve(args)
    if args.beta < 0:   # --learning-rate, --epochs, --batch-size: cli.resolve
        parser.error("--beta must not be negative")
    args.release_after = parse_unfreeze(args.unfreeze, args.epochs, encoder_blocks(args.backbone), parser)
    late = [after for after in args.release_after if after >= args.epochs]
    if late and args.method != "unet":
        print(f"note: with --epochs {args.epochs}, the releases after epoch {', '.join(map(str, late))} of "
              f"--unfreeze {args.unfreeze} never happen")
    return args


def parse_unfreeze(text: str, epochs: int, blocks: int, parser=None) -> list[int]:
    """``--unfreeze`` as the epochs after which one more block is released (0: before training)."""
    text = text.strip().lower()
    if text == "none":
        return []
    if text == "all":
        return [0] * blocks
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = None
    problem = None
    if not values:
        problem = f"--unfreeze must be 'all', 'none' or epochs like 5,10,15, not {text!r}"
    elif len(values) > blocks:
        problem = f"--unfreeze names {len(values)} releases but the encoder has {blocks} blocks"
    elif any(b < a for a, b in zip(values, values[1:], strict=False)) or values[0] < 0:
        problem = f"--unfreeze epochs must be ascending and not negative: {text}"
    if problem:
        if parser is not None:
            parser.error(problem)
        raise UserError(problem)
    return values


def depth_at(epoch: int, release_after: list[int]) -> int:
    """Released encoder blocks during (1-based) ``epoch``."""
    return sum(1 for after in release_after if after < epoch)


def phases(epochs: int, release_after: list[int]) -> list[tuple[int, int, int]]:
    """(depth, first epoch, last epoch) runs of equal depth."""
    result: list[tuple[int, int, int]] = []
    for epoch in range(1, epochs + 1):
        depth = depth_at(epoch, release_after)
        if result and result[-1][0] == depth:
            result[-1] = (depth, result[-1][1], epoch)
        else:
            result.append((depth, epoch, epoch))
    return result


def training_dataset(images, masks, image_size: int, batch_size: int, seed: int, augmenter=None):
    """Endless shuffled batches of (pixels 0..255 with 3 channels, mask 0/1), augmented together.

    ``augmenter`` is a ``common.augment.Augmenter``: its ``pair`` moves each
    window and its mask by one draw of rotation, shift, zoom and flip.
    """
    import tensorflow as tf

    autotune = tf.data.AUTOTUNE

    def to_float(image, mask):
        image = tf.cast(image[..., None], tf.float32)
        mask = tf.cast(mask[..., None], tf.float32)
        if image.shape[1] != image_size:
            image = tf.image.resize(image, (image_size, image_size), method="bilinear")
            mask = tf.cast(tf.image.resize(mask, (image_size, image_size), method="bilinear") >= 0.5, tf.float32)
        return image, mask

    def to_rgb(image, mask):
        return tf.repeat(image, 3, axis=-1), mask

    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = dataset.batch(batch_size, drop_remainder=True).map(to_float, num_parallel_calls=autotune)
    if augmenter is not None:
        dataset = augmenter.map(dataset, masks=True)
    return dataset.map(to_rgb, num_parallel_calls=autotune).prefetch(autotune)


def make_augmenter(args):
    """ImageDataGenerator's parameter names (rotation, shift, zoom, flip), for image-mask pairs.

    12.5.2 names no augmentation, so the ranges are this project's (``--rotation-range`` ...).
    """
    from common.augment import Augmenter

    if not args.augment:
        return None
    try:
        return Augmenter(
            rotation_range=args.rotation_range, width_shift_range=args.shift_range,
            height_shift_range=args.shift_range, zoom_range=args.zoom_range, horizontal_flip=args.flip,
            fill_mode="nearest", seed=args.seed,
        )
    except ValueError as error:
        raise UserError(f"augmentation: {error}") from None


def build_networks(args):
    """(generator, encoder base or None, discriminator or None)."""
    from segmentation.discriminator import build_discriminator
    from segmentation.networks import build_tlbsn, build_unet

    if args.method == "unet":
        generator, base = build_unet(args.image_size, args.decoder_width), None
    else:
        generator, base = build_tlbsn(args.backbone, args.weights, args.image_size, args.decoder_width)
    discriminator = None
    if args.method == "gan":
        try:
            discriminator = build_discriminator(args.image_size, args.discriminator_scales)
        except ValueError as error:
            raise UserError(f"--discriminator-scales {args.discriminator_scales}: {error}") from None
    return generator, base, discriminator


def make_optimizer(args, total_steps: int, variables):
    """Adam with the textbook's learning rate, built on every variable that may ever train."""
    import keras

    optimizer = keras.optimizers.Adam(learning_rate(args.learning_rate, total_steps, args.schedule))
    optimizer.build(variables)
    return optimizer


def segmentation_step(generator, optimizer, pixel_loss):
    """One step of ``unet`` / ``tlbsn``: the pixel loss alone (eq. 23 with ``l1``)."""
    import tensorflow as tf

    def step(batch, progress):
        images, masks = batch
        with tf.GradientTape() as tape:
            probabilities = generator(images, training=True)
            loss = tf.nn.compute_average_loss(pixel_loss(masks, probabilities))
        variables = generator.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=False))
        return {"l1": tf.nn.compute_average_loss(losses.l1_loss(masks, probabilities)), "pixel_loss": loss}

    return step


def gan_step(generator, discriminator, generator_optimizer, discriminator_optimizer, pixel_loss, beta: float):
    """One step of eq. 24: the discriminator and the generator each take one Adam step.

    One generator pass serves both: the discriminator learns to score real
    pairs (image, expert mask) 1 and generated pairs (image, G(image)) 0 at
    every scale; the generator learns to make its pairs score 1 while staying
    within ``beta * L_pixel`` of the expert.
    """
    import tensorflow as tf

    def step(batch, progress):
        images, masks = batch
        with tf.GradientTape() as generator_tape, tf.GradientTape() as discriminator_tape:
            probabilities = generator(images, training=True)
            real = discriminator([images, masks], training=True)
            fake = discriminator([images, probabilities], training=True)
            discriminator_per_image, per_scale = losses.discriminator_loss(real, fake)
            adversarial = tf.nn.compute_average_loss(losses.generator_adversarial_loss(fake))
            pixel = tf.nn.compute_average_loss(pixel_loss(masks, probabilities))
            generator_loss = adversarial + beta * pixel
            discriminator_loss = tf.nn.compute_average_loss(discriminator_per_image)
        generator_variables = generator.trainable_variables
        discriminator_variables = discriminator.trainable_variables
        generator_gradients = generator_tape.gradient(generator_loss, generator_variables)
        discriminator_gradients = discriminator_tape.gradient(discriminator_loss, discriminator_variables)
        generator_optimizer.apply_gradients(zip(generator_gradients, generator_variables, strict=False))
        discriminator_optimizer.apply_gradients(zip(discriminator_gradients, discriminator_variables, strict=False))
        values = {
            "l1": tf.nn.compute_average_loss(losses.l1_loss(masks, probabilities)),
            "pixel_loss": pixel,
            "adversarial": adversarial,
            "generator_loss": generator_loss,
            "discriminator_loss": discriminator_loss,
        }
        for index, (real_logits, fake_logits) in enumerate(zip(real, fake, strict=False)):
            scale = 2**index
            values[f"d_real_scale{scale}"] = tf.reduce_mean(tf.sigmoid(real_logits))
            values[f"d_fake_scale{scale}"] = tf.reduce_mean(tf.sigmoid(fake_logits))
        return values

    return step


def train(args, fit, validation, box: CropBox, run_dir=None, strategy=None):
    """Train phase by phase (one per encoder depth); keep the epoch with the best validation Dice.

    With ``args.tensorboard``, every epoch's mean losses and validation Dice
    also go to ``run_dir/tensorboard``.

    With a ``tf.distribute`` ``strategy``, the networks and optimizers are
    built in its scope and each step runs on every replica (``train_loop``).
    """
    from common.loop import train_loop
    from common.training import tensorboard_for_loop

    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        generator, base, discriminator = build_networks(args)
        blocks = encoder_blocks(args.backbone) if base is not None else 0
        steps_per_epoch = int(np.ceil(len(fit) / args.batch_size))
        total_steps = steps_per_epoch * args.epochs
        if base is not None:
            set_trainable_depth(base, args.backbone, blocks)
        generator_optimizer = make_optimizer(args, total_steps, generator.trainable_variables)
        discriminator_optimizer = None
        if discriminator is not None:
            discriminator_optimizer = make_optimizer(args, total_steps, discriminator.trainable_variables)
    board = tensorboard_for_loop(run_dir, generator, generator_optimizer) if args.tensorboard else None
    pixel_loss = losses.pixel_loss(args.pixel_loss)
    if discriminator is None:
        step = segmentation_step(generator, generator_optimizer, pixel_loss)
    else:
        step = gan_step(generator, discriminator, generator_optimizer, discriminator_optimizer, pixel_loss, args.beta)
    dataset = training_dataset(
        box.crop(fit.images), box.crop(fit.masks), args.image_size, args.batch_size, args.seed, make_augmenter(args),
    )

    best = {"val_dice": -1.0}
    step_rows: list[dict] = []
    epoch_rows: list[dict] = []
    started = time.perf_counter()
    schedule = phases(args.epochs, args.release_after) if base is not None else [(0, 1, args.epochs)]
    for depth, first, last in schedule:
        if base is not None:
            set_trainable_depth(base, args.backbone, depth)
            print(f"encoder: {depth} of {blocks} blocks trainable from epoch {first} "
                  f"({len(generator.trainable_weights)} trainable weight tensors in the network)", flush=True)

        def on_epoch_end(epoch, row, first=first, depth=depth):
            epoch = first + epoch - 1
            probabilities = segment_frames(generator, box, validation.images)
            dice = mean_dice(probabilities, validation.masks)
            if dice > best["val_dice"]:
                best.update(val_dice=dice, epoch=epoch, depth=depth, weights=generator.get_weights())
            if board is not None:
                board.on_epoch_end(epoch - 1, {**row, "depth": depth, "val_dice": dice})
            return {"global_epoch": epoch, "depth": depth, "val_dice": dice}

        history = train_loop(
            step, dataset, epochs=last - first + 1, steps_per_epoch=steps_per_epoch,
            on_epoch_end=on_epoch_end, description=f"{args.method} (depth {depth})", strategy=strategy,
        )
        offset = len(step_rows)
        for row in history.steps:
            step_rows.append({**row, "step": offset + row["step"], "epoch": first + row["epoch"] - 1})
        for row in history.epochs:
            row = dict(row)
            row["epoch"] = row.pop("global_epoch")
            # "seconds" is the epoch's own training time (as printed); elapsed_seconds their running total over
            # every phase (train_loop's own restarts with each phase)
            row["elapsed_seconds"] = round((epoch_rows[-1]["elapsed_seconds"] if epoch_rows else 0.0)
                                           + row["seconds"], 2)
            epoch_rows.append(row)

    if board is not None:
        board.on_train_end()
    generator.set_weights(best.pop("weights"))
    probabilities = segment_frames(generator, box, validation.images)
    binarisation, by_binarisation = choose_binarisation(probabilities, validation.masks)
    train_seconds = time.perf_counter() - started
    by_depth = {}
    for row in epoch_rows:
        key = str(row["depth"])
        by_depth[key] = max(by_depth.get(key, -1.0), row["val_dice"])
    selection = {
        "epoch": best["epoch"],
        "depth": best["depth"] if base is not None else None,
        "encoder_blocks": blocks if base is not None else None,
        "val_dice_at_0.5": best["val_dice"],
        **binarisation,
        "val_dice_chosen": max(by_binarisation.values()),
        "val_dice_by_binarisation": by_binarisation,
        "best_val_dice_by_depth": by_depth if base is not None else None,
        "validation_images": len(validation),
        "validation_patients": sorted(set(validation.patients)),
    }
    return generator, discriminator, step_rows, epoch_rows, selection, train_seconds


@main_guard
def main(argv=None):
    args = parse_args(argv)
    set_seed(args.seed)
    with distribute.setup(args.distribute) as distribution:
        return run(args, distribution)


def run(args, distribution):
    """Load, train, choose on validation, score test/ once; under ``--distribute`` the networks live in its scope."""
    strategy = None if distribution.name == "none" else distribution.strategy
    args.learning_rate = distribution.learning_rate(args.learning_rate, args.scale_learning_rate)
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise UserError(
            f"data folder {data_dir} does not exist; it should hold train/{{images,masks}} and test/{{images,masks}} "
            "(the Sunnybrook Cardiac Data PNG export); pass it with --data-dir"
        )
    train_pairs = load_pairs(data_dir / "train", "training folder")
    test_pairs = None if args.skip_test else load_pairs(data_dir / "test", "test folder")
    if test_pairs is not None and test_pairs.frame != train_pairs.frame:
        raise UserError(f"test frames are {test_pairs.frame[1]}x{test_pairs.frame[0]} but training frames "
                        f"{train_pairs.frame[1]}x{train_pairs.frame[0]}")
    fit_rows, validation_rows = split_patients(train_pairs.patients, args.validation_patients, args.seed)
    fit, validation = train_pairs.subset(fit_rows), train_pairs.subset(validation_rows)
    box = CropBox.fit(fit.masks, args.roi_size)
    held = box.holds(fit.masks)
    run_dir = distribution.make_run_dir(args.output_dir, OUTPUT_PARENT, args.method)
    config = {**cli.config_of(args), **distribution.describe()}
    config.update(roi=box.to_dict(), fit_images=len(fit), validation_images=len(validation),
                  validation_patient_ids=sorted(set(validation.patients)))
    save_config(run_dir, config)
    print(f"{METHOD_NAMES[args.method]}: {len(fit)} training frames ({len(set(fit.patients))} patients), "
          f"{len(validation)} validation frames ({len(set(validation.patients))} patients)")
    print(f"region of interest: {box.size}x{box.size} at row {box.top}, column {box.left} of "
          f"{box.frame[1]}x{box.frame[0]} frames, fitted on the training masks: it holds {int(held.sum())} of "
          f"{len(held)} of them and {int(box.holds(validation.masks).sum())} of {len(validation)} validation masks")

    generator, discriminator, step_rows, epoch_rows, selection, train_seconds = train(
        args, fit, validation, box, run_dir, strategy=strategy)
    write_rows(run_dir / "steps.csv", step_rows)
    write_rows(run_dir / "history.csv", epoch_rows)
    (run_dir / "validation.json").write_text(json.dumps(selection, indent=2) + "\n")
    generator.save(run_dir / MODEL_FILE)
    if discriminator is not None:
        discriminator.save(run_dir / "discriminator.keras")
    (run_dir / SEGMENTER_FILE).write_text(json.dumps(
        {"roi": box.to_dict(), "threshold": selection["threshold"],
         "largest_component": selection["largest_component"], "image_size": args.image_size,
         "method": args.method, "backbone": args.backbone}, indent=2) + "\n")
    title = f"{METHOD_NAMES[args.method]}" + ("" if args.method == "unet" else f", {args.backbone}")
    plot_curves(step_rows, epoch_rows, run_dir / "curves.png", title=title, chosen_epoch=selection["epoch"])
    depth_note = "" if selection["depth"] is None else f", {selection['depth']} of {selection['encoder_blocks']} encoder blocks fine-tuned"
    post = ", largest region kept" if selection["largest_component"] else ""
    print(f"chosen on validation: epoch {selection['epoch']}{depth_note}, threshold {selection['threshold']}{post}, "
          f"validation Dice {selection['val_dice_chosen']:.4f}; training took {train_seconds:.0f} s")
    if test_pairs is None:
        print(f"test/ not scored (--skip-test). wrote {run_dir.resolve()}")
        return run_dir
    _, predicted, scores = score_pairs(generator, box, selection["threshold"], test_pairs,
                                       keep_largest=selection["largest_component"])
    metrics = write_evaluation(run_dir, test_pairs, predicted, scores, box, config, train_seconds=train_seconds,
                               title=f"{title}: test frames, expert (green) and predicted (red) contours")
    print_metrics(metrics)
    print(f"wrote {run_dir.resolve()}")
    return run_dir


if __name__ == "__main__":
    main()
