"""RKN vs LSTM vs GRU vs the exact Kalman filter on a known linear-Gaussian system.

The bigger sibling of test/test_core_seed_experiment.py: a damped oscillator whose position is
observed in noise (some observations missing), velocity never observed. Every model gets the
same affine encoder and decoder and standardised data; the exact Kalman filter is the optimum.
Prints NLL (nats per step, lower is better), RMSE and 2-sigma coverage on held-out sequences,
all in the system's units.

    .venv/bin/python benchmarks/linear_gaussian.py            # about 3 to 6 minutes, 1 thread
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from tqdm import tqdm

from rkn_ros.core import ModelConfig, SensorSpec, build_model, coverage, gaussian_nll, rmse
from rkn_ros.core.linear_gaussian import damped_oscillator, gaussian_nll_np, kalman_filter


def train_and_test(kind: str, args: argparse.Namespace, data: dict[str, torch.Tensor]) -> dict:
    torch.manual_seed(args.seed)
    config = ModelConfig(
        sensors=(SensorSpec("position", "vector", (1,)),), output_dim=2, kind=kind,
        latent_obs_dim=1, num_basis=args.num_basis, bandwidth=0, hidden_size=args.hidden_size,
        encoder_hidden=(), decoder_hidden=(), normalize_latent_obs=False,
        learn_initial_state=True,
    )
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)
    sequences = data["train_y"].shape[0]
    for _ in tqdm(range(args.iterations), desc=kind, leave=False):
        batch = torch.randperm(sequences, generator=generator)[: args.batch_size]
        out = model({"position": data["train_y"][batch]}, {"position": data["train_valid"][batch]})
        loss = gaussian_nll(out.mean, out.var, data["train_x"][batch])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
    train_seconds = time.perf_counter() - start
    with torch.no_grad():
        out = model({"position": data["test_y"]}, {"position": data["test_valid"]})
        # back to the system's units: the NLL is comparable with the Kalman filter's
        scale = data["x_scale"]
        mean, var, target = out.mean * scale, out.var * scale**2, data["test_x"] * scale
        return {
            "nll": gaussian_nll(mean, var, target).item(),
            "rmse": rmse(mean, target).item(),
            "coverage": coverage(mean, var, target, 2.0).item(),
            "train_s": train_seconds,
            "parameters": sum(p.numel() for p in model.parameters()),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-sequences", type=int, default=512)
    parser.add_argument("--test-sequences", type=int, default=512)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--missing", type=float, default=0.2, help="fraction of dropped readings")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-2)
    parser.add_argument("--num-basis", type=int, default=1)
    parser.add_argument("--hidden-size", type=int, default=32, help="LSTM/GRU hidden size")
    parser.add_argument("--models", default="rkn,lstm,gru")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    system = damped_oscillator()
    rng = np.random.default_rng(args.seed + 100)
    train_x, train_y = system.simulate(args.train_sequences, args.steps, seed=args.seed + 1)
    test_x, test_y = system.simulate(args.test_sequences, args.steps, seed=args.seed + 2)
    train_valid = rng.random(train_x.shape[:2]) >= args.missing
    test_valid = rng.random(test_x.shape[:2]) >= args.missing
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    # standardised with training statistics, as the training pipeline does
    y_scale, x_scale = train_y.std(), train_x.reshape(-1, train_x.shape[-1]).std(0)
    data = {"train_x": as_tensor(train_x / x_scale), "train_y": as_tensor(train_y / y_scale),
            "test_x": as_tensor(test_x / x_scale), "test_y": as_tensor(test_y / y_scale),
            "train_valid": torch.tensor(train_valid), "test_valid": torch.tensor(test_valid),
            "x_scale": as_tensor(x_scale)}

    kf_mean, kf_var = kalman_filter(system, test_y, test_valid)
    rows = {"exact KF": {
        "nll": gaussian_nll_np(kf_mean, kf_var, test_x),
        "rmse": float(np.sqrt(((kf_mean - test_x) ** 2).mean())),
        "coverage": float((np.abs(kf_mean - test_x) <= 2 * np.sqrt(kf_var)).mean()),
        "train_s": 0.0, "parameters": 0,
    }}
    for kind in args.models.split(","):
        rows[kind.upper()] = train_and_test(kind, args, data)

    print(f"damped oscillator, position observed (R = {system.R[0, 0]}), "
          f"{args.missing:.0%} of readings missing; {args.train_sequences} train / "
          f"{args.test_sequences} test sequences x {args.steps} steps; "
          f"{args.iterations} Adam steps (batch {args.batch_size}, lr {args.lr}); "
          f"torch threads {args.threads}")
    kf_nll = rows["exact KF"]["nll"]
    print("| model | NLL (nats/step) | NLL - KF | RMSE | 2-sigma coverage | params | train s |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows.items():
        print(f"| {name} | {r['nll']:.4f} | {r['nll'] - kf_nll:+.4f} | {r['rmse']:.4f} | "
              f"{r['coverage']:.4f} | {r['parameters']} | {r['train_s']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
