"""Every shipped model loads the way users load it, says what it is, and still evaluates as its
``evaluation.json`` records (metrics within 20%) on freshly generated data or the PAM file.

Without the full PAM recordings the PAM model is evaluated on the shipped fixture instead and
compared with the figures recorded for it (test/fixtures/pam/expected.json)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from pam_recordings import FIXTURE_DIR, USES_FIXTURE, fixture_expected

from rkn_ros.core.checkpoint import METADATA_FILE, WEIGHTS_FILE, load_checkpoint
from rkn_ros.train.evaluation import evaluate

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
EXPECTED = {
    # name: (input sensors and shapes, output kind, output names, dt, action-conditioned)
    "pendulum": ({"image": [24, 24]}, "sincos", ["joint_1"], 0.05, False),
    "quad_link": ({"image": [48, 48]}, "sincos", [f"joint_{i}" for i in range(1, 5)], 0.05,
                  False),
    "pneumatic": ({"joints": [3]}, "direct", ["pam_joint", "pam_joint_velocity"], 0.01, True),
    "pam": ({"joints": [4]}, "direct", [f"joint_{i}" for i in range(1, 5)], 0.01, True),
    "fusion": ({"image": [24, 24], "image_side": [16, 16], "imu": [3], "encoder": [1]},
               "sincos", ["joint_1"], 0.05, False),
}
TOLERANCE = 0.2


def _regenerate_module():
    spec = importlib.util.spec_from_file_location("regenerate", MODELS / "regenerate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _evaluation_data(name: str, regenerate) -> dict:
    """The data set the shipped model is checked on: its EVALUATION_DATA entry, or for PAM
    without the full recordings the whole fixture."""
    if name == "pam" and USES_FIXTURE:
        return {"path": str(FIXTURE_DIR / "pam_fixture.npz"), "pam_part": "all"}
    return regenerate.EVALUATION_DATA[name]


def _recorded(name: str, regenerate) -> dict:
    """The figures the evaluation must reproduce (and the data they were measured on)."""
    if name == "pam" and USES_FIXTURE:
        return fixture_expected()
    recorded = json.loads((MODELS / name / "evaluation.json").read_text())
    assert recorded["evaluation_data"] == regenerate.EVALUATION_DATA[name]
    return recorded


def test_all_models_are_shipped_and_small():
    folders = sorted(p.name for p in MODELS.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert folders == sorted(EXPECTED)
    total = sum(f.stat().st_size for f in MODELS.rglob("*") if f.is_file())
    assert total < 20 * 2**20, f"models/ holds {total / 2**20:.1f} MB"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_metadata_says_what_the_model_is(name):
    folder = MODELS / name
    for file in (WEIGHTS_FILE, METADATA_FILE, "evaluation.json"):
        assert (folder / file).is_file(), file
    sensors, kind, outputs, dt, conditioned = EXPECTED[name]
    model, meta = load_checkpoint(folder / WEIGHTS_FILE, "cpu", sensors=list(sensors), dt=dt)
    assert meta.name == name
    assert {s: list(spec.shape) for s, spec in meta.inputs.items()} == sensors
    assert list(meta.inputs) == list(sensors)
    assert meta.outputs.kind == kind and list(meta.outputs.names) == outputs
    assert (meta.actions is not None) == conditioned
    assert (meta.model.action_dim > 0) == conditioned
    assert len(meta.data_hash) == 64
    targets = meta.normalization.targets
    assert len(targets.mean) == len(targets.std) == meta.model.output_dim
    assert not model.training


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_evaluation_reproduces_recorded_metrics(name):
    regenerate = _regenerate_module()
    recorded = _recorded(name, regenerate)
    model, meta = load_checkpoint(MODELS / name, "cpu")
    dataset = regenerate.evaluation_dataset(_evaluation_data(name, regenerate), meta)
    report = evaluate(model, meta, dataset, "cpu")
    if name == "pam":  # the very episodes the figures came from
        assert report["data_hash"] == recorded["data_hash"]
    keys = ["log_likelihood", "rmse", "coverage_1sigma", "coverage_2sigma"]
    keys += [k for k in ("angle_rmse",) if k in recorded]
    for key in keys:
        assert report[key] == pytest.approx(recorded[key], rel=TOLERANCE, abs=1e-3), key
    if "rmse_by_horizon" in recorded:
        assert set(report["rmse_by_horizon"]) == {"1", "3", "5", "7", "10"}
        for horizon, value in recorded["rmse_by_horizon"].items():
            assert report["rmse_by_horizon"][horizon] == pytest.approx(value, rel=TOLERANCE)
    # Trained, not merely loadable: well inside the calibration and error a random model has.
    assert 0.8 <= report["coverage_2sigma"] <= 1.0
    if name == "pendulum":
        assert report["angle_rmse"] < 0.35  # radians, noisy frames included
        assert np.isfinite(report["log_likelihood"]) and report["log_likelihood"] > 1.0


def _readings(dataset, sensors) -> dict:
    """Per model sensor: (samples [sequence, time, ...], valid [sequence, time] or None)."""
    inputs = dataset.metadata["inputs"]
    return {name: (dataset.arrays[inputs[name]["array"]],
                   dataset.arrays[inputs[name]["valid"]] if inputs[name].get("valid") else None)
            for name in sensors}


def _tick(readings: dict, sequence: int, t: int, seen: bool) -> dict:
    """One tick's inputs: every sensor's sample where it has one, none at all when not seen."""
    return {name: samples[sequence, t] if seen and (valid is None or valid[sequence, t])
            else None for name, (samples, valid) in readings.items()}


GAP = (30, 50)  # steps without any sensor reading
# An angle known only to lie on the circle (uniform) has this standard deviation: the most a
# (sin, cos) model can report, so an output already near it cannot grow by half again.
UNIFORM_ANGLE_STD = np.pi / np.sqrt(3.0)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_standard_deviation_grows_through_a_dropout_and_falls_after(name):
    """What the estimator publishes when the camera (or the joint readings) drops out for 20
    steps: the uncertainty must grow and never collapse (a near-zero sigma while blind reads as
    certainty to whatever gates on it; the image models trained without hidden frames went to
    0.0 within 8 steps), and fall again once readings return. The learned output variance need
    not rise monotonically. The quad-link model's outer link is uncertain already (sigma 1.3
    rad) and can only rise towards the uniform angle's 1.81; its outer links are found again
    10-30 steps after the frames return."""
    from rkn_ros.runtime import StreamingEstimator

    regenerate = _regenerate_module()
    est = StreamingEstimator.from_checkpoint(MODELS / name, device="cpu")
    _, meta = load_checkpoint(MODELS / name, "cpu")
    dataset = regenerate.evaluation_dataset(_evaluation_data(name, regenerate), meta)
    readings = _readings(dataset, est.inputs)
    actions = dataset.arrays["actions"][0] if est.action_dim else None
    stds = []
    for t in range(GAP[1] + 30):
        seen = t < GAP[0] or t >= GAP[1]
        out = est.step(_tick(readings, 0, t, seen),
                       action=None if actions is None else actions[t])
        stds.append(np.concatenate([out.position_std, out.velocity_std if out.velocity_std
                                    is not None else []]))
    stds = np.asarray(stds)  # [steps, outputs]
    before, blind, after = stds[GAP[0] - 1], stds[GAP[0]:GAP[1]], stds[GAP[1]:]
    assert (blind.min(axis=0) >= 0.25 * before).all(), (before, blind.min(axis=0))
    ceiling = UNIFORM_ANGLE_STD if EXPECTED[name][1] == "sincos" else np.inf
    grown = np.minimum(1.5 * before, 0.8 * ceiling)
    assert (blind.max(axis=0) > grown).all(), (before, blind.max(axis=0))
    # Outputs the model tracks with readings (the quad-link's outer link it does not: sigma
    # 1.3 rad with every frame): the outage ends at least as uncertain as it began (the
    # pneumatic model trained without long outages ended it at half its sigma with readings),
    # and within 30 steps of readings returning sigma falls below where the outage left it (the
    # quad-link model's outer links take 10 or more to be found again; how far it falls depends
    # on where the pendulum is: fast swings stay harder to track than the rest before the gap).
    tracked = before < 0.5 * ceiling
    assert (blind[-1][tracked] >= before[tracked]).all(), (before, blind[-1])
    assert (after.min(axis=0)[tracked] < blind[-1][tracked]).all(), (blind[-1], after.min(axis=0))


OUTAGE = (20, 70)  # 50 steps without readings: 2.5 s of camera at 20 Hz, 0.5 s of joints at 100 Hz
AFTER_OUTAGE = 10  # steps after it that are scored


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_estimates_after_a_long_outage_are_not_overconfident(name):
    """The issue's sensor stopping for seconds and coming back. Models trained on random drops
    alone came back from 50 steps claiming sigmas of 1e-4 rad (pendulum) or 0 (PAM) against
    errors of 0.05-0.3 rad (errors of up to 1e6 sigma on the quad-link; 2-sigma coverage 0.2-0.4
    in the 10 steps after). Over five sequences, in the 10 steps after the outage, each output
    the model tracks with readings must keep its errors mostly within 2 sigma and never far
    beyond."""
    from rkn_ros.runtime import StreamingEstimator

    regenerate = _regenerate_module()
    est = StreamingEstimator.from_checkpoint(MODELS / name, device="cpu")
    _, meta = load_checkpoint(MODELS / name, "cpu")
    dataset = regenerate.evaluation_dataset(_evaluation_data(name, regenerate), meta)
    readings = _readings(dataset, est.inputs)
    actions = dataset.arrays["actions"] if est.action_dim else None
    angles = EXPECTED[name][1] == "sincos"  # scored on the angles, else on the targets
    truth = dataset.arrays["joint_angles" if angles else "targets"]
    z_after, sigma_before = [], []
    for sequence in range(5):
        est.reset()
        for t in range(OUTAGE[1] + AFTER_OUTAGE):
            seen = not OUTAGE[0] <= t < OUTAGE[1]
            out = est.step(_tick(readings, sequence, t, seen),
                           action=None if actions is None else actions[sequence, t])
            value, sigma = (out.position, out.position_std) if angles else (out.mean, out.std)
            error = truth[sequence, t] - value
            if angles:
                error = (error + np.pi) % (2 * np.pi) - np.pi
            if t == OUTAGE[0] - 1:
                sigma_before.append(sigma)
            if t >= OUTAGE[1]:
                z_after.append(np.abs(error) / sigma)
    z_after = np.asarray(z_after)  # [5 sequences x 10 steps, outputs]
    ceiling = UNIFORM_ANGLE_STD if angles else np.inf
    tracked = np.max(sigma_before, axis=0) < 0.5 * ceiling
    coverage = (z_after[:, tracked] <= 2.0).mean(axis=0)
    assert (coverage >= 0.7).all(), (coverage, z_after.max(axis=0))
    assert (z_after[:, tracked].max(axis=0) < 10.0).all(), z_after.max(axis=0)
