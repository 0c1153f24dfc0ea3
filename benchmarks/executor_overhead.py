"""What one pass of rclpy's executor costs for the estimator node's entities, beside a relay's.

Every message a node receives costs a pass of the executor: building the wait set from the
node's subscriptions, timers, services and guard conditions, waiting, and scanning them for the
ready one. That cost grows with the number of entities, and the estimator has more of them than
a bare relay (a reset service, a tick timer, a diagnostics timer, more publishers). This script
measures one pass with nothing ready (``spin_once(timeout_sec=0)``), in process, no DDS
traffic, for:

1. a relay without parameter services (one subscription);
2. the relay of ``e2e_latency.py`` (one subscription, rclpy's six parameter services);
3. the real ``EstimatorNode`` built from a checkpoint (``tick_on: image``, as in
   ``e2e_latency.py``).

Beside it, the node's own work per frame: its image callback called in process (decode and
check the frame, one step, both ``JointState`` publishes, no subscriber), frames ``--pace``
seconds apart as a camera at 50 Hz sends them, so the model runs as cold as in the node.

    .venv/bin/python benchmarks/executor_overhead.py [--passes 3000] [--frames 500]
        [--pace 0.02] [--model models/pendulum]

Prints medians and p90s. BENCHMARKS.md, "End to end".
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("ROS_DOMAIN_ID", str(150 + os.getpid() % 80))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from rkn_ros.nodes.conversions import array_to_image  # noqa: E402
from rkn_ros.nodes.estimator_node import EstimatorNode  # noqa: E402


def passes_us(node: Node, passes: int) -> np.ndarray:
    """Wall time of ``passes`` executor passes over ``node`` with nothing ready, in us."""
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    for _ in range(200):  # warm-up
        executor.spin_once(timeout_sec=0)
    times = np.empty(passes)
    for k in range(passes):
        start = time.perf_counter_ns()
        executor.spin_once(timeout_sec=0)
        times[k] = (time.perf_counter_ns() - start) / 1e3
    executor.remove_node(node)
    return times


def entities(node: Node) -> str:
    return (
        f"{len(list(node.subscriptions))} subscriptions, {len(list(node.timers))} timers, "
        f"{len(list(node.services))} services"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--passes", type=int, default=3000)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--pace", type=float, default=0.02, help="seconds between frames")
    parser.add_argument("--model", default=str(REPO / "models" / "pendulum"))
    args = parser.parse_args()
    rclpy.init(
        args=["--ros-args", "-p", f"model_path:={args.model}", "-p", "tick_on:=image",
              "-p", "device:=cpu"]
    )
    bare = Node("relay_without_parameter_services", start_parameter_services=False)
    bare.create_subscription(Image, "/bench/in", lambda msg: None, 1)
    relay = Node("bare_relay", use_global_arguments=False)
    relay.create_subscription(Image, "/bench/in2", lambda msg: None, 1)
    estimator = EstimatorNode()
    print(f"one executor pass with nothing ready, {args.passes} passes, median / p90 (us)")
    for label, node in (
        ("relay, no parameter services", bare),
        ("relay as in e2e_latency.py", relay),
        ("rkn_estimator (tick_on: image)", estimator),
    ):
        times = passes_us(node, args.passes)
        print(
            f"  {label:<32} {np.median(times):7.1f} / {np.percentile(times, 90):7.1f}"
            f"   ({entities(node)})"
        )
    size = estimator.est.inputs[estimator.est.image_sensor()].image_size
    picture = (np.random.default_rng(0).random(size) * 255).astype(np.uint8)
    callback = np.empty(args.frames)
    for k in range(args.frames):
        msg = array_to_image(picture, estimator.get_clock().now().to_msg())
        start = time.perf_counter_ns()
        estimator._on_image(msg)  # what the executor calls for each frame
        callback[k] = (time.perf_counter_ns() - start) / 1e3
        time.sleep(args.pace)
    callback = callback[args.frames // 10 :]
    print(
        f"estimator image callback, frames {args.pace * 1e3:.0f} ms apart, median / p90 (us): "
        f"{np.median(callback):.1f} / {np.percentile(callback, 90):.1f}; model step alone "
        f"p50 {estimator.est.model_latency.p50_ms * 1e3:.1f}"
    )
    for node in (bare, relay, estimator):
        node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
