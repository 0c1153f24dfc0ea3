"""RKN option `state_dependent_noise`: Q = elu + 1 of (raw noise + W mean), W starting at 0."""

from __future__ import annotations

import pytest
import torch

from rkn_ros.core import ModelConfig, SensorSpec, build_model
from rkn_ros.core.belief import Belief
from rkn_ros.core.layers import elu_plus_one

JOINTS = SensorSpec("joints", "vector", (3,))
M = 4


def _pair() -> tuple:
    base = build_model(ModelConfig(sensors=(JOINTS,), output_dim=2, latent_obs_dim=M,
                                   num_basis=3, kind="rkn"))
    varied = build_model(ModelConfig(sensors=(JOINTS,), output_dim=2, latent_obs_dim=M,
                                     num_basis=3, kind="rkn", state_dependent_noise=True))
    missing, unexpected = varied.load_state_dict(base.state_dict(), strict=False)
    assert missing == ["transition.noise_net.weight"] and not unexpected
    return base, varied


def test_it_starts_as_the_papers_constant_noise() -> None:
    torch.manual_seed(0)
    base, varied = _pair()
    obs = {"joints": torch.randn(5, 12, 3)}
    valid = {"joints": torch.rand(5, 12) > 0.3}
    with torch.no_grad():
        a, b = base(obs, valid), varied(obs, valid)
    torch.testing.assert_close(a.mean, b.mean, rtol=0, atol=0)
    torch.testing.assert_close(a.var, b.var, rtol=0, atol=0)


def test_the_prior_variance_follows_the_mean_and_the_layer_learns() -> None:
    torch.manual_seed(1)
    _, model = _pair()
    transition = model.transition
    with torch.no_grad():
        transition.noise_net.weight.normal_(0.0, 0.5)
        # A = I, so the predicted variances are the posterior ones plus exactly Q
        basis = torch.zeros(2 * M, 2 * M)
        basis[range(2 * M), range(2 * M)] = 1.0
        transition.basis.copy_(basis.flatten()[transition.band_index].expand_as(transition.basis))
    mean = torch.randn(2, 2 * M)
    var = torch.full((2, M), 0.5)
    belief = Belief(mean, var, var, torch.zeros(2, M))
    with torch.no_grad():
        prior = model.transition_step(belief)
    q = elu_plus_one(transition.raw_noise + mean @ transition.noise_net.weight.T)
    torch.testing.assert_close(prior.var_upper, 0.5 + q[:, :M])
    torch.testing.assert_close(prior.var_lower, 0.5 + q[:, M:])
    assert not torch.allclose(prior.var_upper[0], prior.var_upper[1])  # two states, two Qs
    # trained end to end: the layer gets a gradient from the sequence NLL
    out = model({"joints": torch.randn(3, 8, 3)}, {"joints": torch.rand(3, 8) > 0.3})
    (out.var.log().sum() + out.mean.square().sum()).backward()
    assert transition.noise_net.weight.grad.abs().sum() > 0


def test_it_is_an_rkn_option() -> None:
    with pytest.raises(ValueError, match="state_dependent_noise: an RKN option, but kind is 'gru'"):
        ModelConfig(sensors=(JOINTS,), output_dim=2, kind="gru", state_dependent_noise=True)
    plain = build_model(ModelConfig(sensors=(JOINTS,), output_dim=2, kind="rkn"))
    with pytest.raises(RuntimeError, match="state_noise\\(\\) needs a model built with"):
        plain.transition.state_noise(torch.zeros(1, 2 * plain.latent_obs_dim))
