"""A data set on disk: a folder with ``data.npz`` (arrays ``[sequence, time, ...]``) and
``metadata.yaml`` (what the arrays mean; see docs/interfaces.md and docs/data.md).

Saving is byte-deterministic: the zip is written by hand with a fixed timestamp and sorted
member names (``np.savez_compressed`` stamps the current time into every member), and the YAML
is dumped with sorted keys. Loading validates everything it can and fails with a
:class:`DatasetError` naming the file, the array and what was expected versus received.
"""

from __future__ import annotations

import copy
import hashlib
import io
import math
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rkn_ros.core.typed_config import ConfigError, load_yaml
from rkn_ros.data import npz

DATA_FILE = "data.npz"
METADATA_FILE = "metadata.yaml"
FORMAT_VERSION = 1
GENERATORS = ("pendulum", "quad_link", "pneumatic", "pam", "rosbag")
REQUIRED_KEYS = ("format_version", "generator", "dt", "inputs", "targets")

# DOS epoch: the earliest date a zip header can hold; any fixed value gives stable bytes.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class DatasetError(ValueError):
    """A data set folder, file or array is not what the format requires."""


@dataclass
class SequenceDataset:
    """Sequences of equal length with their metadata.

    ``arrays`` maps a name to an array ``[sequence, time, ...]``: images ``uint8 [S, T, H, W]``
    (or ``[S, T, C, H, W]``), valid masks ``bool [S, T]``, everything else ``float32``
    ``[S, T, dim]`` (integer arrays are allowed for extras). ``metadata`` is the dict stored
    as ``metadata.yaml``.
    """

    arrays: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ shape helpers
    @property
    def num_sequences(self) -> int:
        """Number of sequences S (0 for an empty data set)."""
        return int(next(iter(self.arrays.values())).shape[0]) if self.arrays else 0

    @property
    def sequence_length(self) -> int:
        """Number of time steps T per sequence."""
        return int(next(iter(self.arrays.values())).shape[1]) if self.arrays else 0

    @property
    def dt(self) -> float:
        """Seconds per step, from the metadata."""
        return float(self.metadata["dt"])

    def __len__(self) -> int:
        return self.num_sequences

    # ------------------------------------------------------------------ I/O
    @classmethod
    def load(cls, folder: str | os.PathLike) -> SequenceDataset:
        """Read and validate ``folder/data.npz`` and ``folder/metadata.yaml``."""
        folder = Path(folder)
        if not folder.is_dir():
            raise DatasetError(f"data set folder {folder} does not exist or is not a folder")
        data_path = folder / DATA_FILE
        meta_path = folder / METADATA_FILE
        for path in (data_path, meta_path):
            if not path.is_file():
                raise DatasetError(f"data set folder {folder}: missing file {path.name}")
        try:
            metadata = load_yaml(meta_path)
        except ConfigError as err:
            raise DatasetError(str(err)) from err
        arrays = read_npz(data_path)
        dataset = cls(arrays=arrays, metadata=metadata)
        dataset.validate(source=str(folder))
        return dataset

    def save(self, folder: str | os.PathLike) -> None:
        """Write the folder (created if needed); identical content gives identical bytes."""
        self.validate(source="data set to save")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / DATA_FILE, npz_bytes(self.arrays))
        text = yaml.safe_dump(
            _plain(self.metadata), sort_keys=True, default_flow_style=None, width=100
        )
        atomic_write(folder / METADATA_FILE, text.encode("utf-8"))

    def content_hash(self) -> str:
        """sha256 over the arrays (names, dtypes, shapes and bytes, in sorted name order)."""
        digest = hashlib.sha256()
        for name in sorted(self.arrays):
            array = np.ascontiguousarray(self.arrays[name])
            header = f"{name}|{array.dtype.str}|{array.shape}\n".encode()
            digest.update(header)
            digest.update(array.tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------------ selection
    def subset(self, indices: Sequence[int] | np.ndarray) -> SequenceDataset:
        """A new data set with the given sequences (in that order); metadata is copied."""
        index = np.asarray(indices, dtype=np.int64)
        if index.ndim != 1:
            raise DatasetError(f"subset indices must be 1-D, got shape {index.shape}")
        n = self.num_sequences
        if index.size and (index.min() < -n or index.max() >= n):
            raise DatasetError(
                f"subset indices must lie in [0, {n}), got range [{index.min()}, {index.max()}]"
            )
        arrays = {name: np.ascontiguousarray(a[index]) for name, a in self.arrays.items()}
        return SequenceDataset(arrays=arrays, metadata=copy.deepcopy(self.metadata))

    def split(
        self, validation_fraction: float, seed: int
    ) -> tuple[SequenceDataset, SequenceDataset]:
        """Random train/validation split by sequence (see :func:`split_indices`)."""
        train, val = split_indices(self.num_sequences, validation_fraction, seed)
        return self.subset(train), self.subset(val)

    # ------------------------------------------------------------------ validation
    def validate(self, source: str = "data set") -> None:
        """Check metadata and arrays against each other; raise :class:`DatasetError`."""
        meta = self.metadata
        where_meta = f"{source}/{METADATA_FILE}"
        where_data = f"{source}/{DATA_FILE}"
        if not isinstance(meta, dict):
            raise DatasetError(f"{where_meta}: expected a mapping, got {type(meta).__name__}")
        missing = [key for key in REQUIRED_KEYS if key not in meta]
        if missing:
            raise DatasetError(f"{where_meta}: missing keys {missing} (required {REQUIRED_KEYS})")
        if meta["format_version"] != FORMAT_VERSION:
            raise DatasetError(
                f"{where_meta}: format_version expected {FORMAT_VERSION}, "
                f"got {meta['format_version']!r}"
            )
        if meta["generator"] not in GENERATORS:
            raise DatasetError(
                f"{where_meta}: generator expected one of {GENERATORS}, got {meta['generator']!r}"
            )
        dt = meta["dt"]
        if (
            isinstance(dt, bool)
            or not isinstance(dt, (int, float))
            or not (math.isfinite(dt) and dt > 0)
        ):
            raise DatasetError(f"{where_meta}: dt expected a positive number, got {dt!r}")
        if not self.arrays:
            raise DatasetError(f"{where_data}: no arrays")

        # Every array shares the leading [sequence, time] dims.
        lead: tuple[int, int] | None = None
        lead_name = ""
        for name in sorted(self.arrays):
            array = self.arrays[name]
            if not isinstance(array, np.ndarray):
                raise DatasetError(
                    f"{where_data}: array {name!r} expected numpy.ndarray, got "
                    f"{type(array).__name__}"
                )
            if array.ndim < 2:
                raise DatasetError(
                    f"{where_data}: array {name!r} expected ndim >= 2 [sequence, time, ...], "
                    f"got shape {array.shape}"
                )
            if lead is None:
                lead, lead_name = (array.shape[0], array.shape[1]), name
            elif array.shape[:2] != lead:
                raise DatasetError(
                    f"{where_data}: array {name!r} has leading dims [sequence, time] = "
                    f"{list(array.shape[:2])}, expected {list(lead)} as in array {lead_name!r}"
                )
            if array.dtype.kind == "f":
                if array.dtype != np.float32:
                    raise DatasetError(
                        f"{where_data}: array {name!r} expected dtype float32, got {array.dtype}"
                    )
                if not np.isfinite(array).all():
                    bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
                    raise DatasetError(
                        f"{where_data}: array {name!r} contains {bad} NaN/inf values "
                        "(expected finite)"
                    )
            elif array.dtype.kind not in "biu":
                raise DatasetError(
                    f"{where_data}: array {name!r} has unsupported dtype {array.dtype} "
                    "(expected float32, bool, uint8 or integers)"
                )

        def need(name: Any, role: str) -> np.ndarray:
            if not isinstance(name, str):
                raise DatasetError(f"{where_meta}: {role} expected an array name, got {name!r}")
            if name not in self.arrays:
                raise DatasetError(
                    f"{where_data}: array {name!r} named in metadata ({role}) is missing; "
                    f"present: {sorted(self.arrays)}"
                )
            return self.arrays[name]

        def need_valid(name: Any, role: str) -> None:
            valid = need(name, role)
            if valid.dtype != np.bool_ or valid.ndim != 2:
                raise DatasetError(
                    f"{where_data}: valid mask {name!r} ({role}) expected bool [sequence, time], "
                    f"got {valid.dtype} with shape {list(valid.shape)}"
                )

        def need_named_vector(array: np.ndarray, name: str, names: Any, role: str) -> None:
            if array.ndim != 3 or array.dtype.kind != "f":
                raise DatasetError(
                    f"{where_data}: array {name!r} ({role}) expected float32 "
                    f"[sequence, time, dim], got {array.dtype} with shape {list(array.shape)}"
                )
            if names is not None and not isinstance(names, (list, tuple)):
                raise DatasetError(
                    f"{where_meta}: {role}.names expected a list of column names, got {names!r}"
                )
            if names is not None and len(names) != array.shape[2]:
                raise DatasetError(
                    f"{where_data}: array {name!r} ({role}) has {array.shape[2]} columns but "
                    f"metadata names {len(names)}: {list(names)}"
                )

        inputs = meta["inputs"]
        if not isinstance(inputs, dict) or not inputs:
            raise DatasetError(f"{where_meta}: inputs expected a non-empty mapping, got {inputs!r}")
        for sensor, spec in inputs.items():
            role = f"inputs.{sensor}"
            if not isinstance(spec, dict) or "array" not in spec or "kind" not in spec:
                raise DatasetError(
                    f"{where_meta}: {role} expected a mapping with 'kind' and 'array', got {spec!r}"
                )
            array = need(spec["array"], role)
            if "valid" in spec and spec["valid"] is not None:
                need_valid(spec["valid"], role + ".valid")
            if spec["kind"] == "image":
                shape = spec.get("shape", list(array.shape[2:]))
                if not isinstance(shape, (list, tuple)) or not all(
                    isinstance(v, int) and not isinstance(v, bool) for v in shape
                ):
                    raise DatasetError(
                        f"{where_meta}: {role}.shape expected a list of integers "
                        f"([height, width] or [channels, height, width]), got {shape!r}"
                    )
                wrong = array.dtype != np.uint8 or list(array.shape[2:]) != list(shape)
                if wrong or len(shape) not in (2, 3):
                    raise DatasetError(
                        f"{where_data}: image array {spec['array']!r} ({role}) expected uint8 "
                        f"[sequence, time, {', '.join(map(str, shape))}], got {array.dtype} "
                        f"with shape {list(array.shape)}"
                    )
            elif spec["kind"] == "vector":
                need_named_vector(array, spec["array"], spec.get("names"), role)
            else:
                raise DatasetError(
                    f"{where_meta}: {role}.kind expected 'image' or 'vector', got {spec['kind']!r}"
                )

        targets = meta["targets"]
        if not isinstance(targets, dict) or "array" not in targets:
            raise DatasetError(f"{where_meta}: targets expected a mapping with 'array'")
        need_named_vector(
            need(targets["array"], "targets"), targets["array"], targets.get("names"), "targets"
        )
        if targets.get("valid") is not None:
            need_valid(targets["valid"], "targets.valid")

        actions = meta.get("actions")
        if actions is not None:
            if not isinstance(actions, dict) or "array" not in actions:
                raise DatasetError(f"{where_meta}: actions expected null or a mapping with 'array'")
            need_named_vector(
                need(actions["array"], "actions"), actions["array"], actions.get("names"), "actions"
            )

        truth = meta.get("truth")
        if truth is not None:
            if not isinstance(truth, dict):
                raise DatasetError(f"{where_meta}: truth expected a mapping of array names")
            for key, name in truth.items():
                if key in ("names", "units"):
                    continue
                if key == "valid":
                    need_valid(name, "truth.valid")
                else:
                    need(name, f"truth.{key}")


# ---------------------------------------------------------------------- splitting
def split_indices(n: int, validation_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``range(n)`` with ``seed`` and cut it into sorted train and validation indices.

    At least one item goes to each side when ``n >= 2`` and the fraction is in ``(0, 1)``.
    """
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction expected in [0, 1), got {validation_fraction}")
    if n < 0:
        raise ValueError(f"n expected >= 0, got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = round(n * validation_fraction)
    if validation_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


# ---------------------------------------------------------------------- npz bytes
def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Compressed ``.npz`` bytes readable by ``np.load``, identical for identical arrays."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(arrays):
            array_buffer = io.BytesIO()
            np.lib.format.write_array(
                array_buffer, np.ascontiguousarray(arrays[name]), allow_pickle=False
            )
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            # Fixed permissions so the umask of the writer does not leak into the bytes.
            info.external_attr = 0o644 << 16
            archive.writestr(info, array_buffer.getvalue(), compresslevel=6)
    return buffer.getvalue()


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz`` file, sizes checked before memory is spent and never
    unpickling (see :mod:`rkn_ros.data.npz`); :class:`DatasetError` otherwise."""
    try:
        return npz.read_npz(path)
    except npz.NpzError as err:
        raise DatasetError(str(err)) from err


def atomic_write(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` through a temporary file beside it and a rename.

    An interrupted save then never leaves half a file behind.
    """
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(payload)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _plain(value: Any) -> Any:
    """Metadata as plain YAML types (numpy scalars and arrays, tuples and paths converted)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
