"""RKN training epoch against a GRU epoch of the same encoder and decoder, through the trainer's
own step (``rkn_ros.train.step``), and the RKN's seconds per 1,000 sequence-steps.

    .venv/bin/python benchmarks/training_step.py [--device cpu|cuda] [--step eager|cuda_graph]
        [--precision fp32|tf32|bf16] [--sequences 300] [--steps 75] [--batch 50] [--lr 1e-3]
        [--epochs 3] [--threads 1] [--drop 0.0] [--json FILE]

Data: noisy 24x24 pendulum images, ``--sequences`` x ``--steps`` (default 300 x 75, the
``small`` scale of ``experiments.py cost``), generated in memory from seed 1. Models: the RKN
of ``experiments.py pendulum`` (m = 15) and its GRU 50, same encoder and decoder. Every
batch is one real optimiser step as ``rkn-ros train`` runs it (Adam, gradient clipping; the
observation drops of ``--drop`` drawn per sequence). The first epoch is a warm-up (CUDA graph
capture with ``--step cuda_graph``); the others are timed. The reference in the same run: the
GRU with the eager step (cuDNN on a GPU); with a step other than eager the RKN's eager epoch
is timed too. ``--profile FILE``: the torch profiler's table of a few RKN steps, with the
kernel launches (CPU: operator calls) per step, what makes a step launch-bound. Targets (the
issue's): RKN / GRU <= 1.5 on a GPU; on the CPU the paper's own code took 0.205 s per 1,000
sequence-steps on the 2-core reference machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import experiments  # benchmarks/ is on the path (above)

from rkn_ros.core import build_model
from rkn_ros.core.checkpoint import resolve_device
from rkn_ros.train.allocator import keep_freed_memory
from rkn_ros.train.config import recipe_from_dict
from rkn_ros.train.data import compute_normalization, generate_dataset, to_tensors
from rkn_ros.train.preparation import model_config_for
from rkn_ros.train.step import (
    EagerStep,
    GraphedStep,
    check_step_options,
    drop_observations,
    set_precision,
)

PROFILED_STEPS = 3
LAUNCH_EVENTS = ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cudaGraphLaunch")
PAPER_CPU_S = 0.205  # the paper's code, s per 1,000 sequence-steps, 2-core reference machine


def time_epochs(model_dict: dict, data, recipe_base: dict, device: torch.device, step: str,
                precision: str, batch: int, lr: float, epochs: int, drop: float,
                profile: Path | None = None) -> list[float]:
    """Seconds of each epoch after the first, training ``model_dict`` on ``data``; with
    ``profile``, the torch profiler's table of the last epoch's first batches goes there."""
    recipe = recipe_from_dict({**recipe_base, "model": model_dict})
    torch.manual_seed(0)
    model = build_model(model_config_for(recipe, data)).to(device).train()
    tensors = to_tensors(data, compute_normalization(data))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, capturable=step == "cuda_graph")
    stepper = (GraphedStep(model, optimizer, "gaussian", 5.0, precision) if step == "cuda_graph"
               else EagerStep(model, model, optimizer, "gaussian", 5.0, precision))
    n = tensors.num_sequences
    seconds = []
    for epoch in range(epochs):
        order = torch.from_numpy(np.random.default_rng([0, epoch]).permutation(n))
        start = time.perf_counter()
        running = torch.zeros((), dtype=torch.float64, device=device)
        for index in order.split(batch):
            obs, valid, *rest = tensors.batch(index, device)
            if drop:
                valid = drop_observations(valid, drop, 5, [(0, epoch, int(i)) for i in index])
            running += stepper((obs, valid, *rest)).double()
        if not np.isfinite(float(running)):  # also waits for the GPU
            raise SystemExit(f"{model_dict['kind']}: the loss diverged")
        seconds.append(time.perf_counter() - start)
    if profile is not None:
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        batches = order.split(batch)[:PROFILED_STEPS]
        with torch.profiler.profile(activities=activities) as prof:
            for index in batches:
                float(stepper(tensors.batch(index, device)))
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        table = prof.key_averages().table(sort_by=sort, row_limit=25)
        if device.type == "cuda":
            what = "kernel launches"
            calls = sum(e.count for e in prof.key_averages() if e.key in LAUNCH_EVENTS)
        else:
            what = "operator calls"
            calls = sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))
        profile.write_text(f"{model_dict['kind']} {step} {precision}: "
                           f"{calls / len(batches):.0f} {what} per step\n{table}\n")
    return seconds[1:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--step", choices=("eager", "cuda_graph"), default="eager")
    parser.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32")
    parser.add_argument("--sequences", type=int, default=300)
    parser.add_argument("--steps", type=int, default=75)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=3, help="including one warm-up epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--drop", type=float, default=0.0, help="share of frames hidden")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--profile", type=Path, default=None,
                        help="write the torch profiler's table of a few RKN steps here")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first is a warm-up)")
    device = resolve_device(args.device)
    try:
        check_step_options(args.step, args.precision, device, 1)
    except ValueError as err:
        parser.error(str(err))
    torch.set_num_threads(args.threads)
    if device.type == "cpu":
        keep_freed_memory()  # as the trainer does
    set_precision(args.precision, device)
    spec = {"generator": "pendulum", "num_sequences": args.sequences, "steps": args.steps,
            "seed": 1, "noise": True}
    data = generate_dataset(dict(spec))
    base = {"name": "bench", "data": {"train": {"generate": spec}}}
    run = functools.partial(time_epochs, data=data, recipe_base=base, device=device,
                            batch=args.batch, lr=args.lr, epochs=args.epochs, drop=args.drop)
    rows = {"gru_50 eager": run(experiments._rnn("gru", 50), step="eager", precision="fp32")}
    if args.step != "eager" or args.precision != "fp32":
        rows["rkn eager fp32"] = run(experiments._rkn(latent_obs_dim=15), step="eager",
                                     precision="fp32")
    rkn_name = f"rkn {args.step} {args.precision}"
    rows[rkn_name] = run(experiments._rkn(latent_obs_dim=15), step=args.step,
                         precision=args.precision, profile=args.profile)
    seq_steps = args.sequences * args.steps
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.machine()}, {os.cpu_count()} cores")
    print(f"pendulum {args.sequences} x {args.steps}, batch {args.batch}, drop {args.drop}, "
          f"device {device} ({name}), {args.threads} thread(s), torch {torch.__version__}, "
          f"{args.epochs - 1} timed epoch(s)")
    print("| model | step | s / epoch (median) | all epochs | s per 1,000 sequence-steps |")
    print("| --- | --- | --- | --- | --- |")
    figures = {}
    for label, seconds in rows.items():
        median = statistics.median(seconds)
        figures[label] = {"epoch_s": seconds, "median_s": median,
                          "s_per_1000_sequence_steps": median / seq_steps * 1000}
        model, step = label.split(" ", 1)
        print(f"| {model} | {step} | {median:.3f} | {', '.join(f'{s:.3f}' for s in seconds)} "
              f"| {median / seq_steps * 1000:.4f} |")
    ratio = figures[rkn_name]["median_s"] / figures["gru_50 eager"]["median_s"]
    per_1000 = figures[rkn_name]["s_per_1000_sequence_steps"]
    print(f"RKN ({args.step}, {args.precision}) / GRU (eager) epoch: {ratio:.2f} "
          f"(target <= 1.5 on a GPU)")
    if device.type == "cpu":
        print(f"RKN {per_1000:.4f} s per 1,000 sequence-steps; the paper's code "
              f"{PAPER_CPU_S} s on the 2-core reference machine")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": vars(args) | {"json": str(args.json)},
                                         "device": name, "figures": figures,
                                         "rkn_over_gru": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
