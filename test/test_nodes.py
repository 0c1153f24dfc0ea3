"""rkn_estimator as a real process over DDS, fed and probed by the test's own rclpy node."""

from __future__ import annotations

import itertools
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from pam_recordings import PAM_FILE
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from test_nodes_support import REPO, NodeProcess, TestNode, start_once  # sets ROS_DOMAIN_ID first
from test_runtime_support import (
    make_joint_checkpoint,
    make_monotone_pendulum_checkpoint,
    make_pam_checkpoint,
    make_pendulum_checkpoint,
)
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import MarkerArray

from rkn_ros.data.messages import IMAGE_ENCODINGS
from rkn_ros.nodes.conversions import array_to_image, ns_to_stamp, stamp_to_ns
from rkn_ros.sim.render import RenderParams, render

BEST_EFFORT = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
PIN_CPU = max(os.sched_getaffinity(0))  # the joint estimator runs pinned to this CPU
FRAME = render(np.array([[0.6]]), (1.0,), RenderParams(image_size=24))[0]


class Probe:
    """Publishes to one estimator and records everything it says."""

    def __init__(self, test_node: TestNode, name: str) -> None:
        node = test_node.node
        self.t = test_node
        self.name = name
        self.images = node.create_publisher(Image, f"/{name}/image", 10)
        self.joints = node.create_publisher(JointState, f"/{name}/joint_states", 10)
        self.commands = node.create_publisher(Float64MultiArray, f"/{name}/command", 10)
        self.states: list[JointState] = []
        self.stddevs: list[JointState] = []
        self.predictions: list[JointTrajectory] = []
        self.markers: list[MarkerArray] = []
        self.diagnostics: dict[str, str] = {}
        self.level: bytes | None = None
        node.create_subscription(JointState, f"/{name}/state", self.states.append, BEST_EFFORT)
        node.create_subscription(
            JointState, f"/{name}/state_stddev", self.stddevs.append, BEST_EFFORT
        )
        node.create_subscription(
            JointTrajectory, f"/{name}/prediction", self.predictions.append, BEST_EFFORT
        )
        node.create_subscription(MarkerArray, f"/{name}/markers", self.markers.append, BEST_EFFORT)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.reset_client = node.create_client(Trigger, f"/{name}/reset")

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(f"/{self.name}:"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                self.level = status.level

    def now(self) -> Time:
        return self.t.node.get_clock().now().to_msg()

    def wait_ready(self, publisher, timeout: float = 60.0) -> None:
        assert self.t.spin_until(
            lambda: publisher.get_subscription_count() > 0 and "ticks" in self.diagnostics,
            timeout,
        ), f"estimator {self.name} did not come up"

    def frame(self, image: np.ndarray = FRAME, stamp: Time | None = None, **fields) -> Image:
        msg = array_to_image(image, stamp or self.now())
        for key, value in fields.items():
            setattr(msg, key, value)
        return msg

    def feed(self, count: int, period: float = 0.05, image: np.ndarray = FRAME) -> list[int]:
        """Publish ``count`` frames ``period`` apart; returns their stamps (ns)."""
        stamps = []
        for _ in range(count):
            msg = self.frame(image)
            stamps.append(stamp_to_ns(msg.header.stamp))
            self.images.publish(msg)
            self.t.spin_for(period)
        return stamps

    def by_stamp(self, source: list) -> dict[int, JointState]:
        return {stamp_to_ns(m.header.stamp): m for m in source}

    def counter(self, key: str) -> int:
        return int(self.diagnostics.get(key, "0"))

    def reset(self) -> Trigger.Response:
        assert self.reset_client.wait_for_service(timeout_sec=20)
        future = self.reset_client.call_async(Trigger.Request())
        assert self.t.spin_until(future.done, 20)
        return future.result()


@pytest.fixture(scope="module")
def probe_node():
    node = TestNode("rkn_test_probe")
    yield node
    node.close()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("node_checkpoints")
    return {
        "monotone": make_monotone_pendulum_checkpoint(root / "monotone"),
        "pendulum": make_pendulum_checkpoint(root / "pendulum"),
        "joint": make_joint_checkpoint(root / "joint"),
    }


@pytest.fixture(scope="module")
def image_estimator(checkpoints, probe_node, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "image_estimator.log"
    process = NodeProcess(
        "rkn_estimator",
        params={
            "model_path": checkpoints["monotone"],
            "tick_on": "image",
            "sensor_timeout": 0.12,
            "prediction_horizon": 3,
            "publish_markers": True,
            "diagnostics_period": 0.2,
            "warn_throttle": 1.0,
            "max_future": 1.0,
        },
        log=log,
    )
    probe = Probe(probe_node, "rkn_estimator")
    probe.wait_ready(probe.images)
    yield probe, process
    assert process.process.poll() is None, f"estimator died:\n{process.output()}"
    assert process.stop() == 0, process.output()


def test_one_estimate_per_frame_with_rising_stamps_and_predictions(image_estimator):
    probe, _ = image_estimator
    probe.states.clear()
    stamps = probe.feed(20)
    assert probe.t.spin_until(lambda: set(stamps) <= set(probe.by_stamp(probe.states)), 10)
    states = probe.by_stamp(probe.states)
    for stamp in stamps:
        assert states[stamp].name == ["joint_1"] and len(states[stamp].position) == 1
    got = [stamp_to_ns(m.header.stamp) for m in probe.states]
    assert all(b > a for a, b in itertools.pairwise(got)), "stamps must rise strictly"
    stddevs = probe.by_stamp(probe.stddevs)
    assert all(stddevs[s].name == ["joint_1"] and stddevs[s].position[0] > 0 for s in stamps)
    prediction = next(p for p in probe.predictions if stamp_to_ns(p.header.stamp) == stamps[-1])
    assert prediction.joint_names == ["joint_1"] and len(prediction.points) == 3
    assert probe.diagnostics["split_step"] == "true"  # published before the prediction ran
    offsets = [p.time_from_start.sec + 1e-9 * p.time_from_start.nanosec for p in prediction.points]
    assert offsets == pytest.approx([0.05, 0.10, 0.15])
    assert probe.markers and len(probe.markers[-1].markers) == 3


def _in_process_estimator(checkpoints, **params):
    """The real node class in this process, on its own name (no topic shared with the
    fixtures'), its ~/state stamps noted as it publishes them."""
    from rclpy.parameter import Parameter

    from rkn_ros.nodes.estimator_node import EstimatorNode

    node = EstimatorNode(
        parameter_overrides=[Parameter(k, value=v) for k, v in params.items()],
        cli_args=["--ros-args", "-r", "__node:=in_process_estimator"],
    )
    node.stamps = []
    publish = node.pub_state.publish

    def publish_and_note(msg: JointState) -> None:
        node.stamps.append(stamp_to_ns(msg.header.stamp))
        publish(msg)

    node.pub_state.publish = publish_and_note
    return node


@pytest.mark.parametrize("publish_first", [True, False])
def test_the_node_publishes_each_estimate_before_it_predicts_the_next_prior(
    checkpoints, probe_node, publish_first
):
    """``publish_before_predict``: ``~/state`` goes out while the prediction of the next prior
    is still pending, and the prediction has run by the time the callback returns (so the next
    tick pays only its update). Off, the whole step runs before the publish. The node runs in
    this process here, to see its estimator between the two."""
    node = _in_process_estimator(checkpoints, model_path=str(checkpoints["monotone"]),
                                 tick_on="image", publish_before_predict=publish_first)
    try:
        assert node.est.splits_step is publish_first
        pending_at_publish = []
        publish = node.pub_state.publish

        def publish_and_note(msg: JointState) -> None:
            pending_at_publish.append(node.est.advance_pending)
            publish(msg)

        node.pub_state.publish = publish_and_note
        frame = np.zeros(node.est.inputs["image"].image_size, np.uint8)
        for _ in range(3):
            node._on_image(array_to_image(frame, node.get_clock().now().to_msg()))
            assert not node.est.advance_pending
        assert pending_at_publish == [publish_first] * 3
    finally:
        node.destroy_node()


@pytest.mark.parametrize(
    ("case", "offsets"),
    [
        # in periods of the model's dt from the first frame
        ("every other frame dropped", [2 * k for k in range(20)]),
        ("every fifth frame stamped 0.6 periods late, none dropped",
         [k + (0.6 if k % 5 == 4 else 0.0) for k in range(40)]),
        ("every fifth frame stamped 0.4 periods early, two dropped",
         [k - (0.4 if k % 5 == 4 else 0.0) for k in range(40) if k not in (17, 18)]),
    ],
)
def test_ticking_on_the_camera_keeps_one_tick_per_period(checkpoints, case, offsets):
    """A model without a dt input advances one dt a step, so ticking on the camera must give
    it one step per period of the stamps: a tick for each dropped frame (too short a gap for
    the timer to coast through), on the period grid; no extra tick for a frame stamped late or
    early."""
    node = _in_process_estimator(checkpoints, model_path=str(checkpoints["monotone"]),
                                 tick_on="image")
    try:
        period = 50_000_000
        base = node.get_clock().now().nanoseconds - 10_000_000_000
        frame = np.zeros(node.est.inputs["image"].image_size, np.uint8)
        stamps = [base + round(offset * period) for offset in offsets]
        for stamp in stamps:
            node._on_image(array_to_image(frame, ns_to_stamp(stamp)))
        periods = round((stamps[-1] - stamps[0]) / period)
        assert node.ticks == periods + 1, (case, node.ticks, periods)
        assert set(stamps) <= set(node.stamps)
        grid = [s for s in node.stamps if s not in stamps]  # the dropped frames' ticks
        assert all(any(s == t + period for t in node.stamps) for s in grid), case
        assert node.ticks_ahead == 0
    finally:
        node.destroy_node()


def test_a_camera_faster_than_the_models_rate_is_warned_about(checkpoints):
    node = _in_process_estimator(checkpoints, model_path=str(checkpoints["monotone"]),
                                 tick_on="image")
    try:
        base = node.get_clock().now().nanoseconds - 10_000_000_000
        frame = np.zeros(node.est.inputs["image"].image_size, np.uint8)
        for k in range(20):  # 40 Hz against the model's 20 Hz
            node._on_image(array_to_image(frame, ns_to_stamp(base + k * 25_000_000)))
        assert node.ticks == 20 and node.ticks_ahead >= 1  # one tick per message, as documented
        values = {kv.key: kv.value for kv in node.diagnostics().values}
        assert int(values["ticks_ahead"]) == node.ticks_ahead
    finally:
        node.destroy_node()


def test_camera_gap_raises_std_which_falls_when_frames_return(image_estimator):
    probe, _ = image_estimator
    probe.states.clear()
    probe.stddevs.clear()
    before = probe.feed(10)
    probe.t.spin_for(0.8)  # the camera stops
    after = probe.feed(10)
    assert probe.t.spin_until(lambda: after[-1] in probe.by_stamp(probe.stddevs), 10)
    series = [(stamp_to_ns(m.header.stamp), m.position[0]) for m in probe.stddevs]
    gap = [(s, v) for s, v in series if before[-1] < s < after[0]]
    assert len(gap) >= 4, f"the timer should coast through the gap, got {len(gap)} ticks"
    values = [v for _, v in gap]
    # rises tick by tick (up to the no-information spread of an angle, where it stays)
    assert all(b >= a for a, b in itertools.pairwise(values)), values
    assert values[-1] > values[0]
    last_before = dict(series)[before[-1]]
    first_after = dict(series)[after[0]]
    assert values[0] > last_before
    assert first_after < values[-1]
    assert dict(series)[after[-1]] < first_after
    assert probe.counter("coasting_ticks") >= len(gap) or probe.t.spin_until(
        lambda: probe.counter("coasting_ticks") >= len(gap), 3
    )


def test_a_dropped_frame_still_gets_its_tick_on_the_period_grid(image_estimator):
    """Every other frame lost: too short a gap for the timer to coast through (sensor_timeout
    0.12 s, frames 0.1 s apart). Each frame after a lost one first gets the tick the lost one
    would have had, stamped a period (0.05 s, the model's dt) after the last, with the spread
    up there and down again at the next frame; a model without a dt input advances one dt a
    step, so one step for two periods would run its dynamics at half speed."""
    probe, _ = image_estimator
    probe.feed(5)
    probe.stddevs.clear()
    # stamped on an exact 0.1 s grid (a late callback here must not look like a late frame)
    start = probe.t.node.get_clock().now().nanoseconds
    fed = [start + k * 100_000_000 for k in range(8)]
    for stamp in fed:
        probe.images.publish(probe.frame(stamp=ns_to_stamp(stamp)))
        probe.t.spin_for(0.1)
    assert probe.t.spin_until(lambda: fed[-1] in probe.by_stamp(probe.stddevs), 10)
    spread = {s: m.position[0] for s, m in probe.by_stamp(probe.stddevs).items()}
    for before, after in itertools.pairwise(fed):
        between = [s for s in spread if before < s < after]
        assert between == [before + 50_000_000], (before, after, between)
        assert spread[before] < spread[between[0]] > spread[after]


def test_stamps_jumping_back_start_a_fresh_belief_and_estimates_go_on(image_estimator):
    """A bag played again (--loop) or a restarted simulator: the camera's stamps jump back by
    more than a second. Ticking on the image, the estimator starts over and keeps estimating
    rather than refusing every frame as going backwards."""
    probe, _ = image_estimator
    probe.feed(5)
    backwards = probe.counter("rejected.image.stamp_backwards")
    resets = probe.counter("jump_resets")
    probe.states.clear()
    stamps = []
    for _ in range(10):  # each stamped 5 s before it is sent, as a replay would
        stamps.append(stamp_to_ns(probe.now()) - 5_000_000_000)
        probe.images.publish(probe.frame(stamp=ns_to_stamp(stamps[-1])))
        probe.t.spin_for(0.05)
    assert probe.t.spin_until(lambda: set(stamps) <= set(probe.by_stamp(probe.states)), 10)
    assert probe.t.spin_until(lambda: probe.counter("jump_resets") == resets + 1, 5)
    assert probe.counter("rejected.image.stamp_backwards") == backwards
    # a message merely out of order (less than a second back) is still refused, not a restart
    probe.images.publish(probe.frame(stamp=ns_to_stamp(stamps[-1] - 200_000_000)))
    assert probe.t.spin_until(
        lambda: probe.counter("rejected.image.stamp_backwards") == backwards + 1, 5
    )
    assert probe.counter("jump_resets") == resets + 1


def _encoded(picture: np.ndarray, encoding: str) -> tuple[bytes, int]:
    """A grey ``uint8 [H, W]`` picture as the bytes and row step of ``encoding``."""
    if encoding in ("mono16", "16UC1"):
        pixels = (picture.astype(np.uint16) * 257)[:, :, None]
    else:
        channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}.get(encoding, 1)
        pixels = np.repeat(picture[:, :, None], channels, axis=2)
    pixels = np.ascontiguousarray(pixels)
    return pixels.tobytes(), pixels.shape[1] * pixels.shape[2] * pixels.itemsize


def test_reset_service_and_every_accepted_encoding(image_estimator):
    """After a reset the same picture gives the same estimate in every accepted encoding."""
    probe, _ = image_estimator
    results = {}
    for encoding in IMAGE_ENCODINGS:
        for _ in range(5):
            # A frame just before the reset, and a retry when the timer still coasted (a
            # prediction step from the initial belief, stamped between the two frames) before
            # the frame under test: the estimate must be the reset belief's first update.
            prime = probe.frame()
            probe.images.publish(prime)
            primed = stamp_to_ns(prime.header.stamp)
            assert probe.t.spin_until(lambda s=primed: s in probe.by_stamp(probe.stddevs), 10)
            response = probe.reset()
            assert response.success and "reset" in response.message
            data, step = _encoded(FRAME, encoding)
            msg = probe.frame(encoding=encoding, data=data, step=step)
            stamp = stamp_to_ns(msg.header.stamp)
            probe.images.publish(msg)
            assert probe.t.spin_until(
                lambda s=stamp: s in probe.by_stamp(probe.stddevs), 10
            ), encoding
            if not any(primed < t < stamp for t in probe.by_stamp(probe.states)):
                break
        else:
            pytest.fail(f"{encoding}: the timer coasted before every try's frame")
        results[encoding] = (
            probe.by_stamp(probe.states)[stamp].position[0],
            probe.by_stamp(probe.stddevs)[stamp].position[0],
        )
    assert probe.counter("rejected.image.unknown_encoding") == 0
    reference = results["mono8"]
    for encoding, value in results.items():
        assert value == pytest.approx(reference, abs=1e-6), encoding
    # a reset estimate starts from the initial belief: as uncertain as the very first tick
    assert reference[1] > 1.0


def test_bad_images_are_dropped_counted_and_survived(image_estimator):
    probe, process = image_estimator
    probe.feed(2)
    now = probe.now()
    now_ns = stamp_to_ns(now)
    bad = {
        "wrong_size": probe.frame(np.zeros((20, 20), np.uint8)),
        "unknown_encoding": probe.frame(encoding="yuv422"),
        "step_mismatch": probe.frame(step=10),
        "truncated_data": probe.frame(data=array_to_image(FRAME, now).data[:100]),
        "zero_stamp": probe.frame(stamp=Time()),
        "stamp_backwards": probe.frame(stamp=ns_to_stamp(now_ns - 500_000_000)),  # < 1 s
        "future_stamp": probe.frame(stamp=ns_to_stamp(now_ns + 100_000_000_000)),
    }
    for reason, msg in bad.items():  # one at a time: the depth-1 queue keeps only the newest
        assert _until_counted(probe, probe.images, msg, f"rejected.image.{reason}"), (
            f"{reason} not counted: {probe.diagnostics}"
        )
    received = probe.counter("received.image")
    for _ in range(1000):  # a burst: the depth-1 queue keeps the newest, nothing queues up
        probe.images.publish(probe.frame())
    assert probe.t.spin_until(lambda: probe.counter("received.image") > received, 5)
    probe.states.clear()
    stamps = probe.feed(5)
    assert probe.t.spin_until(lambda: stamps[-1] in probe.by_stamp(probe.states), 10)
    assert process.process.poll() is None
    assert "dropped image message" in process.output()
    # /diagnostics warns while frames are being refused and is OK again once they stop
    probe.level = None  # the next report, not one from the burst above
    probe.images.publish(probe.frame(stamp=Time()))
    assert probe.t.spin_until(lambda: probe.level == DiagnosticStatus.WARN, 5)
    probe.feed(10)  # 0.5 s of good frames; diagnostics_period is 0.2 s
    assert probe.t.spin_until(lambda: probe.level == DiagnosticStatus.OK, 5), probe.diagnostics


@pytest.fixture(scope="module")
def joint_estimator(checkpoints, probe_node, image_estimator, tmp_path_factory):
    log = tmp_path_factory.mktemp("logs") / "joint_estimator.log"
    process = NodeProcess(
        "rkn_estimator",
        params={
            "model_path": checkpoints["joint"],
            "diagnostics_period": 0.2,
            "sensor_timeout": 0.5,
            "cpu_affinity": f"[{PIN_CPU}]",
            "reset_after_gap": 5.0,  # ignored ticking on the timer: warned about at start-up
            "publish_before_predict": False,  # the whole step before publishing (the image
            # estimator runs the default, split one)
        },
        remaps={"__node": "joint_estimator"},
        log=log,
    )
    probe = Probe(probe_node, "joint_estimator")
    probe.wait_ready(probe.joints)
    yield probe, process
    assert process.process.poll() is None, f"estimator died:\n{process.output()}"
    assert process.stop() == 0, process.output()


def _until_counted(probe: Probe, publisher, msg, key: str, timeout: float = 15.0) -> bool:
    """Publish ``msg`` until the node's ``key`` counter rises (a best-effort subscription of
    depth 1 keeps only the newest message: a bad one sent right after another can replace it
    before the node takes it)."""
    before = probe.counter(key)
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        publisher.publish(msg)
        if probe.t.spin_until(lambda: probe.counter(key) > before, 0.6):
            return True
    return False


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
        assert _until_counted(probe, probe.joints, msg, key), (
            f"{reason} not counted: {probe.diagnostics}"
        )
    bad_commands = {
        "wrong_size": [1.0],
        "non_finite": [math.nan, 1.0],
        "out_of_range": [1e39, 1.0],  # finite, but beyond the model's float32
    }
    for reason, data in bad_commands.items():
        assert _until_counted(
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


def test_inputs_subscribe_best_effort_and_outputs_publish_reliable(
    image_estimator, joint_estimator, probe_node
):
    """DESIGN.md's QoS: sensor-data (best effort) inputs, which take reliable and best-effort
    publishers alike; reliable outputs, which rviz, rqt_plot and `ros2 bag record` take."""
    node = probe_node.node
    for topic in ("rkn_estimator/image", "joint_estimator/joint_states",
                  "joint_estimator/command"):
        assert probe_node.spin_until(lambda t=topic: node.get_subscriptions_info_by_topic(
            f"/{t}"), 10), topic
        (info,) = node.get_subscriptions_info_by_topic(f"/{topic}")
        assert info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT, topic
    for topic in ("rkn_estimator/state", "rkn_estimator/state_stddev"):
        (info,) = node.get_publishers_info_by_topic(f"/{topic}")
        assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE, topic


def test_a_model_that_cannot_serve_stops_startup_with_one_line(checkpoints, tmp_path):
    corrupt = make_pendulum_checkpoint(tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    cases = {
        "does not exist": ["-p", f"model_path:={tmp_path / 'missing'}"],
        "corrupt": ["-p", f"model_path:={corrupt}"],
        "image size [48, 48] requested": [
            "-p",
            f"model_path:={checkpoints['pendulum']}",
            "-p",
            "image_height:=48",
            "-p",
            "image_width:=48",
        ],
        "not available to this process": [
            "-p",
            f"model_path:={checkpoints['pendulum']}",
            "-p",
            "cpu_affinity:=[4096]",
        ],
        "trained with dt 0.05 s": [
            "-p",
            f"model_path:={checkpoints['pendulum']}",
            "-p",
            "frequency:=50.0",
        ],
        "joint_names ['a'] has 1 entries, the model's vector inputs ['joints'] take 3": [
            "-p", f"model_path:={checkpoints['joint']}", "-p", "joint_names:=[a]",
        ],
        "output_joint_names ['a', 'b'] has 2 names, the model estimates 1 joints": [
            "-p", f"model_path:={checkpoints['joint']}", "-p", "output_joint_names:=[a, b]",
        ],
        "tick_on 'image' but model": [
            "-p", f"model_path:={checkpoints['joint']}", "-p", "tick_on:=image",
        ],
        "image_shape given but the model has no image input": [
            "-p", f"model_path:={checkpoints['joint']}", "-p", "image_height:=24",
            "-p", "image_width:=24",
        ],
        "image_height/image_width set but the model has no image input": [
            "-p", f"model_path:={checkpoints['joint']}", "-p", "image_height:=24",
            "-p", "image_width:=24", "-p", "resize_images:=true",
        ],
        "marker_link_lengths has 2 values for 1 joints": [
            "-p", f"model_path:={checkpoints['pendulum']}", "-p", "publish_markers:=true",
            "-p", "marker_link_lengths:=[1.0, 2.0]",
        ],
    }
    # they start in parallel: each spends its time importing torch
    running = {e: start_once("rkn_estimator", ["--ros-args", *a]) for e, a in cases.items()}
    for expected, process in running.items():
        _, stderr = process.communicate(timeout=120)
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert process.returncode == 1, stderr
        assert len(lines) == 1 and expected in lines[0], stderr
        assert "Traceback" not in stderr


def test_an_interrupt_while_the_node_starts_ends_it_quietly(checkpoints):
    """Ctrl-C (or ros2 launch's SIGTERM) at any moment of start-up: importing torch, loading and
    exporting the model, spinning. Once it landed in that work: a traceback, a C++ abort, or a
    node that went on running."""
    moments = [(0.3, signal.SIGINT), (1.0, signal.SIGINT), (1.5, signal.SIGTERM),
               (2.0, signal.SIGINT), (3.0, signal.SIGINT)]
    args = ["--ros-args", "-p", f"model_path:={checkpoints['pendulum']}",
            "-r", "__node:=interrupted_estimator"]
    running = [(start_once("rkn_estimator", args), delay, signum) for delay, signum in moments]
    start = time.monotonic()
    for process, delay, signum in running:
        time.sleep(max(0.0, start + delay - time.monotonic()))
        process.send_signal(signum)
    # and one interrupted once it is known to be spinning (its start-up line is out), however
    # slow the machine: the moments above may all land in the imports on a slow one
    spinning = start_once("rkn_estimator", args)
    stderr_lines: list[str] = []
    reader = threading.Thread(target=lambda: stderr_lines.extend(spinning.stderr), daemon=True)
    reader.start()
    end = time.monotonic() + 90
    while not any("model 'pendulum_test'" in line for line in stderr_lines):
        assert time.monotonic() < end and spinning.poll() is None, "".join(stderr_lines)
        time.sleep(0.05)
    time.sleep(0.5)
    spinning.send_signal(signal.SIGINT)
    assert spinning.wait(timeout=30) == 0, "".join(stderr_lines)
    reader.join(timeout=10)
    stderr = "".join(stderr_lines)
    assert "Traceback" not in stderr and "terminate" not in stderr, stderr
    for process, delay, signum in running:
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, (delay, signum, stderr)
        assert "Traceback" not in stderr and "terminate" not in stderr, (delay, stderr)


def test_pam_replay_without_its_recording_says_how_to_point_it_there(tmp_path):
    # An installed package has no ../shared beside it: the one line must say what to set.
    process = start_once("pam_replay", [], env={"RKN_ROS_SHARED": str(tmp_path)})
    _, stderr = process.communicate(timeout=60)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert process.returncode == 1, stderr
    assert len(lines) == 1, stderr
    assert str(tmp_path / "data" / "pam" / "pam_dev.npz") in lines[0]
    assert "'file'" in lines[0] and "RKN_ROS_SHARED" in lines[0]


def _assert_simulated_stamps(probe: Probe, node: NodeProcess, count: int, dt_ns: int) -> None:
    """``count`` estimates stamped in simulated time (from 1 s on), strictly rising, one dt
    apart (median)."""
    assert probe.t.spin_until(lambda: len(probe.states) >= count, 60), node.output()
    stamps = [stamp_to_ns(m.header.stamp) for m in probe.states]
    assert all(b > a for a, b in itertools.pairwise(stamps))
    assert 1_000_000_000 <= stamps[0] < 1_000_000_000 * 3600  # simulated, not wall time
    assert np.median(np.diff(stamps[5:]) / dt_ns) == pytest.approx(1.0, abs=0.01)


def test_use_sim_time_follows_the_simulators_clock(checkpoints, probe_node, tmp_path):
    """pendulum_sim publishing /clock at 4x real time drives a use_sim_time estimator: its
    stamps are simulated times (from 1 s on), strictly rising, one per simulated dt."""
    sim = NodeProcess(
        "pendulum_sim",
        params={"publish_clock": True, "real_time_factor": 4.0},
        log=tmp_path / "sim.log",
    )
    estimator = NodeProcess(
        "rkn_estimator",
        params={"model_path": checkpoints["pendulum"], "use_sim_time": True},
        remaps={"__node": "sim_time_estimator", "~/image": "/pendulum_sim/image"},
        log=tmp_path / "estimator.log",
    )
    try:
        probe = Probe(probe_node, "sim_time_estimator")
        _assert_simulated_stamps(probe, estimator, count=40, dt_ns=50_000_000)
        # the frames arrive and are used: few ticks go without one
        assert probe.t.spin_until(lambda: probe.counter("received.image") >= 40, 10)
        assert probe.counter("missing.image") < probe.counter("ticks") / 2
    finally:
        assert estimator.stop() == 0, estimator.output()
        assert sim.stop() == 0, sim.output()


def test_a_clock_advancing_in_long_steps_still_gets_one_tick_per_period(
    checkpoints, probe_node, tmp_path
):
    """`ros2 bag play --clock` publishes /clock at 40 Hz by default: a clock that jumps 2.5
    periods at a time, and a sim-time timer that fires irregularly. Ticking on the timer, a
    fixed-dt model still steps once per dt of clock time."""
    estimator = NodeProcess(
        "rkn_estimator",
        params={
            "model_path": checkpoints["monotone"],
            "use_sim_time": True,
            "diagnostics_period": 0.2,
        },
        remaps={"__node": "coarse_clock_estimator"},
        log=tmp_path / "estimator.log",
    )
    clock = probe_node.node.create_publisher(ClockMsg, "/clock", 10)
    try:
        probe = Probe(probe_node, "coarse_clock_estimator")
        sim_ns = 1_000_000_000
        end = time.monotonic() + 60
        while not probe.states and time.monotonic() < end:  # until the model is loaded
            sim_ns += 125_000_000  # 2.5 ticks of dt = 0.05 s
            clock.publish(ClockMsg(clock=ns_to_stamp(sim_ns)))
            probe.t.spin_for(0.05)
        assert probe.states, estimator.output()
        probe.t.spin_for(0.6)  # the clock stands still: a report of the ticks so far
        before = probe.counter("ticks")
        for _ in range(40):  # 5 s of clock: 100 periods
            sim_ns += 125_000_000
            clock.publish(ClockMsg(clock=ns_to_stamp(sim_ns)))
            probe.t.spin_for(0.1)
        assert probe.t.spin_until(lambda: abs(probe.counter("ticks") - before - 100) <= 1, 5), (
            probe.counter("ticks") - before
        )
        stamps = [stamp_to_ns(m.header.stamp) for m in probe.states]
        assert all(b > a for a, b in itertools.pairwise(stamps))
    finally:
        probe_node.node.destroy_publisher(clock)
        assert estimator.stop() == 0, estimator.output()


def test_use_sim_time_follows_the_pam_replays_clock(probe_node, tmp_path):
    """pam_replay with publish_clock drives the action-conditioned estimator set up as in
    config/pam.yaml (ticking on the joint states): replayed times, one per dt = 0.01 s."""
    config = REPO / "config" / "pam.yaml"
    # the estimator's section under this test's node name (another estimator is running)
    sections = yaml.safe_load(config.read_text())
    estimator_config = tmp_path / "estimator.yaml"
    estimator_config.write_text(
        yaml.safe_dump({"/**/pam_sim_time_estimator": sections["/**/rkn_estimator"]})
    )
    replay = NodeProcess(
        "pam_replay",
        params={"publish_clock": True, "real_time_factor": 2.0, "file": str(PAM_FILE)},
        params_file=config,
        log=tmp_path / "replay.log",
    )
    estimator = NodeProcess(
        "rkn_estimator",
        params={"model_path": make_pam_checkpoint(tmp_path / "pam"), "use_sim_time": True},
        params_file=estimator_config,
        remaps={
            "__node": "pam_sim_time_estimator",
            "~/joint_states": "/pam_replay/joint_states",
            "~/command": "/pam_replay/command",
        },
        log=tmp_path / "estimator.log",
    )
    try:
        probe = Probe(probe_node, "pam_sim_time_estimator")
        _assert_simulated_stamps(probe, estimator, count=60, dt_ns=10_000_000)
        assert probe.t.spin_until(  # pam.yaml's settings apply
            lambda: probe.diagnostics.get("tick_source") == "joint_states", 5
        )
        assert probe.counter("rejected.joint_states.future_stamp") == 0
    finally:
        assert estimator.stop() == 0, estimator.output()
        assert replay.stop() == 0, replay.output()


def test_a_publisher_of_another_type_on_an_input_is_named_with_what_to_do(
    checkpoints, probe_node, tmp_path
):
    """A camera remapped to its compressed topic: DDS never connects the two, so the node hears
    nothing; the warning names the type the publishers send, not a remapping problem."""
    name = "rkn_typed_estimator"
    process = NodeProcess(
        "rkn_estimator",
        params={"model_path": checkpoints["monotone"], "tick_on": "image",
                "diagnostics_period": 0.2},
        remaps={"__node": name},
        log=tmp_path / "typed_estimator.log",
    )
    try:
        compressed = probe_node.node.create_publisher(
            CompressedImage, f"/{name}/image", qos_profile_sensor_data
        )
        expected = (
            f"nothing received on /{name}/image: its publishers send "
            "sensor_msgs/msg/CompressedImage, this input takes sensor_msgs/msg/Image "
            "(decompress it: ros2 run image_transport republish compressed raw)"
        )
        assert probe_node.spin_until(lambda: expected in process.output(), 60), process.output()
        probe_node.node.destroy_publisher(compressed)
    finally:
        assert process.process.poll() is None, f"estimator died:\n{process.output()}"
        assert process.stop() == 0, process.output()


def test_input_resuming_after_a_long_silence_starts_a_fresh_belief(
    checkpoints, probe_node, tmp_path
):
    """With reset_after_gap, the first frame after a silence is filtered from the initial belief."""
    name = "rkn_gap_estimator"
    process = NodeProcess(
        "rkn_estimator",
        params={
            "model_path": checkpoints["monotone"],
            "tick_on": "image",
            "sensor_timeout": 0.12,
            "reset_after_gap": 0.5,
            "diagnostics_period": 0.2,
        },
        remaps={"__node": name},
        log=tmp_path / "gap_estimator.log",
    )
    probe = Probe(probe_node, name)
    try:
        probe.wait_ready(probe.images)
        assert probe.reset().success
        [fresh] = probe.feed(1)
        assert probe.t.spin_until(lambda: fresh in probe.by_stamp(probe.stddevs), 10)
        fresh_std = probe.by_stamp(probe.stddevs)[fresh].position[0]
        settled = probe.feed(10)
        probe.t.spin_for(0.9)  # silence longer than reset_after_gap
        [resumed] = probe.feed(1)
        assert probe.t.spin_until(lambda: resumed in probe.by_stamp(probe.stddevs), 10)
        stddevs = probe.by_stamp(probe.stddevs)
        # what a failure needs to be understood: every estimate since the reset, and the node
        seen = {(stamp - fresh) * 1e-9: round(m.position[0], 6) for stamp, m in stddevs.items()}
        context = f"stddev by time after the first frame: {seen}\n{probe.diagnostics}\n" + (
            process.output()
        )
        assert settled[-1] in stddevs, context
        assert stddevs[settled[-1]].position[0] < fresh_std, context  # ten frames narrowed it
        assert stddevs[resumed].position[0] == pytest.approx(fresh_std, rel=1e-6), context
        assert probe.t.spin_until(lambda: probe.counter("gap_resets") >= 1, 5), context
    finally:
        assert process.process.poll() is None, f"estimator died:\n{process.output()}"
        assert process.stop() == 0, process.output()
