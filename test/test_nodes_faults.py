"""The soak benchmark's fault schedule (in process) and its publisher, run for a few seconds
over DDS in this test's own ROS_DOMAIN_ID, so CI checks the script runs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import test_nodes_support  # sets ROS_DOMAIN_ID and localhost discovery first)

sys.path.insert(0, str(test_nodes_support.REPO / "benchmarks"))
from soak import FAULT_KINDS, KINDS, RATE_HZ, fault_schedule


def test_the_hour_schedule_injects_every_kind_equally_and_deterministically():
    schedule = fault_schedule(3600.0)
    assert schedule == fault_schedule(3600.0)
    counts = Counter(f.kind for f in schedule)
    assert set(counts) == {k.name for k in FAULT_KINDS}
    assert max(counts.values()) - min(counts.values()) <= 1
    ticks = [f.tick for f in schedule]
    assert ticks == sorted(set(ticks)) and ticks[0] >= 5 * RATE_HZ
    assert ticks[-1] < 3598 * RATE_HZ


def test_the_soak_compares_each_count_exactly_and_explains_only_lost_messages():
    from soak_monitor import compare

    assert all(kind.key for kind in FAULT_KINDS)  # every kind counted under a key of its own
    injected = {"camera_burst": 4, "joint_out_of_range": 3, "joint_float32_limit": 2,
                "camera_gap": 2, "clock_malformed": 5}
    sent = {"sent": {"frames": 1000, "clock": 1000}}
    burst = KINDS["camera_burst"]
    assert compare(burst, injected, sent, {"burst.image": "20", "received.image": "1000"}) == (
        20, 20, "exact")
    assert compare(burst, injected, sent, {"burst.image": "18", "received.image": "1000"})[2] == (
        "MISMATCH")  # nothing was lost on the way: two frames are not accounted for
    assert compare(burst, injected, sent, {"burst.image": "18", "received.image": "997"})[2] == (
        "short by 2: 3 sent on frames never reached the node")
    assert compare(burst, injected, sent, {"burst.image": "21", "received.image": "1000"})[2] == (
        "MISMATCH")  # more than injected, where nothing else counts there
    shared = {"rejected.joint_states.out_of_range": "5"}  # two kinds share the key
    assert compare(KINDS["joint_float32_limit"], injected, sent, shared)[:2] == (5, 5)
    assert compare(KINDS["camera_gap"], injected, sent, {"coasting_ticks": "60"})[2] == (
        "at least (other causes too)")
    clock = {"rejected.clock.malformed": "4", "received.clock": "999"}
    assert compare(KINDS["clock_malformed"], injected, sent, clock)[2].startswith("short by 1")


def test_the_publisher_sends_at_100_hz_and_injects_its_schedule(tmp_path):
    report = tmp_path / "publisher.json"
    duration, every = 4.0, 0.2
    done = subprocess.run(
        [sys.executable, str(test_nodes_support.REPO / "benchmarks" / "soak.py"), "--role",
         "publisher", "--duration", str(duration), "--fault-every", str(every),
         "--report", str(report), "--match-timeout", "0"], capture_output=True, text=True,
        timeout=60)
    assert done.returncode == 0, done.stderr
    sent = json.loads(report.read_text())
    expected = Counter(f.kind for f in fault_schedule(duration, every))
    assert {k: v for k, v in sent["injected"].items() if v} == dict(expected)
    assert sent["sent"]["joint_states"] == round(duration * RATE_HZ)
    assert sent["joint_rate_hz"] > 0.8 * RATE_HZ


def test_absurd_weights_never_put_a_non_finite_estimate_on_state(probe_node, checkpoints,
                                                                 tmp_path):
    """Finite but absurd encoder weights: every reading away from the training mean overflows.
    ~/state and ~/state_stddev stay finite, /diagnostics counts the guarded steps, and readings
    at the mean keep being estimated."""
    import math

    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from test_runtime_guard import _absurd

    absurd = _absurd(checkpoints["joint"], tmp_path / "absurd")
    params = {"model_path": absurd, "diagnostics_period": 0.2, "sensor_timeout": 0.5}
    with test_nodes_support.running_estimator(probe_node, "absurd_estimator", params,
                                              tmp_path / "absurd.log", "joints") as (probe, _):
        probe.commands.publish(Float64MultiArray(data=[2.0, 2.0]))

        def reading(angle: float, pressure: float) -> JointState:
            return JointState(header=probe.frame().header, name=["joint", "flexor", "extensor"],
                              position=[angle, 0.0, 0.0], effort=[0.0, pressure, pressure])

        for k in range(30):  # strong readings (in range, overflowing) between calm ones
            probe.joints.publish(reading(1.5, 5.0) if k % 3 else reading(0.1, 2.0))
            probe.t.spin_for(0.03)
        assert probe.t.spin_until(lambda: probe.counter("nonfinite_outputs") > 0, 10), (
            probe.diagnostics)
        probe.states.clear()
        for _ in range(10):
            probe.joints.publish(reading(0.1, 2.0))
            probe.t.spin_for(0.03)
        assert probe.t.spin_until(lambda: len(probe.states) >= 5, 10)
        values = [v for m in probe.states + probe.stddevs for v in (*m.position, *m.velocity)]
        assert values and all(math.isfinite(v) for v in values)
