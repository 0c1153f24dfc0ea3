"""Which topics a node subscribes to for a model's sensors, and how each message becomes an input.

The checkpoint lists the model's sensors (``metadata.inputs``, each with its data ``kind`` and
the ``sensor_kind`` it was recorded as); :func:`sensor_plan` turns that list into one
:class:`SensorSubscription` per topic, without rclpy, so it is checked in process:

- a sensor with a recorded ``sensor_kind`` (``image``, ``joint_state``, ``imu``, ``wrench``,
  ``vector``) gets its own topic, ``~/<sensor name>`` unless ``topics`` maps it elsewhere, with
  the kind's message type (``sensor_msgs/Image``, ``sensor_msgs/JointState``,
  ``sensor_msgs/Imu``, ``geometry_msgs/WrenchStamped``, ``std_msgs/Float64MultiArray``);
- a sensor without one (the checkpoints written before sensor kinds were recorded) keeps the
  two topics those models always used: an image on ``~/image``, and every vector input as
  entries picked by name from one ``~/joint_states``.

Each message is converted by the kind's conversion in :mod:`rkn_ros.data.sensor_kinds`, the one
the bag import uses, into the raw array :meth:`StreamingEstimator.step` takes for that sensor.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rkn_ros.core.checkpoint import InputSpec
from rkn_ros.data.sensor_kinds import COMPRESSED_IMAGE, SENSOR_KINDS

LEGACY_IMAGE_TOPIC = "~/image"
LEGACY_JOINT_TOPIC = "~/joint_states"
RosMessage = Any   # an rclpy message (any type the kind reads; fields are read by name)
InputArray = np.ndarray   # image uint8 [H, W] or vector float64 [dim], raw units


class SensorPlanError(ValueError):
    """The model's sensors cannot be served with the given topics or joint names."""


@dataclass(frozen=True)
class SensorInput:
    """One model input fed from a subscription: ``fields`` pick its columns from a message
    (joint names, IMU axes, ...; see :mod:`rkn_ros.data.sensor_kinds`)."""

    name: str
    fields: tuple[str, ...]


@dataclass(frozen=True)
class SensorSubscription:
    """One topic to subscribe to: its ``msg_type`` (``package/msg/Name``), the sensor ``kind``
    that converts its messages, and the model inputs each message feeds (several only for the
    shared ``~/joint_states`` of models without recorded sensor kinds)."""

    topic: str
    kind: str
    msg_type: str
    inputs: tuple[SensorInput, ...]

    @property
    def sensors(self) -> tuple[str, ...]:
        """The model inputs this topic feeds."""
        return tuple(i.name for i in self.inputs)


def sensor_plan(
    inputs: Mapping[str, InputSpec],
    topics: Mapping[str, str] | None = None,
    joint_names: Sequence[str] = (),
) -> tuple[SensorSubscription, ...]:
    """The subscriptions for a model's sensors ``inputs`` (the checkpoint's, in model order).

    ``topics``: sensor name -> topic, overriding ``~/<name>`` (a model without recorded sensor
    kinds: ``image`` and ``joint_states`` override its two shared topics). ``joint_names``:
    the entries of ``~/joint_states`` for those models' vector inputs, in model order (default
    the names the checkpoint records). Raises :class:`SensorPlanError` naming what is wrong.
    """
    topics = dict(topics or {})
    legacy_vectors = [n for n, s in inputs.items() if s.sensor_kind is None and s.kind == "vector"]
    known = set(inputs) | ({"image", "joint_states"} if any(
        s.sensor_kind is None for s in inputs.values()) else set())
    unknown = sorted(set(topics) - known)
    if unknown:
        raise SensorPlanError(f"topics for {unknown}, but the model's sensors are {list(inputs)}")
    plan: list[SensorSubscription] = []
    for name, spec in inputs.items():
        if spec.sensor_kind is None:
            if spec.kind == "image":
                plan.append(_subscription(topics.get("image", LEGACY_IMAGE_TOPIC), "image",
                                          (SensorInput(name, ()),)))
            continue
        kind = SENSOR_KINDS.get(spec.sensor_kind)
        if kind is None:
            raise SensorPlanError(f"sensor {name!r}: kind {spec.sensor_kind!r} is not one of "
                                  f"{list(SENSOR_KINDS)}")
        if kind.layout != spec.kind:
            raise SensorPlanError(f"sensor {name!r}: a {spec.sensor_kind} sensor gives "
                                  f"{kind.layout} data, the model takes {spec.kind} data")
        fields = () if spec.kind == "image" else tuple(spec.names)
        if spec.kind == "vector":
            _check_columns(name, spec, fields)
        plan.append(_subscription(topics.get(name, f"~/{name}"), spec.sensor_kind,
                                  (SensorInput(name, fields),)))
    if legacy_vectors:
        plan.append(_legacy_joints(inputs, legacy_vectors, joint_names,
                                   topics.get("joint_states", LEGACY_JOINT_TOPIC)))
    seen: dict[str, str] = {}
    for sub in plan:
        if sub.topic in seen:
            raise SensorPlanError(f"sensors {seen[sub.topic]!r} and {sub.sensors[0]!r} both "
                                  f"read topic {sub.topic!r}: give each its own topic")
        seen[sub.topic] = sub.sensors[0]
    return tuple(plan)


def _subscription(topic: str, kind: str, inputs: tuple[SensorInput, ...]) -> SensorSubscription:
    if not isinstance(topic, str) or not topic or any(c.isspace() for c in topic):
        raise SensorPlanError(f"sensor {inputs[0].name!r}: topic {topic!r} is not a topic name")
    return SensorSubscription(topic=topic, kind=kind,
                              msg_type=SENSOR_KINDS[kind].message_types[0], inputs=inputs)


def _check_columns(name: str, spec: InputSpec, fields: tuple[str, ...]) -> None:
    """The recorded names must select exactly the model's columns from a message."""
    width = int(spec.shape[0])
    if not fields:
        if spec.sensor_kind == "vector":
            return   # a Float64MultiArray's values are the columns, in order
        raise SensorPlanError(f"sensor {name!r}: the checkpoint records no column names, so a "
                              f"{spec.sensor_kind} message's entries cannot be picked")
    try:
        columns, _ = SENSOR_KINDS[spec.sensor_kind].columns(name, fields, width)
    except ValueError as err:
        raise SensorPlanError(f"sensor {name!r}: {err}") from err
    if len(columns) != width:
        raise SensorPlanError(f"sensor {name!r}: its names {list(fields)} pick {len(columns)} "
                              f"values, the model takes {width}")


def _legacy_joints(inputs: Mapping[str, InputSpec], names: list[str], joint_names: Sequence[str],
                   topic: str) -> SensorSubscription:
    """All vector inputs of a model without sensor kinds, from one JointState topic."""
    sizes = [int(inputs[n].shape[0]) for n in names]
    entries = list(joint_names) or [e for n in names for e in inputs[n].names]
    if len(entries) != sum(sizes):
        raise SensorPlanError(f"joint_names {entries} has {len(entries)} entries, the model's "
                              f"vector inputs {names} take {sum(sizes)}")
    for entry in entries:
        try:
            SENSOR_KINDS["joint_state"].columns(names[0], (entry,), 1)
        except ValueError as err:
            raise SensorPlanError(f"joint_names: {err}") from err
    parts, start = [], 0
    for name, size in zip(names, sizes, strict=True):
        parts.append(SensorInput(name, tuple(entries[start:start + size])))
        start += size
    return _subscription(topic, "joint_state", tuple(parts))


def topic_parameters(inputs: Mapping[str, InputSpec]) -> dict[str, str]:
    """The node's per-sensor topic parameters, declared from the checkpoint's list at start-up
    (as robot_localization declares ``odomN``): parameter name -> the key of ``topics`` in
    :func:`sensor_plan` it sets (a sensor's name; ``image``/``joint_states`` for models without
    recorded sensor kinds). An empty value keeps the default topic."""
    keys = [name for name, spec in inputs.items() if spec.sensor_kind is not None]
    if any(spec.sensor_kind is None and spec.kind == "image" for spec in inputs.values()):
        keys.append("image")
    if any(spec.sensor_kind is None and spec.kind == "vector" for spec in inputs.values()):
        keys.append("joint_states")
    return {f"sensors.{key}.topic": key for key in dict.fromkeys(keys)}


def convert_message(subscription: SensorSubscription, msg: RosMessage
                    ) -> dict[str, InputArray] | None:
    """One message of ``subscription``'s topic as {model input: raw array}, the inputs
    :meth:`StreamingEstimator.step` takes; None when the message is not for this model (a
    JointState naming none of its joints). Raises
    :class:`~rkn_ros.data.messages.MessageError` for a message that cannot be used."""
    kind = SENSOR_KINDS[subscription.kind]
    msgtype = COMPRESSED_IMAGE if type(msg).__name__ == "CompressedImage" \
        else subscription.msg_type
    out = {}
    for part in subscription.inputs:
        value = kind.convert(msg, msgtype, part.fields)
        if value is None:
            return None
        out[part.name] = value
    return out


def message_class(msg_type: str) -> type:
    """The rclpy message class of ``package/msg/Name`` (imports the package's Python module)."""
    package, _, name = msg_type.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


__all__ = ["SensorInput", "SensorPlanError", "SensorSubscription", "convert_message",
           "message_class", "sensor_plan", "topic_parameters"]
