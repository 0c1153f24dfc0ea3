"""ROS messages <-> numpy arrays, with the checks that decide whether a message is usable.

Every rejection raises :class:`MessageError` with a short ``reason`` (the key the estimator
counts on ``/diagnostics``) and a message saying what was expected and what arrived. Image
decoding and colour conversion use ``rosbags-image`` (the cv_bridge equivalent that needs no ROS
distribution); only the row ``step`` handling is ours, because that library assumes packed rows.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from rosbags.image.image import ImageError, convert_color, to_cvtype
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

# Encodings the estimator accepts; everything else is rejected as unknown_encoding.
ACCEPTED_ENCODINGS = ("mono8", "rgb8", "bgr8", "mono16")
JOINT_FIELDS = ("position", "velocity", "effort")


class MessageError(ValueError):
    """A message that cannot be used; ``reason`` is the diagnostics counter key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


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


def check_stamp(stamp_ns: int, last_ns: int | None, now_ns: int, max_future_ns: int) -> None:
    """Reject zero stamps, stamps not after ``last_ns``, and stamps beyond ``now + max_future``."""
    if stamp_ns == 0:
        raise MessageError("zero_stamp", "header stamp is zero (unset)")
    if last_ns is not None and stamp_ns <= last_ns:
        raise MessageError(
            "stamp_backwards",
            f"header stamp {stamp_ns * 1e-9:.6f} s is not after the last one used "
            f"({last_ns * 1e-9:.6f} s)",
        )
    if stamp_ns > now_ns + max_future_ns:
        raise MessageError(
            "future_stamp",
            f"header stamp {stamp_ns * 1e-9:.6f} s is {(stamp_ns - now_ns) * 1e-9:.3f} s "
            "in the future",
        )


def image_to_array(msg: Image, color: bool = False) -> np.ndarray:
    """``sensor_msgs/Image`` -> ``[H, W]`` grey (uint8, or uint16 for mono16) or ``[H, W, 3]`` RGB.

    ``color`` asks for RGB (uint8). Accepts :data:`ACCEPTED_ENCODINGS`; rows may be padded
    (``step`` larger than the packed row) but never shorter, and ``data`` must hold exactly
    ``step * height`` bytes.
    """
    encoding = str(msg.encoding)
    if encoding not in ACCEPTED_ENCODINGS:
        raise MessageError(
            "unknown_encoding",
            f"image encoding {encoding!r} is not accepted "
            f"(accepted: {', '.join(ACCEPTED_ENCODINGS)})",
        )
    depth, _, typestr, channels = to_cvtype(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * depth // 8
    if height <= 0 or width <= 0:
        raise MessageError("wrong_size", f"image size {height}x{width} is empty")
    if step < row_bytes:
        raise MessageError(
            "step_mismatch",
            f"image step {step} is shorter than a {width}-pixel {encoding} row ({row_bytes} bytes)",
        )
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * height:
        raise MessageError(
            "truncated_data",
            f"image data has {data.size} bytes, expected step {step} x height {height} = "
            f"{step * height}",
        )
    rows = data.reshape(height, step)[:, :row_bytes]
    dtype = np.dtype(typestr).newbyteorder(">" if msg.is_bigendian else "<")
    shape = (height, width) if channels == 1 else (height, width, channels)
    # astype to the native dtype swaps bytes only when the message's order is not ours
    image = np.ascontiguousarray(rows).view(dtype).reshape(shape).astype(typestr, copy=False)
    target = "rgb8" if color else ("mono16" if depth == 16 else "mono8")
    try:
        return np.ascontiguousarray(convert_color(image, encoding, target))
    except ImageError as err:
        raise MessageError("unknown_encoding", f"image {encoding} -> {target}: {err}") from err


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
    positions."""
    parsed = []
    for entry in entries:
        joint, _, field = str(entry).rpartition("/")
        if not joint or field not in JOINT_FIELDS:
            joint, field = str(entry), "position"
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
                "missing_names", f"JointState lacks {field} of '{joint}' (has {names})"
            )
        out[k] = arrays[field][i]
    if not np.all(np.isfinite(out)):
        raise MessageError("non_finite", f"JointState values {out.tolist()} hold NaN or inf")
    return out


def command_to_vector(msg: Float64MultiArray, dim: int) -> np.ndarray:
    """``Float64MultiArray`` data -> ``[dim]`` finite command."""
    data = np.asarray(msg.data, dtype=np.float64)
    if data.size != dim:
        raise MessageError("wrong_size", f"command has {data.size} values, expected {dim}")
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
