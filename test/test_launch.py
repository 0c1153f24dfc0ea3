"""Launch files, parameter files and the systems `rkn-ros demo` runs agree.

The launch package is not installed with the PyPI wheels, so the launch files run their own
``generate_launch_description`` against strict stand-ins for the launch API
(test/launch_stand_ins.py) that record each ``Node(...)`` (executable, namespace, parameter
files, remappings, on_exit). The parameter files and remappings are then given to the real
nodes, in-process, through rcl's own ``--params-file`` and ``-r`` parsing.
"""

from __future__ import annotations

import ast

import pytest
import yaml
from launch_nodes_support import built_node
from launch_stand_ins import (
    Shutdown,
    declared_arguments,
    evaluate_launch,
    on_process_exit,
    parameter_files,
)
from test_nodes_support import REPO  # sets ROS_DOMAIN_ID first

from rkn_ros.nodes.launch_actions import OUTPUT_ARGUMENTS
from rkn_ros.nodes.params import node_parameters
from rkn_ros.nodes.systems import SYSTEMS


@pytest.fixture(autouse=True)
def _pam_recordings(pam_shared, monkeypatch):
    """pam_replay, built in process here, opens its recording: the full one, else the fixture."""
    monkeypatch.setenv("RKN_ROS_SHARED", pam_shared)

LAUNCH = REPO / "launch"


def console_scripts() -> dict[str, str]:
    """NODES from setup.py, read from its syntax tree."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODES":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py defines no NODES")


LAUNCH_CASES = {
    "pendulum": ("pendulum_sim.launch.py", {"links": "1"}),
    "quad_link": ("pendulum_sim.launch.py", {"links": "4"}),
    "pneumatic": ("pneumatic_sim.launch.py", {"source": "sim"}),
    "pam": ("pneumatic_sim.launch.py", {"source": "pam"}),
    "fusion": ("fusion.launch.py", {}),
}


@pytest.mark.parametrize("system", sorted(LAUNCH_CASES))
def test_launch_files_and_demo_name_the_same_nodes_files_and_wiring(system):
    launch_file, arguments = LAUNCH_CASES[system]
    demo = SYSTEMS[system]
    assert demo.launch_file == f"launch/{launch_file}"
    nodes = evaluate_launch(LAUNCH / launch_file, arguments)
    scripts = console_scripts()
    specs = demo.nodes()
    assert [n["executable"] for n in nodes] == [s.executable for s in specs]
    for node, spec in zip(nodes, specs, strict=True):
        assert node["package"] == "rkn_ros" and node["executable"] in scripts
        assert node["name"] == spec.name
        files = parameter_files(node["parameters"])
        assert files == [REPO / demo.config], f"{system}: {files}"
        assert files[0].is_file()
        assert sorted(node.get("remappings", [])) == sorted(spec.remappings)
        assert node["namespace"] == ""
        # as the demo stops when one of its processes exits, so does the launch
        assert any(isinstance(a, Shutdown) for a in on_process_exit(node, 1)), spec.name


@pytest.mark.parametrize(
    ("launch_file", "argument", "value"),
    [
        ("pendulum_sim.launch.py", "links", "2"),
        ("pendulum_sim.launch.py", "rviz", "yes"),
        ("pneumatic_sim.launch.py", "source", "bag"),
        ("pendulum_sim.launch.py", "use_sim_time", "yes"),
        ("estimator.launch.py", "use_sim_time", "1"),
    ],
)
def test_launch_files_refuse_a_value_outside_an_arguments_choices(launch_file, argument, value):
    with pytest.raises(RuntimeError, match=f"'{argument}' must be one of"):
        evaluate_launch(LAUNCH / launch_file, {argument: value})


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
    assert node["package"] == "rkn_ros" and node["executable"] in console_scripts()
    assert parameter_files(node["parameters"]) == [REPO / "config" / "estimator.yaml"]
    assert parameter_files(node["parameters"])[0].is_file()
    assert {"model_path": "/models/mine", "use_sim_time": True} in node["parameters"]
    assert ("~/image", "/camera/image_raw") in node["remappings"]
    assert node["arguments"][-2:] == ["--log-level", "debug"]
    assert ("~/command", "command") in node["remappings"]
    # an empty topic keeps the private name: rcl refuses `-r ~/command:=`
    (node,) = evaluate_launch(LAUNCH / "estimator.launch.py", {"command_topic": ""})
    assert [source for source, _ in node["remappings"]] == ["~/image", "~/joint_states"]


@pytest.mark.parametrize(
    ("launch_file", "written", "mistake"),
    [
        ("estimator.launch.py", "remappings=inputs", "remapping=inputs"),
        ("estimator.launch.py", "namespace=arg(", "node_namespace=arg("),  # Dashing's name
        ("estimator.launch.py", "parameters=[params_file, overrides]",
         "parameters=(params_file, overrides)"),  # the real Node takes a list only
        ("estimator.launch.py", 'output="screen"', 'outputs="screen"'),
        ("estimator.launch.py", "on_exit=stop_launch_on_exit(ESTIMATOR)", 'on_exit="shutdown"'),
        ("pendulum_sim.launch.py", 'default_value="1"', 'default="1"'),
        ("pendulum_sim.launch.py", 'description="1 or 4 links"', 'descripton="1 or 4 links"'),
        ("pneumatic_sim.launch.py", "OpaqueFunction(function=_nodes)", "OpaqueFunction(_nodes)"),
        ("pneumatic_sim.launch.py", "choices=sorted(SOURCES)", "choice=sorted(SOURCES)"),
    ],
)
def test_the_launch_stand_ins_reject_what_the_real_api_rejects(
    launch_file, written, mistake, tmp_path
):
    text = (LAUNCH / launch_file).read_text()
    assert written in text
    broken = tmp_path / launch_file
    broken.write_text(text.replace(written, mistake, 1))
    with pytest.raises(TypeError):
        evaluate_launch(broken, {})


def test_the_launch_stand_ins_follow_includes_conditions_and_choices(tmp_path):
    combined = tmp_path / "combined.launch.py"
    combined.write_text(
        """
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.conditions import IfCondition, UnlessCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def include(name, condition):
    path = PathJoinSubstitution([FindPackageShare("rkn_ros"), "launch", name])
    return IncludeLaunchDescription(
        PythonLaunchDescriptionSource(path), launch_arguments={"links": "4"}.items(),
        condition=condition,
    )


def generate_launch_description():
    pneumatic = LaunchConfiguration("pneumatic")
    return LaunchDescription([
        DeclareLaunchArgument("pneumatic", default_value="false", choices=["true", "false"]),
        include("pendulum_sim.launch.py", UnlessCondition(pneumatic)),
        include("pneumatic_sim.launch.py", IfCondition(pneumatic)),
    ])
"""
    )
    pendulum = evaluate_launch(combined, {})
    assert [n["executable"] for n in pendulum] == ["pendulum_sim", "rkn_estimator", "rkn_monitor"]
    assert parameter_files(pendulum[0]["parameters"]) == [REPO / "config" / "quad_link.yaml"]
    pneumatic = evaluate_launch(combined, {"pneumatic": "true"})
    assert [n["executable"] for n in pneumatic] == ["pneumatic_sim", "rkn_estimator", "rkn_monitor"]
    with pytest.raises(RuntimeError, match="one of"):
        evaluate_launch(combined, {"pneumatic": "yes"})


COMMON_ARGUMENTS = {"namespace", "use_sim_time", "model_path", "log_level", *OUTPUT_ARGUMENTS}


def test_launch_files_declare_their_arguments():
    expected = {
        "pendulum_sim.launch.py": {"links", "rviz"},
        "pneumatic_sim.launch.py": {"source", "pam_file"},
        "fusion.launch.py": set(),
        "estimator.launch.py": {
            "params_file", "image_topic", "joint_states_topic", "command_topic"
        },
    }
    assert sorted(p.name for p in LAUNCH.glob("*.launch.py")) == sorted(expected)
    assert set(OUTPUT_ARGUMENTS) == {
        "state_topic", "state_stddev_topic", "prediction_topic", "prediction_stddev_topic",
        "markers_topic",
    }
    for name, own in expected.items():
        assert declared_arguments(LAUNCH / name) == own | COMMON_ARGUMENTS, name
        tree = ast.parse((LAUNCH / name).read_text())
        imports = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert {"launch", "ament_index_python.packages", "rkn_ros.nodes.launch_actions"} <= imports


CONFIG_SYSTEMS = {
    "pendulum.yaml": "pendulum",
    "quad_link.yaml": "quad_link",
    "pneumatic.yaml": "pneumatic",
    "pam.yaml": "pam",
    "fusion.yaml": "fusion",
    "estimator.yaml": "pendulum",
}


@pytest.mark.parametrize("namespace", ["", "robot1"])
@pytest.mark.parametrize("config_name", sorted(CONFIG_SYSTEMS))
def test_every_parameter_in_the_config_files_is_declared_by_its_node(
    config_name, namespace, system_checkpoints
):
    # Under a namespace too (estimator.launch.py namespace:=robot1, or a PushRosNamespace
    # around an include): a section keyed by the bare node name would silently not apply.
    config = REPO / "config" / config_name
    sections = yaml.safe_load(config.read_text())
    assert sorted(p.name for p in (REPO / "config").glob("*.yaml")) == sorted(CONFIG_SYSTEMS)
    for key in sections:
        node_name = key.removeprefix("/**/")
        parameters = node_parameters(sections, node_name)
        with built_node(node_name, config, system_checkpoints[CONFIG_SYSTEMS[config_name]],
                         namespace) as node:
            assert node.get_fully_qualified_name() == f"/{namespace}/{node_name}".replace(
                "//", "/"
            )
            undeclared = set(parameters) - set(node._parameters)
            assert not undeclared, f"{config_name}/{node_name}: {sorted(undeclared)}"
            # The file reached the node (estimator.yaml holds only defaults, so the values
            # alone would not show it); rcl reads `[]` as "not set", which declare() drops.
            delivered = set(node._parameter_overrides)
            not_delivered = {k for k, v in parameters.items() if v != []} - delivered
            assert not not_delivered, f"{config_name}/{node_name}: {sorted(not_delivered)}"
            for name in set(parameters) - {"model_path"}:
                assert node.get_parameter(name).value == parameters[name], name


@pytest.mark.parametrize(
    ("system", "arguments", "expected"),
    [
        ("pendulum", {"links": "1", "use_sim_time": "true", "model_path": "/m"},
         {"pendulum_sim": {"publish_clock": True},
          "rkn_estimator": {"use_sim_time": True, "model_path": "/m"},
          "rkn_monitor": {"use_sim_time": True}}),
        ("pam", {"source": "pam", "pam_file": "/data/pam.npz", "use_sim_time": "true"},
         {"pam_replay": {"publish_clock": True, "file": "/data/pam.npz"},
          "rkn_estimator": {"use_sim_time": True}, "rkn_monitor": {"use_sim_time": True}}),
        # pam_file is for the recordings: the simulated joint has no such parameter
        ("pneumatic", {"source": "sim", "pam_file": "/data/pam.npz"},
         {"pneumatic_sim": {"publish_clock": False},
          "rkn_estimator": {"use_sim_time": False}, "rkn_monitor": {"use_sim_time": False}}),
    ],
)
def test_launch_arguments_reach_the_parameters_of_the_nodes_they_set(
    system, arguments, expected, system_checkpoints
):
    launch_file, _ = LAUNCH_CASES[system]
    nodes = evaluate_launch(LAUNCH / launch_file, arguments)
    overrides = {
        n["name"]: {k: v for p in n["parameters"] if isinstance(p, dict) for k, v in p.items()}
        for n in nodes
    }
    assert overrides == expected
    config = REPO / SYSTEMS[system].config
    for node_name, values in overrides.items():  # each one a parameter its node declares
        with built_node(node_name, config, system_checkpoints[system]) as node:
            assert set(values) <= set(node._parameters), (node_name, sorted(values))


# rclpy's own parameters, which every node has and none of ours declares
RCLPY_PARAMETERS = {"use_sim_time", "start_type_description_service"}


@pytest.mark.parametrize("config_name", ["pendulum.yaml", "pneumatic.yaml", "pam.yaml"])
def test_every_parameter_is_described_and_every_number_has_a_range(config_name, system_checkpoints):
    """`ros2 param describe` tells a user what each parameter does and what it accepts."""
    config = REPO / "config" / config_name
    for key in yaml.safe_load(config.read_text()):
        node_name = key.removeprefix("/**/")
        with built_node(node_name, config, system_checkpoints[CONFIG_SYSTEMS[config_name]]) as node:
            names = sorted(
                name for name in set(node._parameters) - RCLPY_PARAMETERS
                if not name.startswith("qos_overrides.")  # rclpy's, for QoS overrides
            )
            assert names, node_name
            for descriptor in node.describe_parameters(names):
                assert len(descriptor.description) > 10, (node_name, descriptor.name)
                value = node.get_parameter(descriptor.name).value
                if isinstance(value, int | float) and not isinstance(value, bool):
                    assert descriptor.integer_range or descriptor.floating_point_range, (
                        node_name, descriptor.name)
