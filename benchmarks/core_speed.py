"""Speed of the core model alone (no runtime, no ROS): batch-1 steps and training.

Prints, beside the budgets and a GRU of the same encoder/decoder measured in the same
run (interleaved rounds, medians over rounds, so the ratio holds on a busy machine):

- one step (encode + update + predict + decode, `model.step(..., check=False)`, inference
  mode, batch 1): p50/p99 for the pendulum (24x24, m = 15) and the quad-link (48x48, m = 100
  as in the paper, and m = 50); a third of the frames missing;
- training: seconds per 1,000 sequence-steps (forward, Gaussian NLL, backward, Adam) on
  pendulum-shaped data, batch 50, 75 steps, RKN vs GRU; with every frame present (as in the
  pendulum recipe) and with 30% missing (recipes with `observation_drop`: missing frames skip
  the encoder); and the RKN through the per-tick cell loop (`SequenceModel.filter_sequence`) for
  reference against its batch-last loop (`RKN.filter_sequence`);
- the RKN's filter loop alone, forward + backward, both loops, m = 15 and m = 50.

    .venv/bin/python benchmarks/core_speed.py [--rounds 5] [--steps 1000] [--train-batches 3]
        [--train-threads 1] [--train-only]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rkn_ros.core import ModelConfig, SensorSpec, build_model, gaussian_nll
from rkn_ros.core.model import SequenceModel
from rkn_ros.train.allocator import keep_freed_memory

# name: (image side, output dim, RKN config overrides); the GRU gets hidden size 2m
STEP_MODELS = {
    "pendulum m=15": (24, 2, dict(latent_obs_dim=15)),
    "quad-link m=100": (48, 8, dict(latent_obs_dim=100, encoder_dense=100,
                                    decoder_hidden=(100,))),
    "quad-link m=50": (48, 8, dict(latent_obs_dim=50, encoder_dense=100,
                                   decoder_hidden=(100,))),
}
STEP_BUDGET_MS = {"pendulum m=15": 0.18, "quad-link m=100": 0.5, "quad-link m=50": 0.5}
TRAIN_BUDGET_S = 0.15  # per 1,000 sequence-steps; and RKN <= 1.5 x GRU


def make(kind: str, side: int, output_dim: int, overrides: dict) -> torch.nn.Module:
    arch = dict(overrides)
    if kind == "gru":
        arch["hidden_size"] = 2 * arch.pop("latent_obs_dim")
    torch.manual_seed(0)
    return build_model(ModelConfig(sensors=(SensorSpec("image", "image", (side, side)),),
                                   output_dim=output_dim, kind=kind, **arch))


def stepper(model: torch.nn.Module, side: int, compiled: bool) -> Callable[[], None]:
    """A closure doing one batch-1 step, carrying the state; every third frame missing.

    compiled: through `model.compile_step()` (what the runtime should call), else
    `model.step(..., check=False)`.
    """
    step_fn = model.compile_step(1) if compiled else partial(model.step, check=False)
    gen = torch.Generator().manual_seed(0)
    frames = torch.rand(16, 1, side, side, generator=gen)
    seen, missing = torch.ones(1, dtype=torch.bool), torch.zeros(1, dtype=torch.bool)
    blank = torch.zeros(1, side, side)
    box = {"state": model.initial_state(1), "k": 0}

    def step() -> None:
        k = box["k"]
        box["k"] = k + 1
        obs, valid = (blank, missing) if k % 3 == 2 else (frames[k % 16], seen)
        box["state"] = step_fn(box["state"], {"image": obs}, {"image": valid}).state

    return step


def time_calls(fn: Callable[[], None], n: int) -> tuple[float, float]:
    """p50, p99 in ms of n calls (after a warm-up)."""
    for _ in range(max(50, n // 10)):
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[n // 2] * 1e3, times[min(n - 1, int(n * 0.99))] * 1e3


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def bench_steps(rounds: int, steps: int) -> None:
    print(f"\n-- batch-1 step, inference mode, 1 thread: medians of {rounds} interleaved rounds "
          f"of {steps} steps; 'compiled' = model.compile_step(1), 'eager' = "
          f"model.step(check=False)")
    print(f"{'model':<17} {'path':<9} {'RKN p50':>8} {'p99':>7} {'GRU p50':>8} {'p99':>7} "
          f"{'RKN/GRU':>8} {'budget p50':>10} {'p99/p50':>8}")
    for name, (side, out_dim, overrides) in STEP_MODELS.items():
        models = {kind: make(kind, side, out_dim, overrides).eval() for kind in ("rkn", "gru")}
        keys = [(kind, compiled) for compiled in (False, True) for kind in models]
        results: dict[tuple[str, bool], list[tuple[float, float]]] = {k: [] for k in keys}
        with torch.inference_mode():
            start = time.perf_counter()
            fns = {(kind, compiled): stepper(models[kind], side, compiled)
                   for kind, compiled in keys}
            build = time.perf_counter() - start
            for _ in range(rounds):
                for key, fn in fns.items():
                    results[key].append(time_calls(fn, steps))
        for compiled in (False, True):
            rkn50, rkn99 = (median([r[i] for r in results["rkn", compiled]]) for i in (0, 1))
            gru50, gru99 = (median([r[i] for r in results["gru", compiled]]) for i in (0, 1))
            budget = STEP_BUDGET_MS[name]
            verdict = "ok" if rkn50 <= budget and rkn99 <= 2 * rkn50 else "OVER"
            path = "compiled" if compiled else "eager"
            print(f"{name:<17} {path:<9} {rkn50:8.3f} {rkn99:7.3f} {gru50:8.3f} {gru99:7.3f} "
                  f"{rkn50 / gru50:8.2f} {budget:10.2f} {rkn99 / rkn50:8.2f}  {verdict}")
        print(f"{'':<17} (building the four steppers, two traces included: {build:.1f} s)")


def bench_training(batches: int, rounds: int, missing: float, batch: int = 50,
                   steps: int = 75) -> None:
    # as the trainer does on CPU (rkn_ros.train.allocator; without it ~40% slower here)
    kept = keep_freed_memory()
    print(f"\n-- training (forward + NLL + backward + Adam), pendulum 24x24, batch {batch}, "
          f"{steps} steps, {missing:.0%} of the frames missing, {torch.get_num_threads()} "
          f"thread(s): s per 1,000 sequence-steps, median of {rounds} rounds x {batches} "
          f"batches; freed memory kept: {kept}")
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(batch, steps, 24, 24, generator=gen)
    valid = {"image": torch.rand(batch, steps, generator=gen) >= missing}
    targets = torch.randn(batch, steps, 2, generator=gen)
    runs = {}
    for kind in ("rkn", "gru", "rkn_cell_loop"):
        model = make(kind[:3], 24, 2, dict(latent_obs_dim=15)).train()
        if kind == "rkn_cell_loop":
            # the reference for RKN.filter_sequence (batch last): the per-tick `cell` loop,
            # as `step` runs
            model.filter_sequence = partial(SequenceModel.filter_sequence, model)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def train_batch(model=model, optimizer=optimizer) -> None:
            optimizer.zero_grad(set_to_none=True)
            out = model({"image": images}, valid)
            gaussian_nll(out.mean, out.var, targets).backward()
            optimizer.step()

        train_batch()  # warm-up
        runs[kind] = train_batch
    seconds: dict[str, list[float]] = {kind: [] for kind in runs}
    for _ in range(rounds):
        for kind, fn in runs.items():
            start = time.perf_counter()
            for _ in range(batches):
                fn()
            seconds[kind].append((time.perf_counter() - start) / (batches * batch * steps) * 1e3)
    rkn, gru = median(seconds["rkn"]), median(seconds["gru"])
    cell_loop = median(seconds["rkn_cell_loop"])
    ok = rkn <= TRAIN_BUDGET_S and rkn <= 1.5 * gru
    print(f"RKN {rkn:.3f} s   GRU {gru:.3f} s   RKN/GRU {rkn / gru:.2f}   "
          f"budget <= {TRAIN_BUDGET_S} s and <= 1.5 x GRU  {'ok' if ok else 'OVER'}\n"
          f"(RKN through the per-tick cell loop instead of its batch-last loop: "
          f"{cell_loop:.3f} s, RKN/GRU {cell_loop / gru:.2f})")


def bench_filter_loop(rounds: int, batch: int = 50, steps: int = 75) -> None:
    """The RKN's recurrence alone (forward + backward of `filter_sequence` on given encodings,
    30% of the frames missing): its batch-last loop against the per-tick `cell` loop."""
    print(f"\n-- RKN filter loop alone (forward + backward), batch {batch}, {steps} steps, "
          f"30% missing, {torch.get_num_threads()} thread(s): ms per batch, median of "
          f"{rounds * 3} runs")
    for m in (15, 50):
        model = make("rkn", 24, 2, dict(latent_obs_dim=m)).train()
        gen = torch.Generator().manual_seed(0)
        w = torch.randn(batch, steps, m, generator=gen, requires_grad=True)
        var_obs = (torch.rand(batch, steps, m, generator=gen) + 0.1).requires_grad_()
        valid = {"image": torch.rand(batch, steps, generator=gen) >= 0.3}
        loops = {"batch-last (RKN.filter_sequence)": type(model).filter_sequence,
                 "cell loop (SequenceModel.filter_sequence)": SequenceModel.filter_sequence}

        def run(loop, model=model, w=w, var_obs=var_obs, valid=valid) -> None:
            _, mean_features, var_features = loop(model, model.initial_state(batch),
                                                  [(w, var_obs)], valid, None, None)
            (mean_features.sum() + var_features.sum()).backward()

        ms: dict[str, list[float]] = {name: [] for name in loops}
        for _ in range(rounds * 3):
            for name, loop in loops.items():
                start = time.perf_counter()
                run(loop)
                ms[name].append((time.perf_counter() - start) * 1e3)
        fast, slow = (median(ms[name]) for name in loops)
        print(f"m = {m:3d}: " + "   ".join(f"{name} {median(v):6.1f} ms"
                                          for name, v in ms.items())
              + f"   saved {1 - fast / slow:.0%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=1000, help="steps per round and model")
    parser.add_argument("--train-batches", type=int, default=2, help="batches per round")
    parser.add_argument("--train-threads", type=int, default=1)
    parser.add_argument("--train-only", action="store_true", help="skip the step benchmark")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, load average {os.getloadavg()}")
    if not args.train_only:
        torch.set_num_threads(1)
        bench_steps(args.rounds, args.steps)
    torch.set_num_threads(args.train_threads)
    for missing in (0.0, 0.3):
        bench_training(args.train_batches, max(1, args.rounds // 2), missing)
    bench_filter_loop(max(1, args.rounds // 2))
    print(f"\nload average at the end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
