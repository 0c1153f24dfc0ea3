"""Compare the simulated pneumatic joint with a real joint of the PAM recordings.

Usage: ``.venv/bin/python benchmarks/pam_compare.py [--joint 0] [--figure docs/figures/...]``

Reads ``../shared/data/pam/pam_dev.npz`` (or ``$RKN_ROS_SHARED/data/pam/pam_dev.npz``), simulates
episodes of the same length with the random-walk excitation (the real commands' style) and the
parameters of ``config/sim/pneumatic.yaml``, computes the same numbers on both with the same code,
prints a Markdown table and writes the figure used in docs/pneumatic.md. Real pressures are
normalized (about 0..1.2, scale unknown); simulated pressures are divided by ``--pressure-scale``
bar so the two are on one axis.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from rkn_ros.data.generate import load_pneumatic_params
from rkn_ros.sim.pneumatic import PneumaticJoint, PneumaticParams, excitation, simulate

REPO = Path(__file__).resolve().parents[1]
DT = 0.01
LAGS = 12          # correlation lags shown (steps)
FIR = 30           # impulse-response length (steps)
STEP_BAR = 2.5     # bar, size of the direct set-point-difference step in the figure


def shared_dir() -> Path:
    """``$RKN_ROS_SHARED`` or ``../shared`` next to the repository."""
    return Path(os.environ.get("RKN_ROS_SHARED", REPO.parent / "shared"))


def real_episodes(path: Path, joint: int) -> list[dict[str, np.ndarray]]:
    """Per episode: angle q (rad), flexor/extensor pressure (normalized) and commands."""
    with np.load(path, allow_pickle=False) as data:
        obs, act = data["observations"], data["actions"]
        starts, lengths = data["episode_starts"], data["episode_lengths"]
    out = []
    for s, n in zip(starts, lengths, strict=True):
        sl = slice(int(s), int(s + n))
        out.append({"q": obs[sl, joint].astype(np.float64),
                    "pf": obs[sl, 8 + 2 * joint].astype(np.float64),
                    "pe": obs[sl, 9 + 2 * joint].astype(np.float64),
                    "uf": act[sl, 2 * joint].astype(np.float64),
                    "ue": act[sl, 2 * joint + 1].astype(np.float64)})
    return out


def sim_episodes(params: PneumaticParams, lengths: np.ndarray, seed: int,
                 pressure_scale: float) -> list[dict[str, np.ndarray]]:
    """Simulated episodes of the given lengths, random-walk set-points, pressures normalized."""
    rng = np.random.default_rng(seed)
    steps = int(lengths.max())
    commands = excitation(params, len(lengths), steps, rng, kind="random_walk")
    out = simulate(params, commands, rng)
    meas = out["measurements"]
    return [{"q": meas[i, :n, 0], "pf": meas[i, :n, 1] / pressure_scale,
             "pe": meas[i, :n, 2] / pressure_scale, "uf": commands[i, :n, 0] / pressure_scale,
             "ue": commands[i, :n, 1] / pressure_scale}
            for i, n in enumerate(lengths)]


def _fir(episodes: list[dict], x_of, y_of, taps: int) -> np.ndarray:
    """Least-squares impulse response of y on past x (with a constant), ``[taps]``."""
    rows, ys = [], []
    for e in episodes:
        x, y = x_of(e), y_of(e)
        for t in range(taps, len(y)):
            rows.append(np.concatenate([x[t - taps + 1:t + 1][::-1], [1.0]]))
            ys.append(y[t])
    coef = np.linalg.lstsq(np.asarray(rows), np.asarray(ys), rcond=None)[0]
    return coef[:taps]


def metrics(episodes: list[dict[str, np.ndarray]]) -> dict[str, object]:
    """The compared numbers (see docs/pneumatic.md for their meaning)."""
    dq = np.concatenate([np.diff(e["q"]) for e in episodes])
    speed = np.abs(dq) / DT
    q = np.concatenate([e["q"] for e in episodes])
    pf = np.concatenate([e["pf"] for e in episodes])
    dp_rate = np.abs(np.concatenate([np.diff(e["pf"]) for e in episodes])) / DT
    corr = []
    for k in range(LAGS):
        xs = [np.diff(e["pf"] - e["pe"])[: len(e["q"]) - 1 - k] for e in episodes]
        ys = [np.diff(e["q"])[k:] for e in episodes]
        corr.append(float(np.corrcoef(np.concatenate(xs), np.concatenate(ys))[0, 1]))
    # angle response to a unit step of the pressure difference, identified from the data
    h_angle = _fir(episodes, lambda e: np.diff(e["pf"] - e["pe"]), lambda e: np.diff(e["q"]), FIR)
    # pressure response to a unit step of its own command
    h_pressure = _fir(episodes, lambda e: np.diff(e["uf"]), lambda e: np.diff(e["pf"]), FIR)
    step_p = np.cumsum(h_pressure)
    peak = np.abs(step_p).max()
    dead = int(np.argmax(np.abs(step_p) > 0.1 * peak))
    rise = int(np.argmax(np.abs(step_p) > 0.9 * peak)) - dead
    return {
        "speed_p50": float(np.percentile(speed, 50)), "speed_p90": float(np.percentile(speed, 90)),
        "speed_p99": float(np.percentile(speed, 99)),
        "still_fraction": float(np.mean(dq == 0.0)),
        "angle_p1": float(np.percentile(q, 1)), "angle_p99": float(np.percentile(q, 99)),
        "pressure_p50": float(np.percentile(pf, 50)),
        "pressure_p99": float(np.percentile(pf, 99)),
        "pressure_rate_p90": float(np.percentile(dp_rate, 90)),
        "lag_corr": corr, "lag_peak": int(np.argmax(np.abs(corr))),
        "angle_step": np.cumsum(h_angle), "pressure_step": step_p,
        "pressure_dead_steps": dead, "pressure_rise_steps": rise,
    }


def hysteresis_sweep(params: PneumaticParams, seconds: float = 8.0) -> tuple[np.ndarray, ...]:
    """Slow triangular sweep of the pressure difference: (difference bar, angle rad)."""
    joint = PneumaticJoint(params, seed=0)
    joint.reset(angle=0.0)
    steps = round(seconds / params.dt)
    mid = 0.5 * (params.excitation.min_pressure + params.excitation.max_pressure)
    amp = 0.9 * (params.excitation.max_pressure - mid)
    phase = np.arange(steps) / steps
    diff = amp * np.where(phase < 0.25, 4 * phase, np.where(phase < 0.75, 2 - 4 * phase,
                                                              4 * phase - 4))
    angles = []
    for d in diff:
        _, truth = joint.step(np.array([mid + d / 2, mid - d / 2]))
        angles.append(truth.angle)
    return diff, np.asarray(angles)


def set_point_step(params: PneumaticParams,
                   size: float = STEP_BAR) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Direct simulated step of the set-point difference by ``size`` bar (co-contraction kept):
    (time s, flexor pressure bar, angle rad)."""
    joint = PneumaticJoint(params, seed=0)
    mid = 0.5 * (params.excitation.min_pressure + params.excitation.max_pressure)
    joint.reset(angle=0.0)
    for _ in range(100):                                   # settle at co-contraction
        joint.step(np.array([mid, mid]))
    pressures, angles = [], []
    for _ in range(FIR):
        _, truth = joint.step(np.array([mid + size / 2, mid - size / 2]))
        pressures.append(truth.pressures[0])
        angles.append(truth.angle)
    return np.arange(1, FIR + 1) * params.dt, np.asarray(pressures), np.asarray(angles)


def table(real: dict, sim: dict) -> str:
    """Markdown table of the scalar metrics."""
    rows = [
        ("angular speed p50 (rad/s)", "speed_p50", "{:.2f}"),
        ("angular speed p90 (rad/s)", "speed_p90", "{:.2f}"),
        ("angular speed p99 (rad/s)", "speed_p99", "{:.2f}"),
        ("steps without encoder change", "still_fraction", "{:.0%}"),
        ("angle p1 .. p99 (rad)", None, None),
        ("flexor pressure p50 / p99 (normalized)", None, None),
        ("flexor pressure rate p90 (1/s, normalized)", "pressure_rate_p90", "{:.2f}"),
        ("pressure dead time after a command step (steps of 10 ms)", "pressure_dead_steps", "{}"),
        ("pressure rise 10-90 % (steps)", "pressure_rise_steps", "{}"),
        ("lag of peak corr(d(p_f - p_e), dq) (steps)", "lag_peak", "{}"),
        ("corr(d(p_f - p_e), dq) at lag 0", None, None),
        ("angle step response to a unit pressure-difference step, 1 / 10 / 30 steps (rad)",
         None, None),
    ]
    lines = ["| quantity | real joint | simulator |", "| --- | --- | --- |"]
    for label, key, fmt in rows:
        if key is not None:
            r, s = fmt.format(real[key]), fmt.format(sim[key])
        elif label.startswith("angle p1"):
            r = f"{real['angle_p1']:.2f} .. {real['angle_p99']:.2f}"
            s = f"{sim['angle_p1']:.2f} .. {sim['angle_p99']:.2f}"
        elif label.startswith("flexor pressure p50"):
            r = f"{real['pressure_p50']:.2f} / {real['pressure_p99']:.2f}"
            s = f"{sim['pressure_p50']:.2f} / {sim['pressure_p99']:.2f}"
        elif label.startswith("corr"):
            r, s = f"{real['lag_corr'][0]:.2f}", f"{sim['lag_corr'][0]:.2f}"
        else:
            r = " / ".join(f"{real['angle_step'][i]:.2f}" for i in (0, 9, 29))
            s = " / ".join(f"{sim['angle_step'][i]:.2f}" for i in (0, 9, 29))
        lines.append(f"| {label} | {r} | {s} |")
    return "\n".join(lines)


def figure(path: Path, real_eps: list, sim_eps: list, real: dict, sim: dict,
           params: PneumaticParams, joint: int, pressure_scale: float) -> None:
    """The 2 x 3 comparison figure."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, eps, title in ((axes[0, 0], real_eps, f"real joint {joint}"),
                           (axes[0, 1], sim_eps, "simulator")):
        e = eps[3]
        t = np.arange(len(e["q"])) * DT
        ax.plot(t, e["q"], "k", label="angle (rad)")
        ax.plot(t, e["pf"], "r", lw=1, label="flexor pressure (norm.)")
        ax.plot(t, e["pe"], "b", lw=1, label="extensor pressure (norm.)")
        ax.set_title(f"{title}: one episode")
        ax.set_xlabel("s")
        ax.legend(fontsize=7, loc="upper left")
    ax = axes[0, 2]
    bins = np.linspace(0, 12, 61)
    for eps, label, colour in ((real_eps, "real", "k"), (sim_eps, "simulator", "tab:orange")):
        speed = np.abs(np.concatenate([np.diff(e["q"]) for e in eps])) / DT
        ax.hist(np.clip(speed, 0, 12), bins=bins, density=True, histtype="step", color=colour,
                label=label)
    ax.set_yscale("log")
    ax.set_xlabel("|angular velocity| (rad/s), finite difference")
    ax.set_title("velocity distribution")
    ax.legend()
    ax = axes[1, 0]
    k = np.arange(FIR) * DT * 1000
    ax.plot(k, real["pressure_step"] / np.abs(real["pressure_step"]).max(), "k.-", label="real")
    ax.plot(k, sim["pressure_step"] / np.abs(sim["pressure_step"]).max(), ".-",
            color="tab:orange", label="simulator")
    ax.set_xlabel("ms after the command step")
    ax.set_title("pressure response to a command step\n(identified, normalized to peak)")
    ax.legend()
    ax = axes[1, 1]
    ax.plot(k, real["angle_step"], "k.-", label="real (identified)")
    ax.plot(k, sim["angle_step"], ".-", color="tab:orange", label="simulator (identified)")
    t, _, q = set_point_step(params)
    ax.plot(t * 1000, (q - q[0]) * pressure_scale / STEP_BAR, ":", color="tab:red",
            label=f"simulator: direct {STEP_BAR} bar set-point step, per unit")
    ax.set_xlabel("ms after the step")
    ax.set_ylabel("angle change (rad)")
    ax.set_title("angle response to a unit step of p_f - p_e")
    ax.legend(fontsize=8)
    ax = axes[1, 2]
    diff, angle = hysteresis_sweep(params)
    ax.plot(diff, angle, color="tab:orange")
    ax.set_xlabel("set-point difference p_f - p_e (bar)")
    ax.set_ylabel("angle (rad)")
    ax.set_title("simulator: slow sweep, hysteresis loop")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)


def main() -> int:
    """Print the comparison table and write the figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--joint", type=int, default=0, choices=range(4))
    parser.add_argument("--config", type=Path, default=REPO / "config" / "sim" / "pneumatic.yaml")
    parser.add_argument("--data", type=Path, default=shared_dir() / "data" / "pam" / "pam_dev.npz")
    parser.add_argument("--episodes", type=int, default=None,
                        help="use only the first N episodes (default: all)")
    parser.add_argument("--pressure-scale", type=float, default=5.0,
                        help="bar per unit of the real normalized pressure (assumed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--figure", type=Path,
                        default=REPO / "docs" / "figures" / "pneumatic_vs_real.png")
    args = parser.parse_args()
    params = load_pneumatic_params(args.config)
    real_eps = real_episodes(args.data, args.joint)[: args.episodes]
    lengths = np.array([len(e["q"]) for e in real_eps])
    sim_eps = sim_episodes(params, lengths, args.seed, args.pressure_scale)
    real, sim = metrics(real_eps), metrics(sim_eps)
    print(table(real, sim))
    figure(args.figure, real_eps, sim_eps, real, sim, params, args.joint, args.pressure_scale)
    print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
