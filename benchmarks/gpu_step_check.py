"""On a GPU: the captured step trains what the eager step trains, twice the same, and the
precision options keep the validation NLL.

    python benchmarks/gpu_step_check.py [--out DIR]

Trains one small pendulum recipe (``rkn-ros train``'s Trainer, 4 epochs, frames dropped) with
``step: eager``, ``step: cuda_graph`` (twice) and ``precision`` tf32 and bf16, and prints, per
run, the best validation NLL and the largest weight difference to the eager fp32 run. The
captured forward encodes every frame where the eager one encodes the valid ones, so the two
agree to float rounding, not bit for bit. Exit status 1 when the graph's weights are further
than 1e-3 from the eager ones or from each other (two runs), or when a precision moves the
NLL by more than 0.05.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rkn_ros.train.config import recipe_from_dict
from rkn_ros.train.trainer import Trainer

RECIPE = {
    "name": "gpu_step_check",
    "seed": 0,
    "data": {"train": {"generate": {"generator": "pendulum", "num_sequences": 230, "steps": 50,
                                    "seed": 1, "noise": True}},
             "validation_fraction": 0.13},
    "model": {"latent_obs_dim": 15},
    "training": {"epochs": 4, "batch_size": 50, "device": "cuda", "early_stopping_patience": 0,
                 "observation_drop": 0.3, "drop_gap": 10},
}
RUNS = {"eager": {}, "cuda_graph": {"step": "cuda_graph"},
        "cuda_graph_again": {"step": "cuda_graph"}, "eager_tf32": {"precision": "tf32"},
        "eager_bf16": {"precision": "bf16"}, "cuda_graph_tf32": {"step": "cuda_graph",
                                                                 "precision": "tf32"}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/gpu_step_check"))
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        parser.error("needs a CUDA device")
    results = {}
    for name, options in RUNS.items():
        recipe = recipe_from_dict({**RECIPE, "training": {**RECIPE["training"], **options}})
        result = Trainer(recipe, args.out / name, "cuda", show_progress=False).run()
        weights = load_file(str(args.out / name / "last" / "model.safetensors"))
        log = (args.out / name / "log.csv").read_text().splitlines()
        results[name] = (result.best_val_nll, weights, log[-1].split(",")[-1])
    ok = True
    base_nll, base, _ = results["eager"]
    print("| run | best val NLL | max weight diff to eager | train s |\n| --- | --- | --- | --- |")
    for name, (nll, weights, seconds) in results.items():
        diff = max(float((weights[k] - base[k]).abs().max()) for k in base)
        print(f"| {name} | {nll:.5f} | {diff:.2e} | {seconds} |")
        if name.startswith("cuda_graph") and name != "cuda_graph_tf32" and diff > 1e-3:
            ok = False
        if abs(nll - base_nll) > 0.05:
            ok = False
    again = results["cuda_graph_again"][1]
    gap = max(float((again[k] - v).abs().max()) for k, v in results["cuda_graph"][1].items())
    # bit for bit unless cuDNN picks a non-deterministic kernel (atomics in a backward)
    print(f"cuda_graph twice: largest weight difference {gap:.2e}")
    ok = ok and gap <= 1e-3
    print("all checks passed" if ok else "CHECK FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
