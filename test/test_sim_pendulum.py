"""Pendulum physics: energy conservation and loss, the period, process noise, parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rkn_ros.sim.pendulum import (
    PendulumParams,
    chain_constants,
    energy,
    integrate_dt,
    simulate,
    step_state,
    wrap_angle,
)


def _energies(params: PendulumParams, theta: np.ndarray, steps: int) -> np.ndarray:
    const = chain_constants(params)
    omega = np.zeros_like(theta)
    out = [energy(theta, omega, params)]
    for _ in range(steps):
        theta, omega = integrate_dt(theta, omega, params, const)
        out.append(energy(theta, omega, params))
    return np.array(out)                                   # [steps + 1, batch]


def test_single_pendulum_energy_drift_below_0p1_percent_over_1000_steps():
    # the paper's integrator and sub-step, friction and noise off; 1000 x 0.05 s = 50 s
    params = PendulumParams(friction=0.0, process_noise_std=0.0)
    theta0 = np.array([[0.5], [2.0], [3.0]])
    e = _energies(params, theta0, 1000)
    drift = np.abs(e - e[0]).max(axis=0) / e[0]
    assert np.all(drift < 1e-3), drift
    # the motion is real, not a pendulum stuck at rest
    assert e[0].min() > 0.5


def test_quad_link_energy_drift_with_rk4():
    params = PendulumParams.quad_link(friction=0.0, process_noise_std=0.0)
    theta0 = np.array([[2.0, -1.0, 2.5, 0.3], [3.0, 1.0, -2.0, 0.5]])
    e = _energies(params, theta0, 200)
    drift = np.abs(e - e[0]).max(axis=0) / e[0]
    assert np.all(drift < 1e-3), drift


@pytest.mark.parametrize("params", [PendulumParams(process_noise_std=0.0),
                                    PendulumParams.quad_link(process_noise_std=0.0)],
                         ids=["single", "quad_link"])
def test_energy_decreases_monotonically_with_friction(params):
    n = params.links
    theta0 = np.array([[2.0, -1.0, 2.5, 0.3][:n], [3.0, 1.0, -2.0, 0.5][:n]])
    e = _energies(params, theta0, 120 if params.links == 1 else 60)
    assert np.all(np.diff(e, axis=0) < 0.0), np.diff(e, axis=0).max()
    assert np.all(e[-1] < 0.9 * e[0])


def test_small_angle_period_of_a_uniform_rod():
    # T = 2 pi sqrt(I / (m g l/2)) = 2 pi sqrt(2 l / (3 g)) for a rod pivoted at its end
    params = PendulumParams(friction=0.0, process_noise_std=0.0, dt=0.001, sub_step=1e-4)
    const = chain_constants(params)
    theta, omega = np.array([[0.01]]), np.array([[0.0]])
    signs = []
    for _ in range(3000):
        theta, omega = integrate_dt(theta, omega, params, const)
        signs.append(float(theta[0, 0]))
    crossings = np.flatnonzero(np.diff(np.sign(signs)) != 0)
    period = 2 * (crossings[1] - crossings[0]) * params.dt
    assert period == pytest.approx(2 * math.pi * math.sqrt(2.0 / (3 * 9.81)), rel=0.01)


def test_process_noise_on_velocities_has_the_configured_std():
    params = PendulumParams(friction=0.0, gravity=0.0, process_noise_std=0.1)
    const = chain_constants(params)
    rng = np.random.default_rng(0)
    theta, omega = np.zeros((4000, 1)), np.zeros((4000, 1))
    theta, omega2 = step_state(theta, omega, params, const, rng)
    assert omega2.std() == pytest.approx(0.1, rel=0.05)
    assert np.all(theta == 0.0)      # noise enters after the integration of the step


def test_simulate_is_seeded_and_starts_from_the_paper_distribution():
    params = PendulumParams()
    a1, v1 = simulate(params, 200, 6, np.random.default_rng(5))
    a2, v2 = simulate(params, 200, 6, np.random.default_rng(5))
    assert np.array_equal(a1, a2) and np.array_equal(v1, v2)
    assert a1.shape == (200, 6, 1) and v1.shape == (200, 6, 1)
    assert np.all(v1[:, 0] == 0.0)
    assert a1[:, 0].min() >= 0.0 and a1[:, 0].max() < 2 * math.pi
    assert a1[:, 0].std() > 1.5                          # spread over the circle
    quad, _ = simulate(PendulumParams.quad_link(), 50, 2, np.random.default_rng(0))
    assert quad.shape == (50, 2, 4) and -math.pi <= quad[:, 0].min() and quad[:, 0].max() < math.pi


def test_wrap_angle_range():
    wrapped = wrap_angle(np.linspace(-20, 20, 1001))
    assert wrapped.min() >= -math.pi and wrapped.max() < math.pi
    assert np.allclose(np.sin(wrapped), np.sin(np.linspace(-20, 20, 1001)))


@pytest.mark.parametrize("overrides, word", [
    ({"links": 2}, "masses"),
    ({"masses": (-1.0,)}, "masses"),
    ({"friction": -0.1}, "friction"),
    ({"dt": 0.05, "sub_step": 0.03}, "sub_step"),
    ({"sub_step": 0.1}, "sub_step"),
    ({"integrator": "euler"}, "integrator"),
    ({"links": 0}, "links"),
    ({"masses": 1.0}, r"'masses': expected a list of numbers .*received 1\.0"),   # YAML typos
    ({"friction": "abc"}, "'friction': expected a number, received 'abc'"),
])
def test_bad_parameters_are_rejected_by_name(overrides, word):
    with pytest.raises(ValueError, match=word):
        PendulumParams(**overrides)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown pendulum parameter.*mass_kg"):
        PendulumParams.from_dict({"mass_kg": 1.0})
    assert PendulumParams.from_dict(PendulumParams.quad_link().to_dict()) == \
        PendulumParams.quad_link()


def test_single_sequence_fast_path_equals_the_batch_path():
    # the stepping simulator integrates one pendulum on Python floats; it must not drift apart
    params = PendulumParams(process_noise_std=0.0)
    const = chain_constants(params)
    rng = np.random.default_rng(0)
    theta, omega = rng.uniform(0, 6, size=(8, 1)), rng.normal(0, 2, size=(8, 1))
    batch = integrate_dt(theta, omega, params, const)
    for i in range(8):
        one = integrate_dt(theta[i:i + 1], omega[i:i + 1], params, const)
        assert one[0][0, 0] == batch[0][i, 0] and one[1][0, 0] == batch[1][i, 0]
