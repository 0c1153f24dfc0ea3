"""Online (streaming) against offline numbers for the shipped models the demos run.

    .venv/bin/python benchmarks/online_vs_offline.py
        [--model pam|pneumatic|pendulum|quad_link|both] [--models-dir models] [--episodes 100]
        [--seeds 0 1 2] [--steps 2000] [--gap-ticks 16] [--gap 10] [--gap-every 40]
        [--outage 0]

Offline numbers are the model's ``evaluation.json`` (``rkn-ros evaluate`` / models/regenerate.py:
windows of the training length, every sequence starting from the initial belief). Online
numbers come from :class:`rkn_ros.runtime.estimator.StreamingEstimator` stepped tick by tick
over the inputs the demo feeds (``rkn-ros demo pam`` / ``rkn-ros demo pneumatic``):

- ``pam``: the validation episodes of ``$RKN_ROS_SHARED/data/pam/pam_dev.npz`` (the split of
  config/pam.yaml, the recipe's), whole. ``episode`` resets the belief at each episode start;
  ``stream`` plays them back to back without a reset, as pam_replay + rkn_estimator do, with
  ``--gap-ticks`` coasted ticks between episodes (no observation, last command held: the
  0.2 s ``episode_gap`` minus the 0.05 s ``sensor_timeout``). Each step's estimate of the next
  angles is scored against the recording; the last step of an episode has no next angle.
  ``hold last angle`` is the error of predicting no motion. ``without last transitions`` leaves
  out each episode's final transition: in most recordings (1462 of 2301) the last angle jumps
  by more than 0.1 rad (an artifact of how episodes end), no window of the training length ever
  reaches it, and in whole-episode scores those few steps dominate the RMSE.
  ``--outage N`` adds a third protocol: each episode from a fresh belief with N steps from
  step 20 unobserved (commands still applied), with rows for those steps and the 10 after.
- ``pneumatic``: the simulated joint exactly as pneumatic_sim steps it (config/pneumatic.yaml:
  ``config/sim/pneumatic.yaml``, built-in excitation in chunks of 3000 set-points, no frame
  drops), one unbroken run of ``--steps`` ticks per seed, scored against the true angle and
  velocity at each tick; then the same runs with ``--gap`` frames lost in every ``--gap-every``
  (the standard deviation must rise in gaps, not collapse: ``min_std``).
- ``pendulum``: the image pendulum exactly as pendulum_sim renders it (config/pendulum.yaml:
  one link, noisy 24x24 frames, simulator seed = ``--seeds``), ``--steps`` ticks per seed
  (600 = the 30 s demo), scored on the angle (wrapped) as the demo's monitor does; then the same
  runs with ``--gap`` frames lost in every ``--gap-every``.
- ``quad_link``: the same with the quad-link pendulum as pendulum_sim builds it
  (config/quad_link.yaml: four links, clean 48x48 frames), scored on the four angles.

With gaps, two more rows: the ticks in the gaps, and the 10 ticks after each (where a model
that never learned long outages came back claiming a tiny sigma).

Metrics as in rkn_ros.train.evaluation: RMSE over all outputs, log-likelihood per step summed
over outputs (physical units), share of errors within 1 and 2 standard deviations.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rkn_ros.data.dataset import split_indices  # noqa: E402
from rkn_ros.data.generate import load_pneumatic_params  # noqa: E402
from rkn_ros.data.pam import ANGLE_COLUMNS, load_recording  # noqa: E402
from rkn_ros.nodes.pneumatic_sim_node import EXCITATION_CHUNK  # noqa: E402
from rkn_ros.runtime.estimator import StreamingEstimator  # noqa: E402
from rkn_ros.sim.pendulum import PendulumParams  # noqa: E402
from rkn_ros.sim.pendulum_sim import PendulumSimulator  # noqa: E402
from rkn_ros.sim.pneumatic import PneumaticJoint, excitation  # noqa: E402
from rkn_ros.sim.render import RenderParams  # noqa: E402

LOG_2PI = math.log(2.0 * math.pi)
# What the demos feed (config/pam.yaml, config/pneumatic.yaml).
PAM_SPLIT = {"validation_fraction": 0.2, "split_seed": 0}
PNEUMATIC_SIM = "config/sim/pneumatic.yaml"
AFTER_GAP = 10  # ticks after a gap scored on their own
PAM_OUTAGE_START = 20  # first unobserved step of each episode with --outage


def metrics(mean: np.ndarray, std: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """RMSE, log-likelihood per step and coverage of ``[steps, outputs]`` estimates."""
    var = std.astype(np.float64) ** 2
    err = target - mean
    nll = 0.5 * (LOG_2PI + np.log(var) + err**2 / var)
    z = np.abs(err) / np.sqrt(var)
    return {
        "steps": int(mean.shape[0]),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "log_likelihood": float(-nll.sum(-1).mean()),
        "coverage_1sigma": float(np.mean(z <= 1.0)),
        "coverage_2sigma": float(np.mean(z <= 2.0)),
    }


def shared_dir() -> Path:
    """``$RKN_ROS_SHARED`` or ``../shared`` next to the repository."""
    return Path(os.environ.get("RKN_ROS_SHARED", REPO.parent / "shared"))


def run_pam(folder: Path, episodes: int, gap_ticks: int, outage: int) -> dict[str, dict]:
    """Online metrics of the PAM model on whole validation episodes (two protocols; with
    ``outage`` > 0 a third: each episode from a fresh belief with its steps 20 to 20 +
    ``outage`` - 1 unobserved, the commands still applied)."""
    recording = load_recording(shared_dir() / "data" / "pam" / "pam_dev.npz")
    _, validation = split_indices(recording.num_episodes, PAM_SPLIT["validation_fraction"],
                                  PAM_SPLIT["split_seed"])
    chosen = np.asarray(validation)[:episodes]
    est = StreamingEstimator.from_checkpoint(folder, "cpu", sensors=["joints"], dt=0.01,
                                             num_threads=1)
    rows: dict[str, dict] = {}
    for protocol in ("episode", "stream"):
        est.reset()
        means, stds, targets, held, final = [], [], [], [], []
        for n, index in enumerate(chosen):
            observations, actions = recording.episode(int(index))
            angles = observations[:, ANGLE_COLUMNS].astype(np.float64)
            if protocol == "episode":
                est.reset()
            elif n > 0:
                for _ in range(gap_ticks):
                    est.step({"joints": None})
            for t in range(angles.shape[0]):
                out = est.step({"joints": angles[t]}, action=actions[t])
                if t + 1 < angles.shape[0]:
                    means.append(out.mean.copy())
                    stds.append(out.std.copy())
                    targets.append(angles[t + 1])
                    held.append(angles[t])
                    final.append(t + 2 == angles.shape[0])
        rows[f"online, {protocol}"] = metrics(np.array(means), np.array(stds), np.array(targets))
        inner = ~np.array(final)
        rows[f"  without last transitions, {protocol}"] = metrics(
            np.array(means)[inner], np.array(stds)[inner], np.array(targets)[inner])
    if outage:
        mean, std, target, lost = pam_outage_run(est, recording, chosen, outage)
        rows[f"online, episode, {outage} unobserved"] = {
            **metrics(mean, std, target), "min_std": float(std.min())}
        add_gap_rows(rows, mean, std, target, lost)
    target, held_angle = np.array(targets), np.array(held)
    rows["hold last angle"] = {"steps": int(target.shape[0]),
                               "rmse": float(np.sqrt(np.mean((target - held_angle) ** 2)))}
    rows["  without last transitions"] = {
        "steps": int(inner.sum()),
        "rmse": float(np.sqrt(np.mean((target - held_angle)[inner] ** 2)))}
    rows["_episodes"] = {"count": int(chosen.size),
                         "lengths": [int(recording.episode_lengths[i]) for i in chosen]}
    return rows


def pam_outage_run(est: StreamingEstimator, recording, chosen: np.ndarray,
                   outage: int) -> tuple[np.ndarray, ...]:
    """``(mean, std, target, lost)`` over the episodes long enough for the outage and the
    ``AFTER_GAP`` steps after it, each episode from a fresh belief (next-angle targets)."""
    means, stds, targets, lost = [], [], [], []
    for index in chosen:
        observations, actions = recording.episode(int(index))
        angles = observations[:, ANGLE_COLUMNS].astype(np.float64)
        if angles.shape[0] < PAM_OUTAGE_START + outage + AFTER_GAP + 1:
            continue
        est.reset()
        for t in range(angles.shape[0] - 1):
            hidden = PAM_OUTAGE_START <= t < PAM_OUTAGE_START + outage
            out = est.step({"joints": None if hidden else angles[t]}, action=actions[t])
            means.append(out.mean.copy())
            stds.append(out.std.copy())
            targets.append(angles[t + 1])
            lost.append(hidden)
    return np.array(means), np.array(stds), np.array(targets), np.array(lost)


def run_pneumatic(folder: Path, seeds: list[int], steps: int, gap: int,
                  gap_every: int) -> dict[str, dict]:
    """Online metrics of the pneumatic model on unbroken simulated runs, one per seed, with
    every frame (as the demo) and with ``gap`` missing frames in every ``gap_every`` ticks."""
    params = load_pneumatic_params(REPO / PNEUMATIC_SIM)
    est = StreamingEstimator.from_checkpoint(folder, "cpu", sensors=["joints"], dt=params.dt,
                                             num_threads=1)
    rows: dict[str, dict] = {}
    for frames in ("all frames", "with gaps"):
        runs = []
        for seed in seeds:
            # Seeded as pneumatic_sim seeds its joint and its excitation generator.
            joint = PneumaticJoint(params, seed=seed)
            rng = np.random.default_rng(seed + 1)
            commands = np.zeros((0, 2))
            measurement, truth = joint.reset()
            est.reset()
            means, stds, targets, missing = [], [], [], []
            for t in range(steps):
                if commands.shape[0] == 0:
                    commands = excitation(params, 1, EXCITATION_CHUNK, rng)[0]
                command, commands = commands[0], commands[1:]
                lost = frames == "with gaps" and t >= gap_every and t % gap_every < gap
                reading = None if lost else np.asarray(measurement, dtype=np.float64)
                out = est.step({"joints": reading}, action=command)
                means.append(out.mean.copy())
                stds.append(out.std.copy())
                targets.append([truth.angle, truth.velocity])
                missing.append(lost)
                measurement, truth = joint.step(command)
            runs.append((np.array(means), np.array(stds), np.array(targets, dtype=np.float64),
                         np.array(missing)))
        label = "" if frames == "all frames" else f", {gap} of {gap_every} frames lost"
        mean, std, target, lost = add_run_rows(rows, runs, seeds, label)
        # The demo's monitor scores the angle only.
        rows[f"  angle only{label}"] = metrics(mean[:, :1], std[:, :1], target[:, :1])
        add_gap_rows(rows, mean, std, target, lost)
    return rows


def add_run_rows(rows: dict[str, dict], runs: list[tuple[np.ndarray, ...]], seeds: list[int],
                 label: str) -> tuple[np.ndarray, ...]:
    """Rows for each seed's run (every frame only) and for all of them; ``runs`` holds
    ``(mean, std, target [steps, outputs], missing [steps])`` per seed. Returns them joined."""
    if not label:
        for seed, (mean, std, target, _) in zip(seeds, runs, strict=True):
            rows[f"online, seed {seed}"] = metrics(mean, std, target)
    mean, std, target, lost = (np.concatenate(part) for part in zip(*runs, strict=True))
    rows[f"online, seeds {seeds[0]}-{seeds[-1]}{label}"] = {
        **metrics(mean, std, target), "min_std": float(std.min())}
    return mean, std, target, lost


def add_gap_rows(rows: dict[str, dict], mean: np.ndarray, std: np.ndarray, target: np.ndarray,
                 lost: np.ndarray) -> None:
    """The rows of the steps without a reading and of the ``AFTER_GAP`` steps after each gap
    (where a model that never learned long outages comes back overconfident), if any."""
    if lost.any():
        rows["  of which in gaps"] = {
            **metrics(mean[lost], std[lost], target[lost]), "min_std": float(std[lost].min())}
        after = np.zeros_like(lost)
        for k in range(1, AFTER_GAP + 1):
            after[k:] |= lost[:-k]
        after &= ~lost
        if not after.any():
            return
        rows[f"  of which {AFTER_GAP} after a gap"] = {
            **metrics(mean[after], std[after], target[after]), "min_std": float(std[after].min())}


def run_pendulum(folder: Path, seeds: list[int], steps: int, gap: int, gap_every: int,
                 links: int = 1) -> dict[str, dict]:
    """Online angle metrics of an image-pendulum model on the demo's simulated camera, one run
    per seed, with every frame and with ``gap`` frames lost in every ``gap_every`` ticks.
    ``links``: 1 (config/pendulum.yaml: noisy frames) or 4 (config/quad_link.yaml: clean)."""
    est = StreamingEstimator.from_checkpoint(folder, "cpu", num_threads=1)
    (sensor,) = est.inputs
    if links == 1:
        base, render = PendulumParams(), RenderParams()
    else:  # as pendulum_sim builds the quad-link
        base = PendulumParams.quad_link(links=links, masses=(1.0,) * links,
                                        lengths=(1.0,) * links)
        render = RenderParams.quad_link()
    params = PendulumParams.from_dict({**base.to_dict(), "dt": est.dt})
    rows: dict[str, dict] = {}
    for frames in ("all frames", "with gaps"):
        runs = []
        for seed in seeds:
            # Seeded and stepped as pendulum_sim does.
            sim = PendulumSimulator(params, render, seed=seed, image_noise=links == 1)
            image, angles, _ = sim.reset()
            est.reset()
            means, stds, targets, missing = [], [], [], []
            for t in range(steps):
                if t:
                    image, angles, _ = sim.step()
                lost = frames == "with gaps" and t >= gap_every and t % gap_every < gap
                out = est.step({sensor: None if lost else image})
                means.append(out.position)
                stds.append(out.position_std)
                # the error wrapped to (-pi, pi], as the monitor scores angles
                error = (np.asarray(angles) - out.position + math.pi) % (2 * math.pi) - math.pi
                targets.append(out.position + error)
                missing.append(lost)
            runs.append((np.array(means), np.array(stds), np.array(targets),
                         np.array(missing)))
        label = "" if frames == "all frames" else f", {gap} of {gap_every} frames lost"
        add_gap_rows(rows, *add_run_rows(rows, runs, seeds, label))
    return rows


def offline_row(folder: Path) -> dict:
    """The recorded offline evaluation (``evaluation.json``) in the same columns."""
    report = json.loads((folder / "evaluation.json").read_text())
    return {
        "steps": report["num_sequences"] * report["sequence_length"],
        "rmse": report["rmse"],
        "log_likelihood": report["log_likelihood"],
        "coverage_1sigma": report["coverage_1sigma"],
        "coverage_2sigma": report["coverage_2sigma"],
        "sequence_length": report["sequence_length"],
    }


def print_table(name: str, rows: dict[str, dict]) -> None:
    print(f"\n{name}")
    print(f"  {'protocol':<34} {'steps':>7} {'RMSE':>9} {'log-lik':>9} {'cov1':>6} "
          f"{'cov2':>6} {'min std':>8}")
    for label, row in rows.items():
        if label.startswith("_"):
            continue

        def cell(key: str, fmt: str, width: int, row: dict = row) -> str:
            return format(row[key], fmt).rjust(width) if key in row else "-".rjust(width)

        print(f"  {label:<34} {row['steps']:>7} {cell('rmse', '.4f', 9)} "
              f"{cell('log_likelihood', '.3f', 9)} {cell('coverage_1sigma', '.3f', 6)} "
              f"{cell('coverage_2sigma', '.3f', 6)} {cell('min_std', '.2e', 8)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", choices=("pam", "pneumatic", "pendulum", "quad_link", "both"),
                        default="both", help="both = pam and pneumatic")
    parser.add_argument("--models-dir", type=Path, default=REPO / "models",
                        help="folder holding pam/ and pneumatic/ checkpoints (default models/)")
    parser.add_argument("--episodes", type=int, default=100,
                        help="PAM validation episodes, in the replay's order (default 100)")
    parser.add_argument("--gap-ticks", type=int, default=16,
                        help="coasted ticks between PAM episodes in the stream protocol")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="simulator seeds (the demos use 0)")
    parser.add_argument("--steps", type=int, default=2000,
                        help="ticks per run (2000 = the 20 s pneumatic demo at 100 Hz, 600 = "
                        "the 30 s pendulum demo at 20 Hz)")
    parser.add_argument("--gap", type=int, default=10,
                        help="pneumatic frames lost in a row in the gap protocol (default 10)")
    parser.add_argument("--gap-every", type=int, default=40,
                        help="ticks from one pneumatic gap to the next (default 40)")
    parser.add_argument("--outage", type=int, default=0,
                        help="PAM: also score episodes with this many steps unobserved from "
                        "step 20 (0 = off)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    for key in ("episodes", "steps"):
        if getattr(args, key) < 2:
            parser.error(f"--{key}: expected >= 2, got {getattr(args, key)}")
    if args.gap_ticks < 0:
        parser.error(f"--gap-ticks: expected >= 0, got {args.gap_ticks}")
    if args.outage < 0:
        parser.error(f"--outage: expected >= 0, got {args.outage}")
    if not 0 < args.gap < args.gap_every:
        parser.error(f"--gap: expected 0 < gap < --gap-every ({args.gap_every}), got {args.gap}")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    names = ("pam", "pneumatic") if args.model == "both" else (args.model,)
    results = {}
    for name in names:
        folder = args.models_dir / name
        if not (folder / "evaluation.json").is_file():
            parser.error(f"--models-dir: {folder} holds no evaluation.json")
        start = time.perf_counter()
        rows = {"offline (evaluation.json)": offline_row(folder)}
        if name == "pneumatic":
            recorded = json.loads((folder / "evaluation.json").read_text())
            rows["  angle only (offline)"] = {"steps": rows["offline (evaluation.json)"]["steps"],
                                    "rmse": recorded["rmse_per_output"][0]}
        if name in ("pendulum", "quad_link"):
            recorded = json.loads((folder / "evaluation.json").read_text())
            rows["  angle only (offline)"] = {"steps": rows["offline (evaluation.json)"]["steps"],
                                              "rmse": recorded["angle_rmse"]}
            rows.update(run_pendulum(folder, args.seeds, args.steps, args.gap, args.gap_every,
                                     links=1 if name == "pendulum" else 4))
        elif name == "pam":
            rows.update(run_pam(folder, args.episodes, args.gap_ticks, args.outage))
        else:
            rows.update(run_pneumatic(folder, args.seeds, args.steps, args.gap,
                                      args.gap_every))
        offline_len = rows["offline (evaluation.json)"]["sequence_length"]
        print_table(f"{name} ({folder}; offline windows of {offline_len} steps; "
                    f"{time.perf_counter() - start:.0f} s)", rows)
        results[name] = rows
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
