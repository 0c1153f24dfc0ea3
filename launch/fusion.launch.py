"""Pendulum seen by four sensors + fused RKN estimator + monitor.

    ros2 launch rkn_ros fusion.launch.py [namespace:=robot1] [use_sim_time:=false]
        [model_path:=PATH] [log_level:=info] [state_topic:=...] [state_stddev_topic:=...]
        [prediction_topic:=...] [prediction_stddev_topic:=...] [markers_topic:=...]

config/fusion.yaml: the simulated pendulum's front camera, side camera (dropping frames), IMU
and encoder, each remapped onto the estimator's input of that name (models/fusion fuses them);
the nodes of rkn_ros.nodes.systems, as `rkn-ros demo fusion` starts them. Any node exiting ends
the launch, naming it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import OpaqueFunction
from launch.substitutions import LaunchConfiguration

from rkn_ros.nodes.launch_actions import common_arguments, simulated_overrides, system_nodes
from rkn_ros.nodes.systems import SYSTEMS


def _nodes(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    system = SYSTEMS["fusion"]
    config = os.path.join(get_package_share_directory("rkn_ros"), system.config)
    return system_nodes(system, arg, config, simulated_overrides(system, arg))


def generate_launch_description():
    return LaunchDescription([*common_arguments(), OpaqueFunction(function=_nodes)])
