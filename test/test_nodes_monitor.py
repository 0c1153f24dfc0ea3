"""rkn_monitor as a real process over DDS: the trace and summary files it leaves at exit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from test_nodes_support import NodeProcess, TestNode  # sets ROS_DOMAIN_ID first

from rkn_ros.data.dataset import npz_bytes
from rkn_ros.nodes.conversions import ns_to_stamp
from rkn_ros.nodes.demo_report import plot_trace

BEST_EFFORT = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
SAMPLES = 12


def _joints(names: list[str], position: np.ndarray, stamp_ns: int) -> JointState:
    msg = JointState()
    msg.header.stamp = ns_to_stamp(stamp_ns)
    msg.name = names
    msg.position = [float(v) for v in position]
    return msg


def _read_json(path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def test_monitor_writes_a_trace_numpy_and_the_demo_read_without_pickle(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    trace_file, summary_file = out / "trace.npz", out / "summary.json"
    trace_file.write_bytes(b"stale trace of an earlier run")  # replaced whole, never appended
    process = NodeProcess(
        "rkn_monitor",
        params={
            "trace_file": trace_file,
            "summary_file": summary_file,
            "report_period": 0.2,
            "quiet": True,
        },
        log=tmp_path / "monitor.log",
    )
    test_node = TestNode("rkn_test_monitor_probe")
    try:
        node = test_node.node
        publishers = [
            node.create_publisher(JointState, f"/rkn_monitor/{topic}", BEST_EFFORT)
            for topic in ("truth", "estimate", "estimate_stddev")
        ]
        assert test_node.spin_until(
            lambda: all(p.get_subscription_count() > 0 for p in publishers), 30
        ), f"monitor did not come up:\n{process.output()}"
        # Keep publishing until enough are matched: the first samples after discovery may be
        # dropped (best effort), so the test compares the trace with what was published.
        rng = np.random.default_rng(0)
        published: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        stamp = node.get_clock().now().nanoseconds
        while _read_json(summary_file).get("matched", 0) < SAMPLES:
            assert len(published) < 1000, f"{_read_json(summary_file)}\n{process.output()}"
            stamp += 20_000_000
            truth = rng.uniform(-1.0, 1.0, size=2)
            mean, std = truth + 0.1, rng.uniform(0.05, 0.2, size=2)
            published[stamp] = mean, std, truth
            # the truth names its joints in another order: the trace follows the estimate's
            publishers[0].publish(_joints(["wrist", "elbow"], truth[::-1], stamp))
            publishers[1].publish(_joints(["elbow", "wrist"], mean, stamp))
            publishers[2].publish(_joints(["elbow", "wrist"], std, stamp))
            test_node.spin_for(0.02)
        test_node.spin_for(0.5)  # the last samples in flight
    finally:
        test_node.close()
        code = process.stop()
    assert code == 0, process.output()

    with np.load(trace_file, allow_pickle=False) as trace:
        assert set(trace.files) == {"stamp_ns", "mean", "std", "truth", "names"}
        stamps = trace["stamp_ns"]
        assert stamps.dtype == np.int64 and trace["names"].dtype.kind == "U"
        assert trace["mean"].shape == trace["std"].shape == trace["truth"].shape
        assert trace["mean"].shape == (len(stamps), 2) and len(stamps) >= SAMPLES
    assert set(stamps.tolist()) <= set(published) and np.all(np.diff(stamps) > 0)
    rows = [published[int(s)] for s in stamps]
    expected = {
        "stamp_ns": stamps,
        "mean": np.array([r[0] for r in rows]),
        "std": np.array([r[1] for r in rows]),
        "truth": np.array([r[2] for r in rows]),
        "names": np.array(["elbow", "wrist"]),
    }
    # written by the data layer's writer in one piece (no temporary left beside it)
    assert trace_file.read_bytes() == npz_bytes(expected)
    assert sorted(p.name for p in out.iterdir()) == ["summary.json", "trace.npz"]
    summary = json.loads(summary_file.read_text())  # the final one, written at exit
    assert summary["matched"] == len(stamps) and summary["joints"] == ["elbow", "wrist"]
    assert abs(summary["position"]["rmse"] - 0.1) < 1e-9
    # NLL (per tick, summed over joints) and sigma coverage of exactly what it was sent
    error, std = expected["mean"] - expected["truth"], expected["std"]
    var = std * std
    nll = np.mean(np.sum(0.5 * (np.log(2 * np.pi) + np.log(var) + error * error / var), axis=1))
    assert summary["position"]["nll"] == pytest.approx(nll, rel=1e-6)
    assert summary["position"]["coverage_1sigma"] == pytest.approx(np.mean(np.abs(error) <= std))
    assert 0.0 < summary["position"]["coverage_1sigma"] < 1.0  # stds straddle the 0.1 error
    assert summary["position"]["coverage_2sigma"] == 1.0
    age = summary["estimate_age_ms"]
    assert age["count"] >= SAMPLES and 0.0 <= age["p50_ms"] <= age["p99_ms"]
    png = tmp_path / "plot.png"
    plot_trace(trace_file, png, "monitor test")  # what `rkn-ros demo` draws from the trace
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
