"""Camera publish -> ``~/state`` publish across processes, beside a bare rclpy relay.

This script is the camera (24x24 mono8 frames at ``--rate`` Hz, stamped at publish) and the
listener. In the same run it measures, taking turns of ``--block`` seconds (so both see the
same machine; the first ``--settle`` seconds of each turn are not counted):

1. a bare rclpy relay process (subscribe the image, republish it): round trip camera -> relay ->
   here, the floor any ROS node pays;
2. ``rkn_estimator`` (tick on each image): round trip camera -> estimator -> ``~/state`` here, and
   the estimator's own figure from ``/diagnostics``: image stamp to its ``~/state`` publish;
3. with ``--compare-whole-step``, a second estimator with ``publish_before_predict: false`` (the
   whole step, prediction included, before it publishes), taking its turns the same way.

The budget (docs/design.md, "camera publish to ``~/state`` publish") is read both ways, each beside
the relay measured the same way: round trip (back here), and one way (the image stamp to the
moment the relay or the estimator hands its message to ``publish``). BENCHMARKS.md, "End to end".

    .venv/bin/python benchmarks/e2e_latency.py [--rate 50] [--duration 60] [--block 5]
        [--settle 0.2] [--warmup 2] [--model PATH] [--pin CPU] [--compare-whole-step]

It also counts frames without an estimate (missed ticks). Uses its own ROS_DOMAIN_ID.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 80))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402

from rkn_ros.nodes.conversions import array_to_image, stamp_to_ns  # noqa: E402
from rkn_ros.nodes.demo import stop_process  # noqa: E402

BEST_EFFORT = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
# The relay notes, like the estimator, when it hands each frame to publish (its one-way
# figure); it writes "stamp handed" lines (ns) to the file named by its argument when stopped.
RELAY_CODE = """
import os, sys, time
if len(sys.argv) > 2:  # --pin: this thread, and the middleware's threads it starts, on one CPU
    os.sched_setaffinity(0, [int(sys.argv[2])])
import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
rclpy.init()
node = Node("bare_relay")
qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
pub = node.create_publisher(Image, "/relay/out", 10)
handed = []
def relay(msg):
    handed.append((msg.header.stamp.sec * 1000000000 + msg.header.stamp.nanosec, time.time_ns()))
    pub.publish(msg)
node.create_subscription(Image, "/relay/in", relay, qos)
try:
    rclpy.spin(node)
except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
    pass
with open(sys.argv[1], "w") as out:
    out.writelines(f"{stamp} {at}\\n" for stamp, at in handed)
"""


class Bench(Node):
    def __init__(self, estimators: list[str]) -> None:
        super().__init__("e2e_bench")
        self.received: dict[int, int] = {}  # stamp -> receive time (ns)
        self.diag: dict[str, dict[str, str]] = {}  # estimator node name -> its last values
        self.create_subscription(Image, "/relay/out", self._on_relay, BEST_EFFORT)
        for name in estimators:
            self.create_subscription(JointState, f"/{name}/state", self._on_state, BEST_EFFORT)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)

    def _on_relay(self, msg: Image) -> None:
        self.received[stamp_to_ns(msg.header.stamp)] = time.time_ns()

    def _on_state(self, msg: JointState) -> None:
        self.received[stamp_to_ns(msg.header.stamp)] = time.time_ns()

    def _on_diag(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "input_to_publish_p50_ms" in values:
                self.diag[status.name.split(":")[0].lstrip("/")] = values


def run_interleaved(
    bench: Bench, executor, topics: list[str], rate: float, duration: float, block: float,
    settle: float,
) -> list[tuple[np.ndarray, int, int]]:
    """Publish frames on each of ``topics`` in turn, ``block`` seconds at a time, until each has
    had ``duration`` seconds; the first ``settle`` seconds of every block are not counted.
    Returns per topic the round-trip latencies (ms), frames sent (counted) and answered.

    Taking turns gives every path the same share of the machine's good and bad moments: on a
    shared machine the latency drifts by a factor of two over minutes, which would make
    phases run one after the other incomparable."""
    publishers = [bench.create_publisher(Image, topic, BEST_EFFORT) for topic in topics]
    deadline = time.monotonic() + 60
    while (any(p.get_subscription_count() == 0 for p in publishers)
           and time.monotonic() < deadline):
        executor.spin_once(timeout_sec=0.05)
    frame = np.zeros((24, 24), np.uint8)
    frame[12:, 11:13] = 255
    period = 1.0 / rate
    sent: list[list[int]] = [[] for _ in topics]
    blocks = max(1, round(duration / block))
    for index in range(blocks * len(topics)):
        target = index % len(topics)
        start = time.monotonic()
        next_time = start
        while time.monotonic() - start < settle + block:
            now = time.monotonic()
            if now >= next_time:
                stamp_ns = time.time_ns()
                msg = array_to_image(frame, rclpy.time.Time(nanoseconds=stamp_ns).to_msg())
                publishers[target].publish(msg)
                if now - start >= settle:
                    sent[target].append(stamp_ns)
                next_time += period
            executor.spin_once(timeout_sec=max(0.0, min(0.002, next_time - time.monotonic())))
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.01)
    results = []
    for stamps in sent:
        latencies = np.array([(bench.received[s] - s) * 1e-6 for s in stamps
                              if s in bench.received])
        results.append((latencies, len(stamps), latencies.size))
    for pub in publishers:
        bench.destroy_publisher(pub)
    return results


def report(label: str, latencies: np.ndarray, sent: int, answered: int) -> float:
    """Print one path's round trip; returns its p50 (ms)."""
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies.size else (float("nan"),) * 2
    print(f"{label:<50} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  answered {answered}/{sent}")
    return float(p50)


def report_one_way(label: str, handed_file: Path) -> float:
    """Print the relay's one-way latencies from the file it wrote when stopped; returns the
    p50 (ms), NaN without a record."""
    if not handed_file.is_file():
        print(f"{label:<50} (the relay wrote no record)")
        return float("nan")
    pairs = np.loadtxt(handed_file, dtype=np.int64, ndmin=2)
    latencies = (pairs[:, 1] - pairs[:, 0]) * 1e-6 if pairs.size else np.zeros(0)
    p50, p99 = np.percentile(latencies, [50, 99]) if latencies.size else (float("nan"),) * 2
    print(f"{label:<50} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms  ({latencies.size} frames)")
    return float(p50)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50.0, help="frames per second")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds measured per path")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds per path not measured at the start")
    parser.add_argument("--block", type=float, default=5.0,
                        help="seconds each path gets in turn")
    parser.add_argument("--settle", type=float, default=0.2,
                        help="seconds not counted at the start of each turn")
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="checkpoint (default models/pendulum, else an untrained one)",
    )
    parser.add_argument(
        "--pin",
        type=int,
        default=None,
        metavar="CPU",
        help="run the relay and the estimator pinned to this CPU (the estimator's cpu_affinity)",
    )
    parser.add_argument(
        "--compare-whole-step",
        action="store_true",
        help="also measure an estimator that runs the whole step before it publishes "
        "(publish_before_predict: false)",
    )
    args = parser.parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    if args.pin is not None and args.pin not in allowed:
        parser.error(f"--pin {args.pin}: this process may use CPUs {allowed}")
    if args.block <= 0 or args.duration <= 0 or args.warmup < 0 or args.settle < 0:
        parser.error("--block and --duration must be > 0, --warmup and --settle >= 0")
    tmp = tempfile.TemporaryDirectory()
    model = args.model
    if model is None:  # the shipped model if it loads, else an untrained one of its shape
        sys.path.insert(0, str(REPO / "benchmarks"))
        from step_latency import checkpoint_for

        model = checkpoint_for("pendulum", "rkn", Path(tmp.name))
    print(
        f"ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']}, {args.rate:.0f} Hz, "
        f"{args.duration:.0f} s per path in turns of {args.block:g} s, model {model}"
        f"{'' if args.pin is None else f', relay and estimator pinned to CPU {args.pin}'}"
    )
    estimators = {"rkn_estimator": "true"}
    if args.compare_whole_step:
        estimators["rkn_estimator_whole_step"] = "false"
    rclpy.init()
    bench = Bench(list(estimators))
    executor = SingleThreadedExecutor()
    executor.add_node(bench)
    env = dict(os.environ)
    bin_dir = Path(sys.executable).parent
    relay_handed = Path(tmp.name) / "relay_handed.txt"
    turns = max(1, round(args.duration / args.block))
    frames_per_path = int(args.rate * (args.warmup + turns * (args.block + args.settle))) + 100
    pin = [] if args.pin is None else [str(args.pin)]
    relay = subprocess.Popen([sys.executable, "-c", RELAY_CODE, str(relay_handed), *pin], env=env)
    processes = [subprocess.Popen(
        [
            str(bin_dir / "rkn_estimator"),
            "--ros-args",
            "-r",
            f"__node:={name}",
            "-p",
            f"publish_before_predict:={publish_first}",
            "-p",
            f"model_path:={model}",
            "-p",
            "tick_on:=image",
            # no coasting while the relay has its turn: the estimator stays idle as it waits
            "-p",
            f"sensor_timeout:={2 * (args.block + args.settle) + 1.0}",
            "-p",
            "diagnostics_period:=0.5",
            "-p",
            # every frame the estimator gets (warm-up and settle included), like the relay's
            f"latency_window:={frames_per_path}",
            *(["-p", f"cpu_affinity:=[{args.pin}]"] if pin else []),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) for name, publish_first in estimators.items()]
    topics = ["/relay/in", *(f"/{name}/image" for name in estimators)]
    try:
        if args.warmup > 0:  # all warm up (first ticks, caches) before anything is counted
            run_interleaved(bench, executor, topics, args.rate, args.warmup, args.warmup, 0.0)
        bench.received.clear()
        relay_result, *estimator_results = run_interleaved(
            bench, executor, topics, args.rate, args.duration, args.block, args.settle)
    finally:
        for name, process in zip(estimators, processes, strict=True):
            if process.poll() is not None:
                print(f"{name} exited with code {process.returncode}", file=sys.stderr)
            stop_process(process)
        stop_process(relay)
    print("round trip (back in this process):")
    relay_round = report("bare rclpy relay, camera -> relay -> here", *relay_result)
    rounds = [report(f"{name}, camera -> ~/state -> here", *result)
              for name, result in zip(estimators, estimator_results, strict=True)]
    print("one way (image stamp -> the node hands its message to publish; every frame, warm-up "
          "included):")
    relay_one_way = report_one_way("bare rclpy relay, stamp -> relay publish", relay_handed)
    one_ways = []
    for name in estimators:
        diag = bench.diag.get(name)
        one_ways.append(float(diag["input_to_publish_p50_ms"]) if diag else float("nan"))
        if not diag:
            print(f"{name}: no /diagnostics received")
            continue
        print(
            f"{name + ', stamp -> ~/state publish':<50} "
            f"p50 {one_ways[-1]:7.3f} ms  "
            f"p99 {float(diag['input_to_publish_p99_ms']):7.3f} ms  "
            "(its /diagnostics)"
        )
        print(
            f"{name + ' step (' + diag.get('backend', '?') + ')':<50} "
            f"p50 {float(diag['step_latency_p50_ms']):7.3f} ms  "
            f"p99 {float(diag['step_latency_p99_ms']):7.3f} ms  "
            f"(model step alone p50 {float(diag['model_step_p50_ms']):.3f} ms)"
        )
    # The budget, 2 ms beside a relay of about 1 ms (docs/design.md), is about 2x the relay
    for name, round_trip, one_way in zip(estimators, rounds, one_ways, strict=True):
        print(
            f"{name + ' p50 over the relay p50':<50} "
            f"round trip {round_trip / relay_round:.2f}x "
            f"(+{round_trip - relay_round:.3f} ms), "
            f"one way {one_way / relay_one_way:.2f}x "
            f"(+{one_way - relay_one_way:.3f} ms)"
        )
    executor.remove_node(bench)
    bench.destroy_node()
    rclpy.shutdown()
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
