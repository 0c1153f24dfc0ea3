"""Strict stand-ins for the launch API, to run the launch files where `launch` has no wheel.

Each class passes its arguments to `_signature`, a copy of the real constructor's parameters
(with those its base classes take through **kwargs), so a misspelled or unknown keyword is a
TypeError here as under `ros2 launch`; its body repeats the real type checks. Only what a
Python launch file (and rkn_ros.nodes.launch_actions) calls is modelled.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import ClassVar

REPO = Path(__file__).resolve().parents[1]

# Package name -> install prefix, for the stand-in ament index: rkn_ros (its share folder is the
# source tree) and what a test installs into it (a fake rviz2).
INSTALLED: dict[str, Path] = {"rkn_ros": REPO}


# The API of ros2/launch and ros2/launch_ros as in Jazzy and Kilted.
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
    def perform(self, context: LaunchContext) -> str:
        raise NotImplementedError


class _Condition(_Entity):
    _negate = False

    def evaluate(self, context: LaunchContext) -> bool:
        # launch's evaluate_condition_expression: only these spellings are accepted
        text = _perform(self.args[0], context).strip().lower()
        if text not in ("true", "1", "false", "0"):
            raise RuntimeError(f"condition expression {text!r} is not true/false/1/0")
        return (text in ("true", "1")) != self._negate


class LaunchContext:
    """The part of launch.LaunchContext that launch files and substitutions use."""

    def __init__(self, arguments: dict[str, str], is_shutdown: bool = False) -> None:
        self.launch_configurations = dict(arguments)
        self.is_shutdown = is_shutdown  # a read-only property on the real one


def _check_substitutions(value: object, what: str) -> None:
    """launch.utilities.normalize_to_list_of_substitutions: text, substitutions or a list."""
    parts = value if isinstance(value, (list, tuple)) else [value]
    if not all(isinstance(p, (str, _Substitution)) for p in parts):
        raise TypeError(f"{what}: expected text or substitutions, got {value!r}")


def _perform(value: object, context: LaunchContext) -> str:
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


class LogInfo(_Action):
    @staticmethod
    def _signature(*, msg, condition=None) -> None:
        _check_substitutions(msg, "LogInfo msg")
        _action(condition, "LogInfo")


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
    created: ClassVar[list[Node]] = []  # every Node constructed, in order: what would have started

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        Node.created.append(self)

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

    def perform(self, context: LaunchContext) -> str:
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

    def perform(self, context: LaunchContext) -> str:
        return self.kwargs["text"]


class PathJoinSubstitution(_Substitution):
    @staticmethod
    def _signature(substitutions) -> None:
        _check_substitutions(list(substitutions), "PathJoinSubstitution")

    def perform(self, context: LaunchContext) -> str:
        return os.path.join(*(_perform(part, context) for part in self.args[0]))


class FindPackageShare(_Substitution):
    @staticmethod
    def _signature(package) -> None:
        _check_substitutions(package, "FindPackageShare")

    def perform(self, context: LaunchContext) -> str:
        return get_package_share_directory(_perform(self.args[0], context))


class IfCondition(_Condition):
    @staticmethod
    def _signature(predicate_expression) -> None:
        _check_substitutions(predicate_expression, "IfCondition")


class UnlessCondition(IfCondition):
    _negate = True


class PackageNotFoundError(KeyError):
    """ament_index_python.packages.PackageNotFoundError."""


def get_package_prefix(package_name: str) -> str:
    """ament_index_python's, over :data:`INSTALLED`."""
    if package_name not in INSTALLED:
        raise PackageNotFoundError(f"package '{package_name}' not found, searching: []")
    return str(INSTALLED[package_name])


def get_package_share_directory(package_name: str, print_warning: bool = True) -> str:
    """ament_index_python's: rkn_ros's share folder is the source tree."""
    prefix = get_package_prefix(package_name)
    return prefix if package_name == "rkn_ros" else os.path.join(prefix, "share", package_name)


STAND_INS = {
    "launch": [LaunchDescription],
    "launch.actions": [
        DeclareLaunchArgument, IncludeLaunchDescription, LogInfo, OpaqueFunction, Shutdown
    ],
    "launch.conditions": [IfCondition, UnlessCondition],
    "launch.launch_description_sources": [PythonLaunchDescriptionSource],
    "launch.substitutions": [LaunchConfiguration, PathJoinSubstitution, TextSubstitution],
    "launch_ros": [],
    "launch_ros.actions": [Node],
    "launch_ros.substitutions": [FindPackageShare],
    "ament_index_python": [],
    "ament_index_python.packages": [
        PackageNotFoundError, get_package_prefix, get_package_share_directory
    ],
}


def _load(path: str | Path) -> LaunchDescription:
    """``generate_launch_description()`` of a launch file (the stand-ins must be installed)."""
    spec = importlib.util.spec_from_file_location(f"launch_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert isinstance(description, LaunchDescription), f"{path}: not a LaunchDescription"
    return description


def _visit(entity: _Entity, context: LaunchContext, nodes: list[dict]) -> None:
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


@contextlib.contextmanager
def stand_ins():
    """The stand-ins in place of the launch modules (and the ament index) while inside."""
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
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = value


def declared_arguments(path: Path) -> set[str]:
    """The launch arguments ``path`` declares."""
    with stand_ins():
        description = _load(path)
    return {e.args[0] for e in description.entities if isinstance(e, DeclareLaunchArgument)}


def evaluate_launch(path: Path, arguments: dict[str, str]) -> list[dict]:
    """Launch ``path`` with ``arguments`` on the stand-ins; the Node(...) keyword sets."""
    undeclared = set(arguments) - declared_arguments(path)
    assert not undeclared, f"{path.name} does not declare {sorted(undeclared)}"
    with stand_ins():
        nodes: list[dict] = []
        _visit(_load(path), LaunchContext(arguments), nodes)
    return nodes


def parameter_files(parameters: list) -> list[Path]:
    """The parameter files among a Node's ``parameters``."""
    return [Path(p) for p in parameters if isinstance(p, str)]


class ProcessExited:
    """launch.events.process.ProcessExited, as far as an on_exit handler reads it."""

    def __init__(self, returncode: int) -> None:
        self.returncode = returncode


def on_process_exit(node: dict, returncode: int, is_shutdown: bool = False) -> list:
    """What launch runs when the process of ``node`` (a Node's keywords) exits with
    ``returncode`` (launch.event_handlers.OnProcessExit): its ``on_exit`` entities."""
    on_exit = node.get("on_exit")
    if not callable(on_exit):
        return list(on_exit) if isinstance(on_exit, list) else [on_exit] if on_exit else []
    with stand_ins():
        entities = on_exit(ProcessExited(returncode), LaunchContext({}, is_shutdown))
    return list(entities or [])
