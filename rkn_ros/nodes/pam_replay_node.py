"""``pam_replay``: the real pneumatic-muscle recordings (``pam_dev.npz``) played as topics.

Each step (``dt`` = 0.01 s, 100 Hz, divided by ``real_time_factor``) of the chosen episodes
publishes, in this order:

- ``~/command`` (Float64MultiArray) the 8 recorded muscle commands of that step;
- ``~/joint_states`` (JointState) the measured joint angles ``joint_1..4`` (rad, ``position``)
  and the 8 normalized muscle pressures as the ``effort`` of ``muscle_1..8`` (NaN where an entry
  has no such reading);
- ``~/joint_states_truth`` (JointState) the joint angles again: for real data the recorded
  angles are the best truth there is;
- with ``publish_clock``, ``/clock`` first: replayed time from 1 s on, one ``dt`` per step, so
  nodes with ``use_sim_time`` follow the replay (its messages are stamped with that time).

``split`` picks the episodes: ``validation`` (default) plays the episodes the training recipe
held out (same fraction and seed as :func:`rkn_ros.data.pam.load_pam`), so the demo scores the
model on data it never saw; ``train`` or ``all`` the others. Episodes play back to back
(``loop`` restarts them) with a pause of ``episode_gap`` s between them, long enough for the
estimator's sensor timeout to see a new episode as a gap.
"""

from __future__ import annotations

import math
import sys

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock as ClockMsg
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from rkn_ros.data.dataset import split_indices
from rkn_ros.data.pam import (
    ANGLE_COLUMNS,
    DT,
    JOINT_NAMES,
    MUSCLE_NAMES,
    PRESSURE_COLUMNS,
    default_pam_file,
    load_recording,
    missing_recordings_hint,
)
from rkn_ros.nodes.conversions import SIM_CLOCK_START_NS, make_joint_state, ns_to_stamp
from rkn_ros.nodes.params import declare, resolve_share_path, run_node

NODE_NAME = "pam_replay"
SPLITS = ("validation", "train", "all")


class PamReplayNode(Node):
    """See the module docstring; parameters are listed in ``config/pam.yaml``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        file = declare(
            self, "file", "", "PAM .npz to replay; '' = $RKN_ROS_SHARED/data/pam/pam_dev.npz"
        )
        split = declare(self, "split", "validation", f"episodes to play: one of {SPLITS}")
        fraction = declare(
            self, "validation_fraction", 0.2, "held-out share (as the training recipe)", 0.0, 0.99
        )
        seed = declare(self, "split_seed", 0, "split seed (as the training recipe)", 0, 2**31 - 1)
        rtf = declare(
            self, "real_time_factor", 1.0, "recorded seconds per wall-clock second", 0.01, 1000.0
        )
        self.loop = declare(self, "loop", True, "start over after the last episode")
        self.publish_clock = declare(
            self, "publish_clock", False, "publish /clock and stamp with replayed time"
        )
        self.gap = declare(self, "episode_gap", 0.2, "s of silence between episodes", 0.0, 10.0)
        self.drop_last_step = declare(
            self,
            "drop_last_step",
            True,
            "leave out each episode's final sample: in 1462 of the 2301 recordings of "
            "pam_dev.npz the angles jump there by more than 0.1 rad (an end-of-recording "
            "artifact that no training window contains)",
        )
        self.frame_id = declare(self, "frame_id", "pam_base", "frame_id of the messages")
        if split not in SPLITS:
            raise ValueError(f"parameter split must be one of {SPLITS}, got {split!r}")
        path = resolve_share_path(file) if file else default_pam_file()
        if not file and not path.is_file():
            raise ValueError(
                f"no PAM recording at {path} (the default; or set the parameter 'file', "
                f"pam_file:= with pneumatic_sim.launch.py): {missing_recordings_hint()}"
            )
        self.recording = load_recording(path)
        train, validation = split_indices(self.recording.num_episodes, fraction, seed)
        self.episodes = {
            "validation": np.asarray(validation),
            "train": np.asarray(train),
            "all": np.arange(self.recording.num_episodes),
        }[split]
        if self.episodes.size == 0:
            raise ValueError(f"split {split!r} of {path} holds no episode")
        self.pub_command = self.create_publisher(Float64MultiArray, "~/command", 10)
        self.pub_joints = self.create_publisher(JointState, "~/joint_states", 10)
        self.pub_truth = self.create_publisher(JointState, "~/joint_states_truth", 10)
        self.pub_clock = (
            self.create_publisher(ClockMsg, "/clock", 10) if self.publish_clock else None
        )
        self.names = list(JOINT_NAMES) + list(MUSCLE_NAMES)
        self._episode = 0
        self._step = 0
        self.finished = False
        self.create_timer(DT / rtf, self._on_timer, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._period_ns = round(1e9 * DT / rtf)
        self._gap_ticks = round(self.gap / DT)
        self._start_ns: int | None = None
        self._ticks = 0
        self.get_logger().info(
            f"replaying {self.episodes.size} {split} episodes of {path} at {rtf}x real time"
        )

    def _on_timer(self) -> None:
        # Samples go out on a fixed grid of stamps (start + k dt); a late timer publishes every
        # sample that is due, so the stamps neither jitter nor fall behind the clock, and a
        # next-step estimate stamped one dt later lands exactly on the next sample's stamp.
        now = self.get_clock().now().nanoseconds
        if self._start_ns is None:
            self._start_ns = now
        for _ in range(10):
            due = self._start_ns + self._ticks * self._period_ns
            if self.finished or due > now:
                return
            if self.pub_clock is None:
                self._publish_step(ns_to_stamp(due))
                continue
            replayed = ns_to_stamp(SIM_CLOCK_START_NS + self._ticks * round(1e9 * DT))
            self.pub_clock.publish(ClockMsg(clock=replayed))
            self._publish_step(replayed)

    def _publish_step(self, stamp: Time) -> None:
        observations, actions = self.recording.episode(int(self.episodes[self._episode]))
        t = self._step
        self._ticks += 1
        self.pub_command.publish(Float64MultiArray(data=[float(v) for v in actions[t]]))
        angles = observations[t, ANGLE_COLUMNS].astype(np.float64)
        pressures = observations[t, PRESSURE_COLUMNS].astype(np.float64)
        nan4, nan8 = np.full(4, math.nan), np.full(8, math.nan)
        self.pub_joints.publish(
            make_joint_state(
                stamp,
                self.frame_id,
                self.names,
                position=np.concatenate([angles, nan8]),
                effort=np.concatenate([nan4, pressures]),
            )
        )
        self.pub_truth.publish(make_joint_state(stamp, self.frame_id, JOINT_NAMES, angles))
        self._step += 1
        if self._step >= observations.shape[0] - int(self.drop_last_step):
            self._step = 0
            self._episode += 1
            self._ticks += self._gap_ticks  # silence between episodes
            if self._episode >= self.episodes.size:
                self._episode = 0
                self.finished = not self.loop


def main(args: list[str] | None = None) -> int:
    """Console script ``pam_replay``."""
    return run_node(NODE_NAME, PamReplayNode, args, (ValueError, OSError))


if __name__ == "__main__":
    sys.exit(main())
