"""The seed question: can a trained RKN be the Kalman filter, uncertainty included?

Data come from a known linear-Gaussian system (a damped oscillator whose position is observed
in noise and whose velocity is never observed). The exact Kalman filter gives the best
possible NLL on it. An RKN with m = 1 (latent state = [position-like, velocity-like]), an
affine encoder and an affine decoder can represent that filter exactly: for m = 1 the
factorized covariance *is* the full 2x2 covariance, one basis matrix is a constant transition,
and Q is diagonal in the system's own coordinates. Whether training finds it is the question.
"""

from __future__ import annotations

import torch

from rkn_ros.core import ModelConfig, SensorSpec, build_model, coverage, gaussian_nll
from rkn_ros.core.linear_gaussian import damped_oscillator, gaussian_nll_np, kalman_filter


def test_trained_rkn_matches_the_exact_kalman_filter() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    system = damped_oscillator()
    steps = 50
    train_x, train_y = system.simulate(256, steps, seed=1)
    test_x, test_y = system.simulate(256, steps, seed=2)
    kf_mean, kf_var = kalman_filter(system, test_y)
    kf_nll = gaussian_nll_np(kf_mean, kf_var, test_x)

    config = ModelConfig(
        sensors=(SensorSpec("position", "vector", (1,)),), output_dim=2, latent_obs_dim=1,
        num_basis=1, bandwidth=0, encoder_hidden=(), decoder_hidden=(),
        normalize_latent_obs=False, learn_initial_state=True,
    )
    model = build_model(config)
    as_tensor = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    valid = {"position": torch.ones(256, steps, dtype=torch.bool)}
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    observations, targets = {"position": as_tensor(train_y)}, as_tensor(train_x)
    for _ in range(150):
        out = model(observations, valid)
        loss = gaussian_nll(out.mean, out.var, targets)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    with torch.no_grad():
        out = model({"position": as_tensor(test_y)}, valid)
        target = as_tensor(test_x)
        rkn_nll = gaussian_nll(out.mean, out.var, target).item()
        rkn_coverage = coverage(out.mean, out.var, target, 2.0).item()
    print(f"KF NLL {kf_nll:.4f}  RKN NLL {rkn_nll:.4f}  RKN 2-sigma coverage {rkn_coverage:.4f}")
    assert rkn_nll <= kf_nll + 0.1
    assert 0.90 <= rkn_coverage <= 0.99
