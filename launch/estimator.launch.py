"""The RKN estimator alone, for your own robot.

    ros2 launch rkn_ros estimator.launch.py model_path:=/path/to/checkpoint \
        image_topic:=/camera/image_raw joint_states_topic:=/joint_states \
        command_topic:=/forward_command_controller/commands \
        [params_file:=my_estimator.yaml] [namespace:=robot1] [use_sim_time:=false] \
        [log_level:=info]

Parameters come from params_file (default config/estimator.yaml: every parameter with its
default, and no model); model_path, when given, overrides the file's. The topic arguments
(defaults image, joint_states, command: relative names, so /image etc., or /robot1/image under
namespace:=robot1) are remapped onto the estimator's private inputs ~/image, ~/joint_states and
~/command; an empty one keeps the private name (/rkn_estimator/image).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

BOOLEAN = ["true", "false", "True", "False"]
TOPICS = (
    ("~/image", "image_topic"),
    ("~/joint_states", "joint_states_topic"),
    ("~/command", "command_topic"),
)


def _nodes(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    params_file = arg("params_file") or os.path.join(
        get_package_share_directory("rkn_ros"), "config", "estimator.yaml"
    )
    overrides = {"use_sim_time": arg("use_sim_time").lower() == "true"}
    if arg("model_path"):
        overrides["model_path"] = arg("model_path")
    return [
        Node(
            package="rkn_ros",
            executable="rkn_estimator",
            name="rkn_estimator",
            namespace=arg("namespace"),
            parameters=[params_file, overrides],
            # an empty topic argument keeps the private name (rcl rejects an empty remap)
            remappings=[(private, arg(topic)) for private, topic in TOPICS if arg(topic)],
            arguments=["--ros-args", "--log-level", arg("log_level")],
            output="screen",
        )
    ]


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument("model_path", default_value="", description="checkpoint folder"),
            DeclareLaunchArgument(
                "params_file",
                default_value="",
                description="parameter YAML (default: package)",
            ),
            DeclareLaunchArgument("image_topic", default_value="image", description="camera topic"),
            DeclareLaunchArgument(
                "joint_states_topic", default_value="joint_states", description="JointState topic"
            ),
            DeclareLaunchArgument(
                "command_topic", default_value="command", description="Float64MultiArray commands"
            ),
            DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                description="follow /clock",
                choices=BOOLEAN,
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="log level"),
            OpaqueFunction(function=_nodes),
        ]
    )
