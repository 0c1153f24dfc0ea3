"""The RKN estimator alone, for your own robot.

    ros2 launch rkn_ros estimator.launch.py model_path:=/path/to/checkpoint \
        image_topic:=/camera/image_raw joint_states_topic:=/joint_states \
        command_topic:=/forward_command_controller/commands \
        [params_file:=my_estimator.yaml] [namespace:=robot1] [use_sim_time:=false] \
        [log_level:=info] [state_topic:=...] [state_stddev_topic:=...] \
        [prediction_topic:=...] [prediction_stddev_topic:=...] [markers_topic:=...]

Parameters come from params_file (default config/estimator.yaml: every parameter with its
default, and no model); model_path, when given, overrides the file's. The input topic arguments
(defaults image, joint_states, command: relative names, so /image etc., or /robot1/image under
namespace:=robot1) are remapped onto the estimator's private inputs ~/image, ~/joint_states and
~/command, the output ones onto ~/state etc.; an empty one keeps the private name
(/rkn_estimator/image, /rkn_estimator/state). Never remap ~/state_stddev into a controller: it
has the type of a state (docs/ros_integration.md).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from rkn_ros.nodes.launch_actions import common_arguments, output_remappings, stop_launch_on_exit
from rkn_ros.nodes.systems import ESTIMATOR

INPUTS = (
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
    # an empty topic argument keeps the private name (rcl rejects an empty remap)
    inputs = [(private, arg(topic)) for private, topic in INPUTS if arg(topic)]
    outputs = [(f"~/{output}", topic) for output, topic in output_remappings(arg).items()]
    return [
        Node(
            package="rkn_ros",
            executable=ESTIMATOR,
            name=ESTIMATOR,
            namespace=arg("namespace"),
            parameters=[params_file, overrides],
            remappings=inputs + outputs,
            arguments=["--ros-args", "--log-level", arg("log_level")],
            output="screen",
            on_exit=stop_launch_on_exit(ESTIMATOR),
        )
    ]


def generate_launch_description():
    return LaunchDescription(
        [
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
            *common_arguments(),
            OpaqueFunction(function=_nodes),
        ]
    )
