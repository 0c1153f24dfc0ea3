"""Pneumatic muscle joint + action-conditioned RKN estimator + monitor.

    ros2 launch rkn_ros pneumatic_sim.launch.py [source:=sim|pam] [pam_file:=PATH]
        [namespace:=robot1] [use_sim_time:=false] [model_path:=PATH] [log_level:=info]
        [state_topic:=...] [state_stddev_topic:=...] [prediction_topic:=...]
        [prediction_stddev_topic:=...] [markers_topic:=...]

source:=sim runs the simulated joint (config/pneumatic.yaml, `rkn-ros demo pneumatic`);
source:=pam replays the real pneumatic-muscle recordings (config/pam.yaml, `rkn-ros demo pam`).
The nodes are those of rkn_ros.nodes.systems; any node exiting ends the launch, naming it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration

from rkn_ros.nodes.launch_actions import common_arguments, system_nodes
from rkn_ros.nodes.systems import ESTIMATOR, MONITOR, SYSTEMS

SOURCES = {"sim": "pneumatic", "pam": "pam"}


def _nodes(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    system = SYSTEMS[SOURCES[arg("source")]]  # one of SOURCES (its choices)
    sim_time = arg("use_sim_time").lower() == "true"
    source = {"publish_clock": sim_time}
    if arg("source") == "pam" and arg("pam_file"):
        source["file"] = arg("pam_file")
    estimator = {"use_sim_time": sim_time}
    if arg("model_path"):
        estimator["model_path"] = arg("model_path")
    overrides = {
        system.source: source,
        ESTIMATOR: estimator,
        MONITOR: {"use_sim_time": sim_time},
    }
    config = os.path.join(get_package_share_directory("rkn_ros"), system.config)
    return system_nodes(system, arg, config, overrides)


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "source", default_value="sim", description="sim or pam", choices=sorted(SOURCES)
            ),
            DeclareLaunchArgument(
                "pam_file", default_value="", description="PAM .npz (default: the YAML's)"
            ),
            *common_arguments(),
            OpaqueFunction(function=_nodes),
        ]
    )
