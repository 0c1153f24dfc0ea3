"""The seed question: can a trained RKN be the Kalman filter, uncertainty included?

Data come from a known linear-Gaussian system: a damped oscillator whose position is observed
in noise (20% of the readings missing) and whose velocity is never observed. The exact Kalman
filter gives the best possible NLL on it. An RKN with m = 1 (latent state = [position-like,
velocity-like]), an affine encoder and an affine decoder can represent that filter: for m = 1
the factorized covariance *is* the full 2x2 covariance, one basis matrix is a constant
transition, and Q is diagonal in the system's own coordinates (the first test sets those
weights by hand and gets the Kalman filter to 1e-6). Whether training finds it is the question.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rkn_ros.core import ModelConfig, SensorSpec, build_model, coverage, gaussian_nll
from rkn_ros.core.linear_gaussian import damped_oscillator, gaussian_nll_np, kalman_filter

CONFIG = ModelConfig(
    sensors=(SensorSpec("position", "vector", (1,)),), output_dim=2, latent_obs_dim=1,
    num_basis=1, bandwidth=0, encoder_hidden=(), decoder_hidden=(),
    normalize_latent_obs=False, learn_initial_state=True,
)


def test_rkn_with_the_systems_weights_is_the_kalman_filter() -> None:
    system = damped_oscillator()
    model = build_model(CONFIG).double()
    with torch.no_grad():
        encoder = model.encoders["position"].net[0]  # rows: w, raw var_obs
        encoder.weight.copy_(torch.tensor([[1.0], [0.0]]))
        encoder.bias.copy_(torch.tensor([0.0, system.R[0, 0] - 1.0]))  # elu(x) + 1 = x + 1
        model.transition.basis.copy_(torch.tensor(system.A).reshape(1, 4))
        q = np.diag(system.Q)
        raw = [math.log(v) if v < 1 else v - 1.0 for v in q]  # inverse of elu + 1
        model.transition.raw_noise.copy_(torch.tensor(raw))
        model.initial_log_var.fill_(math.log(system.P0[0, 0]))
        model.decoder.mean_net[0].weight.copy_(torch.eye(2))
        model.decoder.mean_net[0].bias.zero_()
        model.decoder.var_net[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
        model.decoder.var_net[0].bias.fill_(-1.0)
        _, readings = system.simulate(8, 60, seed=0)
        valid = np.random.default_rng(0).random((8, 60)) > 0.3
        kf_mean, kf_var = kalman_filter(system, readings, valid)
        out = model({"position": torch.tensor(readings)}, {"position": torch.tensor(valid)})
    np.testing.assert_allclose(out.mean.numpy(), kf_mean, atol=1e-6)
    np.testing.assert_allclose(out.var.numpy(), kf_var, atol=1e-6)



@pytest.mark.usefixtures("one_thread")
def test_trained_rkn_matches_the_exact_kalman_filter() -> None:
    torch.manual_seed(0)
    system = damped_oscillator()
    steps, sequences = 30, 512
    train_x, train_y = system.simulate(sequences, steps, seed=1)
    test_x, test_y = system.simulate(sequences, steps, seed=2)
    rng = np.random.default_rng(3)
    train_valid = rng.random((sequences, steps)) >= 0.2
    test_valid = rng.random((sequences, steps)) >= 0.2
    kf_mean, kf_var = kalman_filter(system, test_y, test_valid)
    kf_nll = gaussian_nll_np(kf_mean, kf_var, test_x)

    # standardised inputs and targets, as the training pipeline feeds them
    y_scale, x_scale = train_y.std(), train_x.reshape(-1, 2).std(0)
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    model = build_model(CONFIG)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    observations = {"position": as_tensor(train_y / y_scale)}
    valid = {"position": torch.tensor(train_valid)}
    targets = as_tensor(train_x / x_scale)
    for _ in range(200):
        out = model(observations, valid)
        loss = gaussian_nll(out.mean, out.var, targets)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    with torch.no_grad():
        out = model({"position": as_tensor(test_y / y_scale)},
                    {"position": torch.tensor(test_valid)})
        scale = as_tensor(x_scale)
        mean, var, target = out.mean * scale, out.var * scale**2, as_tensor(test_x)
        rkn_nll = gaussian_nll(mean, var, target).item()
        rkn_coverage = coverage(mean, var, target, 2.0).item()
    print(f"KF NLL {kf_nll:.4f}  RKN NLL {rkn_nll:.4f}  RKN 2-sigma coverage {rkn_coverage:.4f}")
    assert rkn_nll <= kf_nll + 0.1
    assert 0.90 <= rkn_coverage <= 0.99
