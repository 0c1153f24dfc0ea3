"""The estimator node's outputs: ``~/state``, ``~/state_stddev``, ``~/prediction(_stddev)`` and
``~/markers``, filled from the runtime's estimate at each tick."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from rkn_ros.core.decode import chain_points
from rkn_ros.nodes.conversions import fill_joint_state, make_joint_state, make_trajectory
from rkn_ros.runtime import EstimatorOutput, StreamingEstimator

# reliable, volatile: what rviz, rqt_plot and `ros2 bag record` take with either reliability
DEPTH = 10


class EstimatorOutputs:
    """Publishers of one estimator, and the messages they reuse."""

    def __init__(
        self,
        node: Node,
        est: StreamingEstimator,
        joint_names: tuple[str, ...],
        frame_id: str,
        horizon: int,
        link_lengths: tuple[float, ...] | None,
    ) -> None:
        """``horizon`` 0: no ``~/prediction``; ``link_lengths`` None: no ``~/markers``."""
        self.est = est
        self.joint_names = list(joint_names)
        self.frame_id = frame_id
        # Built once and refilled at every tick (the publisher serializes on publish).
        no_values = np.zeros(len(joint_names))
        with_velocity = est.layout.velocity_index is not None
        self.state_msg, self.stddev_msg = (
            make_joint_state(Time(), frame_id, self.joint_names, no_values,
                             no_values if with_velocity else None)
            for _ in range(2)
        )
        self._node = node
        self.published = 0  # estimates out on ~/state (the rate /diagnostics judges)
        self.pub_state = self._publisher(JointState, "~/state")
        self.pub_stddev = self._publisher(JointState, "~/state_stddev")
        self.pub_prediction = self.pub_prediction_stddev = self.pub_markers = None
        self.set_horizon(horizon)
        self.set_markers(link_lengths)

    def _publisher(self, msg_type: type, topic: str) -> Publisher:
        # `qos_overrides./<node>/state.publisher.reliability` etc. at start-up, as in
        # robot_localization (QoS parameters are read-only in rclpy)
        return self._node.create_publisher(
            msg_type, topic, DEPTH,
            qos_overriding_options=QoSOverridingOptions.with_default_policies(),
        )

    def _destroy(self, publisher: Publisher | None) -> None:
        if publisher is not None:
            self._node.destroy_publisher(publisher)

    def set_horizon(self, horizon: int) -> None:
        """Predict ``horizon`` ticks ahead from now on: ``~/prediction(_stddev)`` created, or
        destroyed for 0."""
        if (horizon > 0) != (self.pub_prediction is not None):
            if horizon > 0:
                self.pub_prediction = self._publisher(JointTrajectory, "~/prediction")
                self.pub_prediction_stddev = self._publisher(JointTrajectory, "~/prediction_stddev")
            else:
                self._destroy(self.pub_prediction)
                self._destroy(self.pub_prediction_stddev)
                self.pub_prediction = self.pub_prediction_stddev = None
        self.horizon = horizon

    def set_markers(self, link_lengths: tuple[float, ...] | None) -> None:
        """``~/markers`` with these link lengths from now on; None: none (publisher destroyed)."""
        if link_lengths is None:
            self._destroy(self.pub_markers)
            self.pub_markers = None
        elif self.pub_markers is None:
            self.pub_markers = self._publisher(MarkerArray, "~/markers")
        self.link_lengths = None if link_lengths is None else np.asarray(link_lengths)

    def destroy(self) -> None:
        """Every publisher destroyed (a managed node's cleanup)."""
        self.set_horizon(0)
        self.set_markers(None)
        self._destroy(self.pub_state)
        self._destroy(self.pub_stddev)

    def publish(self, out: EstimatorOutput, stamp: Time, handed: Callable[[int], None]) -> None:
        """Every output of one tick; ``handed(ns)`` gets the wall time ``~/state`` went out."""
        state = fill_joint_state(self.state_msg, stamp, out.position, out.velocity)
        # Read before publish: the call can return late when the subscriber's wake-up preempts
        # this process, after the message has already gone out.
        handed_ns = time.time_ns()
        self.pub_state.publish(state)
        self.published += 1
        handed(handed_ns)
        self.pub_stddev.publish(
            fill_joint_state(self.stddev_msg, stamp, out.position_std, out.velocity_std)
        )
        if self.pub_prediction is not None:
            pred = self.est.predict(self.horizon)
            for publisher, position, velocity in (
                (self.pub_prediction, pred.position, pred.velocity),
                (self.pub_prediction_stddev, pred.position_std, pred.velocity_std),
            ):
                publisher.publish(
                    make_trajectory(stamp, self.frame_id, self.joint_names, pred.dt, position,
                                    velocity)
                )
        if self.pub_markers is not None:
            self.pub_markers.publish(self.markers(out, stamp))

    def markers(self, out: EstimatorOutput, stamp: Time) -> MarkerArray:
        """The estimated chain (solid) and the chains at -2 and +2 sigma (faint)."""
        markers = []
        for k, (sign, alpha) in enumerate(((0.0, 1.0), (-2.0, 0.3), (2.0, 0.3))):
            points = chain_points(out.position + sign * out.position_std, self.link_lengths)
            marker = Marker()
            marker.header.stamp = stamp
            marker.header.frame_id = self.frame_id
            marker.ns = "rkn_estimate"
            marker.id = k
            marker.type = Marker.LINE_STRIP
            marker.action = Marker.ADD
            marker.pose.orientation.w = 1.0
            marker.scale.x = 0.05
            marker.color.r, marker.color.g, marker.color.b, marker.color.a = 0.1, 0.4, 1.0, alpha
            marker.points = [Point(x=float(x), y=0.0, z=float(z)) for x, z in points]
            markers.append(marker)
        return MarkerArray(markers=markers)
