"""The streaming estimator (rkn_ros.runtime) on real checkpoint files; no ROS."""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from test_runtime_support import (
    make_joint_checkpoint,
    make_monotone_pendulum_checkpoint,
    make_pendulum_checkpoint,
)

from rkn_ros.core.checkpoint import CheckpointError
from rkn_ros.core.decode import UNIFORM_ANGLE_STD, chain_points, sincos_pairs
from rkn_ros.runtime import (
    InputError,
    LatencyStats,
    OutputLayout,
    OutputLayoutError,
    StreamingEstimator,
)
from rkn_ros.runtime.metrics import OnlineMetrics, wrapped_error
from rkn_ros.runtime.onnx_backend import OnnxSplitStep

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return {
        "pendulum": make_pendulum_checkpoint(root / "pendulum"),
        "monotone": make_monotone_pendulum_checkpoint(root / "monotone"),
        "joint": make_joint_checkpoint(root / "joint"),
        "joint_gru": make_joint_checkpoint(root / "joint_gru", kind="gru"),
    }


def _frames(count: int, seed: int = 0) -> list[np.ndarray | None]:
    rng = np.random.default_rng(seed)
    return [
        None if k % 3 == 1 else rng.integers(0, 256, (24, 24), dtype=np.uint8) for k in range(count)
    ]


def test_step_matches_the_model_sequence_forward(checkpoints):
    """The runtime's step (host-checked inputs, no per-step checks) equals model.forward."""
    est = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")
    frames = _frames(12)
    outputs = [est.step({"image": f}) for f in frames]
    images = torch.stack(
        [torch.zeros(24, 24) if f is None else torch.from_numpy(f).float() / 255 for f in frames]
    )[None]
    valid = torch.tensor([f is not None for f in frames])[None]
    with torch.inference_mode():
        seq = est.model({"image": images}, {"image": valid})
    mean, std = est.layout.decode(seq.mean[0].double().numpy(), seq.var[0].double().numpy())
    np.testing.assert_allclose(np.stack([o.mean for o in outputs]), mean, atol=1e-5)
    np.testing.assert_allclose(np.stack([o.std for o in outputs]), std, atol=1e-5)
    assert [o.used["image"] for o in outputs] == [f is not None for f in frames]
    assert outputs[-1].names == ("joint_1",) and outputs[-1].units == ("rad",)
    assert outputs[-1].step_index == 12


def test_reset_returns_to_the_initial_belief(checkpoints):
    est = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")
    frames = _frames(6, seed=1)
    first = [est.step({"image": f}).mean for f in frames]
    est.reset()
    assert est.steps_since_reset == 0
    again = [est.step({"image": f}).mean for f in frames]
    np.testing.assert_array_equal(np.stack(first), np.stack(again))


def test_missing_inputs_raise_uncertainty_and_observations_lower_it(checkpoints):
    est = StreamingEstimator.from_checkpoint(checkpoints["monotone"], device="cpu")
    frame = np.zeros((24, 24), np.uint8)
    frame[12:, 11:13] = 255
    seen = [est.step({"image": frame}).std[0] for _ in range(10)]
    gap = [est.step({"image": None}).std[0] for _ in range(5)]
    back = [est.step({"image": frame}).std[0]]
    assert all(b > a for a, b in itertools.pairwise(gap))
    assert gap[0] > seen[-1]
    assert back[0] < gap[-1]


def test_predict_leaves_the_belief_alone_and_matches_stepping_blind(checkpoints):
    est = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")
    for frame in _frames(5, seed=2):
        est.step({"image": frame})
    prediction = est.predict(4)
    assert prediction.mean.shape == (4, 1) and prediction.std.shape == (4, 1)
    assert prediction.dt == pytest.approx(0.05)
    # Stepping with no observation gives the posterior of the prior = the first predicted tick.
    blind = est.step({"image": None})
    np.testing.assert_allclose(blind.mean, prediction.mean[0], atol=1e-6)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        est.predict(0)


def test_bad_inputs_are_refused_before_the_belief_changes(checkpoints):
    est = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")
    reference = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")
    frame = np.full((24, 24), 80, np.uint8)
    cases = [
        ({"image": np.zeros((20, 24), np.uint8)}, "wrong_size"),
        ({"image": np.zeros((24, 24, 4), np.uint8)}, "wrong_shape"),
        ({"image": np.zeros((24, 24), np.int32)}, "wrong_dtype"),
        ({"image": np.full((24, 24), np.nan, np.float32)}, "non_finite"),
        ({"image": np.full((24, 24), 2.0, np.float32)}, "out_of_range"),
        ({"camera": frame}, "unknown_input"),
    ]
    for inputs, reason in cases:
        with pytest.raises(InputError) as info:
            est.step(inputs)
        assert info.value.reason == reason, str(info.value)
    with pytest.raises(InputError, match="takes no action"):
        est.step({"image": frame}, action=[1.0])
    np.testing.assert_array_equal(
        est.step({"image": frame}).mean, reference.step({"image": frame}).mean
    )


def test_image_encodings_give_the_same_estimate(checkpoints):
    """uint8, uint16 (x257), float [0, 1] and RGB with equal channels are the same picture."""
    est = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")
    grey = np.random.default_rng(3).integers(0, 256, (24, 24), dtype=np.uint8)
    variants = [
        grey,
        grey.astype(np.uint16) * 257,
        grey.astype(np.float32) / 255.0,
        np.repeat(grey[:, :, None], 3, axis=2),
        grey[:, :, None],
    ]
    means = []
    for image in variants:
        est.reset()
        means.append(est.step({"image": image}).mean)
    for mean in means[1:]:
        np.testing.assert_allclose(mean, means[0], atol=1e-5)


def test_resizing_only_when_configured(checkpoints):
    big = np.zeros((48, 48), np.uint8)
    strict = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")
    with pytest.raises(InputError, match="expected image size"):
        strict.check_input("image", big)
    resizing = StreamingEstimator.from_checkpoint(
        checkpoints["pendulum"], device="cpu", resize_images=True, image_shape=(48, 48)
    )
    assert resizing.step({"image": big}).mean.shape == (1,)


def test_steps_reuse_their_buffers_without_growing(checkpoints):
    est = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")
    frames = _frames(30, seed=4)
    pointer = est.buffers.obs["image"].data_ptr()
    for frame in frames * 10:
        est.step({"image": frame})
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for frame in frames * 20:
        est.step({"image": frame})
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert growth < 64 * 1024, f"{growth} bytes retained over 600 steps"
    assert est.buffers.obs["image"].data_ptr() == pointer
    assert est.latency.total == 900 and est.latency.count == 900  # every step timed


def test_action_conditioned_vector_model(checkpoints):
    est = StreamingEstimator.from_checkpoint(checkpoints["joint"], device="cpu")
    out = est.step({"joints": np.array([0.2, 2.5, 1.5])}, action=[3.0, 1.0])
    assert out.joint_names == ("joint",)
    assert out.velocity is not None and out.velocity_std is not None
    assert out.position.shape == (1,) and np.all(out.std > 0)
    # The held command and an explicit identical one predict the same; another one differs.
    held = est.predict(5)
    explicit = est.predict(5, actions=np.tile([3.0, 1.0], (5, 1)))
    other = est.predict(5, actions=np.tile([0.0, 4.0], (5, 1)))
    np.testing.assert_allclose(held.mean, explicit.mean)
    assert not np.allclose(held.mean[1:], other.mean[1:])
    with pytest.raises(InputError, match="expected 2 values"):
        est.step({"joints": np.zeros(3)}, action=[1.0])
    with pytest.raises(InputError) as info:
        est.step({"joints": np.array([0.0, np.inf, 1.0])})
    assert info.value.reason == "non_finite"
    with pytest.raises(ValueError, match="actions must have shape"):
        est.predict(3, actions=np.zeros((2, 2)))


def test_a_refused_tick_changes_nothing_and_huge_values_never_reach_the_belief(checkpoints):
    """Every check runs before anything is written: a tick refused for its dt must not leave
    its command held, and values that are finite but overflow the float32 buffers (which
    turned every later estimate into NaN until a reset) are refused as out_of_range."""
    est = StreamingEstimator.from_checkpoint(checkpoints["joint"], device="cpu")
    reference = StreamingEstimator.from_checkpoint(checkpoints["joint"], device="cpu")
    good = np.array([0.2, 2.5, 1.5])
    for e in (est, reference):
        e.step({"joints": good}, action=[1.0, 1.0])
    refused = [
        ({"joints": good}, {"action": [4.0, 0.0], "dt": -1.0}, "bad_dt"),
        ({"joints": good}, {"action": [4.0, 0.0], "dt": "soon"}, "bad_dt"),
        ({"joints": good}, {"action": [4.0, 0.0], "dt": 1e39}, "bad_dt"),
        ({"joints": np.array([1e39, 2.0, 2.0])}, {}, "out_of_range"),
        ({"joints": good}, {"action": [1e39, 0.0]}, "out_of_range"),
        ({"joints": good}, {"action": ["a", "b"]}, "wrong_dtype"),
        ({"joints": [[0.2], [2.5, 1.5]]}, {}, "wrong_shape"),  # ragged
        ({"joints": np.array([0.2, 2.5, 1.5]) * 1j}, {}, "wrong_dtype"),
        ([good], {}, "wrong_type"),
    ]
    for inputs, extra, reason in refused:
        with pytest.raises(InputError) as info:
            est.step(inputs, **extra)
        assert info.value.reason == reason, (inputs, extra, str(info.value))
    for _ in range(3):  # the same belief and the same held command as the reference's
        out, expected = est.step({"joints": good}), reference.step({"joints": good})
        assert np.all(np.isfinite(out.mean))
        np.testing.assert_array_equal(out.mean, expected.mean)
        np.testing.assert_array_equal(out.std, expected.std)
    # a one-element dt is a dt; the difference from the mean may overflow float32 on its own
    est.step({"joints": good}, dt=np.array([0.02]))
    with pytest.raises(ValueError, match="steps must be an integer"):
        est.predict(2.5)
    assert est.predict(np.int64(3)).mean.shape == (3, 2)  # a numpy integer is an integer


def test_images_the_model_cannot_take_are_refused_with_the_reason(checkpoints, tmp_path):
    """Empty frames (also with resizing on, where OpenCV would fail mid-step), colour frames
    for a model of another channel count, and big-endian frames (read, not refused)."""
    resizing = StreamingEstimator.from_checkpoint(
        checkpoints["pendulum"], device="cpu", resize_images=True
    )
    for empty in (np.zeros((0, 0), np.uint8), np.zeros((1, 0), np.uint8),
                  np.zeros((0, 24), np.float32)):
        with pytest.raises(InputError) as info:
            resizing.step({"image": empty})
        assert info.value.reason == "wrong_size", str(info.value)
    frame = np.random.default_rng(5).integers(0, 65536, (24, 24)).astype(np.uint16)
    native = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")
    swapped = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")
    np.testing.assert_array_equal(
        native.step({"image": frame}).mean, swapped.step({"image": frame.astype(">u2")}).mean
    )
    four = StreamingEstimator.from_checkpoint(
        make_pendulum_checkpoint(tmp_path / "four_channels", channels=4), device="cpu"
    )
    with pytest.raises(InputError, match="takes 4 channels, not a colour image"):
        four.step({"image": np.zeros((24, 24, 3), np.uint8)})
    assert four.step({"image": np.zeros((24, 24), np.uint8)}).mean.shape == (1,)


def test_a_dt_model_predicts_in_steps_of_the_dt_it_is_ticked_at(tmp_path):
    """A model with a dt input ticked at 0.02 s (its metadata says 0.05) predicts 0.02 s
    steps: the prediction equals stepping blind with that dt, and says so in ``dt``."""
    path = make_joint_checkpoint(tmp_path / "dt_model", use_dt=True, dt=0.05)
    est = StreamingEstimator.from_checkpoint(path, device="cpu")
    assert est.uses_dt and est.dt == pytest.approx(0.05)
    for k in range(4):
        est.step({"joints": np.array([0.1 * k, 2.0, 2.0])}, action=[2.0, 2.0], dt=0.02)
    prediction = est.predict(3)
    assert prediction.dt == pytest.approx(0.02)
    blind = [est.step({}, dt=0.02).mean for _ in range(3)]
    np.testing.assert_allclose(prediction.mean, np.stack(blind), atol=1e-5)


def test_advance_moves_the_prediction_off_the_step_and_changes_no_result(tmp_path):
    """An RKN step runs in two parts. Whether the caller runs the prediction right after
    publishing (``advance``) or leaves it to the next ``step``, every estimate and prediction
    is the same and each tick has one latency entry; the action and dt it uses are the ones of
    its own tick, not of the step that runs it; a refused step leaves it pending."""
    path = make_joint_checkpoint(tmp_path / "dt_model", use_dt=True, dt=0.05)
    eager = StreamingEstimator.from_checkpoint(path, device="cpu", split_step=True)
    lazy = StreamingEstimator.from_checkpoint(path, device="cpu", split_step=True)
    traced = StreamingEstimator.from_checkpoint(path, device="cpu", cpu_backend="torchscript",
                                                split_step=True)
    whole = StreamingEstimator.from_checkpoint(path, device="cpu")
    assert eager.splits_step and not traced.splits_step and not whole.splits_step
    assert eager.backend == whole.backend == "onnxruntime"
    rng = np.random.default_rng(8)
    for k in range(25):
        reading = None if k % 5 == 4 else rng.normal(size=3) + np.array([0.0, 2.0, 2.0])
        action, dt = rng.uniform(0.0, 4.0, size=2), 0.01 + 0.04 * rng.random()
        outs = [est.step({"joints": reading}, action=action, dt=dt)
                for est in (eager, lazy, traced, whole)]
        assert lazy.advance_pending and eager.advance_pending
        if k % 7 == 3:  # refused before anything runs: the prediction stays pending
            with pytest.raises(InputError):
                lazy.step({"joints": np.array([np.nan, 0.0, 0.0])}, action=[9.0, 9.0], dt=0.5)
            assert lazy.advance_pending
        eager.advance()
        whole.advance()  # nothing to do: the whole step ran
        assert not eager.advance_pending and not whole.advance_pending
        np.testing.assert_allclose(outs[0].mean, outs[3].mean, atol=1e-5)
        assert eager.latency.count == lazy.latency.count == k + 1  # one entry per tick
        np.testing.assert_array_equal(outs[0].mean, outs[1].mean)
        np.testing.assert_allclose(outs[0].mean, outs[2].mean, atol=1e-5)
        np.testing.assert_allclose(outs[0].std, outs[2].std, atol=1e-5)
        if k in (10, 20):  # the pending prediction runs first
            np.testing.assert_array_equal(lazy.predict(4).mean, eager.predict(4).mean)
            np.testing.assert_allclose(lazy.predict(4).mean, traced.predict(4).mean, atol=1e-5)
    lazy.reset()  # a pending prediction is dropped with the belief
    traced.reset()
    np.testing.assert_allclose(lazy.step({}).mean, traced.step({}).mean, atol=1e-6)


def test_a_split_step_that_cannot_be_built_leaves_the_whole_onnx_step(checkpoints, monkeypatch):
    class Refused(OnnxSplitStep):
        def __init__(self, *args, **kwargs) -> None:
            raise RuntimeError("no split here")

    monkeypatch.setattr("rkn_ros.runtime.backends.onnx.OnnxSplitStep", Refused)
    est = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu",
                                             split_step=True)
    assert est.backend == "onnxruntime" and not est.splits_step
    assert est.split_error == "no split here" and est.backend_error is None


def test_recurrent_baseline_checkpoint_serves_too(checkpoints):
    est = StreamingEstimator.from_checkpoint(checkpoints["joint_gru"], device="cpu")
    first = est.step({"joints": None})
    est.step({"joints": np.array([0.1, 2.0, 2.0])}, action=[2.0, 2.0])
    est.reset()
    np.testing.assert_array_equal(est.step({"joints": None}).mean, first.mean)


def test_checkpoint_problems_are_one_clear_error(checkpoints, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        StreamingEstimator.from_checkpoint(tmp_path / "nothing", device="cpu")
    with pytest.raises(CheckpointError, match="image size"):
        StreamingEstimator.from_checkpoint(
            checkpoints["pendulum"], device="cpu", image_shape=(48, 48)
        )
    broken = make_pendulum_checkpoint(tmp_path / "broken")
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=r"corrupt|sha256"):
        StreamingEstimator.from_checkpoint(broken, device="cpu")


def test_device_strings_that_cannot_serve_are_one_clear_error(monkeypatch):
    from rkn_ros.core.checkpoint import resolve_device

    for text in ("gpu", "cudafoo", "cuda:x", "mps"):
        with pytest.raises(ValueError, match="device must be 'cpu', 'cuda', 'cuda:N' or 'auto'"):
            resolve_device(text)
    assert resolve_device("cpu") == torch.device("cpu")
    # a GPU machine with two devices (what torch reports is all resolve_device reads)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"has 2 CUDA device\(s\): cuda:0 to cuda:1"):
        resolve_device("cuda:2")


def test_device_choice(checkpoints):
    est = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="auto")
    if torch.cuda.is_available():
        assert est.device.type == "cuda"
        assert est.graph_error is None and est.backend == "cuda_graph"
        cpu = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")
        for frame in _frames(10, seed=4):
            np.testing.assert_allclose(est.step({"image": frame}).mean,
                                       cpu.step({"image": frame}).mean, atol=1e-4)
    else:
        # requirements.txt installs onnxruntime: the fast CPU path must be the one serving
        assert est.device.type == "cpu" and est.backend == "onnxruntime", est.backend_error
    with pytest.raises(ValueError, match="device"):
        StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="tpu")


@pytest.mark.parametrize("name", ["pendulum", "joint", "joint_gru"])
def test_cpu_backends_agree(checkpoints, name):
    """ONNX Runtime and TorchScript serve the same estimates, predictions and resets."""
    fast = StreamingEstimator.from_checkpoint(checkpoints[name], device="cpu")
    traced = StreamingEstimator.from_checkpoint(
        checkpoints[name], device="cpu", cpu_backend="torchscript"
    )
    assert (fast.backend, traced.backend) == ("onnxruntime", "torchscript")

    def tick(est: StreamingEstimator, k: int):
        if name == "pendulum":
            return est.step({"image": _frames(30, seed=6)[k]})
        reading = None if k % 4 == 3 else np.array([0.1 * (k % 10), 2.0, 1.0 + 0.1 * k])
        return est.step({"joints": reading}, action=[1.0 + k % 3, 2.0])

    for k in range(30):
        a, b = tick(fast, k), tick(traced, k)
        np.testing.assert_allclose(a.mean, b.mean, atol=1e-5)
        np.testing.assert_allclose(a.std, b.std, atol=1e-5)
        if k == 20:
            np.testing.assert_allclose(fast.predict(6).mean, traced.predict(6).mean, atol=1e-5)
    fast.reset()
    traced.reset()
    np.testing.assert_allclose(tick(fast, 0).mean, tick(traced, 0).mean, atol=1e-6)


def test_cpu_backend_choice_and_fallback(checkpoints, monkeypatch):
    with pytest.raises(ValueError, match="cpu_backend"):
        StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu",
                                           cpu_backend="tensorrt")
    # Where onnxruntime is not installed: auto falls back and says why; asking for it fails.
    monkeypatch.setattr("rkn_ros.runtime.backends.onnxruntime_available", lambda: False)
    est = StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")
    assert est.backend == "torchscript" and "not installed" in est.backend_error
    with pytest.raises(CheckpointError, match=r"cannot run in ONNX Runtime: .*not installed"):
        StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu",
                                           cpu_backend="onnxruntime")


def test_sincos_decoding_propagates_the_spread():
    layout = OutputLayout.from_metadata(
        {"names": ["a", "b"], "units": ["rad", "rad"], "kind": "sincos"},
        {"names": ["sin_a", "cos_a", "cos_b", "sin_b"]},
        4,
    )
    theta_a, theta_b = 0.7, -2.0
    mean = np.array([math.sin(theta_a), math.cos(theta_a), math.cos(theta_b), math.sin(theta_b)])
    var = np.array([1e-4, 1e-4, 4e-4, 4e-4])
    angles, std = layout.decode(mean, var)
    np.testing.assert_allclose(angles, [theta_a, theta_b], atol=1e-12)
    # Monte Carlo of atan2 under the same independent Gaussians
    rng = np.random.default_rng(0)
    samples = mean + rng.standard_normal((200_000, 4)) * np.sqrt(var)
    mc_a = np.arctan2(samples[:, 0], samples[:, 1]).std()
    mc_b = np.arctan2(samples[:, 3], samples[:, 2]).std()
    np.testing.assert_allclose(std, [mc_a, mc_b], rtol=0.02)
    # No information (mean at the origin) is the uniform-angle spread, never inf/NaN
    _, flat = layout.decode(np.zeros(4), np.ones(4))
    np.testing.assert_allclose(flat, UNIFORM_ANGLE_STD)


SIN, COS = math.sin, math.cos


@pytest.mark.parametrize(
    "targets",
    [
        [("sin_a", SIN, "a"), ("cos_a", COS, "a"), ("sin_b", SIN, "b"), ("cos_b", COS, "b")],
        [("a_cos", COS, "a"), ("a_sin", SIN, "a"), ("b_cos", COS, "b"), ("b_sin", SIN, "b")],
        [("sin1", SIN, "a"), ("sin2", SIN, "b"), ("cos1", COS, "a"), ("cos2", COS, "b")],
        [("cos_b", COS, "b"), ("sin_a", SIN, "a"), ("sin_b", SIN, "b"), ("cos_a", COS, "a")],
        [("s0", SIN, "a"), ("s1", COS, "a"), ("s2", SIN, "b"), ("s3", COS, "b")],  # unsaid
        [("costheta", COS, "a"), ("sintheta", SIN, "a"), ("cosphi", COS, "b"),
         ("sinphi", SIN, "b")],
        [("cosine_1", COS, "a"), ("sine_1", SIN, "a"), ("cosine_2", COS, "b"),
         ("sine_2", SIN, "b")],
    ],
    ids=["trainer", "suffix_cos_first", "grouped", "shuffled", "unnamed", "joined", "words"],
)
def test_sincos_pairs_are_read_from_the_target_names(targets):
    """The pairs of sin and cos targets behind each angle, however the names lay them out
    (a pair named ``a_cos, a_sin`` once decoded to 1.27 rad instead of 0.3); the offline
    evaluation reads them the same way."""
    angles = {"a": 0.3, "b": 0.6}
    names = [name for name, _, _ in targets]
    mean = np.array([trig(angles[joint]) for _, trig, joint in targets])
    layout = OutputLayout.from_metadata(
        {"names": ["a", "b"], "units": ["rad", "rad"], "kind": "sincos"}, {"names": names}, 4
    )
    np.testing.assert_allclose(layout.decode(mean, np.full(4, 1e-4))[0], [0.3, 0.6], atol=1e-12)
    np.testing.assert_allclose(layout.decode(mean[None], np.full((1, 4), 1e-4))[0][0], [0.3, 0.6],
                               atol=1e-12)
    sin_index, cos_index = sincos_pairs(names, 2)
    np.testing.assert_array_equal(sin_index, layout.sin_index)
    np.testing.assert_array_equal(cos_index, layout.cos_index)


def test_sincos_names_of_which_only_some_say_sin_or_cos_are_an_error():
    with pytest.raises(OutputLayoutError, match="expected 2 names with 'sin' and 2 with 'cos'"):
        OutputLayout.from_metadata(
            {"names": ["a", "b"], "units": ["rad", "rad"], "kind": "sincos"},
            {"names": ["sin_a", "cos_a", "x_b", "y_b"]}, 4,
        )


def test_one_tick_decoding_equals_the_array_form():
    """A tick ``[target_dim]`` takes a scalar path; rows of a batch take the numpy one. They
    must give the same numbers (to the last bit but one: numpy's vector atan2 may round
    differently from libm's), also at the origin, for huge or tiny means and NaN."""
    layout = OutputLayout.from_metadata(
        {"names": ["a", "b", "a_velocity", "b_velocity"],
         "units": ["rad", "rad", "rad/s", "rad/s"], "kind": "sincos"},
        {"names": ["cos_a", "sin_a", "sin_b", "cos_b", "a_velocity", "b_velocity"]},
        6,
        {"targets": {"mean": [0.1, -0.2, 0.0, 0.3, 1.0, -1.0],
                     "std": [0.9, 1.1, 1.0, 0.5, 2.0, 3.0]}},
    )
    rng = np.random.default_rng(3)
    means = rng.standard_normal((200, 6))
    variances = rng.exponential(0.3, (200, 6))
    means[0, :4] = [-0.1 / 0.9, 0.2 / 1.1, 0.0, -0.3 / 0.5]  # both angles at the origin
    means[1, :2] = [1e200, -1e200]  # overflowing squares
    means[2, 2:4] = [1e-170, -0.6]  # underflowing radius^2
    means[3, 0] = np.nan
    variances[4, :] = -1.0  # negative variances are clipped to 0
    batch_mean, batch_std = layout.decode(means, variances)
    for row in range(means.shape[0]):
        tick_mean, tick_std = layout.decode(means[row], variances[row])
        assert tick_mean.shape == tick_std.shape == (4,)
        np.testing.assert_allclose(tick_mean, batch_mean[row], rtol=1e-15, atol=0)
        np.testing.assert_allclose(tick_std, batch_std[row], rtol=1e-15, atol=0)


def test_direct_layout_with_velocities_and_normalization():
    layout = OutputLayout.from_metadata(
        {"names": ["j", "j_velocity"], "units": ["rad", "rad/s"], "kind": "direct"},
        {"names": ["j", "j_velocity"]},
        2,
        {"targets": {"mean": [1.0, 0.0], "std": [2.0, 3.0]}},
    )
    mean, std = layout.decode(np.array([0.5, -1.0]), np.array([0.25, 4.0]))
    np.testing.assert_allclose(mean, [2.0, -3.0])
    np.testing.assert_allclose(std, [1.0, 6.0])
    assert layout.joint_names == ("j",)
    assert layout.velocity_index.tolist() == [1]
    # names that do not pair by suffix pair in order ("angle", "angular_velocity")
    paired = OutputLayout.from_metadata(
        {"names": ["angle", "angular_velocity"], "units": ["rad", "rad/s"], "kind": "direct"},
        {},
        2,
    )
    assert paired.joint_names == ("angle",) and paired.velocity_index.tolist() == [1]
    with pytest.raises(OutputLayoutError, match="no position output"):
        OutputLayout.from_metadata(
            {
                "names": ["x", "y_velocity", "z_velocity"],
                "units": ["rad", "rad/s", "rad/s"],
                "kind": "direct",
            },
            {},
            3,
        )
    with pytest.raises(OutputLayoutError, match="2 output names for 3 targets"):
        OutputLayout.from_metadata(
            {"names": ["a", "b"], "units": ["m", "m"], "kind": "direct"}, {}, 3
        )


def test_latency_window_percentiles():
    stats = LatencyStats(window=100)
    assert math.isnan(stats.p50_ms)
    stats.add_to_last(1.0)  # nothing recorded yet: nothing to add to
    assert stats.count == 0
    for value in range(1, 301):  # only the last 100 (201..300 ms) stay in the window
        stats.add(value * 1e-3)
    assert stats.count == 100 and stats.total == 300
    assert stats.p50_ms == pytest.approx(250.5)
    assert stats.p99_ms == pytest.approx(299.01)
    assert stats.max_ms == pytest.approx(300.0)
    stats.add_to_last(0.1)  # the newest entry (300 ms, in the ring's last slot) -> 400 ms
    assert stats.max_ms == pytest.approx(400.0) and stats.count == 100
    stats.add(0.5)  # the ring's first slot again
    stats.add_to_last(0.25)
    assert stats.max_ms == pytest.approx(750.0) and stats.total == 301


def test_online_metrics_match_the_batch_formulas():
    rng = np.random.default_rng(5)
    truth = rng.uniform(-math.pi, math.pi, (400, 2))
    std = rng.uniform(0.05, 0.3, (400, 2))
    estimate = truth + rng.standard_normal((400, 2)) * std
    metrics = OnlineMetrics(2, wrap=True)
    for e, s, t in zip(estimate, std, truth, strict=True):
        metrics.add(e, s, t)
    summary = metrics.summary()
    err = wrapped_error(estimate, truth, True)
    assert summary["rmse"] == pytest.approx(np.sqrt(np.mean(err**2)))
    nll = np.mean(np.sum(0.5 * (np.log(2 * np.pi) + np.log(std**2) + err**2 / std**2), axis=1))
    assert summary["nll"] == pytest.approx(nll)
    assert summary["coverage_2sigma"] == pytest.approx(np.mean(np.abs(err) <= 2 * std))
    assert 0.9 < summary["coverage_2sigma"] < 0.99
    # across the +-pi seam the error is small, not 2 pi
    assert wrapped_error(np.array([math.pi - 0.01]), np.array([-math.pi + 0.01]), True)[0] == (
        pytest.approx(-0.02)
    )
    with pytest.raises(ValueError, match="NaN"):
        metrics.add(np.array([np.nan, 0.0]), np.ones(2), np.zeros(2))


def test_chain_points_hang_down_at_zero():
    points = chain_points(np.array([0.0, math.pi / 2]), np.array([1.0, 2.0]))
    np.testing.assert_allclose(points, [[0, 0], [0, -1], [2, -1]], atol=1e-12)


PIN_CHECK = """
import json, os, threading
from rkn_ros.runtime.affinity import pin_process
started, stop = threading.Event(), threading.Event()
earlier = threading.Thread(target=lambda: (started.set(), stop.wait()))
earlier.start()
started.wait()
cpu = max(os.sched_getaffinity(0))
pinned = pin_process([cpu])
seen = {}
later = threading.Thread(target=lambda: seen.update(later=sorted(os.sched_getaffinity(0))))
later.start()
later.join()
seen["earlier"] = sorted(os.sched_getaffinity(earlier.native_id))
stop.set()
earlier.join()
errors = []
for bad in ([], [4096]):
    try:
        pin_process(bad)
    except ValueError as err:
        errors.append(str(err))
print(json.dumps(dict(cpu=cpu, pinned=pinned, errors=errors, **seen)))
"""


def test_pin_process_covers_threads_before_and_after_and_names_the_allowed_cpus():
    if len(os.sched_getaffinity(0)) < 2:  # CI has two: there it always runs
        pytest.skip("with one CPU every thread is on it anyway: pinning cannot be shown")
    # in a child process: pinning pytest itself would slow the rest of the run
    result = subprocess.run(
        [sys.executable, "-c", PIN_CHECK], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    got = json.loads(result.stdout.splitlines()[-1])
    cpu = got["cpu"]
    assert got["pinned"] == got["earlier"] == got["later"] == [cpu]
    assert got["errors"][0] == "no CPUs given"
    assert f"[4096] are not available to this process (it may use [{cpu}])" in got["errors"][1]


@pytest.mark.parametrize("package", ["runtime", "train"])
def test_the_runtime_and_the_trainer_read_no_private_attribute_of_another_object(package):
    """The runtime and the trainer drive the model through its public step contract only (and
    every other object through its public API): no `x._name` where x is not `self`."""
    import ast

    root = Path(__file__).resolve().parents[1] / "rkn_ros" / package
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            own = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
                node.value.id in ("self", "cls"))
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__") and not own):
                found.append(f"{path.relative_to(root)}:{node.lineno} .{node.attr}")
    assert not found, found
    assert len(list(root.rglob("*.py"))) > 10  # the scan saw the package
