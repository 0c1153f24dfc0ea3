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
from dataclasses import dataclass
from typing import Any

import numpy as np

# The parameters (typed sections, UNITS) live in pneumatic_params; the simulation here.
from rkn_ros.sim.pneumatic_params import BAR, EXCITATIONS, MuscleParams, PneumaticParams


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
