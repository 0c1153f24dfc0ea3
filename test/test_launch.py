"""Launch files, parameter files and `rkn-ros demo` agree, and the demos run end to end.

The launch package is not installed with the PyPI wheels, so the launch files are checked two
ways: their syntax tree (the arguments they declare), and by running their own
``generate_launch_description`` against small stand-ins for the launch API that record each
``Node(...)`` (executable, parameter files, remappings). The parameter files are then loaded by
the real nodes, in-process, through rcl's own ``--params-file`` parsing.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter
from test_nodes_support import BIN, REPO  # sets ROS_DOMAIN_ID first
from test_runtime_support import (
    make_joint_checkpoint,
    make_monotone_pendulum_checkpoint,
    make_pam_checkpoint,
    make_pendulum_checkpoint,
)

from rkn_ros.nodes.demo import ESTIMATOR, SYSTEMS
from rkn_ros.nodes.estimator_node import EstimatorNode
from rkn_ros.nodes.monitor_node import MonitorNode
from rkn_ros.nodes.pam_replay_node import PamReplayNode
from rkn_ros.nodes.pendulum_sim_node import PendulumSimNode
from rkn_ros.nodes.pneumatic_sim_node import PneumaticSimNode

LAUNCH = REPO / "launch"
NODE_CLASSES = {
    "rkn_estimator": EstimatorNode,
    "pendulum_sim": PendulumSimNode,
    "pneumatic_sim": PneumaticSimNode,
    "pam_replay": PamReplayNode,
    "rkn_monitor": MonitorNode,
}


def console_scripts() -> dict[str, str]:
    """NODES from setup.py, read from its syntax tree."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODES":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no NODES")


# ---------------------------------------------------------------------- launch API stand-ins
class _Config:
    def __init__(self, name: str) -> None:
        self.name = name

    def perform(self, context: dict) -> str:
        return context[self.name]


class _Recorded:
    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


def evaluate_launch(path: Path, arguments: dict[str, str]) -> list[dict]:
    """Run the launch file's description with ``arguments``; the Node(...) keyword sets."""
    stubs = {
        "launch": types.ModuleType("launch"),
        "launch.actions": types.ModuleType("launch.actions"),
        "launch.substitutions": types.ModuleType("launch.substitutions"),
        "launch_ros": types.ModuleType("launch_ros"),
        "launch_ros.actions": types.ModuleType("launch_ros.actions"),
        "ament_index_python.packages": types.ModuleType("ament_index_python.packages"),
    }
    stubs["launch"].LaunchDescription = lambda actions: actions
    stubs["launch.actions"].DeclareLaunchArgument = _Recorded
    stubs["launch.actions"].OpaqueFunction = _Recorded
    stubs["launch.substitutions"].LaunchConfiguration = _Config
    stubs["launch_ros.actions"].Node = _Recorded
    stubs["ament_index_python.packages"].get_package_share_directory = lambda package: str(REPO)
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        spec = importlib.util.spec_from_file_location(f"launch_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        actions = module.generate_launch_description()
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value
    declared = {a.args[0]: a.kwargs.get("default_value", "") for a in actions if a.args}
    context = {**declared, **arguments}
    nodes = []
    for action in actions:
        if "function" in action.kwargs:
            nodes += [n.kwargs for n in action.kwargs["function"](context)]
    return nodes


def _files(parameters: list) -> list[Path]:
    return [Path(p) for p in parameters if isinstance(p, str)]


LAUNCH_CASES = {
    "pendulum": ("pendulum_sim.launch.py", {"links": "1"}),
    "quad_link": ("pendulum_sim.launch.py", {"links": "4"}),
    "pneumatic": ("pneumatic_sim.launch.py", {"source": "sim"}),
    "pam": ("pneumatic_sim.launch.py", {"source": "pam"}),
}


@pytest.mark.parametrize("system", sorted(LAUNCH_CASES))
def test_launch_files_and_demo_name_the_same_nodes_files_and_wiring(system):
    launch_file, arguments = LAUNCH_CASES[system]
    demo = SYSTEMS[system]
    assert demo.launch_file == f"launch/{launch_file}"
    nodes = evaluate_launch(LAUNCH / launch_file, arguments)
    scripts = console_scripts()
    assert [n["executable"] for n in nodes] == [s.executable for s in demo.nodes]
    for node, spec in zip(nodes, demo.nodes, strict=True):
        assert node["package"] == "rkn_ros" and node["executable"] in scripts
        assert node["name"] == spec.name
        files = _files(node["parameters"])
        assert files == [REPO / demo.config], f"{system}: {files}"
        assert files[0].is_file()
        assert sorted(node.get("remappings", [])) == sorted(spec.remappings)


def test_estimator_launch_takes_the_users_topics_and_settings():
    nodes = evaluate_launch(
        LAUNCH / "estimator.launch.py",
        {
            "model_path": "/models/mine",
            "image_topic": "/camera/image_raw",
            "namespace": "robot1",
            "use_sim_time": "true",
            "log_level": "debug",
        },
    )
    (node,) = nodes
    assert node["executable"] == "rkn_estimator" and node["namespace"] == "robot1"
    assert _files(node["parameters"]) == [REPO / "config" / "estimator.yaml"]
    assert {"model_path": "/models/mine", "use_sim_time": True} in node["parameters"]
    assert ("~/image", "/camera/image_raw") in node["remappings"]
    assert node["arguments"][-2:] == ["--log-level", "debug"]


def test_launch_files_declare_their_arguments():
    expected = {
        "pendulum_sim.launch.py": {"links", "use_sim_time", "model_path", "log_level"},
        "pneumatic_sim.launch.py": {
            "source",
            "pam_file",
            "use_sim_time",
            "model_path",
            "log_level",
        },
        "estimator.launch.py": {
            "model_path",
            "params_file",
            "image_topic",
            "joint_states_topic",
            "command_topic",
            "namespace",
            "use_sim_time",
            "log_level",
        },
    }
    assert sorted(p.name for p in LAUNCH.glob("*.launch.py")) == sorted(expected)
    for name, arguments in expected.items():
        tree = ast.parse((LAUNCH / name).read_text())
        declared = {
            call.args[0].value
            for call in ast.walk(tree)
            if isinstance(call, ast.Call)
            and getattr(call.func, "id", "") == "DeclareLaunchArgument"
        }
        assert declared == arguments, name
        imports = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert {"launch", "launch_ros.actions", "ament_index_python.packages"} <= imports


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("launch_checkpoints")
    return {
        "pendulum": make_monotone_pendulum_checkpoint(root / "pendulum"),
        "quad_link": make_pendulum_checkpoint(root / "quad_link", links=4, size=48),
        "pneumatic": make_joint_checkpoint(root / "pneumatic"),
        "pam": make_pam_checkpoint(root / "pam"),
    }


CONFIG_SYSTEMS = {
    "pendulum.yaml": "pendulum",
    "quad_link.yaml": "quad_link",
    "pneumatic.yaml": "pneumatic",
    "pam.yaml": "pam",
    "estimator.yaml": "pendulum",
}


@pytest.mark.parametrize("config_name", sorted(CONFIG_SYSTEMS))
def test_every_parameter_in_the_config_files_is_declared_by_its_node(config_name, checkpoints):
    config = REPO / "config" / config_name
    sections = yaml.safe_load(config.read_text())
    assert sorted(p.name for p in (REPO / "config").glob("*.yaml")) == sorted(CONFIG_SYSTEMS)
    for node_name, section in sections.items():
        keys = set(section["ros__parameters"])
        context = rclpy.Context()
        rclpy.init(args=["--ros-args", "--params-file", str(config)], context=context)
        try:
            overrides = []
            if node_name == ESTIMATOR:
                model = checkpoints[CONFIG_SYSTEMS[config_name]]
                overrides = [Parameter("model_path", value=str(model))]
            node = NODE_CLASSES[node_name](context=context, parameter_overrides=overrides)
            try:
                declared = set(node._parameters)
                undeclared = keys - declared
                assert not undeclared, f"{config_name}/{node_name}: {sorted(undeclared)}"
                for key in keys - {"model_path"}:
                    value = node.get_parameter(key).value
                    expected = section["ros__parameters"][key]
                    assert value == expected, key
            finally:
                node.destroy_node()
        finally:
            rclpy.shutdown(context=context)


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
    assert "ticks" in result.stdout and "summary" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    png = out / f"{system}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return summary


def test_demo_pendulum_runs_the_nodes_over_dds(checkpoints, tmp_path):
    summary = _demo("pendulum", checkpoints["pendulum"], tmp_path)
    assert summary["matched"] > 20
    assert summary["rmse"] > 0 and 0.0 <= summary["coverage_2sigma"] <= 1.0
    assert summary["step_latency_p50_ms"] > 0 and summary["publish_to_estimate_p50_ms"] > 0
    assert list(summary["rmse_per_joint"]) == ["joint_1"]


def test_demo_pneumatic_runs_on_the_simulated_joint(checkpoints, tmp_path):
    summary = _demo("pneumatic", checkpoints["pneumatic"], tmp_path)
    assert summary["matched"] > 50
    assert summary["velocity"]["count"] > 50
    assert list(summary["rmse_per_joint"]) == ["pam_joint"]


def test_demo_pam_replays_the_real_recordings(checkpoints, tmp_path):
    summary = _demo("pam", checkpoints["pam"], tmp_path)
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
