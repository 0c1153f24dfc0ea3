"""`rkn-ros dynamics`: the modes of the RKN's locally linear transition, checked against a
system whose modes are known, the shipped pendulum model, and the refusals."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rkn_ros.cli import main as cli
from rkn_ros.core.linear_gaussian import damped_oscillator
from rkn_ros.train.dynamics import continuous_modes, dense_basis, state_modes

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "config" / "train" / "tiny.yaml"


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "linear_gaussian_benchmark", REPO / "benchmarks" / "linear_gaussian.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_continuous_modes_of_a_known_oscillator():
    """A pair exp((-zeta w +- i w sqrt(1 - zeta^2)) dt) converts back to w and zeta exactly; a
    positive real eigenvalue gives its time constant; a negative real one is kept apart."""
    w, zeta, dt = 2.0, 0.3, 0.05
    s = complex(-zeta * w, w * np.sqrt(1 - zeta**2))
    lam = np.exp(s * dt)
    back = continuous_modes(np.array([lam]), dt)
    assert back["frequency"][0] == pytest.approx(w, rel=1e-9)
    assert back["damping"][0] == pytest.approx(zeta, rel=1e-9)
    assert back["time_constant"][0] == pytest.approx(1 / (zeta * w), rel=1e-9)
    # rotation-scaling block (the pair), a decaying real mode and a sign-flipping one
    block = abs(lam) * np.array([[np.cos(np.angle(lam)), -np.sin(np.angle(lam))],
                                 [np.sin(np.angle(lam)), np.cos(np.angle(lam))]])
    matrix = np.zeros((1, 4, 4))
    matrix[0, :2, :2] = block
    matrix[0, 2, 2], matrix[0, 3, 3] = 0.9, -0.5
    modes = state_modes(matrix, dt)
    assert modes.frequency.shape == (1, 1)
    assert modes.frequency[0, 0] == pytest.approx(w) and modes.damping[0, 0] == pytest.approx(zeta)
    np.testing.assert_allclose(modes.real[0], [0.9])
    np.testing.assert_allclose(modes.negative[0], [-0.5])


def test_dense_matrix_is_the_transition_the_filter_uses():
    """The 2m x 2m matrix the eigenvalues come from is the one the filter's prediction applies
    (band form, upper and lower halves): prior mean = A_t @ posterior mean."""
    from rkn_ros.core import ModelConfig, SensorSpec, build_model
    from rkn_ros.core.belief import Belief

    torch.manual_seed(0)
    config = ModelConfig(sensors=(SensorSpec("joints", "vector", (3,)),), output_dim=3,
                         latent_obs_dim=5, num_basis=4, bandwidth=2)
    model = build_model(config)
    with torch.no_grad():
        model.transition.basis.add_(0.3 * torch.randn_like(model.transition.basis))
        mean, var = torch.randn(7, 10), torch.ones(7, 5)
        prior = model.transition_step(Belief(mean, var, var, 0 * var))
        alpha = model.transition.alpha(mean, None).double().numpy()
    dense = np.einsum("nk,kij->nij", alpha, dense_basis(model.transition))
    np.testing.assert_allclose(np.einsum("nij,nj->ni", dense, mean.double().numpy()),
                               prior.mean.numpy(), atol=1e-5)


def test_recovers_the_oscillators_frequency_and_damping(one_thread):
    """A small RKN trained on the linear-Gaussian benchmark's damped oscillator (omega 1,
    damping 0.2, dt 0.1): the eigenvalues of its learned transition, as continuous-time modes,
    match those of the system's own transition matrix (frequency within 5%, damping ratio
    within 0.02). The untrained model's pair (1 +- 0.2 i: 1.97 rad/s, growing) is far off."""
    bench = _benchmark()
    system = damped_oscillator()
    truth = bench.oscillation_modes(system.A, 0.1)
    assert truth == pytest.approx((1.0055, 0.1005), abs=1e-4)
    data = bench.oscillator_data(system, **bench.SMALL_RUN["data"])
    untrained, _ = bench.train("rkn", data, **{**bench.SMALL_RUN["training"], "iterations": 0})
    start = bench.oscillation_modes(dense_basis(untrained.transition)[0], 0.1)
    assert start[0] > 1.9 and start[1] < 0
    model, _ = bench.train("rkn", data, **bench.SMALL_RUN["training"])
    learned = bench.oscillation_modes(dense_basis(model.transition)[0], 0.1)
    assert learned is not None, "no oscillatory pair learned"
    assert learned[0] == pytest.approx(truth[0], rel=0.05)
    assert learned[1] == pytest.approx(truth[1], abs=0.02)


def test_dynamics_of_the_shipped_pendulum_model(tmp_path, capsys):
    out = tmp_path / "pendulum.json"
    plot = tmp_path / "pendulum.png"
    assert cli(["dynamics", str(REPO / "models" / "pendulum"), "--json", str(out),
                "--plot", str(plot), "--sequences", "4"]) == 0
    report = json.loads(out.read_text())
    assert "dominant mode" in capsys.readouterr().out
    assert report["state_dim"] == 30 and report["states_visited"] == 4 * 75
    # an oscillatory mode in the band of a swinging 1 m rod (3.84 rad/s for small swings)
    assert 1.5 < report["dominant_frequency_rad_s"] < 6.0
    assert -1.0 < report["dominant_damping_ratio"] < 1.0
    oscillatory = [m for m in report["modes"] if m["kind"] == "oscillatory"]
    assert oscillatory and oscillatory[0]["rank"] == 0
    assert len(report["modes"]) >= len(oscillatory)
    assert report["basis"]["num_basis"] == 15
    shares = [b["share_dominant"] for b in report["basis"]["bases"]]
    assert sum(shares) == pytest.approx(1.0)
    assert len(report["process_noise"]["upper"]) == 15
    assert len(report["initial_belief"]["mean"]) == 30
    assert plot.stat().st_size > 10_000


def _one_error_line(capsys, prefix: str) -> str:
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(prefix) and "Traceback" not in captured.err
    return lines[0]


def test_an_lstm_checkpoint_is_refused(tmp_path, capsys):
    recipe = yaml.safe_load(TINY.read_text())
    recipe["model"] = {"kind": "lstm", "hidden_size": 8, "encoder_conv_channels": [4, 4],
                       "encoder_dense": 8, "decoder_hidden": [8]}
    recipe["training"]["epochs"] = 1
    path = tmp_path / "lstm.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert cli(["train", str(path), "--out", str(tmp_path / "lstm"), "--no-progress"]) == 0
    capsys.readouterr()
    assert cli(["dynamics", str(tmp_path / "lstm")]) == 1
    line = _one_error_line(capsys, "rkn-ros dynamics: error:")
    assert "LSTM checkpoint" in line and "no locally linear transition" in line


@pytest.mark.parametrize(("args", "message"), [
    (["{tmp}/none"], "none"),
    (["{repo}/models/pendulum", "--data", "{tmp}/missing"], "does not exist"),
    (["{repo}/models/pendulum", "--sequences", "0"], "--sequences expected >= 1"),
    (["{repo}/models/pendulum", "--data", "{repo}/test/fixtures/pam/pam_fixture.npz"], ""),
])
def test_bad_input_is_one_line(tmp_path, capsys, args, message):
    argv = ["dynamics"] + [a.format(tmp=tmp_path, repo=REPO) for a in args]
    assert cli(argv) == 1
    assert message in _one_error_line(capsys, "rkn-ros dynamics: error:")
