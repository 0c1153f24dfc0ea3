"""The launched systems under a namespace and remapped outputs, a missing rviz2, a node that
dies at start-up, and readiness read from the ROS graph (rkn_ros.nodes.readiness)."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from launch_nodes_support import built_node
from launch_stand_ins import (
    INSTALLED,
    LogInfo,
    Node,
    Shutdown,
    evaluate_launch,
    on_process_exit,
    parameter_files,
)
from rclpy.qos import ReliabilityPolicy
from sensor_msgs.msg import JointState
from test_nodes_support import BIN, REPO  # sets ROS_DOMAIN_ID first

from rkn_ros.nodes.launch_actions import RVIZ_MISSING
from rkn_ros.nodes.params import node_parameters
from rkn_ros.nodes.pendulum_sim_node import IMAGE_QOS
from rkn_ros.nodes.readiness import GraphWatcher
from rkn_ros.nodes.systems import ESTIMATOR, MONITOR, SYSTEMS, NodeSpec, resolve

LAUNCH = REPO / "launch"
SYSTEM_LAUNCHES = [
    ("pendulum_sim.launch.py", {"links": "1"}),
    ("pendulum_sim.launch.py", {"links": "4"}),
    ("pneumatic_sim.launch.py", {"source": "sim"}),
    ("pneumatic_sim.launch.py", {"source": "pam"}),
    ("fusion.launch.py", {}),
    ("estimator.launch.py", {}),
]


@pytest.fixture
def rviz2_installed(tmp_path, monkeypatch) -> Path:
    """An executable rviz2 where launch_ros looks for it, in the stand-in ament index."""
    executable = tmp_path / "lib" / "rviz2" / "rviz2"
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    monkeypatch.setitem(INSTALLED, "rviz2", tmp_path)
    return executable


def test_resolve_expands_private_and_relative_names_after_the_remappings():
    spec = NodeSpec("rkn_estimator", "rkn_estimator", (("~/image", "pendulum_sim/image"),))
    assert resolve(spec, "~/image") == "/pendulum_sim/image"
    assert resolve(spec, "~/image", "robot1") == "/robot1/pendulum_sim/image"
    assert resolve(spec, "~/state", "/robot1/") == "/robot1/rkn_estimator/state"
    assert resolve(spec, "/diagnostics", "robot1") == "/diagnostics"


@pytest.mark.parametrize(("launch_file", "arguments"), SYSTEM_LAUNCHES)
def test_every_node_takes_the_namespace_and_stays_wired_inside_it(launch_file, arguments):
    nodes = evaluate_launch(LAUNCH / launch_file, {**arguments, "namespace": "robot1"})
    assert nodes and all(n["namespace"] == "robot1" for n in nodes)
    # a relative target resolves inside the namespace; an absolute one would leave it
    for node in nodes:
        assert not [t for _, t in node["remappings"] if t.startswith("/")], node["name"]


@pytest.mark.usefixtures("rviz2_installed")
def test_the_pendulum_system_is_wired_under_a_namespace_in_the_real_nodes(system_checkpoints):
    """The launch's remappings, given to the real nodes under namespace:=robot1 (and the
    estimate remapped to `estimate`): the topics each node publishes are those the next one
    subscribes, and the rviz view's relative topics resolve to them."""
    nodes = evaluate_launch(
        LAUNCH / "pendulum_sim.launch.py",
        {"namespace": "robot1", "rviz": "true", "state_topic": "estimate"},
    )
    *system, viewer = nodes
    topics = {}
    for node in system:
        config = REPO / SYSTEMS["pendulum"].config
        with built_node(node["name"], config, system_checkpoints["pendulum"],
                        node["namespace"], node["remappings"]) as real:
            topics[node["name"]] = (
                {p.topic_name for p in real.publishers},
                {s.topic_name for s in real.subscriptions},
            )
    (sim_out, _), (est_out, est_in), (_, mon_in) = (topics[n["name"]] for n in system)
    assert est_in == {"/robot1/pendulum_sim/image"} and est_in <= sim_out
    assert {"/robot1/estimate", "/robot1/rkn_estimator/state_stddev"} <= est_out
    assert {"/robot1/estimate", "/robot1/rkn_estimator/state_stddev",
            "/robot1/pendulum_sim/joint_states_truth"} <= mon_in
    assert "/robot1/pendulum_sim/joint_states_truth" in sim_out
    assert viewer["namespace"] == "robot1"
    view = yaml.safe_load((REPO / "rviz" / "pendulum.rviz").read_text())
    shown = {d["Topic"]["Value"] for d in view["Visualization Manager"]["Displays"]
             if "Topic" in d}
    rviz = NodeSpec("rviz2", "rviz2", tuple(viewer["remappings"]))
    assert {resolve(rviz, name, "robot1") for name in shown} == {
        "/robot1/rkn_estimator/markers", "/robot1/pendulum_sim/image"
    }
    assert "/robot1/rkn_estimator/markers" in est_out


@pytest.mark.usefixtures("rviz2_installed")
def test_output_arguments_remap_the_estimator_and_whoever_listens_to_it():
    arguments = {"state_topic": "/robot/estimate", "state_stddev_topic": "estimate_stddev",
                 "prediction_topic": "ahead", "markers_topic": "chain", "rviz": "true"}
    _, estimator, monitor, viewer = evaluate_launch(LAUNCH / "pendulum_sim.launch.py",
                                                      arguments)
    assert {("~/state", "/robot/estimate"), ("~/state_stddev", "estimate_stddev"),
            ("~/prediction", "ahead"), ("~/markers", "chain")} <= set(estimator["remappings"])
    assert ("~/estimate", "/robot/estimate") in monitor["remappings"]
    assert ("~/estimate_stddev", "estimate_stddev") in monitor["remappings"]
    assert viewer["remappings"] == [(f"{ESTIMATOR}/markers", "chain")]
    (node,) = evaluate_launch(LAUNCH / "estimator.launch.py", {"state_topic": "/robot/estimate"})
    assert ("~/state", "/robot/estimate") in node["remappings"]


@pytest.mark.parametrize("links", ["1", "4"])
@pytest.mark.usefixtures("rviz2_installed")
def test_rviz_opens_on_what_the_pendulum_system_publishes(links):
    """rviz:=true adds rviz2 with rviz/pendulum.rviz, whose displays name the topics, QoS and
    frame the launched nodes use (a wrong one shows an empty view, no error)."""
    nodes = evaluate_launch(
        LAUNCH / "pendulum_sim.launch.py", {"links": links, "rviz": "true", "use_sim_time": "true"}
    )
    *system, viewer = nodes
    assert [n["executable"] for n in system] == ["pendulum_sim", "rkn_estimator", "rkn_monitor"]
    assert (viewer["package"], viewer["executable"]) == ("rviz2", "rviz2")
    assert {"use_sim_time": True} in viewer["parameters"]
    flag, path = viewer["arguments"]
    assert flag == "-d" and Path(path) == REPO / "rviz" / "pendulum.rviz"
    view = yaml.safe_load(Path(path).read_text())["Visualization Manager"]
    displays = {d["Class"]: d for d in view["Displays"]}
    estimator = next(n for n in system if n["executable"] == "rkn_estimator")
    (estimator_yaml,) = parameter_files(estimator["parameters"])
    params = node_parameters(yaml.safe_load(estimator_yaml.read_text()), estimator["name"])
    assert params["publish_markers"] is True
    markers = displays["rviz_default_plugins/MarkerArray"]["Topic"]
    # relative, so that the view follows the namespace the system is launched in
    assert markers["Value"] == f"{estimator['name']}/markers"
    assert markers["Reliability Policy"] == "Reliable"  # as the node publishes them
    image = displays["rviz_default_plugins/Image"]["Topic"]
    (camera,) = [target for source, target in estimator["remappings"] if source == "~/image"]
    assert image["Value"] == camera
    # a reliable subscription would not match the simulator's best-effort camera
    assert IMAGE_QOS.reliability == ReliabilityPolicy.BEST_EFFORT
    assert image["Reliability Policy"] == "Best Effort"
    assert view["Global Options"]["Fixed Frame"] == params["frame_id"]
    # without the argument, no viewer
    plain = evaluate_launch(LAUNCH / "pendulum_sim.launch.py", {"links": links})
    assert [n["executable"] for n in plain] == ["pendulum_sim", "rkn_estimator", "rkn_monitor"]


@pytest.mark.parametrize("installed", ["absent", "not executable"])
def test_rviz_true_without_rviz2_starts_nothing_and_says_what_to_do(
    installed, tmp_path, monkeypatch
):
    if installed == "not executable":
        (tmp_path / "lib" / "rviz2").mkdir(parents=True)
        (tmp_path / "lib" / "rviz2" / "rviz2").write_text("")
        monkeypatch.setitem(INSTALLED, "rviz2", tmp_path)
    monkeypatch.setattr(Node, "created", [])
    with pytest.raises(RuntimeError) as error:
        evaluate_launch(LAUNCH / "pendulum_sim.launch.py", {"rviz": "true"})
    assert str(error.value) == RVIZ_MISSING and "nothing was started" in RVIZ_MISSING
    assert Node.created == []  # raised before any node was made, so none is left running
    # without rviz:=true, rviz2 is not needed
    assert len(evaluate_launch(LAUNCH / "pendulum_sim.launch.py", {})) == 3


@pytest.mark.parametrize(("launch_file", "arguments"), SYSTEM_LAUNCHES)
def test_any_node_exiting_ends_the_launch_naming_it(launch_file, arguments):
    for node in evaluate_launch(LAUNCH / launch_file, arguments):
        log, shutdown = on_process_exit(node, 1)
        assert isinstance(log, LogInfo) and isinstance(shutdown, Shutdown)
        assert f"{node['name']} exited with code 1" in shutdown.kwargs["reason"]
        assert log.kwargs["msg"] == shutdown.kwargs["reason"]
        # while the launch already stops (Ctrl-C), each exit says nothing more
        assert on_process_exit(node, -2, is_shutdown=True) == []


def test_an_estimator_dying_at_start_up_stops_the_launch_with_its_exit_code(tmp_path):
    """The real console script, with a model that is not there, as the launch starts it."""
    (estimator,) = [n for n in evaluate_launch(LAUNCH / "pendulum_sim.launch.py", {})
                    if n["name"] == ESTIMATOR]
    result = subprocess.run(
        [str(BIN / estimator["executable"]), "--ros-args", "--params-file",
         str(REPO / SYSTEMS["pendulum"].config), "-p", f"model_path:={tmp_path / 'none'}"],
        capture_output=True, text=True, timeout=60, check=False,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    assert result.returncode != 0
    assert "none" in result.stdout + result.stderr  # the node names the missing model
    _, shutdown = on_process_exit(estimator, result.returncode)
    assert f"rkn_estimator exited with code {result.returncode}" in shutdown.kwargs["reason"]


def _wait_until_ready(watcher: GraphWatcher, spec: NodeSpec, timeout: float = 15.0) -> list:
    deadline = time.monotonic() + timeout
    while (missing := watcher.missing(spec)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return missing


def test_readiness_comes_from_the_graph_of_the_real_nodes(system_checkpoints):
    system = SYSTEMS["pendulum"]
    _, estimator, monitor = system.nodes()
    watcher = GraphWatcher(int(os.environ["ROS_DOMAIN_ID"]))
    try:
        assert watcher.missing(monitor) == [
            "subscription /pendulum_sim/joint_states_truth",
            "subscription /rkn_estimator/state",
            "subscription /rkn_estimator/state_stddev",
        ]
        config = REPO / system.config
        with built_node(MONITOR, config, system_checkpoints["pendulum"],
                        remappings=monitor.remappings):
            assert _wait_until_ready(watcher, monitor) == []
            # a wiring the node does not have is reported, by name
            elsewhere = system.nodes({"state": "elsewhere"})[2]
            assert watcher.missing(elsewhere) == ["subscription /elsewhere"]
            assert "service /rkn_estimator/reset" in watcher.missing(estimator)
            with built_node(ESTIMATOR, config, system_checkpoints["pendulum"],
                            remappings=estimator.remappings):
                assert _wait_until_ready(watcher, estimator) == []
    finally:
        watcher.close()


def test_the_tf_snippet_feeds_robot_state_publisher_the_estimate(system_checkpoints, tmp_path):
    """docs/ros_integration.md's launch snippet, on the stand-ins (robot_state_publisher has no
    wheel): its joint_states remap names the topic the real estimator publishes its estimate
    on, and not the standard deviations, which have the same type."""
    doc = (REPO / "docs" / "ros_integration.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", doc, re.DOTALL)
    launch_file = tmp_path / "tf.launch.py"
    launch_file.write_text(snippet)
    urdf = tmp_path / "robot.urdf"
    urdf.write_text('<robot name="pendulum"><link name="pendulum_base"/></robot>')
    estimator, publisher = evaluate_launch(
        launch_file, {"urdf": str(urdf), "model_path": str(system_checkpoints["pendulum"])}
    )
    assert (publisher["package"], publisher["executable"]) == (
        "robot_state_publisher", "robot_state_publisher"
    )
    assert {"robot_description": urdf.read_text()} in publisher["parameters"]
    (state_topic,) = [target for source, target in publisher["remappings"]
                      if source == "joint_states"]
    (params_file,) = parameter_files(estimator["parameters"])
    with built_node(ESTIMATOR, params_file, system_checkpoints["pendulum"], estimator["namespace"],
                    estimator["remappings"]) as real:
        joint_states = {p.topic_name for p in real.publishers if p.msg_type is JointState}
    spec = NodeSpec(ESTIMATOR, ESTIMATOR, tuple(estimator["remappings"]))
    assert state_topic == resolve(spec, "~/state", estimator["namespace"])
    assert joint_states == {state_topic, resolve(spec, "~/state_stddev", estimator["namespace"])}
