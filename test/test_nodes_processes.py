"""rkn_estimator and the sources as processes: start-up refusals and interrupts, use_sim_time
with the simulators' and a hand-made /clock (malformed messages included), a publisher of
another type, reset_after_gap."""

from __future__ import annotations

import itertools
import math
import signal
import threading
import time

import numpy as np
import pytest
import yaml
from builtin_interfaces.msg import Time
from pam_recordings import PAM_FILE
from rclpy.qos import qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import CompressedImage
from test_nodes_support import (  # sets ROS_DOMAIN_ID first
    REPO,
    NodeProcess,
    Probe,
    start_once,
    until_counted,
)
from test_runtime_support import (
    make_pam_checkpoint,
)

from rkn_ros.nodes.conversions import ns_to_stamp, stamp_to_ns


def test_a_model_that_cannot_serve_stops_startup_with_one_line(checkpoints):
    """The console script prints the start-up refusal as one line and exits 1 (every check
    itself is tested in process, in test_nodes_startup.py)."""
    process = start_once("rkn_estimator", [
        "--ros-args", "-p", f"model_path:={checkpoints['joint']}", "-p", "joint_names:=[a]",
        "-r", "__node:=refused_estimator",
    ])
    _, stderr = process.communicate(timeout=120)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert process.returncode == 1, stderr
    assert len(lines) == 1 and lines[0].startswith("[FATAL] rkn_estimator: "), stderr
    assert "joint_names ['a'] has 1 entries, the model's vector inputs ['joints'] take 3" in (
        lines[0]
    ), stderr
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
            probe.t.spin_for(0.025)
            # a frame: no estimate goes out before the first input; the timer ticks on after
            probe.images.publish(probe.frame(stamp=ns_to_stamp(sim_ns)))
            probe.t.spin_for(0.025)
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
        # Malformed /clock messages (negative seconds: a time past 2^31 s wrapped; nanosec
        # not under 10^9) are refused and counted; the clock keeps its last good time.
        for bad in (Time(sec=-5), Time(sec=3, nanosec=2_000_000_000)):
            assert until_counted(probe, clock, ClockMsg(clock=bad), "rejected.clock.malformed")
        assert probe.counter("rejected.clock.malformed") >= 2
        assert "the clock keeps its last good time" in estimator.output()
        # the clock going back (a bag played again): one fresh start, estimates go on
        resets = probe.counter("jump_resets")
        last = stamps[-1]
        sim_ns = 2_000_000_000
        probe.states.clear()
        for _ in range(15):
            sim_ns += 125_000_000
            clock.publish(ClockMsg(clock=ns_to_stamp(sim_ns)))
            probe.t.spin_for(0.1)
        assert probe.t.spin_until(lambda: probe.counter("jump_resets") == resets + 1, 5)
        after = [stamp_to_ns(m.header.stamp) for m in probe.states]
        assert len([t for t in after if t < last]) >= 10
        assert all(math.isfinite(m.position[0]) for m in probe.states)
        assert probe.counter("jump_resets") == resets + 1
        # the clock leaping ahead (a bag skipped forward): counted once, no reset, not replayed
        assert probe.counter("forward_jumps") == 0
        ticks = probe.counter("ticks")
        sim_ns += 3_000_000_000
        for _ in range(8):
            sim_ns += 125_000_000
            clock.publish(ClockMsg(clock=ns_to_stamp(sim_ns)))
            probe.t.spin_for(0.1)
        assert probe.t.spin_until(lambda: probe.counter("forward_jumps") == 1, 5)
        assert probe.counter("jump_resets") == resets + 1
        assert probe.counter("ticks") - ticks <= 30  # 1 s of clock, not 4 s of catch-up
        assert estimator.process.poll() is None, estimator.output()
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
