"""``rkn-ros evaluate CHECKPOINT --data DATA [--json OUT] [--plots DIR]``."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="checkpoint folder or its model.safetensors")
    parser.add_argument("--data", required=True,
                        help="generated data-set folder or PAM-format .npz")
    parser.add_argument("--json", default=None, help="write the report here")
    parser.add_argument("--plots", default=None, help="write PNG figures into this folder")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--pam-part", choices=("all", "train", "validation"), default="all",
                        help="for a PAM .npz: which episodes (split as in training)")


def run(args: argparse.Namespace) -> int:
    from rkn_ros.core.checkpoint import CheckpointError, load_checkpoint, resolve_device
    from rkn_ros.data.dataset import DatasetError
    from rkn_ros.train.evaluation import evaluate, load_data, write_json

    try:
        device = resolve_device(args.device)
        model, metadata = load_checkpoint(args.checkpoint, device)
        dataset = load_data(args.data, metadata, args.pam_part)
        report = evaluate(model, metadata, dataset, device, plots=args.plots)
    except (CheckpointError, DatasetError, ValueError) as err:
        print(f"rkn-ros evaluate: error: {err}", file=sys.stderr)
        return 1
    if args.json:
        write_json(report, args.json)
    summary = {k: report[k] for k in ("log_likelihood", "rmse", "coverage_1sigma",
                                      "coverage_2sigma", "angle_rmse", "rmse_by_horizon",
                                      "bernoulli_log_likelihood") if k in report}
    print(json.dumps(summary, indent=2))
    return 0
