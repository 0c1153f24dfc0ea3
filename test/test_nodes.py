"""rkn_estimator ticking on the camera, as a real process over DDS (and the node class in
process where its estimator must be seen between two calls), fed and probed by the test's own
rclpy node."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import JointState
from test_nodes_support import (  # sets ROS_DOMAIN_ID first
    FRAME,
    running_estimator,
    until_counted,
)

from rkn_ros.data.messages import IMAGE_ENCODINGS
from rkn_ros.nodes.conversions import array_to_image, ns_to_stamp, stamp_to_ns


@pytest.fixture(scope="module")
def image_estimator(checkpoints, probe_node, tmp_path_factory):
    params = {
        "model_path": checkpoints["monotone"],
        "tick_on": "image",
        "sensor_timeout": 0.12,
        "prediction_horizon": 3,
        "publish_markers": True,
        "diagnostics_period": 0.2,
        "warn_throttle": 1.0,
        "max_future": 1.0,
    }
    log = tmp_path_factory.mktemp("logs") / "image_estimator.log"
    with running_estimator(probe_node, "rkn_estimator", params, log) as running:
        yield running


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


def test_a_camera_faster_than_the_models_rate_is_warned_about(checkpoints, probe_node):
    node = _in_process_estimator(checkpoints, model_path=str(checkpoints["monotone"]),
                                 tick_on="image")
    try:
        base = node.get_clock().now().nanoseconds - 10_000_000_000
        frame = np.zeros(node.est.inputs["image"].image_size, np.uint8)
        for k in range(20):  # 40 Hz against the model's 20 Hz
            node._on_image(array_to_image(frame, ns_to_stamp(base + k * 25_000_000)))
        counts = node.scheduler.counts
        assert counts.ticks == 20 and counts.ticks_ahead >= 1  # one tick per message
        values = {kv.key: kv.value for kv in node.diagnostics().values}
        assert int(values["ticks_ahead"]) == counts.ticks_ahead
        assert node.stamps == [base + k * 25_000_000 for k in range(20)]
    finally:
        node.destroy_node()


def test_a_malformed_clock_message_is_counted_and_the_clock_keeps_its_time(
    checkpoints, probe_node
):
    """use_sim_time in process: the /clock subscription's callback (what the executor calls)
    refuses a negative or unnormalized stamp without raising, counts it, and the clock stays
    where the last good message put it; use_sim_time cannot be switched at run time."""
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock as ClockMsg

    node = _in_process_estimator(checkpoints, model_path=str(checkpoints["monotone"]),
                                 use_sim_time=True)
    try:
        (clock_sub,) = [s for s in node.subscriptions if s.topic_name == "/clock"]
        clock_sub.callback(ClockMsg(clock=Time(sec=5)))
        for bad in (Time(sec=-5), Time(sec=7, nanosec=2_000_000_000)):
            clock_sub.callback(ClockMsg(clock=bad))
        assert node.get_clock().now().nanoseconds == 5_000_000_000
        assert node.rejected[("clock", "malformed")] == 2
        values = {kv.key: kv.value for kv in node.diagnostics().values}
        assert values["rejected.clock.malformed"] == "2"
        assert values["received.clock"] == "3"  # every /clock message taken, good or bad
        (result,) = node.set_parameters([Parameter("use_sim_time", value=False)])
        assert not result.successful and "start-up" in result.reason
        assert node.get_clock().ros_time_is_active
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


def test_frames_stamped_in_the_past_are_dropped_and_never_reset_the_belief(image_estimator):
    """A trickle of frames stamped 5 s back (a replay, a spoofer) with the clock running on:
    each one is dropped as stamp_backwards and counted, none resets the belief, and the
    genuine frames between them keep being used."""
    probe, _ = image_estimator
    probe.feed(5)
    backwards = probe.counter("rejected.image.stamp_backwards")
    resets = probe.counter("jump_resets")
    probe.states.clear()
    genuine = []
    for _ in range(10):
        old = probe.frame(stamp=ns_to_stamp(stamp_to_ns(probe.now()) - 5_000_000_000))
        assert until_counted(probe, probe.images, old, "rejected.image.stamp_backwards")
        genuine += probe.feed(1)
    assert probe.t.spin_until(lambda: set(genuine) <= set(probe.by_stamp(probe.states)), 10)
    assert all(math.isfinite(m.position[0]) for m in probe.states)
    assert probe.counter("rejected.image.stamp_backwards") >= backwards + 10
    assert probe.counter("jump_resets") == resets


def test_a_burst_of_frames_is_counted_ticked_and_survived(image_estimator):
    """A camera's queue let go at once: frames stamped microseconds after one another, each
    taken (published a little apart, so the depth-1 subscription keeps each) and counted as
    burst.image; the genuine stream goes on."""
    probe, _ = image_estimator
    probe.feed(3)
    probe.t.spin_for(0.3)  # a report after the last frames
    before = probe.counter("burst.image")
    first = probe.frame()
    probe.images.publish(first)
    for k in range(1, 4):
        probe.t.spin_for(0.02)
        burst = ns_to_stamp(stamp_to_ns(first.header.stamp) + k * 1000)
        probe.images.publish(probe.frame(stamp=burst))
    probe.t.spin_for(0.1)
    genuine = probe.feed(3)
    assert probe.t.spin_until(lambda: set(genuine) <= set(probe.by_stamp(probe.states)), 10)
    assert probe.t.spin_until(lambda: probe.counter("burst.image") - before == 3, 5), (
        probe.counter("burst.image") - before)
    assert all(math.isfinite(m.position[0]) for m in probe.states)


def test_frames_stamped_ahead_never_lock_the_camera_out(image_estimator):
    """A few frames stamped 0.9 s ahead (inside max_future, 1 s here) and one 5 s ahead: the
    near ones wait for the clock (held), the far one is refused, and the genuine frames after
    them keep being used on their own stamps; no estimate runs ahead of the clock."""
    probe, _ = image_estimator
    probe.feed(3)
    held = probe.counter("held.image")
    future = probe.counter("rejected.image.future_stamp")
    backwards = probe.counter("rejected.image.stamp_backwards")
    probe.states.clear()
    ahead = stamp_to_ns(probe.now()) + 900_000_000
    for k in range(4):  # 40 ms apart, for the depth-1 queue (one may still be lost)
        probe.images.publish(probe.frame(stamp=ns_to_stamp(ahead + k * 1_000_000)))
        probe.t.spin_for(0.04)
    # (the count stays once they come due: the wait may outlast them on a busy machine)
    assert probe.t.spin_until(lambda: probe.counter("held.image") >= held + 3, 5), (
        probe.diagnostics
    )
    far = probe.frame(stamp=ns_to_stamp(ahead + 5_000_000_000))
    assert until_counted(probe, probe.images, far, "rejected.image.future_stamp")
    genuine = probe.feed(16)  # 0.8 s more: the held frames come due among them
    assert probe.t.spin_until(lambda: genuine[-1] in probe.by_stamp(probe.states), 10)
    assert genuine[-1] > ahead + 100_000_000, "the held frames must come due during the feed"
    used = set(genuine) & set(probe.by_stamp(probe.states))
    assert used == set(genuine)
    assert all(math.isfinite(m.position[0]) for m in probe.states)
    received_at = {stamp_to_ns(m.header.stamp) for m in probe.states}
    assert max(received_at) <= stamp_to_ns(probe.now())  # nothing stamped ahead of the clock
    assert probe.counter("rejected.image.future_stamp") >= future + 1
    assert probe.counter("rejected.image.stamp_backwards") == backwards


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
    probe.t.spin_for(0.3)  # a report from before the first call
    requested = probe.counter("requested_resets")
    calls = 0
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
            calls += 1
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
    # every call counted, and no jump or gap reset for them
    assert probe.t.spin_until(lambda: probe.counter("requested_resets") == requested + calls, 5)
    assert probe.counter("jump_resets") == probe.counter("gap_resets") == 0


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
        assert until_counted(probe, probe.images, msg, f"rejected.image.{reason}"), (
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


def test_inputs_subscribe_best_effort_and_outputs_publish_reliable(image_estimator, probe_node):
    """The documented QoS (docs/runtime.md): best-effort inputs, which take reliable and
    best-effort publishers alike; reliable outputs, which rviz, rqt_plot and `ros2 bag record`
    take."""
    node = probe_node.node
    assert probe_node.spin_until(lambda: node.get_subscriptions_info_by_topic(
        "/rkn_estimator/image"), 10)
    (info,) = node.get_subscriptions_info_by_topic("/rkn_estimator/image")
    assert info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    for topic in ("rkn_estimator/state", "rkn_estimator/state_stddev"):
        (info,) = node.get_publishers_info_by_topic(f"/{topic}")
        assert info.qos_profile.reliability == ReliabilityPolicy.RELIABLE, topic
