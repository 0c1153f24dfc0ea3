"""Bag import of many sensors: two cameras, joints, IMU, wrench and vector topics, real bags."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from rkn_ros.cli import main
from rkn_ros.data.bag_import import read_bag
from rkn_ros.data.bag_spec import BagImport
from rkn_ros.data.dataset import SequenceDataset
from rkn_ros.data.rosbag_io import BagError
from rkn_ros.data.sensor_kinds import SensorInput

TS = get_typestore(Stores.ROS2_KILTED)
T = TS.types
S, MS = 10**9, 10**6
STEPS = 12
DT_MS = 50


def _header(ns: int):
    return T["std_msgs/msg/Header"](
        stamp=T["builtin_interfaces/msg/Time"](sec=ns // S, nanosec=ns % S), frame_id="")


def _vec3(x: float, y: float, z: float):
    return T["geometry_msgs/msg/Vector3"](x=x, y=y, z=z)


def _recording() -> tuple[list, dict]:
    """Messages (topic, type, receive ns, msg) of STEPS steps and what each sensor sent."""
    rng = np.random.default_rng(0)
    front = rng.integers(0, 256, size=(STEPS, 6, 8), dtype=np.uint8)
    side = rng.integers(0, 256, size=(STEPS, 4, 5), dtype=np.uint8)
    side_kept = np.arange(STEPS) % 3 != 1                       # the side camera drops frames
    joints = rng.normal(size=(STEPS, 2, 2))                     # [step, joint, pos/vel]
    imu = rng.normal(size=(STEPS, 6))
    wrench = rng.normal(size=(STEPS, 6))
    vector = rng.normal(size=(STEPS, 3))
    vector_kept = np.arange(STEPS) % 2 == 0                     # at half the rate
    messages = []
    for k in range(STEPS):
        ns = S + k * DT_MS * MS
        jitter = int(rng.integers(-10, 10)) * MS                # within half a step
        messages.append(("/front", "sensor_msgs/msg/Image", ns, T["sensor_msgs/msg/Image"](
            header=_header(ns + jitter), height=6, width=8, encoding="mono8", is_bigendian=0,
            step=8, data=front[k].reshape(-1))))
        if side_kept[k]:
            png = np.frombuffer(cv2.imencode(".png", side[k])[1].tobytes(), dtype=np.uint8)
            messages.append(("/side/compressed", "sensor_msgs/msg/CompressedImage", ns,
                             T["sensor_msgs/msg/CompressedImage"](header=_header(ns),
                                                                   format="png", data=png)))
        messages.append(("/joint_states", "sensor_msgs/msg/JointState", ns,
                         T["sensor_msgs/msg/JointState"](
                             header=_header(ns), name=["wrist", "elbow"],
                             position=joints[k, ::-1, 0].copy(), velocity=joints[k, ::-1, 1].copy(),
                             effort=np.zeros(0))))
        cov = np.zeros(9)
        messages.append(("/imu", "sensor_msgs/msg/Imu", ns, T["sensor_msgs/msg/Imu"](
            header=_header(ns), orientation=T["geometry_msgs/msg/Quaternion"](x=0, y=0, z=0, w=1),
            orientation_covariance=np.array([-1.0, *cov[1:]]),
            angular_velocity=_vec3(*imu[k, :3]), angular_velocity_covariance=cov,
            linear_acceleration=_vec3(*imu[k, 3:]), linear_acceleration_covariance=cov)))
        messages.append(("/ft", "geometry_msgs/msg/WrenchStamped", ns,
                         T["geometry_msgs/msg/WrenchStamped"](
                             header=_header(ns), wrench=T["geometry_msgs/msg/Wrench"](
                                 force=_vec3(*wrench[k, :3]), torque=_vec3(*wrench[k, 3:])))))
        if vector_kept[k]:
            messages.append(("/vec", "std_msgs/msg/Float64MultiArray", ns + 3 * MS,
                             T["std_msgs/msg/Float64MultiArray"](
                                 layout=T["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0),
                                 data=vector[k].copy())))
        messages.append(("/truth", "sensor_msgs/msg/JointState", ns,
                         T["sensor_msgs/msg/JointState"](
                             header=_header(ns), name=["elbow"], position=np.array([0.1 * k]),
                             velocity=np.array([0.1]), effort=np.zeros(0))))
    sent = {"front": front, "side": side, "side_kept": side_kept, "joints": joints, "imu": imu,
            "wrench": wrench, "vector": vector, "vector_kept": vector_kept}
    return messages, sent


def _write(path: Path, messages: list, storage: StoragePlugin) -> Path:
    with Writer(path, version=9, storage_plugin=storage) as writer:
        connections = {}
        for topic, msgtype, stamp, msg in sorted(messages, key=lambda m: m[2]):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(connections[topic], stamp, TS.serialize_cdr(msg, msgtype))
    return path


SENSORS = (
    "front:image:/front",
    "side:image:/side/compressed",
    "arm:joint_state:/joint_states:elbow,wrist,elbow:velocity",
    "imu:imu:/imu",
    "ft:wrench:/ft:force,torque.z",
    "extra:vector:/vec:a,b,c",
)


@pytest.mark.parametrize("storage", [StoragePlugin.SQLITE3, StoragePlugin.MCAP])
def test_every_kind_imports_into_its_own_array_and_mask(tmp_path: Path, storage) -> None:
    messages, sent = _recording()
    bag = _write(tmp_path / "bag", messages, storage)
    spec = BagImport(dt=DT_MS / 1000, truth_topic="/truth", truth_joints=("elbow",),
                     sensors=tuple(SensorInput.parse(text) for text in SENSORS))
    data = read_bag(bag, spec)
    a, inputs = {k: v[0] for k, v in data.arrays.items()}, data.metadata["inputs"]
    assert list(inputs) == ["front", "side", "arm", "imu", "ft", "extra"]
    np.testing.assert_array_equal(a["front"], sent["front"])
    assert a["front_valid"].all() and inputs["front"]["shape"] == [6, 8]
    np.testing.assert_array_equal(a["side_valid"], sent["side_kept"])
    np.testing.assert_array_equal(a["side"][sent["side_kept"]], sent["side"][sent["side_kept"]])
    assert np.all(a["side"][~sent["side_kept"]] == 0) and inputs["side"]["shape"] == [4, 5]
    joints = sent["joints"]
    expected = np.stack([joints[:, 0, 0], joints[:, 1, 0], joints[:, 0, 1]], axis=1)
    np.testing.assert_allclose(a["arm"], expected, rtol=1e-6)
    assert inputs["arm"]["names"] == ["elbow", "wrist", "elbow:velocity"]
    assert inputs["arm"]["units"] == ["rad", "rad", "rad/s"]
    assert inputs["arm"]["sensor_kind"] == "joint_state" and inputs["arm"]["kind"] == "vector"
    np.testing.assert_allclose(a["imu"], sent["imu"], rtol=1e-6)
    assert inputs["imu"]["names"][0] == "angular_velocity.x" and len(inputs["imu"]["names"]) == 6
    assert inputs["imu"]["units"] == ["rad/s"] * 3 + ["m/s^2"] * 3
    np.testing.assert_allclose(a["ft"], sent["wrench"][:, [0, 1, 2, 5]], rtol=1e-6)
    assert inputs["ft"]["names"] == ["force.x", "force.y", "force.z", "torque.z"]
    assert inputs["ft"]["units"] == ["N", "N", "N", "N*m"]
    np.testing.assert_array_equal(a["extra_valid"], sent["vector_kept"])
    np.testing.assert_allclose(a["extra"][sent["vector_kept"]],
                               sent["vector"][sent["vector_kept"]], rtol=1e-6)
    assert inputs["extra"]["names"] == ["a", "b", "c"]
    for name in ("arm", "imu", "ft"):
        assert a[f"{name}_valid"].all()
    np.testing.assert_allclose(a["targets"][:, 0], 0.1 * np.arange(STEPS), rtol=1e-6)
    counts = data.metadata["parameters"]["counts"]["bag"]
    assert counts["side_missing_steps"] == int((~sent["side_kept"]).sum())
    assert counts["extra_missing_steps"] == STEPS // 2
    data.save(tmp_path / "ds")
    assert SequenceDataset.load(tmp_path / "ds").content_hash() == data.content_hash()


def test_cli_sensors_flags_file_and_shorthands(tmp_path: Path, capsys) -> None:
    messages, sent = _recording()
    bag = _write(tmp_path / "bag", messages, StoragePlugin.SQLITE3)
    listed = tmp_path / "sensors.yaml"
    listed.write_text("- {name: ft, kind: wrench, topic: /ft, fields: [force],"
                      " units: [kN, kN, kN]}\n")
    argv = ["bag", "import", str(bag), "--dt", "0.05", "--out", str(tmp_path / "out"),
            "--image-topic", "/front", "--joint-topic", "/joint_states", "--joints", "wrist",
            "--sensor", "imu:imu:/imu:angular_velocity.z", "--sensors-file", str(listed)]
    assert main(argv) == 0
    data = SequenceDataset.load(tmp_path / "out")
    # (metadata.yaml is written with sorted keys: the saved inputs come back sorted by name)
    assert sorted(data.metadata["inputs"]) == ["ft", "image", "imu", "joints"]
    np.testing.assert_array_equal(data.arrays["images"][0], sent["front"])
    np.testing.assert_allclose(data.arrays["joint_obs"][0, :, 0], sent["joints"][:, 1, 0],
                               rtol=1e-6)
    np.testing.assert_allclose(data.arrays["imu"][0, :, 0], sent["imu"][:, 2], rtol=1e-6)
    assert data.metadata["inputs"]["ft"]["units"] == ["kN", "kN", "kN"]
    capsys.readouterr()
    bad = [
        (["--sensor", "imu:lidar:/imu"], "kind 'lidar': expected one of ['image', 'joint_state'"),
        (["--sensor", "imu:imu"], "expected NAME:KIND:TOPIC[:FIELDS]"),
        (["--sensor", "imu:imu:/imu:spin"], "field 'spin': expected one of"),
        (["--sensor", "o:imu:/imu:orientation"], "imu publishes no orientation "
                                                 "(orientation_covariance[0] = -1)"),
        (["--sensor", "v:vector:/vec:a,b"], "messages hold 3 values, its fields name 2"),
        (["--sensor", "w:wrench:/imu"], "topic /imu: type sensor_msgs/msg/Imu, expected "
                                        "geometry_msgs/msg/WrenchStamped"),
        (["--sensor", "image:image:/front"], "sensor names must differ"),
        (["--sensors-file", str(tmp_path / "none.yaml")], "cannot read"),
    ]
    base = argv[:13]
    for extra, message in bad:
        assert main([*base, *extra, "--overwrite"]) == 1, extra
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (extra, err)
        assert len(err.strip().splitlines()) == 1


def test_a_stamp_far_off_is_refused_before_allocating(tmp_path: Path) -> None:
    messages, _ = _recording()
    wild = [m for m in messages if m[0] == "/joint_states"]
    topic, msgtype, ns, msg = wild[-1]
    msg.header.stamp.sec = 10**9                                  # 30 years later
    bag = _write(tmp_path / "bag", [*wild[:-1], (topic, msgtype, ns, msg)],
                 StoragePlugin.SQLITE3)
    spec = BagImport(dt=0.001, sensors=(SensorInput("arm", "joint_state", "/joint_states",
                                                    fields=("elbow",)),))
    with pytest.raises(BagError, match=r"steps of 0.001 s, more than 50000000 \(a stamp far"):
        read_bag(bag, spec)


def test_sensor_inputs_are_checked_when_made() -> None:
    with pytest.raises(ValueError, match="needs joint names as fields"):
        SensorInput("arm", "joint_state", "/js")
    with pytest.raises(ValueError, match="takes no fields"):
        SensorInput("cam", "image", "/cam", fields=("x",))
    with pytest.raises(ValueError, match="2 units for 3 columns"):
        SensorInput("imu", "imu", "/imu", fields=("angular_velocity",), units=("a", "b"))
    with pytest.raises(ValueError, match="repeat an axis"):
        SensorInput("imu", "imu", "/imu", fields=("angular_velocity", "angular_velocity.x"))
    with pytest.raises(ValueError, match="expected an absolute topic name"):
        SensorInput("imu", "imu", "imu")
    with pytest.raises(BagError, match="input, command and truth topics must differ"):
        BagImport(dt=0.05, truth_topic="/js", truth_joints=("a",),
                  sensors=(SensorInput("arm", "joint_state", "/js", fields=("a",)),))


def test_a_generated_fusion_episode_exports_and_imports_sensor_by_sensor(tmp_path: Path) -> None:
    """`rkn-ros generate --sensors ...`, `bag export`, `bag import --sensor ...`: every sensor
    comes back as it was generated, dropped frames and the encoder's gaps included."""
    import dataclasses

    from rkn_ros.data.generate import default_pendulum_config, generate_pendulum
    from rkn_ros.data.generate_sensors import SensorsConfig, SideCameraConfig
    from rkn_ros.data.rosbag_io import write_bag

    sensors = SensorsConfig(sensors=("image", "image_side", "imu", "encoder"),
                            image_side=SideCameraConfig(drop_prob=0.4))
    config = dataclasses.replace(default_pendulum_config("quad_link"), sensors=sensors)
    generated = generate_pendulum("quad_link", config, 2, 14, seed=5)
    counts = write_bag(generated, tmp_path / "bag", sequence=1, storage="mcap")
    side_valid = generated.arrays["images_side_valid"][1]
    assert counts["/pendulum_sim/image_side"] == int(side_valid.sum()) < 14
    assert counts["/pendulum_sim/imu"] == 14 and counts["/pendulum_sim/joint_states"] == 7
    imu_fields = ",".join(generated.metadata["inputs"]["imu"]["names"])
    spec = BagImport(
        dt=generated.dt, truth_topic="/pendulum_sim/joint_states_truth",
        truth_joints=tuple(generated.metadata["truth"]["names"]), targets="truth_sincos",
        sensors=tuple(SensorInput.parse(text) for text in (
            "image:image:/pendulum_sim/image", "image_side:image:/pendulum_sim/image_side",
            f"imu:imu:/pendulum_sim/imu:{imu_fields}",
            "encoder:joint_state:/pendulum_sim/joint_states:joint_1,joint_2,joint_3,joint_4")))
    back = {k: v[0] for k, v in read_bag(tmp_path / "bag", spec).arrays.items()}
    g = {k: v[1] for k, v in generated.arrays.items()}
    for ours, theirs in (("image", "images"), ("image_side", "images_side"), ("imu", "imu"),
                         ("encoder", "encoder")):
        np.testing.assert_array_equal(back[ours], g[theirs], ours)
        np.testing.assert_array_equal(back[f"{ours}_valid"], g[f"{theirs}_valid"], ours)
    np.testing.assert_allclose(back["targets"], g["targets"], atol=1e-6)
