"""The pendulum simulator node's optional sensors: what to simulate, and their messages.

``pendulum_sim`` publishes, for each name in its ``extra_sensors`` parameter (default none, so
the node publishes what it always did):

- ``imu``: ``~/imu`` (``sensor_msgs/Imu``): ``angular_velocity.z`` the link's rate,
  ``linear_acceleration.x``/``.y`` the specific force in the link frame
  (:mod:`rkn_ros.sim.imu`); no orientation (its covariance[0] is -1, as the message defines);
- ``encoder``: ``~/encoder`` (``sensor_msgs/JointState``): quantized relative joint angles,
  published only on the ticks the encoder reads (every ``encoder.period`` steps);
- ``image_side``: ``~/image_side`` (``sensor_msgs/Image`` mono8): the second camera, dropping
  frames with ``image_side.drop_prob`` after the first ``keep_first_frames``.

Their parameters come from the ``image_side``, ``imu`` and ``encoder`` sections of the
generator config in ``sensor_config`` (e.g. ``config/sim/pendulum_fusion.yaml``; empty: the
defaults), so the node simulates what the data sets written from that file hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Imu, JointState

from rkn_ros.data.generate import load_pendulum_config
from rkn_ros.data.generate_sensors import SensorsConfig
from rkn_ros.nodes.conversions import make_joint_state
from rkn_ros.nodes.params import resolve_share_path
from rkn_ros.sim.encoder import EncoderParams
from rkn_ros.sim.imu import ImuParams
from rkn_ros.sim.render import CameraView, RenderParams

EXTRA_SENSORS = ("image_side", "imu", "encoder")


@dataclass(frozen=True)
class SimSensors:
    """What the simulator adds: the arguments :class:`PendulumSimulator` takes for them."""

    imu: ImuParams | None
    encoder: EncoderParams | None
    side_camera: tuple[RenderParams, CameraView] | None
    side_drop_prob: float


def sim_sensors(names: Sequence[str], config_path: str, front: RenderParams,
                links: int) -> SimSensors:
    """The sensors ``names`` (from :data:`EXTRA_SENSORS`) with the parameters of the generator
    config ``config_path`` ('' = defaults); ValueError names a bad name or option."""
    unknown = sorted(set(names) - set(EXTRA_SENSORS))
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"extra_sensors {list(names)}: expected distinct names from "
                         f"{list(EXTRA_SENSORS)}")
    config = SensorsConfig()
    if config_path:
        kind = "pendulum" if links == 1 else "quad_link"
        config = load_pendulum_config(resolve_share_path(config_path), kind).sensors
    side = None
    if "image_side" in names:
        side = (config.image_side.render_params(front), config.image_side.view)
    return SimSensors(imu=config.imu if "imu" in names else None,
                      encoder=config.encoder if "encoder" in names else None,
                      side_camera=side, side_drop_prob=float(config.image_side.drop_prob))


def imu_message(stamp: Time, frame_id: str, reading: np.ndarray) -> Imu:
    """``reading`` float [3] (:data:`rkn_ros.sim.imu.IMU_COLUMNS`) as an Imu message."""
    msg = Imu()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.angular_velocity.z = float(reading[0])
    msg.linear_acceleration.x = float(reading[1])
    msg.linear_acceleration.y = float(reading[2])
    msg.orientation_covariance[0] = -1.0   # no orientation estimate
    return msg


def encoder_message(stamp: Time, frame_id: str, joint_names: Sequence[str],
                    encoder: EncoderParams, reading: np.ndarray) -> JointState:
    """The encoder's ``reading`` [joints] (rad) under the names of the joints it measures."""
    links = len(joint_names)
    names = [joint_names[j - 1] for j in encoder.measured(links)]
    return make_joint_state(stamp, frame_id, names, reading)


__all__ = ["EXTRA_SENSORS", "SimSensors", "encoder_message", "imu_message", "sim_sensors"]
