"""The input codec through the estimator, on real checkpoint files: range checks from the
training statistics, float32 overflow, the counter keys the docs name, and property tests
(hypothesis) that arbitrary inputs raise nothing but InputError and never give a non-finite
estimate."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_runtime_support import (
    make_joint_checkpoint,
    make_pam_checkpoint,
    make_pendulum_checkpoint,
)

from rkn_ros.core.checkpoint import load_checkpoint, save_checkpoint
from rkn_ros.runtime import InputError, StreamingEstimator, rejection_key
from rkn_ros.runtime.codec import REASONS, value_bounds
from rkn_ros.runtime.spec import ValueStats

torch.set_num_threads(1)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "runtime.md"
# the joint checkpoint's statistics (test_runtime_support): angle, two pressures; two commands
MEAN, STD = np.array([0.1, 2.0, 2.0]), np.array([0.5, 1.0, 1.0])
ACTION_MEAN, ACTION_STD = np.array([2.0, 2.0]), np.array([1.0, 1.0])


def _with_ranges(source: Path, folder: Path) -> Path:
    """The checkpoint re-saved with training min and max beside its mean and std."""
    model, metadata = load_checkpoint(source)
    data = dataclasses.asdict(metadata)
    data.pop("weights_sha256")
    data["normalization"]["inputs"]["joints"].update(min=[-0.5, 0.0, 0.5], max=[0.8, 4.0, 3.0])
    data["normalization"]["actions"].update(min=[0.0, 1.0], max=[5.0, 3.0])
    return save_checkpoint(folder, model, data)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("codec")
    joint = make_joint_checkpoint(root / "joint")
    return {"joint": joint, "ranged": _with_ranges(joint, root / "ranged"),
            "pendulum": make_pendulum_checkpoint(root / "pendulum"),
            "unnormalized": make_pam_checkpoint(root / "unnormalized")}


@pytest.fixture(scope="module")
def joint(checkpoints) -> StreamingEstimator:
    return StreamingEstimator.from_checkpoint(checkpoints["joint"], device="cpu")


def _reason(call) -> str:
    with pytest.raises(InputError) as info:
        call()
    return info.value.reason


def test_bounds_are_k_std_beyond_min_and_max_or_around_the_mean() -> None:
    ranged = ValueStats(np.array([1.0]), np.array([2.0]), np.array([0.0]), np.array([3.0]))
    bounds = value_bounds(ranged, 6.0)
    assert (bounds.low[0], bounds.high[0]) == (-12.0, 15.0)
    bounds = value_bounds(dataclasses.replace(ranged, minimum=None, maximum=None), 6.0)
    assert (bounds.low[0], bounds.high[0]) == (-11.0, 13.0)


def test_a_reading_beyond_the_training_range_is_refused_and_the_belief_untouched(checkpoints):
    """Without min/max (older checkpoints): k std around the mean; the message names the input,
    the element and the value; the refused tick changes nothing."""
    est = StreamingEstimator.from_checkpoint(checkpoints["joint"], device="cpu", range_sigmas=4.0)
    reference = StreamingEstimator.from_checkpoint(checkpoints["joint"], device="cpu")
    edge = MEAN + 3.99 * STD
    est.step({"joints": edge}, action=[2.0, 2.0])
    reference.step({"joints": edge}, action=[2.0, 2.0])
    far = MEAN.copy()
    far[1] = MEAN[1] + 4.01 * STD[1]  # 4.01 std above a pressure's mean
    with pytest.raises(InputError) as info:
        est.step({"joints": far}, action=[2.0, 2.0])
    assert info.value.reason == "out_of_range"
    assert "input 'joints'" in str(info.value) and "6.01" in str(info.value)
    assert "element 1" in str(info.value)
    assert _reason(lambda: est.check_input("joints", -far)) == "out_of_range"
    assert _reason(lambda: est.step({"joints": MEAN}, action=[2.0, 6.5])) == "out_of_range"
    assert _reason(lambda: est.check_action([-2.5, 2.0])) == "out_of_range"
    np.testing.assert_array_equal(est.step({"joints": MEAN}).mean,
                                  reference.step({"joints": MEAN}).mean)


def test_min_and_max_widen_the_range_by_k_std(checkpoints):
    est = StreamingEstimator.from_checkpoint(checkpoints["ranged"], device="cpu")
    assert est.range_sigmas == 6.0
    # the angle's training range [-0.5, 0.8] widened by 6 x 0.5 rad: [-3.5, 3.8]
    est.step({"joints": np.array([3.79, 2.0, 2.0])})
    assert _reason(lambda: est.step({"joints": np.array([3.81, 2.0, 2.0])})) == "out_of_range"
    assert _reason(lambda: est.check_input("joints", [-3.51, 2.0, 2.0])) == "out_of_range"
    # commands: [0, 5] and [1, 3] widened by 6 x 1 bar
    est.check_action([10.9, -4.9])
    assert _reason(lambda: est.check_action([11.1, 2.0])) == "out_of_range"
    assert _reason(lambda: est.predict(2, actions=[[2.0, 2.0], [2.0, 9.5]])) == "out_of_range"
    # turned off: only what would overflow float32 is refused
    free = StreamingEstimator.from_checkpoint(checkpoints["ranged"], device="cpu",
                                              range_sigmas=math.inf)
    assert np.all(np.isfinite(free.step({"joints": np.array([1e6, 2.0, 2.0])}).mean))
    with pytest.raises(ValueError, match="range_sigmas"):
        StreamingEstimator.from_checkpoint(checkpoints["ranged"], device="cpu", range_sigmas=0)


def test_values_that_overflow_float32_once_normalized_are_refused(checkpoints):
    free = StreamingEstimator.from_checkpoint(checkpoints["joint"], device="cpu",
                                              range_sigmas=math.inf)
    huge = np.array([0.1, 2.0, 1e300])
    assert _reason(lambda: free.step({"joints": huge})) == "out_of_range"
    assert _reason(lambda: free.step({"joints": MEAN}, action=[1e300, 0.0])) == "out_of_range"
    assert _reason(lambda: free.predict(1, actions=[[1e300, 0.0]])) == "out_of_range"
    out = free.step({"joints": np.array([0.1, 2.0, 3e38])})  # fits, normalized as well
    assert np.all(np.isfinite(out.mean)) and np.all(np.isfinite(out.std))


def test_a_checkpoint_without_statistics_has_no_range_to_check(checkpoints):
    """Trained on raw values (no normalization recorded): nothing to judge a range by, so only
    what would overflow float32 is refused."""
    est = StreamingEstimator.from_checkpoint(checkpoints["unnormalized"], device="cpu")
    out = est.step({"joints": np.array([50.0, 0.0, 0.0, 0.0])}, action=np.full(8, -40.0))
    assert not out.guarded and _finite(out)
    assert _reason(lambda: est.check_input("joints", [1e39, 0, 0, 0])) == "out_of_range"
    assert _reason(lambda: est.check_action(np.full(8, -1e39))) == "out_of_range"


def test_every_reason_is_documented_with_its_counter_key() -> None:
    text = DOCS.read_text()
    assert rejection_key("joint_states", "out_of_range") == "rejected.joint_states.out_of_range"
    assert "rejected.<input>.<reason>" in text
    missing = [r for r in REASONS if not re.search(rf"`{r}`", text)]
    assert not missing, f"docs/runtime.md does not name the reasons {missing}"


# ---------------------------------------------------------------- properties (hypothesis)
_dtypes = st.one_of(hnp.integer_dtypes(), hnp.unsigned_integer_dtypes(), hnp.floating_dtypes(),
                    hnp.complex_number_dtypes(), hnp.boolean_dtypes(), hnp.byte_string_dtypes(),
                    hnp.datetime64_dtypes(), st.just(np.dtype(object)))
_arrays = hnp.arrays(_dtypes, hnp.array_shapes(min_dims=0, max_dims=3, max_side=5))
_numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-10**400, 10**400)
_values = st.one_of(
    _arrays,
    st.lists(_numbers, max_size=5),
    st.lists(st.lists(_numbers, max_size=3), max_size=3),  # ragged as well
    st.builds(np.array, st.lists(st.floats(-1e39, 1e39), min_size=3, max_size=3)),
    st.none(), st.text(max_size=3), st.dictionaries(st.text(max_size=2), _numbers, max_size=2),
    _numbers,
)
_property = settings(max_examples=150, deadline=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture,
                                            HealthCheck.too_slow])


def _finite(out) -> bool:
    return bool(np.all(np.isfinite(out.mean)) and np.all(np.isfinite(out.std)))


@_property
@given(reading=_values, action=_values, dt=_values)
def test_any_vector_reading_or_command_is_an_input_error_or_a_finite_estimate(
        joint, reading, action, dt) -> None:
    try:
        out = joint.step({"joints": reading}, action=action, dt=dt)
    except InputError as err:
        assert err.reason in REASONS
    else:
        assert _finite(out)
    assert _finite(joint.predict(3))


@_property
@given(inputs=st.one_of(_values, st.dictionaries(st.sampled_from(["joints", "image", ""]),
                                                  _values, max_size=2)))
def test_any_inputs_mapping_is_an_input_error_or_a_finite_estimate(joint, inputs) -> None:
    try:
        out = joint.step(inputs)
    except InputError as err:
        assert err.reason in REASONS
    else:
        assert _finite(out)


_images = hnp.arrays(st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32]),
                     st.sampled_from([(24, 24), (24, 24, 1), (24, 24, 3), (24, 24, 4), (20, 24),
                                      (0, 24), (24,), (24, 24, 3, 1)]))


@pytest.fixture(scope="module")
def pendulum(checkpoints) -> StreamingEstimator:
    return StreamingEstimator.from_checkpoint(checkpoints["pendulum"], device="cpu")


@_property
@given(image=st.one_of(_images, _arrays))
def test_any_image_is_an_input_error_or_a_finite_estimate(pendulum, image) -> None:
    try:
        out = pendulum.step({"image": image})
    except InputError as err:
        assert err.reason in REASONS
    else:
        assert _finite(out)


def test_the_node_path_checks_each_input_and_command_once(monkeypatch):
    """Through the shipped pneumatic model as the node serves it: a joint reading checked on
    arrival (`check_joint_inputs`), a command checked on arrival, then the tick's inputs
    (`tick_inputs`) stepped. Every range check runs through the codec's `normalize`, counted
    here; each value is checked once, and a plain step keeps checking its raw values."""
    from rkn_ros.nodes.estimator_params import EstimatorSettings
    from rkn_ros.nodes.estimator_sensors import check_joint_inputs, tick_inputs
    from rkn_ros.nodes.startup import load_estimator, plan_serving
    from rkn_ros.runtime import codec

    model = Path(__file__).resolve().parents[1] / "models" / "pneumatic"
    settings = EstimatorSettings.defaults(model_path=str(model), device="cpu", warmup_steps=0,
                                          cpu_backend="torchscript")
    est, _ = load_estimator(settings, model)
    plan = plan_serving(settings, est)
    checks: list[str] = []
    real = codec.normalize

    def counted(what, *args):
        checks.append(what)
        return real(what, *args)

    monkeypatch.setattr(codec, "normalize", counted)
    reading = np.array([0.1, 2.5, 2.4])
    for _ in range(3):
        samples = {"joint_states": check_joint_inputs(est, plan, reading)}
        command = est.check_action([2.5, 2.4])
        node_out = est.step(tick_inputs(plan, samples), action=command)
    assert checks == ["input 'joints'", "action"] * 3
    est.reset()
    checks.clear()
    for _ in range(3):
        plain_out = est.step({"joints": reading}, action=[2.5, 2.4])
    assert checks == ["input 'joints'", "action"] * 3
    np.testing.assert_array_equal(plain_out.mean, node_out.mean)
    # refused on arrival as before; a value checked by another estimator is checked again
    assert _reason(lambda: check_joint_inputs(est, plan, np.array([9.0, 2.5, 2.4]))) \
        == "out_of_range"
    other, _ = load_estimator(settings, model)
    checks.clear()
    other.step({"joints": est.check_input("joints", reading)}, action=command)
    assert checks == ["input 'joints'", "input 'joints'", "action"]
