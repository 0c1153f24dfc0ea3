"""One revolute joint driven by two antagonistic pneumatic artificial muscles (PAMs).

Signal chain, integrated with semi-implicit Euler at ``sub_step`` (1 ms) and sampled every ``dt``
(10 ms, the real recordings' 100 Hz):

1. Commands: two pressure set-points (bar), held constant over each ``dt`` and clipped to
   ``[0, supply_pressure]``.
2. Transport delay: the valves see the set-points ``delay`` seconds late (tubing, valve dead time).
3. Valve/pressure dynamics: first order towards the delayed set-point, faster filling than
   exhausting (``tau_fill``, ``tau_exhaust``), rate-limited by the valve flow (``max_rate``).
4. Muscle force (Chou & Hannaford 1996, static model): ``F = p * pi D0^2/4 * (a (1 - eps)^2 - b)``
   with ``a = 3 / tan^2(alpha0)``, ``b = 1 / sin^2(alpha0)``, clipped at 0. The contraction
   ``eps`` of each muscle follows the joint: ``eps = eps0 +- radius * q / rest_length`` (the
   flexor shortens when ``q`` grows). The force falls as the muscle contracts, so the pair acts
   as a pressure-dependent spring: the equilibrium angle moves with the pressure difference.
5. Joint: ``J qdd = radius (F_flexor - F_extensor) - gravity_torque sin(q) - b qd - tau_coulomb
   sign(qd) - tau_hyst z``, with stiction (Karnopp: the joint sticks while ``|qd|`` is tiny and
   the driving torque is below ``tau_static``), hysteresis ``z`` in [-1, 1] from a normalized
   Bouc-Wen model ``zd = (qd - beta |qd| z - (1 - beta) qd |z|) / width``, and end stops at
   ``+-angle_limit``.
6. Sensors: the angle from an incremental encoder (Gaussian noise, then quantized to
   ``2 pi / encoder_counts``) and both pressures (noise, then quantized by a 12-bit ADC over the
   supply range).

Everything is vectorized over sequences: :func:`simulate` runs a batch for data sets,
:class:`PneumaticJoint` steps one joint at a time for the ROS node, both through :func:`advance`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

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


@dataclass
class PneumaticState:
    """Batch state, each array ``[batch]`` (``queue`` ``[batch, delay_substeps, 2]``)."""

    angle: np.ndarray        # rad
    velocity: np.ndarray     # rad/s
    pressure: np.ndarray     # [batch, 2] bar (flexor, extensor)
    hysteresis: np.ndarray   # Bouc-Wen z in [-1, 1]
    queue: np.ndarray        # set-points on their way to the valves, oldest first, bar
    head: int = 0            # next slot of the ring buffer `queue` to read and overwrite


def _force_constants(muscle: MuscleParams) -> tuple[float, float, float, float, float]:
    """``(a, b, N per bar, 1 - eps0, contraction per rad)`` of the Chou-Hannaford model."""
    alpha = math.radians(muscle.braid_angle)
    a, b = 3.0 / math.tan(alpha) ** 2, 1.0 / math.sin(alpha) ** 2
    return (a, b, BAR * math.pi * muscle.diameter ** 2 / 4.0, 1.0 - muscle.pre_contraction,
            muscle.radius / muscle.rest_length)


def _pair_forces(p_flexor: np.ndarray, p_extensor: np.ndarray, angle: np.ndarray,
                 constants: tuple[float, float, float, float, float]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Flexor and extensor forces (N): the one implementation of the force model.

    Takes the constants precomputed and returns the two forces apart (no stack) because
    :func:`advance` calls it every sub-step, where numpy call overhead is the cost.
    """
    a, b, scale, slack, arm = constants
    shift = arm * angle  # the flexor shortens (eps grows) when q grows, the extensor lengthens
    flexor = np.maximum(p_flexor * scale * (a * (slack - shift) ** 2 - b), 0.0)
    extensor = np.maximum(p_extensor * scale * (a * (slack + shift) ** 2 - b), 0.0)
    return flexor, extensor


def muscle_forces(pressure: np.ndarray, angle: np.ndarray, muscle: MuscleParams) -> np.ndarray:
    """Chou-Hannaford forces ``[batch, 2]`` (N) of (flexor, extensor) at ``pressure`` (bar)."""
    return np.stack(_pair_forces(pressure[..., 0], pressure[..., 1], angle,
                                 _force_constants(muscle)), axis=-1)


def initial_state(params: PneumaticParams, num: int, rng: np.random.Generator,
                  angle: np.ndarray | None = None) -> PneumaticState:
    """At rest with both muscles at ambient pressure; the angle random unless given."""
    limit = params.joint.angle_limit
    if angle is None:
        angle = np.clip(rng.normal(0.0, params.joint.init_angle_std, size=num), -limit, limit)
    angle = np.asarray(angle, dtype=np.float64).reshape(num)
    return PneumaticState(angle=angle.copy(), velocity=np.zeros(num), pressure=np.zeros((num, 2)),
                          hysteresis=np.zeros(num),
                          queue=np.zeros((num, max(params.delay_substeps, 1), 2)))


def advance(state: PneumaticState, command: np.ndarray, params: PneumaticParams) -> None:
    """Apply set-points ``command [batch, 2]`` (bar) for one ``dt``; updates ``state`` in place.

    Written with plain element-wise operations (no clip/where/stack): at batch size 1 the
    ROS node's cost is numpy call overhead.
    """
    valve, joint, muscle = params.valve, params.joint, params.muscle
    h = params.sub_step
    supply = valve.supply_pressure
    command = np.minimum(np.maximum(command, 0.0), supply)
    forces = _force_constants(muscle)
    inv_fill, inv_exhaust = 1.0 / valve.tau_fill, 1.0 / valve.tau_exhaust
    z_gain = h / joint.hysteresis_width
    beta = joint.hysteresis_beta
    limit = joint.angle_limit
    delayed_queue = params.delay_substeps > 0
    angle, v, z, pressure = state.angle, state.velocity, state.hysteresis, state.pressure
    for _ in range(params.substeps):
        if delayed_queue:
            target = state.queue[:, state.head].copy()
            state.queue[:, state.head] = command
            state.head = (state.head + 1) % state.queue.shape[1]
        else:
            target = command
        error = target - pressure
        rising = error > 0
        rate = error * (rising * inv_fill + ~rising * inv_exhaust)
        rate = np.minimum(np.maximum(rate, -valve.max_rate), valve.max_rate)
        pressure = np.minimum(np.maximum(pressure + h * rate, 0.0), supply)

        flexor, extensor = _pair_forces(pressure[:, 0], pressure[:, 1], angle, forces)
        drive = muscle.radius * (flexor - extensor) - joint.hysteresis_torque * z
        if joint.gravity_torque:
            drive = drive - joint.gravity_torque * np.sin(angle)
        moving = np.abs(v) > joint.stick_velocity
        # Karnopp stiction: a (nearly) resting joint stays put until the drive breaks away
        free = moving | (np.abs(drive) > joint.static)
        direction = np.sign(v) * moving + np.sign(drive) * ~moving
        v_new = v + h * (drive - joint.viscous * v - joint.coulomb * direction) / joint.inertia
        # friction cannot reverse the motion within a sub-step: it stops it
        v_new = v_new * free * ~(moving & (v_new * v < 0))
        angle = angle + h * v_new
        at_stop = np.abs(angle) >= limit
        angle = np.minimum(np.maximum(angle, -limit), limit)
        v_new = v_new * ~(at_stop & (v_new * angle > 0))
        # normalized Bouc-Wen (n = 1): z in [-1, 1] follows the travel direction
        z = z + z_gain * (v_new - beta * np.abs(v_new) * z - (1.0 - beta) * v_new * np.abs(z))
        z = np.minimum(np.maximum(z, -1.0), 1.0)
        v = v_new
    state.angle, state.velocity, state.hysteresis, state.pressure = angle, v, z, pressure


def measure(state: PneumaticState, params: PneumaticParams,
            rng: np.random.Generator) -> np.ndarray:
    """Sensor readings ``[batch, 3]``: encoder angle (rad), flexor and extensor pressure (bar)."""
    sensor = params.sensor
    step_angle = 2.0 * math.pi / sensor.encoder_counts
    angle = state.angle + rng.normal(0.0, sensor.angle_noise_std, size=state.angle.shape) \
        if sensor.angle_noise_std > 0 else state.angle
    angle = np.round(angle / step_angle) * step_angle
    supply = params.valve.supply_pressure
    step_p = supply / (2 ** sensor.pressure_bits - 1)
    pressure = state.pressure + rng.normal(0.0, sensor.pressure_noise_std,
                                           size=state.pressure.shape) \
        if sensor.pressure_noise_std > 0 else state.pressure
    pressure = np.clip(np.round(pressure / step_p) * step_p, 0.0, supply)
    return np.concatenate([angle[:, None], pressure], axis=1)


def simulate(params: PneumaticParams, commands: np.ndarray, rng: np.random.Generator,
             progress: Any = None) -> dict[str, np.ndarray]:
    """Run ``commands [sequence, time, 2]`` (bar); ``commands[:, t]`` acts from ``t`` to ``t+1``.

    Returns float64 arrays ``[sequence, time, ...]``: ``measurements`` (3: angle, p_flexor,
    p_extensor, as sensed), ``angle`` (1), ``velocity`` (1), ``pressure`` (2, true),
    ``hysteresis`` (1). Index ``t`` is the state before ``commands[:, t]`` is applied.
    ``progress(1)`` is called after every step.
    """
    commands = np.asarray(commands, dtype=np.float64)
    if commands.ndim != 3 or commands.shape[2] != 2:
        raise ValueError(f"pneumatic simulate: 'commands' must be [sequence, time, 2], "
                         f"received {list(commands.shape)}")
    if not np.all(np.isfinite(commands)):
        raise ValueError("pneumatic simulate: 'commands' contains NaN or inf")
    num, steps, _ = commands.shape
    state = initial_state(params, num, rng)
    out = {"measurements": np.empty((num, steps, 3)), "angle": np.empty((num, steps, 1)),
           "velocity": np.empty((num, steps, 1)), "pressure": np.empty((num, steps, 2)),
           "hysteresis": np.empty((num, steps, 1))}
    for t in range(steps):
        out["measurements"][:, t] = measure(state, params, rng)
        out["angle"][:, t, 0] = state.angle
        out["velocity"][:, t, 0] = state.velocity
        out["pressure"][:, t] = state.pressure
        out["hysteresis"][:, t, 0] = state.hysteresis
        if t + 1 < steps:
            advance(state, commands[:, t], params)
        if progress is not None:
            progress(1)
    return out


def excitation(params: PneumaticParams, num_sequences: int, steps: int,
               rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """Random set-points ``[sequence, time, 2]`` (bar) within the excitation limits.

    ``steps``: co-contraction level and pressure difference jump every ``U(hold_min,
    hold_max)`` s. ``multisine``: a sum of ``components`` sines with random frequencies in the
    band and random phases around a random co-contraction level. ``random_walk``: each set-point
    walks independently with ``N(0, walk_std^2)`` increments and a pull to the middle (what the
    real recordings look like). ``mixed``: each sequence draws one of the three.
    """
    ex = params.excitation
    kind = ex.kind if kind is None else kind
    if kind not in EXCITATIONS:
        raise ValueError(f"excitation: 'kind' expected one of {EXCITATIONS}, received {kind!r}")
    lo, hi = ex.min_pressure, ex.max_pressure
    mid, span = 0.5 * (lo + hi), hi - lo
    if kind == "mixed":
        choice = rng.integers(0, 3, size=num_sequences)
        parts = [excitation(params, num_sequences, steps, rng, k)
                 for k in ("steps", "multisine", "random_walk")]
        return np.stack(parts)[choice, np.arange(num_sequences)]
    t = np.arange(steps) * params.dt
    if kind == "steps":
        out = np.empty((num_sequences, steps, 2))
        for i in range(num_sequences):
            start = 0
            while start < steps:
                hold = max(1, round(rng.uniform(ex.hold_min, ex.hold_max) / params.dt))
                level = rng.uniform(lo + 0.15 * span, hi - 0.15 * span)
                half = rng.uniform(-1.0, 1.0) * min(level - lo, hi - level)
                out[i, start:start + hold] = (level + half, level - half)
                start += hold
        return np.clip(out, lo, hi)
    if kind == "multisine":
        k = ex.components
        freqs = np.exp(rng.uniform(math.log(ex.frequency_min), math.log(ex.frequency_max),
                                   size=(num_sequences, 1, k)))
        phases = rng.uniform(0, 2 * math.pi, size=(num_sequences, 1, k))
        wave = np.sin(2 * math.pi * freqs * t[None, :, None] + phases).sum(axis=-1)
        wave /= np.abs(wave).max(axis=1, keepdims=True)
        level = rng.uniform(lo + 0.3 * span, hi - 0.3 * span, size=(num_sequences, 1))
        amplitude = rng.uniform(0.3, 1.0, size=(num_sequences, 1)) * np.minimum(level - lo,
                                                                                 hi - level)
        diff = amplitude * wave
        return np.clip(np.stack([level + diff, level - diff], axis=-1), lo, hi)
    walk = np.empty((num_sequences, steps, 2))
    walk[:, 0] = rng.uniform(lo, hi, size=(num_sequences, 2))
    for i in range(1, steps):
        pull = ex.walk_pull * (mid - walk[:, i - 1])
        walk[:, i] = np.clip(walk[:, i - 1] + pull
                             + rng.normal(0.0, ex.walk_std, size=(num_sequences, 2)), lo, hi)
    return walk


@dataclass(frozen=True)
class PneumaticTruth:
    """True state after a step: angle (rad), velocity (rad/s), pressures [2] (bar), z (1)."""

    angle: float
    velocity: float
    pressures: np.ndarray
    hysteresis: float


class PneumaticJoint:
    """One joint stepped one ``dt`` at a time (for the ROS node); same physics as :func:`simulate`.

    ::

        joint = PneumaticJoint(PneumaticParams(), seed=0)
        measurement, truth = joint.reset()                 # [3]: angle rad, p_flex bar, p_ext bar
        measurement, truth = joint.step(np.array([3.0, 1.0]))   # set-points (bar) for one dt
    """

    def __init__(self, params: PneumaticParams | None = None, seed: int = 0) -> None:
        self.params = params if params is not None else PneumaticParams()
        self._rng = np.random.default_rng(seed)
        self._state = initial_state(self.params, 1, self._rng)

    def reset(self, angle: float | None = None) -> tuple[np.ndarray, PneumaticTruth]:
        """Back to rest at ambient pressure (random or given angle); returns the first reading."""
        self._state = initial_state(self.params, 1, self._rng,
                                    None if angle is None else np.array([angle]))
        return self._observe()

    def step(self, command: np.ndarray) -> tuple[np.ndarray, PneumaticTruth]:
        """Apply the two set-points (bar) for one ``dt``; returns (measurement [3], truth)."""
        command = np.asarray(command, dtype=np.float64)
        if command.shape != (2,) or not np.all(np.isfinite(command)):
            raise ValueError(f"PneumaticJoint.step: 'command' must be 2 finite set-points (bar), "
                             f"received {command!r}")
        advance(self._state, command[None], self.params)
        return self._observe()

    def _observe(self) -> tuple[np.ndarray, PneumaticTruth]:
        s = self._state
        truth = PneumaticTruth(float(s.angle[0]), float(s.velocity[0]), s.pressure[0].copy(),
                               float(s.hysteresis[0]))
        return measure(s, self.params, self._rng)[0], truth
