"""A stateful pendulum simulator stepped one tick at a time (for the ROS simulator node).

It shares the physics (:mod:`rkn_ros.sim.pendulum`), the renderer (:mod:`rkn_ros.sim.render`)
and the image noise (:mod:`rkn_ros.sim.image_noise`) with the batch generator::

    sim = PendulumSimulator(PendulumParams.quad_link(), RenderParams(image_size=48), seed=0)
    image, angles, velocities = sim.reset()      # uint8 [H, W], float64 [links] (rad, rad/s)
    image, angles, velocities = sim.step()       # one dt later
    sim.noise_factor                             # 1.0 = clean frame (always 1.0 with noise off)

Angles are wrapped to [-pi, pi), 0 = hanging down, absolute per link (not relative to the
previous link).

Optional sensors, each read once per tick into :attr:`PendulumSimulator.readings` after
``reset`` and ``step`` (their noise comes from streams of their own, so switching one on
leaves the images and the physics of a seed unchanged)::

    sim = PendulumSimulator(imu=ImuParams(), encoder=EncoderParams(),
                            side_camera=(RenderParams(image_size=16), CameraView(yaw=0.8)))
    sim.reset(); sim.readings.imu          # float64 [3], see rkn_ros.sim.imu
    sim.readings.encoder, sim.readings.encoder_valid   # [joints] rad, False between readings
    sim.readings.side_image                # uint8 [H2, W2]
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rkn_ros.sim.encoder import EncoderParams, joint_angles, quantize
from rkn_ros.sim.image_noise import CorrelatedNoise
from rkn_ros.sim.imu import ImuErrors, ImuParams, ideal_readings
from rkn_ros.sim.pendulum import (
    PendulumParams,
    chain_constants,
    initial_state,
    step_state,
    wrap_angle,
)
from rkn_ros.sim.render import CameraView, RenderParams, render


class SensorReadings(NamedTuple):
    """The optional sensors' readings of one tick (None: that sensor is off)."""

    imu: np.ndarray | None = None            # float64 [3], rkn_ros.sim.imu.IMU_COLUMNS
    encoder: np.ndarray | None = None        # float64 [joints], rad; zeros when not valid
    encoder_valid: bool = False              # True on the ticks the encoder reads
    side_image: np.ndarray | None = None     # uint8 [H2, W2]


class PendulumSimulator:
    """One pendulum (1..n links) with optional correlated image noise and extra sensors."""

    def __init__(self, params: PendulumParams | None = None,
                 render_params: RenderParams | None = None, seed: int = 0,
                 image_noise: bool = False, imu: ImuParams | None = None,
                 encoder: EncoderParams | None = None,
                 side_camera: tuple[RenderParams, CameraView] | None = None) -> None:
        self.params = params if params is not None else PendulumParams()
        self.render_params = render_params if render_params is not None else RenderParams()
        self.render_params.levels(self.params.links)    # fail now on a grey-level count mismatch
        self._imu, self._encoder, self._side_camera = imu, encoder, side_camera
        if encoder is not None:
            self._encoder_joints = [j - 1 for j in encoder.measured(self.params.links)]
        if side_camera is not None:
            side_camera[0].levels(self.params.links)
        self._rng = np.random.default_rng(seed)
        self._sensor_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
        self._imu_errors: ImuErrors | None = None
        self._tick = 0
        self.readings = SensorReadings()
        self._const = chain_constants(self.params)
        self._noise = CorrelatedNoise(self._rng) if image_noise else None
        self.noise_factor = 1.0
        self._theta = np.zeros((1, self.params.links))
        self._omega = np.zeros((1, self.params.links))

    def reset(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw a new initial state; returns the first (image, angles, velocities)."""
        self._theta, self._omega = initial_state(self.params, 1, self._rng)
        if self._noise is not None:
            self._noise.reset()
        if self._imu is not None:
            self._imu_errors = ImuErrors(self._imu, self.params.dt, 1, self._sensor_rng)
        self._tick = 0
        return self._observe()

    def step(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance one ``dt`` (with process noise); returns (image, angles, velocities)."""
        self._theta, self._omega = step_state(self._theta, self._omega, self.params, self._const,
                                              self._rng)
        self._tick += 1
        return self._observe()

    def _observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = render(self._theta, self.params.lengths, self.render_params)[0]
        if self._noise is not None:
            image, self.noise_factor = self._noise.step(image)
        self.readings = self._read_sensors()
        return image, wrap_angle(self._theta[0]), self._omega[0].copy()

    def _read_sensors(self) -> SensorReadings:
        imu = encoder = side_image = None
        valid = False
        if self._imu_errors is not None and self._imu is not None:
            ideal = ideal_readings(self._theta, self._omega, self.params, self._imu.mount)
            imu = self._imu_errors.corrupt(ideal)[0]
        if self._encoder is not None:
            valid = self._tick % self._encoder.period == 0
            relative = joint_angles(self._theta[0])[self._encoder_joints]
            noise = self._sensor_rng.normal(0.0, 1.0, size=relative.shape)
            reading = quantize(relative + noise * self._encoder.noise_std, self._encoder)
            encoder = reading if valid else np.zeros_like(reading)
        if self._side_camera is not None:
            side_render, view = self._side_camera
            side_image = render(self._theta, self.params.lengths, side_render, view=view)[0]
        return SensorReadings(imu=imu, encoder=encoder, encoder_valid=valid,
                              side_image=side_image)
