"""The estimator's sensor callbacks, one per subscription of the serving plan: each message is
judged by its stamp, converted once by its kind's conversion, checked against the model's input
(once: the step takes the checked values as they are) and offered to the tick scheduler under
its input name (see :mod:`rkn_ros.nodes.startup`).

The shared ``~/image`` and ``~/joint_states`` of models without recorded sensor kinds keep their
own callbacks (colour images, joint entries picked with ``joint_names``, other publishers on the
joint topic).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import numpy as np
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState

from rkn_ros.core.checkpoint import InputSpec
from rkn_ros.data.messages import MessageError, image_to_array
from rkn_ros.nodes.conversions import joint_state_to_vector, stamp_to_ns
from rkn_ros.nodes.sensor_inputs import (
    RosMessage,
    SensorSubscription,
    convert_message,
    message_class,
)
from rkn_ros.nodes.startup import ServingPlan
from rkn_ros.runtime import CheckedInput, InputError, StreamingEstimator

# Inputs subscribe best effort: that matches reliable and best-effort publishers alike (a
# reliable subscription gets nothing from a best-effort one), and only the newest sample is used.
SENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT
)
JOINT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_EFFORT
)
SubscriptionRow = tuple[str, type, Callable[[RosMessage], None], QoSProfile]


def check_image_size(msg: RosMessage, spec: InputSpec, resize: bool) -> None:
    """Refused before decoding: a wrong camera can send large frames at high rates. The decoded
    frame of ``~/image`` is checked (once) by the runtime's step at the tick."""
    size = (msg.height, msg.width)
    if not (msg.height and msg.width) or (not resize and size != spec.image_size):
        raise MessageError("wrong_size", f"image is {msg.height}x{msg.width}, the model takes "
                           f"{spec.image_size[0]}x{spec.image_size[1]}")


def check_joint_inputs(est: StreamingEstimator, plan: ServingPlan, vector: np.ndarray
                       ) -> dict[str, CheckedInput]:
    """``~/joint_states``' entries (``[len(plan.joint_entries)]``) as the model inputs they
    fill, each checked (range checks of each input; `InputError` if refused)."""
    checked = {}
    start = 0
    for name, dim in plan.vector_sensors:
        checked[name] = est.check_input(name, vector[start : start + dim])
        start += dim
    return checked


def tick_inputs(plan: ServingPlan, samples: Mapping[str, object]) -> dict[str, object]:
    """The model's inputs of one tick from the scheduler's samples by input name (None:
    missing): the checked values of vectors, decoded images of ``~/image``."""
    inputs: dict[str, object] = {}
    for source, sub in plan.sensors:
        sample = samples.get(source)
        if source == "image" and plan.image_sensor is not None:
            inputs[plan.image_sensor] = sample
        elif source == "joint_states" and plan.vector_sensors:
            for name, _ in plan.vector_sensors:
                inputs[name] = None if sample is None else sample[name]
        else:
            for name in sub.sensors:
                inputs[name] = None if sample is None else sample[name]
    return inputs


class SensorCallbacks:
    """The subscriptions' callbacks, mixed into :class:`~rkn_ros.nodes.estimator_parts.
    EstimatorParts` (which provides ``_offer``, ``est``, ``plan`` and the counters)."""

    def sensor_subscriptions(self) -> dict[str, SubscriptionRow]:
        """Input name -> (topic, message class, callback, QoS), in the plan's order."""
        rows = {}
        for source, sub in self.plan.sensors:
            if source == "image" and self.plan.image_sensor is not None:
                rows[source] = (sub.topic, Image, self._on_image, SENSOR_QOS)
            elif source == "joint_states" and self.plan.vector_sensors:
                rows[source] = (sub.topic, JointState, self._on_joints, JOINT_QOS)
            else:
                rows[source] = (
                    sub.topic, message_class(sub.msg_type),
                    lambda msg, s=source, t=sub: self._on_sensor(s, t, msg),
                    SENSOR_QOS if sub.kind == "image" else JOINT_QOS,
                )
        return rows

    def _on_sensor(self, source: str, sub: SensorSubscription, msg: RosMessage) -> None:
        def convert() -> dict[str, CheckedInput]:
            if sub.kind == "image" and type(msg).__name__ == "Image":
                check_image_size(msg, self.est.inputs[sub.sensors[0]], self.est.resize_images)
            values = convert_message(sub, msg)
            if values is None:
                raise MessageError("unknown_names", f"the message names none of "
                                   f"{list(sub.inputs[0].fields)}")
            return {name: self.est.check_input(name, value) for name, value in values.items()}

        self._offer(source, msg, convert)

    def _on_image(self, msg: Image) -> None:
        spec = self.est.inputs[self.plan.image_sensor]

        def convert() -> np.ndarray:
            check_image_size(msg, spec, self.est.resize_images)
            return image_to_array(msg, color=spec.channels == 3)

        self._offer("image", msg, convert)

    def _on_joints(self, msg: JointState) -> None:
        if msg.name and self._other_joints(msg):
            return

        def convert() -> dict[str, CheckedInput]:
            vector = joint_state_to_vector(msg, self.plan.joint_entries)
            return check_joint_inputs(self.est, self.plan, vector)

        self._offer("joint_states", msg, convert)

    def _other_joints(self, msg: JointState) -> bool:
        """A message naming none of our joints while ours arrive: another publisher on the
        topic (a gripper driver beside the arm's), on its own time base; counted, logged once,
        its stamps not held against ours. When ours stop, it is an ``unknown_names`` rejection
        again, so a misconfiguration shows at once."""
        if not self._input_joints.isdisjoint(msg.name) or not self.scheduler.arriving(
            "joint_states", self._now_ns()
        ):
            return False
        self.received["joint_states"] += 1
        self.ignored[("joint_states", "other_joints")] += 1
        if not self._other_joints_logged:
            self._other_joints_logged = True
            self.get_logger().info(
                f"ignoring messages on {self._subscriptions_by_input['joint_states'].topic_name} "
                f"that name none of the configured joints (first: {list(msg.name)}): another "
                "publisher on the topic; counted as ignored.joint_states.other_joints"
            )
        return True

    def _offer(self, source: str, msg: RosMessage, convert: Callable[[], object]) -> None:
        """Stamp judged by the scheduler, then the message converted (once), then its ticks. A
        message without a header (``Float64MultiArray``) is stamped on arrival."""
        self.received[source] += 1
        self.heard[source] = time.monotonic()
        now = self._now_ns()
        if now == 0:
            return  # use_sim_time before the first /clock message: nothing to judge by
        header = getattr(msg, "header", None)
        stamp_ns = now if header is None else stamp_to_ns(header.stamp)
        drop = self.scheduler.admit(source, stamp_ns, now)
        if drop is not None:
            self._warn(drop.source, drop.reason.value, drop.detail)
            return
        try:
            sample = convert()
        except (MessageError, InputError) as err:
            self._reject(source, err.reason, str(err))
            return
        self._measured = True
        self._run(self.scheduler.accept(source, stamp_ns, now, sample))
