"""The PAM recording format: the column layout of the real pneumatic-muscle arm's recordings and
the checks a ``.npz`` of them must pass (docs/data.md, "PAM"): ragged episodes stored back to
back, ``observations [N, 24]``, ``actions [N, 8]``, ``episode_starts``, ``episode_lengths``,
``episode_ids``; 100 Hz. :mod:`rkn_ros.data.pam` cuts a recording into data sets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rkn_ros.data.dataset import DatasetError, read_npz

DT = 0.01  # seconds: the recordings are sampled at 100 Hz
NUM_JOINTS = 4
NUM_MUSCLES = 8
OBS_COLUMNS = 24
ANGLE_COLUMNS = slice(0, 4)
PRESSURE_COLUMNS = slice(8, 16)
JOINT_NAMES = tuple(f"joint_{i + 1}" for i in range(NUM_JOINTS))
PRESSURE_NAMES = tuple(f"pressure_{i + 1}" for i in range(NUM_MUSCLES))
MUSCLE_NAMES = tuple(f"muscle_{i + 1}" for i in range(NUM_MUSCLES))
REQUIRED_ARRAYS = ("observations", "actions", "episode_starts", "episode_lengths", "episode_ids")


def default_pam_file() -> Path:
    """Where the full recordings are looked for: ``$RKN_ROS_SHARED/data/pam/pam_dev.npz``, by
    default ``../shared`` beside the repository (they are not part of it)."""
    shared = os.environ.get("RKN_ROS_SHARED", str(Path(__file__).resolve().parents[3] / "shared"))
    return Path(shared) / "data" / "pam" / "pam_dev.npz"


def missing_recordings_hint() -> str:
    """How to get the full recordings (one line, for where they are missing)."""
    return ("the full PAM recordings are not part of the repository: set RKN_ROS_SHARED to the "
            "folder that holds data/pam/pam_dev.npz (default: ../shared beside the repository), "
            "or build pam_dev.npz from the episodes of ALRhub/action-conditional-rkn "
            "(data/PAMData/Data2) with `python -m rkn_ros.data.pam_convert DATA2_FOLDER OUT.npz`")


@dataclass(frozen=True)
class PamRecording:
    """A validated PAM ``.npz`` in memory (episodes back to back)."""

    path: str
    observations: np.ndarray  # [N, 24] float32
    actions: np.ndarray  # [N, 8] float32
    episode_starts: np.ndarray  # [E] int64
    episode_lengths: np.ndarray  # [E] int64
    episode_ids: np.ndarray  # [E] str

    @property
    def num_episodes(self) -> int:
        """Number of episodes E."""
        return int(self.episode_starts.shape[0])

    def episode(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Observations ``[L, 24]`` and actions ``[L, 8]`` of one episode."""
        start = int(self.episode_starts[index])
        stop = start + int(self.episode_lengths[index])
        return self.observations[start:stop], self.actions[start:stop]


def load_recording(path: str | os.PathLike) -> PamRecording:
    """Read a PAM ``.npz`` and check it against the format; raise :class:`DatasetError`."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        if path.name == default_pam_file().name and not path.exists():
            what += f"; {missing_recordings_hint()}"
        raise DatasetError(f"PAM file {path} {what}")
    arrays = read_npz(path)
    missing = [name for name in REQUIRED_ARRAYS if name not in arrays]
    if missing:
        raise DatasetError(
            f"{path}: missing arrays {missing}; a PAM file needs {list(REQUIRED_ARRAYS)}"
        )
    return validate_recording(arrays, source=str(path))


def validate_recording(arrays: dict[str, np.ndarray], source: str = "PAM arrays") -> PamRecording:
    """Check shapes, dtypes, episode bookkeeping and finiteness of PAM arrays."""
    obs = arrays["observations"]
    act = arrays["actions"]
    starts = arrays["episode_starts"]
    lengths = arrays["episode_lengths"]
    ids = arrays["episode_ids"]

    def fail(name: str, expected: str, received: str) -> DatasetError:
        return DatasetError(f"{source}: array {name!r} expected {expected}, got {received}")

    if obs.ndim != 2 or obs.shape[1] != OBS_COLUMNS or obs.dtype.kind != "f":
        raise fail("observations", f"float [N, {OBS_COLUMNS}]", f"{obs.dtype} {list(obs.shape)}")
    if act.ndim != 2 or act.shape[1] != NUM_MUSCLES or act.dtype.kind != "f":
        raise fail("actions", f"float [N, {NUM_MUSCLES}]", f"{act.dtype} {list(act.shape)}")
    if act.shape[0] != obs.shape[0]:
        raise fail("actions", f"{obs.shape[0]} rows like observations", f"{act.shape[0]} rows")
    for name, array in (("episode_starts", starts), ("episode_lengths", lengths)):
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise fail(name, "integer [E]", f"{array.dtype} {list(array.shape)}")
    if lengths.shape != starts.shape:
        raise fail("episode_lengths", f"shape {list(starts.shape)}", f"{list(lengths.shape)}")
    if ids.ndim != 1 or ids.shape != starts.shape or ids.dtype.kind not in "US":
        raise fail("episode_ids", f"str [{starts.shape[0]}]", f"{ids.dtype} {list(ids.shape)}")
    if starts.size == 0:
        raise fail("episode_starts", "at least one episode", "none")
    if (lengths < 1).any():
        bad = int(np.argmax(lengths < 1))
        raise fail("episode_lengths", "all >= 1", f"{int(lengths[bad])} for episode {ids[bad]}")
    expected_starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    if not np.array_equal(starts, expected_starts):
        bad = int(np.argmax(starts != expected_starts))
        raise fail(
            "episode_starts",
            f"episodes back to back (episode {bad} at {int(expected_starts[bad])})",
            f"{int(starts[bad])}",
        )
    if int(lengths.sum()) != obs.shape[0]:
        raise fail("episode_lengths", f"sum {obs.shape[0]} (rows)", f"sum {int(lengths.sum())}")
    if len(set(ids.tolist())) != ids.shape[0]:
        raise fail("episode_ids", "unique names", f"{ids.shape[0] - len(set(ids.tolist()))} dupes")
    for name, array in (("observations", obs), ("actions", act)):
        finite = np.isfinite(array).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            episode = int(np.searchsorted(starts, row, side="right") - 1)
            raise fail(
                name,
                "finite values",
                f"{int((~finite).sum())} rows with NaN/inf (first: row {row}, "
                f"episode {ids[episode]})",
            )
    return PamRecording(
        path=source,
        observations=obs.astype(np.float32, copy=False),
        actions=act.astype(np.float32, copy=False),
        episode_starts=starts.astype(np.int64, copy=False),
        episode_lengths=lengths.astype(np.int64, copy=False),
        episode_ids=ids.astype(str),
    )
