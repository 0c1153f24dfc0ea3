"""Models of several sensors, from generated data through `rkn-ros train` and `rkn-ros evaluate`
to the streaming runtime: two cameras and a joint encoder, and an IMU."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rkn_ros.cli import main as cli
from rkn_ros.core.checkpoint import load_checkpoint
from rkn_ros.core.config import ModelConfig, SensorSpec
from rkn_ros.core.encoders import ImageEncoder, VectorEncoder, build_encoder
from rkn_ros.data.dataset import SequenceDataset
from rkn_ros.runtime import StreamingEstimator
from rkn_ros.train.data import generate_dataset

REPO = Path(__file__).resolve().parents[1]
SIM = str(REPO / "config" / "sim" / "pendulum_fusion.yaml")
TINY_MODEL = {"latent_obs_dim": 4, "num_basis": 3, "bandwidth": 1, "encoder_conv_channels": [4, 4],
              "encoder_dense": 8, "encoder_hidden": [8], "decoder_hidden": [8]}


def _generate(sensors: list[str], seed: int, sequences: int = 12) -> dict:
    spec = {"generator": "pendulum", "config": SIM, "num_sequences": sequences, "steps": 15,
            "seed": seed, "sensors": sensors}
    return spec if "image" in sensors else {**spec, "noise": False}


def _train(tmp: Path, name: str, sensors: list[str]) -> Path:
    recipe = {"name": name, "seed": 0,
              "data": {"train": {"generate": _generate(sensors, 11)}, "validation_fraction": 0.25},
              "model": TINY_MODEL,
              "training": {"epochs": 1, "batch_size": 3, "device": "cpu", "num_threads": 1,
                           "observation_drop": 0.3, "keep_first": 3,
                           "early_stopping_patience": 0}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = tmp / name
    assert cli(["train", str(path), "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def two_cameras_and_encoder(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("fused")
    sensors = ["image", "image_side", "encoder"]
    test_data = tmp / "test_data"
    generate_dataset(_generate(sensors, 12, sequences=4)).save(test_data)
    return _train(tmp, "fused", sensors), test_data


def test_the_checkpoint_lists_each_sensor_with_its_kind_and_encoder(two_cameras_and_encoder):
    checkpoint, _ = two_cameras_and_encoder
    model, metadata = load_checkpoint(checkpoint, "cpu")
    assert list(metadata.inputs) == ["image", "image_side", "encoder"]
    # the front camera is recorded as every data set records it (served on ~/image)
    assert [metadata.inputs[n].sensor_kind for n in metadata.inputs] == \
        [None, "image", "joint_state"]
    assert metadata.inputs["image"].shape == (24, 24)
    assert metadata.inputs["image_side"].shape == (16, 16)   # the side camera's own resolution
    assert metadata.inputs["encoder"].names == ("joint_1",)
    assert [type(model.encoders[n]) for n in metadata.inputs] == \
        [ImageEncoder, ImageEncoder, VectorEncoder]


def test_evaluate_and_the_runtime_agree_with_each_sensor_missing_on_its_own(
        two_cameras_and_encoder, tmp_path, capsys):
    """`rkn-ros evaluate` filters whole sequences with each sensor's mask; the runtime steps
    one tick at a time with a missing sample given as None. Same angles, so the masks mean the
    same in both (the side camera drops frames, the encoder reads every 4th step)."""
    checkpoint, test_data = two_cameras_and_encoder
    report_path = tmp_path / "report.json"
    assert cli(["evaluate", str(checkpoint), "--data", str(test_data),
                "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert math.isfinite(report["log_likelihood"]) and report["rmse"] > 0
    data = SequenceDataset.load(test_data)
    arrays = data.arrays
    assert not arrays["images_side_valid"].all() and not arrays["encoder_valid"].all()
    est = StreamingEstimator.from_checkpoint(checkpoint, device="cpu")
    errors, skipped_side = [], 0
    for s in range(data.num_sequences):
        est.reset()
        for t in range(data.sequence_length):
            inputs = {
                "image": arrays["images"][s, t] if arrays["images_valid"][s, t] else None,
                "image_side": (arrays["images_side"][s, t] if arrays["images_side_valid"][s, t]
                               else None),
                "encoder": arrays["encoder"][s, t] if arrays["encoder_valid"][s, t] else None,
            }
            out = est.step(inputs)
            assert out.used == {name: value is not None for name, value in inputs.items()}
            skipped_side += inputs["image_side"] is None
            angle = arrays["joint_angles"][s, t, 0]
            errors.append((angle - out.position[0] + math.pi) % (2 * math.pi) - math.pi)
    assert skipped_side > 0
    assert report["angle_rmse"] == pytest.approx(np.sqrt(np.mean(np.square(errors))), rel=1e-3)


def test_a_missing_sensor_is_skipped_and_a_present_one_moves_the_estimate(
        two_cameras_and_encoder):
    checkpoint, test_data = two_cameras_and_encoder
    arrays = SequenceDataset.load(test_data).arrays
    est = StreamingEstimator.from_checkpoint(checkpoint, device="cpu")
    frame = {"image": arrays["images"][0, 0], "image_side": arrays["images_side"][0, 0],
             "encoder": arrays["encoder"][0, 0]}
    means = {}
    for missing in (None, "image", "image_side", "encoder"):
        est.reset()
        given = {n: (None if n == missing else v) for n, v in frame.items()}
        means[missing] = est.step(given).mean
        est.reset()
        # leaving the sensor out of the mapping is the same as giving None
        left_out = {n: v for n, v in frame.items() if n != missing}
        np.testing.assert_array_equal(est.step(left_out).mean, means[missing])
    for missing in ("image", "image_side", "encoder"):
        assert not np.allclose(means[missing], means[None]), missing


def test_an_imu_model_trains_evaluates_and_steps_on_raw_readings(tmp_path):
    checkpoint = _train(tmp_path, "imu", ["imu"])
    _, metadata = load_checkpoint(checkpoint, "cpu")
    assert metadata.inputs["imu"].sensor_kind == "imu"
    assert metadata.inputs["imu"].names == ("angular_velocity.z", "linear_acceleration.x",
                                            "linear_acceleration.y")
    stats = metadata.normalization.inputs["imu"]
    assert stats.std[1] > 1.0   # raw m/s^2 readings, z-normalized by the training statistics
    test_data = tmp_path / "imu_test"
    generate_dataset(_generate(["imu"], 13, sequences=3)).save(test_data)
    assert cli(["evaluate", str(checkpoint), "--data", str(test_data)]) == 0
    readings = SequenceDataset.load(test_data).arrays["imu"][0]
    est = StreamingEstimator.from_checkpoint(checkpoint, device="cpu")
    with torch.inference_mode():
        stepped = [est.step({"imu": reading}) for reading in readings]
    assert all(out.used == {"imu": True} and np.isfinite(out.mean).all() for out in stepped)
    with pytest.raises(ValueError, match="imu"):
        est.step({"imu": readings[0][:2]})   # two values where the model takes three


def test_every_kind_gets_its_encoder_from_one_table():
    config = ModelConfig(sensors=(SensorSpec("camera", "image", (16, 16)),
                                  SensorSpec("wrist", "vector", (6,))), output_dim=2)
    assert isinstance(build_encoder(config.sensors[0], config), ImageEncoder)
    assert isinstance(build_encoder(config.sensors[1], config), VectorEncoder)
