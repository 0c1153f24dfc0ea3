"""What a bag import takes (:class:`BagImport`) and the data set metadata it writes.

The inputs are a list of :class:`~rkn_ros.data.sensor_kinds.SensorInput`; the older
``image_topic`` and ``joint_topic`` options are shorthands for two of them. Reading is
:mod:`rkn_ros.data.bag_import`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rkn_ros import __version__
from rkn_ros.data.dataset import FORMAT_VERSION
from rkn_ros.data.rosbag_io import BagError, step_ns
from rkn_ros.data.sensor_kinds import JOINT_FIELDS, SensorInput


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
    """What to take from a bag and how to lay it out.

    ``sensors`` lists the inputs; ``image_topic`` and ``joint_topic`` (+ ``joints``,
    ``joint_units``) are shorthands for the inputs ``image`` (array ``images``) and ``joints``
    (array ``joint_obs``), placed first.
    """

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
    sensors: tuple[SensorInput, ...] = ()

    def __post_init__(self) -> None:
        step_ns(self.dt)
        if self.joint_topic and not self.joints:
            raise BagError(f"joint topic {self.joint_topic} given without joint names")
        if self.joint_units and len(self.joint_units) != len(self.joints):
            raise BagError(
                f"joint_units has {len(self.joint_units)} entries for {len(self.joints)} joints"
            )
        try:
            inputs = self.inputs
        except ValueError as err:
            raise BagError(str(err)) from err
        if not inputs:
            raise BagError("bag import needs at least one input (an image topic, a joint topic "
                           "or a sensor)")
        for what in ("name", "array"):
            values = [getattr(s, what) for s in inputs]
            if len(set(values)) != len(values):
                raise BagError(f"sensor {what}s must differ, got {values}")
        if self.truth_topic and not self.truth_joints:
            raise BagError(f"truth topic {self.truth_topic} given without truth joint names")
        if self.targets not in ("auto", "joints", "truth", "truth_sincos"):
            raise BagError(
                f"targets expected auto, joints, truth or truth_sincos, got {self.targets!r}"
            )
        if not (self.truth_topic or self.joint_input):
            raise BagError(
                "bag import targets need a truth topic or a joint topic (images or other "
                "sensors alone have nothing to learn)"
            )
        if self.targets.startswith("truth") and not self.truth_topic:
            raise BagError(f"targets {self.targets!r} need a truth topic")
        if self.targets == "joints" and not self.joint_input:
            raise BagError("targets 'joints' need a joint topic")
        others = [t for t in (self.command_topic, self.truth_topic) if t]
        given = others + sorted({s.topic for s in inputs})
        if len(set(given)) != len(given):
            raise BagError(f"input, command and truth topics must differ, got {given}")
        if self.window < 0:
            raise BagError(f"window expected >= 0, got {self.window}")
        if (self.command_names or self.command_units) and not self.command_topic:
            raise BagError("command names or units given without a command topic")
        if self.command_units and len(self.command_units) != len(self.command_names):
            raise BagError(
                f"command_units has {len(self.command_units)} entries for "
                f"{len(self.command_names)} command names (units need names)"
            )

    @property
    def inputs(self) -> tuple[SensorInput, ...]:
        """Every input in model order: the shorthands' first, then ``sensors``."""
        short = []
        if self.image_topic:
            short.append(SensorInput("image", "image", self.image_topic, array="images"))
        if self.joint_topic:
            short.append(SensorInput("joints", "joint_state", self.joint_topic,
                                     fields=tuple(j.label for j in self.joints),
                                     units=self.joint_units, array="joint_obs"))
        return (*short, *self.sensors)

    @property
    def joint_input(self) -> SensorInput | None:
        """The first joint_state input: what ``targets: joints`` predicts."""
        return next((s for s in self.inputs if s.kind == "joint_state"), None)

    @property
    def target_kind(self) -> str:
        """``targets`` with ``auto`` resolved: truth if a truth topic is given, else joints."""
        if self.targets != "auto":
            return self.targets
        return "truth" if self.truth_topic else "joints"


def import_metadata(spec: BagImport, paths: list[Path], counts: dict[str, dict[str, int]],
                     first: dict[str, np.ndarray]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for sensor in spec.inputs:
        entry: dict[str, Any] = {"kind": sensor.sensor_kind.layout, "array": sensor.array,
                                 "valid": sensor.valid}
        if sensor.kind == "image":
            entry["shape"] = list(first[sensor.array].shape[1:])
        else:
            entry["names"], entry["units"] = sensor.columns(first[sensor.array].shape[1])
        if sensor.kind != sensor.sensor_kind.layout:
            entry["sensor_kind"] = sensor.kind
        entry["topic"] = sensor.topic
        inputs[sensor.name] = entry
    kind = spec.target_kind
    if kind == "joints":
        joint = inputs[spec.joint_input.name]  # type: ignore[union-attr]
        targets = {"names": joint["names"], "units": joint["units"]}
    elif kind == "truth":
        targets = {"names": list(spec.truth_joints), "units": ["rad"] * len(spec.truth_joints)}
    else:
        names = [f"{f}_{j}" for j in spec.truth_joints for f in ("sin", "cos")]
        targets = {"names": names, "units": ["1"] * len(names)}
    targets.update({"array": "targets", "valid": "targets_valid", "kind": kind})
    actions = None
    if spec.command_topic:
        action_dim = first["actions"].shape[-1]
        actions = {
            "array": "actions",
            "names": list(spec.command_names) or [f"command_{i}" for i in range(action_dim)],
            "units": list(spec.command_units) or ["1"] * action_dim,
            "topic": spec.command_topic,
        }
    truth = None
    if spec.truth_topic:
        truth = {"angles": "joint_angles", "velocities": "joint_velocities",
                 "valid": "truth_valid", "names": list(spec.truth_joints)}
    parameters = asdict(spec)
    parameters["joints"] = [j.label for j in spec.joints]
    parameters["sensors"] = [{"name": s.name, "kind": s.kind, "topic": s.topic,
                              "fields": list(s.fields), "units": list(s.units),
                              "array": s.array} for s in spec.sensors]
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
