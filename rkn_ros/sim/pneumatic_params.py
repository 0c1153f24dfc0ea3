"""The pneumatic joint simulator's parameters (:mod:`rkn_ros.sim.pneumatic`): typed, frozen
sections (valve, muscle, joint, sensors, excitation), each value range-checked by name, with
``from_dict``/``to_dict`` for YAML configs (unknown keys rejected) and their units (`UNITS`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

BAR = 1e5  # Pa


def _check(name: str, value: Any, low: float | None = None, high: float | None = None,
           low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"pneumatic parameter '{name}': expected a finite number, received "
                         f"{value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ValueError(f"pneumatic parameter '{name}': expected {'>' if low_open else '>='} "
                         f"{low}, received {value}")
    if high is not None and value > high:
        raise ValueError(f"pneumatic parameter '{name}': expected <= {high}, received {value}")


class _Section:
    """Shared ``from_dict``/``to_dict`` for the parameter sections (unknown keys rejected)."""

    _section = ""

    @classmethod
    def from_dict(cls, values: dict) -> Any:
        """Build the section from a YAML mapping; unknown keys are rejected by name."""
        if not isinstance(values, dict):
            raise ValueError(f"pneumatic parameters '{cls._section}': expected a mapping, "
                             f"received {type(values).__name__}")
        known = [f.name for f in fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown pneumatic parameter(s) {unknown} in '{cls._section}'; "
                             f"known: {known}")
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain mapping of the section (the YAML layout)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class ValveParams(_Section):
    """Pressure supply, valves and tubing."""

    _section = "valve"
    supply_pressure: float = 6.0     # bar (gauge), upper limit of set-points and pressures
    delay: float = 0.03              # s, transport delay from command to valve
    tau_fill: float = 0.08           # s, time constant when the pressure rises
    tau_exhaust: float = 0.1         # s, time constant when it falls
    max_rate: float = 40.0           # bar/s, flow limit of the valve

    def __post_init__(self) -> None:
        _check("valve.supply_pressure", self.supply_pressure, 0.0, low_open=True)
        _check("valve.delay", self.delay, 0.0)
        _check("valve.tau_fill", self.tau_fill, 0.0, low_open=True)
        _check("valve.tau_exhaust", self.tau_exhaust, 0.0, low_open=True)
        _check("valve.max_rate", self.max_rate, 0.0, low_open=True)


@dataclass(frozen=True)
class MuscleParams(_Section):
    """Both muscles (identical) and their attachment to the joint."""

    _section = "muscle"
    diameter: float = 0.02           # m, D0 of the braid at rest
    braid_angle: float = 25.0        # deg, alpha0 of the braid fibres at rest
    rest_length: float = 0.4         # m, muscle length at zero contraction
    pre_contraction: float = 0.1     # 1, contraction eps0 of both muscles at q = 0
    radius: float = 0.03             # m, pulley radius (moment arm)

    def __post_init__(self) -> None:
        _check("muscle.diameter", self.diameter, 0.0, low_open=True)
        _check("muscle.braid_angle", self.braid_angle, 5.0, 45.0)
        _check("muscle.rest_length", self.rest_length, 0.0, low_open=True)
        _check("muscle.pre_contraction", self.pre_contraction, 0.0, 0.3)
        _check("muscle.radius", self.radius, 0.0, low_open=True)


@dataclass(frozen=True)
class JointParams(_Section):
    """Mechanics of the link."""

    _section = "joint"
    inertia: float = 0.05            # kg m^2 about the joint axis
    viscous: float = 2.5             # N m s / rad
    coulomb: float = 3.0             # N m, sliding friction
    static: float = 6.0              # N m, break-away (stiction) torque, >= coulomb
    stick_velocity: float = 0.01     # rad/s, below this the joint may stick
    hysteresis_torque: float = 1.0   # N m, Bouc-Wen torque at saturation (|z| = 1)
    hysteresis_width: float = 0.05   # rad of travel over which z saturates
    hysteresis_beta: float = 0.5     # 1, Bouc-Wen shape in [0, 1] (gamma = 1 - beta)
    gravity_torque: float = 0.0      # N m at q = pi/2 (0: the axis is vertical)
    angle_limit: float = 1.4         # rad, symmetric end stops
    init_angle_std: float = 0.2      # rad, initial angle ~ N(0, std^2), clipped to the limits

    def __post_init__(self) -> None:
        _check("joint.inertia", self.inertia, 0.0, low_open=True)
        for name in ("viscous", "coulomb", "hysteresis_torque", "gravity_torque",
                     "init_angle_std"):
            _check(f"joint.{name}", getattr(self, name), 0.0)
        _check("joint.hysteresis_width", self.hysteresis_width, 0.0, low_open=True)
        _check("joint.hysteresis_beta", self.hysteresis_beta, 0.0, 1.0)
        _check("joint.static", self.static, self.coulomb)
        _check("joint.stick_velocity", self.stick_velocity, 0.0, low_open=True)
        _check("joint.angle_limit", self.angle_limit, 0.0, math.pi, low_open=True)


@dataclass(frozen=True)
class SensorParams(_Section):
    """Angle encoder and pressure sensors."""

    _section = "sensor"
    encoder_counts: int = 10000      # counts per revolution (resolution 2 pi / counts rad)
    angle_noise_std: float = 0.0001  # rad, before quantization
    pressure_noise_std: float = 0.01  # bar, before quantization
    pressure_bits: int = 12          # ADC bits over [0, supply_pressure]

    def __post_init__(self) -> None:
        for name in ("encoder_counts", "pressure_bits"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise ValueError(f"pneumatic parameter 'sensor.{name}': expected an integer "
                                 f">= 2, received {value!r}")
        _check("sensor.angle_noise_std", self.angle_noise_std, 0.0)
        _check("sensor.pressure_noise_std", self.pressure_noise_std, 0.0)


@dataclass(frozen=True)
class ExcitationParams(_Section):
    """Random commands for data sets (see :func:`excitation`)."""

    _section = "excitation"
    kind: str = "mixed"              # steps | multisine | random_walk | mixed (one per sequence)
    min_pressure: float = 0.0        # bar, lowest set-point
    max_pressure: float = 5.0        # bar, highest set-point
    hold_min: float = 0.1            # s, shortest hold of a step
    hold_max: float = 0.8            # s, longest hold of a step
    frequency_min: float = 0.2       # Hz, multi-sine band
    frequency_max: float = 3.0       # Hz
    components: int = 5              # sines per multi-sine
    walk_std: float = 1.0            # bar per step, random-walk increments (like the real data)
    walk_pull: float = 0.05          # 1 per step, pull of the random walk towards the middle

    def __post_init__(self) -> None:
        if self.kind not in EXCITATIONS:
            raise ValueError(f"pneumatic parameter 'excitation.kind': expected one of "
                             f"{EXCITATIONS}, received {self.kind!r}")
        _check("excitation.min_pressure", self.min_pressure, 0.0)
        _check("excitation.max_pressure", self.max_pressure, self.min_pressure, low_open=True)
        _check("excitation.hold_min", self.hold_min, 0.0, low_open=True)
        _check("excitation.hold_max", self.hold_max, self.hold_min)
        _check("excitation.frequency_min", self.frequency_min, 0.0, low_open=True)
        _check("excitation.frequency_max", self.frequency_max, self.frequency_min)
        if not isinstance(self.components, int) or self.components < 1:
            raise ValueError(f"pneumatic parameter 'excitation.components': expected an "
                             f"integer >= 1, received {self.components!r}")
        _check("excitation.walk_std", self.walk_std, 0.0)
        _check("excitation.walk_pull", self.walk_pull, 0.0, 1.0)


EXCITATIONS = ("steps", "multisine", "random_walk", "mixed")


@dataclass(frozen=True)
class PneumaticParams:
    """All parameters; YAML layout ``{dt, sub_step, valve: {...}, muscle: {...}, ...}``."""

    dt: float = 0.01                 # s per recorded step (100 Hz like the real robot)
    sub_step: float = 0.001          # s per integration sub-step
    valve: ValveParams = ValveParams()
    muscle: MuscleParams = MuscleParams()
    joint: JointParams = JointParams()
    sensor: SensorParams = SensorParams()
    excitation: ExcitationParams = ExcitationParams()

    def __post_init__(self) -> None:
        _check("dt", self.dt, 0.0, low_open=True)
        _check("sub_step", self.sub_step, 0.0, self.dt, low_open=True)
        for name, value in (("dt", self.dt), ("valve.delay", self.valve.delay)):
            ratio = value / self.sub_step
            if abs(ratio - round(ratio)) > 1e-6 * max(ratio, 1.0):
                raise ValueError(f"pneumatic parameter '{name}' ({value} s) must be a whole "
                                 f"multiple of 'sub_step' ({self.sub_step} s)")
        if self.excitation.max_pressure > self.valve.supply_pressure:
            raise ValueError(f"pneumatic parameter 'excitation.max_pressure' "
                             f"({self.excitation.max_pressure} bar) exceeds "
                             f"'valve.supply_pressure' ({self.valve.supply_pressure} bar)")

    @property
    def substeps(self) -> int:
        """Sub-steps per ``dt``."""
        return round(self.dt / self.sub_step)

    @property
    def delay_substeps(self) -> int:
        """Transport delay in sub-steps."""
        return round(self.valve.delay / self.sub_step)

    @classmethod
    def from_dict(cls, values: dict) -> PneumaticParams:
        """Build from a YAML mapping; unknown keys (top level or in a section) are rejected."""
        sections = {"valve": ValveParams, "muscle": MuscleParams, "joint": JointParams,
                    "sensor": SensorParams, "excitation": ExcitationParams}
        if not isinstance(values, dict):
            raise ValueError(f"pneumatic parameters: expected a mapping, received "
                             f"{type(values).__name__}")
        unknown = sorted(set(values) - {"dt", "sub_step", *sections})
        if unknown:
            raise ValueError(f"unknown pneumatic parameter(s) {unknown}; known: "
                             f"['dt', 'sub_step', {', '.join(repr(s) for s in sections)}]")
        kwargs: dict[str, Any] = {k: values[k] for k in ("dt", "sub_step") if k in values}
        for name, section in sections.items():
            if name in values:
                kwargs[name] = section.from_dict(values[name])
        return cls(**kwargs)

    def to_dict(self) -> dict:
        """Nested plain mapping (the YAML layout)."""
        return {"dt": self.dt, "sub_step": self.sub_step, "valve": self.valve.to_dict(),
                "muscle": self.muscle.to_dict(), "joint": self.joint.to_dict(),
                "sensor": self.sensor.to_dict(), "excitation": self.excitation.to_dict()}


UNITS = {
    "dt": "s", "sub_step": "s",
    "valve": {"supply_pressure": "bar", "delay": "s", "tau_fill": "s", "tau_exhaust": "s",
              "max_rate": "bar / s"},
    "muscle": {"diameter": "m", "braid_angle": "deg", "rest_length": "m",
               "pre_contraction": "1", "radius": "m"},
    "joint": {"inertia": "kg m^2", "viscous": "N m s / rad", "coulomb": "N m", "static": "N m",
              "stick_velocity": "rad / s", "hysteresis_torque": "N m",
              "hysteresis_width": "rad", "hysteresis_beta": "1",
              "gravity_torque": "N m", "angle_limit": "rad", "init_angle_std": "rad"},
    "sensor": {"encoder_counts": "1 / rev", "angle_noise_std": "rad",
               "pressure_noise_std": "bar", "pressure_bits": "bit"},
    "excitation": {"kind": "-", "min_pressure": "bar", "max_pressure": "bar", "hold_min": "s",
                   "hold_max": "s", "frequency_min": "Hz", "frequency_max": "Hz",
                   "components": "1", "walk_std": "bar", "walk_pull": "1"},
}
