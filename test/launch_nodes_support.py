"""Real nodes built in process the way a launch file starts them (no tests here)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import rclpy
from rclpy.parameter import Parameter

from rkn_ros.nodes.estimator_node import EstimatorNode
from rkn_ros.nodes.monitor_node import MonitorNode
from rkn_ros.nodes.pam_replay_node import PamReplayNode
from rkn_ros.nodes.pendulum_sim_node import PendulumSimNode
from rkn_ros.nodes.pneumatic_sim_node import PneumaticSimNode
from rkn_ros.nodes.systems import ESTIMATOR

NODE_CLASSES = {
    "rkn_estimator": EstimatorNode,
    "pendulum_sim": PendulumSimNode,
    "pneumatic_sim": PneumaticSimNode,
    "pam_replay": PamReplayNode,
    "rkn_monitor": MonitorNode,
}


@contextlib.contextmanager
def built_node(
    node_name: str,
    config: Path,
    model: Path,
    namespace: str = "",
    remappings: Sequence[tuple[str, str]] = (),
):
    """The real node class of ``node_name`` started in this process with ``--params-file
    config`` and ``-r`` for each remapping (and ``model`` as the estimator's ``model_path``),
    on its own context."""
    args = ["--ros-args", "--params-file", str(config)]
    for source, target in remappings:
        args += ["-r", f"{source}:={target}"]
    context = rclpy.Context()
    rclpy.init(args=args, context=context)
    try:
        overrides = [Parameter("model_path", value=str(model))] if node_name == ESTIMATOR else []
        node = NODE_CLASSES[node_name](
            context=context, parameter_overrides=overrides, namespace=namespace
        )
        try:
            yield node
        finally:
            node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
