"""rosbag2 in and out (MCAP or sqlite3) with the pure-Python ``rosbags`` library.

Out: :func:`write_bag` publishes one sequence of a :class:`SequenceDataset` on the topics the
simulator nodes use (namespace ``/pendulum_sim`` or ``/pneumatic_sim``), header stamps on the
data set's ``dt`` grid:

- ``<ns>/image`` ``sensor_msgs/msg/Image`` mono8, only at steps whose image is valid;
- ``<ns>/joint_states`` ``sensor_msgs/msg/JointState``: one entry per observed column, named
  as in the metadata; angle/length columns (units rad, m) fill ``position``, velocity columns
  (rad/s, m/s) fill ``velocity``, all others (pressures) fill ``effort``; the unused fields of
  an entry are 0. Only at steps whose observation is valid;
- ``<ns>/<sensor>`` ``sensor_msgs/msg/Imu`` for an input of ``sensor_kind`` imu: its columns
  (named by field, e.g. ``angular_velocity.z``) set, the other fields 0, the orientation
  marked as not measured (``orientation_covariance[0] = -1``) unless a column names it;
- with several image or vector inputs each gets ``<ns>/<sensor>`` instead of ``<ns>/image`` or
  ``<ns>/joint_states``;
- ``<ns>/joint_states_truth`` ``sensor_msgs/msg/JointState``: true angles (``position``) and
  velocities (``velocity``) at every step;
- ``<ns>/command`` ``std_msgs/msg/Float64MultiArray``: the action of each step (no header: the
  bag's receive timestamp carries the step time).

In: :mod:`rkn_ros.data.bag_import` (it shares :class:`BagError` and the type store).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.rosbag2.errors import WriterError
from rosbags.typesys import Stores, get_typestore

from rkn_ros.data.dataset import SequenceDataset
from rkn_ros.data.sensor_kinds import FLOAT_ARRAY as COMMAND
from rkn_ros.data.sensor_kinds import IMAGE, IMU, JOINT_FIELDS, JOINT_STATE

LOG = logging.getLogger(__name__)

STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
NAMESPACES = {
    "pendulum": "/pendulum_sim",
    "quad_link": "/pendulum_sim",
    "pneumatic": "/pneumatic_sim",
    "pam": "/pam_replay",
}
POSITION_UNITS = ("rad", "m")
VELOCITY_UNITS = ("rad/s", "m/s")
START_NS = 1_000_000_000  # exported bags start at t = 1 s (a zero stamp reads as "unset")

TYPESTORE = get_typestore(Stores.ROS2_KILTED)


class BagError(ValueError):
    """A bag, topic or message is not what the import/export expects."""


# ====================================================================== export
def write_bag(
    dataset: SequenceDataset,
    path: str | os.PathLike,
    sequence: int = 0,
    storage: str = "mcap",
    namespace: str | None = None,
    start_ns: int = START_NS,
) -> dict[str, int]:
    """Write sequence ``sequence`` of ``dataset`` as a rosbag2 folder at ``path``.

    Returns the number of messages per topic.
    """
    if storage not in STORAGES:
        raise BagError(f"storage expected one of {sorted(STORAGES)}, got {storage!r}")
    if not 0 <= sequence < len(dataset):
        raise BagError(f"sequence expected in [0, {len(dataset)}), got {sequence}")
    path = Path(path)
    if path.exists():
        raise BagError(f"bag output {path} already exists (rosbag2 writes a new folder)")
    meta = dataset.metadata
    generator = meta.get("generator")
    ns = namespace or NAMESPACES.get(generator)
    if not ns:
        raise BagError(f"no default topic namespace for generator {generator!r}; pass namespace=")
    ns = "/" + ns.strip("/")
    dt_ns = step_ns(dataset.dt)
    stamps = start_ns + dt_ns * np.arange(dataset.sequence_length, dtype=np.int64)
    arrays = {name: a[sequence] for name, a in dataset.arrays.items()}
    images = [(s, spec) for s, spec in meta["inputs"].items() if spec["kind"] == "image"]
    imus = [(s, spec) for s, spec in meta["inputs"].items() if spec.get("sensor_kind") == "imu"]
    vectors = [(s, spec) for s, spec in meta["inputs"].items()
               if spec["kind"] == "vector" and (s, spec) not in imus]
    for sensor, spec in images:
        if arrays[spec["array"]].ndim != 3:
            raise BagError(
                f"input {sensor!r}: only grey images [time, H, W] can be written as mono8, "
                f"got shape {list(arrays[spec['array']].shape)}"
            )

    for _, spec in imus:  # refuse columns no Imu field holds before a bag is begun
        _imu_message(0, spec["names"], np.zeros(len(spec["names"])))
    counts: dict[str, int] = {}
    types = TYPESTORE.types
    try:
        writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
    except WriterError as err:
        raise BagError(f"cannot create bag {path}: {err}") from err
    with writer:
        for sensor, spec in images:
            topic = f"{ns}/image" if len(images) == 1 else f"{ns}/{sensor}"
            conn = writer.add_connection(topic, IMAGE, typestore=TYPESTORE)
            frames = arrays[spec["array"]]
            valid = _valid(arrays, spec)
            counts[topic] = 0
            for t in np.flatnonzero(valid):
                height, width = frames.shape[1:]
                msg = types[IMAGE](
                    header=_header(int(stamps[t]), "camera"),
                    height=height,
                    width=width,
                    encoding="mono8",
                    is_bigendian=0,
                    step=width,
                    data=np.ascontiguousarray(frames[t]).reshape(-1),
                )
                writer.write(conn, int(stamps[t]), TYPESTORE.serialize_cdr(msg, IMAGE))
                counts[topic] += 1
        for sensor, spec in vectors:
            topic = f"{ns}/joint_states" if len(vectors) == 1 else f"{ns}/{sensor}"
            conn = writer.add_connection(topic, JOINT_STATE, typestore=TYPESTORE)
            values = arrays[spec["array"]]
            names = list(spec.get("names") or [f"{sensor}_{i}" for i in range(values.shape[1])])
            units = list(spec.get("units") or [""] * len(names))
            slots = [_field_for_unit(u) for u in units]
            valid = _valid(arrays, spec)
            counts[topic] = 0
            for t in np.flatnonzero(valid):
                fields = {f: np.zeros(len(names)) for f in JOINT_FIELDS}
                for column, slot in enumerate(slots):
                    fields[slot][column] = values[t, column]
                msg = types[JOINT_STATE](header=_header(int(stamps[t]), ""), name=names, **fields)
                writer.write(conn, int(stamps[t]), TYPESTORE.serialize_cdr(msg, JOINT_STATE))
                counts[topic] += 1
        for sensor, spec in imus:
            topic = f"{ns}/{sensor}"
            conn = writer.add_connection(topic, IMU, typestore=TYPESTORE)
            counts[topic] = 0
            for t in np.flatnonzero(_valid(arrays, spec)):
                msg = _imu_message(int(stamps[t]), spec["names"], arrays[spec["array"]][t])
                writer.write(conn, int(stamps[t]), TYPESTORE.serialize_cdr(msg, IMU))
                counts[topic] += 1
        truth = meta.get("truth") or {}
        if truth.get("angles"):
            topic = f"{ns}/joint_states_truth"
            conn = writer.add_connection(topic, JOINT_STATE, typestore=TYPESTORE)
            angles = arrays[truth["angles"]]
            velocities = arrays[truth["velocities"]] if truth.get("velocities") else None
            names = list(truth.get("names") or [f"joint_{i + 1}" for i in range(angles.shape[1])])
            valid = arrays[truth["valid"]] if truth.get("valid") else np.ones(len(angles), bool)
            counts[topic] = 0
            for t in np.flatnonzero(valid):
                msg = types[JOINT_STATE](
                    header=_header(int(stamps[t]), ""),
                    name=names,
                    position=angles[t].astype(np.float64),
                    velocity=(
                        velocities[t].astype(np.float64) if velocities is not None else np.zeros(0)
                    ),
                    effort=np.zeros(0),
                )
                writer.write(conn, int(stamps[t]), TYPESTORE.serialize_cdr(msg, JOINT_STATE))
                counts[topic] += 1
        actions = meta.get("actions")
        if actions:
            topic = f"{ns}/command"
            conn = writer.add_connection(topic, COMMAND, typestore=TYPESTORE)
            commands = arrays[actions["array"]]
            for t in range(commands.shape[0]):
                msg = types[COMMAND](
                    layout=types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0),
                    data=commands[t].astype(np.float64),
                )
                writer.write(conn, int(stamps[t]), TYPESTORE.serialize_cdr(msg, COMMAND))
            counts[topic] = int(commands.shape[0])
    LOG.info("wrote %s (%s): %s", path, storage, counts)
    return counts


def _imu_message(stamp_ns: int, names: list[str], row: np.ndarray) -> Any:
    types = TYPESTORE.types
    parts: dict[str, dict[str, float]] = {
        "orientation": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0},
        "angular_velocity": {"x": 0.0, "y": 0.0, "z": 0.0},
        "linear_acceleration": {"x": 0.0, "y": 0.0, "z": 0.0},
    }
    for name, value in zip(names, row, strict=True):
        group, _, axis = name.partition(".")
        if axis not in parts.get(group, {}):
            raise BagError(f"imu column {name!r}: expected GROUP.AXIS of {sorted(parts)}")
        parts[group][axis] = float(value)
    measured = {name.partition(".")[0] for name in names}
    covariances = {f"{group}_covariance": np.array([0.0 if group in measured else -1.0]
                                                   + [0.0] * 8) for group in parts}
    return types[IMU](
        header=_header(stamp_ns, "imu"),
        orientation=types["geometry_msgs/msg/Quaternion"](**parts["orientation"]),
        angular_velocity=types["geometry_msgs/msg/Vector3"](**parts["angular_velocity"]),
        linear_acceleration=types["geometry_msgs/msg/Vector3"](**parts["linear_acceleration"]),
        **covariances,
    )


def _field_for_unit(unit: str) -> str:
    if unit in POSITION_UNITS:
        return "position"
    if unit in VELOCITY_UNITS:
        return "velocity"
    return "effort"


def _valid(arrays: dict[str, np.ndarray], spec: dict[str, Any]) -> np.ndarray:
    name = spec.get("valid")
    if name:
        return arrays[name]
    return np.ones(arrays[spec["array"]].shape[0], dtype=bool)


def _header(stamp_ns: int, frame_id: str) -> Any:
    types = TYPESTORE.types
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def step_ns(dt: float) -> int:
    """A model step ``dt`` (s) in whole nanoseconds; BagError unless positive and >= 1 ns."""
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise BagError(f"dt expected a positive number of seconds, got {dt!r}")
    dt_ns = round(dt * 1e9)
    if dt_ns < 1:
        raise BagError(f"dt expected >= 1 ns, got {dt!r}")
    return dt_ns
