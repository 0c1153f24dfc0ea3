"""Process and DDS helpers for the node tests (no tests here).

Every test process gets its own ROS_DOMAIN_ID (from its pid) with discovery kept on localhost,
so parallel runs on one machine never see each other's topics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

DOMAIN_ID = 100 + os.getpid() % 100
os.environ["ROS_DOMAIN_ID"] = str(DOMAIN_ID)
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

import rclpy  # noqa: E402  (the environment above must be set before rclpy reads it)
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


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
