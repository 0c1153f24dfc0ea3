"""Simulated data sets: the pendulums and the pneumatic joint, written as a SequenceDataset.

Every random draw comes from one ``numpy.random.SeedSequence(seed)`` split into independent
streams (physics, noise factors, noise pixels, frame drops, ...), so the same seed and
parameters give the same arrays and, through ``SequenceDataset.save``, the same bytes.

Pendulum arrays (``N`` sequences, ``T`` steps, ``n`` links, ``H x W`` images):

- ``images`` uint8 ``[N, T, H, W]``: what the model sees (noisy and/or with dropped frames zeroed)
- ``images_valid`` bool ``[N, T]``: False where a frame was dropped (imputation)
- ``images_clean`` uint8 ``[N, T, H, W]``: the clean renderings (only with noise or drops)
- ``noise_factors`` float32 ``[N, T]``: 1 = clean frame, 0 = pure noise (only with noise)
- ``targets`` float32 ``[N, T, 2n]``: ``(sin theta_i, cos theta_i)`` per link
- ``joint_angles`` float32 ``[N, T, n]`` (rad, wrapped to [-pi, pi), 0 = down, absolute),
  ``joint_velocities`` float32 ``[N, T, n]`` (rad/s): the truth
- with ``sensors`` other than ``[image]``: a second camera, an IMU and a joint encoder, each its
  own array and mask (see :mod:`rkn_ros.data.generate_sensors`)

Pneumatic arrays (one joint, two muscles):

- ``joint_obs`` float32 ``[N, T, 3]``: measured angle (rad), flexor and extensor pressure (bar)
- ``joint_obs_valid`` bool ``[N, T]``: False where a reading was dropped (then zeros)
- ``actions`` float32 ``[N, T, 2]``: pressure set-points (bar) applied from ``t`` to ``t + 1``
- ``targets`` float32 ``[N, T, 2]``: true angle (rad) and angular velocity (rad/s)
- ``joint_angles``, ``joint_velocities`` ``[N, T, 1]``, ``pressures`` ``[N, T, 2]`` (bar),
  ``hysteresis`` ``[N, T, 1]`` (Bouc-Wen state): the truth
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from rkn_ros import __version__
from rkn_ros.core.typed_config import ConfigError, from_mapping, load_config, load_yaml
from rkn_ros.data import generate_sensors
from rkn_ros.data.dataset import FORMAT_VERSION, SequenceDataset
from rkn_ros.sim import image_noise, pendulum, pneumatic, pneumatic_params
from rkn_ros.sim.pendulum import PendulumParams
from rkn_ros.sim.pneumatic import PneumaticParams
from rkn_ros.sim.render import RenderParams, render

PENDULUM_KINDS = ("pendulum", "quad_link")
DEFAULT_MEMORY_BUDGET = 8 << 30  # bytes a generated data set may take at its peak
PNEUMATIC_BYTES_PER_STEP = 512  # about 20 float64 states, commands and outputs, and copies


@dataclasses.dataclass(frozen=True)
class PendulumConfig:
    """Everything that defines a pendulum data set besides its size and seed."""

    physics: PendulumParams = dataclasses.field(default_factory=PendulumParams)
    render: RenderParams = dataclasses.field(default_factory=RenderParams)
    noise: bool = False           # the paper's correlated image noise
    drop_prob: float = 0.0        # probability of dropping a frame (first 5 always kept)
    sensors: generate_sensors.SensorsConfig = dataclasses.field(
        default_factory=generate_sensors.SensorsConfig)   # default: the front camera only

    def __post_init__(self) -> None:
        if not (isinstance(self.drop_prob, (int, float)) and 0.0 <= self.drop_prob < 1.0):
            raise ValueError(f"pendulum data set option 'drop_prob': expected a number in "
                             f"[0, 1), received {self.drop_prob!r}")
        self.render.levels(self.physics.links)   # grey levels must match the number of links
        if "image" not in self.sensors.sensors and (self.noise or self.drop_prob > 0):
            raise ValueError("pendulum data set options 'noise' and 'drop_prob' apply to the "
                             "front camera, and 'image' is not among the sensors "
                             f"{list(self.sensors.sensors)}")


def default_pendulum_config(kind: str) -> PendulumConfig:
    """The paper's setting for ``kind`` ("pendulum": 1 link 24x24; "quad_link": 4 links 48x48)."""
    if kind == "pendulum":
        return PendulumConfig()
    if kind == "quad_link":
        return PendulumConfig(physics=PendulumParams.quad_link(), render=RenderParams.quad_link())
    raise ValueError(f"pendulum kind: expected one of {PENDULUM_KINDS}, received {kind!r}")


@dataclasses.dataclass(frozen=True)
class _PendulumFile:
    """The top level of a ``config/sim/pendulum.yaml``-style file (sections as read)."""

    physics: dict | None = None
    render: dict | None = None
    noise: bool | None = None
    drop_prob: float | None = None
    # the sensor sections (generate_sensors.CONFIG_KEYS), checked by generate_sensors
    sensors: tuple[str, ...] | None = None
    image_side: dict | None = None
    imu: dict | None = None
    encoder: dict | None = None


def load_pendulum_config(path: str | Path, kind: str) -> PendulumConfig:
    """Read a ``config/sim/pendulum.yaml``-style file: sections physics, render, noise, drop_prob.

    Missing keys keep the defaults of ``kind``; unknown keys and wrong types are rejected by
    name (ConfigError, a ValueError).
    """
    path = Path(path)
    values = load_yaml(path)
    values = {} if values is None else values
    try:
        sections = from_mapping(_PendulumFile, values)
        base = default_pendulum_config(kind)
        # an empty YAML section ("physics:") reads as None: it keeps the defaults
        physics = from_mapping(PendulumParams, {**base.physics.to_dict(),
                                                **(sections.physics or {})}, "physics")
        render_params = from_mapping(RenderParams, {**base.render.to_dict(),
                                                    **(sections.render or {})}, "render")
        sensors = generate_sensors.load_sensors_config(
            {k: values[k] for k in generate_sensors.CONFIG_KEYS if k in values}, base.sensors)
        return PendulumConfig(
            physics=physics, render=render_params,
            noise=base.noise if sections.noise is None else sections.noise,
            drop_prob=base.drop_prob if sections.drop_prob is None else sections.drop_prob,
            sensors=sensors)
    except ValueError as err:
        raise ConfigError(f"{path}: {err}") from err


def _progress_bar(enabled: bool, total: int, desc: str,
                  unit: str = "step") -> AbstractContextManager:
    if not enabled:
        return nullcontext(None)
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, leave=False)


def _callback(bar: Any) -> Callable[[int], None] | None:
    return None if bar is None else bar.update


def generate_pendulum(kind: str, config: PendulumConfig, num_sequences: int, steps: int,
                      seed: int, progress: bool = False,
                      memory_budget: int = DEFAULT_MEMORY_BUDGET) -> SequenceDataset:
    """Simulate, render and (optionally) corrupt pendulum sequences; see the module docstring.

    ``memory_budget``: bytes the arrays may take at their peak (checked before allocating).
    """
    if kind not in PENDULUM_KINDS:
        raise ValueError(f"generate_pendulum: 'kind' expected one of {PENDULUM_KINDS}, "
                         f"received {kind!r}")
    _check_size(num_sequences, steps, seed)
    physics, render_params = config.physics, config.render
    pixels = render_params.image_size**2
    # noise blends in float64 (about 32 bytes a pixel at its peak); clean frames are kept
    # beside the corrupted ones
    per_pixel = 34 if config.noise else 3
    check_memory(num_sequences, steps, per_pixel * pixels + 64 * physics.links, memory_budget,
                 f"{render_params.image_size}x{render_params.image_size} images")
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)]
    rng_physics, rng_factors, rng_pixels, rng_drop = streams
    n = physics.links
    with _progress_bar(progress, steps - 1, f"{kind}: physics") as bar:
        angles, velocities = pendulum.simulate(physics, num_sequences, steps, rng_physics,
                                               _callback(bar))
    front = "image" in config.sensors.sensors   # without the front camera: no frames to draw
    with _progress_bar(progress, num_sequences * steps * front, f"{kind}: render", "frame") as bar:
        clean = render(angles.reshape(-1, n), physics.lengths, render_params,
                       progress=_callback(bar)) if front \
            else np.zeros((num_sequences * steps, 0, 0), dtype=np.uint8)
    clean = clean.reshape(num_sequences, steps, *clean.shape[1:])
    images = clean
    arrays: dict[str, np.ndarray] = {}
    if config.noise:
        factors = image_noise.noise_factors(rng_factors, num_sequences, steps)
        images = image_noise.apply_noise(clean, factors, rng_pixels)
        arrays["noise_factors"] = factors.astype(np.float32)
    valid = np.ones((num_sequences, steps), dtype=bool)
    if config.drop_prob > 0:
        valid = image_noise.keep_mask(rng_drop, num_sequences, steps,
                                      keep_prob=1.0 - config.drop_prob)
        images = np.where(valid[:, :, None, None], images, np.uint8(0))
    if config.noise or config.drop_prob > 0:
        arrays["images_clean"] = clean
    wrapped = pendulum.wrap_angle(angles)
    targets = np.stack([np.sin(wrapped), np.cos(wrapped)], axis=-1).reshape(
        num_sequences, steps, 2 * n)
    arrays.update(images=np.ascontiguousarray(images, dtype=np.uint8), images_valid=valid,
                  targets=targets.astype(np.float32),
                  joint_angles=wrapped.astype(np.float32),
                  joint_velocities=velocities.astype(np.float32))
    joints = [f"joint_{i + 1}" for i in range(n)]
    target_names = [f"{f}_theta_{i + 1}" for i in range(n) for f in ("sin", "cos")]
    metadata = {
        "format_version": FORMAT_VERSION,
        "generator": kind,
        "version": __version__,
        "seed": int(seed),
        "dt": float(physics.dt),
        "parameters": {
            "physics": physics.to_dict(),
            "render": render_params.to_dict(),
            "noise": bool(config.noise),
            "drop_prob": float(config.drop_prob),
            "clean_first": image_noise.CLEAN_FIRST,
            "num_sequences": int(num_sequences),
            "steps": int(steps),
            "units": {**pendulum.UNITS, "image_size": "px", "supersample": "1", "line_width": "px",
                      "margin": "px", "grey_levels": "0-255", "drop_prob": "1",
                      "clean_first": "steps"},
            "angle_convention": "absolute link angle from the downward vertical, wrapped to "
                                "[-pi, pi)",
            "dynamics": "chain of uniform rods, Lagrangian; see rkn_ros/sim/pendulum.py",
        },
        "inputs": {"image": {"kind": "image", "array": "images", "valid": "images_valid",
                             "shape": [render_params.image_size, render_params.image_size]}},
        "targets": {"array": "targets", "names": target_names, "units": ["1"] * (2 * n)},
        "actions": None,
        "truth": {"angles": "joint_angles", "velocities": "joint_velocities", "names": joints,
                  "units": ["rad"] * n},
    }
    if "images_clean" in arrays:
        metadata["truth"]["images"] = "images_clean"
    if "noise_factors" in arrays:
        metadata["truth"]["noise_factors"] = "noise_factors"
    if not config.sensors.is_default:
        _add_sensors(arrays, metadata, config, angles, velocities, seed)
    return SequenceDataset(arrays=arrays, metadata=metadata)


def _add_sensors(arrays: dict[str, np.ndarray], metadata: dict, config: PendulumConfig,
                 angles: np.ndarray, velocities: np.ndarray, seed: int) -> None:
    """The chosen sensors' arrays and inputs, in the order of ``config.sensors.sensors``."""
    extra = generate_sensors.sensor_data(config.sensors, config.physics, config.render, angles,
                                         velocities, seed)
    inputs = {**metadata["inputs"], **extra.inputs}
    metadata["inputs"] = {name: inputs[name] for name in config.sensors.sensors}
    if "image" not in config.sensors.sensors:
        for name in ("images", "images_valid", "images_clean", "noise_factors"):
            arrays.pop(name, None)
        for key in ("images", "noise_factors"):
            metadata["truth"].pop(key, None)
    arrays.update(extra.arrays)
    metadata["truth"].update(extra.truth)
    metadata["parameters"]["sensors"] = config.sensors.to_dict()
    metadata["parameters"]["units"].update(generate_sensors.UNITS)


def check_memory(num_sequences: int, steps: int, bytes_per_step: int, budget: int,
                 what: str) -> None:
    """Refuse (ConfigError naming num_sequences) a data set whose arrays would not fit
    ``budget`` bytes, before anything is allocated."""
    need = int(num_sequences) * int(steps) * int(bytes_per_step)
    if need > budget:
        raise ConfigError(
            f"num_sequences: {num_sequences} sequences x {steps} steps of {what} need about "
            f"{need / 2**20:.0f} MiB, more than the memory budget of {budget / 2**20:.0f} MiB "
            "(memory_budget_mb / --memory-budget-mb)")


def _check_size(num_sequences: int, steps: int, seed: int) -> None:
    for name, value, low in (("num_sequences", num_sequences, 1), ("steps", steps, 1),
                             ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"'{name}' must be an integer >= {low}, received {value!r}")
    if steps <= image_noise.CLEAN_FIRST:
        raise ValueError(f"'steps' must be > {image_noise.CLEAN_FIRST} (the first "
                         f"{image_noise.CLEAN_FIRST} frames are always clean), received {steps}")


PNEUMATIC_OBSERVATIONS = ["pam_joint", "pam_flexor", "pam_extensor"]


def load_pneumatic_params(path: str | Path) -> PneumaticParams:
    """Read a ``config/sim/pneumatic.yaml``-style file; unknown keys and wrong types are
    rejected by name (ConfigError, a ValueError)."""
    return load_config(PneumaticParams, path)


def generate_pneumatic(params: PneumaticParams, num_sequences: int, steps: int, seed: int,
                       drop_prob: float = 0.0, progress: bool = False,
                       memory_budget: int = DEFAULT_MEMORY_BUDGET) -> SequenceDataset:
    """Excite and simulate the pneumatic joint; see the module docstring for the arrays.

    ``memory_budget``: bytes the arrays may take at their peak (checked before allocating).
    """
    _check_size(num_sequences, steps, seed)
    check_memory(num_sequences, steps, PNEUMATIC_BYTES_PER_STEP, memory_budget,
                 "pneumatic joint states")
    if not (isinstance(drop_prob, (int, float)) and 0.0 <= drop_prob < 1.0):
        raise ValueError(f"pneumatic data set option 'drop_prob': expected a number in [0, 1), "
                         f"received {drop_prob!r}")
    rng_commands, rng_sim, rng_drop = (np.random.default_rng(s)
                                       for s in np.random.SeedSequence(seed).spawn(3))
    commands = pneumatic.excitation(params, num_sequences, steps, rng_commands)
    with _progress_bar(progress, steps, "pneumatic") as bar:
        out = pneumatic.simulate(params, commands, rng_sim, _callback(bar))
    valid = np.ones((num_sequences, steps), dtype=bool)
    observations = out["measurements"]
    if drop_prob > 0:
        valid = image_noise.keep_mask(rng_drop, num_sequences, steps, keep_prob=1.0 - drop_prob)
        observations = np.where(valid[:, :, None], observations, 0.0)
    arrays = {
        "joint_obs": observations.astype(np.float32), "joint_obs_valid": valid,
        "actions": commands.astype(np.float32),
        "targets": np.concatenate([out["angle"], out["velocity"]], axis=-1).astype(np.float32),
        "joint_angles": out["angle"].astype(np.float32),
        "joint_velocities": out["velocity"].astype(np.float32),
        "pressures": out["pressure"].astype(np.float32),
        "hysteresis": out["hysteresis"].astype(np.float32),
    }
    metadata = {
        "format_version": FORMAT_VERSION,
        "generator": "pneumatic",
        "version": __version__,
        "seed": int(seed),
        "dt": float(params.dt),
        "parameters": {
            **params.to_dict(),
            "drop_prob": float(drop_prob),
            "num_sequences": int(num_sequences),
            "steps": int(steps),
            "units": {**pneumatic_params.UNITS, "drop_prob": "1"},
            "model": "two antagonistic Chou-Hannaford muscles, delayed first-order valves, "
                     "Karnopp stiction, Bouc-Wen hysteresis; see rkn_ros/sim/pneumatic.py",
        },
        "inputs": {"joints": {"kind": "vector", "array": "joint_obs", "valid": "joint_obs_valid",
                              "names": PNEUMATIC_OBSERVATIONS, "units": ["rad", "bar", "bar"]}},
        "targets": {"array": "targets", "names": ["angle", "angular_velocity"],
                    "units": ["rad", "rad/s"]},
        "actions": {"array": "actions", "names": ["p_set_flexor", "p_set_extensor"],
                    "units": ["bar", "bar"]},
        "truth": {"angles": "joint_angles", "velocities": "joint_velocities",
                  "pressures": "pressures", "hysteresis": "hysteresis", "names": ["pam_joint"],
                  "units": ["rad"]},
    }
    return SequenceDataset(arrays=arrays, metadata=metadata)
