"""rkn_estimator on joint states and commands, ticking on its timer, as a real process over
DDS, fed and probed by the test's own rclpy node."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.qos import ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from test_nodes_support import (  # sets ROS_DOMAIN_ID first
    Probe,
    running_estimator,
    until_counted,
)

from rkn_ros.nodes.conversions import ns_to_stamp, stamp_to_ns

PIN_CPU = max(os.sched_getaffinity(0))  # the joint estimator runs pinned to this CPU


@pytest.fixture(scope="module")
def joint_estimator(checkpoints, probe_node, tmp_path_factory):
    params = {
        "model_path": checkpoints["joint"],
        "diagnostics_period": 0.2,
        "sensor_timeout": 0.5,
        "cpu_affinity": f"[{PIN_CPU}]",
        "reset_after_gap": 5.0,  # ignored ticking on the timer: warned about at start-up
        # the whole step before publishing (the image estimator runs the default, split one)
        "publish_before_predict": False,
    }
    log = tmp_path_factory.mktemp("logs") / "joint_estimator.log"
    with running_estimator(probe_node, "joint_estimator", params, log, "joints") as running:
        yield running


def _joints(probe: Probe, names, position, velocity=(), effort=(), stamp=None) -> JointState:
    msg = JointState()
    msg.header.stamp = stamp or probe.now()
    msg.name = list(names)
    msg.position = [float(v) for v in position]
    msg.velocity = [float(v) for v in velocity]
    msg.effort = [float(v) for v in effort]
    return msg


def test_bad_joint_states_and_commands_are_dropped_counted_and_survived(joint_estimator):
    probe, process = joint_estimator
    # None of the model's joints for longer than sensor_timeout (0.5 s): a message naming none
    # of them is then a misconfiguration to warn about, not another publisher's message.
    probe.t.spin_for(0.6)
    names = ["extensor", "joint", "flexor"]  # order in the message does not matter
    good = dict(position=[0.0, 0.3, 0.0], effort=[1.5, 0.0, 2.5])
    bad = {
        "non_finite": _joints(probe, names, [0.0, math.nan, 0.0], effort=[1.0, 0.0, 1.0]),
        "unknown_names": _joints(probe, ["a", "b"], [0.0, 0.0]),
        "missing_names": _joints(probe, ["joint"], [0.1]),
        "mismatched_lengths": _joints(probe, names, [0.0, 0.1]),
    }
    bad["non_finite_effort"] = _joints(
        probe, names, good["position"], effort=[math.inf, 0.0, 1.0]
    )
    # each counted before the next is sent, and all before the burst overruns the queue
    for reason, msg in bad.items():
        key = f"rejected.joint_states.{reason.removesuffix('_effort')}"
        assert until_counted(probe, probe.joints, msg, key), (
            f"{reason} not counted: {probe.diagnostics}"
        )
    bad_commands = {
        "wrong_size": [1.0],
        "non_finite": [math.nan, 1.0],
        "out_of_range": [1e39, 1.0],  # finite, but beyond the model's float32
    }
    for reason, data in bad_commands.items():
        assert until_counted(
            probe, probe.commands, Float64MultiArray(data=data), f"rejected.command.{reason}"
        ), f"command {reason} not counted: {probe.diagnostics}"
    # what each command value drives, from the checkpoint, in the warning
    assert "expected 2 ['p_set_flexor', 'p_set_extensor']" in process.output()
    received = probe.counter("received.joint_states")
    for _ in range(1000):
        probe.joints.publish(_joints(probe, names, **good))
    assert probe.t.spin_until(lambda: probe.counter("received.joint_states") > received, 5)
    # still estimating, with the velocity the model provides
    probe.states.clear()
    probe.commands.publish(Float64MultiArray(data=[2.0, 3.0]))
    probe.joints.publish(_joints(probe, names, **good))
    assert probe.t.spin_until(lambda: len(probe.states) >= 5, 10)
    assert probe.states[-1].name == ["joint"] and len(probe.states[-1].velocity) == 1
    assert process.process.poll() is None


def test_a_sample_older_than_sensor_timeout_is_dropped_as_stale(joint_estimator):
    """Accepted on arrival (newer than the last one) but older than sensor_timeout (0.5 s) at
    the tick: missing for the tick, counted, and warned about with the parameter to raise."""
    probe, process = joint_estimator
    probe.t.spin_for(1.0)  # the last joint sample is now a second old
    stale = probe.counter("rejected.joint_states.stale")
    stamp = ns_to_stamp(stamp_to_ns(probe.now()) - 700_000_000)
    probe.joints.publish(
        _joints(probe, ["joint", "flexor", "extensor"], [0.3, 0.0, 0.0], effort=[0, 1.5, 2.5],
                stamp=stamp)
    )
    assert probe.t.spin_until(
        lambda: probe.counter("rejected.joint_states.stale") == stale + 1, 5
    ), probe.diagnostics
    assert "sensor_timeout is 0.500 s" in process.output()


def test_another_publishers_joints_on_the_topic_are_ignored_while_ours_arrive(joint_estimator):
    """An arm and a gripper driver both on /joint_states, the gripper's stamps on another time
    base: the gripper's messages are counted as ignored, not as rejections, and estimates go on.
    Once the model's joints stop coming, such a message is an unknown_names rejection again."""
    probe, process = joint_estimator
    names = ["joint", "flexor", "extensor"]
    rejected_before = {k: v for k, v in probe.diagnostics.items() if k.startswith("rejected.")}
    ignored = probe.counter("ignored.joint_states.other_joints")
    probe.states.clear()
    for k in range(20):
        arm = _joints(probe, names, [0.3, 0.0, 0.0], effort=[0.0, 1.5, 2.5])
        probe.joints.publish(arm)
        probe.t.spin_for(0.02)
        back = ns_to_stamp(stamp_to_ns(arm.header.stamp) - (200_000_000 if k % 2 else 0))
        probe.joints.publish(_joints(probe, ["finger"], [0.01], stamp=back))
        probe.t.spin_for(0.03)
    assert probe.t.spin_until(
        lambda: probe.counter("ignored.joint_states.other_joints") == ignored + 20, 5
    ), probe.diagnostics
    probe.level = None  # a report from after the messages above
    assert probe.t.spin_until(lambda: probe.level is not None, 5)
    assert probe.level == DiagnosticStatus.OK, probe.diagnostics
    rejected_after = {k: v for k, v in probe.diagnostics.items() if k.startswith("rejected.")}
    assert rejected_after == rejected_before
    assert len(probe.states) >= 15
    assert "that name none of the configured joints (first: ['finger'])" in process.output()
    # a message naming nothing is malformed, not another publisher's
    unknown = probe.counter("rejected.joint_states.unknown_names")
    probe.joints.publish(_joints(probe, names, [0.3, 0.0, 0.0], effort=[0.0, 1.5, 2.5]))
    probe.t.spin_for(0.02)
    probe.joints.publish(_joints(probe, [], []))
    assert probe.t.spin_until(
        lambda: probe.counter("rejected.joint_states.unknown_names") == unknown + 1, 5
    ), probe.diagnostics
    probe.t.spin_for(1.0)  # the arm is silent for longer than sensor_timeout (0.5 s)
    probe.joints.publish(_joints(probe, ["finger"], [0.01]))
    assert probe.t.spin_until(
        lambda: probe.counter("rejected.joint_states.unknown_names") == unknown + 2, 5
    ), probe.diagnostics


def test_commands_from_a_best_effort_publisher_arrive(joint_estimator, probe_node):
    """An MPC node or a bag replay may publish commands best effort; they must still match."""
    probe, _ = joint_estimator
    publisher = probe_node.node.create_publisher(
        Float64MultiArray, "/joint_estimator/command", qos_profile_sensor_data
    )
    try:
        assert probe.t.spin_until(lambda: publisher.get_subscription_count() > 0, 10)
        before = probe.counter("received.command")
        # Best effort has no resend: what goes out before the node's side of the discovery
        # has matched this publisher is lost, so publish until five have arrived.
        for _ in range(100):
            publisher.publish(Float64MultiArray(data=[2.0, 3.0]))
            if probe.t.spin_until(lambda: probe.counter("received.command") >= before + 5, 0.05):
                break
        assert probe.counter("received.command") >= before + 5, probe.diagnostics
    finally:
        probe_node.node.destroy_publisher(publisher)


def test_joint_inputs_missing_keep_the_estimate_coming(joint_estimator):
    """Timer ticks continue with no input at all (missing counted), predicting blind."""
    probe, _ = joint_estimator
    probe.t.spin_for(0.6)
    missing = probe.counter("missing.joint_states")
    probe.states.clear()
    assert probe.t.spin_until(lambda: len(probe.states) >= 5, 10)
    assert probe.t.spin_until(lambda: probe.counter("missing.joint_states") > missing, 3)


def test_samples_replaced_before_a_timer_tick_are_counted(joint_estimator):
    """Ticking on the timer, the tick takes the newest sample: five sent within a millisecond
    leave at least three replaced before any tick (a frame lost to jitter shows up too)."""
    probe, _ = joint_estimator
    superseded = probe.counter("superseded.joint_states")
    start = stamp_to_ns(probe.now())
    for k in range(5):
        probe.joints.publish(
            _joints(probe, ["joint", "flexor", "extensor"], [0.3, 0.0, 0.0],
                    effort=[0.0, 1.5, 2.5], stamp=ns_to_stamp(start + k * 100_000))
        )
    assert probe.t.spin_until(
        lambda: probe.counter("superseded.joint_states") >= superseded + 3, 5
    ), probe.diagnostics


def test_the_node_names_its_topics_and_warns_about_an_input_never_heard_from(joint_estimator):
    """A remapping that missed (a typo, an unquoted ~ in the shell) must not go unnoticed: the
    start-up line names the resolved topics, and ticking before anything arrived on an input
    warns with that topic."""
    probe, process = joint_estimator
    output = process.output()
    assert "from ['/joint_estimator/command', '/joint_estimator/joint_states']" in output
    assert "nothing received on /joint_estimator/joint_states yet" in output
    # a parameter that cannot act in this configuration says so instead of doing nothing
    assert "reset_after_gap is ignored with tick_on: timer" in output
    assert probe.diagnostics["split_step"] == "false"  # publish_before_predict: false


def test_cpu_affinity_pins_every_thread_of_the_node(joint_estimator):
    """All of the node's threads (the middleware's too) run on the CPU it was given."""
    probe, process = joint_estimator
    if len(os.sched_getaffinity(0)) < 2:  # CI has two: there it always runs
        pytest.skip("with one CPU every thread is on it anyway: pinning cannot be shown")
    tasks = Path(f"/proc/{process.process.pid}/task")
    allowed = {}
    for task in tasks.iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("Cpus_allowed_list:"):
                allowed[task.name] = line.split(":", 1)[1].strip()
    assert len(allowed) > 1, "expected the DDS threads beside the main thread"
    assert set(allowed.values()) == {str(PIN_CPU)}, allowed
    assert probe.diagnostics["cpu_affinity"] == str(PIN_CPU)


def test_inputs_subscribe_best_effort(joint_estimator, probe_node):
    """Best-effort joint and command inputs take reliable and best-effort publishers alike."""
    node = probe_node.node
    for topic in ("joint_estimator/joint_states", "joint_estimator/command"):
        assert probe_node.spin_until(lambda t=topic: node.get_subscriptions_info_by_topic(
            f"/{t}"), 10), topic
        (info,) = node.get_subscriptions_info_by_topic(f"/{topic}")
        assert info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT, topic


def test_readings_far_outside_training_are_refused_and_the_genuine_stream_goes_on(
        joint_estimator):
    """A single finite reading or command far beyond the training range (this checkpoint
    records no min/max: mean +- range_sigmas (6) std, so joint within 0.1 +- 3 rad, commands
    within 2 +- 6) is refused as out_of_range under its own input's key, also near the float32
    limit, and the estimate stays finite while the genuine readings keep being used."""
    probe, _ = joint_estimator
    names = ["joint", "flexor", "extensor"]
    genuine = dict(position=[0.3, 0.0, 0.0], effort=[0.0, 1.5, 2.5])
    for far in ([20.0, 0.0, 0.0], [3e38, 0.0, 0.0]):
        msg = _joints(probe, names, far, effort=genuine["effort"])
        assert until_counted(probe, probe.joints, msg, "rejected.joint_states.out_of_range"), (
            probe.diagnostics
        )
    for far in ([30.0, 2.0], [2.0, -3e38]):
        assert until_counted(probe, probe.commands, Float64MultiArray(data=far),
                             "rejected.command.out_of_range"), probe.diagnostics
    received = probe.counter("received.joint_states")
    probe.states.clear()
    for _ in range(30):
        probe.joints.publish(_joints(probe, names, **genuine))
        probe.t.spin_for(0.03)
    assert probe.t.spin_until(lambda: len(probe.states) >= 10, 10)
    assert probe.counter("received.joint_states") > received
    for state in probe.states:
        assert all(math.isfinite(v) for v in [*state.position, *state.velocity]), state
