"""rosbag2 in and out (MCAP or sqlite3) with the pure-Python ``rosbags`` library.

Out: :func:`write_bag` publishes one sequence of a :class:`SequenceDataset` on the topics the
simulator nodes use (namespace ``/pendulum_sim`` or ``/pneumatic_sim``), header stamps on the
data set's ``dt`` grid:

- ``<ns>/image`` ``sensor_msgs/msg/Image`` mono8, only at steps whose image is valid;
- ``<ns>/joint_states`` ``sensor_msgs/msg/JointState``: one entry per observed column, named
  as in the metadata; angle/length columns (units rad, m) fill ``position``, velocity columns
  (rad/s, m/s) fill ``velocity``, all others (pressures) fill ``effort``; the unused fields of
  an entry are 0. Only at steps whose observation is valid;
- ``<ns>/joint_states_truth`` ``sensor_msgs/msg/JointState``: true angles (``position``) and
  velocities (``velocity``) at every step;
- ``<ns>/command`` ``std_msgs/msg/Float64MultiArray``: the action of each step (no header: the
  bag's receive timestamp carries the step time).

In: :func:`read_bag` turns a bag into a data set: every chosen stream is put on a grid
``t0 + k dt`` (``t0`` the earliest stamp among them) by header stamp (the receive time for
header-less commands): step ``k`` takes the newest sample with stamp in
``[t_k - dt/2, t_k + dt/2)``; a step without one is missing (``valid`` False, zeros; commands
hold the previous value). Superseded samples, missing steps and held commands are counted and
logged, never dropped silently.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.errors import ReaderError, WriterError
from rosbags.typesys import Stores, get_typestore
from tqdm import tqdm

from rkn_ros import __version__
from rkn_ros.data.dataset import FORMAT_VERSION, SequenceDataset
from rkn_ros.data.messages import (
    COMPRESSED_IMAGE,
    MessageError,
    compressed_image_to_mono8,
    image_to_mono8,
)

LOG = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
JOINT_STATE = "sensor_msgs/msg/JointState"
COMMAND = "std_msgs/msg/Float64MultiArray"
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
NAMESPACES = {
    "pendulum": "/pendulum_sim",
    "quad_link": "/pendulum_sim",
    "pneumatic": "/pneumatic_sim",
    "pam": "/pam_replay",
}
JOINT_FIELDS = ("position", "velocity", "effort")
POSITION_UNITS = ("rad", "m")
VELOCITY_UNITS = ("rad/s", "m/s")
START_NS = 1_000_000_000  # exported bags start at t = 1 s (a zero stamp reads as "unset")

_TYPESTORE = get_typestore(Stores.ROS2_KILTED)


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
    dt_ns = _dt_ns(dataset.dt)
    stamps = start_ns + dt_ns * np.arange(dataset.sequence_length, dtype=np.int64)
    arrays = {name: a[sequence] for name, a in dataset.arrays.items()}
    images = [(s, spec) for s, spec in meta["inputs"].items() if spec["kind"] == "image"]
    vectors = [(s, spec) for s, spec in meta["inputs"].items() if spec["kind"] == "vector"]
    for sensor, spec in images:
        if arrays[spec["array"]].ndim != 3:
            raise BagError(
                f"input {sensor!r}: only grey images [time, H, W] can be written as mono8, "
                f"got shape {list(arrays[spec['array']].shape)}"
            )

    counts: dict[str, int] = {}
    types = _TYPESTORE.types
    try:
        writer = Writer(path, version=9, storage_plugin=STORAGES[storage])
    except WriterError as err:
        raise BagError(f"cannot create bag {path}: {err}") from err
    with writer:
        for sensor, spec in images:
            topic = f"{ns}/image" if len(images) == 1 else f"{ns}/{sensor}"
            conn = writer.add_connection(topic, IMAGE, typestore=_TYPESTORE)
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
                writer.write(conn, int(stamps[t]), _TYPESTORE.serialize_cdr(msg, IMAGE))
                counts[topic] += 1
        for sensor, spec in vectors:
            topic = f"{ns}/joint_states" if len(vectors) == 1 else f"{ns}/{sensor}"
            conn = writer.add_connection(topic, JOINT_STATE, typestore=_TYPESTORE)
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
                writer.write(conn, int(stamps[t]), _TYPESTORE.serialize_cdr(msg, JOINT_STATE))
                counts[topic] += 1
        truth = meta.get("truth") or {}
        if truth.get("angles"):
            topic = f"{ns}/joint_states_truth"
            conn = writer.add_connection(topic, JOINT_STATE, typestore=_TYPESTORE)
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
                writer.write(conn, int(stamps[t]), _TYPESTORE.serialize_cdr(msg, JOINT_STATE))
                counts[topic] += 1
        actions = meta.get("actions")
        if actions:
            topic = f"{ns}/command"
            conn = writer.add_connection(topic, COMMAND, typestore=_TYPESTORE)
            commands = arrays[actions["array"]]
            for t in range(commands.shape[0]):
                msg = types[COMMAND](
                    layout=types["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0),
                    data=commands[t].astype(np.float64),
                )
                writer.write(conn, int(stamps[t]), _TYPESTORE.serialize_cdr(msg, COMMAND))
            counts[topic] = int(commands.shape[0])
    LOG.info("wrote %s (%s): %s", path, storage, counts)
    return counts


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
    types = _TYPESTORE.types
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    stamp = types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
    return types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def _dt_ns(dt: float) -> int:
    if not (isinstance(dt, (int, float)) and math.isfinite(dt) and dt > 0):
        raise BagError(f"dt expected a positive number of seconds, got {dt!r}")
    dt_ns = round(dt * 1e9)
    if dt_ns < 1:
        raise BagError(f"dt expected >= 1 ns, got {dt!r}")
    return dt_ns


# ====================================================================== import
@dataclass(frozen=True)
class JointField:
    """One observed number: ``field`` of the JointState entry ``name``."""

    name: str
    field: str = "position"

    @classmethod
    def parse(cls, text: str) -> JointField:
        """``"elbow"`` (position) or ``"elbow:effort"``."""
        name, _, what = text.strip().partition(":")
        what = what or "position"
        if not name or what not in JOINT_FIELDS:
            raise BagError(
                f"joint {text!r}: expected NAME or NAME:FIELD with FIELD in {JOINT_FIELDS}"
            )
        return cls(name=name, field=what)

    @property
    def label(self) -> str:
        """The column name in the data set: ``NAME`` or ``NAME:FIELD``."""
        return self.name if self.field == "position" else f"{self.name}:{self.field}"


@dataclass(frozen=True)
class BagImport:
    """What to take from a bag and how to lay it out."""

    dt: float  # seconds per step of the model
    image_topic: str | None = None
    joint_topic: str | None = None
    joints: tuple[JointField, ...] = ()
    command_topic: str | None = None
    truth_topic: str | None = None
    truth_joints: tuple[str, ...] = ()
    targets: str = "auto"  # auto | joints | truth | truth_sincos
    window: int = 0  # > 0: cut the recording into sequences of this many steps
    joint_units: tuple[str, ...] = field(default=())  # per joint; default from the field
    # per command value (a forward command controller's joints); default command_<i>, unit 1
    command_names: tuple[str, ...] = field(default=())
    command_units: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        _dt_ns(self.dt)
        if not (self.image_topic or self.joint_topic):
            raise BagError("bag import needs an image topic or a joint topic as input")
        if self.joint_topic and not self.joints:
            raise BagError(f"joint topic {self.joint_topic} given without joint names")
        if self.truth_topic and not self.truth_joints:
            raise BagError(f"truth topic {self.truth_topic} given without truth joint names")
        if self.targets not in ("auto", "joints", "truth", "truth_sincos"):
            raise BagError(
                f"targets expected auto, joints, truth or truth_sincos, got {self.targets!r}"
            )
        if not (self.truth_topic or self.joint_topic):
            raise BagError(
                "bag import targets need a truth topic or a joint topic (an image alone has "
                "nothing to learn)"
            )
        if self.targets.startswith("truth") and not self.truth_topic:
            raise BagError(f"targets {self.targets!r} need a truth topic")
        if self.targets == "joints" and not self.joint_topic:
            raise BagError("targets 'joints' need a joint topic")
        topics = [self.image_topic, self.joint_topic, self.command_topic, self.truth_topic]
        given = [t for t in topics if t]
        if len(set(given)) != len(given):
            raise BagError(f"image, joint, command and truth topics must differ, got {given}")
        if self.window < 0:
            raise BagError(f"window expected >= 0, got {self.window}")
        if self.joint_units and len(self.joint_units) != len(self.joints):
            raise BagError(
                f"joint_units has {len(self.joint_units)} entries for {len(self.joints)} joints"
            )
        if (self.command_names or self.command_units) and not self.command_topic:
            raise BagError("command names or units given without a command topic")
        if self.command_units and len(self.command_units) != len(self.command_names):
            raise BagError(
                f"command_units has {len(self.command_units)} entries for "
                f"{len(self.command_names)} command names (units need names)"
            )

    @property
    def target_kind(self) -> str:
        """``targets`` with ``auto`` resolved: truth if a truth topic is given, else joints."""
        if self.targets != "auto":
            return self.targets
        return "truth" if self.truth_topic else "joints"


@dataclass
class _Stream:
    """Samples of one topic: stamps [n] int64 ns and per-sample payloads."""

    topic: str
    stamps: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)


def read_bag(
    paths: str | os.PathLike | Sequence[str | os.PathLike], spec: BagImport
) -> SequenceDataset:
    """One data set from one or more bags (each bag is its own recording; see module doc).

    Arrays: ``images [S, T, H, W]`` uint8 + ``images_valid``; ``joint_obs [S, T, J]`` +
    ``joint_obs_valid``; ``actions [S, T, A]``; ``joint_angles``/``joint_velocities
    [S, T, n]`` + ``truth_valid``; ``targets [S, T, D]`` + ``targets_valid``. Without a
    window, S is the number of bags and all must give the same number of steps.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise BagError("no bag given")
    parts: list[dict[str, np.ndarray]] = []
    image_shape: tuple[int, ...] | None = None
    counts: dict[str, dict[str, int]] = {}
    for path in paths:
        arrays, bag_counts = _read_one(path, spec)
        counts[path.name] = bag_counts
        if "images" in arrays:
            shape = arrays["images"].shape[1:]
            if image_shape is not None and shape != image_shape:
                raise BagError(
                    f"bag {path} topic {spec.image_topic}: images of {list(shape)} pixels, "
                    f"expected {list(image_shape)} as in the first bag"
                )
            image_shape = shape
        parts.append(arrays)

    sequences = _cut(parts, spec, paths)
    arrays = {name: np.stack([seq[name] for seq in sequences]) for name in sequences[0]}
    action_dim = parts[0]["actions"].shape[-1] if "actions" in parts[0] else 0
    metadata = _import_metadata(spec, paths, counts, image_shape, action_dim)
    dataset = SequenceDataset(arrays=arrays, metadata=metadata)
    dataset.validate(source=f"bag import of {', '.join(str(p) for p in paths)}")
    return dataset


def _cut(
    parts: list[dict[str, np.ndarray]], spec: BagImport, paths: list[Path]
) -> list[dict[str, np.ndarray]]:
    if spec.window == 0:
        lengths = {len(next(iter(p.values()))) for p in parts}
        if len(lengths) > 1:
            raise BagError(
                f"bags {[str(p) for p in paths]} give different numbers of steps "
                f"{sorted(lengths)}; pass a window to cut them into equal sequences"
            )
        return parts
    sequences = []
    for path, part in zip(paths, parts, strict=True):
        steps = len(next(iter(part.values())))
        count = steps // spec.window
        rest = steps - count * spec.window
        if rest:
            LOG.info(
                "bag %s: last %d of %d steps do not fill a window of %d and are left out",
                path,
                rest,
                steps,
                spec.window,
            )
        for i in range(count):
            cut = slice(i * spec.window, (i + 1) * spec.window)
            sequences.append({name: a[cut] for name, a in part.items()})
    if not sequences:
        lengths = [len(next(iter(part.values()))) for part in parts]
        raise BagError(
            f"bags {[str(p) for p in paths]} ({lengths} steps of {spec.dt} s) are shorter than "
            f"one window of {spec.window} steps"
        )
    return sequences


def _read_one(path: Path, spec: BagImport) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    wanted = {
        spec.image_topic: IMAGE,
        spec.joint_topic: JOINT_STATE,
        spec.command_topic: COMMAND,
        spec.truth_topic: JOINT_STATE,
    }
    wanted.pop(None, None)
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError) as err:
        raise BagError(f"cannot open bag {path}: {err}") from err
    try:
        present = {c.topic: c.msgtype for c in reader.connections}
        for topic, msgtype in wanted.items():
            if topic not in present:
                raise BagError(
                    f"bag {path} has no topic {topic} ({msgtype} expected); "
                    f"topics: {sorted(present)}"
                )
            # image_transport's compressed recordings serve as well as raw frames
            accepted = (IMAGE, COMPRESSED_IMAGE) if msgtype == IMAGE else (msgtype,)
            if present[topic] not in accepted:
                raise BagError(
                    f"bag {path} topic {topic}: type {present[topic]}, expected "
                    f"{' or '.join(accepted)}"
                )
        streams = {topic: _Stream(topic) for topic in wanted}
        # On a JointState topic, messages naming none of the chosen joints come from another
        # publisher (a gripper driver beside the arm's), on its own time base: skipped, counted.
        joints_of = {
            spec.joint_topic: {joint.name for joint in spec.joints},
            spec.truth_topic: set(spec.truth_joints),
        }
        other_joints = dict.fromkeys(joints_of, 0)
        connections = [c for c in reader.connections if c.topic in wanted]
        messages = tqdm(
            reader.messages(connections=connections),
            total=sum(c.msgcount for c in connections),
            desc=f"reading {path.name}",
            unit="msg",
            disable=None,  # only on a terminal
            leave=False,
        )
        for conn, receive_ns, raw in messages:
            msg = _TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            if conn.topic in joints_of and msg.name and joints_of[conn.topic].isdisjoint(msg.name):
                other_joints[conn.topic] += 1
                continue
            stream = streams[conn.topic]
            stamp = receive_ns if conn.msgtype == COMMAND else _stamp_ns(msg)
            if stream.stamps and stamp <= stream.stamps[-1]:
                raise BagError(
                    f"bag {path} topic {conn.topic}: stamps not increasing at message "
                    f"{len(stream.stamps)} ({stamp} ns after {stream.stamps[-1]} ns)"
                )
            stream.stamps.append(stamp)
            stream.values.append(
                _payload(msg, conn.msgtype, conn.topic, spec, path, len(stream.stamps) - 1)
            )
    finally:
        reader.close()

    for topic, stream in streams.items():
        if not stream.stamps and other_joints.get(topic):
            raise BagError(
                f"bag {path} topic {topic}: none of its {other_joints[topic]} messages names "
                f"any of the joints {sorted(joints_of[topic])}"
            )
        if not stream.stamps:
            raise BagError(f"bag {path} topic {topic}: no messages")
    dt_ns = _dt_ns(spec.dt)
    t0 = min(s.stamps[0] for s in streams.values())
    t_end = max(s.stamps[-1] for s in streams.values())
    steps = (t_end - t0 + dt_ns // 2) // dt_ns + 1
    counts: dict[str, int] = {"steps": int(steps)}
    for label, topic in (("joints", spec.joint_topic), ("truth", spec.truth_topic)):
        if topic and other_joints[topic]:
            counts[f"{label}_other_joints"] = other_joints[topic]
            LOG.info(
                "bag %s topic %s: %d messages name none of the chosen joints (another "
                "publisher's) and are skipped",
                path,
                topic,
                other_joints[topic],
            )
    arrays: dict[str, np.ndarray] = {}

    if spec.image_topic:
        picked, valid = _grid(streams[spec.image_topic], t0, dt_ns, steps, counts, "images")
        shapes = {streams[spec.image_topic].values[i].shape for i in picked if i >= 0}
        if len(shapes) > 1:
            raise BagError(
                f"bag {path} topic {spec.image_topic}: images of varying sizes "
                f"{sorted(list(s) for s in shapes)}; expected one size"
            )
        (shape,) = shapes
        images = np.zeros((steps, *shape), dtype=np.uint8)
        for k in np.flatnonzero(valid):
            images[k] = streams[spec.image_topic].values[picked[k]]
        arrays["images"], arrays["images_valid"] = images, valid
    if spec.joint_topic:
        picked, valid = _grid(streams[spec.joint_topic], t0, dt_ns, steps, counts, "joints")
        values = np.zeros((steps, len(spec.joints)), dtype=np.float32)
        for k in np.flatnonzero(valid):
            values[k] = streams[spec.joint_topic].values[picked[k]]
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            counts["joints_nonfinite"] = int(bad.sum())
            LOG.warning(
                "bag %s topic %s: %d steps with NaN/inf joint values marked missing",
                path,
                spec.joint_topic,
                int(bad.sum()),
            )
            values[bad] = 0.0
            valid = valid & ~bad
        arrays["joint_obs"], arrays["joint_obs_valid"] = values, valid
    if spec.command_topic:
        stream = streams[spec.command_topic]
        picked, valid = _grid(stream, t0, dt_ns, steps, counts, "commands")
        widths = {len(v) for v in stream.values}
        if len(widths) > 1:
            raise BagError(
                f"bag {path} topic {spec.command_topic}: commands of varying lengths "
                f"{sorted(widths)}; expected one length"
            )
        (width,) = widths
        if spec.command_names and len(spec.command_names) != width:
            raise BagError(
                f"bag {path} topic {spec.command_topic}: commands hold {width} values, "
                f"command names {list(spec.command_names)} name {len(spec.command_names)}"
            )
        actions = np.zeros((steps, width), dtype=np.float32)
        last = np.zeros(width, dtype=np.float32)
        held = 0
        for k in range(steps):
            if valid[k]:
                last = stream.values[picked[k]]
            else:
                held += 1
            actions[k] = last
        counts["commands_held"] = held
        if held:
            # Zero-order hold, as a controller keeps its last command between updates.
            LOG.info(
                "bag %s topic %s: %d steps without a command hold the previous one",
                path,
                spec.command_topic,
                held,
            )
        if not np.isfinite(actions).all():
            raise BagError(f"bag {path} topic {spec.command_topic}: NaN/inf in commands")
        arrays["actions"] = actions
    if spec.truth_topic:
        picked, valid = _grid(streams[spec.truth_topic], t0, dt_ns, steps, counts, "truth")
        n = len(spec.truth_joints)
        angles = np.zeros((steps, n), dtype=np.float32)
        velocities = np.zeros((steps, n), dtype=np.float32)
        for k in np.flatnonzero(valid):
            angles[k], velocities[k] = streams[spec.truth_topic].values[picked[k]]
        bad = ~(np.isfinite(angles).all(axis=1) & np.isfinite(velocities).all(axis=1))
        if bad.any():
            counts["truth_nonfinite"] = int(bad.sum())
            LOG.warning(
                "bag %s topic %s: %d steps with NaN/inf truth marked missing",
                path,
                spec.truth_topic,
                int(bad.sum()),
            )
            angles[bad] = velocities[bad] = 0.0
            valid = valid & ~bad
        arrays["joint_angles"], arrays["joint_velocities"] = angles, velocities
        arrays["truth_valid"] = valid

    kind = spec.target_kind
    if kind == "joints":
        arrays["targets"] = arrays["joint_obs"].copy()
        arrays["targets_valid"] = arrays["joint_obs_valid"].copy()
    else:
        angles = arrays["joint_angles"]
        if kind == "truth":
            arrays["targets"] = angles.copy()
        else:
            pairs = np.stack([np.sin(angles), np.cos(angles)], axis=-1)  # [T, n, 2]
            arrays["targets"] = pairs.reshape(steps, -1).astype(np.float32)
            arrays["targets"][~arrays["truth_valid"]] = 0.0
        arrays["targets_valid"] = arrays["truth_valid"].copy()
    LOG.info("read %s: %s", path, counts)
    return arrays, counts


def _grid(
    stream: _Stream, t0: int, dt_ns: int, steps: int, counts: dict[str, int], label: str
) -> tuple[np.ndarray, np.ndarray]:
    """Index of the sample used at each step (-1: none) and the valid mask."""
    stamps = np.asarray(stream.stamps, dtype=np.int64)
    cells = (stamps - t0 + dt_ns // 2) // dt_ns
    picked = np.full(steps, -1, dtype=np.int64)
    # Stamps increase, so the last sample of each run of equal cells is the newest one.
    newest = np.flatnonzero(np.append(cells[1:] != cells[:-1], True))
    picked[cells[newest]] = newest
    valid = picked >= 0
    superseded = len(stamps) - int(valid.sum())
    missing = steps - int(valid.sum())
    counts[f"{label}_messages"] = len(stamps)
    counts[f"{label}_superseded"] = superseded
    counts[f"{label}_missing_steps"] = missing
    if superseded or missing:
        LOG.info(
            "topic %s: %d messages on %d steps of %.4g s: %d superseded by a newer one in the "
            "same step, %d steps without a message (missing)",
            stream.topic,
            len(stamps),
            steps,
            dt_ns / 1e9,
            superseded,
            missing,
        )
    return picked, valid


def _stamp_ns(msg: Any) -> int:
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _payload(
    msg: Any, msgtype: str, topic: str, spec: BagImport, path: Path, index: int
) -> Any:
    where = f"bag {path} topic {topic} message {index}"
    if topic == spec.image_topic:
        try:
            if msgtype == COMPRESSED_IMAGE:
                return compressed_image_to_mono8(msg)
            return image_to_mono8(msg)
        except MessageError as err:
            raise BagError(f"{where}: {err}") from err
    if topic == spec.command_topic:
        return np.asarray(msg.data, dtype=np.float32)
    names = list(msg.name)
    index_of = {name: i for i, name in enumerate(names)}
    if topic == spec.joint_topic:
        row = np.empty(len(spec.joints), dtype=np.float32)
        for column, joint in enumerate(spec.joints):
            row[column] = _joint_value(msg, joint.name, joint.field, index_of, where)
        return row
    # the truth topic: positions and velocities of the truth joints
    angles = np.empty(len(spec.truth_joints), dtype=np.float32)
    velocities = np.empty(len(spec.truth_joints), dtype=np.float32)
    for column, name in enumerate(spec.truth_joints):
        angles[column] = _joint_value(msg, name, "position", index_of, where)
        velocities[column] = (
            _joint_value(msg, name, "velocity", index_of, where) if len(msg.velocity) else 0.0
        )
    return angles, velocities


def _joint_value(msg: Any, name: str, what: str, index_of: dict[str, int], where: str) -> float:
    if name not in index_of:
        raise BagError(
            f"{where}: joint {name!r} missing; message names {sorted(index_of)} (messages of "
            "different publishers on one topic are not merged: choose joints that one "
            "publisher sends, or merge them upstream, e.g. with joint_state_publisher)"
        )
    values = getattr(msg, what)
    i = index_of[name]
    if len(values) <= i:
        raise BagError(
            f"{where}: joint {name!r} has no {what} ({len(values)} {what} values for "
            f"{len(index_of)} names)"
        )
    return float(values[i])


def _import_metadata(
    spec: BagImport,
    paths: list[Path],
    counts: dict[str, dict[str, int]],
    image_shape: tuple[int, ...] | None,
    action_dim: int,
) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    if spec.image_topic:
        inputs["image"] = {
            "kind": "image",
            "array": "images",
            "valid": "images_valid",
            "shape": list(image_shape or ()),
            "topic": spec.image_topic,
        }
    if spec.joint_topic:
        default_units = {"position": "rad", "velocity": "rad/s", "effort": "1"}
        units = list(spec.joint_units) or [default_units[j.field] for j in spec.joints]
        inputs["joints"] = {
            "kind": "vector",
            "array": "joint_obs",
            "valid": "joint_obs_valid",
            "names": [j.label for j in spec.joints],
            "units": units,
            "topic": spec.joint_topic,
        }
    kind = spec.target_kind
    if kind == "joints":
        targets = {"names": inputs["joints"]["names"], "units": inputs["joints"]["units"]}
    elif kind == "truth":
        targets = {"names": list(spec.truth_joints), "units": ["rad"] * len(spec.truth_joints)}
    else:
        names = [f"{f}_{j}" for j in spec.truth_joints for f in ("sin", "cos")]
        targets = {"names": names, "units": ["1"] * len(names)}
    targets.update({"array": "targets", "valid": "targets_valid", "kind": kind})
    actions = None
    if spec.command_topic:
        actions = {
            "array": "actions",
            "names": list(spec.command_names) or [f"command_{i}" for i in range(action_dim)],
            "units": list(spec.command_units) or ["1"] * action_dim,
            "topic": spec.command_topic,
        }
    truth = None
    if spec.truth_topic:
        truth = {
            "angles": "joint_angles",
            "velocities": "joint_velocities",
            "valid": "truth_valid",
            "names": list(spec.truth_joints),
        }
    parameters = asdict(spec)
    parameters["joints"] = [j.label for j in spec.joints]
    parameters["bags"] = [str(p) for p in paths]
    parameters["counts"] = counts
    return {
        "format_version": FORMAT_VERSION,
        "generator": "rosbag",
        "version": __version__,
        "seed": 0,
        "dt": float(spec.dt),
        "parameters": parameters,
        "units": {"dt": "s", "window": "steps"},
        "inputs": inputs,
        "targets": targets,
        "actions": actions,
        "truth": truth,
    }
