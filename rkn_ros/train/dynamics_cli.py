"""``rkn-ros dynamics CHECKPOINT [--data DATA] [--json OUT] [--plot FILE]``: what an RKN learned.

Runs the checkpoint's filter over data (``--data``: a generated data-set folder or a PAM-format
``.npz``; without it, fresh data from the checkpoint's own recipe: its validation generator, or
the held-out episodes of its PAM file) and reports the modes of its locally linear transition
along the trajectories (see :mod:`rkn_ros.train.dynamics`), how the basis weights partition
the visited states, the learned process noise and the initial belief. LSTM and GRU checkpoints
have no such readout and are refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

PROG = "rkn-ros dynamics"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="RKN checkpoint folder or its model.safetensors")
    parser.add_argument("--data", default=None,
                        help="generated data-set folder or PAM-format .npz (default: data "
                             "generated from the checkpoint's recipe)")
    parser.add_argument("--json", default=None, help="write the full report here")
    parser.add_argument("--plot", default=None,
                        help="PNG: eigenvalues on the complex plane coloured by state, and the "
                             "dominant frequency along a trajectory")
    parser.add_argument("--sequences", type=int, default=20,
                        help="at most this many sequences (default 20)")
    parser.add_argument("--steps", type=int, default=None,
                        help="steps per generated sequence (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the generated data (default: the recipe's validation seed)")


def recipe_data(metadata: Any, sequences: int, steps: int | None, seed: int | None):
    """The data the checkpoint's recipe describes: its validation generator (else its training
    one) with ``sequences``/``steps``/``seed`` applied, or its PAM file's held-out episodes."""
    from rkn_ros.data.dataset import DatasetError
    from rkn_ros.train.data import generate_dataset
    from rkn_ros.train.evaluation import load_data

    data = (metadata.training.recipe or {}).get("data") or {}
    for part in ("validation", "train"):
        source = data.get(part) or {}
        if source.get("generate"):
            spec = dict(source["generate"])
            spec["num_sequences"] = min(int(spec.get("num_sequences", sequences)), sequences)
            if steps is not None:
                spec["steps"] = steps
            if seed is not None:
                spec["seed"] = seed
            return generate_dataset(spec)
    path = (data.get("train") or {}).get("path")
    if path and str(path).endswith(".npz"):
        from rkn_ros.data.pam import default_pam_file

        file = Path(path)
        if file.parts[:2] == ("..", "shared"):
            file = default_pam_file().parents[2].joinpath(*file.parts[2:])
        return load_data(file, metadata, "validation")
    raise DatasetError("the checkpoint's recipe names no generator or PAM file: pass --data")


def run(args: argparse.Namespace) -> int:
    from rkn_ros.core.checkpoint import CheckpointError, load_checkpoint, read_metadata
    from rkn_ros.data.dataset import DatasetError
    from rkn_ros.train.evaluation import load_data

    try:
        if args.sequences < 1:
            raise ValueError(f"--sequences expected >= 1, got {args.sequences}")
        if args.steps is not None and args.steps < 2:
            raise ValueError(f"--steps expected >= 2, got {args.steps}")
        metadata = read_metadata(args.checkpoint)
        kind = metadata.model.kind
        if kind != "rkn":
            print(f"{PROG}: error: {args.checkpoint} is a {kind.upper()} checkpoint: its "
                  "recurrent cell has no locally linear transition to read modes from (only "
                  "RKN checkpoints have this readout)", file=sys.stderr)
            return 1
        model, metadata = load_checkpoint(args.checkpoint, "cpu")
        dataset = (load_data(args.data, metadata) if args.data is not None
                   else recipe_data(metadata, args.sequences, args.steps, args.seed))
        if dataset.num_sequences > args.sequences:
            dataset = dataset.subset(range(args.sequences))
        report, trajectories, modes, index = _analyse(model, metadata, dataset)
    except (CheckpointError, DatasetError, ValueError, OSError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 1
    report["checkpoint"] = metadata.name
    report["data"] = args.data or "generated from the checkpoint's recipe"
    if args.json:
        from rkn_ros.train.evaluation import write_json

        write_json(report, args.json)
    if args.plot:
        from rkn_ros.train.dynamics_plot import plot_dynamics

        plot_dynamics(Path(args.plot), trajectories, modes, index, report)
    print(summary(report))
    return 0


def _analyse(model, metadata, dataset):
    from rkn_ros.train.data import to_tensors
    from rkn_ros.train.dynamics import (
        analyse,
        basis_usage,
        learned_noise_and_initial_belief,
        run_filter,
    )
    from rkn_ros.train.evaluation import check_compatible

    check_compatible(metadata, dataset)
    data = to_tensors(dataset, metadata.normalization, list(metadata.inputs))
    names = list(dataset.metadata.get("targets", {}).get("names", []))
    targets = metadata.normalization.target(metadata.model.output_dim)
    stats = {"mean": list(targets.mean), "std": list(targets.std)}
    trajectories = run_filter(model, data, float(metadata.dt), stats, names)
    report, modes, index = analyse(trajectories, float(metadata.dt))
    report["sequences"] = int(dataset.num_sequences)
    report["basis"] = basis_usage(trajectories.alpha, trajectories.outputs, names)
    report.update(learned_noise_and_initial_belief(model))
    return report, trajectories, modes, index


def _fmt(spread: dict | None, unit: str, digits: int = 3) -> str:
    if spread is None:
        return "none"
    return (f"{spread['mean']:.{digits}f} {unit} (5-95%: {spread['p5']:.{digits}f} .. "
            f"{spread['p95']:.{digits}f})")


def summary(report: dict[str, Any]) -> str:
    """A few lines for the terminal (the JSON has everything)."""
    spread = report["dominant_spread"]
    oscillatory = [m for m in report["modes"] if m["kind"] == "oscillatory"]
    real = [m for m in report["modes"] if m["kind"] == "real"]
    negative = report["negative_real"]["per_state"]
    lines = [
        f"{report['checkpoint']}: {report['states_visited']} states of {report['sequences']} "
        f"sequences, A_t {report['state_dim']} x {report['state_dim']}, dt {report['dt']} s",
        f"dominant mode: {_fmt(spread['frequency_rad_s'], 'rad/s')}, damping ratio "
        f"{_fmt(spread['damping_ratio'], '')}",
        f"modes per state: {len(oscillatory)} oscillatory pairs, {len(real)} real, "
        f"{0.0 if negative is None else negative['mean']:.1f} negative real (no continuous-time "
        "equivalent)",
        f"basis weights: mean entropy {report['basis']['mean_entropy_nats']:.2f} of "
        f"{report['basis']['uniform_entropy_nats']:.2f} nats (uniform)",
    ]
    return "\n".join(lines)

