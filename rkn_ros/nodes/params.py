"""Parameter declaration helpers: every parameter gets a description, and numbers a range."""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import rclpy
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.signals import SignalHandlerOptions, install_signal_handlers

from rkn_ros.nodes.estimator_params import ParamSpec

_ARRAY_TYPES = {"string[]": str, "double[]": int | float, "int[]": int}


def declare(
    node: Node,
    name: str,
    default: Any,
    description: str,
    low: float | None = None,
    high: float | None = None,
    array: str | None = None,
    read_only: bool = True,
) -> Any:
    """Declare ``name`` with a described default (a range when ``low``/``high`` are given) and
    return its value; ``array`` ("string[]", "double[]", "int[]") types an empty-list default."""
    descriptor = ParameterDescriptor(
        description=description,
        read_only=read_only,
        # what `ros2 param describe` shows beside rclpy's refusal of a set
        additional_constraints="read-only: restart the node to change it" if read_only else "",
    )
    if array is not None:
        # rclpy types an empty-list default as a byte array; typing is checked below instead
        descriptor.dynamic_typing = True
    if low is not None and high is not None:
        if isinstance(default, bool) or not isinstance(default, int | float):
            raise TypeError(f"parameter {name}: a range needs a numeric default")
        if isinstance(default, int):
            descriptor.integer_range = [
                IntegerRange(from_value=int(low), to_value=int(high), step=1)
            ]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(low), to_value=float(high), step=0.0)
            ]
    overrides = getattr(node, "_parameter_overrides", {})
    override = overrides.get(name)
    if override is not None and override.type_ == Parameter.Type.NOT_SET:
        # rcl's YAML parser reads `[]` as "not set"; it means the (empty) default
        del overrides[name]
    value = node.declare_parameter(name, default, descriptor).value
    if array is not None:
        element = _ARRAY_TYPES[array]
        if not isinstance(value, list | tuple) or not all(
            isinstance(v, element) and not isinstance(v, bool) for v in value
        ):
            raise ValueError(f"parameter {name}: expected a {array} list, got {value!r}")
        value = [float(v) for v in value] if array == "double[]" else list(value)
    return value


def declare_table(node: Node, table: Iterable[ParamSpec]) -> dict[str, Any]:
    """Declare every parameter of ``table``; their values by name."""
    return {
        spec.name: declare(node, spec.name, spec.default, spec.description, spec.low, spec.high,
                           spec.array, read_only=not spec.runtime)
        for spec in table
    }


def node_parameters(document: dict, node_name: str) -> dict:
    """The ``ros__parameters`` section of ``node_name`` in a parameter YAML document.

    Sections may be keyed ``name``, ``/name`` or ``/**/name`` (the last matches the node in any
    namespace, which is how the files in ``config/`` are written).
    """
    for key in (f"/**/{node_name}", f"/{node_name}", node_name):
        if key in document:
            return document[key]["ros__parameters"]
    raise KeyError(f"no section for node '{node_name}' (keys: {sorted(document)})")


def resolve_share_path(path: str) -> Path:
    """A path as given, else relative to the installed package share, else to the source tree.

    Lets YAML files name ``models/pendulum`` both after ``colcon build`` (share/rkn_ros/models)
    and in a pip-only checkout (the repository root).
    """
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    roots = []
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )

        # pip-only install: no ament index entry, fall back to the source tree
        with contextlib.suppress(PackageNotFoundError):
            roots.append(Path(get_package_share_directory("rkn_ros")))
    except ImportError:
        pass  # no ament_index_python at all: same fallback
    roots.append(Path(__file__).resolve().parents[2])
    for root in roots:
        if (root / candidate).exists():
            return root / candidate
    return candidate


class Throttle:
    """Per-key warning throttle: logs at most once per ``period`` seconds per key, with the
    number of occurrences swallowed since the last line."""

    def __init__(self, node: Node, period: float) -> None:
        self._node = node
        self._period = period
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, key: str, message: str | Callable[[], str]) -> None:
        """Warn about ``key`` unless one was logged less than ``period`` ago; a callable
        ``message`` is only called when the line is logged (for messages costly to make)."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._period:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        skipped = self._suppressed.pop(key, 0)
        suffix = f" ({skipped} more since the last warning)" if skipped else ""
        self._last[key] = now
        self._node.get_logger().warning((message() if callable(message) else message) + suffix)


def _shutdown_follows(timeout: float) -> bool:
    """Whether rclpy's context is (or within ``timeout`` seconds becomes) shut down."""
    deadline = time.monotonic() + timeout
    while rclpy.ok():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def fail_startup(node_name: str, message: str) -> int:
    """One clear line on stderr for a node that cannot start; returns the exit code."""
    print(f"[FATAL] {node_name}: {message}", file=sys.stderr, flush=True)
    return 1


def run_node(
    name: str,
    factory: Callable[[], Node],
    args: list[str] | None = None,
    startup_errors: tuple[type[BaseException], ...] = (ValueError,),
    on_exit: Callable[[Node], None] | None = None,
) -> int:
    """Init rclpy, build the node, spin until Ctrl-C/SIGTERM; the exit code for ``main``.

    A construction failure in ``startup_errors`` (or a bad parameter) ends the process with one
    line and code 1. ``on_exit(node)`` runs before the node is destroyed (final reports).
    """
    # rclpy's signal handlers only once the node spins: until then an interrupt either ends
    # the process at once (the console scripts' handlers, rkn_ros.nodes.entry) or raises here
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = factory()
    except (*startup_errors, ParameterException, ValueError) as err:
        rclpy.try_shutdown()
        return fail_startup(name, str(err))
    except KeyboardInterrupt:
        rclpy.try_shutdown()
        return 0
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    install_signal_handlers(SignalHandlerOptions.ALL)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C, SIGTERM or a launch shutdown: leave quietly
    except RuntimeError:
        # Ctrl-C or SIGTERM: rclpy's signal handler shuts the context down on its own thread.
        # A publish or a message take racing with it fails with a RuntimeError ("Unable to
        # convert call argument '0' to Python object", seen at about 1 stop in 30) while
        # rclpy.ok() may still say True for a moment. Only an error without a shutdown is ours.
        if not _shutdown_follows(timeout=0.5):
            raise
    finally:
        if on_exit is not None:
            on_exit(node)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
