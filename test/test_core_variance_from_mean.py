"""RKN decoder-input options: `variance_from_mean` and `mean_from_variance`."""

from __future__ import annotations

import pytest
import torch

from rkn_ros.core import Belief, ModelConfig, SensorSpec, build_model

JOINTS = SensorSpec("joints", "vector", (3,))
M = 5


def make(variance_from_mean: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(sensors=(JOINTS,), output_dim=2, latent_obs_dim=M, num_basis=3,
                         variance_from_mean=variance_from_mean)
    return build_model(config).double()


def belief(mean_seed: int) -> Belief:
    gen = torch.Generator().manual_seed(mean_seed)
    mean = torch.randn(4, 2 * M, generator=gen, dtype=torch.float64)
    var = torch.linspace(0.5, 2.0, M, dtype=torch.float64).expand(4, M)
    return Belief(mean, var, 1.5 * var, 0.1 * var)


@pytest.mark.parametrize("variance_from_mean", [False, True])
def test_output_variance_depends_on_the_mean_only_with_the_option(
        variance_from_mean: bool) -> None:
    model = make(variance_from_mean)
    assert model.decoder.var_net[0].in_features == (5 if variance_from_mean else 3) * M
    with torch.no_grad():
        # predict's first output decodes the given belief itself: same variances, other mean
        _, var_a = model.predict(belief(1), 1)
        _, var_b = model.predict(belief(2), 1)
    differs = not torch.allclose(var_a, var_b, atol=1e-9, rtol=0)
    assert differs == variance_from_mean


def test_forward_step_and_compiled_step_agree_with_the_option() -> None:
    model = make(True)
    gen = torch.Generator().manual_seed(3)
    obs = {"joints": torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)}
    valid = {"joints": torch.rand(2, 6, generator=gen) > 0.4}
    with torch.no_grad():
        seq = model(obs, valid)
        state = model.initial_state(2)
        compiled = model.compile_step(2)
        cstate = model.initial_state(2)
        for t in range(6):
            out = model.step(state, {"joints": obs["joints"][:, t]},
                             {"joints": valid["joints"][:, t]})
            state = out.state
            torch.testing.assert_close(out.var, seq.var[:, t], atol=1e-9, rtol=0)
            cout = compiled(cstate, {"joints": obs["joints"][:, t]},
                            {"joints": valid["joints"][:, t]})
            cstate = cout.state
            torch.testing.assert_close(cout.var, seq.var[:, t], atol=1e-6, rtol=0)


@pytest.mark.parametrize("mean_from_variance", [False, True])
def test_output_mean_depends_on_the_variances_only_with_mean_from_variance(
        mean_from_variance: bool) -> None:
    torch.manual_seed(0)
    model = build_model(ModelConfig(sensors=(JOINTS,), output_dim=2, latent_obs_dim=M,
                                    num_basis=3, mean_from_variance=mean_from_variance)).double()
    assert model.decoder.mean_net[0].in_features == (5 if mean_from_variance else 2) * M
    a = belief(1)
    b = Belief(a.mean, 2 * a.var_upper, 3 * a.var_lower, a.var_side)  # same mean
    with torch.no_grad():
        mean_a, _ = model.predict(a, 1)
        mean_b, _ = model.predict(b, 1)
        seq = model({"joints": torch.ones(2, 3, 3, dtype=torch.float64)},
                    {"joints": torch.tensor([[True, False, True]] * 2)})
    assert (not torch.allclose(mean_a, mean_b, atol=1e-9, rtol=0)) == mean_from_variance
    assert seq.mean.shape == (2, 3, 2)


def test_log_variance_features_are_scale_free() -> None:
    """With `log_variance_features`, scaling su, sl and ss by c shifts the log inputs by log c
    and leaves the correlation ss / sqrt(su sl) alone: the decoder sees exactly that."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(sensors=(JOINTS,), output_dim=2, latent_obs_dim=M,
                                    num_basis=3, log_variance_features=True)).double()
    a = belief(1)
    scaled = Belief(a.mean, 4 * a.var_upper, 4 * a.var_lower, 4 * a.var_side)
    features_a, features_b = model._var_features(a), model._var_features(scaled)
    torch.testing.assert_close(features_b[:, : 2 * M] - features_a[:, : 2 * M],
                               torch.full((4, 2 * M), torch.log(torch.tensor(4.0)).item(),
                                          dtype=torch.float64))
    torch.testing.assert_close(features_b[:, 2 * M:], features_a[:, 2 * M:])
    torch.testing.assert_close(features_a[:, 2 * M:], a.var_side / (a.var_upper * a.var_lower)
                               .sqrt())
    with torch.no_grad():  # and it is what reaches the variance decoder, in step and predict
        _, var = model.predict(a, 1)
        expected = model.decoder(model._mean_features(a), features_a)[1]
    torch.testing.assert_close(var[:, 0], expected)
