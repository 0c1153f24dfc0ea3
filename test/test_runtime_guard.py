"""The output guard on a real checkpoint with finite but absurd weights, loaded the way users
load one: a step that is not finite never leaves the estimator; it is counted and flagged, the
last good belief comes back, and genuine readings are served again at once."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from test_runtime_support import make_joint_checkpoint

from rkn_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rkn_ros.runtime import StreamingEstimator

torch.set_num_threads(1)
CALM = np.array([0.1, 2.0, 2.0])  # the training mean: normalized to zeros
STRONG = np.array([1.5, 5.0, 5.0])  # within range, but the absurd encoder overflows on it
COMMAND = [2.0, 2.0]


def _absurd(source: Path, folder: Path, module: str = "encoders.joints") -> Path:
    """The checkpoint with the first layer of ``module`` scaled to ~1e38 (finite). In the
    encoder: a reading at the training mean (zeros once normalized) passes, any other
    overflows float32; in the variance decoder: even the initial estimate overflows."""
    model, metadata = load_checkpoint(source)
    layer = next(m for m in model.get_submodule(module).modules()
                 if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        layer.weight.div_(layer.weight.abs().max()).mul_(1e38)  # (1e38 / max may not fit)
    data = dataclasses.asdict(metadata)
    data.pop("weights_sha256")
    return save_checkpoint(folder, model, data)


@pytest.fixture(scope="module")
def absurd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("guard")
    return _absurd(make_joint_checkpoint(root / "joint"), root / "absurd")


def _finite(out) -> bool:
    return bool(np.all(np.isfinite(out.mean)) and np.all(np.isfinite(out.std)))


@pytest.mark.parametrize("options", [{}, {"cpu_backend": "torchscript"}, {"split_step": True}],
                         ids=["onnxruntime", "torchscript", "split"])
def test_a_step_that_is_not_finite_is_guarded_and_the_estimator_recovers(absurd, options):
    est = StreamingEstimator.from_checkpoint(absurd, device="cpu", **options)
    reference = StreamingEstimator.from_checkpoint(absurd, device="cpu", **options)
    good = [est.step({"joints": r}, action=COMMAND) for r in (CALM, CALM, None)]
    assert not any(o.guarded for o in good) and est.nonfinite_outputs == 0
    bad = est.step({"joints": STRONG}, action=COMMAND)
    assert bad.guarded and est.nonfinite_outputs == 1 and _finite(bad)
    # the last good estimate is handed out, and its belief is back in place
    np.testing.assert_array_equal(bad.mean, good[-1].mean)
    np.testing.assert_array_equal(bad.std, good[-1].std)
    assert not est.advance_pending
    after = est.step({"joints": CALM}, action=COMMAND)
    assert not after.guarded and _finite(after)
    assert est.nonfinite_outputs == 1
    # the step was undone: its prior is back, so this tick continues the good ones
    expected = [reference.step({"joints": r}, action=COMMAND) for r in (CALM, CALM, None, CALM)][-1]
    np.testing.assert_allclose(after.mean, expected.mean, atol=1e-6)
    np.testing.assert_allclose(after.std, expected.std, atol=1e-6)
    assert _finite(est.predict(5))


def test_guarded_steps_in_a_row_fall_back_to_a_reset(absurd):
    est = StreamingEstimator.from_checkpoint(absurd, device="cpu")
    first = est.step({"joints": STRONG}, action=COMMAND)  # nothing good yet
    initial = StreamingEstimator.from_checkpoint(absurd, device="cpu").predict(1)
    assert first.guarded and _finite(first)
    np.testing.assert_allclose(first.mean, initial.mean[0], atol=1e-6)
    est.step({"joints": CALM}, action=COMMAND)
    outs = [est.step({"joints": STRONG}, action=COMMAND) for _ in range(4)]
    assert all(o.guarded and _finite(o) for o in outs)
    assert est.nonfinite_outputs == 5
    # the first failure hands out the last good estimate; from the second in a row on the
    # belief is reset and the estimate is the initial belief's
    assert not np.allclose(outs[0].mean, initial.mean[0], atol=1e-6)
    np.testing.assert_allclose(outs[-1].mean, initial.mean[0], atol=1e-6)
    est.reset()
    assert not est.step({"joints": CALM}, action=COMMAND).guarded


def test_a_model_whose_initial_estimate_is_not_finite_is_refused(tmp_path):
    broken = _absurd(make_joint_checkpoint(tmp_path / "joint"), tmp_path / "broken",
                     module="decoder.var_net")
    with pytest.raises(CheckpointError, match="initial estimate is not finite"):
        StreamingEstimator.from_checkpoint(broken, device="cpu")
