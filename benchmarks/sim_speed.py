"""Simulator speed and accuracy numbers (prints; no assertions).

Usage: ``.venv/bin/python benchmarks/sim_speed.py [--quick]``

- data generation throughput (physics + rendering + noise) for the pendulum, the quad-link and
  the pneumatic joint, with the extrapolated time for the paper-sized sets;
- per-tick cost of the stepping simulators used by the ROS nodes;
- quad-link energy drift over 1,000 steps with RK4 at 2e-3 s (friction and noise off), which the
  test suite checks only over 200 steps to stay fast.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rkn_ros.data.generate import (
    PendulumConfig,
    default_pendulum_config,
    generate_pendulum,
    generate_pneumatic,
)
from rkn_ros.sim.pendulum import PendulumParams, chain_constants, energy, integrate_dt
from rkn_ros.sim.pendulum_sim import PendulumSimulator
from rkn_ros.sim.pneumatic import PneumaticJoint, PneumaticParams
from rkn_ros.sim.render import RenderParams


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def generation(quick: bool) -> None:
    """Data set throughput; the extrapolation is linear, so an upper bound (batches vectorize)."""
    print("## generation (sequences x steps: seconds; extrapolated to the paper's set)")
    n = 50 if quick else 200
    cases = [
        ("pendulum 24x24, noise", lambda k: generate_pendulum(
            "pendulum", PendulumConfig(noise=True), k, 75, 0), 2000),
        ("quad_link 48x48", lambda k: generate_pendulum(
            "quad_link", default_pendulum_config("quad_link"), k, 150, 0), 4000),
        ("pneumatic", lambda k: generate_pneumatic(PneumaticParams(), k, 150, 0), 2000),
    ]
    for name, make, paper in cases:
        k = n
        seconds = _timed(lambda make=make, k=k: make(k))
        print(f"{name}: {k} sequences in {seconds:.2f} s -> {paper} sequences "
              f"~{seconds * paper / k:.0f} s")


def ticks() -> None:
    """Per-tick cost of the stepping simulators the ROS nodes call."""
    print("## stepping simulators (one tick, median of 200)")
    for name, sim in (("pendulum 24x24", PendulumSimulator(seed=0)),
                      ("quad_link 48x48", PendulumSimulator(PendulumParams.quad_link(),
                                                            RenderParams.quad_link(), seed=0))):
        sim.reset()
        times = [_timed(sim.step) for _ in range(200)]
        print(f"{name}: {np.median(times) * 1e3:.2f} ms per step (dt 50 ms)")
    joint = PneumaticJoint(seed=0)
    joint.reset()
    command = np.array([3.0, 2.0])
    times = [_timed(lambda: joint.step(command)) for _ in range(200)]
    print(f"pneumatic joint: {np.median(times) * 1e3:.2f} ms per step (dt 10 ms)")


def quad_drift(quick: bool) -> None:
    """Worst relative energy drift of the frictionless, noiseless quad-link."""
    steps = 200 if quick else 1000
    params = PendulumParams.quad_link(friction=0.0, process_noise_std=0.0)
    const = chain_constants(params)
    theta = np.random.default_rng(0).uniform(-np.pi, np.pi, size=(8, 4))
    omega = np.zeros_like(theta)
    e0 = energy(theta, omega, params)
    worst = np.zeros(len(e0))
    for _ in range(steps):
        theta, omega = integrate_dt(theta, omega, params, const)
        worst = np.maximum(worst, np.abs(energy(theta, omega, params) - e0) / e0)
    print(f"## quad-link energy drift, RK4 {params.sub_step} s, {steps} steps, 8 random starts: "
          f"max {worst.max():.2e} (relative to the energy above rest)")


def main() -> int:
    """Run the three measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    args = parser.parse_args()
    generation(args.quick)
    ticks()
    quad_drift(args.quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
