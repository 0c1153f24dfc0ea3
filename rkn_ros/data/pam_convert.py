"""Rebuild a PAM ``.npz`` from the public recordings' JSON episode folder.

The recordings are in the MIT-licensed repository ALRhub/action-conditional-rkn, folder
``data/PAMData/Data2``: one file per episode, named by its timestamp (no extension), holding a
JSON object ``{"ob": [[24 floats] x L], "action": [[8 floats] x L']}``. Some episodes have one
or two more action rows than observation rows; those trailing rows are dropped (and counted) so
that ``actions[t]`` pairs with ``observations[t]``. Episodes are stored in file-name order.

``python -m rkn_ros.data.pam_convert DATA2_FOLDER OUT.npz [--ids-from OTHER.npz]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rkn_ros.data.dataset import DatasetError, atomic_write, npz_bytes, read_npz
from rkn_ros.data.pam_recording import NUM_MUSCLES, OBS_COLUMNS, validate_recording

LOG = logging.getLogger(__name__)


def read_episode(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """Observations ``[L, 24]``, actions ``[L, 8]`` and the number of trailing action rows cut."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path}: not a JSON episode file ({err})") from err
    if not isinstance(data, dict) or "ob" not in data or "action" not in data:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise DatasetError(
            f"{path}: expected a JSON object with keys 'ob' and 'action', got {keys}"
        )
    try:
        obs = np.asarray(data["ob"], dtype=np.float64)
        act = np.asarray(data["action"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DatasetError(
            f"{path}: 'ob' and 'action' must be rectangular lists of numbers ({err})"
        ) from err
    if obs.ndim != 2 or obs.shape[1] != OBS_COLUMNS or obs.shape[0] < 1:
        raise DatasetError(f"{path}: 'ob' expected [L, {OBS_COLUMNS}], got {list(obs.shape)}")
    if act.ndim != 2 or act.shape[1] < NUM_MUSCLES:
        raise DatasetError(
            f"{path}: 'action' expected [L, {NUM_MUSCLES}] (or more columns), got {list(act.shape)}"
        )
    if act.shape[0] < obs.shape[0]:
        raise DatasetError(
            f"{path}: 'action' has {act.shape[0]} rows, fewer than the {obs.shape[0]} rows of 'ob'"
        )
    extra = act.shape[0] - obs.shape[0]
    return (
        obs.astype(np.float32),
        act[: obs.shape[0], :NUM_MUSCLES].astype(np.float32),
        extra,
    )


def convert(folder: str | os.PathLike, ids: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Arrays of a PAM ``.npz`` from a JSON episode folder (all episodes, or only ``ids``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"PAM JSON folder {folder} does not exist or is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    hidden = sum(1 for p in folder.iterdir() if p.name.startswith("."))
    if hidden:
        LOG.info("%s: %d hidden entries ignored", folder, hidden)
    if ids is not None:
        wanted = list(ids)
        by_name = {p.name: p for p in files}
        absent = [name for name in wanted if name not in by_name]
        if absent:
            raise DatasetError(
                f"{folder}: {len(absent)} requested episodes not found (first: {absent[:3]})"
            )
        files = [by_name[name] for name in wanted]
    if not files:
        raise DatasetError(f"{folder}: no episode files")
    observations, actions, lengths = [], [], []
    trimmed_episodes = trimmed_rows = 0
    for path in tqdm(files, desc="episodes", unit="file", disable=None, leave=False):
        obs, act, extra = read_episode(path)
        observations.append(obs)
        actions.append(act)
        lengths.append(obs.shape[0])
        if extra:
            trimmed_episodes += 1
            trimmed_rows += extra
    if trimmed_rows:
        LOG.info(
            "%s: dropped %d trailing action rows beyond the observations in %d of %d episodes",
            folder,
            trimmed_rows,
            trimmed_episodes,
            len(files),
        )
    length_array = np.asarray(lengths, dtype=np.int64)
    arrays = {
        "observations": np.concatenate(observations),
        "actions": np.concatenate(actions),
        "episode_starts": np.concatenate([[0], np.cumsum(length_array)[:-1]]).astype(np.int64),
        "episode_lengths": length_array,
        "episode_ids": np.asarray([p.name for p in files]),
    }
    validate_recording(arrays, source=str(folder))
    return arrays


def write_npz(arrays: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write PAM arrays as a compressed ``.npz`` (deterministic bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, npz_bytes(arrays))


def _ids_from(npz_path: Path) -> list[str]:
    if not npz_path.is_file():
        raise DatasetError(f"--ids-from {npz_path}: no such file")
    arrays = read_npz(npz_path)
    if "episode_ids" not in arrays:
        raise DatasetError(f"{npz_path}: no array 'episode_ids' to take episode names from")
    return [str(name) for name in arrays["episode_ids"]]


def main(argv: list[str] | None = None) -> int:
    """``python -m rkn_ros.data.pam_convert FOLDER OUT.npz``; bad input: one line, exit 2."""
    parser = argparse.ArgumentParser(
        prog="python -m rkn_ros.data.pam_convert",
        description="Convert the public PAM JSON episode folder (data/PAMData/Data2) to .npz.",
    )
    parser.add_argument("folder", type=Path, help="folder with one JSON file per episode")
    parser.add_argument("out", type=Path, help="output .npz")
    parser.add_argument(
        "--ids-from",
        type=Path,
        default=None,
        help="take the episode list (and order) from an existing PAM .npz",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        ids = _ids_from(args.ids_from) if args.ids_from else None
        arrays = convert(args.folder, ids)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        write_npz(arrays, args.out)
    except OSError as err:
        print(f"error: {args.out}: cannot write ({err})", file=sys.stderr)
        return 2
    episodes, steps = arrays["episode_ids"].shape[0], arrays["observations"].shape[0]
    print(f"wrote {args.out}: {episodes} episodes, {steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
