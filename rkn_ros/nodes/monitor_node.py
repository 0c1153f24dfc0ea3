"""``rkn_monitor``: scores the estimator online against the truth.

Subscribes ``~/estimate`` and ``~/estimate_stddev`` (the estimator's ``~/state`` pair, matched
by identical stamps) and ``~/truth`` (a simulator's ``~/joint_states_truth``), pairs each
estimate with the truth sample nearest in stamp (within ``match_tolerance``), and keeps the
running RMSE, NLL and 1/2-sigma coverage of the positions (angles wrapped) and, when both sides
carry them, of the velocities; also the age of each estimate when it arrives here (wall clock
minus header stamp: camera publish to estimate, plus one hop). It relays the estimator's step
latency from ``/diagnostics``. Every ``report_period`` it logs one line, publishes its own
``/diagnostics`` status and, if ``summary_file`` is set, rewrites that JSON; at exit it writes
``trace_file`` if set: an .npz of every matched sample (``stamp_ns [N]``, ``mean``, ``std``,
``truth`` ``[N, joints]``, ``names [joints]``; no pickled objects). Both files are replaced
atomically through :func:`rkn_ros.data.dataset.atomic_write`. The math lives in
:mod:`rkn_ros.runtime.metrics`.
"""

from __future__ import annotations

import bisect
import json
import sys
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState

from rkn_ros.data.dataset import atomic_write, npz_bytes
from rkn_ros.nodes.conversions import stamp_to_ns
from rkn_ros.nodes.params import declare, run_node
from rkn_ros.runtime.latency import LatencyStats
from rkn_ros.runtime.metrics import OnlineMetrics

NODE_NAME = "rkn_monitor"
RELAYED_KEYS = (
    "step_latency_p50_ms",
    "step_latency_p99_ms",
    "input_to_publish_p50_ms",
    "input_to_publish_p99_ms",
    "tick_rate_hz",
    "ticks",
    "device",
    "model",
)
QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.BEST_EFFORT
)


class MonitorNode(Node):
    """See the module docstring; parameters are listed in ``config/*.yaml`` under rkn_monitor."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.tolerance_ns = int(
            1e9
            * declare(self, "match_tolerance", 0.01, "s; max stamp gap estimate-truth", 0.0, 10.0)
        )
        self.wrap = declare(self, "wrap_positions", True, "wrap position errors to [-pi, pi)")
        period = declare(self, "report_period", 1.0, "s between reports", 0.05, 3600.0)
        # The first report comes sooner, so whoever waits for data to flow need not wait long.
        self._first_report = self.create_timer(
            0.2, self._report_once, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        self.summary_file = declare(self, "summary_file", "", "JSON summary path ('' = none)")
        self.trace_file = declare(self, "trace_file", "", ".npz trace written at exit ('' = none)")
        self.skip = declare(
            self,
            "skip_first",
            0,
            "matched samples ignored at the start (filter transient)",
            0,
            1000000,
        )
        self.quiet = declare(self, "quiet", False, "do not log the periodic report line")
        self.position = self.velocity = None
        self.names: tuple[str, ...] | None = None
        self._index: np.ndarray | None = None
        self.age = LatencyStats(100000)
        self.matched = 0
        self.unmatched = 0
        self.estimator: dict[str, str] = {}
        self._truth: dict[int, JointState] = {}
        self._truth_stamps: list[int] = []  # sorted
        self._pending: dict[int, list] = {}
        self._trace: list[tuple] = []
        self._started = time.monotonic()
        self._estimate_sub = self.create_subscription(
            JointState, "~/estimate", self._on_estimate, QOS
        )
        self.create_subscription(JointState, "~/estimate_stddev", self._on_stddev, QOS)
        self.create_subscription(JointState, "~/truth", self._on_truth, QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_timer(period, self._report, clock=Clock(clock_type=ClockType.STEADY_TIME))
        topics = {s.topic_name for s in self.subscriptions if s.topic_name != "/diagnostics"}
        self.get_logger().info(f"comparing {sorted(topics)}; report every {period:g} s")

    # ------------------------------------------------------------------ inputs
    def _on_estimate(self, msg: JointState) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        if not self.get_parameter("use_sim_time").value:
            self.age.add(max(0.0, (time.time_ns() - stamp) * 1e-9))
        self._pair(stamp, 0, msg)

    def _on_stddev(self, msg: JointState) -> None:
        self._pair(stamp_to_ns(msg.header.stamp), 1, msg)

    def _pair(self, stamp: int, slot: int, msg: JointState) -> None:
        entry = self._pending.setdefault(stamp, [None, None])
        entry[slot] = msg
        self._match_pending()

    def _on_truth(self, msg: JointState) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        if stamp not in self._truth:
            bisect.insort(self._truth_stamps, stamp)
        self._truth[stamp] = msg
        if len(self._truth_stamps) > 4000:  # keep the last ~2000 samples (20 s at 100 Hz)
            for old in self._truth_stamps[:2000]:
                del self._truth[old]
            del self._truth_stamps[:2000]
        self._match_pending()

    def _nearest_truth(self, stamp: int) -> int | None:
        """The truth stamp nearest to ``stamp`` (binary search)."""
        stamps = self._truth_stamps
        i = bisect.bisect_left(stamps, stamp)
        candidates = stamps[max(0, i - 1) : i + 1]
        return min(candidates, key=lambda s: abs(s - stamp)) if candidates else None

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "step_latency_p50_ms" in values:
                self.estimator = {k: values[k] for k in RELAYED_KEYS if k in values}

    def _match_pending(self) -> None:
        newest_truth = self._truth_stamps[-1] if self._truth_stamps else None
        for stamp in sorted(self._pending):
            estimate, stddev = self._pending[stamp]
            if estimate is None or stddev is None or newest_truth is None:
                continue
            nearest = self._nearest_truth(stamp)
            if nearest is not None and abs(nearest - stamp) <= self.tolerance_ns:
                del self._pending[stamp]
                self._score(stamp, estimate, stddev, self._truth[nearest])
            elif newest_truth > stamp + self.tolerance_ns:
                del self._pending[stamp]  # the truth for this tick will not come
                self.unmatched += 1
        if len(self._pending) > 1000:  # estimates whose partner never came
            for stamp in sorted(self._pending)[:-1000]:
                del self._pending[stamp]
                self.unmatched += 1

    def _mapping(self, estimate: JointState, truth: JointState) -> np.ndarray | None:
        names = tuple(estimate.name)
        if names == self.names:
            return self._index
        truth_names = list(truth.name)
        if all(n in truth_names for n in names):
            index = np.array([truth_names.index(n) for n in names])
        elif len(names) == len(truth_names):
            self.get_logger().warning(
                f"estimate joints {list(names)} are not named as the truth's {truth_names}: "
                "pairing them by order"
            )
            index = np.arange(len(names))
        else:
            self.get_logger().error(
                f"estimate joints {list(names)} do not match the truth's {truth_names}"
            )
            return None
        self.names, self._index = names, index
        dim = len(names)
        self.position = OnlineMetrics(dim, wrap=self.wrap)
        self.velocity = OnlineMetrics(dim, wrap=False)
        return index

    def _score(
        self, stamp: int, estimate: JointState, stddev: JointState, truth: JointState
    ) -> None:
        index = self._mapping(estimate, truth)
        if index is None:
            self.unmatched += 1
            return
        self.matched += 1
        if self.matched <= self.skip:
            return
        mean = np.asarray(estimate.position)
        std = np.asarray(stddev.position)
        true = np.asarray(truth.position)[index]
        try:
            self.position.add(mean, std, true)
            if len(estimate.velocity) and len(stddev.velocity) and len(truth.velocity):
                self.velocity.add(
                    np.asarray(estimate.velocity),
                    np.asarray(stddev.velocity),
                    np.asarray(truth.velocity)[index],
                )
        except ValueError as err:
            self.unmatched += 1
            self.get_logger().warning(f"cannot score estimate at {stamp * 1e-9:.3f} s: {err}")
            return
        if self.trace_file:
            self._trace.append((stamp, mean, std, true))

    # ------------------------------------------------------------------ reports
    def summary(self) -> dict:
        """Everything the monitor knows, as a JSON-ready dict."""
        out = {
            "joints": list(self.names or ()),
            "matched": self.matched,
            "unmatched": self.unmatched,
            "elapsed_s": time.monotonic() - self._started,
            "position": self.position.summary() if self.position else None,
            "velocity": self.velocity.summary() if self.velocity and self.velocity.count else None,
            "estimate_age_ms": self.age.summary(),
            "estimator": dict(self.estimator),
        }
        return _finite(out)

    def _report(self) -> None:
        summary = self.summary()
        position = summary["position"] or {}
        status = DiagnosticStatus(
            name=f"{self.get_fully_qualified_name()}: estimate vs truth",
            level=DiagnosticStatus.OK if self.matched else DiagnosticStatus.WARN,
            message=f"{self.matched} estimates matched",
            # what is scored: the estimate topic, as resolved (remapped to an estimator's state)
            hardware_id=self._estimate_sub.topic_name,
        )
        values = {
            "rmse": position.get("rmse"),
            "nll": position.get("nll"),
            "coverage_2sigma": position.get("coverage_2sigma"),
            "estimate_age_p50_ms": summary["estimate_age_ms"]["p50_ms"],
            "estimate_age_p99_ms": summary["estimate_age_ms"]["p99_ms"],
            "matched": self.matched,
            "unmatched": self.unmatched,
        }
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_diag.publish(msg)
        if not self.quiet and position.get("count"):
            self.get_logger().info(
                f"n={self.matched} rmse={values['rmse']:.4f} nll={values['nll']:.3f} "
                f"cov2={values['coverage_2sigma']:.3f} "
                f"age_p50={values['estimate_age_p50_ms']:.2f}ms"
            )
        if self.summary_file:
            _write_json(Path(self.summary_file), summary)

    def _report_once(self) -> None:
        if self.matched:
            self._report()
            self._first_report.cancel()

    def write_outputs(self) -> None:
        """Final summary and trace files (called at exit)."""
        if self.summary_file:
            _write_json(Path(self.summary_file), self.summary())
        if self.trace_file and self._trace:
            stamps, mean, std, truth = zip(*self._trace, strict=True)
            arrays = {
                "stamp_ns": np.asarray(stamps, dtype=np.int64),
                "mean": np.stack(mean),
                "std": np.stack(std),
                "truth": np.stack(truth),
                "names": np.asarray(self.names or (), dtype=str),
            }
            atomic_write(Path(self.trace_file), npz_bytes(arrays))


def _finite(value):
    """NaN/inf -> None so the JSON stays standard."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _write_json(path: Path, summary: dict) -> None:
    # Atomic: the demo reads this file while the monitor rewrites it.
    atomic_write(path, (json.dumps(summary, indent=2) + "\n").encode("utf-8"))


def main(args: list[str] | None = None) -> int:
    """Console script ``rkn_monitor``."""
    return run_node(NODE_NAME, MonitorNode, args, (ValueError,), on_exit=MonitorNode.write_outputs)


if __name__ == "__main__":
    sys.exit(main())
