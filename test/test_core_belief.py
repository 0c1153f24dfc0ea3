"""The factorized Kalman math against dense references (float64, property-based)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rkn_ros.core import Belief, ModelConfig, SensorSpec, build_model
from rkn_ros.core.belief import banded_predict, kalman_predict, kalman_update, predict, update

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True)


def random_belief(gen: torch.Generator, batch: int, m: int) -> Belief:
    """A random valid belief: each 2x2 block [[su, ss], [ss, sl]] positive definite."""
    su = torch.rand(batch, m, generator=gen, dtype=torch.float64) * 5 + 0.01
    sl = torch.rand(batch, m, generator=gen, dtype=torch.float64) * 5 + 0.01
    corr = torch.rand(batch, m, generator=gen, dtype=torch.float64) * 1.98 - 0.99
    ss = corr * torch.sqrt(su * sl)
    mean = torch.randn(batch, 2 * m, generator=gen, dtype=torch.float64) * 3
    return Belief(mean, su, sl, ss)


def dense_parts(cov: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    diag = torch.diagonal(cov, dim1=-2, dim2=-1)
    side = torch.diagonal(cov[:, m:, :m], dim1=-2, dim2=-1)
    return diag[:, :m], diag[:, m:], side


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 4), m=st.integers(1, 12))
def test_factorized_update_equals_dense_kalman_update(seed: int, batch: int, m: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    prior = random_belief(gen, batch, m)
    w = torch.randn(batch, m, generator=gen, dtype=torch.float64) * 2
    var_obs = torch.rand(batch, m, generator=gen, dtype=torch.float64) * 3 + 1e-3
    valid = torch.ones(batch, dtype=torch.bool)

    post = kalman_update(*prior.tensors(), w, var_obs, valid)

    cov = prior.covariance()
    H = torch.cat([torch.eye(m), torch.zeros(m, m)], 1).to(torch.float64)
    S = H @ cov @ H.T + torch.diag_embed(var_obs)
    K = cov @ H.T @ torch.linalg.inv(S)
    dense_mean = prior.mean + (K @ (w - prior.mean @ H.T).unsqueeze(-1)).squeeze(-1)
    dense_cov = (torch.eye(2 * m, dtype=torch.float64) - K @ H) @ cov

    torch.testing.assert_close(post[0], dense_mean, atol=1e-6, rtol=1e-6)
    # the posterior keeps the factorized structure exactly: nothing outside it is lost
    torch.testing.assert_close(Belief(*post).covariance(), dense_cov, atol=1e-6, rtol=1e-6)
    for got, want in zip(post[1:], dense_parts(dense_cov, m), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 4), m=st.integers(1, 12))
def test_factorized_prediction_equals_dense_parts(seed: int, batch: int, m: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    belief = random_belief(gen, batch, m)
    A = torch.randn(batch, 2 * m, 2 * m, generator=gen, dtype=torch.float64)
    q_upper = torch.rand(m, generator=gen, dtype=torch.float64)
    q_lower = torch.rand(m, generator=gen, dtype=torch.float64)

    mean, upper, lower, side = kalman_predict(*belief.tensors(), A, q_upper, q_lower)

    dense = A @ belief.covariance() @ A.transpose(1, 2) + torch.diag(torch.cat([q_upper, q_lower]))
    torch.testing.assert_close(mean, (A @ belief.mean.unsqueeze(-1)).squeeze(-1))
    for got, want in zip((upper, lower, side), dense_parts(dense, m), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
    # the Belief-level wrapper adds the ac-RKN shift to the mean only
    shift = torch.randn(batch, 2 * m, generator=gen, dtype=torch.float64)
    shifted = predict(belief, A, q_upper, q_lower, shift)
    torch.testing.assert_close(shifted.mean, mean + shift)
    assert torch.equal(shifted.var_side, side)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), batch=st.integers(1, 3), m=st.integers(1, 12),
       bandwidth=st.integers(0, 14), use_dt=st.booleans())
def test_banded_prediction_equals_dense_prediction(seed: int, batch: int, m: int, bandwidth: int,
                                                   use_dt: bool) -> None:
    # the loop's band-form prediction against kalman_predict with the dense A of the same
    # weights (bandwidth >= m - 1 included: the band then covers whole blocks)
    torch.manual_seed(seed)
    model = build_model(ModelConfig(sensors=(SensorSpec("x", "vector", (2,)),), output_dim=1,
                                    latent_obs_dim=m, num_basis=3, bandwidth=bandwidth,
                                    use_dt=use_dt)).double()
    transition = model.transition
    with torch.no_grad():
        transition.basis.normal_()
    gen = torch.Generator().manual_seed(seed)
    belief = random_belief(gen, batch, m)
    dt = torch.rand(batch, 1, generator=gen, dtype=torch.float64) if use_dt else None
    noise, band_basis = model.sequence_constants()
    band = transition.band_matrix(belief.mean, dt, band_basis)
    got = banded_predict(*belief.tensors(), band, transition.gather_index, noise)
    want = kalman_predict(*belief.tensors(), transition.matrix(belief.mean, dt), *noise)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, atol=1e-10, rtol=1e-10)


def test_inference_constants_follow_weight_changes() -> None:
    # without autograd the weight-only constants are cached; an in-place optimizer update or a
    # dtype change must be seen by the next step exactly as by a fresh computation
    torch.manual_seed(0)
    model = build_model(ModelConfig(sensors=(SensorSpec("x", "vector", (2,)),), output_dim=1,
                                    latent_obs_dim=4, num_basis=3))
    obs, valid = {"x": torch.randn(2, 2)}, {"x": torch.ones(2, dtype=torch.bool)}

    def step_and_fresh() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            cached = model.step(model.initial_state(2), obs, valid).state.var_upper
        with torch.enable_grad():
            fresh = model.step(model.initial_state(2), obs, valid).state.var_upper.detach()
        return cached, fresh

    before, _ = step_and_fresh()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    model.transition.raw_noise.sum().backward()
    optimizer.step()
    after, fresh = step_and_fresh()
    assert not torch.equal(before, after)
    assert torch.equal(after, fresh)
    model.double()
    obs = {"x": obs["x"].double()}
    after64, fresh64 = step_and_fresh()
    assert after64.dtype == torch.float64
    assert torch.equal(after64, fresh64)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), m=st.integers(1, 8))
def test_invalid_rows_keep_the_prior(seed: int, m: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    prior = random_belief(gen, 4, m)
    w = torch.randn(4, m, generator=gen, dtype=torch.float64)
    var_obs = torch.rand(4, m, generator=gen, dtype=torch.float64) + 0.1
    valid = torch.tensor([True, False, True, False])
    post = update(prior, w, var_obs, valid).tensors()
    for got, want in zip(post, prior.tensors(), strict=True):
        assert torch.equal(got[~valid], want[~valid])
        assert not torch.equal(got[valid], want[valid])


def test_all_missing_posterior_is_prior_every_step() -> None:
    torch.manual_seed(0)
    config = ModelConfig(sensors=(SensorSpec("image", "image", (24, 24)),
                                  SensorSpec("joints", "vector", (3,))),
                         output_dim=2, latent_obs_dim=6, num_basis=4)
    model = build_model(config).double()
    state = model.initial_state(3)
    missing = {name: torch.zeros(3, dtype=torch.bool) for name in ("image", "joints")}
    with torch.no_grad():
        for _ in range(20):
            observations = {"image": torch.rand(3, 24, 24, dtype=torch.float64),
                            "joints": torch.randn(3, 3, dtype=torch.float64)}
            out = model.step(state, observations, missing)
            for got, want in zip(out.posterior.tensors(), state.tensors(), strict=True):
                assert torch.equal(got, want)
            state = out.state
    # and the uncertainty grows without observations
    assert bool((state.var_upper > config.initial_var).all())



@pytest.mark.usefixtures("one_thread")
def test_beliefs_stay_finite_and_positive_over_10000_steps() -> None:
    torch.manual_seed(1)
    config = ModelConfig(sensors=(SensorSpec("joints", "vector", (2,)),), output_dim=2,
                         latent_obs_dim=8, num_basis=5)
    model = build_model(config)
    gen = torch.Generator().manual_seed(1)
    state = model.initial_state(2)
    with torch.no_grad():
        encoded_w = torch.randn(10_000, 2, 8, generator=gen)
        var_obs = torch.rand(10_000, 2, 8, generator=gen) * 2 + 1e-4
        valid = torch.rand(10_000, 2, generator=gen) > 0.3
        for t in range(10_000):
            state, _, _, posterior = model.cell(state, [(encoded_w[t], var_obs[t], valid[t])],
                                                 None, None)
            if t % 500 == 0 or t == 9_999:
                for tensor in (*state.tensors(), *posterior.tensors()):
                    assert bool(torch.isfinite(tensor).all())
                for var in (state.var_upper, state.var_lower, posterior.var_upper,
                            posterior.var_lower):
                    assert bool((var > 0).all())
                # each 2x2 block stays positive definite
                det = posterior.var_upper * posterior.var_lower - posterior.var_side**2
                assert bool((det > 0).all())
