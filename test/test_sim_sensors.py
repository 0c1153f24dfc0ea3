"""The pendulum's extra sensors: IMU kinematics and errors, the encoder, the second camera."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from rkn_ros.sim.encoder import EncoderParams, encoder_readings
from rkn_ros.sim.imu import ImuParams, ideal_readings, imu_readings
from rkn_ros.sim.pendulum import PendulumParams, simulate
from rkn_ros.sim.pendulum_sim import PendulumSimulator
from rkn_ros.sim.render import CameraView, RenderParams, link_endpoints, render

QUIET_IMU = ImuParams(gyro_noise_std=0, gyro_bias_std=0, gyro_bias_walk=0, accel_noise_std=0,
                      accel_bias_std=0, accel_bias_walk=0)


def _point(theta: np.ndarray, lengths: np.ndarray, mount: float) -> np.ndarray:
    """World position (x right, y up) of the IMU point, [batch, time, 2]."""
    radii = lengths.copy()
    radii[-1] *= mount
    return np.stack([(radii * np.sin(theta)).sum(-1), (-radii * np.cos(theta)).sum(-1)], -1)


@pytest.mark.parametrize("links", [1, 4])
def test_imu_reads_the_specific_force_of_the_mounting_point_in_the_link_frame(links):
    """Finite differences of the simulated point's position give the same specific force and
    rate as the IMU's closed form, for the rod and for the quad-link's outer link."""
    params = PendulumParams.quad_link() if links == 4 else PendulumParams()
    dt = 2e-3 if links == 4 else 1e-3
    params = dataclasses.replace(params, dt=dt, sub_step=params.sub_step if links == 4 else 1e-4,
                                 process_noise_std=0.0, friction=0.2)
    rng = np.random.default_rng(0)
    theta, omega = simulate(params, 3, 200, rng)
    mount = 0.7
    p = _point(theta, np.asarray(params.lengths), mount)
    accel = (p[:, 2:] - 2 * p[:, 1:-1] + p[:, :-2]) / dt**2                  # [b, t-2, 2]
    force = accel + np.array([0.0, params.gravity])
    last = theta[:, 1:-1, -1]
    along = force[..., 0] * np.sin(last) - force[..., 1] * np.cos(last)
    across = force[..., 0] * np.cos(last) + force[..., 1] * np.sin(last)
    ideal = ideal_readings(theta[:, 1:-1].reshape(-1, links), omega[:, 1:-1].reshape(-1, links),
                           params, mount).reshape(3, -1, 3)
    assert np.abs(accel).max() > 5.0                # the chain really moves
    np.testing.assert_allclose(ideal[..., 1], along, atol=2e-2 * params.gravity)
    np.testing.assert_allclose(ideal[..., 2], across, atol=2e-2 * params.gravity)
    np.testing.assert_array_equal(ideal[..., 0], omega[:, 1:-1, -1])


def test_imu_hanging_still_reads_minus_g_along_the_link():
    params = PendulumParams()
    reading = ideal_readings(np.zeros((1, 1)), np.zeros((1, 1)), params)
    np.testing.assert_allclose(reading, [[0.0, -params.gravity, 0.0]], atol=1e-12)


def test_imu_noise_and_bias_random_walk_have_their_parameters_statistics():
    physics = dataclasses.replace(PendulumParams(), dt=0.05)
    imu = ImuParams(gyro_noise_std=0.1, gyro_bias_std=0.0, gyro_bias_walk=0.2,
                    accel_noise_std=0.3, accel_bias_std=0.5, accel_bias_walk=0.0)
    angles = np.zeros((400, 50, 1))
    readings, bias = imu_readings(angles, angles, physics, imu, np.random.default_rng(1))
    noise = readings - np.array([0.0, -physics.gravity, 0.0]) - bias
    assert noise[..., 0].std() == pytest.approx(0.1, rel=0.03)
    assert noise[..., 1:].std() == pytest.approx(0.3, rel=0.03)
    steps = np.diff(bias, axis=1)
    assert steps[..., 0].std() == pytest.approx(0.2 * math.sqrt(0.05), rel=0.03)
    assert np.all(steps[..., 1:] == 0)                       # no walk: a constant bias
    assert bias[:, 0, 1:].std() == pytest.approx(0.5, rel=0.1)
    np.testing.assert_array_equal(bias[:, 0, 0], 0.0)
    again, _ = imu_readings(angles, angles, physics, imu, np.random.default_rng(1))
    np.testing.assert_array_equal(again, readings)          # same seed, same data


def test_encoder_reads_quantized_relative_angles_every_period_steps():
    params = EncoderParams(period=3, counts_per_turn=256, noise_std=0.0)
    theta = np.random.default_rng(2).uniform(-3, 3, size=(2, 10, 4))
    values, valid = encoder_readings(theta, params, np.random.default_rng(0))
    np.testing.assert_array_equal(valid[0], [k % 3 == 0 for k in range(10)])
    assert np.all(values[~valid] == 0)
    resolution = 2 * math.pi / 256
    counts = values[valid] / resolution
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-9)
    relative = np.diff(theta, axis=-1, prepend=0.0)[valid]
    error = (values[valid] - relative + math.pi) % (2 * math.pi) - math.pi
    assert np.abs(error).max() <= resolution / 2 + 1e-12
    assert np.all((values >= -math.pi) & (values < math.pi))
    only_first, _ = encoder_readings(theta, dataclasses.replace(params, joints=(1, 3)),
                                     np.random.default_rng(0))
    np.testing.assert_array_equal(only_first, values[..., [0, 2]])
    with pytest.raises(ValueError, match=r"joints': \[5\] on a chain of 4"):
        encoder_readings(theta, EncoderParams(joints=(5,)), np.random.default_rng(0))
    with pytest.raises(ValueError, match="'period': expected an integer in"):
        EncoderParams(period=0)


def test_encoder_noise_spreads_the_counts():
    params = EncoderParams(period=1, counts_per_turn=1 << 16, noise_std=0.01)
    theta = np.full((1, 5000, 1), 0.5)
    values, _ = encoder_readings(theta, params, np.random.default_rng(3))
    assert values.std() == pytest.approx(0.01, rel=0.05)


def test_second_camera_sees_the_pendulum_from_another_view_not_a_mirror():
    angles = np.random.default_rng(4).uniform(-3, 3, size=(6, 4))
    front = RenderParams.quad_link()
    np.testing.assert_array_equal(render(angles, (1.0,) * 4, front, view=CameraView()),
                                  render(angles, (1.0,) * 4, front))
    view = CameraView(yaw=0.9, roll=0.35, scale=0.8, offset=(0.08, -0.06),
                      occluder=(0.6, 0.62, 0.95, 0.95), occluder_level=96)
    side = render(angles, (1.0,) * 4, front, view=view)
    plain = render(angles, (1.0,) * 4, front)
    for image in (plain, plain[:, :, ::-1], plain[:, ::-1]):
        assert np.mean(side != image) > 0.05
    np.testing.assert_array_equal(side[:, 30:46, 29:46], 96)           # the occluder
    # yaw foreshortens the horizontal: a rod pointing right spans cos(yaw) of its length
    horizontal = np.array([[math.pi / 2]])
    p0 = link_endpoints(horizontal, (1.0,), RenderParams())
    p1 = link_endpoints(horizontal, (1.0,), RenderParams(), CameraView(yaw=1.0))
    width0, width1 = np.ptp(p0[0, :, 0]), np.ptp(p1[0, :, 0])
    assert width1 == pytest.approx(width0 * math.cos(1.0))
    with pytest.raises(ValueError, match="'yaw': expected"):
        CameraView(yaw=1.5)
    with pytest.raises(ValueError, match="'occluder': expected x0 < x1"):
        CameraView(occluder=(0.5, 0.1, 0.4, 0.2))


def test_stepped_simulator_sensors_leave_images_and_physics_unchanged():
    quad, front = PendulumParams.quad_link(), RenderParams.quad_link()
    plain = PendulumSimulator(quad, front, seed=7)
    full = PendulumSimulator(quad, front, seed=7, imu=QUIET_IMU,
                             encoder=EncoderParams(period=2, noise_std=0.0),
                             side_camera=(RenderParams(image_size=16), CameraView(yaw=0.5)))
    for k in range(6):
        a, b = (plain.reset(), full.reset()) if k == 0 else (plain.step(), full.step())
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
        r = full.readings
        assert r.side_image.shape == (16, 16) and r.encoder_valid == (k % 2 == 0)
        assert plain.readings.imu is None
        # with errors off the IMU reads what the closed form gives for the state
        theta = full._theta
        np.testing.assert_allclose(r.imu, ideal_readings(theta, full._omega, quad)[0])
        if r.encoder_valid:
            relative = np.diff(theta[0], prepend=0.0)
            error = (r.encoder - relative + math.pi) % (2 * math.pi) - math.pi
            assert np.abs(error).max() <= math.pi / 1024 + 1e-12
