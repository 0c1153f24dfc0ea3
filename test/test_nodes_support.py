"""Process and DDS helpers for the node tests, and the probe that feeds an estimator and records
what it says (no tests here).

Every test process gets its own ROS_DOMAIN_ID (:func:`domain_id`) with discovery kept on
localhost, so parallel runs on one machine, and the pytest-xdist workers of one run, never see
each other's topics.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar


def domain_id(pid: int, parent_pid: int, worker: str = "", workers: int = 1) -> int:
    """The ROS_DOMAIN_ID of a test process, in 100-199: from its pid, or for pytest-xdist's
    worker ``worker`` ("gw0", "gw1", ...) of ``workers`` from the controller's pid and the
    worker's number (consecutive numbers: distinct modulo 100 for up to 100 workers)."""
    if not worker:
        return 100 + pid % 100
    return 100 + (parent_pid * workers + int(worker.removeprefix("gw"))) % 100


DOMAIN_ID = domain_id(os.getpid(), os.getppid(), os.environ.get("PYTEST_XDIST_WORKER", ""),
                      int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
os.environ["ROS_DOMAIN_ID"] = str(DOMAIN_ID)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

import numpy as np  # noqa: E402
import rclpy  # noqa: E402  (the environment above must be set before rclpy reads it)
import torch  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image, JointState  # noqa: E402
from std_msgs.msg import Float64MultiArray  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from test_runtime_support import (  # noqa: E402
    make_joint_checkpoint,
    make_monotone_pendulum_checkpoint,
    make_pendulum_checkpoint,
    pendulum_metadata,
    save_checkpoint,  # where the checkpoint format lives, as test_runtime_support has it
)
from trajectory_msgs.msg import JointTrajectory  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from rkn_ros.core import ModelConfig, SensorSpec, build_model  # noqa: E402
from rkn_ros.nodes.conversions import array_to_image, stamp_to_ns  # noqa: E402
from rkn_ros.sim.render import RenderParams, render  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
BEST_EFFORT = QoSProfile(depth=50, reliability=ReliabilityPolicy.BEST_EFFORT)
FRAME = render(np.array([[0.6]]), (1.0,), RenderParams(image_size=24))[0]


class NodeProcess:
    """A console-script node in its own process; stopped with SIGINT (then killed) on exit."""

    def __init__(
        self,
        executable: str,
        params: dict | None = None,
        remaps: dict[str, str] | None = None,
        params_file: Path | None = None,
        log: Path | None = None,
    ) -> None:
        command = [str(BIN / executable), "--ros-args"]
        if params_file is not None:
            command += ["--params-file", str(params_file)]
        for key, value in (params or {}).items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            command += ["-p", f"{key}:={text}"]
        for source, target in (remaps or {}).items():
            command += ["-r", f"{source}:={target}"]
        self.command = command
        self.log = log
        # Field type checks on, as ROS 2 Humble always has them: a message filled with the
        # wrong Python types must fail here, not on a user's distribution.
        env = dict(os.environ, PYTHONUNBUFFERED="1", ROS_PYTHON_CHECK_FIELDS="1")
        self._log_file = open(log, "w") if log is not None else None  # noqa: SIM115
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=self._log_file or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> int:
        """SIGINT, wait, kill if needed; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_file is not None:
            self._log_file.close()
        return self.process.returncode

    def output(self) -> str:
        """The log so far (empty without a log file)."""
        return self.log.read_text() if self.log is not None and self.log.exists() else ""


def start_once(
    executable: str, args: list[str], env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start a console script that is expected to exit by itself (start-up failures);
    ``env`` is added to this process's environment."""
    return subprocess.Popen(
        [str(BIN / executable), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


class TestNode:
    """The test's own rclpy node with a private executor."""

    __test__ = False  # not a pytest class

    def __init__(self, name: str) -> None:
        if not rclpy.ok():
            rclpy.init()
        self.node = Node(name)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)

    def spin_for(self, seconds: float) -> None:
        """Process callbacks for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=min(0.02, max(0.0, end - time.monotonic())))

    def spin_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Process callbacks until ``condition()`` holds; False on timeout."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if condition():
                return True
            self.executor.spin_once(timeout_sec=0.02)
        return condition()

    def close(self) -> None:
        """Destroy the node (rclpy stays initialised for the next one)."""
        self.executor.remove_node(self.node)
        self.node.destroy_node()


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
        self.diagnostics: dict[str, str] = {}  # the estimator's status, by key
        self.level: bytes | None = None
        # every status of the node by task ("RKN estimator", "image input", ...), newest
        self.statuses: dict[str, DiagnosticStatus] = {}
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
            if status.name.startswith(f"/{self.name}: "):
                self.statuses[status.name.removeprefix(f"/{self.name}: ")] = status
            if status.name == f"/{self.name}: RKN estimator":
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


def until_counted(probe: Probe, publisher, msg, key: str, timeout: float = 15.0) -> bool:
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


def make_overflowing_pendulum_checkpoint(folder: Path, seed: int = 0) -> Path:
    """An image pendulum whose weights are all finite but whose estimates are not: every
    weight outside the decoder scaled by 1e30, so the latent state overflows float32 at the
    first step (the decoded mean is NaN)."""
    torch.manual_seed(seed)
    config = ModelConfig(
        sensors=(SensorSpec("image", "image", (24, 24)),), output_dim=2, latent_obs_dim=15,
        decoder_hidden=(),
    )
    model = build_model(config)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if not name.startswith("decoder."):
                weight.mul_(1e30)
    return save_checkpoint(folder, model, pendulum_metadata(config, name="pendulum_overflow"))


class Checkpoints:
    """The test checkpoints of the node tests, each written on first use."""

    MAKERS: ClassVar[dict[str, Callable[[Path], Path]]] = {
        "monotone": make_monotone_pendulum_checkpoint,
        "pendulum": make_pendulum_checkpoint,
        "joint": make_joint_checkpoint,
        "overflowing": make_overflowing_pendulum_checkpoint,
    }

    def __init__(self, root: Path) -> None:
        self._root = root
        self._made: dict[str, Path] = {}

    def __getitem__(self, name: str) -> Path:
        if name not in self._made:
            self._made[name] = self.MAKERS[name](self._root / name)
        return self._made[name]


@contextlib.contextmanager
def running_estimator(
    probe_node: TestNode, name: str, params: dict, log: Path, input_name: str = "images"
) -> Iterator[tuple[Probe, NodeProcess]]:
    """An ``rkn_estimator`` process named ``name`` and its probe, once the node listens on the
    probe's ``input_name`` publisher and reports; on exit it must still run and stop with 0."""
    remaps = {"__node": name} if name != "rkn_estimator" else None
    process = NodeProcess("rkn_estimator", params=params, remaps=remaps, log=log)
    try:
        probe = Probe(probe_node, name)
        probe.wait_ready(getattr(probe, input_name))
        yield probe, process
    finally:
        assert process.process.poll() is None, f"estimator died:\n{process.output()}"
        assert process.stop() == 0, process.output()
