"""Image pendulum simulator + RKN estimator + monitor.

    ros2 launch rkn_ros pendulum_sim.launch.py [links:=1|4] [use_sim_time:=false]
        [model_path:=PATH] [log_level:=info] [rviz:=false]

links:=1 uses config/pendulum.yaml, links:=4 config/quad_link.yaml (the same files, executables
and remappings as `rkn-ros demo pendulum|quad_link`). Watch /rkn_estimator/state and
/rkn_estimator/state_stddev in rqt_plot; rviz:=true opens rviz2 with rviz/pendulum.rviz: the
estimated chain +- 2 sigma (/rkn_estimator/markers) beside the camera image.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

BOOLEAN = ["true", "false", "True", "False"]

CONFIGS = {"1": "pendulum.yaml", "4": "quad_link.yaml"}


def _stop_all(executable):
    # One node exiting (a model that cannot serve, a missing recording) ends the launch, as
    # `rkn-ros demo` does: the others would wait for input that never comes.
    return Shutdown(reason=f"{executable} exited")


def _nodes(context):
    links = LaunchConfiguration("links").perform(context)  # one of CONFIGS (its choices)
    config = os.path.join(get_package_share_directory("rkn_ros"), "config", CONFIGS[links])
    sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    log_args = ["--ros-args", "--log-level", LaunchConfiguration("log_level").perform(context)]
    estimator_overrides = {"use_sim_time": sim_time}
    model_path = LaunchConfiguration("model_path").perform(context)
    if model_path:
        estimator_overrides["model_path"] = model_path
    nodes = [
        Node(
            package="rkn_ros",
            executable="pendulum_sim",
            name="pendulum_sim",
            parameters=[config, {"publish_clock": sim_time}],
            arguments=log_args,
            output="screen",
            on_exit=_stop_all("pendulum_sim"),
        ),
        Node(
            package="rkn_ros",
            executable="rkn_estimator",
            name="rkn_estimator",
            parameters=[config, estimator_overrides],
            remappings=[("~/image", "pendulum_sim/image")],
            arguments=log_args,
            output="screen",
            on_exit=_stop_all("rkn_estimator"),
        ),
        Node(
            package="rkn_ros",
            executable="rkn_monitor",
            name="rkn_monitor",
            parameters=[config, {"use_sim_time": sim_time}],
            remappings=[
                ("~/estimate", "rkn_estimator/state"),
                ("~/estimate_stddev", "rkn_estimator/state_stddev"),
                ("~/truth", "pendulum_sim/joint_states_truth"),
            ],
            arguments=log_args,
            output="screen",
            on_exit=_stop_all("rkn_monitor"),
        ),
    ]
    if LaunchConfiguration("rviz").perform(context).lower() == "true":
        view = os.path.join(get_package_share_directory("rkn_ros"), "rviz", "pendulum.rviz")
        # closing the viewer leaves the system running
        nodes.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", view],
                parameters=[{"use_sim_time": sim_time}],
                output="screen",
            )
        )
    return nodes


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "links", default_value="1", description="1 or 4 links", choices=sorted(CONFIGS)
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                description="simulator publishes /clock; estimator and monitor follow it",
                choices=BOOLEAN,
            ),
            DeclareLaunchArgument(
                "model_path", default_value="", description="checkpoint (default: the YAML's)"
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="log level"),
            DeclareLaunchArgument(
                "rviz",
                default_value="false",
                description="open rviz2 on the estimate (needs rviz2, as in ros-<distro>-desktop)",
                choices=BOOLEAN,
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
