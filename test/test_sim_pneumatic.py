"""Pneumatic muscle joint: delay, pressure dynamics, hysteresis, stiction, sensors, excitation."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from rkn_ros.data.generate import load_pneumatic_params
from rkn_ros.sim.pneumatic import (
    MuscleParams,
    PneumaticJoint,
    PneumaticParams,
    advance,
    excitation,
    initial_state,
    muscle_forces,
    simulate,
)

REPO = Path(__file__).resolve().parents[1]


def _with(params: PneumaticParams, section: str, **changes) -> PneumaticParams:
    return dataclasses.replace(params, **{section: dataclasses.replace(getattr(params, section),
                                                                       **changes)})


def test_transport_delay_is_visible_in_the_pressure():
    params = PneumaticParams()                                # delay 0.03 s = 3 steps
    joint = PneumaticJoint(params, seed=0)
    joint.reset(angle=0.0)
    rises = [joint.step(np.array([3.0, 0.0]))[1].pressures[0] for _ in range(5)]
    assert rises[:3] == [0.0, 0.0, 0.0]
    assert rises[3] > 0.05 and rises[4] > rises[3]
    no_delay = PneumaticJoint(_with(params, "valve", delay=0.0), seed=0)
    no_delay.reset(angle=0.0)
    assert no_delay.step(np.array([3.0, 0.0]))[1].pressures[0] > 0.05


def test_pressure_settles_at_the_set_point_and_is_rate_limited():
    params = PneumaticParams()
    joint = PneumaticJoint(params, seed=0)
    joint.reset(angle=0.0)
    previous = 0.0
    for _ in range(200):
        _, truth = joint.step(np.array([4.0, 2.0]))
        assert truth.pressures[0] - previous <= params.valve.max_rate * params.dt + 1e-9
        previous = truth.pressures[0]
    assert truth.pressures == pytest.approx([4.0, 2.0], abs=0.01)


def _rest_angles(params: PneumaticParams, hold: int = 300) -> tuple[float, float]:
    """Resting angle at equal pressures, reached from +3 bar and from -3 bar of difference."""
    joint = PneumaticJoint(params, seed=0)
    joint.reset(angle=0.0)
    rest = []
    for diff in (3.0, -3.0):
        for command in ([2.5 + diff / 2, 2.5 - diff / 2], [2.5, 2.5]):
            for _ in range(hold):
                _, truth = joint.step(np.array(command))
        assert abs(truth.velocity) < 1e-3                   # settled
        rest.append(truth.angle)
    return rest[0], rest[1]


def test_hysteresis_is_visible_at_rest():
    # the same pressures leave the joint at a different angle depending on where it came from
    params = PneumaticParams()
    from_above, from_below = _rest_angles(params)
    gap = from_above - from_below
    assert gap > 0.1
    gap_no_bouc_wen = np.subtract(*_rest_angles(_with(params, "joint", hysteresis_torque=0.0)))
    assert gap > gap_no_bouc_wen + 0.01                      # the Bouc-Wen term adds to it
    frictionless = _with(params, "joint", hysteresis_torque=0.0, coulomb=0.0, static=0.0,
                         viscous=1.0)
    assert abs(np.subtract(*_rest_angles(frictionless, hold=400))) < 1e-3   # no memory


def test_stiction_holds_the_joint_below_break_away():
    params = PneumaticParams()
    joint = PneumaticJoint(params, seed=0)
    joint.reset(angle=0.1)
    for _ in range(100):
        _, truth = joint.step(np.array([2.6, 2.4]))            # tiny pressure difference
    assert truth.angle == 0.1 and truth.velocity == 0.0
    for _ in range(100):
        _, truth = joint.step(np.array([5.0, 0.5]))            # large: it breaks away
    assert truth.angle > 0.3


def test_sensors_are_quantized_and_noisy():
    params = PneumaticParams()
    rng = np.random.default_rng(0)
    commands = excitation(params, 20, 80, rng, kind="multisine")
    out = simulate(params, commands, rng)
    meas = out["measurements"]
    angle_step = 2 * math.pi / params.sensor.encoder_counts
    counts = meas[..., 0] / angle_step
    assert np.allclose(counts, np.round(counts), atol=1e-6)
    p_step = params.valve.supply_pressure / (2 ** params.sensor.pressure_bits - 1)
    levels = meas[..., 1:] / p_step
    assert np.allclose(levels, np.round(levels), atol=1e-6)
    angle_error = meas[..., 0] - out["angle"][..., 0]
    assert np.abs(angle_error).max() < angle_step / 2 + 5 * params.sensor.angle_noise_std
    pressure_error = meas[..., 1:] - out["pressure"]
    assert 0.5 * params.sensor.pressure_noise_std < pressure_error.std() < \
        2 * params.sensor.pressure_noise_std + p_step


def test_muscle_force_is_nonlinear_in_pressure_and_contraction():
    muscle = MuscleParams()
    angles = np.array([-0.5, 0.0, 0.5])
    low = muscle_forces(np.full((3, 2), 2.0), angles, muscle)
    high = muscle_forces(np.full((3, 2), 4.0), angles, muscle)
    assert np.all(high >= low) and np.all(muscle_forces(np.zeros((3, 2)), angles, muscle) == 0)
    # the flexor contracts as the angle grows and its force falls, the extensor's rises
    assert low[0, 0] > low[1, 0] > low[2, 0] and low[0, 1] < low[1, 1] < low[2, 1]
    assert abs((low[0, 0] - low[1, 0]) - (low[1, 0] - low[2, 0])) > 1.0   # not linear


def test_advance_applies_the_muscle_forces():
    # One frictionless sub-step per dt from rest, without delay: the velocity a step gives is
    # the muscle torque over the inertia, so the force the simulator applies can be read back.
    params = dataclasses.replace(PneumaticParams(), sub_step=0.01)
    params = _with(params, "valve", delay=0.0)
    params = _with(params, "joint", viscous=0.0, coulomb=0.0, static=0.0, hysteresis_torque=0.0)
    # braid 40 deg, eps0 0.2: a muscle goes slack (force 0) within the end stops
    params = _with(params, "muscle", braid_angle=40.0, pre_contraction=0.2)
    angles = np.linspace(-1.2, 1.2, 13)
    pressures = np.random.default_rng(0).uniform(0.5, 6.0, size=(13, 2))
    state = initial_state(params, 13, np.random.default_rng(0), angles)
    state.pressure = pressures.copy()
    advance(state, pressures, params)                         # set-points = pressures: held
    assert np.array_equal(state.pressure, pressures)
    forces = muscle_forces(pressures, angles, params.muscle)
    # each muscle goes slack at one end and then pulls with 0 (it cannot push)
    assert forces.min() == 0 and (forces == 0).any(axis=0).all() and (forces > 0).sum() > 13
    torque = state.velocity * params.joint.inertia / params.sub_step
    np.testing.assert_allclose(torque, params.muscle.radius * (forces[:, 0] - forces[:, 1]),
                               rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kind", ["steps", "multisine", "random_walk", "mixed"])
def test_excitation_stays_within_limits_and_is_seeded(kind):
    params = PneumaticParams()
    a = excitation(params, 12, 150, np.random.default_rng(1), kind=kind)
    b = excitation(params, 12, 150, np.random.default_rng(1), kind=kind)
    assert a.shape == (12, 150, 2) and np.array_equal(a, b)
    assert a.min() >= params.excitation.min_pressure and a.max() <= params.excitation.max_pressure
    assert np.abs(np.diff(a, axis=1)).max() > 0.1             # it excites
    with pytest.raises(ValueError, match="kind"):
        excitation(params, 1, 10, np.random.default_rng(0), kind="chirp")


def test_batch_and_stepping_share_the_physics():
    params = _with(PneumaticParams(), "joint", init_angle_std=0.0)
    commands = excitation(params, 1, 60, np.random.default_rng(3), kind="steps")
    batch = simulate(params, commands, np.random.default_rng(0))
    joint = PneumaticJoint(params, seed=0)
    joint.reset()
    stepped = [joint.step(c)[1].angle for c in commands[0, :-1]]
    assert np.array_equal(batch["angle"][0, 1:, 0], np.array(stepped))


def test_parameters_from_yaml_and_bad_values():
    assert load_pneumatic_params(REPO / "config" / "sim" / "pneumatic.yaml") == PneumaticParams()
    with pytest.raises(ValueError, match=r"unknown pneumatic parameter\(s\) \['mass'\] in 'joint'"):
        PneumaticParams.from_dict({"joint": {"mass": 1.0}})
    with pytest.raises(ValueError, match=r"unknown pneumatic parameter\(s\) \['valves'\]"):
        PneumaticParams.from_dict({"valves": {}})
    with pytest.raises(ValueError, match=r"valve\.delay"):
        PneumaticParams.from_dict({"valve": {"delay": 0.0155}})
    with pytest.raises(ValueError, match=r"joint\.static"):
        PneumaticParams.from_dict({"joint": {"coulomb": 2.0, "static": 1.0}})
    with pytest.raises(ValueError, match="max_pressure"):
        PneumaticParams.from_dict({"excitation": {"max_pressure": 7.0}})
    with pytest.raises(ValueError, match="command"):
        PneumaticJoint().step(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"commands.*\[sequence, time, 2\]"):
        simulate(PneumaticParams(), np.zeros((2, 5)), np.random.default_rng(0))
