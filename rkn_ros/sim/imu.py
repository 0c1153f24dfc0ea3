"""A planar IMU on the pendulum's last link: gyro and accelerometer with noise and drifting bias.

Where: on the **last** (outermost) link, a fraction ``mount`` of its length from its joint
(1.0: at the tip; on the single pendulum the only rod). The outer link moves with the whole
chain, so its readings depend on every joint.

Frames: the world has x to the right, y up and z towards the viewer; a link angle ``theta``
(0 = hanging down) turns about +z. The sensor frame is fixed to the link: x along the link from
its joint to its tip, ``(sin theta, -cos theta)`` in the world; y ``(cos theta, sin theta)``,
the direction the point moves when ``theta`` grows; z = world z. Readings, named after the
``sensor_msgs/Imu`` fields they fill (:data:`IMU_COLUMNS`):

- ``angular_velocity.z`` (rad/s): the link's absolute angular rate ``omega_last``;
- ``linear_acceleration.x``, ``.y`` (m/s^2): the specific force ``a - g_vec`` of the mounting
  point in the sensor frame (an accelerometer at rest reads +g upwards: hanging still, x reads
  ``-g``). ``a = sum_j r_j (alpha_j n_j - omega_j^2 u_j)`` over the links up to the mount, with
  ``u_j`` and ``n_j`` the x and y axes of link ``j`` and ``r_j`` its length (``mount * l`` for
  the last); the angular accelerations ``alpha`` come from the chain's equations of motion at
  the recorded state.

Errors: each column reads ``ideal + bias + N(0, noise_std^2)``; the bias starts at
``N(0, bias_std^2)`` per sequence and follows a random walk ``b_t+1 = b_t + N(0, walk^2 dt)``
(the usual gyro/accelerometer model: white noise plus bias instability).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import numpy as np

from rkn_ros.sim.pendulum import PendulumParams, accelerations, chain_constants

IMU_COLUMNS = ("angular_velocity.z", "linear_acceleration.x", "linear_acceleration.y")
IMU_UNITS = ("rad/s", "m/s^2", "m/s^2")


@dataclass(frozen=True)
class ImuParams:
    """Mounting point and error model of the simulated IMU (SI units)."""

    mount: float = 1.0             # along the last link, fraction of its length from its joint
    gyro_noise_std: float = 0.02   # rad/s, white noise per sample
    gyro_bias_std: float = 0.05    # rad/s, initial bias per sequence
    gyro_bias_walk: float = 0.01   # rad/s/sqrt(s), bias random walk
    accel_noise_std: float = 0.2   # m/s^2, white noise per sample
    accel_bias_std: float = 0.1    # m/s^2, initial bias per sequence
    accel_bias_walk: float = 0.02  # m/s^2/sqrt(s), bias random walk

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"imu parameter '{f.name}': expected a finite number >= 0, "
                                 f"received {value!r}")
        if not 0.0 < self.mount <= 1.0:
            raise ValueError(f"imu parameter 'mount': expected a fraction of the last link in "
                             f"(0, 1], received {self.mount!r}")

    @classmethod
    def from_dict(cls, values: dict) -> ImuParams:
        """Build from a plain mapping (e.g. YAML); unknown keys are rejected by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown imu parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain mapping for metadata files."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def noise_std(self) -> np.ndarray:
        """White-noise std per column ``[3]``."""
        return np.array([self.gyro_noise_std, self.accel_noise_std, self.accel_noise_std])

    @property
    def bias_std(self) -> np.ndarray:
        """Initial bias std per column ``[3]``."""
        return np.array([self.gyro_bias_std, self.accel_bias_std, self.accel_bias_std])

    @property
    def bias_walk(self) -> np.ndarray:
        """Bias random-walk intensity per column ``[3]`` (per sqrt(s))."""
        return np.array([self.gyro_bias_walk, self.accel_bias_walk, self.accel_bias_walk])


UNITS = {"mount": "1", "gyro_noise_std": "rad/s", "gyro_bias_std": "rad/s",
         "gyro_bias_walk": "rad/s/sqrt(s)", "accel_noise_std": "m/s^2",
         "accel_bias_std": "m/s^2", "accel_bias_walk": "m/s^2/sqrt(s)"}


def ideal_readings(theta: np.ndarray, omega: np.ndarray, physics: PendulumParams,
                   mount: float = 1.0) -> np.ndarray:
    """Error-free IMU readings ``[batch, 3]`` (:data:`IMU_COLUMNS`) for angles and velocities
    ``[batch, links]`` (absolute, rad and rad/s)."""
    alpha = accelerations(theta, omega, chain_constants(physics))
    radii = np.asarray(physics.lengths, dtype=np.float64).copy()
    radii[-1] *= mount
    s, c = np.sin(theta), np.cos(theta)
    # u = (s, -c) along each link, n = (c, s) across it: a = sum r (alpha n - omega^2 u)
    ax = (radii * (alpha * c - omega * omega * s)).sum(axis=-1)
    ay = (radii * (alpha * s + omega * omega * c)).sum(axis=-1)
    fx, fy = ax, ay + physics.gravity       # specific force: a - (0, -g)
    s_last, c_last = s[:, -1], c[:, -1]
    along = fx * s_last - fy * c_last
    across = fx * c_last + fy * s_last
    return np.stack([omega[:, -1], along, across], axis=-1)


class ImuErrors:
    """Bias random walk and white noise of a batch of IMUs, one sample at a time."""

    def __init__(self, params: ImuParams, dt: float, batch: int,
                 rng: np.random.Generator) -> None:
        self._params, self._rng = params, rng
        self._walk_std = params.bias_walk * math.sqrt(dt)
        self.bias = rng.normal(0.0, 1.0, size=(batch, 3)) * params.bias_std

    def corrupt(self, ideal: np.ndarray) -> np.ndarray:
        """``ideal [batch, 3]`` plus the current bias and fresh noise; then the bias walks."""
        noise = self._rng.normal(0.0, 1.0, size=ideal.shape) * self._params.noise_std
        reading = ideal + self.bias + noise
        self.bias = self.bias + self._rng.normal(0.0, 1.0, size=self.bias.shape) * self._walk_std
        return reading


def imu_readings(angles: np.ndarray, velocities: np.ndarray, physics: PendulumParams,
                 params: ImuParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Noisy readings and the bias behind them, each ``float64 [sequence, time, 3]``, for
    unwrapped angles and velocities ``[sequence, time, links]`` recorded every ``physics.dt``."""
    num, steps, links = angles.shape
    ideal = ideal_readings(angles.reshape(-1, links), velocities.reshape(-1, links), physics,
                           params.mount).reshape(num, steps, 3)
    errors = ImuErrors(params, physics.dt, num, rng)
    readings = np.empty_like(ideal)
    bias = np.empty_like(ideal)
    for t in range(steps):
        bias[:, t] = errors.bias
        readings[:, t] = errors.corrupt(ideal[:, t])
    return readings, bias
