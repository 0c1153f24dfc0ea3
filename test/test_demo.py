"""`rkn-ros demo`: the systems of rkn_ros.nodes.systems run end to end over DDS."""

from __future__ import annotations

import json
import math
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


def _demo(system: str, model: Path, out: Path, duration: float = 3.0) -> dict:
    result = subprocess.run(
        [
            str(BIN / "rkn-ros"),
            "demo",
            system,
            "--duration",
            str(duration),
            "--model",
            str(model),
            "--json",
            str(out / "summary.json"),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "summary" in result.stdout
    # the live table: its header, then at least one row of figures
    header = next(i for i, line in enumerate(result.stdout.splitlines()) if "ticks" in line)
    rows = result.stdout.splitlines()[header + 1:]
    assert any(line.split() and line.split()[0].replace(".", "").isdigit() for line in rows), \
        result.stdout
    assert "no estimate reached" not in result.stderr, result.stderr
    # the source started once the graph showed the estimator and the monitor up
    assert "not in the ROS graph yet" not in result.stderr, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    png = out / f"{system}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return summary


def test_demo_pendulum_runs_the_nodes_over_dds(system_checkpoints, tmp_path):
    summary = _demo("pendulum", system_checkpoints["pendulum"], tmp_path)
    assert summary["matched"] > 20
    assert summary["rmse"] > 0 and 0.0 <= summary["coverage_2sigma"] <= 1.0
    assert summary["step_latency_p50_ms"] > 0 and summary["publish_to_estimate_p50_ms"] > 0
    assert list(summary["rmse_per_joint"]) == ["joint_1"]
    # The simulator starts once the estimator and the monitor hear it, so the demo scores the
    # trajectory from its start, as the offline evaluation does; started with them, the first
    # estimate came 50-70 frames in, at a point that depended on the machine and on discovery.
    sim = PendulumSimulator(PendulumParams(), RenderParams(), seed=0, image_noise=True)
    first_frames = [sim.reset()[1][0]] + [sim.step()[1][0] for _ in range(99)]
    with np.load(tmp_path / "pendulum_trace.npz") as trace:
        first_scored = float(trace["truth"][0, 0])
    scored_index = np.flatnonzero(np.isclose(first_frames, first_scored, atol=1e-6))
    assert scored_index.size and scored_index[0] < 3, (first_scored, scored_index)


def test_demo_with_the_shipped_pendulum_model_matches_its_offline_evaluation(tmp_path):
    """The README's main command: 30 s of `rkn-ros demo
    pendulum` with the shipped model scores within 20% of the model's offline angle RMSE, with
    a 2-sigma coverage between 0.85 and 0.99."""
    summary = _demo("pendulum", REPO / "models" / "pendulum", tmp_path, duration=30.0)
    assert summary["matched"] > 500
    assert summary["online_over_offline_rmse"] <= 1.2, summary
    assert 0.85 <= summary["coverage_2sigma"] <= 0.99, summary
    assert math.isfinite(summary["nll"]) and summary["step_latency_p99_ms"] > 0


def test_demo_fusion_serves_the_four_sensors_of_the_fused_model(tmp_path):
    summary = _demo("fusion", REPO / "models" / "fusion", tmp_path, duration=4.0)
    assert summary["sensors"] == ["image", "image_side", "imu", "encoder"]
    assert summary["matched"] > 40 and summary["online_over_offline_rmse"] is not None
    assert list(summary["rmse_per_joint"]) == ["joint_1"]


def test_demo_quad_link_runs_the_four_link_pendulum(system_checkpoints, tmp_path):
    summary = _demo("quad_link", system_checkpoints["quad_link"], tmp_path)
    assert summary["matched"] > 20
    assert list(summary["rmse_per_joint"]) == ["joint_1", "joint_2", "joint_3", "joint_4"]


def test_demo_pneumatic_runs_on_the_simulated_joint(system_checkpoints, tmp_path):
    summary = _demo("pneumatic", system_checkpoints["pneumatic"], tmp_path)
    assert summary["matched"] > 50
    assert summary["velocity"]["count"] > 50
    assert list(summary["rmse_per_joint"]) == ["pam_joint"]


def test_demo_pam_replays_the_real_recordings(system_checkpoints, tmp_path, pam_shared,
                                              monkeypatch):
    monkeypatch.setenv("RKN_ROS_SHARED", pam_shared)  # the full recordings, else the fixture
    summary = _demo("pam", system_checkpoints["pam"], tmp_path)
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
