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
from rkn_ros.core.linear_gaussian import (
    LinearGaussianSystem,
    damped_oscillator,
    gaussian_nll_np,
    kalman_filter,
)
from rkn_ros.train.dynamics import continuous_modes, dense_basis

# The CI check of the dynamics readout (test/test_dynamics.py): a smaller, quicker run in
# which the transition is well determined by the data. Readings only in the first 30 of 100
# steps (20% of those missing), so the loss scores 70 steps of free prediction, where the
# decay and the frequency show; log-variance features, so the decoder can express the
# posterior variance exactly; a cosine-decayed learning rate, so the estimate settles.
SMALL_RUN = {
    "data": {"train_sequences": 512, "test_sequences": 64, "steps": 100, "missing": 0.2,
             "observed_steps": 30, "seed": 0},
    "training": {"iterations": 200, "batch_size": 512, "lr": 3e-2, "seed": 0,
                 "log_variance_features": True, "cosine_lr": True},
}


def oscillator_data(system: LinearGaussianSystem, train_sequences: int, test_sequences: int,
                    steps: int, missing: float, seed: int,
                    observed_steps: int | None = None) -> dict[str, torch.Tensor]:
    """Train and test sequences of ``system``, standardised with training statistics as the
    training pipeline does: ``train_x``/``test_x`` states [S, T, 2], ``train_y``/``test_y``
    observations [S, T, 1], ``train_valid``/``test_valid`` [S, T] (a share ``missing`` of the
    readings dropped, and all after ``observed_steps``), ``x_scale`` [2]; plus the raw
    ``test_x_raw``/``test_y_raw`` arrays and ``test_valid_np`` for the exact filter."""
    rng = np.random.default_rng(seed + 100)
    train_x, train_y = system.simulate(train_sequences, steps, seed=seed + 1)
    test_x, test_y = system.simulate(test_sequences, steps, seed=seed + 2)
    train_valid = rng.random(train_x.shape[:2]) >= missing
    test_valid = rng.random(test_x.shape[:2]) >= missing
    if observed_steps is not None:
        train_valid[:, observed_steps:] = False
        test_valid[:, observed_steps:] = False
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    y_scale, x_scale = train_y.std(), train_x.reshape(-1, train_x.shape[-1]).std(0)
    return {"train_x": as_tensor(train_x / x_scale), "train_y": as_tensor(train_y / y_scale),
            "test_x": as_tensor(test_x / x_scale), "test_y": as_tensor(test_y / y_scale),
            "train_valid": torch.tensor(train_valid), "test_valid": torch.tensor(test_valid),
            "x_scale": as_tensor(x_scale), "test_x_raw": test_x, "test_y_raw": test_y,
            "test_valid_np": test_valid}


def train(kind: str, data: dict, iterations: int, batch_size: int, lr: float, seed: int,
          num_basis: int = 1, hidden_size: int = 32, log_variance_features: bool = False,
          cosine_lr: bool = False, progress: bool = False) -> tuple[torch.nn.Module, float]:
    """A model of ``kind`` trained on ``data`` (see oscillator_data): (model, train seconds)."""
    torch.manual_seed(seed)
    config = ModelConfig(
        sensors=(SensorSpec("position", "vector", (1,)),), output_dim=2, kind=kind,
        latent_obs_dim=1, num_basis=num_basis, bandwidth=0, hidden_size=hidden_size,
        encoder_hidden=(), decoder_hidden=(), normalize_latent_obs=False,
        learn_initial_state=True, log_variance_features=log_variance_features,
    )
    model = build_model(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iterations, lr / 30)
                if cosine_lr else None)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    sequences = data["train_y"].shape[0]
    for _ in tqdm(range(iterations), desc=kind, leave=False, disable=not progress):
        batch = torch.randperm(sequences, generator=generator)[:batch_size]
        out = model({"position": data["train_y"][batch]}, {"position": data["train_valid"][batch]})
        loss = gaussian_nll(out.mean, out.var, data["train_x"][batch])
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if schedule is not None:
            schedule.step()
    return model.eval(), time.perf_counter() - start


def oscillation_modes(matrix: np.ndarray, dt: float) -> tuple[float, float] | None:
    """(natural frequency rad/s, damping ratio) of the oscillatory pair of a 2 x 2 transition
    matrix, through s = log(lambda) / dt; None if its eigenvalues are real."""
    lam = np.linalg.eigvals(matrix)
    pair = lam[lam.imag > 0]
    if pair.size == 0:
        return None
    modes = continuous_modes(pair, dt)
    return float(modes["frequency"][0]), float(modes["damping"][0])


def train_and_test(kind: str, args: argparse.Namespace, data: dict[str, torch.Tensor]) -> dict:
    model, train_seconds = train(kind, data, args.iterations, args.batch_size, args.lr,
                                 args.seed, args.num_basis, args.hidden_size, progress=True)
    row: dict = {}
    if kind == "rkn":
        row["modes"] = oscillation_modes(dense_basis(model.transition)[0], args.dt)
    with torch.no_grad():
        out = model({"position": data["test_y"]}, {"position": data["test_valid"]})
        # back to the system's units: the NLL is comparable with the Kalman filter's
        scale = data["x_scale"]
        mean, var, target = out.mean * scale, out.var * scale**2, data["test_x"] * scale
        return {
            **row,
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
    parser.add_argument("--dt", type=float, default=0.1, help="s per step of the oscillator")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    system = damped_oscillator(dt=args.dt)
    data = oscillator_data(system, args.train_sequences, args.test_sequences, args.steps,
                           args.missing, args.seed)
    test_x, test_y, test_valid = data["test_x_raw"], data["test_y_raw"], data["test_valid_np"]
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
    truth = oscillation_modes(system.A, args.dt)
    learned = rows.get("RKN", {}).get("modes")
    if truth is not None and learned is not None:
        print(f"dynamics read from the RKN's transition: {learned[0]:.4f} rad/s, damping ratio "
              f"{learned[1]:.4f}; the system's own matrix: {truth[0]:.4f} rad/s, "
              f"{truth[1]:.4f} (s = log(lambda) / dt)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
