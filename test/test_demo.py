"""`rkn-ros demo`: the systems of rkn_ros.nodes.systems run end to end over DDS."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_nodes_support import BIN, REPO  # sets ROS_DOMAIN_ID first

from rkn_ros.nodes.demo import node_command
from rkn_ros.nodes.systems import SYSTEMS
from rkn_ros.sim.pendulum import PendulumParams
from rkn_ros.sim.pendulum_sim import PendulumSimulator
from rkn_ros.sim.render import RenderParams

# Every demo of this module runs at once, each in its own DDS domain: the nodes mostly wait
# for the next frame, so together they take about as long as the longest (the 30 s pendulum)
# instead of the sum. The domains lie below the test processes' 100..199 (test_nodes_support),
# spread by this process id so that two runs on one machine do not meet.
DEMOS = {  # test name -> (system, model (a system_checkpoints key or a shipped folder), s)
    # the README's main command; its run is also the one the pendulum checks read
    "pendulum": ("pendulum", REPO / "models" / "pendulum", 30.0),
    "fusion": ("fusion", REPO / "models" / "fusion", 4.0),
    "quad_link": ("quad_link", "quad_link", 3.0),
    "pneumatic": ("pneumatic", "pneumatic", 3.0),
    "pam": ("pam", "pam", 3.0),
}
FIRST_DOMAIN = (os.getpid() % 16) * len(DEMOS)


class DemoRun:
    """One ``rkn-ros demo`` child process; :meth:`summary` waits for it and checks its output
    (each time it is asked: two tests read the pendulum's run)."""

    def __init__(self, system: str, model: Path, out: Path, duration: float, domain: int,
                 env: dict[str, str] | None) -> None:
        self.system, self.out = system, out
        self._output: tuple[str, str] | None = None
        out.mkdir(parents=True)
        self.process = subprocess.Popen(
            [str(BIN / "rkn-ros"), "demo", system, "--duration", str(duration),
             "--model", str(model), "--json", str(out / "summary.json"), "--out", str(out),
             "--domain-id", str(domain)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )

    def summary(self) -> dict:
        if self._output is None:
            try:
                self._output = self.process.communicate(timeout=180)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self._output = self.process.communicate()
        stdout, stderr = self._output
        assert self.process.returncode == 0, f"demo {self.system}:\n{stdout}{stderr}"
        assert "summary" in stdout
        # the live table: its header, then at least one row of figures
        header = next(i for i, line in enumerate(stdout.splitlines()) if "ticks" in line)
        rows = stdout.splitlines()[header + 1:]
        assert any(line.split() and line.split()[0].replace(".", "").isdigit() for line in rows), \
            stdout
        assert "no estimate reached" not in stderr, stderr
        # the source started once the graph showed the estimator and the monitor up
        assert "not in the ROS graph yet" not in stderr, stderr
        summary = json.loads((self.out / "summary.json").read_text())
        png = self.out / f"{self.system}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        return summary


@pytest.fixture(scope="module")
def demos(system_checkpoints, pam_shared, tmp_path_factory):
    """Every demo of :data:`DEMOS`, started together (name -> DemoRun)."""
    root = tmp_path_factory.mktemp("demos")
    runs = {}
    try:
        for domain, (name, (system, model, duration)) in enumerate(DEMOS.items(), FIRST_DOMAIN):
            # the pam demo replays the full recordings where they exist, else the fixture
            env = {**os.environ, "RKN_ROS_SHARED": pam_shared} if system == "pam" else None
            model = system_checkpoints[model] if isinstance(model, str) else model
            runs[name] = DemoRun(system, model, root / name, duration, domain, env)
        yield runs
    finally:
        for run in runs.values():
            if run.process.poll() is None:
                run.process.kill()
                run.process.communicate()


def test_demo_pendulum_runs_the_nodes_over_dds(demos):
    summary = demos["pendulum"].summary()
    assert summary["matched"] > 20
    assert summary["rmse"] > 0 and 0.0 <= summary["coverage_2sigma"] <= 1.0
    assert summary["step_latency_p50_ms"] > 0 and summary["publish_to_estimate_p50_ms"] > 0
    assert list(summary["rmse_per_joint"]) == ["joint_1"]
    # The simulator starts once the estimator and the monitor hear it, so the demo scores the
    # trajectory from its start, as the offline evaluation does; started with them, the first
    # estimate came 50-70 frames in, at a point that depended on the machine and on discovery.
    sim = PendulumSimulator(PendulumParams(), RenderParams(), seed=0, image_noise=True)
    first_frames = [sim.reset()[1][0]] + [sim.step()[1][0] for _ in range(99)]
    with np.load(demos["pendulum"].out / "pendulum_trace.npz") as trace:
        first_scored = float(trace["truth"][0, 0])
    scored_index = np.flatnonzero(np.isclose(first_frames, first_scored, atol=1e-6))
    assert scored_index.size and scored_index[0] < 3, (first_scored, scored_index)


def test_demo_with_the_shipped_pendulum_model_matches_its_offline_evaluation(demos):
    """The README's main command: 30 s of `rkn-ros demo
    pendulum` with the shipped model scores within 20% of the model's offline angle RMSE, with
    a 2-sigma coverage between 0.85 and 0.99."""
    summary = demos["pendulum"].summary()
    assert summary["matched"] > 500
    assert summary["online_over_offline_rmse"] <= 1.2, summary
    assert 0.85 <= summary["coverage_2sigma"] <= 0.99, summary
    assert math.isfinite(summary["nll"]) and summary["step_latency_p99_ms"] > 0


def test_demo_fusion_serves_the_four_sensors_of_the_fused_model(demos):
    summary = demos["fusion"].summary()
    assert summary["sensors"] == ["image", "image_side", "imu", "encoder"]
    assert summary["matched"] > 40 and summary["online_over_offline_rmse"] is not None
    assert list(summary["rmse_per_joint"]) == ["joint_1"]


def test_demo_quad_link_runs_the_four_link_pendulum(demos):
    summary = demos["quad_link"].summary()
    assert summary["matched"] > 20
    assert list(summary["rmse_per_joint"]) == ["joint_1", "joint_2", "joint_3", "joint_4"]


def test_demo_pneumatic_runs_on_the_simulated_joint(demos):
    summary = demos["pneumatic"].summary()
    assert summary["matched"] > 50
    assert summary["velocity"]["count"] > 50
    assert list(summary["rmse_per_joint"]) == ["pam_joint"]


def test_demo_pam_replays_the_real_recordings(demos):
    summary = demos["pam"].summary()
    assert summary["matched"] > 50
    assert list(summary["rmse_per_joint"]) == ["joint_1", "joint_2", "joint_3", "joint_4"]


def test_demo_refuses_a_missing_model(tmp_path):
    result = subprocess.run(
        [str(BIN / "rkn-ros"), "demo", "pendulum", "--model", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1 and "not found" in result.stderr


def test_the_demo_finds_the_nodes_where_colcon_installs_them(tmp_path, monkeypatch):
    """After colcon build, `ros2 run rkn_ros rkn-ros demo` runs lib/rkn_ros/rkn-ros, with the
    nodes beside it and neither next to the interpreter nor on PATH."""
    lib = tmp_path / "install" / "rkn_ros" / "lib" / "rkn_ros"
    lib.mkdir(parents=True)
    for script in ("rkn-ros", "rkn_estimator"):
        (lib / script).write_text("#!/bin/sh\n")
    monkeypatch.setattr(sys, "executable", str(tmp_path / "venv" / "bin" / "python3"))
    monkeypatch.setattr(sys, "argv", [str(lib / "rkn-ros"), "demo", "pendulum"])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    estimator = SYSTEMS["pendulum"].nodes()[1]
    command = node_command(estimator, REPO / "config" / "pendulum.yaml")
    assert command[:4] == [str(lib / "rkn_estimator"), "--ros-args", "--params-file",
                           str(REPO / "config" / "pendulum.yaml")]
    assert command[4:6] == ["-r", "~/image:=pendulum_sim/image"]
    with pytest.raises(FileNotFoundError, match="colcon build"):
        node_command(SYSTEMS["pendulum"].nodes()[2], REPO / "config" / "pendulum.yaml")
