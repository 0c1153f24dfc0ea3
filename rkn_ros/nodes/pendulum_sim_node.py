"""``pendulum_sim``: an image pendulum (1 or 4 links) as a camera and a ground-truth source.

Every ``dt / real_time_factor`` seconds it advances :class:`rkn_ros.sim.PendulumSimulator` by
``dt`` and publishes ``~/image`` (mono8, sensor-data QoS) and ``~/joint_states_truth``
(JointState: wrapped absolute link angles from the downward vertical in rad, velocities in
rad/s). Options: the paper's correlated image noise, frame drops (the image is not published;
the truth still is), occlusions (a black square over part of the frame), and a real-time factor.
With ``publish_clock`` the node publishes ``/clock`` and stamps with its own simulated time, so
nodes with ``use_sim_time`` follow it faster (or slower) than real time.
With ``extra_sensors`` it also publishes an IMU (``~/imu``), a joint encoder (``~/encoder``)
and a second camera (``~/image_side``); see :mod:`rkn_ros.nodes.sim_sensor_outputs`.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import Image, Imu, JointState

from rkn_ros.nodes.conversions import (
    SIM_CLOCK_START_NS,
    array_to_image,
    make_joint_state,
    ns_to_stamp,
)
from rkn_ros.nodes.params import declare, run_node
from rkn_ros.nodes.sim_sensor_outputs import (
    EXTRA_SENSORS,
    encoder_message,
    imu_message,
    sim_sensors,
)
from rkn_ros.sim.pendulum import PendulumParams
from rkn_ros.sim.pendulum_sim import PendulumSimulator
from rkn_ros.sim.render import RenderParams

NODE_NAME = "pendulum_sim"
IMAGE_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT
)


class PendulumSimNode(Node):
    """See the module docstring; parameters are listed in ``config/pendulum.yaml``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        links = declare(self, "links", 1, "number of links (1: pendulum, 4: quad-link)", 1, 8)
        size = declare(
            self, "image_size", 0, "image side in px; 0 = 24 for one link, 48 otherwise", 0, 1024
        )
        self.dt = declare(self, "dt", 0.05, "simulated seconds per step", 0.001, 1.0)
        seed = declare(self, "seed", 0, "random seed (initial state, noise, drops)", 0, 2**31 - 1)
        image_noise = declare(self, "image_noise", False, "the paper's correlated image noise")
        self.drop_probability = declare(
            self, "frame_drop_probability", 0.0, "probability a frame is not published", 0.0, 1.0
        )
        self.keep_first = declare(
            self, "keep_first_frames", 5, "frames always published after start-up", 0, 100000
        )
        self.occlusion_probability = declare(
            self,
            "occlusion_probability",
            0.0,
            "probability a frame gets a black square over part of it",
            0.0,
            1.0,
        )
        self.occlusion_size = declare(
            self, "occlusion_size", 0.4, "side of the occluding square / image side", 0.05, 1.0
        )
        rtf = declare(
            self, "real_time_factor", 1.0, "simulated seconds per wall-clock second", 0.01, 1000.0
        )
        self.publish_clock = declare(
            self, "publish_clock", False, "publish /clock and stamp with simulated time"
        )
        self.max_steps = declare(
            self,
            "max_steps",
            0,
            "stop publishing after this many steps (0 = run forever)",
            0,
            2**31 - 1,
        )
        self.frame_id = declare(self, "frame_id", "pendulum_camera", "frame_id of the images")
        self.wait_for_subscribers = declare(
            self,
            "wait_for_subscribers",
            False,
            "hold the first frame until ~/image and ~/joint_states_truth each have a subscriber "
            "(rkn-ros demo: the estimate is scored from the trajectory's start, not from when "
            "DDS discovery happened to finish)",
        )
        names = declare(
            self,
            "joint_names",
            [],
            "names of the links in ~/joint_states_truth; empty = joint_1 .. joint_n",
            array="string[]",
        )
        extra = declare(self, "extra_sensors", [],
                        f"also publish these sensors, from {list(EXTRA_SENSORS)}: ~/imu (Imu), "
                        "~/encoder (JointState), ~/image_side (Image); empty = none",
                        array="string[]")
        sensor_config = declare(
            self, "sensor_config", "",
            "generator config whose image_side/imu/encoder sections set the extra sensors "
            "(e.g. config/sim/pendulum_fusion.yaml); empty = their defaults")
        params = (
            PendulumParams()
            if links == 1
            else PendulumParams.quad_link(
                links=links, masses=(1.0,) * links, lengths=(1.0,) * links
            )
        )
        params = PendulumParams.from_dict({**params.to_dict(), "dt": self.dt})
        # the same rendering as the generated training data (rkn-ros generate)
        render = RenderParams() if links == 1 else RenderParams.quad_link()
        if size:
            render = dataclasses.replace(render, image_size=size)
        self.extra = sim_sensors(list(extra), sensor_config, render, links)
        self.sim = PendulumSimulator(params, render, seed=seed, image_noise=image_noise,
                                     imu=self.extra.imu, encoder=self.extra.encoder,
                                     side_camera=self.extra.side_camera)
        self.joint_names = list(names) or [f"joint_{i + 1}" for i in range(links)]
        if len(self.joint_names) != links:
            raise ValueError(f"joint_names has {len(self.joint_names)} names for {links} links")
        self._rng = np.random.default_rng(seed + 1)
        self.pub_image = self.create_publisher(Image, "~/image", IMAGE_QOS)
        self.pub_truth = self.create_publisher(JointState, "~/joint_states_truth", 10)
        self.pub_imu = self.create_publisher(Imu, "~/imu", 10) if self.extra.imu else None
        self.pub_encoder = (self.create_publisher(JointState, "~/encoder", 10)
                            if self.extra.encoder else None)
        self.pub_side = (self.create_publisher(Image, "~/image_side", IMAGE_QOS)
                         if self.extra.side_camera else None)
        self._side_rng = np.random.default_rng(seed + 2)
        self.pub_clock = (
            self.create_publisher(ClockMsg, "/clock", 10) if self.publish_clock else None
        )
        self.steps = 0
        self.published_frames = 0
        self._sim_ns = SIM_CLOCK_START_NS
        self._frame = self.sim.reset()
        self.create_timer(
            self.dt / rtf, self._on_timer, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        self.get_logger().info(
            f"{links}-link pendulum, {render.image_size}x{render.image_size} px, dt {self.dt} s, "
            f"real-time factor {rtf}, noise {image_noise}, drops {self.drop_probability}, "
            f"occlusions {self.occlusion_probability}"
            + ("; waiting for subscribers to ~/image and ~/joint_states_truth"
               if self.wait_for_subscribers else "")
        )

    def _stamp_ns(self) -> int:
        if self.publish_clock:
            return self._sim_ns
        return self.get_clock().now().nanoseconds

    def _on_timer(self) -> None:
        if self.max_steps and self.steps >= self.max_steps:
            return
        if self.wait_for_subscribers:
            if not (self.pub_image.get_subscription_count()
                    and self.pub_truth.get_subscription_count()):
                return
            self.wait_for_subscribers = False
            self.get_logger().info("subscribers matched: the pendulum starts")
        if self.steps > 0:
            self._frame = self.sim.step()
            self._sim_ns += round(self.dt * 1e9)
        image, angles, velocities = self._frame
        stamp = ns_to_stamp(self._stamp_ns())
        if self.pub_clock is not None:
            self.pub_clock.publish(ClockMsg(clock=stamp))
        # the other sensors first: a node ticking on the front camera then has the step's
        # other samples when the frame arrives
        self._publish_extra(stamp)
        dropped = self.steps >= self.keep_first and self._rng.random() < self.drop_probability
        if not dropped:
            if self._rng.random() < self.occlusion_probability:
                image = self._occlude(image)
            self.pub_image.publish(array_to_image(image, stamp, self.frame_id))
            self.published_frames += 1
        self.pub_truth.publish(
            make_joint_state(stamp, self.frame_id, self.joint_names, angles, velocities)
        )
        self.steps += 1

    def _publish_extra(self, stamp) -> None:
        readings = self.sim.readings
        if self.pub_imu is not None:
            self.pub_imu.publish(imu_message(stamp, self.frame_id, readings.imu))
        if self.pub_encoder is not None and readings.encoder_valid:
            self.pub_encoder.publish(encoder_message(stamp, self.frame_id, self.joint_names,
                                                     self.extra.encoder, readings.encoder))
        if self.pub_side is not None and not (
                self.steps >= self.keep_first
                and self._side_rng.random() < self.extra.side_drop_prob):
            self.pub_side.publish(array_to_image(readings.side_image, stamp, self.frame_id))

    def _occlude(self, image: np.ndarray) -> np.ndarray:
        side = max(1, round(self.occlusion_size * image.shape[0]))
        row, col = self._rng.integers(0, image.shape[0] - side + 1, size=2)
        image = image.copy()
        image[row : row + side, col : col + side] = 0
        return image


def main(args: list[str] | None = None) -> int:
    """Console script ``pendulum_sim``."""
    return run_node(NODE_NAME, PendulumSimNode, args, (ValueError,))


if __name__ == "__main__":
    sys.exit(main())
