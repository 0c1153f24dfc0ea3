"""What ``soak.py`` records from the estimators (RSS, /diagnostics, ~/state) and the outputs it
writes from them: ``summary.md``, ``samples.csv``, ``soak.png``."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from soak import FAULT_KINDS, KINDS, RECEIVED_KEYS, Fault, FaultKind, rss_kb

COLUMNS = ("t_s", "node", "rss_kb", "step_p50_ms", "step_p99_ms", "publish_p50_ms",
           "publish_p99_ms", "states")


class Monitor:
    """Subscribes to each node's ``~/state``/``~/state_stddev`` and ``/diagnostics``."""

    def __init__(self, names: tuple[str, ...], pids: dict[str, int]) -> None:
        rclpy.init()
        self.node = Node("soak_monitor")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.names, self.pids = names, pids
        self.diagnostics: dict[str, dict[str, str]] = {n: {} for n in names}
        self.reports = dict.fromkeys(names, 0)  # /diagnostics reports seen per node
        self.nonfinite = dict.fromkeys(names, 0)
        self.states = dict.fromkeys(names, 0)
        self.latencies: dict[str, list[float]] = {n: [] for n in names}  # since the last sample
        self.rows: list[dict] = []
        self.start = time.monotonic()
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
        for name in names:
            self.node.create_subscription(JointState, f"/{name}/state",
                                          lambda m, n=name: self._on_state(n, m, True), qos)
            self.node.create_subscription(JointState, f"/{name}/state_stddev",
                                          lambda m, n=name: self._on_state(n, m, False), qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)

    def _on_state(self, name: str, msg: JointState, is_state: bool) -> None:
        values = [*msg.position, *msg.velocity, *msg.effort]
        if not all(math.isfinite(v) for v in values):
            self.nonfinite[name] += 1
        if is_state:
            self.states[name] += 1
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            # the camera node runs on the wall clock: stamp to receipt is its publish latency
            if name == self.names[0]:
                self.latencies[name].append((time.time_ns() - stamp) / 1e6)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            for name in self.names:
                if status.name == f"/{name}: RKN estimator":
                    self.diagnostics[name] = {kv.key: kv.value for kv in status.values}
                    self.reports[name] += 1

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.05, max(0.0, end - time.monotonic())))

    def wait_quiet(self, timeout: float) -> bool:
        """After the last input: wait until each node reports the same ``received.*`` counts in
        two reports running, so the counts read are final (a message still queued when the
        publisher stopped is counted first). False when ``timeout`` s pass first."""
        def received() -> dict[str, dict[str, str]]:
            return {n: {k: v for k, v in self.diagnostics[n].items()
                        if k.startswith("received.")} for n in self.names}

        end = time.monotonic() + timeout
        last = received()
        while time.monotonic() < end:
            seen = dict(self.reports)
            while time.monotonic() < end and any(self.reports[n] == seen[n] for n in self.names):
                self.spin(0.1)
            now = received()
            if now == last:
                return True
            last = now
        return False

    def wait_ready(self, timeout: float, alive: Callable[[], bool]) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and alive():
            if all("ticks" in self.diagnostics[n] for n in self.names):
                self.start = time.monotonic()
                return True
            self.spin(0.2)
        return False

    def sample(self) -> None:
        t = time.monotonic() - self.start
        for name in self.names:
            diag = self.diagnostics[name]
            lat = self.latencies[name]
            self.rows.append({
                "t_s": round(t, 2), "node": name, "rss_kb": rss_kb(self.pids[name]),
                "step_p50_ms": float(diag.get("step_latency_p50_ms", "nan")),
                "step_p99_ms": float(diag.get("step_latency_p99_ms", "nan")),
                "publish_p50_ms": float(np.percentile(lat, 50)) if lat else math.nan,
                "publish_p99_ms": float(np.percentile(lat, 99)) if lat else math.nan,
                "states": self.states[name],
                "_latencies": list(lat),
            })
            lat.clear()

    def nonfinite_total(self) -> int:
        return sum(self.nonfinite.values())

    def close(self) -> None:
        self.executor.remove_node(self.node)
        self.node.destroy_node()
        rclpy.shutdown()


def _windows(duration: float) -> float:
    return 600.0 if duration >= 1800 else max(duration / 6.0, 1.0)


def write_outputs(out: Path, monitor: Monitor, sent: dict, schedule: list[Fault],
                  alive: dict[str, bool], info: dict) -> str:
    """Write samples.csv, soak.png and summary.md; returns the summary's text."""
    rows = monitor.rows
    with (out / "samples.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    duration = float(info["duration_s"])
    warmup = min(120.0, 0.2 * duration)
    window = _windows(duration)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rate = sent.get("joint_rate_hz", 0)
    lines = [f"# Soak, {info['duration_s']:.0f} s at 100 Hz", "",
             f"- commit `{info['commit']}`; command `{info['command']}`; "
             f"ROS_DOMAIN_ID {info['domain_id']}; {stamp}",
             f"- publisher: {sent.get('frame_rate_hz', 0):.2f} frames/s, "
             f"{rate:.2f} joint states/s over {sent.get('elapsed_s', 0):.1f} s "
             f"(target 100; the reference of this run)",
             f"- messages sent: {sent.get('sent', {})}",
             f"- nodes alive at the end: {alive}",
             f"- non-finite estimates published: {monitor.nonfinite} (must be 0)", "",
             f"## Memory (RSS after a {warmup:.0f} s warm-up)", "",
             "| node | RSS at warm-up end (MB) | peak (MB) | end (MB) | peak - warm-up (MB) "
             "| end - warm-up (MB) |", "| --- | --- | --- | --- | --- | --- |"]
    for name in monitor.names:
        rss = [(r["t_s"], r["rss_kb"]) for r in rows if r["node"] == name and r["t_s"] >= warmup]
        if not rss:
            lines.append(f"| {name} | no samples | | | | |")
            continue
        first, peak, end = rss[0][1] / 1024, max(v for _, v in rss) / 1024, rss[-1][1] / 1024
        lines.append(f"| {name} | {first:.2f} | {peak:.2f} | {end:.2f} | {peak - first:.2f} "
                     f"| {end - first:.2f} |")
    lines += ["", f"## Latency per {window:.0f} s window (ms)", "",
              "camera publish: input stamp to receipt of ~/state; step: the nodes' "
              "step_latency_p50/p99 on /diagnostics (median of p50, max of p99 per window)", "",
              "| window (s) | camera publish p50 | p99 | camera step p50 | p99 "
              "| joints step p50 | p99 |", "| --- | --- | --- | --- | --- | --- | --- |"]
    last = max((r["t_s"] for r in rows), default=0.0)
    w = 0.0
    while w < last:
        cells = []
        sel = {n: [r for r in rows if r["node"] == n and w <= r["t_s"] < w + window]
               for n in monitor.names}
        lat = [v for r in sel[monitor.names[0]] for v in r["_latencies"]]
        cells += [f"{np.percentile(lat, 50):.3f}", f"{np.percentile(lat, 99):.3f}"] if lat \
            else ["-", "-"]
        for name in monitor.names:
            p50 = [r["step_p50_ms"] for r in sel[name] if math.isfinite(r["step_p50_ms"])]
            p99 = [r["step_p99_ms"] for r in sel[name] if math.isfinite(r["step_p99_ms"])]
            cells += [f"{np.median(p50):.3f}" if p50 else "-", f"{max(p99):.3f}" if p99 else "-"]
        lines.append(f"| {w:.0f}-{w + window:.0f} | " + " | ".join(cells) + " |")
        w += window
    injected = sent.get("injected", {})
    lines += ["", "## Faults injected and what the nodes counted", "",
              "The node's count is the total on its last /diagnostics, read once two reports "
              "running showed the same received counts; expected is the injections times the "
              "counts each makes, summed over the kinds that share a key (out_of_range), a lower "
              "bound where other causes add to the key (coasting_ticks). A count short by no "
              "more than the messages of its topic that never reached the node (sent less "
              "received) is explained by them.", "",
              "| fault | node | what | injected | key | expected | node's count | verdict |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for kind in FAULT_KINDS:
        expected, count, verdict = compare(kind, injected, sent, monitor.diagnostics[kind.node])
        lines.append(f"| {kind.name} | {kind.node} | {kind.what} | {injected.get(kind.name, 0)} "
                     f"| {kind.key} | {'>= ' if kind.at_least else ''}{expected} | {count} "
                     f"| {verdict} |")
    replies = sent.get("reset_replies", {})
    lines += ["", f"Resets answered with success: {replies}; scheduled faults: {len(schedule)} "
              f"({len({f.kind for f in schedule} & set(KINDS))} kinds).", "",
              "## Final /diagnostics counters", ""]
    for name in monitor.names:
        counters = {k: v for k, v in monitor.diagnostics[name].items()
                    if k.split(".")[0] in ("received", "rejected", "missing", "held", "superseded",
                                           "ignored", "burst") or k in (
                        "ticks", "coasting_ticks", "ticks_ahead", "jump_resets", "gap_resets",
                        "requested_resets", "forward_jumps", "nonfinite_outputs")}
        lines.append(f"- {name}: " + ", ".join(f"`{k}` {v}" for k, v in counters.items()))
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(text)
    _plot(out / "soak.png", monitor)
    return text


def compare(kind: FaultKind, injected: dict[str, int], sent: dict,
            diagnostics: dict[str, str]) -> tuple[int, int, str]:
    """(expected count, the node's count, verdict) of one fault kind: ``exact``, ``at least``
    (other causes too), ``short by N: M sent on TOPIC never reached the node`` (sent less
    received on its topic; for resets, the calls not answered) or ``MISMATCH``."""
    expected = sum(k.per_fault * injected.get(k.name, 0) for k in FAULT_KINDS
                   if (k.node, k.key) == (kind.node, kind.key))
    count = int(diagnostics.get(kind.key, "0"))
    if count == expected:
        return expected, count, "exact"
    if kind.at_least and count > expected:
        return expected, count, "at least (other causes too)"
    if kind.topic in RECEIVED_KEYS:
        lost = sent.get("sent", {}).get(kind.topic, 0) - int(
            diagnostics.get(RECEIVED_KEYS[kind.topic], "0"))
        what = f"sent on {kind.topic} never reached the node"
    else:  # reset calls: those the service did not answer
        lost = injected.get(kind.name, 0) - sent.get("reset_replies", {}).get(kind.node, 0)
        what = "reset calls unanswered"
    if 0 < expected - count <= lost:
        return expected, count, f"short by {expected - count}: {lost} {what}"
    return expected, count, "MISMATCH"


def _plot(path: Path, monitor: Monitor) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rss, ax_lat) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for name in monitor.names:
        rows = [r for r in monitor.rows if r["node"] == name]
        t = [r["t_s"] for r in rows]
        ax_rss.plot(t, [r["rss_kb"] / 1024 for r in rows], label=name)
        ax_lat.plot(t, [r["step_p99_ms"] for r in rows], label=f"{name} step p99")
    cam = [r for r in monitor.rows if r["node"] == monitor.names[0]]
    ax_lat.plot([r["t_s"] for r in cam], [r["publish_p50_ms"] for r in cam],
                label=f"{monitor.names[0]} publish p50 (per s)")
    ax_rss.set_ylabel("RSS (MB)")
    ax_lat.set_ylabel("latency (ms)")
    ax_lat.set_xlabel("time since start (s)")
    ax_rss.legend()
    ax_lat.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
