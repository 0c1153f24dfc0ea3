"""Launch actions built from :mod:`rkn_ros.nodes.systems`, for ``launch/*.launch.py``.

``launch``, ``launch_ros`` and ``ament_index_python`` come with a ROS 2 distribution (``launch``
has no PyPI wheel), so they are imported when a launch file calls in, not when this module is
imported: every module of the package imports on a pip-only machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from rkn_ros.nodes.systems import ESTIMATOR, ESTIMATOR_OUTPUTS, MONITOR, DemoSystem

BOOLEAN = ["true", "false", "True", "False"]
OUTPUT_ARGUMENTS = {f"{output}_topic": output for output in ESTIMATOR_OUTPUTS}
RVIZ_MISSING = (
    "rviz:=true, but rviz2 is not installed (it comes with ros-$ROS_DISTRO-desktop, or "
    "sudo apt install ros-$ROS_DISTRO-rviz2); nothing was started. Launch without rviz:=true "
    "and open the view elsewhere: rviz2 -d share/rkn_ros/rviz/pendulum.rviz"
)

Arguments = Callable[[str], str]  # launch argument name -> its value in this launch


def common_arguments() -> list:
    """namespace, the output topics, use_sim_time, model_path and log_level."""
    from launch.actions import DeclareLaunchArgument

    outputs = [
        DeclareLaunchArgument(
            argument,
            default_value="",
            description=f"remap the estimator's ~/{output} (default: keep "
            f"/<namespace>/rkn_estimator/{output})",
        )
        for argument, output in OUTPUT_ARGUMENTS.items()
    ]
    return [
        DeclareLaunchArgument(
            "namespace", default_value="", description="namespace of every node (robot1)"
        ),
        *outputs,
        DeclareLaunchArgument(
            "use_sim_time",
            default_value="false",
            description="follow /clock (the demo sources publish it)",
            choices=BOOLEAN,
        ),
        DeclareLaunchArgument(
            "model_path", default_value="", description="checkpoint (default: the YAML's)"
        ),
        DeclareLaunchArgument("log_level", default_value="info", description="log level"),
    ]


def output_remappings(arg: Arguments) -> dict[str, str]:
    """Estimator output -> topic, for each output topic argument given."""
    return {output: arg(argument) for argument, output in OUTPUT_ARGUMENTS.items() if arg(argument)}


def stop_launch_on_exit(node_name: str) -> Callable:
    """``on_exit`` for a node: its exit ends the launch, saying which node and its exit code
    (the node's own error is on the screen above). A node exiting because the launch is
    already stopping (Ctrl-C) says nothing."""

    def on_exit(event, context) -> list | None:
        from launch.actions import LogInfo, Shutdown

        if context.is_shutdown:
            return None
        reason = (
            f"{node_name} exited with code {event.returncode}: stopping the launch, as the "
            "other nodes would wait for it (its error is above)"
        )
        return [LogInfo(msg=reason), Shutdown(reason=reason)]

    return on_exit


def system_nodes(
    system: DemoSystem,
    arg: Arguments,
    config: str,
    overrides: Mapping[str, dict],
) -> list:
    """The ``Node`` actions of ``system``: the one description the demo uses, with the
    launch's namespace, output remappings, parameter overrides per node name and log level."""
    from launch_ros.actions import Node

    log_args = ["--ros-args", "--log-level", arg("log_level")]
    return [
        Node(
            package="rkn_ros",
            executable=spec.executable,
            name=spec.name,
            namespace=arg("namespace"),
            parameters=[config, dict(overrides.get(spec.name, {}))],
            remappings=list(spec.remappings),
            arguments=log_args,
            output="screen",
            on_exit=stop_launch_on_exit(spec.name),
        )
        for spec in system.nodes(output_remappings(arg))
    ]


def simulated_overrides(system: DemoSystem, arg: Arguments) -> dict[str, dict]:
    """The per-node overrides of a simulated system from the common arguments: sim time for
    all three (the simulator then publishes /clock) and the estimator's ``model_path``."""
    sim_time = arg("use_sim_time").lower() == "true"
    estimator = {"use_sim_time": sim_time}
    if arg("model_path"):
        estimator["model_path"] = arg("model_path")
    return {
        system.source: {"publish_clock": sim_time},
        ESTIMATOR: estimator,
        MONITOR: {"use_sim_time": sim_time},
    }


def rviz2_executable() -> str:
    """rviz2 where ``launch_ros`` looks for it (``<prefix>/lib/rviz2/rviz2``); RuntimeError
    with what to do when it is not installed."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        executable = os.path.join(get_package_prefix("rviz2"), "lib", "rviz2", "rviz2")
    except PackageNotFoundError:
        raise RuntimeError(RVIZ_MISSING) from None
    if not os.access(executable, os.X_OK):
        raise RuntimeError(RVIZ_MISSING)
    return executable
