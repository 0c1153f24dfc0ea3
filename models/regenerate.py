"""Regenerate the shipped models from their recipes: train, copy, evaluate.

    .venv/bin/python models/regenerate.py [NAME ...] [--device cpu|cuda|auto] [--evaluate-only]
    .venv/bin/python models/regenerate.py [NAME ...] --upgrade-metadata

For each model NAME (default: all of pendulum, quad_link, pneumatic, pam) this trains
``config/train/NAME.yaml`` into ``runs/ship/NAME``, copies ``model.safetensors`` and
``model.yaml`` into ``models/NAME/``, and evaluates the copy on the CPU on the data set that
``EVALUATION_DATA[NAME]`` describes (fresh data with its own seed, or the PAM validation
episodes), writing ``models/NAME/evaluation.json``. ``test/test_models_shipped.py`` regenerates
the same data and checks that the metrics agree. ``--upgrade-metadata`` rewrites a shipped
``model.yaml`` in the current checkpoint format without training (see ``upgrade_metadata``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rkn_ros.core.checkpoint import METADATA_FILE, WEIGHTS_FILE  # noqa: E402

NAMES = ("pendulum", "quad_link", "pneumatic", "pam", "fusion")

# How each shipped model is evaluated (generator specs as in recipes; PAM: file + part).
# The pendulum set is generated like the demo's stream (config/pendulum.yaml): noisy frames,
# 600 steps = the 30 s demo at 20 Hz (errors on 150-step sequences are 20-30% higher, as the
# start of a sequence, before the filter has settled, weighs more).
EVALUATION_DATA: dict[str, dict] = {
    "pendulum": {"generate": {"generator": "pendulum", "num_sequences": 10, "steps": 600,
                              "seed": 9001, "noise": True}},
    "quad_link": {"generate": {"generator": "quad_link", "num_sequences": 20, "steps": 100,
                               "seed": 9002}},
    "pneumatic": {"generate": {"generator": "pneumatic", "num_sequences": 20, "steps": 300,
                               "seed": 9003, "config": "config/sim/pneumatic.yaml"}},
    "pam": {"path": "../shared/data/pam/pam_dev.npz", "pam_part": "validation",
            "max_sequences": 300},
    # the test set of benchmarks/results/fusion_2026-12-07.md (all four sensors)
    "fusion": {"generate": {"generator": "pendulum", "config": "config/sim/pendulum_fusion.yaml",
                            "num_sequences": 100, "steps": 100, "seed": 9004}},
}


def shared_dir() -> Path:
    """``$RKN_ROS_SHARED`` or ``../shared`` next to the repository."""
    import os

    return Path(os.environ.get("RKN_ROS_SHARED", REPO.parent / "shared"))


def evaluation_dataset(spec: dict, metadata):
    """The data set ``spec`` (an ``EVALUATION_DATA`` entry) describes."""
    from rkn_ros.train.data import generate_dataset
    from rkn_ros.train.evaluation import load_data

    if "generate" in spec:
        dataset = generate_dataset(dict(spec["generate"]))
    else:
        path = Path(spec["path"])
        if path.parts[:2] == ("..", "shared"):
            path = shared_dir().joinpath(*path.parts[2:])
        dataset = load_data(path, metadata, spec.get("pam_part", "all"))
    limit = spec.get("max_sequences")
    if limit is not None and dataset.num_sequences > limit:
        dataset = dataset.subset(range(limit))
    return dataset


def evaluate_shipped(name: str, plots: Path | None = None) -> dict:
    """Evaluate ``models/NAME`` on its evaluation data (CPU) and write evaluation.json."""
    import torch

    from rkn_ros.core.checkpoint import load_checkpoint
    from rkn_ros.train.evaluation import evaluate, write_json

    torch.set_num_threads(2)
    folder = REPO / "models" / name
    model, metadata = load_checkpoint(folder, "cpu")
    spec = EVALUATION_DATA[name]
    report = evaluate(model, metadata, evaluation_dataset(spec, metadata), "cpu", plots=plots)
    report["evaluation_data"] = spec
    write_json(report, folder / "evaluation.json")
    return report


def train_shipped(name: str, device: str) -> None:
    from rkn_ros.train.config import load_recipe
    from rkn_ros.train.trainer import Trainer

    recipe = load_recipe(REPO / "config" / "train" / f"{name}.yaml")
    out = REPO / "runs" / "ship" / name
    if out.exists():
        shutil.rmtree(out)
    result = Trainer(recipe, out, device=device).run()
    print(f"{name}: {result.epochs_done} epochs, best validation NLL {result.best_val_nll:.4f} "
          f"({result.stopped})")
    target = REPO / "models" / name
    target.mkdir(parents=True, exist_ok=True)
    for file in (WEIGHTS_FILE, METADATA_FILE):
        shutil.copyfile(out / file, target / file)
    shutil.copyfile(out / "log.csv", target / "training_log.csv")


def upgrade_metadata(name: str) -> None:
    """Rewrite ``models/NAME/model.yaml`` in the current checkpoint format, weights unchanged.

    The training data are rebuilt from the recipe the checkpoint records (deterministic in its
    seeds) to add each statistic's training min and max; the recorded mean and std must come
    out the same, and the weights file's sha256 must not change.
    """
    import dataclasses
    import hashlib

    import numpy as np

    from rkn_ros.core.checkpoint import load_checkpoint, save_checkpoint
    from rkn_ros.train.config import recipe_from_dict
    from rkn_ros.train.data import compute_normalization, load_source

    folder = REPO / "models" / name
    weights_sha = hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()
    model, meta = load_checkpoint(folder, "cpu")
    recipe = recipe_from_dict(meta.training.recipe, base_dir=REPO / "config" / "train")
    fresh = compute_normalization(load_source(recipe.data.train, "train"),
                                  recipe.training.normalize_targets)
    old = meta.normalization

    def with_range(recorded, computed, what: str):
        if recorded is None:
            return None
        if not (np.allclose(recorded.mean, computed.mean, rtol=1e-9, atol=1e-12)
                and np.allclose(recorded.std, computed.std, rtol=1e-9, atol=1e-12)):
            raise SystemExit(f"{name}: rebuilt training data give another {what} mean/std")
        return dataclasses.replace(recorded, min=computed.min, max=computed.max)

    normalization = dataclasses.replace(
        old,
        inputs={k: with_range(v, fresh.inputs[k], f"inputs.{k}") for k, v in old.inputs.items()},
        targets=with_range(old.targets, fresh.targets, "targets"),
        actions=with_range(old.actions, fresh.actions, "actions"),
    )
    save_checkpoint(folder, model, dataclasses.replace(meta, normalization=normalization))
    if hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest() != weights_sha:
        raise SystemExit(f"{name}: the weights file changed")
    print(f"{name}: model.yaml upgraded, weights unchanged ({weights_sha[:12]}...)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"models to regenerate (default: {NAMES})")
    parser.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--evaluate-only", action="store_true",
                        help="only re-evaluate the shipped copies")
    parser.add_argument("--train-only", action="store_true", help="skip the evaluation")
    parser.add_argument("--upgrade-metadata", action="store_true",
                        help="only rewrite model.yaml in the current format (weights unchanged)")
    parser.add_argument("--plots", type=Path, default=None, help="also write PNG figures here")
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in NAMES]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {NAMES}")
    for name in args.names or NAMES:
        if args.upgrade_metadata:
            upgrade_metadata(name)
            continue
        if not args.evaluate_only:
            train_shipped(name, args.device)
        if not args.train_only:
            report = evaluate_shipped(name, args.plots / name if args.plots else None)
            keys = ("log_likelihood", "rmse", "angle_rmse", "coverage_2sigma", "rmse_by_horizon")
            print(name, {k: report[k] for k in keys if k in report})
    return 0


if __name__ == "__main__":
    sys.exit(main())
