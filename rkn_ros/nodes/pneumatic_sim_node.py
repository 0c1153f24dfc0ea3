"""``pneumatic_sim``: one joint driven by two antagonistic pneumatic muscles.

Every ``dt / real_time_factor`` s it advances :class:`rkn_ros.sim.pneumatic.PneumaticJoint` by
``dt`` with the current pressure set-points and publishes:

- ``~/joint_states`` (JointState) the measurements, names ``[joint_name, flexor_name,
  extensor_name]`` (default ``pam_joint, pam_flexor, pam_extensor``): the encoder angle (rad)
  as the joint's ``position``, the two measured muscle pressures (bar) as the ``effort`` of the
  muscles' entries; entries a sensor does not measure are NaN.
- ``~/joint_states_truth`` (JointState) the true angle (rad) and velocity (rad/s) of the joint.
- ``~/command`` (Float64MultiArray, ``[p_set_flexor, p_set_extensor]`` bar) the set-points it
  applies, when ``excitation`` is on (random steps, multi-sines and walks from the simulator's
  excitation generator). With ``excitation`` off it applies the newest command received on
  ``~/command_in`` instead (ros2_control forward-command convention).
"""

from __future__ import annotations

import math
import sys

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from rkn_ros.data.generate import load_pneumatic_params
from rkn_ros.data.messages import MessageError
from rkn_ros.nodes.conversions import (
    SIM_CLOCK_START_NS,
    command_to_vector,
    make_joint_state,
    ns_to_stamp,
)
from rkn_ros.nodes.params import declare, resolve_share_path, run_node
from rkn_ros.sim.pneumatic import PneumaticJoint, PneumaticParams, excitation

NODE_NAME = "pneumatic_sim"
EXCITATION_CHUNK = 3000  # steps of set-points generated at a time


class PneumaticSimNode(Node):
    """See the module docstring; parameters are listed in ``config/pneumatic.yaml``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        params_file = declare(
            self,
            "sim_params_file",
            "config/sim/pneumatic.yaml",
            "simulator parameter YAML (valve, muscle, joint, sensor, excitation); '' = defaults",
        )
        seed = declare(self, "seed", 0, "random seed (sensor noise, excitation)", 0, 2**31 - 1)
        rtf = declare(
            self, "real_time_factor", 1.0, "simulated seconds per wall-clock second", 0.01, 1000.0
        )
        self.excite = declare(
            self, "excitation", True, "generate set-points and publish them on ~/command"
        )
        self.publish_clock = declare(
            self, "publish_clock", False, "publish /clock and stamp with simulated time"
        )
        self.joint_name = declare(self, "joint_name", "pam_joint", "name of the joint")
        flexor = declare(
            self, "flexor_name", "pam_flexor", "JointState entry carrying the flexor pressure"
        )
        extensor = declare(
            self, "extensor_name", "pam_extensor", "JointState entry carrying the extensor pressure"
        )
        self.frame_id = declare(self, "frame_id", "pam_base", "frame_id of the messages")
        if params_file:
            params = load_pneumatic_params(resolve_share_path(params_file))
        else:
            params = PneumaticParams()
        self.params = params
        self.dt = params.dt
        self.joint = PneumaticJoint(params, seed=seed)
        self._rng = np.random.default_rng(seed + 1)
        self._commands = np.zeros((0, 2))
        self._command = np.zeros(2)
        self.names = [self.joint_name, flexor, extensor]
        self.pub_joints = self.create_publisher(JointState, "~/joint_states", 10)
        self.pub_truth = self.create_publisher(JointState, "~/joint_states_truth", 10)
        self.pub_clock = (
            self.create_publisher(ClockMsg, "/clock", 10) if self.publish_clock else None
        )
        if self.excite:
            self.pub_command = self.create_publisher(Float64MultiArray, "~/command", 10)
        else:
            self.create_subscription(Float64MultiArray, "~/command_in", self._on_command, 10)
        self._sim_ns = SIM_CLOCK_START_NS
        self.steps = 0
        self._measurement, self._truth = self.joint.reset()
        self.create_timer(
            self.dt / rtf, self._on_timer, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        self.get_logger().info(
            f"pneumatic joint '{self.joint_name}', dt {self.dt} s, real-time factor {rtf}, "
            f"{'built-in excitation' if self.excite else 'commands from ~/command_in'}"
        )

    def _on_command(self, msg: Float64MultiArray) -> None:
        try:
            self._command = command_to_vector(msg, 2)
        except MessageError as err:
            self.get_logger().warning(f"dropped command ({err.reason}): {err}")

    def _next_command(self) -> np.ndarray:
        if not self.excite:
            return self._command
        if self._commands.shape[0] == 0:
            self._commands = excitation(self.params, 1, EXCITATION_CHUNK, self._rng)[0]
        command, self._commands = self._commands[0], self._commands[1:]
        return command

    def _on_timer(self) -> None:
        stamp = ns_to_stamp(
            self._sim_ns if self.publish_clock else self.get_clock().now().nanoseconds
        )
        if self.pub_clock is not None:
            self.pub_clock.publish(ClockMsg(clock=stamp))
        command = self._next_command()
        if self.excite:
            # The set-point is published as it is applied: an estimator ticking on the joint
            # states sees the command that drives the joint from this sample to the next.
            self.pub_command.publish(Float64MultiArray(data=[float(v) for v in command]))
        angle, p_flexor, p_extensor = (float(v) for v in self._measurement)
        nan = math.nan
        self.pub_joints.publish(
            make_joint_state(
                stamp,
                self.frame_id,
                self.names,
                position=np.array([angle, nan, nan]),
                effort=np.array([nan, p_flexor, p_extensor]),
            )
        )
        truth = self._truth
        self.pub_truth.publish(
            make_joint_state(
                stamp,
                self.frame_id,
                [self.joint_name],
                position=np.array([truth.angle]),
                velocity=np.array([truth.velocity]),
            )
        )
        self._measurement, self._truth = self.joint.step(command)
        self._sim_ns += round(self.dt * 1e9)
        self.steps += 1


def main(args: list[str] | None = None) -> int:
    """Console script ``pneumatic_sim``."""
    return run_node(NODE_NAME, PneumaticSimNode, args, (ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
