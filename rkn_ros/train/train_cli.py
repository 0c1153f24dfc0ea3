"""``rkn-ros train CONFIG.yaml [--device] [--out DIR] [--resume CKPT] [--overwrite]``.

Several processes: ``torchrun --nproc_per_node N $(command -v rkn-ros) train CONFIG.yaml``
(see ``rkn_ros.train.distributed``); only rank 0 prints the summary.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from rkn_ros.train.config import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="training recipe, e.g. config/train/pendulum.yaml")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None,
                        help="overrides training.device of the recipe")
    parser.add_argument("--out", default=None, help="output folder (default runs/<name>)")
    parser.add_argument("--resume", default=None,
                        help="continue from a training output folder (or its last/ folder)")
    parser.add_argument("--overwrite", action="store_true",
                        help="train from scratch into an --out that holds an earlier run")
    parser.add_argument("--epochs", type=int, default=None, help="overrides training.epochs")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many optimiser steps (resume later)")
    parser.add_argument("--seed", type=int, default=None, help="overrides seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--step", choices=("eager", "cuda_graph"), default=None,
                        help="overrides training.step (cuda_graph: the step as one CUDA graph)")
    parser.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default=None,
                        help="overrides training.precision")


def run(args: argparse.Namespace) -> int:
    from rkn_ros.core.checkpoint import CheckpointError
    from rkn_ros.data.dataset import DatasetError
    from rkn_ros.train.config import load_recipe

    try:
        recipe = load_recipe(args.config)
        training = recipe.training
        overrides = {}
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        if args.max_steps is not None:
            overrides["max_steps"] = args.max_steps
        for key in ("device", "step", "precision"):
            if getattr(args, key) is not None:
                overrides[key] = getattr(args, key)
        if overrides:
            training = dataclasses.replace(training, **overrides)
            training.check("training")
        recipe = dataclasses.replace(recipe, training=training)
        if args.seed is not None:
            recipe = dataclasses.replace(recipe, seed=args.seed)
            recipe.check()
    except ConfigError as err:
        print(f"rkn-ros train: error: {err}", file=sys.stderr)
        return 1

    from rkn_ros.train.distributed import launched_rank
    from rkn_ros.train.trainer import Trainer, resume_run_folder

    resumed = None
    if args.resume is not None:
        if args.overwrite:
            print("rkn-ros train: error: --resume continues a run and --overwrite starts one "
                  "over: pass one of them", file=sys.stderr)
            return 2
        try:
            resumed = resume_run_folder(Path(args.resume))
        except CheckpointError as err:
            print(f"rkn-ros train: error: {err}", file=sys.stderr)
            return 2
        if resumed is None and args.out is None:
            print(f"rkn-ros train: error: --resume {args.resume} is a training state kept "
                  "outside a training output folder: pass --out for the continued run",
                  file=sys.stderr)
            return 2
    # a resumed run goes on in its own folder unless told otherwise
    out = Path(args.out) if args.out else resumed or Path("runs") / recipe.name
    earlier = [name for name in ("model.yaml", "last") if (out / name).exists()]
    continuing = resumed is not None and out.resolve() == resumed.resolve()
    if earlier and not continuing and not args.overwrite:
        print(f"rkn-ros train: error: {out} already holds a training run ({', '.join(earlier)}); "
              f"pass --resume {out} to continue it or --overwrite to start over",
              file=sys.stderr)
        return 2
    try:
        result = Trainer(recipe, out, device=recipe.training.device, resume=args.resume,
                         show_progress=not args.no_progress,
                         warn=lambda text: print(f"rkn-ros train: warning: {text}",
                                                 file=sys.stderr)).run()
    except (CheckpointError, DatasetError, ValueError) as err:
        print(f"rkn-ros train: error: {err}", file=sys.stderr)
        return 1
    if result.epochs_done and not result.best_epoch:
        print(f"rkn-ros train: error: {recipe.name}: no epoch gave a finite validation NLL "
              f"(stopped by: {result.stopped} after epoch {result.epochs_done}), so no model "
              f"was saved; {out / 'log.csv'} has the losses. Check the data for NaN/inf and "
              "lower training.lr", file=sys.stderr)
        return 1
    if launched_rank() != 0:
        return 0
    best = (f"best validation NLL {result.best_val_nll:.4f} after epoch {result.best_epoch}"
            if result.best_epoch else "no epoch finished")
    print(f"{recipe.name}: {result.epochs_done} epochs, {result.steps} steps, {best} "
          f"(stopped by: {result.stopped}); checkpoint {result.out_dir}")
    for warning in result.warnings():
        print(f"rkn-ros train: warning: {warning}", file=sys.stderr)
    return 0
