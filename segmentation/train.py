"""Segment the left ventricle in cardiac MRI (textbook 12.5.2): U-Net, TLBSN or the transfer-learning GAN.

    python -m segmentation.train --method gan --backbone mobilenet_v2 \\
        --weights ../shared/weights/mobilenet_v2_1.0_224_no_top.h5
    python -m segmentation.train --method tlbsn --backbone mobilenet_v2 --weights PATH
    python -m segmentation.train --method unet
    python -m segmentation.train --method gan            # VGG16 with ImageNet weights (downloads them)

The command follows the book's steps:

(1) Data set (``load_data``): ``--data-dir`` holds ``train/{images,masks}`` and
``test/{images,masks}``, image and mask sharing a file name (the Sunnybrook
export). A few whole patients of ``train/`` are held out for validation
(``--validation-patients``); every choice (the epoch kept, the number of encoder
blocks fine-tuned, the threshold) is made on them. The region of interest is one
fixed 128 x 128 window, placed on the union of the training patients' masks
(never on the mask of the frame being segmented); predictions are pasted back
and every metric is computed on the full frame.

(2) Model (``segmentation.gan``): ``unet`` a U-Net from scratch; ``tlbsn`` the
segmentation network whose encoder is an ImageNet classifier's base (VGG16 by
default, as in the book); ``gan`` that network as the generator G of a GAN with
a multi-scale discriminator D. Layer-wise fine-tuning (figure 11,
``segmentation.finetuning``): the encoder starts frozen and ``--unfreeze
E1,E2,...`` releases its top block after epoch E1, the next after E2, ...; the
best validation Dice fixes the depth (``all``: all from the start, ``none``: never).

(3) Loss (``segmentation.gan``, ``segmentation.losses``): the pixel loss of
eq. 23 for unet and tlbsn; eq. 24, ``min_G max_D V(G, D) + beta * L_pixel``,
for the GAN, one Adam step for each network per batch.

(4) Results: Dice, Jaccard, sensitivity and precision on ``test/``, scored
once at the end (``--skip-test`` leaves it unscored, for tuning runs), and
Table 3 beside the book's.

The output folder (default ``runs/segmentation/<method>-<time>/``) holds
config.json, history.csv (per epoch) and steps.csv (every step), validation.json
(the choices and the Dice per depth), metrics.json, per_image.csv, table3.md,
curves.png, overlays.png, model.keras (the segmentation network: pixels of
the window in, probabilities out) and segmenter.json (its window and threshold);
with ``--tensorboard``, tensorboard/ (``tensorboard --logdir RUN_DIR``).
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import argparse
import json
import time
from pathlib import Path

import numpy as np

from common import cli
from common.errors import UserError, main_guard
from common.run import Run
from common.training import SCHEDULES
from segmentation import losses
from segmentation.data import load_pairs, split_patients
from segmentation.evaluate import MODEL_FILE, SEGMENTER_FILE, print_metrics, score_pairs, write_evaluation
from segmentation.finetuning import parse_unfreeze, phases
from segmentation.gan import build_networks, gan_step, make_optimizer, segmentation_step
from segmentation.metrics import choose_binarisation, mean_dice
from segmentation.networks import BACKBONES, encoder_blocks, set_trainable_depth
from segmentation.pipeline import make_augmenter, training_dataset
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


def load_data(args):
    """(1) The data set: the training patients split into fit and validation, test/ unless skipped, the window."""
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise UserError(
            f"data folder {data_dir} does not exist; it should hold train/{{images,masks}} and test/{{images,masks}} "
            "(the Sunnybrook Cardiac Data PNG export); pass it with --data-dir"
        )
    train_pairs = load_pairs(data_dir / "train", "training folder", args.limit)   # --limit: frames per patient
    test_pairs = None if args.skip_test else load_pairs(data_dir / "test", "test folder", args.limit)
    if test_pairs is not None and test_pairs.frame != train_pairs.frame:
        raise UserError(f"test frames are {test_pairs.frame[1]}x{test_pairs.frame[0]} but training frames "
                        f"{train_pairs.frame[1]}x{train_pairs.frame[0]}")
    fit_rows, validation_rows = split_patients(train_pairs.patients, args.validation_patients, args.seed)
    fit, validation = train_pairs.subset(fit_rows), train_pairs.subset(validation_rows)
    return fit, validation, test_pairs, CropBox.fit(fit.masks, args.roi_size)


def train(args, run: Run, fit, validation, box: CropBox):
    """(2)-(3) Build G (and D), then train phase by phase, one per encoder depth (figure 11).

    Every epoch ends with the validation Dice at that depth; the epoch with
    the best one is kept, and its weights are put back at the end.
    """
    generator, base, discriminator = build_networks(args.method, args.backbone, args.weights, args.image_size,
                                                    args.decoder_width, args.discriminator_scales)
    blocks = encoder_blocks(args.backbone) if base is not None else 0
    steps_per_epoch = int(np.ceil(len(fit) / args.batch_size))
    total_steps, rate = steps_per_epoch * args.epochs, run.learning_rate(args.learning_rate)
    if base is not None:   # every block trainable while the optimizers are built on all the variables
        set_trainable_depth(base, args.backbone, blocks)
    generator_optimizer = make_optimizer(rate, total_steps, args.schedule, generator.trainable_variables)
    pixel_loss = losses.pixel_loss(args.pixel_loss)
    if discriminator is None:
        step = segmentation_step(generator, generator_optimizer, pixel_loss)
    else:
        discriminator_optimizer = make_optimizer(rate, total_steps, args.schedule, discriminator.trainable_variables)
        step = gan_step(generator, discriminator, generator_optimizer, discriminator_optimizer, pixel_loss, args.beta)
    board = run.board(generator, generator_optimizer)
    augmenter = make_augmenter(args.rotation_range, args.shift_range, args.zoom_range, args.flip,
                               args.seed) if args.augment else None
    batches = training_dataset(box.crop(fit.images), box.crop(fit.masks), args.image_size,
                               args.batch_size, args.seed, augmenter)

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
            dice = mean_dice(segment_frames(generator, box, validation.images), validation.masks)
            if dice > best["val_dice"]:
                best.update(val_dice=dice, epoch=epoch, depth=depth, weights=generator.get_weights())
            if board is not None:
                board.on_epoch_end(epoch - 1, {**row, "depth": depth, "val_dice": dice})
            return {"global_epoch": epoch, "depth": depth, "val_dice": dice}

        history = run.loop(step, batches, epochs=last - first + 1, steps_per_epoch=steps_per_epoch,
                           on_epoch_end=on_epoch_end, description=f"{args.method} (depth {depth})")
        offset = len(step_rows)
        for row in history.steps:
            step_rows.append({**row, "step": offset + row["step"], "epoch": first + row["epoch"] - 1})
        for row in history.epochs:
            row = dict(row)
            row["epoch"] = row.pop("global_epoch")
            # "seconds" is the epoch's own training time (as printed); elapsed_seconds their running total over
            # every phase (the loop's own restarts with each phase)
            row["elapsed_seconds"] = round((epoch_rows[-1]["elapsed_seconds"] if epoch_rows else 0.0)
                                           + row["seconds"], 2)
            epoch_rows.append(row)

    if board is not None:
        board.on_train_end()
    generator.set_weights(best.pop("weights"))
    binarisation, by_binarisation = choose_binarisation(segment_frames(generator, box, validation.images),
                                                        validation.masks)
    by_depth = {}
    for row in epoch_rows:
        by_depth[str(row["depth"])] = max(by_depth.get(str(row["depth"]), -1.0), row["val_dice"])
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
    return generator, discriminator, step_rows, epoch_rows, selection, time.perf_counter() - started


@main_guard
def main(argv=None):
    args = parse_args(argv)
    fit, validation, test_pairs, box = load_data(args)
    held = box.holds(fit.masks)
    config = {"roi": box.to_dict(), "fit_images": len(fit), "validation_images": len(validation),
              "validation_patient_ids": sorted(set(validation.patients))}
    with Run(args, args.method, parent=OUTPUT_PARENT, config=config) as run:
        print(f"{METHOD_NAMES[args.method]}: {len(fit)} training frames ({len(set(fit.patients))} patients), "
              f"{len(validation)} validation frames ({len(set(validation.patients))} patients)")
        print(f"region of interest: {box.size}x{box.size} at row {box.top}, column {box.left} of "
              f"{box.frame[1]}x{box.frame[0]} frames, fitted on the training masks: it holds {int(held.sum())} of "
              f"{len(held)} of them and {int(box.holds(validation.masks).sum())} of {len(validation)} validation masks")

        generator, discriminator, step_rows, epoch_rows, selection, train_seconds = train(args, run, fit, validation,
                                                                                          box)
        folder = run.folder
        write_rows(folder / "steps.csv", step_rows)
        write_rows(folder / "history.csv", epoch_rows)
        (folder / "validation.json").write_text(json.dumps(selection, indent=2) + "\n")
        run.save(generator, MODEL_FILE)   # the one model file: D is not needed to segment, no optimizer state
        (folder / SEGMENTER_FILE).write_text(json.dumps(
            {"roi": box.to_dict(), "threshold": selection["threshold"],
             "largest_component": selection["largest_component"], "image_size": args.image_size,
             "method": args.method, "backbone": args.backbone}, indent=2) + "\n")
        title = f"{METHOD_NAMES[args.method]}" + ("" if args.method == "unet" else f", {args.backbone}")
        plot_curves(step_rows, epoch_rows, folder / "curves.png", title=title, chosen_epoch=selection["epoch"])
        depth_note = ("" if selection["depth"] is None
                      else f", {selection['depth']} of {selection['encoder_blocks']} encoder blocks fine-tuned")
        post = ", largest region kept" if selection["largest_component"] else ""
        print(f"chosen on validation: epoch {selection['epoch']}{depth_note}, threshold {selection['threshold']}"
              f"{post}, validation Dice {selection['val_dice_chosen']:.4f}; training took {train_seconds:.0f} s")
        if test_pairs is None:
            print(f"test/ not scored (--skip-test). wrote {folder.resolve()}")
            return folder

        # (4) Results: test/ scored once, with the choices made on validation.
        _, predicted, scores = score_pairs(generator, box, selection["threshold"], test_pairs,
                                           keep_largest=selection["largest_component"])
        metrics = write_evaluation(folder, test_pairs, predicted, scores, box, cli.config_of(args),
                                   train_seconds=train_seconds,
                                   title=f"{title}: test frames, expert (green) and predicted (red) contours")
        print_metrics(metrics)
        print(f"wrote {folder.resolve()}")
        return folder


if __name__ == "__main__":
    main()
