"""`rkn-ros generate` with more sensors: a second camera, an IMU and a joint encoder."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

from rkn_ros.cli import main
from rkn_ros.data.dataset import SequenceDataset
from rkn_ros.data.generate import default_pendulum_config, generate_pendulum, load_pendulum_config
from rkn_ros.data.generate_sensors import SensorsConfig

ALL = ("image", "image_side", "imu", "encoder")


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("kind", ["pendulum", "quad_link"])
def test_more_sensors_leave_every_existing_array_as_it_was(kind):
    base = dataclasses.replace(default_pendulum_config(kind), noise=True, drop_prob=0.3)
    plain = generate_pendulum(kind, base, 2, 10, seed=4)
    explicit = generate_pendulum(
        kind, dataclasses.replace(base, sensors=SensorsConfig(sensors=("image",))), 2, 10, seed=4)
    assert explicit.content_hash() == plain.content_hash()
    assert explicit.metadata == plain.metadata
    full = generate_pendulum(
        kind, dataclasses.replace(base, sensors=SensorsConfig(sensors=ALL)), 2, 10, seed=4)
    for name, array in plain.arrays.items():
        np.testing.assert_array_equal(full.arrays[name], array, name)
    assert list(full.metadata["inputs"]) == list(ALL)
    assert full.metadata["inputs"]["image"] == plain.metadata["inputs"]["image"]


def test_cli_writes_each_sensor_with_its_own_mask_byte_for_byte(tmp_path, capsys):
    config = tmp_path / "fusion.yaml"
    config.write_text("image_side: {drop_prob: 0.4, view: {yaw: 0.7}}\n"
                      "encoder: {period: 3, counts_per_turn: 512}\nimu: {accel_noise_std: 0.5}\n")
    args = ["generate", "quad_link", "--sequences", "3", "--steps", "12", "--seed", "2",
            "--sensors", ",".join(ALL), "--config", str(config), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    printed = capsys.readouterr().out
    assert "fall between the encoder's readings (encoder.period)" in printed
    assert "dropped on purpose (image_side.drop_prob), zeroed and flagged in " \
        "'images_side_valid'" in printed
    ds = SequenceDataset.load(tmp_path / "a")
    a, inputs = ds.arrays, ds.metadata["inputs"]
    assert a["images"].shape == (3, 12, 48, 48) and a["images_side"].shape == (3, 12, 32, 32)
    side_valid = a["images_side_valid"]
    assert side_valid[:, :5].all() and not side_valid.all()
    assert np.all(a["images_side"][~side_valid] == 0)
    assert inputs["image_side"]["shape"] == [32, 32]
    assert a["imu"].shape == (3, 12, 3) and a["imu_valid"].all()
    assert a["imu_bias"].shape == (3, 12, 3) and ds.metadata["truth"]["imu_bias"] == "imu_bias"
    assert inputs["imu"]["names"] == ["angular_velocity.z", "linear_acceleration.x",
                                      "linear_acceleration.y"]
    assert a["encoder"].shape == (3, 12, 4)
    np.testing.assert_array_equal(a["encoder_valid"][0], [k % 3 == 0 for k in range(12)])
    assert np.all(a["encoder"][~a["encoder_valid"]] == 0)
    counts = a["encoder"][a["encoder_valid"]] / (2 * np.pi / 512)
    np.testing.assert_allclose(counts, np.round(counts), atol=2e-3)
    # the first joint's reading is its absolute angle, within the encoder's error
    error = a["encoder"][..., 0] - a["joint_angles"][..., 0]
    error = (error + np.pi) % (2 * np.pi) - np.pi
    assert np.abs(error[a["encoder_valid"]]).max() < 0.05
    assert {name: spec.get("sensor_kind") for name, spec in inputs.items()} == {
        "image": None, "image_side": "image", "imu": "imu", "encoder": "joint_state"}
    sensors = ds.metadata["parameters"]["sensors"]
    assert sensors["image_side"]["view"]["yaw"] == 0.7 and sensors["encoder"]["period"] == 3
    assert sensors["imu"]["accel_noise_std"] == 0.5 and sensors["imu"]["link"] == "last"


def test_sensors_without_the_front_camera(tmp_path):
    config = tmp_path / "imu.yaml"
    config.write_text("sensors: [imu, encoder]\n")
    ds = generate_pendulum("pendulum", load_pendulum_config(config, "pendulum"), 2, 8, seed=0)
    assert list(ds.metadata["inputs"]) == ["imu", "encoder"]
    assert "images" not in ds.arrays and "images" not in ds.metadata["truth"]
    ds.save(tmp_path / "ds")
    SequenceDataset.load(tmp_path / "ds")


@pytest.mark.parametrize(("text", "flags", "message"), [
    ("", ["--sensors", "image,lidar"], "'sensors': expected a non-empty list of distinct names"),
    ("", ["--sensors", "imu,imu"], "'sensors': expected a non-empty list of distinct names"),
    ("", ["--sensors", "imu", "--noise"], "'noise' and 'drop_prob' apply to the front camera"),
    ("imu: {gyro_noise: 1}\n", [], "unknown imu parameter(s) ['gyro_noise']"),
    ("imu: {mount: 2}\n", [], "'mount': expected a fraction of the last link"),
    ("encoder: {period: 1.5}\n", [], "encoder parameter 'period': expected an integer"),
    ("image_side: {view: {tilt: 1}}\n", [], "unknown camera view parameter(s) ['tilt']"),
    ("image_side: {zoom: 1}\n", [], "unknown image_side option(s) ['zoom']"),
    ("image_side: {drop_prob: 1.0}\n", [], "image_side option 'drop_prob'"),
    ("imu: 3\n", [], "imu: expected a mapping, got 3"),
])
def test_bad_sensor_options_are_named(tmp_path, capsys, text, flags, message):
    config = tmp_path / "bad.yaml"
    config.write_text(text or "{}\n")
    argv = ["generate", "pendulum", "--sequences", "2", "--steps", "8", "--no-progress",
            "--config", str(config), "--out", str(tmp_path / "x"), *flags]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_sensors_option_is_for_the_pendulums(tmp_path, capsys):
    argv = ["generate", "pneumatic", "--sequences", "2", "--steps", "8", "--no-progress",
            "--sensors", "imu", "--out", str(tmp_path / "x")]
    assert main(argv) == 1
    assert "--sensors applies to the pendulums" in capsys.readouterr().err
