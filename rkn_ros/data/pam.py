"""Real pneumatic-muscle arm recordings (PAM) as windowed :class:`SequenceDataset` parts.

Input: any ``.npz`` in the format of docs/data.md's PAM section (read and checked by
:mod:`rkn_ros.data.pam_recording`; ragged episodes stored back to back: ``observations
[N, 24]``, ``actions [N, 8]``, ``episode_starts``, ``episode_lengths``, ``episode_ids``;
100 Hz). Output: a train and a validation data set following the paper's
protocol (Shaj et al., CoRL 2020):

- episodes are split into train/validation *by episode* (seeded), so no window of one
  episode appears on both sides;
- each episode is cut into windows of ``window`` steps; a window starting at ``s`` holds the
  observations ``s .. s+T-1`` and needs one more step for the last target, so an episode of
  ``L`` steps gives windows while ``s + T + 1 <= L`` (episodes too short are counted and logged);
- ``actions[t]`` pairs with ``observations[t]`` (the command applied after observing ``t``);
- targets are the next joint angles ``angles[t+1]`` in radians, or the differences
  ``angles[t+1] - angles[t]`` (``targets="delta"``);
- z-normalization statistics come from the training episodes only and are stored in the
  metadata; arrays stay in physical units (radians for angles);
- observations are dropped at random with ``drop_prob`` (the first ``keep_first`` steps of a
  window are always kept); dropped rows are zeroed and flagged ``False`` in ``joint_obs_valid``,
  the unmasked angles stay in the truth array ``joint_angles``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from rkn_ros import __version__
from rkn_ros.data.dataset import FORMAT_VERSION, DatasetError, SequenceDataset, split_indices
from rkn_ros.data.pam_recording import (
    ANGLE_COLUMNS,
    DT,
    JOINT_NAMES,
    MUSCLE_NAMES,
    NUM_JOINTS,
    NUM_MUSCLES,
    OBS_COLUMNS,
    PRESSURE_COLUMNS,
    PRESSURE_NAMES,
    PamRecording,
    default_pam_file,
    load_recording,
    missing_recordings_hint,
    validate_recording,
)

# The recording format's names stay importable from here, where users of the PAM data look.
__all__ = [
    "ANGLE_COLUMNS", "DT", "JOINT_NAMES", "MUSCLE_NAMES", "NUM_JOINTS", "NUM_MUSCLES",
    "OBS_COLUMNS", "PRESSURE_COLUMNS", "PRESSURE_NAMES", "PamConfig", "PamRecording",
    "default_pam_file", "denormalize", "load_pam", "load_recording", "main",
    "missing_recordings_hint", "normalize", "validate_recording",
]
LOG = logging.getLogger(__name__)
# A column whose training std is below this is left unscaled (std 1) instead of blowing up.
MIN_STD = 1e-6


@dataclass(frozen=True)
class PamConfig:
    """How to cut a PAM recording into data sets (defaults: the paper's protocol)."""

    window: int = 40  # steps per sequence (time T)
    stride: int = 0  # steps between window starts; 0 means `window` (non-overlapping)
    validation_fraction: float = 0.2  # share of *episodes* held out
    seed: int = 0  # split and drop masks
    include_pressures: bool = False  # also observe the 8 muscle pressures (normalized units)
    targets: str = "next"  # "next": angles[t+1]; "delta": angles[t+1] - angles[t]
    drop_prob: float = 0.0  # chance that an observation is missing (paper: 0.5 when training)
    keep_first: int = 5  # leading steps of each window that are never dropped

    def __post_init__(self) -> None:
        # recipes pass these straight from YAML: a string or float must fail here, by name
        for f in fields(self):
            value = getattr(self, f.name)
            expected = {"int": (int, np.integer), "float": (int, float, np.integer, np.floating),
                        "bool": bool, "str": str}[f.type]
            if not isinstance(value, expected) or (f.type != "bool" and isinstance(value, bool)):
                raise ValueError(f"PamConfig.{f.name} expected {f.type}, got {value!r}")
        if self.window < 1:
            raise ValueError(f"PamConfig.window expected >= 1, got {self.window}")
        if self.stride < 0:
            raise ValueError(f"PamConfig.stride expected >= 0 (0 = window), got {self.stride}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"PamConfig.validation_fraction expected in [0, 1), got {self.validation_fraction}"
            )
        if self.targets not in ("next", "delta"):
            raise ValueError(f"PamConfig.targets expected 'next' or 'delta', got {self.targets!r}")
        if not 0.0 <= self.drop_prob < 1.0:
            raise ValueError(f"PamConfig.drop_prob expected in [0, 1), got {self.drop_prob}")
        if self.keep_first < 0:
            raise ValueError(f"PamConfig.keep_first expected >= 0, got {self.keep_first}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PamConfig:
        """Build from a YAML mapping; unknown keys are rejected with the known ones listed."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"PamConfig: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**values)


def load_pam(
    path: str | os.PathLike | PamRecording, config: PamConfig | None = None
) -> tuple[SequenceDataset, SequenceDataset]:
    """Train and validation data sets from a PAM ``.npz`` (or an already loaded recording).

    Arrays of each part: ``joint_obs [S, T, 4 or 12]``, ``joint_obs_valid [S, T]`` bool,
    ``actions [S, T, 8]``, ``targets [S, T, 4]``, ``joint_angles [S, T, 4]`` (truth, unmasked).
    Both parts carry the same ``normalization`` (training episodes only).
    """
    config = config or PamConfig()
    recording = path if isinstance(path, PamRecording) else load_recording(path)
    train_episodes, val_episodes = split_indices(
        recording.num_episodes, config.validation_fraction, config.seed
    )
    normalization = _statistics(recording, train_episodes, config)
    parts = []
    for part, episodes in (("train", train_episodes), ("validation", val_episodes)):
        parts.append(_windows(recording, episodes, config, normalization, part))
    return parts[0], parts[1]


def _statistics(recording: PamRecording, episodes: np.ndarray, config: PamConfig) -> dict[str, Any]:
    obs_rows, act_rows, target_rows = [], [], []
    for index in episodes:
        obs, act = recording.episode(int(index))
        obs_rows.append(_observed_columns(obs, config))
        act_rows.append(act)
        angles = obs[:, ANGLE_COLUMNS]
        target_rows.append(angles[1:] if config.targets == "next" else angles[1:] - angles[:-1])
    if not obs_rows:
        raise DatasetError(f"{recording.path}: no training episodes to compute statistics from")

    def stats(rows: list[np.ndarray], what: str) -> dict[str, list[float]]:
        data = np.concatenate(rows).astype(np.float64)
        mean = data.mean(axis=0)
        std = data.std(axis=0)
        flat = std < MIN_STD
        if flat.any():
            LOG.info(
                "%s: %d constant %s column(s) in the training episodes keep std 1",
                recording.path,
                int(flat.sum()),
                what,
            )
        std[flat] = 1.0
        return {"mean": [float(v) for v in mean], "std": [float(v) for v in std]}

    return {
        "inputs": {"joints": stats(obs_rows, "observation")},
        "actions": stats(act_rows, "action"),
        "targets": stats(target_rows, "target"),
    }


def _observed_columns(obs: np.ndarray, config: PamConfig) -> np.ndarray:
    if config.include_pressures:
        return np.concatenate([obs[:, ANGLE_COLUMNS], obs[:, PRESSURE_COLUMNS]], axis=1)
    return obs[:, ANGLE_COLUMNS]


def _windows(
    recording: PamRecording,
    episodes: np.ndarray,
    config: PamConfig,
    normalization: dict[str, Any],
    part: str,
) -> SequenceDataset:
    T = config.window
    stride = config.stride or T
    obs_w, act_w, tgt_w, ang_w = [], [], [], []
    window_episode, window_start = [], []
    too_short = 0
    unused_steps = 0  # steps of used episodes that no window reads (tails, stride gaps)
    for index in episodes:
        obs, act = recording.episode(int(index))
        angles = obs[:, ANGLE_COLUMNS]
        observed = _observed_columns(obs, config)
        starts = range(0, obs.shape[0] - T, stride)  # s + T + 1 <= L
        if not starts:
            too_short += 1
            continue
        read = np.zeros(obs.shape[0], dtype=bool)
        for s in starts:
            read[s : s + T + 1] = True
        unused_steps += int((~read).sum())
        for s in starts:
            nxt = angles[s + 1 : s + T + 1]
            obs_w.append(observed[s : s + T])
            act_w.append(act[s : s + T])
            ang_w.append(angles[s : s + T])
            tgt_w.append(nxt if config.targets == "next" else nxt - angles[s : s + T])
            window_episode.append(int(index))
            window_start.append(s)
    if too_short:
        LOG.warning(
            "%s: %d of %d %s episodes are shorter than window + 1 = %d steps and were skipped",
            recording.path,
            too_short,
            len(episodes),
            part,
            T + 1,
        )
    if unused_steps:
        LOG.info(
            "%s %s: %d steps at episode ends (or between strided windows) are in no window",
            recording.path,
            part,
            unused_steps,
        )
    if not obs_w and len(episodes):
        raise DatasetError(
            f"{recording.path}: no {part} window of {T} + 1 steps (episodes: {len(episodes)}, "
            f"longest {int(recording.episode_lengths.max())} steps)"
        )
    width = NUM_JOINTS + (NUM_MUSCLES if config.include_pressures else 0)

    def stack(rows: list[np.ndarray], dim: int) -> np.ndarray:
        # An empty part (validation_fraction 0) still has well-formed [0, T, dim] arrays.
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, T, dim), np.float32)

    joint_obs = stack(obs_w, width)
    valid = _drop_mask(joint_obs.shape[:2], config, part)
    joint_obs[~valid] = 0.0
    if config.drop_prob > 0:
        LOG.info(
            "%s %s: %d of %d observations dropped (drop_prob %.2f, first %d kept)",
            recording.path,
            part,
            int((~valid).sum()),
            valid.size,
            config.drop_prob,
            config.keep_first,
        )
    arrays = {
        "joint_obs": joint_obs,
        "joint_obs_valid": valid,
        "actions": stack(act_w, NUM_MUSCLES),
        "targets": stack(tgt_w, NUM_JOINTS),
        "joint_angles": stack(ang_w, NUM_JOINTS),
    }
    ids = recording.episode_ids
    used = sorted(set(window_episode))
    position = {episode: i for i, episode in enumerate(used)}
    metadata = _metadata(recording, config, normalization)
    metadata["split"] = {
        "part": part,
        "episodes": [str(ids[e]) for e in used],
        "window_episode": [position[e] for e in window_episode],  # index into `episodes`
        "window_start": window_start,
        "skipped_short_episodes": too_short,
        "unused_steps": unused_steps,
    }
    dataset = SequenceDataset(arrays=arrays, metadata=metadata)
    dataset.validate(source=f"{recording.path} ({part})")
    return dataset


def _drop_mask(shape: tuple[int, int], config: PamConfig, part: str) -> np.ndarray:
    # One stream per part, so validation masks do not shift when the training set changes.
    stream = {"train": 1, "validation": 2}[part]
    rng = np.random.default_rng([config.seed, stream])
    valid = rng.random(shape) >= config.drop_prob
    valid[:, : config.keep_first] = True
    return valid


def _metadata(
    recording: PamRecording, config: PamConfig, normalization: dict[str, Any]
) -> dict[str, Any]:
    names = list(JOINT_NAMES) + (list(PRESSURE_NAMES) if config.include_pressures else [])
    units = ["rad"] * NUM_JOINTS + (["1"] * NUM_MUSCLES if config.include_pressures else [])
    suffix = "_next" if config.targets == "next" else "_delta"
    return {
        "format_version": FORMAT_VERSION,
        "generator": "pam",
        "version": __version__,
        "seed": config.seed,
        "dt": DT,
        "parameters": {
            **asdict(config),
            "source": Path(recording.path).name,
            "source_episodes": recording.num_episodes,
        },
        "units": {"dt": "s", "window": "steps", "stride": "steps"},
        "inputs": {
            "joints": {
                "kind": "vector",
                "array": "joint_obs",
                "valid": "joint_obs_valid",
                "names": names,
                "units": units,
            }
        },
        "targets": {
            "array": "targets",
            "kind": config.targets,
            "names": [name + suffix for name in JOINT_NAMES],
            "units": ["rad"] * NUM_JOINTS,
        },
        "actions": {"array": "actions", "names": list(MUSCLE_NAMES), "units": ["1"] * NUM_MUSCLES},
        "truth": {"angles": "joint_angles"},
        "normalization": normalization,
    }


def normalize(values: np.ndarray, stats: dict[str, list[float]]) -> np.ndarray:
    """``(values - mean) / std`` with statistics from the metadata; ``values [..., dim]``."""
    mean, std = _mean_std(values, stats, "normalize")
    return ((values - mean) / std).astype(np.float32)


def denormalize(values: np.ndarray, stats: dict[str, list[float]]) -> np.ndarray:
    """Inverse of :func:`normalize` (back to physical units, e.g. radians)."""
    mean, std = _mean_std(values, stats, "denormalize")
    return (values * std + mean).astype(np.float32)


def _mean_std(
    values: np.ndarray, stats: dict[str, list[float]], caller: str
) -> tuple[np.ndarray, np.ndarray]:
    mean = np.asarray(stats["mean"], dtype=np.float32)
    std = np.asarray(stats["std"], dtype=np.float32)
    if values.shape[-1] != mean.shape[0]:
        raise ValueError(
            f"{caller}: values have {values.shape[-1]} columns, statistics {mean.shape[0]}"
        )
    return mean, std


def main(argv: list[str] | None = None) -> int:
    """``python -m rkn_ros.data.pam FILE.npz --out DIR``: write DIR/train and DIR/validation."""
    parser = argparse.ArgumentParser(prog="python -m rkn_ros.data.pam", description=main.__doc__)
    parser.add_argument("npz", type=Path, help="PAM .npz (format: docs/data.md)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    defaults = PamConfig()
    parser.add_argument("--window", type=int, default=defaults.window,
                        help=f"steps per sequence (default {defaults.window}, the paper's)")
    parser.add_argument("--stride", type=int, default=defaults.stride,
                        help="steps between window starts (default 0: = window, no overlap)")
    parser.add_argument("--validation-fraction", type=float,
                        default=defaults.validation_fraction,
                        help=f"share of episodes held out (default "
                             f"{defaults.validation_fraction})")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of the episode split and the drop masks")
    parser.add_argument("--include-pressures", action="store_true",
                        help="also observe the 8 muscle pressures (columns 8-15)")
    parser.add_argument("--targets", choices=("next", "delta"), default=defaults.targets,
                        help="next joint angles or their differences (default next)")
    parser.add_argument("--drop-prob", type=float, default=defaults.drop_prob,
                        help="probability that an observation is missing (paper: 0.5)")
    parser.add_argument("--keep-first", type=int, default=defaults.keep_first,
                        help=f"leading steps of each window never dropped (default "
                             f"{defaults.keep_first})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        config = PamConfig(
            window=args.window,
            stride=args.stride,
            validation_fraction=args.validation_fraction,
            seed=args.seed,
            include_pressures=args.include_pressures,
            targets=args.targets,
            drop_prob=args.drop_prob,
            keep_first=args.keep_first,
        )
        train, validation = load_pam(args.npz, config)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        train.save(args.out / "train")
        validation.save(args.out / "validation")
    except OSError as err:
        print(f"error: --out {args.out}: cannot write the data sets ({err})", file=sys.stderr)
        return 2
    print(
        f"wrote {args.out}/train ({len(train)} windows) and {args.out}/validation "
        f"({len(validation)} windows) of {config.window} steps"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
