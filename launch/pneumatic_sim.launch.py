"""Pneumatic muscle joint + action-conditioned RKN estimator + monitor.

    ros2 launch rkn_ros pneumatic_sim.launch.py [source:=sim|pam] [pam_file:=PATH]
        [use_sim_time:=false] [model_path:=PATH] [log_level:=info]

source:=sim runs the simulated joint (config/pneumatic.yaml, `rkn-ros demo pneumatic`);
source:=pam replays the real pneumatic-muscle recordings (config/pam.yaml, `rkn-ros demo pam`).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

BOOLEAN = ["true", "false", "True", "False"]

SOURCES = {"sim": ("pneumatic_sim", "pneumatic.yaml"), "pam": ("pam_replay", "pam.yaml")}


def _stop_all(executable):
    # One node exiting (a model that cannot serve, a missing recording) ends the launch, as
    # `rkn-ros demo` does: the others would wait for input that never comes.
    return Shutdown(reason=f"{executable} exited")


def _nodes(context):
    source = LaunchConfiguration("source").perform(context)  # one of SOURCES (its choices)
    executable, config_name = SOURCES[source]
    config = os.path.join(get_package_share_directory("rkn_ros"), "config", config_name)
    sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    log_args = ["--ros-args", "--log-level", LaunchConfiguration("log_level").perform(context)]
    source_overrides = {"publish_clock": sim_time}
    pam_file = LaunchConfiguration("pam_file").perform(context)
    if source == "pam" and pam_file:
        source_overrides["file"] = pam_file
    estimator_overrides = {"use_sim_time": sim_time}
    model_path = LaunchConfiguration("model_path").perform(context)
    if model_path:
        estimator_overrides["model_path"] = model_path
    return [
        Node(
            package="rkn_ros",
            executable=executable,
            name=executable,
            parameters=[config, source_overrides],
            arguments=log_args,
            output="screen",
            on_exit=_stop_all(executable),
        ),
        Node(
            package="rkn_ros",
            executable="rkn_estimator",
            name="rkn_estimator",
            parameters=[config, estimator_overrides],
            remappings=[
                ("~/joint_states", f"{executable}/joint_states"),
                ("~/command", f"{executable}/command"),
            ],
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
                ("~/truth", f"{executable}/joint_states_truth"),
            ],
            arguments=log_args,
            output="screen",
            on_exit=_stop_all("rkn_monitor"),
        ),
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "source", default_value="sim", description="sim or pam", choices=sorted(SOURCES)
            ),
            DeclareLaunchArgument(
                "pam_file", default_value="", description="PAM .npz (default: the YAML's)"
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                description="follow /clock",
                choices=BOOLEAN,
            ),
            DeclareLaunchArgument(
                "model_path", default_value="", description="checkpoint (default: the YAML's)"
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="log level"),
            OpaqueFunction(function=_nodes),
        ]
    )
