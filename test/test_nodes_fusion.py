"""rkn_estimator serving the shipped fused model (two cameras, an IMU, an encoder) over DDS: one
subscription per sensor, estimates from all four, and a silent camera reported on /diagnostics
while the others carry the estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import Image, Imu, JointState
from test_nodes_support import (  # sets ROS_DOMAIN_ID first
    BEST_EFFORT,
    REPO,
    Probe,
    running_estimator,
)

from rkn_ros.nodes.conversions import array_to_image
from rkn_ros.sim.render import RenderParams, render

NAME = "fusion_estimator"
IMU_TOPIC = "/fusion_rig/imu"  # named by the sensors.imu.topic parameter


@pytest.fixture(scope="module")
def fusion_estimator(probe_node, tmp_path_factory):
    params = {
        "model_path": str(REPO / "models" / "fusion"),
        "diagnostics_period": 0.2,
        "sensor_timeout": 0.5,
        "sensors.imu.topic": IMU_TOPIC,
    }
    log = tmp_path_factory.mktemp("logs") / "fusion_estimator.log"
    with running_estimator(probe_node, NAME, params, log) as running:
        yield running


def _publish(probe: Probe, pubs: dict, angle: float, side: bool) -> None:
    stamp = probe.now()
    front = render(np.array([[angle]]), (1.0,), RenderParams(image_size=24))[0]
    probe.images.publish(array_to_image(front, stamp))
    if side:
        pubs["image_side"].publish(array_to_image(
            render(np.array([[angle]]), (1.0,), RenderParams(image_size=16))[0], stamp))
    imu = Imu()
    imu.header.stamp = stamp
    imu.angular_velocity.z = 0.1
    imu.linear_acceleration.x, imu.linear_acceleration.y = 9.81 * math.cos(angle), 0.2
    pubs["imu"].publish(imu)
    encoder = JointState()
    encoder.header.stamp = stamp
    encoder.name, encoder.position = ["joint_1"], [angle]
    pubs["encoder"].publish(encoder)


def _feed(probe: Probe, pubs: dict, seconds: float, side: bool) -> None:
    for k in range(round(seconds / 0.05)):
        _publish(probe, pubs, 0.6 + 0.02 * k, side)
        probe.t.spin_for(0.05)


def test_every_sensor_feeds_the_estimate_and_a_silent_camera_is_reported(fusion_estimator):
    probe, process = fusion_estimator
    node = probe.t.node
    pubs = {
        "image_side": node.create_publisher(Image, f"/{NAME}/image_side", BEST_EFFORT),
        "imu": node.create_publisher(Imu, IMU_TOPIC, BEST_EFFORT),
        "encoder": node.create_publisher(JointState, f"/{NAME}/encoder", BEST_EFFORT),
    }
    assert probe.t.spin_until(
        lambda: all(p.get_subscription_count() > 0 for p in pubs.values()), 20)
    _feed(probe, pubs, 1.5, side=True)
    inputs = ("image", "image_side", "imu", "encoder")
    assert probe.t.spin_until(lambda: all(
        probe.statuses.get(f"{s} input") is not None
        and probe.statuses[f"{s} input"].level == DiagnosticStatus.OK for s in inputs), 5), {
        s: probe.statuses.get(f"{s} input") for s in inputs}
    topics = {s: {kv.key: kv.value for kv in probe.statuses[f"{s} input"].values}["topic"]
              for s in inputs}
    assert topics == {"image": f"/{NAME}/image", "image_side": f"/{NAME}/image_side",
                      "imu": IMU_TOPIC, "encoder": f"/{NAME}/encoder"}
    assert probe.counter("refused") == 0, probe.diagnostics
    before = len(probe.states)
    assert before > 10
    assert all(math.isfinite(v) for m in probe.states for v in m.position)

    _feed(probe, pubs, 1.5, side=False)  # the side camera drops out
    side = probe.statuses["image_side input"]
    assert side.level == DiagnosticStatus.WARN and "silent for" in side.message, side.message
    assert all(probe.statuses[f"{s} input"].level == DiagnosticStatus.OK
               for s in ("image", "imu", "encoder"))
    later = probe.states[before:]
    assert len(later) > 10 and all(math.isfinite(v) for m in later for v in m.position)
    assert all(math.isfinite(v) and v > 0 for m in probe.stddevs[before:] for v in m.position)
    assert process.process.poll() is None
