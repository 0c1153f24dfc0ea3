"""Recorded rosbag2 files (MCAP or sqlite3) in, a :class:`SequenceDataset` out.

:func:`read_bag` reads any number of named inputs (:class:`~rkn_ros.data.sensor_kinds.
SensorInput`: images, joint states, IMUs, wrenches, vectors; each message turned into a row by
its kind's conversion in :mod:`rkn_ros.data.sensor_kinds`), plus optional commands (actions)
and a truth topic. Every stream is put on a grid ``t0 + k dt`` (``t0`` the earliest stamp among
them) by header stamp (the receive time for header-less messages): step ``k`` takes the newest
sample with stamp in ``[t_k - dt/2, t_k + dt/2)``; a step without one is missing (``valid``
False, zeros; commands hold the previous value). Superseded samples, missing steps and held
commands are counted and logged, never dropped silently. Each input is its own array with its
own valid mask.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.errors import ReaderError
from tqdm import tqdm

from rkn_ros.data.bag_spec import BagImport, import_metadata
from rkn_ros.data.dataset import SequenceDataset
from rkn_ros.data.messages import MessageError
from rkn_ros.data.rosbag_io import COMMAND, JOINT_STATE, TYPESTORE, BagError, step_ns
from rkn_ros.data.sensor_kinds import SensorInput, joint_value

LOG = logging.getLogger(__name__)

MAX_STEPS = 50_000_000          # per recording: far beyond any real one; a wild stamp otherwise
MAX_ARRAY_BYTES = 8 << 30       # one input of one recording


@dataclass
class _Stream:
    """Samples of one input: stamps [n] int64 ns and per-sample payloads."""

    topic: str
    stamps: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    skipped: int = 0       # messages of another publisher (joint states naming other joints)


COMMANDS, TRUTH = "@commands", "@truth"   # stream keys beside the inputs' names


def read_bag(
    paths: str | os.PathLike | Sequence[str | os.PathLike], spec: BagImport
) -> SequenceDataset:
    """One data set from one or more bags (each bag is its own recording; see module doc).

    Arrays: per input ``<array> [S, T, ...]`` (images uint8 ``[S, T, H, W]``, others float32
    ``[S, T, columns]``) + ``<array>_valid``; ``actions [S, T, A]``; ``joint_angles``/
    ``joint_velocities [S, T, n]`` + ``truth_valid``; ``targets [S, T, D]`` + ``targets_valid``.
    Without a window, S is the number of bags and all must give the same number of steps.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    if not paths:
        raise BagError("no bag given")
    parts: list[dict[str, np.ndarray]] = []
    counts: dict[str, dict[str, int]] = {}
    for path in paths:
        arrays, bag_counts = _read_one(path, spec)
        counts[path.name] = bag_counts
        for sensor in spec.inputs:
            first, here = parts[0][sensor.array] if parts else None, arrays[sensor.array]
            if first is not None and first.shape[1:] != here.shape[1:]:
                what = "images of" if sensor.kind == "image" else "rows of"
                raise BagError(
                    f"bag {path} topic {sensor.topic}: {what} {list(here.shape[1:])}, expected "
                    f"{list(first.shape[1:])} as in the first bag"
                )
        parts.append(arrays)

    sequences = _cut(parts, spec, paths)
    arrays = {name: np.stack([seq[name] for seq in sequences]) for name in sequences[0]}
    metadata = import_metadata(spec, paths, counts, parts[0])
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
            LOG.info("bag %s: last %d of %d steps do not fill a window of %d and are left out",
                     path, rest, steps, spec.window)
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


def _open(path: Path, spec: BagImport) -> tuple[Reader, dict[str, str]]:
    """The open reader and the topics the spec needs, each checked for presence and type."""
    wanted: dict[str, tuple[str, ...]] = {s.topic: s.sensor_kind.message_types
                                          for s in spec.inputs}
    for topic in (spec.command_topic,):
        if topic:
            wanted[topic] = (COMMAND,)
    if spec.truth_topic:
        wanted[spec.truth_topic] = (JOINT_STATE,)
    try:
        reader = Reader(path)
        reader.open()
    except (ReaderError, OSError) as err:
        raise BagError(f"cannot open bag {path}: {err}") from err
    present = {c.topic: c.msgtype for c in reader.connections}
    for topic, accepted in wanted.items():
        if topic not in present:
            reader.close()
            raise BagError(f"bag {path} has no topic {topic} ({accepted[0]} expected); "
                           f"topics: {sorted(present)}")
        if present[topic] not in accepted:
            reader.close()
            raise BagError(f"bag {path} topic {topic}: type {present[topic]}, expected "
                           f"{' or '.join(accepted)}")
    return reader, present


def _read_streams(path: Path, spec: BagImport) -> dict[str, _Stream]:
    """Every input's (and the commands' and truth's) samples, converted, in stamp order."""
    reader, _ = _open(path, spec)
    consumers: dict[str, list[str]] = {}
    for sensor in spec.inputs:
        consumers.setdefault(sensor.topic, []).append(sensor.name)
    if spec.command_topic:
        consumers[spec.command_topic] = [COMMANDS]
    if spec.truth_topic:
        consumers[spec.truth_topic] = [TRUTH]
    by_name = {s.name: s for s in spec.inputs}
    streams = {key: _Stream(topic) for topic, keys in consumers.items() for key in keys}
    try:
        connections = [c for c in reader.connections if c.topic in consumers]
        messages = tqdm(reader.messages(connections=connections),
                        total=sum(c.msgcount for c in connections), desc=f"reading {path.name}",
                        unit="msg", disable=None, leave=False)  # the bar only on a terminal
        for conn, receive_ns, raw in messages:
            msg = TYPESTORE.deserialize_cdr(raw, conn.msgtype)
            for key in consumers[conn.topic]:
                stream = streams[key]
                where = f"bag {path} topic {conn.topic} message {len(stream.stamps)}"
                try:
                    if key == COMMANDS:
                        stamped, value = False, np.asarray(msg.data, dtype=np.float32)
                    elif key == TRUTH:
                        stamped, value = True, _truth_row(msg, spec.truth_joints)
                    else:
                        sensor = by_name[key]
                        stamped = sensor.sensor_kind.stamped
                        value = sensor.sensor_kind.convert(msg, conn.msgtype, sensor.fields)
                except MessageError as err:
                    raise BagError(f"{where}: {err}") from err
                if value is None:
                    stream.skipped += 1
                    continue
                stamp = _stamp_ns(msg) if stamped else receive_ns
                if stream.stamps and stamp <= stream.stamps[-1]:
                    raise BagError(f"bag {path} topic {conn.topic}: stamps not increasing at "
                                   f"message {len(stream.stamps)} ({stamp} ns after "
                                   f"{stream.stamps[-1]} ns)")
                stream.stamps.append(stamp)
                stream.values.append(value)
    finally:
        reader.close()
    for key, stream in streams.items():
        if not stream.stamps and stream.skipped:
            joints = list(spec.truth_joints) if key == TRUTH else \
                [f.partition(":")[0] for f in by_name[key].fields]
            raise BagError(f"bag {path} topic {stream.topic}: none of its {stream.skipped} "
                           f"messages names any of the joints {sorted(joints)}")
        if not stream.stamps:
            raise BagError(f"bag {path} topic {stream.topic}: no messages")
    return streams


def _truth_row(msg: Any, joints: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray] | None:
    index_of = {name: i for i, name in enumerate(msg.name)}
    if index_of and index_of.keys().isdisjoint(joints):
        return None  # another simulator's truth on the same topic
    angles = np.array([joint_value(msg, n, "position", index_of) for n in joints], np.float32)
    velocities = np.array([joint_value(msg, n, "velocity", index_of) if len(msg.velocity)
                           else 0.0 for n in joints], np.float32)
    return angles, velocities


def _read_one(path: Path, spec: BagImport) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    streams = _read_streams(path, spec)
    dt_ns = step_ns(spec.dt)
    t0 = min(s.stamps[0] for s in streams.values())
    t_end = max(s.stamps[-1] for s in streams.values())
    steps = (t_end - t0 + dt_ns // 2) // dt_ns + 1
    if steps > MAX_STEPS:
        raise BagError(f"bag {path}: stamps span {(t_end - t0) / 1e9:.6g} s, {steps} steps of "
                       f"{spec.dt} s, more than {MAX_STEPS} (a stamp far off the others?)")
    counts: dict[str, int] = {"steps": int(steps)}
    for key, stream in streams.items():
        if stream.skipped:
            label = {TRUTH: "truth", COMMANDS: "commands"}.get(key, key)
            counts[f"{label}_other_joints"] = stream.skipped
            LOG.info("bag %s topic %s: %d messages name none of the chosen joints (another "
                     "publisher's) and are skipped", path, stream.topic, stream.skipped)
    arrays: dict[str, np.ndarray] = {}
    for sensor in spec.inputs:
        values, valid = _input_rows(path, sensor, streams[sensor.name], t0, dt_ns, steps, counts)
        arrays[sensor.array], arrays[sensor.valid] = values, valid
    if spec.command_topic:
        arrays["actions"] = _commands(path, spec, streams[COMMANDS], t0, dt_ns, steps, counts)
    if spec.truth_topic:
        _truth(path, spec, streams[TRUTH], t0, dt_ns, steps, counts, arrays)
    _targets(spec, arrays, steps)
    LOG.info("read %s: %s", path, counts)
    return arrays, counts


def _allocate(path: Path, topic: str, steps: int, shape: tuple[int, ...],
              dtype: type) -> np.ndarray:
    size = steps * math.prod(shape) * np.dtype(dtype).itemsize
    if size > MAX_ARRAY_BYTES:
        raise BagError(f"bag {path} topic {topic}: {steps} steps of {list(shape)} need "
                       f"{size / 2**30:.1f} GiB, more than {MAX_ARRAY_BYTES / 2**30:.0f} GiB; "
                       "cut the recording or lower its rate")
    return np.zeros((steps, *shape), dtype=dtype)


def _input_rows(path: Path, sensor: SensorInput, stream: _Stream, t0: int, dt_ns: int,
                steps: int, counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    picked, valid = _grid(stream, t0, dt_ns, steps, counts, sensor.name)
    shapes = {stream.values[i].shape for i in picked if i >= 0}
    what = "images" if sensor.kind == "image" else "messages"
    if len(shapes) > 1:
        sizes = sorted(list(s) for s in shapes) if sensor.kind == "image" \
            else sorted(s[0] for s in shapes)
        raise BagError(f"bag {path} topic {sensor.topic}: {what} of varying sizes {sizes}; "
                       "expected one size")
    (shape,) = shapes
    if sensor.kind != "image":
        try:
            sensor.columns(shape[0])
        except ValueError as err:
            raise BagError(f"bag {path} topic {sensor.topic}: {err}") from err
    dtype = np.uint8 if sensor.kind == "image" else np.float32
    values = _allocate(path, sensor.topic, steps, shape, dtype)
    for k in np.flatnonzero(valid):
        values[k] = stream.values[picked[k]]
    if sensor.kind != "image":
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            counts[f"{sensor.name}_nonfinite"] = int(bad.sum())
            LOG.warning("bag %s topic %s: %d steps with NaN/inf %s values marked missing",
                        path, sensor.topic, int(bad.sum()),
                        "joint" if sensor.kind == "joint_state" else sensor.kind)
            values[bad] = 0.0
            valid = valid & ~bad
    return values, valid


def _commands(path: Path, spec: BagImport, stream: _Stream, t0: int, dt_ns: int, steps: int,
              counts: dict[str, int]) -> np.ndarray:
    picked, valid = _grid(stream, t0, dt_ns, steps, counts, "commands")
    widths = {len(v) for v in stream.values}
    if len(widths) > 1:
        raise BagError(f"bag {path} topic {spec.command_topic}: commands of varying lengths "
                       f"{sorted(widths)}; expected one length")
    (width,) = widths
    if spec.command_names and len(spec.command_names) != width:
        raise BagError(f"bag {path} topic {spec.command_topic}: commands hold {width} values, "
                       f"command names {list(spec.command_names)} name "
                       f"{len(spec.command_names)}")
    actions = _allocate(path, str(spec.command_topic), steps, (width,), np.float32)
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
        LOG.info("bag %s topic %s: %d steps without a command hold the previous one", path,
                 spec.command_topic, held)
    if not np.isfinite(actions).all():
        raise BagError(f"bag {path} topic {spec.command_topic}: NaN/inf in commands")
    return actions


def _truth(path: Path, spec: BagImport, stream: _Stream, t0: int, dt_ns: int, steps: int,
           counts: dict[str, int], arrays: dict[str, np.ndarray]) -> None:
    picked, valid = _grid(stream, t0, dt_ns, steps, counts, "truth")
    n = len(spec.truth_joints)
    angles = _allocate(path, str(spec.truth_topic), steps, (n,), np.float32)
    velocities = np.zeros_like(angles)
    for k in np.flatnonzero(valid):
        angles[k], velocities[k] = stream.values[picked[k]]
    bad = ~(np.isfinite(angles).all(axis=1) & np.isfinite(velocities).all(axis=1))
    if bad.any():
        counts["truth_nonfinite"] = int(bad.sum())
        LOG.warning("bag %s topic %s: %d steps with NaN/inf truth marked missing", path,
                    spec.truth_topic, int(bad.sum()))
        angles[bad] = velocities[bad] = 0.0
        valid = valid & ~bad
    arrays["joint_angles"], arrays["joint_velocities"] = angles, velocities
    arrays["truth_valid"] = valid


def _targets(spec: BagImport, arrays: dict[str, np.ndarray], steps: int) -> None:
    kind = spec.target_kind
    if kind == "joints":
        joint = spec.joint_input
        assert joint is not None  # BagImport checked it
        arrays["targets"] = arrays[joint.array].copy()
        arrays["targets_valid"] = arrays[joint.valid].copy()
        return
    angles = arrays["joint_angles"]
    if kind == "truth":
        arrays["targets"] = angles.copy()
    else:
        pairs = np.stack([np.sin(angles), np.cos(angles)], axis=-1)  # [T, n, 2]
        arrays["targets"] = pairs.reshape(steps, -1).astype(np.float32)
        arrays["targets"][~arrays["truth_valid"]] = 0.0
    arrays["targets_valid"] = arrays["truth_valid"].copy()


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
        LOG.info("topic %s: %d messages on %d steps of %.4g s: %d superseded by a newer one in "
                 "the same step, %d steps without a message (missing)", stream.topic,
                 len(stamps), steps, dt_ns / 1e9, superseded, missing)
    return picked, valid


def _stamp_ns(msg: Any) -> int:
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
