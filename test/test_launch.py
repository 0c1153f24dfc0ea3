"""Launch files, parameter files and `rkn-ros demo` agree, and the demos run end to end.

The launch package is not installed with the PyPI wheels, so the launch files are checked two
ways: their syntax tree (the arguments they declare), and by running their own
``generate_launch_description`` against small stand-ins for the launch API that record each
``Node(...)`` (executable, parameter files, remappings). The parameter files are then loaded by
the real nodes, in-process, through rcl's own ``--params-file`` parsing.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from test_nodes_support import BIN, REPO  # sets ROS_DOMAIN_ID first
from test_runtime_support import (
    make_joint_checkpoint,
    make_monotone_pendulum_checkpoint,
    make_pam_checkpoint,
    make_pendulum_checkpoint,
)

from rkn_ros.nodes.demo import ESTIMATOR, READY_TEXT, SYSTEMS
from rkn_ros.nodes.estimator_node import EstimatorNode
from rkn_ros.nodes.monitor_node import MonitorNode
from rkn_ros.nodes.pam_replay_node import PamReplayNode
from rkn_ros.nodes.params import node_parameters
from rkn_ros.nodes.pendulum_sim_node import IMAGE_QOS, PendulumSimNode
from rkn_ros.nodes.pneumatic_sim_node import PneumaticSimNode
from rkn_ros.sim.pendulum import PendulumParams
from rkn_ros.sim.pendulum_sim import PendulumSimulator
from rkn_ros.sim.render import RenderParams

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
# Strict stand-ins for the launch API of a recent distribution (ros2/launch and
# ros2/launch_ros as in Jazzy and Kilted). Each class passes its arguments to `_signature`, a
# copy of the real constructor's parameters (with those its base classes take through
# **kwargs), so a misspelled or unknown keyword is a TypeError here as under `ros2 launch`; its
# body repeats the real type checks. Only what a Python launch file calls is modelled.
class _Entity:
    def __init__(self, *args, **kwargs) -> None:
        try:
            self._signature(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{type(self).__name__}: {err}") from err
        self.args, self.kwargs = args, kwargs

    @staticmethod
    def _signature() -> None:
        raise NotImplementedError


class _Substitution(_Entity):
    def perform(self, context: _Context) -> str:
        raise NotImplementedError


class _Condition(_Entity):
    _negate = False

    def evaluate(self, context: _Context) -> bool:
        # launch's evaluate_condition_expression: only these spellings are accepted
        text = _perform(self.args[0], context).strip().lower()
        if text not in ("true", "1", "false", "0"):
            raise RuntimeError(f"condition expression {text!r} is not true/false/1/0")
        return (text in ("true", "1")) != self._negate


class _Context:
    """The part of launch.LaunchContext that launch files and substitutions use."""

    def __init__(self, arguments: dict[str, str]) -> None:
        self.launch_configurations = dict(arguments)


def _check_substitutions(value: object, what: str) -> None:
    """launch.utilities.normalize_to_list_of_substitutions: text, substitutions or a list."""
    parts = value if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(p, (str, _Substitution)) for p in parts):
        raise TypeError(f"{what}: expected text or substitutions, got {value!r}")


def _perform(value: object, context: _Context) -> str:
    parts = value if isinstance(value, (list, tuple)) else [value]
    return "".join(p if isinstance(p, str) else p.perform(context) for p in parts)


def _action(condition: object, what: str) -> None:
    """launch.Action(*, condition=None), where every action's **kwargs end."""
    if condition is not None and not isinstance(condition, _Condition):
        raise TypeError(f"{what}: 'condition' must be a Condition, got {condition!r}")


class LaunchDescription(_Entity):
    @staticmethod
    def _signature(initial_entities=None, *, deprecated_reason=None) -> None:
        for entity in initial_entities or []:
            if not isinstance(entity, (_Action, LaunchDescription)):
                raise TypeError(f"LaunchDescription: {entity!r} is not a launch entity")

    @property
    def entities(self) -> list:
        return list(self.args[0] if self.args else self.kwargs.get("initial_entities") or [])


class _Action(_Entity):
    pass


class DeclareLaunchArgument(_Action):
    @staticmethod
    def _signature(name, *, default_value=None, description=None, choices=None, condition=None):
        if not isinstance(name, str) or not isinstance(description, (str, type(None))):
            raise TypeError("DeclareLaunchArgument: 'name' and 'description' must be text")
        if default_value is not None:
            _check_substitutions(default_value, f"DeclareLaunchArgument {name} default_value")
        if choices is not None:
            if not choices or not all(isinstance(c, str) for c in choices):
                raise RuntimeError(f"DeclareLaunchArgument {name}: empty or non-text choices")
            if isinstance(default_value, str) and default_value not in choices:
                raise RuntimeError(f"DeclareLaunchArgument {name}: default not in choices")
        _action(condition, "DeclareLaunchArgument")


class OpaqueFunction(_Action):
    @staticmethod
    def _signature(*, function, args=None, kwargs=None, condition=None) -> None:
        if not callable(function):
            raise TypeError(f"OpaqueFunction expected a callable for 'function', got {function!r}")
        _action(condition, "OpaqueFunction")


class Shutdown(_Action):
    @staticmethod
    def _signature(*, reason="reason not given", condition=None) -> None:
        _check_substitutions(reason, "Shutdown reason")
        _action(condition, "Shutdown")


class IncludeLaunchDescription(_Action):
    @staticmethod
    def _signature(launch_description_source, *, launch_arguments=None, condition=None) -> None:
        if not isinstance(launch_description_source, PythonLaunchDescriptionSource):
            _check_substitutions(launch_description_source, "IncludeLaunchDescription source")
        for pair in launch_arguments or ():
            name, value = pair
            _check_substitutions(name, "IncludeLaunchDescription argument name")
            _check_substitutions(value, f"IncludeLaunchDescription argument {name}")
        _action(condition, "IncludeLaunchDescription")


class PythonLaunchDescriptionSource(_Entity):
    @staticmethod
    def _signature(launch_file_path) -> None:
        _check_substitutions(launch_file_path, "PythonLaunchDescriptionSource")


class Node(_Action):
    @staticmethod
    def _signature(
        *,
        executable,
        package=None,
        name=None,
        namespace=None,
        exec_name=None,
        parameters=None,
        remappings=None,
        ros_arguments=None,
        arguments=None,
        # launch.actions.ExecuteProcess
        prefix=None,
        cwd=None,
        env=None,
        additional_env=None,
        # launch.actions.ExecuteLocal
        shell=False,
        sigterm_timeout=None,
        sigkill_timeout=None,
        emulate_tty=False,
        output="log",
        output_format=None,
        cached_output=False,
        log_cmd=False,
        on_exit=None,
        respawn=False,
        respawn_delay=None,
        respawn_max_retries=-1,
        condition=None,
    ) -> None:
        for key, value in (("executable", executable), ("package", package), ("name", name),
                           ("namespace", namespace), ("exec_name", exec_name),
                           ("output", output)):
            if value is not None:
                _check_substitutions(value, f"Node {key}")
        if parameters is not None:
            if not isinstance(parameters, list):  # launch.utilities.ensure_argument_type
                raise TypeError(f"Node: 'parameters' must be a list, got {parameters!r}")
            for item in parameters:
                if not isinstance(item, (dict, Path)):
                    _check_substitutions(item, "Node parameter file")
        for rule in remappings or ():
            source, target = rule
            _check_substitutions(source, "Node remapping")
            _check_substitutions(target, "Node remapping")
        for key, values in (("arguments", arguments), ("ros_arguments", ros_arguments)):
            for value in values or ():
                _check_substitutions(value, f"Node {key}")
        # launch.event_handlers.OnProcessExit: a callable, an entity or a list of entities
        handlers = on_exit if isinstance(on_exit, list) else [on_exit]
        if on_exit is not None and not callable(on_exit) and not all(
            isinstance(h, (_Action, LaunchDescription)) for h in handlers
        ):
            raise TypeError(f"Node: 'on_exit' must be launch entities or a callable, got "
                            f"{on_exit!r}")
        _action(condition, "Node")


class LaunchConfiguration(_Substitution):
    @staticmethod
    def _signature(variable_name, *, default=None) -> None:
        if not isinstance(variable_name, str):
            raise TypeError(f"LaunchConfiguration: 'variable_name' must be text, got "
                            f"{variable_name!r}")

    def perform(self, context: _Context) -> str:
        name, default = self.args[0], self.kwargs.get("default")
        if name in context.launch_configurations:
            return context.launch_configurations[name]
        if default is None:  # launch.substitutions.SubstitutionFailure
            raise RuntimeError(f"launch configuration '{name}' does not exist")
        return _perform(default, context)


class TextSubstitution(_Substitution):
    @staticmethod
    def _signature(*, text) -> None:
        if not isinstance(text, str):
            raise TypeError(f"TextSubstitution expected Text object got {type(text)}")

    def perform(self, context: _Context) -> str:
        return self.kwargs["text"]


class PathJoinSubstitution(_Substitution):
    @staticmethod
    def _signature(substitutions) -> None:
        _check_substitutions(list(substitutions), "PathJoinSubstitution")

    def perform(self, context: _Context) -> str:
        return os.path.join(*(_perform(part, context) for part in self.args[0]))


class FindPackageShare(_Substitution):
    @staticmethod
    def _signature(package) -> None:
        _check_substitutions(package, "FindPackageShare")

    def perform(self, context: _Context) -> str:
        return get_package_share_directory(_perform(self.args[0], context))


class IfCondition(_Condition):
    @staticmethod
    def _signature(predicate_expression) -> None:
        _check_substitutions(predicate_expression, "IfCondition")


class UnlessCondition(IfCondition):
    _negate = True


def get_package_share_directory(package_name: str, print_warning: bool = True) -> str:
    """ament_index_python's, for this package only (any other is not installed)."""
    if package_name != "rkn_ros":
        raise LookupError(f"package '{package_name}' not found")  # PackageNotFoundError
    return str(REPO)


STAND_INS = {
    "launch": [LaunchDescription],
    "launch.actions": [DeclareLaunchArgument, IncludeLaunchDescription, OpaqueFunction, Shutdown],
    "launch.conditions": [IfCondition, UnlessCondition],
    "launch.launch_description_sources": [PythonLaunchDescriptionSource],
    "launch.substitutions": [LaunchConfiguration, PathJoinSubstitution, TextSubstitution],
    "launch_ros": [],
    "launch_ros.actions": [Node],
    "launch_ros.substitutions": [FindPackageShare],
    "ament_index_python.packages": [get_package_share_directory],
}


def _load(path: str | Path) -> LaunchDescription:
    """``generate_launch_description()`` of a launch file (the stand-ins must be installed)."""
    spec = importlib.util.spec_from_file_location(f"launch_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription), f"{path}: not a LaunchDescription"
    return description


def _visit(entity: _Entity, context: _Context, nodes: list[dict]) -> None:
    """What `ros2 launch` does with each entity, as far as the Node(...) calls go."""
    if isinstance(entity, LaunchDescription):
        for child in entity.entities:
            _visit(child, context, nodes)
        return
    condition = entity.kwargs.get("condition")
    if condition is not None and not condition.evaluate(context):
        return
    if isinstance(entity, DeclareLaunchArgument):
        name, default = entity.args[0], entity.kwargs.get("default_value")
        if name not in context.launch_configurations:
            if default is None:
                raise RuntimeError(f"required launch argument '{name}' was not provided")
            context.launch_configurations[name] = _perform(default, context)
        choices = entity.kwargs.get("choices")
        if choices is not None and context.launch_configurations[name] not in choices:
            raise RuntimeError(f"argument '{name}' must be one of {choices}")
    elif isinstance(entity, OpaqueFunction):
        kwargs = entity.kwargs
        for child in kwargs["function"](context, *(kwargs.get("args") or []),
                                        **(kwargs.get("kwargs") or {})) or []:
            _visit(child, context, nodes)
    elif isinstance(entity, IncludeLaunchDescription):
        source = entity.args[0]
        if isinstance(source, PythonLaunchDescriptionSource):
            source = source.args[0]
        for name, value in entity.kwargs.get("launch_arguments") or ():
            context.launch_configurations[_perform(name, context)] = _perform(value, context)
        _visit(_load(_perform(source, context)), context, nodes)
    else:
        nodes.append(entity.kwargs)


def evaluate_launch(path: Path, arguments: dict[str, str]) -> list[dict]:
    """Launch ``path`` with ``arguments`` on the stand-ins; the Node(...) keyword sets."""
    stubs = {name: types.ModuleType(name) for name in STAND_INS}
    for name, members in STAND_INS.items():
        for member in members:
            setattr(stubs[name], member.__name__, member)
        package, _, child = name.rpartition(".")
        if package in stubs:
            setattr(stubs[package], child, stubs[name])
    saved = {name: sys.modules.get(name) for name in stubs}
    sys.modules.update(stubs)
    try:
        description = _load(path)
        declared = {
            e.args[0] for e in description.entities if isinstance(e, DeclareLaunchArgument)
        }
        assert set(arguments) <= declared, f"{path.name} does not declare {set(arguments)}"
        nodes: list[dict] = []
        _visit(description, _Context(arguments), nodes)
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value
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
        # as the demo stops when one of its processes exits, so does the launch
        assert isinstance(node.get("on_exit"), Shutdown), node["executable"]


@pytest.mark.parametrize("links", ["1", "4"])
def test_rviz_opens_on_what_the_pendulum_system_publishes(links):
    """rviz:=true adds rviz2 with rviz/pendulum.rviz, whose displays name the topics, QoS and
    frame the launched nodes use (a wrong one shows an empty view, no error)."""
    nodes = evaluate_launch(
        LAUNCH / "pendulum_sim.launch.py", {"links": links, "rviz": "true", "use_sim_time": "true"}
    )
    *system, viewer = nodes
    assert [n["executable"] for n in system] == ["pendulum_sim", "rkn_estimator", "rkn_monitor"]
    assert (viewer["package"], viewer["executable"]) == ("rviz2", "rviz2")
    assert {"use_sim_time": True} in viewer["parameters"]
    flag, path = viewer["arguments"]
    assert flag == "-d" and Path(path) == REPO / "rviz" / "pendulum.rviz"
    view = yaml.safe_load(Path(path).read_text())["Visualization Manager"]
    displays = {d["Class"]: d for d in view["Displays"]}
    estimator = next(n for n in system if n["executable"] == "rkn_estimator")
    params = node_parameters(yaml.safe_load(_files(estimator["parameters"])[0].read_text()),
                             estimator["name"])
    assert params["publish_markers"] is True
    markers = displays["rviz_default_plugins/MarkerArray"]["Topic"]
    assert markers["Value"] == f"/{estimator['name']}/markers"
    assert markers["Reliability Policy"] == "Reliable"  # as the node publishes them
    image = displays["rviz_default_plugins/Image"]["Topic"]
    (camera,) = [target for source, target in estimator["remappings"] if source == "~/image"]
    assert image["Value"] == "/" + camera
    # a reliable subscription would not match the simulator's best-effort camera
    assert IMAGE_QOS.reliability == ReliabilityPolicy.BEST_EFFORT
    assert image["Reliability Policy"] == "Best Effort"
    assert view["Global Options"]["Fixed Frame"] == params["frame_id"]
    # without the argument, no viewer
    plain = evaluate_launch(LAUNCH / "pendulum_sim.launch.py", {"links": links})
    assert [n["executable"] for n in plain] == ["pendulum_sim", "rkn_estimator", "rkn_monitor"]


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
    assert _files(node["parameters"]) == [REPO / "config" / "estimator.yaml"]
    assert _files(node["parameters"])[0].is_file()
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
        ("estimator.launch.py", "remappings=[", "remapping=["),
        ("estimator.launch.py", "namespace=arg(", "node_namespace=arg("),  # Dashing's name
        ("estimator.launch.py", "parameters=[params_file, overrides]",
         "parameters=(params_file, overrides)"),  # the real Node takes a list only
        ("pendulum_sim.launch.py", 'default_value="1"', 'default="1"'),
        ("pendulum_sim.launch.py", 'description="log level"', 'descripton="log level"'),
        ("pneumatic_sim.launch.py", 'output="screen"', 'outputs="screen"'),
        ("pneumatic_sim.launch.py", "OpaqueFunction(function=_nodes)", "OpaqueFunction(_nodes)"),
        ("pneumatic_sim.launch.py", "Shutdown(reason=", "Shutdown(message="),
        ("pendulum_sim.launch.py", 'on_exit=_stop_all("rkn_monitor")', 'on_exit="shutdown"'),
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
    assert _files(pendulum[0]["parameters"]) == [REPO / "config" / "quad_link.yaml"]
    pneumatic = evaluate_launch(combined, {"pneumatic": "true"})
    assert [n["executable"] for n in pneumatic] == ["pneumatic_sim", "rkn_estimator", "rkn_monitor"]
    with pytest.raises(RuntimeError, match="one of"):
        evaluate_launch(combined, {"pneumatic": "yes"})


def test_launch_files_declare_their_arguments():
    expected = {
        "pendulum_sim.launch.py": {"links", "use_sim_time", "model_path", "log_level", "rviz"},
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


@pytest.mark.parametrize("namespace", ["", "robot1"])
@pytest.mark.parametrize("config_name", sorted(CONFIG_SYSTEMS))
def test_every_parameter_in_the_config_files_is_declared_by_its_node(
    config_name, namespace, checkpoints
):
    # Under a namespace too (estimator.launch.py namespace:=robot1, or a PushRosNamespace
    # around an include): a section keyed by the bare node name would silently not apply.
    config = REPO / "config" / config_name
    sections = yaml.safe_load(config.read_text())
    assert sorted(p.name for p in (REPO / "config").glob("*.yaml")) == sorted(CONFIG_SYSTEMS)
    for key in sections:
        node_name = key.removeprefix("/**/")
        parameters = node_parameters(sections, node_name)
        with _built_node(node_name, config, checkpoints[CONFIG_SYSTEMS[config_name]],
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


@contextlib.contextmanager
def _built_node(node_name: str, config: Path, model: Path, namespace: str = ""):
    """The real node class of ``node_name`` started in this process with ``--params-file
    config`` (and ``model`` as the estimator's ``model_path``), on its own context."""
    context = rclpy.Context()
    rclpy.init(args=["--ros-args", "--params-file", str(config)], context=context)
    try:
        overrides = [Parameter("model_path", value=str(model))] if node_name == ESTIMATOR else []
        node = NODE_CLASSES[node_name](
            context=context, parameter_overrides=overrides, namespace=namespace
        )
        try:
            yield node
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


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
    system, arguments, expected, checkpoints
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
        with _built_node(node_name, config, checkpoints[system]) as node:
            assert set(values) <= set(node._parameters), (node_name, sorted(values))


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
    # the lines the demo waits for before it starts the source are the ones the nodes log
    for name, text in READY_TEXT.items():
        assert text in (out / f"{system}_{name}.log").read_text(), name
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


def test_demo_quad_link_runs_the_four_link_pendulum(checkpoints, tmp_path):
    summary = _demo("quad_link", checkpoints["quad_link"], tmp_path)
    assert summary["matched"] > 20
    assert list(summary["rmse_per_joint"]) == ["joint_1", "joint_2", "joint_3", "joint_4"]


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


# rclpy's own parameters, which every node has and none of ours declares
RCLPY_PARAMETERS = {"use_sim_time", "start_type_description_service"}


@pytest.mark.parametrize("config_name", ["pendulum.yaml", "pneumatic.yaml", "pam.yaml"])
def test_every_parameter_is_described_and_every_number_has_a_range(config_name, checkpoints):
    """`ros2 param describe` tells a user what each parameter does and what it accepts."""
    config = REPO / "config" / config_name
    for key in yaml.safe_load(config.read_text()):
        node_name = key.removeprefix("/**/")
        with _built_node(node_name, config, checkpoints[CONFIG_SYSTEMS[config_name]]) as node:
            names = sorted(set(node._parameters) - RCLPY_PARAMETERS)
            assert names, node_name
            for descriptor in node.describe_parameters(names):
                assert len(descriptor.description) > 10, (node_name, descriptor.name)
                value = node.get_parameter(descriptor.name).value
                if isinstance(value, int | float) and not isinstance(value, bool):
                    assert descriptor.integer_range or descriptor.floating_point_range, (
                        node_name, descriptor.name)
