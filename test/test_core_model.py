"""The sequence-model interface: step/forward equivalence, gradients, input errors, options."""

from __future__ import annotations

import re

import pytest
import torch

from rkn_ros.core import Belief, ModelConfig, SensorSpec, build_model
from rkn_ros.core.belief import kalman_update
from rkn_ros.core.model import SequenceModel
from rkn_ros.core.step_contract import StepContract

IMAGE = SensorSpec("image", "image", (24, 24))
JOINTS = SensorSpec("joints", "vector", (3,))


def make(kind: str = "rkn", seed: int = 0, **overrides) -> torch.nn.Module:
    torch.manual_seed(seed)
    fields = {"sensors": (IMAGE, JOINTS), "output_dim": 2, "latent_obs_dim": 6, "num_basis": 4,
              "hidden_size": 12, "kind": kind, **overrides}
    return build_model(ModelConfig(**fields)).double()


def inputs(batch: int, steps: int, seed: int = 0, action_dim: int = 0, use_dt: bool = False,
           image_shape: tuple[int, ...] = (24, 24)):
    gen = torch.Generator().manual_seed(seed)
    obs = {"image": torch.rand(batch, steps, *image_shape, generator=gen, dtype=torch.float64),
           "joints": torch.randn(batch, steps, 3, generator=gen, dtype=torch.float64)}
    valid = {"image": torch.rand(batch, steps, generator=gen) > 0.5,
             "joints": torch.rand(batch, steps, generator=gen) > 0.3}
    actions = (torch.randn(batch, steps, action_dim, generator=gen, dtype=torch.float64)
               if action_dim else None)
    dt = (torch.rand(batch, steps, 1, generator=gen, dtype=torch.float64) * 0.1 + 0.01
          if use_dt else None)
    return obs, valid, actions, dt


def state_tensors(state) -> tuple[torch.Tensor, ...]:
    return state.tensors() if isinstance(state, Belief) else state


@pytest.mark.parametrize("kind", ["rkn", "lstm", "gru"])
def test_forward_equals_loop_of_steps(kind: str) -> None:
    model = make(kind, action_dim=2, use_dt=True, image_decoder=True)
    obs, valid, actions, dt = inputs(3, 12, action_dim=2, use_dt=True)
    with torch.no_grad():
        seq = model(obs, valid, actions, dt)
        state = model.initial_state(3)
        for t in range(12):
            out = model.step(state, {k: v[:, t] for k, v in obs.items()},
                             {k: v[:, t] for k, v in valid.items()}, actions[:, t], dt[:, t])
            state = out.state
            torch.testing.assert_close(out.mean, seq.mean[:, t], atol=1e-6, rtol=0)
            torch.testing.assert_close(out.var, seq.var[:, t], atol=1e-6, rtol=0)
            torch.testing.assert_close(out.image, seq.image[:, t], atol=1e-6, rtol=0)
            assert (out.posterior is not None) == (kind == "rkn")
    for got, want in zip(state_tensors(state), state_tensors(seq.state), strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    # continuing from a returned state equals running the longer sequence at once
    first = model({k: v[:, :5] for k, v in obs.items()}, {k: v[:, :5] for k, v in valid.items()},
                  actions[:, :5], dt[:, :5])
    rest = model({k: v[:, 5:] for k, v in obs.items()}, {k: v[:, 5:] for k, v in valid.items()},
                 actions[:, 5:], dt[:, 5:], state=first.state)
    torch.testing.assert_close(rest.mean, seq.mean[:, 5:], atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["rkn", "lstm", "gru"])
def test_the_step_contract_parts_compose_to_step(kind: str) -> None:
    """encode, update, decode and advance, called one by one as the runtime and the exported
    graphs call them, give `step`'s estimate and next state; flatten/unflatten round-trip."""
    model = make(kind, action_dim=2, use_dt=True)
    assert isinstance(model, StepContract) and model.splits_step == (kind == "rkn")
    obs, valid, actions, dt = inputs(3, 6, seed=5, action_dim=2, use_dt=True)
    with torch.no_grad():
        state = reference = model.initial_state(3)
        for t in range(6):
            tick = {k: torch.where(valid[k][:, t].view(-1, *(1,) * (v.dim() - 2)), v[:, t], 0.0)
                    for k, v in obs.items()}
            mask = {k: v[:, t] for k, v in valid.items()}
            out = model.step(reference, tick, mask, actions[:, t], dt[:, t])
            encoded = [(w, var, mask[s.name])
                       for s, (w, var) in zip(model.sensors, model.encode(tick), strict=True)]
            posterior, mean_features, var_features = model.update(state, encoded)
            mean, var, image = model.decode(mean_features, var_features, image=False)
            state = model.unflatten_state(model.flatten_state(
                model.advance(posterior, actions[:, t], dt[:, t])))
            reference = out.state
            assert image is None
            torch.testing.assert_close(mean, out.mean, atol=1e-12, rtol=0)
            torch.testing.assert_close(var, out.var, atol=1e-12, rtol=0)
            for got, want in zip(model.flatten_state(state), model.flatten_state(reference),
                                 strict=True):
                torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


@pytest.mark.parametrize("options", [
    {},
    {"action_dim": 2, "use_dt": True, "coefficient_hidden": (8,)},
    {"state_dependent_noise": True, "learn_initial_state": True},
    {"log_variance_features": True, "variance_from_mean": True, "mean_from_variance": True},
    {"state_dependent_noise": True, "action_dim": 2, "use_dt": True, "bandwidth": 9,
     "control_hidden": (4, 4), "coefficient_hidden": (5, 6)},
], ids=["paper", "action-dt-hidden", "state-noise-initial", "decoder-inputs", "combined"])
def test_rkn_sequence_loop_equals_the_cell_loop_with_gradients(options: dict) -> None:
    """The RKN's `forward` filters with the batch last (`RKN.filter_sequence`); `step` runs
    `cell`. Both must be the same function of the inputs, the state and the weights, derivatives
    included. (Batch 5 against 4 bases and m = 6, so no two dimensions can be confused.)"""
    model = make(**options)
    with torch.no_grad():  # weights away from their symmetric start, so every path matters
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    obs, valid, actions, dt = inputs(5, 9, seed=3, action_dim=options.get("action_dim", 0),
                                     use_dt=options.get("use_dt", False))
    encoded = [model._encode_valid(spec.name, obs[spec.name], valid[spec.name])
               for spec in model.sensors]
    gen = torch.Generator().manual_seed(4)
    start = [torch.randn(5, 12, generator=gen, dtype=torch.float64)] + [
        torch.rand(5, 6, generator=gen, dtype=torch.float64) + 0.5 for _ in range(2)] + [
        0.1 * torch.rand(5, 6, generator=gen, dtype=torch.float64)]
    start = [x.requires_grad_() for x in start]
    wrt = [*model.parameters(), *start, *(x for x in (actions, dt) if x is not None)]
    for x in (actions, dt):
        if x is not None:
            x.requires_grad_()
    results = []
    for run in (type(model).filter_sequence, SequenceModel.filter_sequence):
        final, mean_features, var_features = run(model, Belief(*start), encoded, valid,
                                                 actions, dt)
        loss = (mean_features.sin().sum() + var_features.pow(2).sum()
                + sum(x.pow(2).sum() for x in final.tensors()))
        grads = torch.autograd.grad(loss, wrt, allow_unused=True, retain_graph=True)
        results.append((final.tensors(), mean_features, var_features, grads))
    (final, mean_f, var_f, grads), (final_ref, mean_ref, var_ref, grads_ref) = results
    torch.testing.assert_close(mean_f, mean_ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(var_f, var_ref, atol=1e-10, rtol=1e-10)
    for got, want in zip(final, final_ref, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
    names = [name for name, _ in model.named_parameters()] + [
        "state.mean", "state.var_upper", "state.var_lower", "state.var_side"] + [
        name for name, x in (("actions", actions), ("dt", dt)) if x is not None]
    for name, got, want in zip(names, grads, grads_ref, strict=True):
        assert (got is None) == (want is None), name
        if got is not None:
            torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-9, msg=name)


@pytest.mark.parametrize("kind", ["rkn", "gru"])
def test_forward_encodes_only_the_valid_frames(kind: str) -> None:
    """Missing frames skip the encoder (most of a training step) and it changes nothing: the
    same loss and gradients as with every frame encoded."""
    model = make(kind)
    obs, valid, _, _ = inputs(4, 10)
    seen = []
    hook = model.encoders["image"].register_forward_hook(
        lambda module, args, out: seen.append(args[0].shape[0]))
    loss = model(obs, valid).mean.square().sum()
    hook.remove()
    assert seen == [int(valid["image"].sum())] and seen[0] < 40
    params = list(model.parameters())
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    # the reference: every frame through the encoder, then the same loop and decoder
    batch, steps = valid["image"].shape
    every = [(w.view(batch, steps, -1), v.view(batch, steps, -1)) for w, v in model.encode(
        {k: x.flatten(0, 1) for k, x in obs.items()})]
    _, mean_features, var_features = model.filter_sequence(model.initial_state(batch), every,
                                                           valid, None, None)
    mean, _, _ = model.decode(mean_features.flatten(0, 1), var_features.flatten(0, 1))
    reference = mean.square().sum()
    torch.testing.assert_close(loss, reference, rtol=1e-12, atol=0)
    wanted = torch.autograd.grad(reference, params, allow_unused=True)
    assert sum(g is not None for g in grads) > 10
    for got, want in zip(grads, wanted, strict=True):
        assert (got is None) == (want is None)
        if got is not None:
            torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["rkn", "lstm", "gru"])
def test_gradients_finite_through_150_steps_with_half_the_frames_missing(kind: str) -> None:
    model = make(kind, image_decoder=True)
    model.float()
    obs, valid, _, _ = inputs(4, 150, seed=3)
    obs = {k: v.float() for k, v in obs.items()}
    valid["image"] = torch.arange(150).expand(4, 150) % 2 == 0
    # garbage in the missing frames must not reach the gradients
    obs["image"][~valid["image"]] = float("nan")
    obs["joints"][~valid["joints"]] = float("inf")
    target = torch.randn(4, 150, 2)
    out = model(obs, valid)
    loss = (0.5 * (torch.log(out.var) + (target - out.mean) ** 2 / out.var)).mean()
    loss = loss + out.image.mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("kind", ["rkn", "lstm", "gru"])
def test_predict_equals_steps_without_observations(kind: str) -> None:
    model = make(kind, action_dim=2)
    obs, valid, actions, _ = inputs(2, 6, action_dim=2)
    with torch.no_grad():
        state = model(obs, valid, actions).state
        future = torch.randn(2, 4, 2, dtype=torch.float64)
        means, variances = model.predict(state, 4, future)
        assert means.shape == (2, 4, 2) and variances.shape == (2, 4, 2)
        missing = {"image": torch.zeros(2, dtype=torch.bool),
                   "joints": torch.zeros(2, dtype=torch.bool)}
        blank = {"image": torch.zeros(2, 24, 24, dtype=torch.float64),
                 "joints": torch.zeros(2, 3, dtype=torch.float64)}
        start = state
        for j in range(4):
            out = model.step(state, blank, missing, future[:, j])
            state = out.state
            torch.testing.assert_close(out.mean, means[:, j], atol=1e-9, rtol=0)
            torch.testing.assert_close(out.var, variances[:, j], atol=1e-9, rtol=0)
        # the RKN's latent uncertainty grows open loop (the paper's initial transition
        # [[I, 0.2 I], [-0.2 I, I]] expands, and noise is added every tick)
        if kind == "rkn":
            assert bool((state.var_upper > start.var_upper).all())


def test_action_and_dt_change_the_prediction() -> None:
    model = make(action_dim=2, use_dt=True)
    # dt acts through the coefficients alpha, which only matter once the bases differ
    # (they all start equal)
    with torch.no_grad():
        model.transition.basis.add_(0.1 * torch.randn_like(model.transition.basis))
    obs, valid, actions, dt = inputs(2, 5, action_dim=2, use_dt=True)
    with torch.no_grad():
        base = model(obs, valid, actions, dt)
        other_actions = model(obs, valid, actions + 1.0, dt)
        other_dt = model(obs, valid, actions, dt * 3.0)
    # tick 0 is decoded before any action or dt acts; later ticks depend on both
    torch.testing.assert_close(base.mean[:, 0], other_actions.mean[:, 0])
    assert not torch.allclose(base.mean[:, 1:], other_actions.mean[:, 1:])
    assert not torch.allclose(base.mean[:, 1:], other_dt.mean[:, 1:])


def test_sensors_fused_by_successive_updates_equal_one_combined_update() -> None:
    # two independent readings of the same latent: sequential updates == information fusion
    gen = torch.Generator().manual_seed(5)
    m = 4
    mean = torch.randn(2, 2 * m, generator=gen, dtype=torch.float64)
    su, sl = (torch.rand(2, m, generator=gen, dtype=torch.float64) + 0.5 for _ in range(2))
    ss = 0.3 * torch.sqrt(su * sl)
    w1, w2 = (torch.randn(2, m, generator=gen, dtype=torch.float64) for _ in range(2))
    r1, r2 = (torch.rand(2, m, generator=gen, dtype=torch.float64) + 0.1 for _ in range(2))
    valid = torch.ones(2, dtype=torch.bool)
    seq = kalman_update(*kalman_update(mean, su, sl, ss, w1, r1, valid), w2, r2, valid)
    r = 1 / (1 / r1 + 1 / r2)
    joint = kalman_update(mean, su, sl, ss, r * (w1 / r1 + w2 / r2), r, valid)
    for got, want in zip(seq, joint, strict=True):
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


def test_model_step_uses_every_sensor() -> None:
    model = make()
    obs, _, _, _ = inputs(2, 1)
    step_obs = {k: v[:, 0] for k, v in obs.items()}
    only_image = {"image": torch.ones(2, dtype=torch.bool),
                  "joints": torch.zeros(2, dtype=torch.bool)}
    both = {"image": torch.ones(2, dtype=torch.bool), "joints": torch.ones(2, dtype=torch.bool)}
    with torch.no_grad():
        a = model.step(model.initial_state(2), step_obs, only_image)
        b = model.step(model.initial_state(2), step_obs, both)
    assert bool((b.posterior.var_upper < a.posterior.var_upper).all())


@pytest.mark.parametrize("shape", [(24, 24), (3, 24, 24), (48, 48)])
def test_image_sizes_and_channels(shape: tuple[int, ...]) -> None:
    image = SensorSpec("image", "image", shape)
    model = make(sensors=(image, JOINTS), image_decoder=True)
    obs, valid, _, _ = inputs(2, 3, image_shape=shape)
    out = model(obs, valid)
    assert out.image.shape == (2, 3, *shape)
    assert bool(((out.image > 0) & (out.image < 1)).all())


def expect_error(pattern: str, fn, *args, **kwargs) -> None:
    with pytest.raises(ValueError, match=pattern):
        fn(*args, **kwargs)


@pytest.mark.parametrize("kind", ["rkn", "gru"])
def test_bad_inputs_raise_clear_errors(kind: str) -> None:
    model = make(kind, action_dim=2)
    obs, valid, actions, _ = inputs(2, 4, action_dim=2)
    state = model.initial_state(2)
    step_obs = {k: v[:, 0] for k, v in obs.items()}
    step_valid = {k: v[:, 0] for k, v in valid.items()}
    act = actions[:, 0]

    bad = {**step_obs, "image": torch.zeros(2, 48, 48, dtype=torch.float64)}
    expect_error(re.escape("observations['image']: expected shape [batch, 24, 24]") +
                 ".*received \\[2, 48, 48\\]", model.step, state, bad, step_valid, act)
    bad = {**step_obs, "image": torch.zeros(2, 24, 24, dtype=torch.uint8)}
    expect_error("observations\\['image'\\]: expected dtype torch.float64.*received torch.uint8",
                 model.step, state, bad, step_valid, act)
    bad = {**step_obs, "joints": step_obs["joints"].clone()}
    bad["joints"][0, 1] = float("nan")
    valid_all = {k: torch.ones(2, dtype=torch.bool) for k in step_valid}
    expect_error("observations\\['joints'\\].*finite.*NaN", model.step, state, bad, valid_all, act)
    expect_error("observations: expected keys", model.step, state, {"image": step_obs["image"]},
                 step_valid, act)
    expect_error("valid\\['image'\\]: expected dtype torch.bool", model.step, state, step_obs,
                 {**step_valid, "image": step_valid["image"].double()}, act)
    expect_error("valid\\['joints'\\]: expected shape \\[batch\\] with batch = 2, received \\[3\\]",
                 model.step, state, step_obs, {**step_valid, "joints": torch.ones(3).bool()}, act)
    expect_error("action: this model needs it.*received None", model.step, state, step_obs,
                 step_valid)
    expect_error(re.escape("action: expected shape [batch, 2] with batch = 2, received [2, 3]"),
                 model.step, state, step_obs, step_valid, torch.zeros(2, 3, dtype=torch.float64))
    expect_error("action: expected finite values", model.step, state, step_obs, step_valid,
                 torch.full((2, 2), float("nan"), dtype=torch.float64))
    expect_error("dt: this model was built without it", model.step, state, step_obs, step_valid,
                 act, torch.ones(2, 1, dtype=torch.float64))
    expect_error("state", model.step, model.initial_state(3), step_obs, step_valid, act)
    expect_error("actions: expected shape \\[batch, time, 2\\]", model, obs, valid, actions[:, :2])
    expect_error("observations\\['joints'\\]: expected shape \\[batch, time, 3\\]", model,
                 {**obs, "joints": obs["joints"][:, :, :2]}, valid, actions)
    expect_error("steps: expected a positive integer", model.predict, state, 0)
    expect_error("actions: expected shape \\[batch, steps, 2\\], received None",
                 model.predict, state, 3)


def test_invalid_nan_frames_are_ignored_not_rejected() -> None:
    model = make()
    obs, valid, _, _ = inputs(2, 4)
    clean = model(obs, valid)
    dirty_obs = {k: v.clone() for k, v in obs.items()}
    dirty_obs["image"][~valid["image"]] = float("nan")
    dirty = model(dirty_obs, valid)
    torch.testing.assert_close(dirty.mean, clean.mean, atol=0, rtol=0)


def test_config_round_trip_and_unknown_keys() -> None:
    config = ModelConfig(sensors=(IMAGE, JOINTS), output_dim=2, action_dim=3, use_dt=True)
    data = config.to_dict()
    assert data["sensors"][0] == {"name": "image", "kind": "image", "shape": [24, 24]}
    assert ModelConfig.from_dict(data) == config
    with pytest.raises(ValueError, match=r"unknown key.*'latent_dim'"):
        ModelConfig.from_dict({**data, "latent_dim": 3})
    with pytest.raises(ValueError, match=r"sensor: unknown key.*'size'"):
        ModelConfig.from_dict({**data, "sensors": [{"name": "a", "kind": "vector", "shape": [2],
                                                    "size": 2}]})
    with pytest.raises(ValueError, match="kind: expected one of"):
        ModelConfig.from_dict({**data, "kind": "transformer"})
    with pytest.raises(ValueError, match="latent_obs_dim: expected a positive integer"):
        ModelConfig.from_dict({**data, "latent_obs_dim": 0})
    with pytest.raises(ValueError, match="needs an image sensor"):
        ModelConfig(sensors=(JOINTS,), output_dim=1, image_decoder=True)
    with pytest.raises(ValueError, match="at least 16x16"):
        SensorSpec("cam", "image", (8, 8))


def test_same_seed_same_weights_and_initial_basis() -> None:
    a, b = make(seed=3), make(seed=3)
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    # every basis starts as [[I, 0.2 I], [-0.2 I, I]] (band entries only)
    m = 6
    mean = torch.zeros(1, 2 * m, dtype=torch.float64)
    A = a.transition.matrix(mean, None)[0]
    eye = torch.eye(m, dtype=torch.float64)
    want = torch.cat([torch.cat([eye, 0.2 * eye], 1), torch.cat([-0.2 * eye, eye], 1)], 0)
    torch.testing.assert_close(A, want)
    # band structure: entries with |i - j| > bandwidth in any block stay zero after training
    a.transition.basis.data.normal_()
    A = a.transition.matrix(torch.randn(1, 2 * m, dtype=torch.float64), None)[0]
    far = (torch.arange(m)[:, None] - torch.arange(m)[None]).abs() > 3
    for block in (A[:m, :m], A[:m, m:], A[m:, :m], A[m:, m:]):
        assert bool((block[far] == 0).all()) and bool((block[~far] != 0).all())
    for noise in a.transition.noise():
        torch.testing.assert_close(noise, torch.full((m,), 0.1, dtype=torch.float64))
    assert a.initial_state(1).var_upper[0, 0].item() == 10.0


@pytest.mark.parametrize("kind", ["rkn", "lstm"])
def test_unchecked_step_is_the_same_math(kind: str) -> None:
    model = make(kind)
    obs, valid, _, _ = inputs(2, 1)
    step_obs = {k: torch.where(valid[k][:, 0].view(-1, *(1,) * (v.dim() - 2)), v[:, 0], 0.0)
                for k, v in obs.items()}
    step_valid = {k: v[:, 0] for k, v in valid.items()}
    with torch.no_grad():
        checked = model.step(model.initial_state(2), step_obs, step_valid)
        unchecked = model.step(model.initial_state(2), step_obs, step_valid, check=False)
    assert torch.equal(checked.mean, unchecked.mean) and torch.equal(checked.var, unchecked.var)


def test_float32_small_batch_convolution_path_matches_batched_path() -> None:
    # step at batch 1 takes the im2col convolution, forward over 20 frames the oneDNN one
    model = make(image_decoder=True).float()
    obs, valid, _, _ = inputs(1, 20)
    obs = {k: v.float() for k, v in obs.items()}
    with torch.no_grad():
        seq = model(obs, valid)
        state = model.initial_state(1)
        for t in range(20):
            out = model.step(state, {k: v[:, t] for k, v in obs.items()},
                             {k: v[:, t] for k, v in valid.items()})
            state = out.state
            torch.testing.assert_close(out.mean, seq.mean[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(out.image, seq.image[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["rkn", "lstm", "gru"])
def test_compiled_step_equals_step(kind: str) -> None:
    # the traced, frozen step (the runtime's fast path) is the same function as `step`, also
    # with missing samples, actions and dt; and it is a snapshot of the weights
    model = make(kind, action_dim=2, use_dt=True)
    obs, valid, actions, dt = inputs(2, 8, action_dim=2, use_dt=True)
    obs = {k: torch.where(valid[k].view(*valid[k].shape, *(1,) * (v.dim() - 2)), v, 0.0)
           for k, v in obs.items()}
    compiled = model.compile_step(batch_size=2)
    with torch.inference_mode():
        state = fast_state = model.initial_state(2)
        for t in range(8):
            args = ({k: v[:, t] for k, v in obs.items()}, {k: v[:, t] for k, v in valid.items()},
                    actions[:, t], dt[:, t])
            out = model.step(state, *args)
            fast = compiled(fast_state, *args)
            torch.testing.assert_close(fast.mean, out.mean, atol=1e-6, rtol=0)
            torch.testing.assert_close(fast.var, out.var, atol=1e-6, rtol=0)
            for got, want in zip(state_tensors(fast.state), state_tensors(out.state), strict=True):
                torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
            state, fast_state = out.state, fast.state
        assert isinstance(fast.state, Belief) == (kind == "rkn")
        before = model.step(model.initial_state(2), *args)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.1)
        changed = model.step(model.initial_state(2), *args)
        snapshot = compiled(model.initial_state(2), *args)
        assert not torch.allclose(changed.mean, snapshot.mean)
        torch.testing.assert_close(snapshot.mean, before.mean, atol=1e-6, rtol=0)
        for got, want in zip(state_tensors(snapshot.state), state_tensors(before.state),
                             strict=True):
            torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="batch_size: expected a positive integer, received 0"):
        model.compile_step(batch_size=0)
