"""``rkn_estimator``: the RKN state estimator as a ROS 2 node (docs/runtime.md).

Inputs: one topic per sensor the checkpoint lists, ``~/<sensor name>`` with the message type of
its kind (:mod:`rkn_ros.nodes.sensor_inputs`), or the topic its ``sensors.<name>.topic``
parameter names (declared from the checkpoint's list at start-up); a model recorded without
sensor kinds reads ``~/image`` (sensor-data QoS, depth 1) and ``~/joint_states`` (entries picked
by name). ``~/command`` (Float64MultiArray) when the model takes one. Outputs
``~/state``/``~/state_stddev`` (JointState), optionally ``~/prediction``/
``~/prediction_stddev`` (JointTrajectory) and ``~/markers``, plus ``/diagnostics``;
``~/reset`` (Trigger) returns to the initial belief.

The node translates and delegates: messages to arrays in :mod:`rkn_ros.nodes.conversions`,
when to tick in :class:`rkn_ros.runtime.ticks.TickScheduler`, every number in
:class:`rkn_ros.runtime.StreamingEstimator`, the start-up checks in
:mod:`rkn_ros.nodes.startup`, the parameters in :mod:`rkn_ros.nodes.estimator_params` (those
set at run time in :mod:`rkn_ros.nodes.estimator_runtime_params`), the statuses in
:mod:`rkn_ros.nodes.estimator_diagnostics`. Its parts (:class:`EstimatorParts`) are shared with
the managed node, :mod:`rkn_ros.nodes.lifecycle_estimator`.
"""

from __future__ import annotations

import sys

from rclpy.node import Node

from rkn_ros.nodes.estimator_parts import NODE_NAME, EstimatorParts
from rkn_ros.nodes.params import run_node
from rkn_ros.nodes.startup import StartupError


class EstimatorNode(EstimatorParts, Node):
    """See the module docstring; parameters are listed in ``config/estimator.yaml``. Configured
    and active from construction on."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(node_name, **kwargs)
        self.declare_estimator()
        self.configure_estimator()
        self.activate_estimator()


def main(args: list[str] | None = None) -> int:
    """Console script ``rkn_estimator``: exits 1 with one line when the model cannot serve."""
    return run_node(NODE_NAME, EstimatorNode, args, (StartupError,))


if __name__ == "__main__":
    sys.exit(main())
