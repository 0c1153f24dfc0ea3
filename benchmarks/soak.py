"""Soak: two real ``rkn_estimator`` processes at 100 Hz for ``--duration`` seconds under a
schedule of injected faults; memory, latency and every fault's count on ``/diagnostics``.

- ``soak_camera``: the shipped pendulum network, saved again with ``dt: 0.01`` (the same
  weights and the same step cost; its estimates are not scored here, only the node's
  behaviour) so that a 100 Hz camera is its own rate: ``tick_on: image``, wall clock.
- ``soak_joints``: the shipped PAM model (trained at 100 Hz), ``tick_on: joint_states``,
  ``use_sim_time`` driven by a ``/clock`` this script publishes, with commands.

A publisher process of its own sends the frames, joint states, commands and ``/clock`` at
100 Hz and injects one fault every ``--fault-every`` seconds (``fault_schedule``). This process
samples both nodes' RSS (``/proc/PID/status``), their step latency (``/diagnostics``), the
camera node's publish latency (input stamp to receipt of ``~/state``) and checks every
published estimate for non-finite values. At the end it writes ``summary.md``, ``samples.csv``
and ``soak.png`` under ``--out`` and prints the summary, the publish rates achieved
included (the run's reference). Each fault kind is compared with its own counter: the nodes'
inputs are made reliable and deep (their QoS override parameters), the publisher starts once
the subscriptions match, and the counts are read once they stop changing, so a count either
matches exactly or is short by messages shown lost on the way (sent less ``received.*``).

    .venv/bin/python benchmarks/soak.py --duration 3600 --out runs/soak
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RATE_HZ = 100.0
PERIOD_NS = 10_000_000
SIM_START_NS = 1_000_000_000_000  # /clock starts at 1000 s, so loops back stay positive
CAMERA, JOINTS = "soak_camera", "soak_joints"
JOINT_NAMES = ("joint_1", "joint_2", "joint_3", "joint_4")


class FaultKind(NamedTuple):
    """One kind of injected fault: the node it targets, the ``/diagnostics`` key that counts it,
    how many counts each injection makes (``per_fault``), whether other causes add to the key
    (``at_least``: a lower bound) and the topic whose messages carry it (``sent`` key of the
    publisher's report; a message lost on the way explains a count short by as many)."""

    name: str
    node: str
    key: str
    what: str
    topic: str
    per_fault: int = 1
    at_least: bool = False


FAULT_KINDS = (
    FaultKind("camera_gap", CAMERA, "coasting_ticks", "no frames for 0.3 s", "frames",
              at_least=True),
    FaultKind("camera_burst", CAMERA, "burst.image", "5 extra frames stamped 1-5 us after one",
              "frames", per_fault=5),
    FaultKind("image_future_near", CAMERA, "held.image", "frame stamped 0.205 s ahead", "frames"),
    FaultKind("image_future_far", CAMERA, "rejected.image.future_stamp", "stamped 5 s ahead",
              "frames"),
    FaultKind("image_past_far", CAMERA, "rejected.image.stamp_backwards", "stamped 5 s back",
              "frames"),
    FaultKind("image_wrong_size", CAMERA, "rejected.image.wrong_size", "20x20 frame", "frames"),
    FaultKind("image_wrong_encoding", CAMERA, "rejected.image.unknown_encoding", "32FC1",
              "frames"),
    FaultKind("reset_camera", CAMERA, "requested_resets", "~/reset call", "resets"),
    FaultKind("joint_nan", JOINTS, "rejected.joint_states.non_finite", "NaN angle",
              "joint_states"),
    FaultKind("joint_out_of_range", JOINTS, "rejected.joint_states.out_of_range", "50 rad",
              "joint_states"),
    FaultKind("joint_float32_limit", JOINTS, "rejected.joint_states.out_of_range", "3e38 rad",
              "joint_states"),
    FaultKind("command_out_of_range", JOINTS, "rejected.command.out_of_range", "1e3 command",
              "commands"),
    FaultKind("command_nan", JOINTS, "rejected.command.non_finite", "NaN command", "commands"),
    FaultKind("clock_jump_forward", JOINTS, "forward_jumps", "/clock 2 s ahead", "clock"),
    FaultKind("clock_loop", JOINTS, "jump_resets", "/clock 20 s back (a bag loop)", "clock"),
    FaultKind("clock_malformed", JOINTS, "rejected.clock.malformed", "/clock sec=-5", "clock"),
    FaultKind("reset_joints", JOINTS, "requested_resets", "~/reset call", "resets"),
)
# what each node counts as received of a topic the publisher reports as sent
RECEIVED_KEYS = {"frames": "received.image", "joint_states": "received.joint_states",
                 "commands": "received.command", "clock": "received.clock"}
# Reliable and deep both ways (the node's inputs by its QoS override parameters), so that
# every message sent reaches the node and each count can be compared exactly; rclpy's own
# /clock subscription stays depth 1, best effort (received.clock shows what it lost).
QUEUE_DEPTH = 100
KINDS = {kind.name: kind for kind in FAULT_KINDS}


class Fault(NamedTuple):
    tick: int  # index of the 100 Hz publish tick it replaces or follows
    kind: str


def fault_schedule(duration_s: float, every_s: float = 2.0, seed: int = 0) -> list[Fault]:
    """One fault every ``every_s`` from 5 s in until 2 s before the end (a quarter and a tenth
    of a short run), the kinds in a seeded shuffled order per round so that each kind comes
    equally often."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    order: list[str] = []
    t = min(5.0, duration_s / 4)
    while t < duration_s - min(2.0, duration_s / 10):
        if not order:
            order = [kind.name for kind in FAULT_KINDS]
            rng.shuffle(order)
        faults.append(Fault(round(t * RATE_HZ), order.pop()))
        t += every_s
    return faults


def ros_environment(domain_id: int) -> dict[str, str]:
    return dict(os.environ, ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
                RMW_IMPLEMENTATION=os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"),
                PYTHONUNBUFFERED="1")


# --- the publisher process ---------------------------------------------------------------------

def run_publisher(args: argparse.Namespace) -> int:
    """Publish at 100 Hz for ``args.duration`` s with the fault schedule; write what was sent."""
    import numpy as np
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.node import Node
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray
    from std_srvs.srv import Trigger

    from rkn_ros.nodes.conversions import array_to_image
    from rkn_ros.sim.render import RenderParams, render

    rclpy.init()
    node = Node("soak_source")
    images = node.create_publisher(type(array_to_image(np.zeros((1, 1), np.uint8), Time())),
                                   f"/{CAMERA}/image", QUEUE_DEPTH)
    joints = node.create_publisher(JointState, f"/{JOINTS}/joint_states", QUEUE_DEPTH)
    commands = node.create_publisher(Float64MultiArray, f"/{JOINTS}/command", QUEUE_DEPTH)
    clock = node.create_publisher(Clock, "/clock", 10)
    resets = {CAMERA: node.create_client(Trigger, f"/{CAMERA}/reset"),
              JOINTS: node.create_client(Trigger, f"/{JOINTS}/reset")}
    angles = 0.8 * np.sin(np.linspace(0, 2 * np.pi, 200, endpoint=False))
    frames = render(angles[:, None], (1.0,), RenderParams(image_size=24))
    small = np.zeros((20, 20), np.uint8)
    center = np.array([-0.01, -0.84, -1.10, -0.07])
    spread = np.array([0.27, 0.13, 0.55, 0.30])

    def stamp(ns: int) -> Time:
        return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)

    faults = {f.tick: f.kind for f in fault_schedule(args.duration, args.fault_every)}
    injected = {kind.name: 0 for kind in FAULT_KINDS}
    sent = {"frames": 0, "joint_states": 0, "commands": 0, "clock": 0}
    pending = []
    replies = {CAMERA: 0, JOINTS: 0}
    sim_ns = SIM_START_NS
    gap_until = -1
    # messages sent before discovery matched a node's subscription would never reach it
    end = time.monotonic() + args.match_timeout
    while time.monotonic() < end and min(
            p.get_subscription_count() for p in (images, joints, commands, clock)) < 1:
        rclpy.spin_once(node, timeout_sec=0.1)
    start, start_wall_ns = time.monotonic(), time.time_ns()
    total = round(args.duration * RATE_HZ)
    for tick in range(total):
        delay = start + tick / RATE_HZ - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        kind = faults.get(tick, "")
        if kind:
            injected[kind] += 1
        # /clock for the sim-time node
        sim_ns += PERIOD_NS
        if kind == "clock_jump_forward":
            sim_ns += 2_000_000_000
        elif kind == "clock_loop":
            sim_ns -= 20_000_000_000
        if kind == "clock_malformed":
            clock.publish(Clock(clock=Time(sec=-5)))
        else:
            clock.publish(Clock(clock=stamp(sim_ns)))
        sent["clock"] += 1
        # the camera, on the wall clock, stamped on its schedule (a late loop sends frames
        # stamped in the past, never two genuine ones closer than a period)
        now = start_wall_ns + tick * PERIOD_NS
        frame = frames[tick % len(frames)]
        if kind == "camera_gap":
            gap_until = tick + round(0.3 * RATE_HZ)
        if tick >= gap_until:
            # 0.205 s: half-way between two frames' stamps, so the held frame is taken in
            # stamp order between them, never at a genuine frame's stamp
            offset = {"image_future_near": 205_000_000, "image_future_far": 5_000_000_000,
                      "image_past_far": -5_000_000_000}.get(kind, 0)
            msg = array_to_image(small if kind == "image_wrong_size" else frame,
                                 stamp(now + offset))
            if kind == "image_wrong_encoding":
                msg.encoding = "32FC1"
            images.publish(msg)
            sent["frames"] += 1
            if kind == "camera_burst":
                for k in range(5):
                    images.publish(array_to_image(frame, stamp(now + (k + 1) * 1000)))
                    sent["frames"] += 1
        # the joint sensor and the commands, on the sim clock
        phase = 2 * np.pi * tick / 300.0
        positions = center + 0.5 * spread * np.sin(phase + np.arange(4))
        if kind == "joint_nan":
            positions[0] = np.nan
        elif kind == "joint_out_of_range":
            positions[1] = 50.0
        elif kind == "joint_float32_limit":
            positions[2] = 3e38
        joints.publish(JointState(header=_header(stamp(sim_ns)), name=list(JOINT_NAMES),
                                  position=[float(p) for p in positions]))
        command = [0.1 * float(np.sin(phase + k)) for k in range(8)]
        if kind == "command_out_of_range":
            command[0] = 1e3
        elif kind == "command_nan":
            command[3] = float("nan")
        commands.publish(Float64MultiArray(data=command))
        sent["joint_states"] += 1
        sent["commands"] += 1
        if kind in ("reset_camera", "reset_joints"):
            target = CAMERA if kind == "reset_camera" else JOINTS
            if resets[target].service_is_ready():
                pending.append((target, resets[target].call_async(Trigger.Request())))
        rclpy.spin_once(node, timeout_sec=0)
        for target, future in list(pending):
            if future.done():
                pending.remove((target, future))
                replies[target] += int(bool(future.result() and future.result().success))
    elapsed = time.monotonic() - start
    end = time.monotonic() + 5.0
    while pending and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.05)
        for target, future in list(pending):
            if future.done():
                pending.remove((target, future))
                replies[target] += int(bool(future.result() and future.result().success))
    Path(args.report).write_text(json.dumps({
        "injected": injected, "sent": sent, "elapsed_s": elapsed, "reset_replies": replies,
        "frame_rate_hz": sent["frames"] / elapsed,
        "joint_rate_hz": sent["joint_states"] / elapsed,
    }, indent=1))
    node.destroy_node()
    rclpy.shutdown()
    return 0


def _header(stamp):
    from std_msgs.msg import Header
    return Header(stamp=stamp)


# --- the soak ----------------------------------------------------------------------------------

def make_camera_checkpoint(folder: Path) -> Path:
    """The shipped pendulum network saved again with a 0.01 s tick (same weights and cost)."""
    import dataclasses

    from rkn_ros.core.checkpoint import load_checkpoint, save_checkpoint

    model, metadata = load_checkpoint(REPO / "models" / "pendulum")
    return save_checkpoint(folder, model, dataclasses.replace(metadata, dt=1.0 / RATE_HZ))


def rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def start_node(name: str, params: dict, env: dict, log: Path) -> subprocess.Popen:
    command = [str(BIN / "rkn_estimator"), "--ros-args", "-r", f"__node:={name}"]
    for key, value in params.items():
        command += ["-p", f"{key}:={value}"]
    return subprocess.Popen(command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(process: subprocess.Popen, sig: int = signal.SIGINT) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def commit_id() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, text=True, capture_output=True, timeout=10).stdout
        return head + ("+modified" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_soak(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    domain = args.domain_id if args.domain_id is not None else 200 + os.getpid() % 30
    env = ros_environment(domain)
    os.environ.update({k: env[k] for k in ("ROS_DOMAIN_ID", "ROS_AUTOMATIC_DISCOVERY_RANGE",
                                           "RMW_IMPLEMENTATION")})
    from soak_monitor import Monitor, write_outputs  # beside this script

    commit = commit_id()  # now: the worktree may move on during a long run
    checkpoint = make_camera_checkpoint(out / "pendulum_100hz")
    common = {"device": "cpu", "num_threads": 1, "diagnostics_period": 1.0}

    def reliable(node: str, *inputs: str) -> dict[str, object]:
        params: dict[str, object] = {}
        for name in inputs:
            prefix = f"qos_overrides./{node}/{name}.subscription"
            params.update({f"{prefix}.reliability": "reliable", f"{prefix}.depth": QUEUE_DEPTH})
        return params

    processes: dict[str, subprocess.Popen] = {}
    publisher = None
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    try:
        processes[CAMERA] = start_node(CAMERA, {**common, **reliable(CAMERA, "image"),
                                                "model_path": checkpoint, "tick_on": "image"},
                                       env, out / f"{CAMERA}.log")
        processes[JOINTS] = start_node(JOINTS, {**common, **reliable(JOINTS, "joint_states",
                                                                     "command"),
                                                "model_path": REPO / "models" / "pam",
                                                "tick_on": "joint_states", "use_sim_time": "true"},
                                       env, out / f"{JOINTS}.log")
        monitor = Monitor((CAMERA, JOINTS), {n: p.pid for n, p in processes.items()})
        if not monitor.wait_ready(timeout=180.0, alive=lambda: all(
                p.poll() is None for p in processes.values())):
            print("the estimators did not come up; see their logs in", out, file=sys.stderr)
            return 1
        report = out / "publisher.json"
        report.unlink(missing_ok=True)
        publisher = subprocess.Popen(
            [sys.executable, __file__, "--role", "publisher", "--duration", str(args.duration),
             "--fault-every", str(args.fault_every), "--report", str(report),
             "--match-timeout", str(args.match_timeout)],
            env=env, stdout=(out / "publisher.log").open("w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + args.duration + 60.0
        while publisher.poll() is None and time.monotonic() < deadline and not stopping:
            monitor.spin(1.0)
            monitor.sample()
        # counts are final once the nodes report the same received counts twice running
        monitor.wait_quiet(timeout=15.0)
        monitor.sample()
        alive = {n: p.poll() is None for n, p in processes.items()}
        sent = json.loads(report.read_text()) if report.exists() else {}
        summary = write_outputs(out, monitor, sent, fault_schedule(args.duration, args.fault_every),
                                alive, {"commit": commit, "duration_s": args.duration,
                                        "command": " ".join(sys.argv), "domain_id": domain})
        print(summary)
        monitor.close()
        return 0 if all(alive.values()) and monitor.nonfinite_total() == 0 else 1
    finally:
        if publisher is not None:
            stop(publisher, signal.SIGTERM)
        for process in processes.values():
            stop(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3600.0, help="s of publishing")
    parser.add_argument("--out", default="runs/soak", help="folder of the outputs")
    parser.add_argument("--fault-every", type=float, default=2.0, help="s between faults")
    parser.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID")
    parser.add_argument("--match-timeout", type=float, default=20.0,
                        help="s the publisher waits for the nodes' subscriptions to match")
    parser.add_argument("--role", choices=("soak", "publisher"), default="soak",
                        help=argparse.SUPPRESS)
    parser.add_argument("--report", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return run_publisher(args) if args.role == "publisher" else run_soak(args)


if __name__ == "__main__":
    sys.exit(main())
