"""The flower adaptation table: every method, both directions, several seeds, on the same cached features.

    python -m adaptation.benchmark --data-dir ../shared/data \\
        --weights ../shared/weights/mobilenet_v2_1.0_224_no_top.h5 --json runs/adaptation-benchmark.json

For each direction (flower_photos -> flower17 and back) and each seed, the
source is split as in ``adaptation.train`` (10 % per class held out, seeded)
and every method is trained on the same frozen backbone features:

* source-only, AdaBN, Deep CORAL, DAN, DANN, CDAN, CDAN+E: ``adaptation.train``'s network and
  settings (the same for all, fixed in advance), on the source's and the
  target's fixed views, each target image predicted as the mean of its
  views' predictions; source-only and AdaBN are one training run, scored
  with the source's and with the target's BatchNorm statistics; CORAL, DAN
  and DANN choose lambda as ``adaptation.train --trade-off auto`` does (one
  training per candidate, the lowest mean entropy of the unlabelled target's
  predictions), unless --trade-off fixes it; on request (--methods),
  ``dan+adabn`` etc.: the same trained network predicting the target with the
  target's own BatchNorm statistics;
* TCA and JDA: ``mmd.TCA`` / ``mmd.JDA`` (primal, k = 100, lambda = 1, 10 JDA
  iterations, 1-NN), on the original view's features of the same source
  training images and of the target.

With ``--target-labels K`` (semi-supervised adaptation) each seed also draws
K target images per class, as ``adaptation.train --target-labels K`` does:
the deep methods train on them beside the source in l_c, TCA and JDA take
them as target samples of known class (in the target's MMD terms, JDA's
class-conditional ones in their true class, and in the 1-NN beside the
source), and every method is scored on the rest of the target only (the
same images for every method of a seed).

For the deep methods with a lambda grid (``--trade-off auto``) the table is
followed by a second one: the lambda each label-free criterion would pick
(the target entropy that chooses here, deep embedded validation (DEV, You et
al. 2019: the source validation loss importance-weighted towards the target by
a domain classifier on the bottleneck features) and the source validation
accuracy), the target accuracy that lands on, and the oracle: the best
candidate by the target labels, shown for the gap and never used to choose.
The JSON rows keep every candidate (``"candidates"``).

The target's labels are read once per run, to score it. Each row reports the
target accuracy per seed, their mean and standard deviation, and ``seconds``:
the mean time of one seed's run (every training it took, the lambda
candidates included, and the predictions; reading the cached features is not
counted). ``--json PATH`` writes the rows:
``{"direction", "method", "accuracy": [...], "accuracy_mean", "accuracy_std",
"seconds"}``, and ``"target_labels": K`` when K > 0.
"""
from __future__ import annotations

import common.startup  # noqa: F401  (first, before TensorFlow: its start-up messages only with --verbose)

# isort: split
import argparse
import json
import time
from pathlib import Path

import numpy as np

from adaptation.arguments import add_target_labels_argument, check_target_labels, check_trade_off, check_views
from adaptation.candidates import trade_off_candidates, train_once
from adaptation.data import load_pair
from adaptation.features import VIEWS
from adaptation.inputs import VALIDATION_FRACTION, hold_out_labelled_target, predict_views, prepare_frozen
from adaptation.selection import TRADE_OFF_GRID, print_selection_table, select_by_entropy
from adaptation.settings import DEFAULT_LAMBDA_SCHEDULE
from common import cli
from common.data import split_per_class
from common.errors import UserError, main_guard
from common.files import check_new_file
from common.training import set_seed

METHODS = ("source-only", "adabn", "coral", "tca", "jda", "dan", "dann", "cdan", "cdan+e")
#: extra rows on request (--methods): a trained CORAL / DAN / DANN network predicting the target with the
#: target's own BatchNorm statistics (AdaBN on top; no more training, the same lambda)
WITH_ADABN = ("coral+adabn", "dan+adabn", "dann+adabn", "cdan+adabn", "cdan+e+adabn")
DIRECTIONS = ("flower_photos->flower17", "flower17->flower_photos")
#: the run-folder and device flags every training command has: the benchmark writes no run folder (its rows go
#: to --json) and runs on one device, so that its rows compare like with like
NOT_HERE = ("tensorboard", "distribute", "scale_learning_rate", "output_dir")


def parse_args(argv=None):
    parser = cli.parser_from_doc(__doc__)
    cli.add_common_arguments(
        parser, data_dir="data", output_parent="runs/adaptation", backbone="mobilenet_v2", image_size=224,
        epochs=20, batch_size=32,
        data_help="the folder holding flower_photos/ and flower17/ (e.g. ../shared/data); only read",
    )
    for action in parser._actions:
        if action.dest in NOT_HERE:
            action.help = argparse.SUPPRESS
        if action.dest == "batch_size":
            action.help = "source and target images per step, each (default: %(default)s)"
    table = parser.add_argument_group("benchmark")
    table.add_argument("--seeds", type=int, default=3, help="seeds per method, --seed, --seed + 1, ... (default: 3)")
    table.add_argument("--methods", default=",".join(METHODS),
                       help=f"comma list of {', '.join(METHODS)} (default: these), and on request "
                       f"{', '.join(WITH_ADABN)}: the same trained network, the target predicted with its own "
                       "BatchNorm statistics")
    table.add_argument("--directions", default=",".join(DIRECTIONS),
                       help=f"comma list of {', '.join(DIRECTIONS)}, also written SOURCE-TARGET (-> must be quoted "
                       "in a shell, where > is a redirect) (default: both)")
    table.add_argument("--views", default=",".join(VIEWS), help=f"as in adaptation.train (default: {','.join(VIEWS)})")
    table.add_argument("--score-on", choices=("views", "original"), default="views",
                       help="as in adaptation.train (default: views)")
    table.add_argument("--trade-off", default="auto",
                       help="lambda's maximum for CORAL, DAN and DANN: a number, or auto as in adaptation.train "
                       "(lowest mean entropy of the unlabelled target's predictions over --trade-off-grid) "
                       "(default: auto)")
    table.add_argument("--trade-off-grid", default=",".join(f"{value:g}" for value in TRADE_OFF_GRID),
                       help="the candidates of --trade-off auto (default: %(default)s)")
    add_target_labels_argument(table)
    table.add_argument("--json", default=None, metavar="PATH", help="write the rows to this JSON file")
    args = cli.resolve(parser.parse_args(argv))
    if any(getattr(args, name) != parser.get_default(name) for name in NOT_HERE):
        parser.error("the benchmark runs on one device and writes no run folder (its rows go to --json PATH): "
                     "use adaptation.train for --distribute, --tensorboard and --output-dir")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.directions = [direction_of(parser, d.strip()) for d in args.directions.split(",") if d.strip()]
    bad = [m for m in args.methods if m not in METHODS + WITH_ADABN] + [d for d in args.directions if d not in DIRECTIONS]
    if bad or not args.methods or not args.directions:
        parser.error(f"unknown method or direction: {', '.join(bad) or 'none given'}; methods: "
                     f"{', '.join(METHODS + WITH_ADABN)}; directions: {', '.join(DIRECTIONS)}")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    check_views(parser, args)
    check_trade_off(parser, args)
    check_target_labels(parser, args)
    # what adaptation.train's defaults would be, so that prepare_frozen / make_adapter read the same settings
    defaults = dict(unfreeze_from="none", bottleneck=256, learning_rate=0.01, momentum=0.9, weight_decay=1e-3,
                    lr_schedule="annealed", kernels=5, estimator="biased")
    for key, value in defaults.items():
        setattr(args, key, value)
    return args


def direction_of(parser, text: str) -> str:
    """``flower_photos->flower17`` from itself or ``flower_photos-flower17``; an unquoted ``->`` reaches the
    command cut at ``>`` (the shell wrote the output to a file named after the target), which is said."""
    if text.endswith("-"):
        parser.error(f"--directions {text}: an unquoted {text}>TARGET is cut at '>' by the shell (the output went "
                     f"to a file named TARGET); write {text}TARGET, or quote it")
    return text if "->" in text else text.replace("-", "->", 1)


def deep_run(args, method: str, pair, prepared, seed: int) -> dict:
    """One seed of a deep method, with ``adaptation.train``'s settings and its lambda selection:
    {method: target accuracy} and the seconds of every training it took."""
    run_args = argparse.Namespace(**{**vars(args), "method": method, "seed": seed,
                                     "lambda_schedule": DEFAULT_LAMBDA_SCHEDULE.get(method, "constant")})
    weights = prepared["encoder"].get_weights()
    runs = [train_once(run_args, pair, prepared, trade_off, encoder_weights=weights)
            for trade_off in trade_off_candidates(run_args)]
    chosen = select_by_entropy(runs)
    if len(runs) > 1:
        print(f"{pair.direction} seed {seed} {method}: trade-off " + ", ".join(
            f"{run['trade_off']:g} (entropy {run['target_entropy']:.4f})" for run in runs)
            + f" -> {chosen['trade_off']:g}", flush=True)
    adapter = chosen["adapter"]
    labels = prepared["target_labels"]

    # The target's labels, read once: scoring (and, for the selection table, every candidate's oracle figure,
    # computed after the choice and never used for it).
    def accuracy(domain, model=None):
        predicted = predict_views(model or adapter, prepared["target_views"], domain).argmax(axis=1)
        return float(np.mean(predicted == labels))

    candidates = [{"trade_off": run["trade_off"], "target_entropy": run["target_entropy"], "dev_risk": run["dev_risk"],
                   "source_val_accuracy": run["source_val_accuracy"],
                   "oracle_target_accuracy": accuracy("target", run["adapter"])} for run in runs] if len(runs) > 1 else []

    scores = {method: accuracy("target")}
    if method == "adabn":  # the same weights with the source's statistics: the source-only model
        scores["source-only"] = accuracy("source")
    elif f"{method}+adabn" in args.methods:  # the same network with the target's statistics
        adapter.adapt_batchnorm(prepared["target_train"])
        scores[f"{method}+adabn"] = accuracy("target")
    return {"scores": scores, "seconds": sum(run["seconds"] for run in runs), "trade_off": chosen["trade_off"],
            "candidates": candidates}


def shallow_run(method: str, prepared) -> dict:
    """TCA or JDA on the original view's features of the same source training images, then 1-NN.

    With --target-labels the labelled target images are target samples of known class
    (``fit``'s ``labelled_index`` / ``labelled_y``), after the unlabelled rest in Xt: they are
    in the target's side of every MMD term, JDA's class-conditional terms hold them in their true
    class from the first iteration on, and the 1-NN trains on them beside the source.  Only the
    unlabelled rest (``target_all``) is scored."""
    from mmd import JDA, TCA

    source_x, source_y = prepared["source_all"]
    rows = prepared["source_train_rows"]
    source_x, source_y = source_x[rows], source_y[rows]
    target_x = prepared["target_all"].astype(np.float64)
    rest, known = len(target_x), {}
    if prepared.get("target_labelled_all") is not None:  # --target-labels: labelled target rows
        known_x, known_y = prepared["target_labelled_all"]
        target_x = np.concatenate([target_x, known_x.astype(np.float64)])
        known = {"labelled_index": np.arange(rest, len(target_x)), "labelled_y": known_y}
    started = time.perf_counter()
    estimator = TCA(n_components=100, lambda_=1.0) if method == "tca" else JDA(n_components=100, lambda_=1.0, n_iter=10)
    estimator.fit(source_x.astype(np.float64), source_y, target_x, **known)
    accuracy = float(np.mean(estimator.predict(target_x[:rest]) == prepared["target_labels"]))
    return {"scores": {method: accuracy}, "seconds": time.perf_counter() - started}


def row(direction: str, method: str, accuracies: list[float], seconds: list[float], target_labels: int = 0) -> dict:
    return {
        "direction": direction,
        "method": method,
        "accuracy": [round(a, 4) for a in accuracies],
        "accuracy_mean": round(float(np.mean(accuracies)), 4),
        "accuracy_std": round(float(np.std(accuracies)), 4),
        "seconds": round(float(np.mean(seconds)), 1),
        **({"target_labels": target_labels} if target_labels else {}),
    }


@main_guard
def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    check_new_file(args.json)
    rows = []
    for direction in args.directions:
        source_name, target_name = direction.split("->")
        whole = load_pair(source_name, target_name, args.data_dir, limit=args.limit)
        results: dict[str, list] = {}
        candidates: dict[str, list] = {}
        for offset in range(args.seeds):
            seed = args.seed + offset
            set_seed(seed)
            pair, labelled = hold_out_labelled_target(whole, args.target_labels, seed)
            train_rows, validation_rows = split_per_class(pair.source.labels, VALIDATION_FRACTION, seed=seed)
            prepared = prepare_frozen(argparse.Namespace(**{**vars(args), "method": "dann"}), pair, train_rows,
                                      validation_rows, labelled)
            # the seconds-long shallow rows first: a problem with them (too few samples for k = 100)
            # shows before the deep trainings, not after
            for method in [m for m in args.methods if m in ("tca", "jda")]:
                outcome = shallow_run(method, prepared)
                results.setdefault(method, []).append((outcome["scores"][method], outcome["seconds"]))
                print(f"{direction} seed {seed} {method}: {outcome['scores'][method]:.4f} "
                      f"({outcome['seconds']:.0f} s)", flush=True)
            # one "adabn" training serves both rows: source statistics = source-only, target statistics = AdaBN
            deep = ["adabn"] if {"source-only", "adabn"} & set(args.methods) else []
            deep += [m for m in ("coral", "dan", "dann", "cdan", "cdan+e")
                     if m in args.methods or f"{m}+adabn" in args.methods]
            for method in deep:
                outcome = deep_run(args, method, pair, prepared, seed)
                if outcome["candidates"]:
                    candidates.setdefault(method, []).append(outcome["candidates"])
                for name, accuracy in outcome["scores"].items():
                    if name in args.methods:
                        results.setdefault(name, []).append((accuracy, outcome["seconds"]))
                        print(f"{direction} seed {seed} {name}: {accuracy:.4f} ({outcome['seconds']:.0f} s)", flush=True)
        for method in args.methods:
            accuracies = [a for a, _ in results[method]]
            seconds = [s for _, s in results[method]]
            rows.append(row(direction, method, accuracies, seconds, args.target_labels))
            if method in candidates:  # lambda's candidates per seed: what each criterion saw, and the oracle
                rows[-1]["candidates"] = candidates[method]
    print()
    if args.target_labels:
        print(f"--target-labels {args.target_labels}: that many labelled target images per class trained on, "
              "the rest of the target scored")
    print(f"{'direction':<26} {'method':<12} {'mean':>7} {'std':>7}  per seed{'':<18} {'s/run':>7}")
    for item in rows:
        per_seed = " ".join(f"{a:.4f}" for a in item["accuracy"])
        print(f"{item['direction']:<26} {item['method']:<12} {item['accuracy_mean']:>7.4f} "
              f"{item['accuracy_std']:>7.4f}  {per_seed:<26} {item['seconds']:>7.1f}")
    print_selection_table(rows)
    if args.json:
        path = Path(args.json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rows, indent=2) + "\n")
        except OSError as error:
            raise UserError(f"cannot write {path}: {error.strerror}") from None
        print(f"wrote {path.resolve()}")
    return rows


if __name__ == "__main__":
    main()
