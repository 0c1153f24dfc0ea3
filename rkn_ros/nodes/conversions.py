"""ROS messages <-> numpy arrays, with the checks that decide whether a message is usable.

Every rejection raises :class:`~rkn_ros.data.messages.MessageError` with a short ``reason``
(the key the estimator counts on ``/diagnostics``) and a message saying what was expected and
what arrived. Images are decoded by :mod:`rkn_ros.data.messages`, shared with the bag import.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from rkn_ros.data.messages import MessageError

JOINT_FIELDS = ("position", "velocity", "effort")


def stamp_to_ns(stamp: Time) -> int:
    """``builtin_interfaces/Time`` -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# Simulated and replayed time (publish_clock) starts at 1 s: a zero stamp means "unset".
SIM_CLOCK_START_NS = 1_000_000_000


def ns_to_stamp(ns: int) -> Time:
    """Integer nanoseconds -> ``builtin_interfaces/Time``."""
    return Time(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def seconds_to_duration(seconds: float) -> Duration:
    """Seconds -> ``builtin_interfaces/Duration``."""
    ns = round(seconds * 1e9)
    return Duration(sec=int(ns // 1_000_000_000), nanosec=int(ns % 1_000_000_000))


def array_to_image(image: np.ndarray, stamp: Time, frame_id: str = "") -> Image:
    """``uint8 [H, W]`` (mono8), ``uint16 [H, W]`` (mono16) or ``uint8 [H, W, 3]`` (rgb8) as
    an Image."""
    image = np.ascontiguousarray(image)
    if image.dtype == np.uint8 and image.ndim == 2:
        encoding = "mono8"
    elif image.dtype == np.uint16 and image.ndim == 2:
        encoding = "mono16"
    elif image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        encoding = "rgb8"
    else:
        raise ValueError(
            f"image: expected uint8 [H, W], uint16 [H, W] or uint8 [H, W, 3], got {image.dtype} "
            f"{image.shape}"
        )
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = sys.byteorder == "big"
    msg.step = int(image.strides[0])
    msg.data = image.tobytes()
    return msg


def parse_joint_entries(entries: Sequence[str]) -> list[tuple[str, str]]:
    """``["j1", "j1/velocity", "m/effort"]`` -> ``[(joint, field), ...]``; bare names are
    positions. ``m:effort`` reads as ``m/effort``: that is how ``rkn-ros bag import`` names the
    columns, so a checkpoint trained on an imported bag carries its inputs' names that way."""
    parsed = []
    for entry in map(str, entries):
        for separator in ("/", ":"):
            joint, _, field = entry.rpartition(separator)
            if joint and field in JOINT_FIELDS:
                break
        else:
            joint, field = entry, "position"
        parsed.append((joint, field))
    return parsed


def joint_state_to_vector(msg: JointState, entries: Sequence[tuple[str, str]]) -> np.ndarray:
    """Pick ``(joint, field)`` entries by name from a JointState (order in the message is free)."""
    names = list(msg.name)
    if len(set(names)) != len(names):
        raise MessageError("duplicate_names", f"joint names repeat: {names}")
    arrays = {
        "position": np.asarray(msg.position, dtype=np.float64),
        "velocity": np.asarray(msg.velocity, dtype=np.float64),
        "effort": np.asarray(msg.effort, dtype=np.float64),
    }
    for field, values in arrays.items():
        if values.size not in (0, len(names)):
            raise MessageError(
                "mismatched_lengths",
                f"JointState has {len(names)} names but {values.size} {field} values",
            )
    index = {name: i for i, name in enumerate(names)}
    wanted = {joint for joint, _ in entries}
    if not wanted & set(names):
        raise MessageError(
            "unknown_names", f"JointState names {names} contain none of {sorted(wanted)}"
        )
    out = np.empty(len(entries), dtype=np.float64)
    for k, (joint, field) in enumerate(entries):
        i = index.get(joint)
        if i is None or arrays[field].size == 0:
            raise MessageError(
                "missing_names",
                f"JointState lacks {field} of '{joint}' (has {names}; messages of different "
                "publishers are not merged)",
            )
        out[k] = arrays[field][i]
    if not np.all(np.isfinite(out)):
        raise MessageError("non_finite", f"JointState values {out.tolist()} hold NaN or inf")
    return out


def command_to_vector(
    msg: Float64MultiArray, dim: int, names: Sequence[str] = ()
) -> np.ndarray:
    """``Float64MultiArray`` data -> ``[dim]`` finite command; ``names`` (what each value
    drives, from the checkpoint) go into the error for a command of the wrong length."""
    data = np.asarray(msg.data, dtype=np.float64)
    if data.size != dim:
        named = f" {list(names)}" if names else ""
        raise MessageError("wrong_size", f"command has {data.size} values, expected {dim}{named}")
    if not np.all(np.isfinite(data)):
        raise MessageError("non_finite", f"command {data.tolist()} holds NaN or inf")
    return data


def make_joint_state(
    stamp: Time,
    frame_id: str,
    names: Sequence[str],
    position: np.ndarray,
    velocity: np.ndarray | None = None,
    effort: np.ndarray | None = None,
) -> JointState:
    """A JointState with ``name``/``position`` and optional ``velocity``/``effort``."""
    msg = JointState()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.name = list(names)
    msg.position = [float(v) for v in position]
    if velocity is not None:
        msg.velocity = [float(v) for v in velocity]
    if effort is not None:
        msg.effort = [float(v) for v in effort]
    return msg


def fill_joint_state(
    msg: JointState, stamp: Time, position: np.ndarray, velocity: np.ndarray | None = None
) -> JointState:
    """Overwrite the stamp and values of a JointState made once by :func:`make_joint_state`:
    at every tick, cheaper than building a message (names and frame stay). ``velocity`` None
    leaves the field empty, as in :func:`make_joint_state`."""
    msg.header.stamp = stamp
    # array('d') is what the field stores, so it is taken without a per-element check (and a
    # numpy array is refused where field checks are on, as on Humble)
    msg.position = array("d", position)
    msg.velocity = array("d", velocity if velocity is not None else ())
    return msg


def make_trajectory(
    stamp: Time,
    frame_id: str,
    names: Sequence[str],
    dt: float,
    positions: np.ndarray,
    velocities: np.ndarray | None = None,
) -> JointTrajectory:
    """``positions [steps, joints]`` (and velocities) as points ``dt, 2 dt, ...`` after
    ``stamp``."""
    msg = JointTrajectory()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.joint_names = list(names)
    points = []
    for k in range(positions.shape[0]):
        point = JointTrajectoryPoint()
        point.positions = [float(v) for v in positions[k]]
        if velocities is not None:
            point.velocities = [float(v) for v in velocities[k]]
        point.time_from_start = seconds_to_duration((k + 1) * dt)
        points.append(point)
    msg.points = points
    return msg
