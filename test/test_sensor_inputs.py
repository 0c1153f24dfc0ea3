"""The node's sensor plan from a checkpoint's inputs, and each message kind's conversion (no
rclpy node: the plan is pure, the messages are real rclpy message objects)."""

from __future__ import annotations

import numpy as np
import pytest
from geometry_msgs.msg import WrenchStamped
from sensor_msgs.msg import Image, Imu, JointState
from std_msgs.msg import Float64MultiArray

from rkn_ros.core.checkpoint import InputSpec, load_checkpoint
from rkn_ros.data.messages import MessageError
from rkn_ros.nodes.conversions import array_to_image, ns_to_stamp
from rkn_ros.nodes.sensor_inputs import (
    SensorPlanError,
    convert_message,
    message_class,
    sensor_plan,
    topic_parameters,
)

FUSED = {
    "image": InputSpec(kind="image", shape=(24, 24)),
    "image_side": InputSpec(kind="image", shape=(16, 16), sensor_kind="image"),
    "imu": InputSpec(kind="vector", shape=(3,), sensor_kind="imu",
                     names=("angular_velocity.z", "linear_acceleration.x",
                            "linear_acceleration.y")),
    "encoder": InputSpec(kind="vector", shape=(1,), sensor_kind="joint_state",
                         names=("joint_1",)),
    "wrist": InputSpec(kind="vector", shape=(2,), sensor_kind="wrench",
                       names=("force.z", "torque.x")),
    "pressures": InputSpec(kind="vector", shape=(2,), sensor_kind="vector"),
}


def _by_sensor(plan):
    return {sub.sensors[0]: sub for sub in plan}


def test_each_sensor_gets_its_own_topic_and_message_type():
    plan = _by_sensor(sensor_plan(FUSED))
    assert {name: (s.topic, s.msg_type) for name, s in plan.items()} == {
        "image": ("~/image", "sensor_msgs/msg/Image"),
        "image_side": ("~/image_side", "sensor_msgs/msg/Image"),
        "imu": ("~/imu", "sensor_msgs/msg/Imu"),
        "encoder": ("~/encoder", "sensor_msgs/msg/JointState"),
        "wrist": ("~/wrist", "geometry_msgs/msg/WrenchStamped"),
        "pressures": ("~/pressures", "std_msgs/msg/Float64MultiArray"),
    }
    assert plan["encoder"].inputs[0].fields == ("joint_1",)
    assert message_class(plan["imu"].msg_type) is Imu
    assert message_class(plan["wrist"].msg_type) is WrenchStamped


def test_topic_parameters_are_declared_from_the_checkpoints_sensors():
    params = topic_parameters(FUSED)
    assert params == {"sensors.image_side.topic": "image_side", "sensors.imu.topic": "imu",
                      "sensors.encoder.topic": "encoder", "sensors.wrist.topic": "wrist",
                      "sensors.pressures.topic": "pressures", "sensors.image.topic": "image"}
    topics = {params["sensors.imu.topic"]: "/robot/imu/data", "image": "/camera/front"}
    plan = _by_sensor(sensor_plan(FUSED, topics))
    assert plan["imu"].topic == "/robot/imu/data" and plan["image"].topic == "/camera/front"
    legacy = {"joints": InputSpec(kind="vector", shape=(1,), names=("a",))}
    assert topic_parameters(legacy) == {"sensors.joint_states.topic": "joint_states"}


def test_a_model_without_sensor_kinds_keeps_image_and_joint_states():
    """Checkpoints written before sensor kinds were recorded: one image on ~/image, every
    vector input picked by joint name from one ~/joint_states."""
    legacy = {"image": InputSpec(kind="image", shape=(24, 24)),
              "joints": InputSpec(kind="vector", shape=(2,), names=("a", "b")),
              "pressures": InputSpec(kind="vector", shape=(1,), names=("p",))}
    plan = sensor_plan(legacy)
    assert [(s.topic, s.kind, s.sensors) for s in plan] == [
        ("~/image", "image", ("image",)),
        ("~/joint_states", "joint_state", ("joints", "pressures"))]
    assert [i.fields for i in plan[1].inputs] == [("a", "b"), ("p",)]
    renamed = sensor_plan(legacy, {"joint_states": "/robot/joints"},
                          joint_names=["x", "y:velocity", "z:effort"])
    assert renamed[1].topic == "/robot/joints"
    assert [i.fields for i in renamed[1].inputs] == [("x", "y:velocity"), ("z:effort",)]
    msg = JointState(name=["z", "x", "y"], position=[1.0, 2.0, 3.0], velocity=[4.0, 5.0, 6.0],
                     effort=[7.0, 8.0, 9.0])
    converted = convert_message(renamed[1], msg)
    np.testing.assert_array_equal(converted["joints"], [2.0, 6.0])
    np.testing.assert_array_equal(converted["pressures"], [7.0])


def test_shipped_models_map_to_todays_topics():
    for name, topics in (("pendulum", ["~/image"]), ("pneumatic", ["~/joint_states"])):
        _, metadata = load_checkpoint(f"models/{name}", "cpu")
        assert [s.topic for s in sensor_plan(metadata.inputs)] == topics


@pytest.mark.parametrize("inputs, topics, joint_names, message", [
    (FUSED, {"camera": "/cam"}, (), "topics for ['camera']"),
    (FUSED, {"imu": "~/encoder"}, (), "both read topic '~/encoder'"),
    (FUSED, {"imu": "two words"}, (), "is not a topic name"),
    ({"f": InputSpec(kind="vector", shape=(3,), sensor_kind="force_plate")}, None, (),
     "kind 'force_plate' is not one of"),
    ({"cam": InputSpec(kind="vector", shape=(3,), sensor_kind="image")}, None, (),
     "gives image data, the model takes vector data"),
    ({"imu": InputSpec(kind="vector", shape=(2,), sensor_kind="imu", names=("a", "b"))}, None,
     (), "field 'a': expected one of"),
    ({"imu": InputSpec(kind="vector", shape=(2,), sensor_kind="imu",
                       names=("angular_velocity", "orientation.w"))}, None, (),
     "pick 4 values, the model takes 2"),
    ({"arm": InputSpec(kind="vector", shape=(2,), sensor_kind="joint_state")}, None, (),
     "records no column names"),
    ({"joints": InputSpec(kind="vector", shape=(2,), names=("a", "b"))}, None, ("a",),
     "has 1 entries, the model's vector inputs ['joints'] take 2"),
    ({"joints": InputSpec(kind="vector", shape=(1,), names=("a",))}, None, ("a:torque",),
     "joint_names: joint 'a:torque'"),
])
def test_a_plan_that_cannot_serve_is_one_clear_error(inputs, topics, joint_names, message):
    with pytest.raises(SensorPlanError, match=message.replace("[", r"\[").replace("(", r"\(")):
        sensor_plan(inputs, topics, joint_names)


def test_each_kind_converts_its_message_into_the_runtime_input():
    plan = _by_sensor(sensor_plan(FUSED))
    frame = (np.arange(16 * 16) % 256).astype(np.uint8).reshape(16, 16)
    image = array_to_image(frame, ns_to_stamp(0))
    np.testing.assert_array_equal(convert_message(plan["image_side"], image)["image_side"], frame)
    imu = Imu()
    imu.angular_velocity.z, imu.linear_acceleration.x, imu.linear_acceleration.y = 0.5, 1.5, -9.0
    np.testing.assert_array_equal(convert_message(plan["imu"], imu)["imu"], [0.5, 1.5, -9.0])
    wrench = WrenchStamped()
    wrench.wrench.force.z, wrench.wrench.torque.x = 3.0, -0.25
    np.testing.assert_array_equal(convert_message(plan["wrist"], wrench)["wrist"], [3.0, -0.25])
    joint = JointState(name=["joint_1"], position=[0.75])
    np.testing.assert_array_equal(convert_message(plan["encoder"], joint)["encoder"], [0.75])
    vector = Float64MultiArray(data=[1.0, 2.0])
    np.testing.assert_array_equal(convert_message(plan["pressures"], vector)["pressures"],
                                  [1.0, 2.0])
    # another publisher's joints on a shared topic: not this model's message
    assert convert_message(plan["encoder"], JointState(name=["wheel"], position=[1.0])) is None
    not_measured = Imu()
    not_measured.linear_acceleration_covariance[0] = -1.0
    with pytest.raises(MessageError, match="imu publishes no linear_acceleration"):
        convert_message(plan["imu"], not_measured)
    with pytest.raises(MessageError):
        convert_message(plan["image"], Image(height=2, width=2, encoding="mono8", step=2,
                                             data=[0, 1]))
