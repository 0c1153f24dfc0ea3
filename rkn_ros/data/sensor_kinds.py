"""The sensor kinds a recording can hold, and how one message of each becomes one data row.

One :class:`SensorKind` per kind, registered in :data:`SENSOR_KINDS` by name; adding a kind is
one subclass here. Each says which message types it reads, whether its time is the header
stamp, how its ``fields`` name the data set's columns (and their units), and converts a message
(``rosbags`` or rclpy alike: fields are read by name) into ``uint8 [H, W]`` (images) or
``float64 [columns]`` (everything else):

- ``image``: ``sensor_msgs/Image`` or ``CompressedImage``; no fields; mono8 ``[H, W]``;
- ``joint_state``: ``sensor_msgs/JointState``; fields (required) ``NAME``, ``NAME:velocity`` or
  ``NAME:effort``, one column each;
- ``imu``: ``sensor_msgs/Imu``; fields ``angular_velocity``, ``linear_acceleration``,
  ``orientation``, each whole or one axis (``angular_velocity.z``); default the first two;
- ``wrench``: ``geometry_msgs/WrenchStamped``; fields ``force``, ``torque`` (or one axis);
  default both;
- ``vector``: ``std_msgs/Float64MultiArray``, no header (the receive time is its time);
  fields name the columns (default ``<sensor>_0``, ``<sensor>_1``, ...).

A message that cannot be used raises :class:`~rkn_ros.data.messages.MessageError`; a
``joint_state`` message naming none of the chosen joints (another publisher's on a shared
topic) converts to None and is skipped.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from rkn_ros.data.messages import (
    COMPRESSED_IMAGE,
    MessageError,
    compressed_image_to_mono8,
    image_to_mono8,
)

IMAGE = "sensor_msgs/msg/Image"
JOINT_STATE = "sensor_msgs/msg/JointState"
IMU = "sensor_msgs/msg/Imu"
WRENCH = "geometry_msgs/msg/WrenchStamped"
FLOAT_ARRAY = "std_msgs/msg/Float64MultiArray"
JOINT_FIELDS = ("position", "velocity", "effort")
JOINT_UNITS = {"position": "rad", "velocity": "rad/s", "effort": "1"}

Columns = tuple[list[str], list[str]]   # column names and their units


class SensorKind(abc.ABC):
    """How the messages of one kind of sensor become data set rows."""

    name: ClassVar[str]
    layout: ClassVar[str]                 # the data set's input kind: "image" or "vector"
    message_types: ClassVar[tuple[str, ...]]
    stamped: ClassVar[bool] = True        # False: the bag's receive time is the sample time

    @abc.abstractmethod
    def columns(self, sensor: str, fields: tuple[str, ...], width: int) -> Columns:
        """Names and default units of the columns ``fields`` select (``width``: values per
        message, for kinds whose width only the data tells); ValueError on bad fields."""

    @abc.abstractmethod
    def convert(self, msg: Any, msgtype: str, fields: tuple[str, ...]) -> np.ndarray | None:
        """One message as a row (None: not this sensor's message); MessageError if unusable."""


class ImageKind(SensorKind):
    name, layout, message_types = "image", "image", (IMAGE, COMPRESSED_IMAGE)

    def columns(self, sensor: str, fields: tuple[str, ...], width: int) -> Columns:
        if fields:
            raise ValueError(f"sensor {sensor!r} (image) takes no fields, received {list(fields)}")
        return [], []

    def convert(self, msg: Any, msgtype: str, fields: tuple[str, ...]) -> np.ndarray:
        return compressed_image_to_mono8(msg) if msgtype == COMPRESSED_IMAGE \
            else image_to_mono8(msg)


def parse_joint(text: str) -> tuple[str, str]:
    """``"elbow"`` -> ``("elbow", "position")``; ``"elbow:effort"`` -> ``("elbow", "effort")``."""
    name, _, what = text.strip().partition(":")
    what = what or "position"
    if not name or what not in JOINT_FIELDS:
        raise ValueError(f"joint {text!r}: expected NAME or NAME:FIELD with FIELD in "
                         f"{JOINT_FIELDS}")
    return name, what


def joint_value(msg: Any, name: str, what: str, index_of: dict[str, int]) -> float:
    """Field ``what`` of the JointState entry ``name`` (``index_of``: name -> position)."""
    if name not in index_of:
        raise MessageError(
            "missing_joint",
            f"joint {name!r} missing; message names {sorted(index_of)} (messages of different "
            "publishers on one topic are not merged: choose joints that one publisher sends, "
            "or merge them upstream, e.g. with joint_state_publisher)")
    values = getattr(msg, what)
    i = index_of[name]
    if len(values) <= i:
        raise MessageError("missing_field", f"joint {name!r} has no {what} ({len(values)} {what} "
                                            f"values for {len(index_of)} names)")
    return float(values[i])


class JointStateKind(SensorKind):
    name, layout, message_types = "joint_state", "vector", (JOINT_STATE,)

    def columns(self, sensor: str, fields: tuple[str, ...], width: int) -> Columns:
        if not fields:
            raise ValueError(f"sensor {sensor!r} (joint_state) needs joint names as fields "
                             "(NAME, NAME:velocity or NAME:effort)")
        joints = [parse_joint(f) for f in fields]
        labels = [n if w == "position" else f"{n}:{w}" for n, w in joints]
        return labels, [JOINT_UNITS[w] for _, w in joints]

    def convert(self, msg: Any, msgtype: str, fields: tuple[str, ...]) -> np.ndarray | None:
        joints = [parse_joint(f) for f in fields]
        index_of = {name: i for i, name in enumerate(msg.name)}
        if index_of and index_of.keys().isdisjoint(n for n, _ in joints):
            return None
        return np.array([joint_value(msg, n, w, index_of) for n, w in joints])


class DottedKind(SensorKind):
    """Messages whose columns are named vector axes (``group.axis``) of the message."""

    groups: ClassVar[dict[str, tuple[tuple[str, ...], str]]]   # group -> (axes, unit)
    defaults: ClassVar[tuple[str, ...]]
    path: ClassVar[str] = ""        # attribute holding the groups ("wrench" for WrenchStamped)

    def expand(self, sensor: str, fields: tuple[str, ...]) -> list[tuple[str, str]]:
        out = []
        for text in fields or self.defaults:
            group, _, axis = text.partition(".")
            axes, _ = self.groups.get(group, ((), ""))
            if group not in self.groups or (axis and axis not in axes):
                known = [f"{g}[.{'/.'.join(a)}]" for g, (a, _) in self.groups.items()]
                raise ValueError(f"sensor {sensor!r} ({self.name}) field {text!r}: expected "
                                 f"one of {known}")
            out.extend((group, a) for a in ((axis,) if axis else axes))
        if len(set(out)) != len(out):
            raise ValueError(f"sensor {sensor!r} ({self.name}): fields {list(fields)} repeat "
                             "an axis")
        return out

    def columns(self, sensor: str, fields: tuple[str, ...], width: int) -> Columns:
        axes = self.expand(sensor, fields)
        return [f"{g}.{a}" for g, a in axes], [self.groups[g][1] for g, _ in axes]

    def convert(self, msg: Any, msgtype: str, fields: tuple[str, ...]) -> np.ndarray:
        root = getattr(msg, self.path) if self.path else msg
        return np.array([float(getattr(getattr(root, g), a)) for g, a in self.expand("", fields)])


class ImuKind(DottedKind):
    name, layout, message_types = "imu", "vector", (IMU,)
    groups: ClassVar[dict[str, tuple[tuple[str, ...], str]]] = {
        "angular_velocity": (("x", "y", "z"), "rad/s"),
        "linear_acceleration": (("x", "y", "z"), "m/s^2"),
        "orientation": (("x", "y", "z", "w"), "1")}
    defaults = ("angular_velocity", "linear_acceleration")

    def convert(self, msg: Any, msgtype: str, fields: tuple[str, ...]) -> np.ndarray:
        # as sensor_msgs/Imu defines it: covariance element 0 at -1 = that part is not measured
        for group in dict.fromkeys(g for g, _ in self.expand("", fields)):
            if float(getattr(msg, f"{group}_covariance")[0]) == -1.0:
                raise MessageError("not_measured", f"imu publishes no {group} "
                                                   f"({group}_covariance[0] = -1); leave "
                                                   f"{group} out of the sensor's fields")
        return super().convert(msg, msgtype, fields)


class WrenchKind(DottedKind):
    name, layout, message_types = "wrench", "vector", (WRENCH,)
    groups: ClassVar[dict[str, tuple[tuple[str, ...], str]]] = {
        "force": (("x", "y", "z"), "N"), "torque": (("x", "y", "z"), "N*m")}
    defaults = ("force", "torque")
    path = "wrench"


class VectorKind(SensorKind):
    name, layout, message_types, stamped = "vector", "vector", (FLOAT_ARRAY,), False

    def columns(self, sensor: str, fields: tuple[str, ...], width: int) -> Columns:
        if fields and len(fields) != width:
            raise ValueError(f"sensor {sensor!r} (vector): messages hold {width} values, its "
                             f"fields name {len(fields)}: {list(fields)}")
        return list(fields) or [f"{sensor}_{i}" for i in range(width)], ["1"] * width

    def convert(self, msg: Any, msgtype: str, fields: tuple[str, ...]) -> np.ndarray:
        return np.asarray(msg.data, dtype=np.float64).reshape(-1)


SENSOR_KINDS: dict[str, SensorKind] = {
    k.name: k for k in (ImageKind(), JointStateKind(), ImuKind(), WrenchKind(), VectorKind())}
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class SensorInput:
    """One named input of the data set: a sensor ``kind`` read from ``topic``.

    ``fields`` pick the columns (see the module table), ``units`` override their default
    units, ``array`` names the data set array (default the sensor's name; its mask is
    ``<array>_valid``).
    """

    name: str
    kind: str
    topic: str
    fields: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    array: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise ValueError(f"sensor name {self.name!r}: expected a letter, then letters, "
                             "digits or _ (at most 64)")
        if self.kind not in SENSOR_KINDS:
            raise ValueError(f"sensor {self.name!r} kind {self.kind!r}: expected one of "
                             f"{list(SENSOR_KINDS)}")
        if not isinstance(self.topic, str) or not self.topic.startswith("/") or \
                any(c.isspace() for c in self.topic):
            raise ValueError(f"sensor {self.name!r} topic {self.topic!r}: expected an absolute "
                             "topic name (/...)")
        object.__setattr__(self, "fields", tuple(self.fields))
        object.__setattr__(self, "units", tuple(self.units))
        object.__setattr__(self, "array", self.array or self.name)
        if self.sensor_kind.name != "vector":   # a vector's columns are known from the data
            names, _ = self.sensor_kind.columns(self.name, self.fields, 0)
            if self.units and len(self.units) != len(names):
                raise ValueError(f"sensor {self.name!r}: {len(self.units)} units for "
                                 f"{len(names)} columns {names}")

    @property
    def sensor_kind(self) -> SensorKind:
        """The kind's conversion."""
        return SENSOR_KINDS[self.kind]

    @property
    def valid(self) -> str:
        """The name of the data set's valid mask."""
        return f"{self.array}_valid"

    @classmethod
    def parse(cls, text: str) -> SensorInput:
        """``NAME:KIND:TOPIC[:FIELDS]``, FIELDS comma separated (they may hold ``:``)."""
        parts = text.split(":", 3)
        if len(parts) < 3:
            raise ValueError(f"--sensor {text!r}: expected NAME:KIND:TOPIC[:FIELDS], e.g. "
                             "imu:imu:/imu/data or arm:joint_state:/joint_states:elbow,wrist")
        fields = tuple(f.strip() for f in parts[3].split(",") if f.strip()) \
            if len(parts) == 4 else ()
        return cls(name=parts[0], kind=parts[1], topic=parts[2], fields=fields)

    def columns(self, width: int) -> Columns:
        """Column names and units (``units`` where given)."""
        names, units = self.sensor_kind.columns(self.name, self.fields, width)
        if self.units and len(self.units) != len(names):
            raise ValueError(f"sensor {self.name!r}: {len(self.units)} units for {len(names)} "
                             f"columns {names}")
        return names, list(self.units) or units
