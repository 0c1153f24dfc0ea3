"""Image pendulum simulator + RKN estimator + monitor.

    ros2 launch rkn_ros pendulum_sim.launch.py [links:=1|4] [namespace:=robot1]
        [use_sim_time:=false] [model_path:=PATH] [log_level:=info] [rviz:=false]
        [state_topic:=...] [state_stddev_topic:=...] [prediction_topic:=...]
        [prediction_stddev_topic:=...] [markers_topic:=...]

links:=1 uses config/pendulum.yaml, links:=4 config/quad_link.yaml: the nodes of
rkn_ros.nodes.systems, as `rkn-ros demo pendulum|quad_link` starts them. Watch
/rkn_estimator/state and /rkn_estimator/state_stddev in rqt_plot (under /robot1 with
namespace:=robot1); rviz:=true opens rviz2 with rviz/pendulum.rviz, the estimated chain +- 2
sigma beside the camera image, and refuses to start anything when rviz2 is not installed. Any
node exiting ends the launch, naming it.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from rkn_ros.nodes.launch_actions import (
    BOOLEAN,
    common_arguments,
    output_remappings,
    rviz2_executable,
    simulated_overrides,
    system_nodes,
)
from rkn_ros.nodes.systems import ESTIMATOR, SYSTEMS

LINKS = {"1": "pendulum", "4": "quad_link"}


def _nodes(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    share = get_package_share_directory("rkn_ros")
    with_rviz = arg("rviz").lower() == "true"
    if with_rviz:
        rviz2_executable()  # before any node starts: a missing rviz2 starts nothing
    system = SYSTEMS[LINKS[arg("links")]]  # one of LINKS (its choices)
    sim_time = arg("use_sim_time").lower() == "true"
    overrides = simulated_overrides(system, arg)
    nodes = system_nodes(system, arg, os.path.join(share, system.config), overrides)
    if with_rviz:
        # The view names its topics relative (rkn_estimator/markers), so it follows the
        # namespace; a remapped markers topic is remapped for the viewer too. Closing the
        # viewer leaves the system running.
        markers = output_remappings(arg).get("markers")
        nodes.append(
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                namespace=arg("namespace"),
                arguments=["-d", os.path.join(share, "rviz", "pendulum.rviz")],
                parameters=[{"use_sim_time": sim_time}],
                remappings=[(f"{ESTIMATOR}/markers", markers)] if markers else [],
                output="screen",
            )
        )
    return nodes


def generate_launch_description():
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "links", default_value="1", description="1 or 4 links", choices=sorted(LINKS)
            ),
            *common_arguments(),
            DeclareLaunchArgument(
                "rviz",
                default_value="false",
                description="open rviz2 on the estimate (needs rviz2, as in ros-<distro>-desktop)",
                choices=BOOLEAN,
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
