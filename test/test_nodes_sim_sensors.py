"""pendulum_sim's optional sensors over real DDS: the IMU, the encoder and the side camera
arrive on their own topics when asked for, and a default node publishes none of them."""

from __future__ import annotations

import math

import numpy as np
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, Imu, JointState
from test_nodes_support import BEST_EFFORT, REPO, TestNode

from rkn_ros.nodes.pendulum_sim_node import PendulumSimNode

STEPS = 40


def _wrapped(x: float) -> float:
    return (x + math.pi) % (2 * math.pi) - math.pi


def test_pendulum_sim_publishes_the_extra_sensors_it_is_asked_for():
    test = TestNode("sim_sensors_probe")
    received: dict[str, list] = {"imu": [], "encoder": [], "image_side": [], "truth": [],
                                 "image": []}
    # (wait_for_subscribers holds the first step until ~/image and the truth are subscribed)
    for topic, msg_type, key, qos in (("imu", Imu, "imu", 50),
                                      ("encoder", JointState, "encoder", 50),
                                      ("image_side", Image, "image_side", BEST_EFFORT),
                                      ("image", Image, "image", BEST_EFFORT),
                                      ("joint_states_truth", JointState, "truth", 50)):
        test.node.create_subscription(msg_type, f"/pendulum_sim/{topic}",
                                      lambda msg, key=key: received[key].append(msg), qos)
    plain = PendulumSimNode(namespace="/plain", parameter_overrides=[
        Parameter("max_steps", value=1)])
    sim = PendulumSimNode(parameter_overrides=[
        Parameter("extra_sensors", value=["imu", "encoder", "image_side"]),
        Parameter("sensor_config", value=str(REPO / "config/sim/pendulum_fusion.yaml")),
        Parameter("max_steps", value=STEPS), Parameter("real_time_factor", value=10.0),
        Parameter("wait_for_subscribers", value=True), Parameter("seed", value=3)])
    assert sim.pub_imu.topic_name == "/pendulum_sim/imu"
    try:
        # every topic matched before the simulator's timer first runs: no reading is lost
        assert test.spin_until(lambda: all(
            pub.get_subscription_count() for pub in (sim.pub_imu, sim.pub_encoder, sim.pub_side)),
            timeout=10)
        test.executor.add_node(plain)
        test.executor.add_node(sim)
        assert test.spin_until(lambda: len(received["truth"]) >= STEPS
                               and len(received["imu"]) >= STEPS, timeout=30)
        test.spin_for(0.3)
        for topic in ("imu", "encoder", "image_side"):
            assert test.node.count_publishers(f"/plain/pendulum_sim/{topic}") == 0, topic
        assert test.node.count_publishers("/plain/pendulum_sim/image") == 1
    finally:
        for node in (plain, sim):
            test.executor.remove_node(node)
            node.destroy_node()
        test.close()
    truth = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in received["truth"]}
    assert len(received["imu"]) == STEPS
    for msg in received["imu"]:
        state = truth[(msg.header.stamp.sec, msg.header.stamp.nanosec)]
        # the gyro reads the link's rate, up to its bias and noise
        assert abs(msg.angular_velocity.z - state.velocity[0]) < 0.5
        assert msg.orientation_covariance[0] == -1.0
    # config/sim/pendulum_fusion.yaml: one encoder reading every 4th step, 0.1 rad counts
    assert len(received["encoder"]) == STEPS // 4
    for msg in received["encoder"]:
        state = truth[(msg.header.stamp.sec, msg.header.stamp.nanosec)]
        assert list(msg.name) == ["joint_1"]
        assert abs(_wrapped(msg.position[0] - state.position[0])) < 0.3
    # the side camera: 16x16 mono8, 40% of its frames dropped after the first 5
    frames = received["image_side"]
    assert 5 <= len(frames) < STEPS
    assert {(m.height, m.width, m.encoding) for m in frames} == {(16, 16, "mono8")}
    assert any(np.frombuffer(bytes(m.data), np.uint8).max() > 0 for m in frames)
