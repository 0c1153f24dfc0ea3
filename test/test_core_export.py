"""The ONNX step export, run in ONNX Runtime on bound buffers, against the PyTorch step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rkn_ros.core import ModelConfig, SensorSpec, build_model
from rkn_ros.core.export import export_step_onnx
from rkn_ros.runtime.onnx_backend import OnnxRuntimeStep, OnnxSplitStep

IMAGE = SensorSpec("image", "image", (24, 24))
COLOUR = SensorSpec("camera", "image", (3, 32, 32))
JOINTS = SensorSpec("joints", "vector", (3,))


def _model(kind: str, sensors, **extra) -> torch.nn.Module:
    torch.manual_seed(3)
    config = ModelConfig(sensors=sensors, output_dim=4, latent_obs_dim=6, num_basis=4,
                         hidden_size=12, kind=kind, **extra)
    model = build_model(config).eval()
    if config.state_dependent_noise:  # it starts at zero: make the state dependence show
        with torch.no_grad():
            model.transition.noise_net.weight.normal_(0.0, 0.5)
    return model


CASES = {
    "rkn_image_and_joints_with_action_and_dt": ("rkn", (IMAGE, JOINTS),
                                                {"action_dim": 2, "use_dt": True}),
    "rkn_colour_learned_initial_state": ("rkn", (COLOUR,), {"learn_initial_state": True}),
    "lstm_image_and_joints_with_action": ("lstm", (IMAGE, JOINTS), {"action_dim": 2}),
    "gru_joints_with_dt": ("gru", (JOINTS,), {"use_dt": True}),
    "rkn_joints_state_dependent_noise": ("rkn", (JOINTS,), {"state_dependent_noise": True}),
}


def _buffers_and_state(model: torch.nn.Module) -> tuple[dict[str, np.ndarray], object, list]:
    """Zeroed input buffers for every graph input but the state, the initial state and it as
    numpy arrays."""
    buffers: dict[str, np.ndarray] = {}
    for spec in model.sensors:
        buffers[f"obs_{spec.name}"] = np.zeros((1, *spec.shape), dtype=np.float32)
        buffers[f"valid_{spec.name}"] = np.zeros(1, dtype=bool)
    if model.config.action_dim:
        buffers["action"] = np.zeros((1, model.config.action_dim), dtype=np.float32)
    if model.config.use_dt:
        buffers["dt"] = np.zeros((1, 1), dtype=np.float32)
    with torch.inference_mode():
        state = model.initial_state(1)
        initial = [t.numpy() for t in model.flatten_state(state)]
    return buffers, state, initial


def _random_tick(sensors, buffers: dict[str, np.ndarray], rng: np.random.Generator):
    """One tick of random samples, each present with probability 0.6, written in place into
    ``buffers`` (the bindings read them) and returned as `model.step` takes them."""
    observations, valid = {}, {}
    for spec in sensors:
        present = bool(rng.random() < 0.6)
        sample = (rng.random(spec.shape) if spec.kind == "image"
                  else rng.normal(size=spec.shape)).astype(np.float32) * present
        buffers[f"obs_{spec.name}"][0] = sample
        buffers[f"valid_{spec.name}"][0] = present
        observations[spec.name] = torch.from_numpy(sample)[None]
        valid[spec.name] = torch.tensor([present])
    return observations, valid


def _torch_step(model, state, observations, valid, buffers: dict[str, np.ndarray],
                rng: np.random.Generator):
    """`model.step` on this tick's samples with a random action and dt, both also written
    into ``buffers``."""
    action = dt = None
    if model.config.action_dim:
        buffers["action"][0] = rng.normal(size=model.config.action_dim)
        action = torch.from_numpy(buffers["action"].copy())
    if model.config.use_dt:
        buffers["dt"][0, 0] = 0.02 + 0.05 * rng.random()
        dt = torch.from_numpy(buffers["dt"].copy())
    with torch.inference_mode():
        return model.step(state, observations, valid, action, dt)


@pytest.mark.parametrize("case", sorted(CASES))
def test_onnx_step_equals_the_torch_step_over_a_sequence(case: str) -> None:
    """Thirty ticks with missing samples: same means, variances and state as `model.step`."""
    kind, sensors, extra = CASES[case]
    model = _model(kind, sensors, **extra)
    graph = export_step_onnx(model)
    buffers, state, initial = _buffers_and_state(model)
    runner = OnnxRuntimeStep(graph, buffers, initial)
    rng = np.random.default_rng(0)
    for tick in range(30):
        observations, valid = _random_tick(sensors, buffers, rng)
        expected = _torch_step(model, state, observations, valid, buffers, rng)
        mean, var = runner.run()
        np.testing.assert_allclose(mean, expected.mean.numpy(), atol=2e-5, rtol=1e-4,
                                   err_msg=f"mean at tick {tick}")
        np.testing.assert_allclose(var, expected.var.numpy(), atol=2e-5, rtol=1e-4,
                                   err_msg=f"var at tick {tick}")
        state = expected.state
        for got, want in zip(runner.state, model.flatten_state(state), strict=True):
            np.testing.assert_allclose(got, want.numpy(), atol=2e-5, rtol=1e-4)
    runner.set_state(initial)
    for got, want in zip(runner.state, initial, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", sorted(c for c in CASES if CASES[c][0] == "rkn"))
def test_split_onnx_step_equals_the_torch_step(case: str) -> None:
    """The update and advance graphs run in turn give `model.step`'s means, variances and
    next state; the action and dt buffers are read when `advance` runs."""
    kind, sensors, extra = CASES[case]
    model = _model(kind, sensors, **extra)
    update, advance = (export_step_onnx(model, part=p) for p in ("update", "advance"))
    assert update.output_names[:4] == ("posterior_0", "posterior_1", "posterior_2",
                                       "posterior_3")
    assert "action" not in update.input_names and "obs_image" not in advance.input_names
    buffers, state, initial = _buffers_and_state(model)
    runner = OnnxSplitStep(update, advance, buffers, initial)
    rng = np.random.default_rng(1)
    for _ in range(20):
        observations, valid = _random_tick(sensors, buffers, rng)
        mean, var = runner.run()  # the update reads no action or dt: written after it
        expected = _torch_step(model, state, observations, valid, buffers, rng)
        np.testing.assert_allclose(mean, expected.mean.numpy(), atol=2e-5, rtol=1e-4)
        np.testing.assert_allclose(var, expected.var.numpy(), atol=2e-5, rtol=1e-4)
        runner.advance()
        state = expected.state
        for got, want in zip(runner.state, model.flatten_state(state), strict=True):
            np.testing.assert_allclose(got, want.numpy(), atol=2e-5, rtol=1e-4)


def test_a_recurrent_baseline_step_does_not_split() -> None:
    with pytest.raises(ValueError, match="does not split"):
        export_step_onnx(_model("gru", (JOINTS,)), part="update")
    with pytest.raises(ValueError, match="part"):
        export_step_onnx(_model("rkn", (JOINTS,)), part="decode")


def test_export_is_a_snapshot_of_the_weights() -> None:
    model = _model("rkn", (JOINTS,))
    before = export_step_onnx(model)
    with torch.no_grad():
        model.decoder.mean_net[-1].bias.add_(1.0)
    after = export_step_onnx(model)
    assert before.model != after.model
    assert before.input_names == ("state_0", "state_1", "state_2", "state_3", "obs_joints",
                                  "valid_joints")
    assert before.output_names[-2:] == ("mean", "var") and before.state_len == 4


def test_missing_buffer_is_named() -> None:
    model = _model("gru", (JOINTS,))
    graph = export_step_onnx(model)
    with torch.inference_mode():
        initial = [t.numpy() for t in model.flatten_state(model.initial_state(1))]
    with pytest.raises(ValueError, match=r"no buffer for inputs \['valid_joints'\]"):
        OnnxRuntimeStep(graph, {"obs_joints": np.zeros((1, 3), np.float32)}, initial)
    with pytest.raises(ValueError, match="batch_size"):
        export_step_onnx(model, batch_size=0)
