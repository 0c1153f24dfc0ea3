"""``rkn_estimator``: the RKN state estimator as a ROS 2 node (docs/runtime.md).

Inputs ``~/image`` (sensor-data QoS, depth 1), ``~/joint_states`` (entries picked by name),
``~/command`` (Float64MultiArray). Each tick (a timer at ``frequency``, or one tick per message
of the ``tick_on`` input, with ticks for dropped ones and the timer coasting through gaps) takes
the newest accepted sample of each input since the last tick that is not older than
``sensor_timeout``, marks the rest missing, runs one runtime step and publishes
``~/state``/``~/state_stddev`` (JointState, same header and names), optionally
``~/prediction``/``~/prediction_stddev`` (JointTrajectory) and ``~/markers``, plus
``/diagnostics``. ``~/reset`` (Trigger) returns to the initial belief.

The node translates and delegates: conversions in :mod:`rkn_ros.nodes.conversions`, every
number in :mod:`rkn_ros.runtime`.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import (
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory
from visualization_msgs.msg import Marker, MarkerArray

from rkn_ros.core.checkpoint import CheckpointError
from rkn_ros.core.decode import chain_points
from rkn_ros.data.messages import COMPRESSED_IMAGE, MessageError, image_to_array
from rkn_ros.nodes.conversions import (
    check_stamp,
    command_to_vector,
    fill_joint_state,
    joint_state_to_vector,
    make_joint_state,
    make_trajectory,
    ns_to_stamp,
    parse_joint_entries,
    stamp_to_ns,
)
from rkn_ros.nodes.params import Throttle, declare, resolve_share_path, run_node
from rkn_ros.runtime import EstimatorOutput, InputError, StreamingEstimator
from rkn_ros.runtime.affinity import pin_process
from rkn_ros.runtime.latency import LatencyStats

NODE_NAME = "rkn_estimator"
TICK_SOURCES = ("timer", "image", "joint_states")
# Time going back by more than this means a new run (a restarted simulation, a bag played again
# with --loop), not a late message: the belief starts fresh.
JUMP_BACK_NS = 1_000_000_000
# Clock time (ticking on the timer), or input time after a dropped sample (ticking on an input),
# up to this much is caught up one step per period; a longer leap ahead (a bag skipped
# forward) is not replayed.
MAX_CATCH_UP_NS = 1_000_000_000
# Ticking on an input, this many more ticks than periods passed means the input comes faster
# than the model's 1/dt (warned about), not a late stamp.
AHEAD_TICKS = 2
SENSOR_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT
)
JOINT_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_EFFORT
)
# Inputs subscribe best effort: that matches reliable and best-effort publishers alike (a
# reliable subscription gets nothing from a best-effort one), and only the newest sample is used.
COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_EFFORT
)


class StartupError(RuntimeError):
    """The node cannot serve (model missing, corrupt, or not matching the configuration)."""


@dataclass
class _Slot:
    """Newest accepted sample of one input since the last tick."""

    value: np.ndarray | None = None
    stamp_ns: int = 0
    last_accepted_ns: int | None = None
    accepted_at_ns: int | None = None  # our clock when the last one came (kept over resets)


class EstimatorNode(Node):
    """See the module docstring; parameters are listed in ``config/estimator.yaml``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        p = self._declare_parameters()
        self._throttle = Throttle(self, p["warn_throttle"])
        image_shape = (
            (p["image_height"], p["image_width"])
            if p["image_height"] and p["image_width"]
            else None
        )
        model_path = resolve_share_path(p["model_path"]) if p["model_path"] else None
        if model_path is None:
            raise StartupError("parameter 'model_path' is empty: name a checkpoint folder")
        joint_entries = list(p["joint_names"]) or None
        self.cpus = None
        if p["cpu_affinity"]:
            # before the model loads, so any thread pool it starts inherits the affinity
            try:
                self.cpus = pin_process(p["cpu_affinity"])
            except (ValueError, OSError) as err:
                raise StartupError(f"cpu_affinity {p['cpu_affinity']}: {err}") from err
        try:
            self.est = StreamingEstimator.from_checkpoint(
                model_path,
                device=p["device"],
                image_shape=image_shape,
                joint_names=None,
                resize_images=p["resize_images"],
                warmup_steps=p["warmup_steps"],
                latency_window=p["latency_window"],
                num_threads=p["num_threads"],
                cpu_backend=p["cpu_backend"],
                split_step=p["publish_before_predict"],
            )
        except (CheckpointError, ValueError, OSError) as err:
            raise StartupError(f"cannot serve model {model_path}: {err}") from err
        est = self.est
        # (without resizing, the checkpoint's own check has refused this already)
        if image_shape is not None and est.image_sensor() is None:
            raise StartupError(
                f"model {est.name}: image_height/image_width set but the model has no image input"
            )
        self._vector_sensors = [n for n, s in est.inputs.items() if s.kind == "vector"]
        model_entries = [e for n in self._vector_sensors for e in est.inputs[n].names]
        size = sum(est.inputs[n].shape[0] for n in self._vector_sensors)
        entries = joint_entries if joint_entries is not None else model_entries
        if len(entries) != size:
            raise StartupError(
                f"model {est.name}: joint_names {entries} has {len(entries)} entries, the model's "
                f"vector inputs {self._vector_sensors} take {size} ({model_entries})"
            )
        self._joint_entries = parse_joint_entries(entries)
        self._input_joints = frozenset(joint for joint, _ in self._joint_entries)
        self._image_sensor = est.image_sensor()
        images = [n for n, s in est.inputs.items() if s.kind == "image"]
        if len(images) > 1:
            raise StartupError(f"model {est.name}: several image inputs {images}; one is supported")
        tick_on = p["tick_on"]
        if tick_on not in TICK_SOURCES:
            raise StartupError(f"parameter tick_on must be one of {TICK_SOURCES}, got {tick_on!r}")
        if (tick_on == "image" and self._image_sensor is None) or (
            tick_on == "joint_states" and not self._vector_sensors
        ):
            raise StartupError(f"tick_on {tick_on!r} but model {est.name} has no such input")
        self._tick_on = tick_on
        self._period = 1.0 / p["frequency"] if p["frequency"] > 0 else est.dt
        if not est.uses_dt and not math.isclose(self._period, est.dt, rel_tol=1e-6):
            # each step of such a model advances its belief by its training dt, whatever the
            # clock says: ticking at another rate would run its dynamics at the wrong speed
            raise StartupError(
                f"parameter frequency {p['frequency']} Hz ticks every {self._period:g} s, but "
                f"model {est.name} was trained with dt {est.dt:g} s and takes no dt input: "
                f"set frequency to {1.0 / est.dt:g} or 0 (= 1/dt)"
            )
        self._period_ns = round(1e9 * self._period)
        self._timeout_ns = int(1e9 * (p["sensor_timeout"] or 2.0 * self._period))
        self._coast_after_ns = max(int(1.5e9 * self._period), self._timeout_ns)
        self._reset_gap_ns = int(1e9 * p["reset_after_gap"])
        self._last_input_ns: int | None = None
        self._max_future_ns = int(1e9 * p["max_future"])
        self._frame_id = p["frame_id"]
        self._offset_ns = round(1e9 * p["stamp_offset"])
        self._joint_names = list(p["output_joint_names"]) or list(est.layout.joint_names)
        if len(self._joint_names) != len(est.layout.joint_names):
            raise StartupError(
                f"output_joint_names {self._joint_names} has {len(self._joint_names)} names, the "
                f"model estimates {len(est.layout.joint_names)} joints "
                f"{list(est.layout.joint_names)}"
            )
        self._horizon = p["prediction_horizon"]
        self._link_lengths = np.asarray(
            p["marker_link_lengths"] or [1.0] * len(est.layout.joint_names), dtype=np.float64
        )
        if p["publish_markers"] and self._link_lengths.size != len(est.layout.joint_names):
            raise StartupError(
                f"marker_link_lengths has {self._link_lengths.size} values for "
                f"{len(est.layout.joint_names)} joints"
            )
        if p["publish_markers"] and not p["frame_id"]:
            self.get_logger().warning(
                "publish_markers with an empty frame_id: rviz cannot place the markers "
                "(set frame_id to the frame of the first joint)"
            )

        if self._reset_gap_ns and p["tick_on"] == "timer":
            self.get_logger().warning(
                "reset_after_gap is ignored with tick_on: timer (the timer ticks through "
                "silences; a gap is judged on the tick_on input): set tick_on to image or "
                "joint_states, or call ~/reset"
            )

        self._slots: dict[str, _Slot] = {"image": _Slot(), "joint_states": _Slot()}
        self._sources = [
            source
            for source, used in (
                ("image", self._image_sensor is not None),
                ("joint_states", bool(self._vector_sensors)),
            )
            if used
        ]
        self._command: np.ndarray | None = None
        self._command_last_ns: int | None = None
        self._last_tick_ns: int | None = None
        self._grid_ns = 0  # tick_on timer: where the current period began
        self._input_lag_ns = 0
        self.rejected: Counter[tuple[str, str]] = Counter()  # (input, reason) -> count
        self.missing: Counter[str] = Counter()  # input -> ticks without a usable sample
        self.superseded: Counter[str] = Counter()  # input -> samples replaced before a tick
        self.received: Counter[str] = Counter()
        self.ignored: Counter[tuple[str, str]] = Counter()  # (input, reason) -> count
        self._other_joints_logged = False
        self.ticks = 0
        self.input_to_publish = LatencyStats(p["latency_window"])
        self._sim_time = bool(self.get_parameter("use_sim_time").value)
        self.coasting_ticks = 0
        self.ticks_ahead = 0  # input ticks more than AHEAD_TICKS periods ahead of their stamps
        # ticking on an input (a model without a dt input): the stamp that anchors the period
        # grid, and the ticks since it
        self._grid_anchor_ns: int | None = None
        self._grid_ticks = 0
        self.gap_resets = 0
        self.jump_resets = 0
        self._ticks_at_last_diag = 0
        self._rejected_at_last_diag = 0
        self._last_diag_time = time.monotonic()

        # Built once and refilled at every tick (the publisher serializes on publish).
        no_values = np.zeros(len(self._joint_names))
        with_velocity = est.layout.velocity_index is not None
        self._state_msg, self._stddev_msg = (
            make_joint_state(Time(), self._frame_id, self._joint_names, no_values,
                             no_values if with_velocity else None)
            for _ in range(2)
        )
        self.pub_state = self.create_publisher(JointState, "~/state", 10)
        self.pub_stddev = self.create_publisher(JointState, "~/state_stddev", 10)
        self.pub_prediction = self.pub_prediction_stddev = None
        if self._horizon > 0:
            self.pub_prediction = self.create_publisher(JointTrajectory, "~/prediction", 10)
            self.pub_prediction_stddev = self.create_publisher(
                JointTrajectory, "~/prediction_stddev", 10
            )
        self.pub_markers = (
            self.create_publisher(MarkerArray, "~/markers", 10) if p["publish_markers"] else None
        )
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # The command subscription comes first: when a command and the sample of the same
        # step are both waiting, the executor serves them in creation order, and the tick that
        # the sample triggers must already see its command.
        subscriptions = {}
        if est.action_dim:
            subscriptions["command"] = self.create_subscription(
                Float64MultiArray, "~/command", self._on_command, COMMAND_QOS
            )
        if self._image_sensor is not None:
            subscriptions["image"] = self.create_subscription(
                Image, "~/image", self._on_image, SENSOR_QOS
            )
        if self._vector_sensors:
            subscriptions["joint_states"] = self.create_subscription(
                JointState, "~/joint_states", self._on_joints, JOINT_QOS
            )
        # the resolved names, after remapping: what a user checks a remapping against
        self._topics = {source: s.topic_name for source, s in subscriptions.items()}
        self._topic_types = {source: _type_name(s.msg_type) for source, s in subscriptions.items()}
        self.create_service(Trigger, "~/reset", self._on_reset)
        self._tick_timer = self.create_timer(self._period, self._on_timer)
        self.create_timer(
            p["diagnostics_period"],
            self._publish_diagnostics,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )
        self.get_logger().info(
            f"model '{est.name}' on {est.device} ({est.backend})"
            f"{f' (no ONNX Runtime: {est.backend_error})' if est.backend_error else ''}"
            f"{f' (no CUDA graph: {est.graph_error})' if est.graph_error else ''}; inputs "
            f"{list(est.inputs)} from {sorted(self._topics.values())}; tick on {tick_on} every "
            f"{self._period:.4f} s; outputs "
            f"{list(est.layout.names)}{f'; pinned to CPUs {self.cpus}' if self.cpus else ''}"
        )

    # ------------------------------------------------------------------ parameters
    def _declare_parameters(self) -> dict:
        d = {}
        d["model_path"] = declare(
            self, "model_path", "", "checkpoint folder (absolute, or relative to the package)"
        )
        d["device"] = declare(
            self, "device", "auto", "torch device: auto (the GPU if any, else CPU), cpu, cuda[:N]"
        )
        d["cpu_backend"] = declare(
            self, "cpu_backend", "auto",
            "CPU step: auto (ONNX Runtime when installed, else TorchScript), onnxruntime or "
            "torchscript",
        )
        d["publish_before_predict"] = declare(
            self, "publish_before_predict", True,
            "publish each estimate before predicting the next tick's prior (an RKN in ONNX "
            "Runtime: ~0.1 ms sooner from input to ~/state, ~0.06 ms more CPU per tick)",
        )
        d["num_threads"] = declare(
            self, "num_threads", 1, "torch intra-op threads (1 is fastest at batch 1)", 1, 64
        )
        d["cpu_affinity"] = declare(
            self,
            "cpu_affinity",
            [],
            "CPUs this node's threads run on (Linux), e.g. [3] for an isolated core; "
            "empty = the OS schedules it",
            array="int[]",
        )
        d["frequency"] = declare(
            self, "frequency", 0.0, "tick rate in Hz; 0 = 1/dt of the model", 0.0, 1000.0
        )
        d["tick_on"] = declare(
            self,
            "tick_on",
            "timer",
            "timer: tick at `frequency`; image / joint_states: one tick per message of that "
            "input (when it is overdue by sensor_timeout the timer coasts, one tick per period; "
            "a message after a dropped one first gets the dropped one's tick)",
        )
        d["sensor_timeout"] = declare(
            self,
            "sensor_timeout",
            0.0,
            "s; a sample older than this at the tick counts as missing (0 = two tick periods)",
            0.0,
            60.0,
        )
        d["reset_after_gap"] = declare(
            self,
            "reset_after_gap",
            0.0,
            "s; when the tick_on input resumes after a silence longer than this, start a fresh "
            "belief (a new recording or episode) instead of continuing the coasted one; 0 = never; "
            "tick_on image or joint_states only",
            0.0,
            3600.0,
        )
        d["max_future"] = declare(
            self, "max_future", 0.5, "s; samples stamped further ahead are rejected", 0.0, 60.0
        )
        d["image_height"] = declare(
            self, "image_height", 0, "expected image height in pixels; 0 = the model's", 0, 8192
        )
        d["image_width"] = declare(
            self, "image_width", 0, "expected image width in pixels; 0 = the model's", 0, 8192
        )
        d["resize_images"] = declare(
            self, "resize_images", False, "resize images of another size to the model's"
        )
        d["joint_names"] = declare(
            self,
            "joint_names",
            [],
            "JointState entries feeding the model's vector inputs, in model order: 'joint' "
            "(position) or 'joint/velocity', 'joint/effort' (also 'joint:effort', as bag "
            "import names them); empty = the checkpoint's names",
            array="string[]",
        )
        d["prediction_horizon"] = declare(
            self,
            "prediction_horizon",
            0,
            "ticks predicted ahead on ~/prediction (0 = off)",
            0,
            1000,
        )
        d["publish_markers"] = declare(
            self, "publish_markers", False, "publish ~/markers (estimated links, +-2 sigma)"
        )
        d["marker_link_lengths"] = declare(
            self,
            "marker_link_lengths",
            [],
            "m per link for ~/markers; empty = 1 m each",
            array="double[]",
        )
        d["frame_id"] = declare(self, "frame_id", "", "frame_id of the output headers")
        d["output_joint_names"] = declare(
            self,
            "output_joint_names",
            [],
            "joint names in ~/state; empty = the checkpoint's output names",
            array="string[]",
        )
        d["stamp_offset"] = declare(
            self,
            "stamp_offset",
            0.0,
            "s added to the tick's time in output stamps (a model trained on next-step targets "
            "estimates the state one dt after its inputs)",
            0.0,
            10.0,
        )
        d["diagnostics_period"] = declare(
            self, "diagnostics_period", 1.0, "s between /diagnostics messages", 0.05, 60.0
        )
        d["warmup_steps"] = declare(
            self, "warmup_steps", 20, "throw-away model steps at start-up", 0, 10000
        )
        d["latency_window"] = declare(
            self, "latency_window", 1000, "steps in the latency statistics window", 10, 1000000
        )
        d["warn_throttle"] = declare(
            self, "warn_throttle", 5.0, "s between repeated warnings of one kind", 0.0, 3600.0
        )
        return d

    # ------------------------------------------------------------------ inputs
    def _now_ns(self) -> int:
        # Without sim time (also when use_sim_time changes at run time) the ROS clock is the
        # system clock; reading that directly saves two Python objects per call.
        clock = self.get_clock()
        return clock.now().nanoseconds if clock.ros_time_is_active else time.time_ns()

    def _reject(self, source: str, reason: str, message: str) -> None:
        self.rejected[(source, reason)] += 1
        self._throttle.warn(f"{source}/{reason}", f"dropped {source} message ({reason}): {message}")

    def _accept(self, source: str, stamp: Time, convert) -> bool:
        """Check the stamp, convert; store the sample; False (counted) when rejected."""
        self.received[source] += 1
        now = self._now_ns()
        if now == 0:
            return False  # use_sim_time before the first /clock message: nothing to judge by
        slot = self._slots[source]
        stamp_ns = stamp_to_ns(stamp)
        last = slot.last_accepted_ns
        # Stamps far behind the last ones start a new run (checked here, not only in _tick:
        # ticking on this input, no tick comes while its stamps are refused as going back).
        jumped = bool(stamp_ns) and last is not None and last - stamp_ns > JUMP_BACK_NS
        try:
            check_stamp(stamp_ns, None if jumped else last, now, self._max_future_ns)
            value = convert()
        except (MessageError, InputError) as err:
            self._reject(source, err.reason, str(err))
            return False
        if jumped:  # only for a sample that is otherwise good
            self._restart(f"{source} stamps", last - stamp_ns)
        elif slot.value is not None:  # the tick takes the newest: this one replaces a waiting one
            self.superseded[source] += 1
        slot.value, slot.stamp_ns, slot.last_accepted_ns = value, stamp_ns, stamp_ns
        slot.accepted_at_ns = now
        return True

    def _on_image(self, msg: Image) -> None:
        sensor = self._image_sensor
        color = self.est.inputs[sensor].channels == 3

        def convert() -> np.ndarray:
            expected = self.est.inputs[sensor].image_size
            if not self.est.resize_images and (msg.height, msg.width) != expected:
                # refuse before decoding: a wrong camera can send large frames at high rates
                raise MessageError(
                    "wrong_size",
                    f"image is {msg.height}x{msg.width}, "
                    f"the model takes {expected[0]}x{expected[1]}",
                )
            return self.est.check_input(sensor, image_to_array(msg, color=color))

        if self._accept("image", msg.header.stamp, convert) and self._tick_on == "image":
            self._input_tick(stamp_to_ns(msg.header.stamp))

    def _on_joints(self, msg: JointState) -> None:
        if msg.name and self._input_joints.isdisjoint(msg.name) and self._joints_arriving():
            self._ignore_other_joints(msg)
            return

        def convert() -> np.ndarray:
            return joint_state_to_vector(msg, self._joint_entries)

        if self._accept("joint_states", msg.header.stamp, convert) and (
            self._tick_on == "joint_states"
        ):
            self._input_tick(stamp_to_ns(msg.header.stamp))

    def _joints_arriving(self) -> bool:
        """Whether a message with the configured joints came within ``sensor_timeout``."""
        at = self._slots["joint_states"].accepted_at_ns
        # a clock that went back (a restarted simulation) says nothing about whether they arrive
        return at is not None and 0 <= self._now_ns() - at <= self._timeout_ns

    def _ignore_other_joints(self, msg: JointState) -> None:
        """A message naming none of our joints while ours arrive: another publisher on the
        topic (a gripper driver beside the arm's). Its stamps may run on another time base, so
        they are not held against ours; it is counted, not warned about. When our joints stop
        arriving, such messages are rejected as ``unknown_names`` again (a misconfiguration
        shows at once)."""
        self.received["joint_states"] += 1
        self.ignored[("joint_states", "other_joints")] += 1
        if not self._other_joints_logged:
            self._other_joints_logged = True
            self.get_logger().info(
                f"ignoring messages on {self._topics['joint_states']} that name none of the "
                f"configured joints (first: {list(msg.name)}): another publisher on the topic; "
                "counted as ignored.joint_states.other_joints"
            )

    def _input_tick(self, stamp_ns: int) -> None:
        """A tick driven by an input sample; remembers how far its stamps lag our clock."""
        self._input_lag_ns = max(0, self._now_ns() - stamp_ns)
        previous, self._last_input_ns = self._last_input_ns, stamp_ns
        if self._reset_gap_ns and previous is not None and stamp_ns - previous > self._reset_gap_ns:
            self.est.reset()
            self.gap_resets += 1
            self._grid_anchor_ns = None
        elif not self.est.uses_dt:
            self._tick_missed_periods(stamp_ns)
        if self._tick(stamp_ns) and not self.est.uses_dt:
            if self._grid_anchor_ns is None:
                self._grid_anchor_ns, self._grid_ticks = stamp_ns, 0
            else:
                self._grid_ticks += 1

    def _tick_missed_periods(self, stamp_ns: int) -> None:
        """Before the tick of a sample that comes with a period or more missing before it (a
        dropped frame, too short a gap for the timer to coast through), the ticks the missing
        samples would have had, stamped on the period grid: each step of a model without a dt
        input advances it by one dt, so skipping them would run its dynamics slow.

        Counted on a grid anchored at an input's stamp, with every tick since (the input's,
        coasted and these): a sample stamped late and the next one on time add no tick, where
        judging each gap alone would add one for the late one.
        """
        if self._grid_anchor_ns is None or self._last_tick_ns is None:
            return
        periods = round((stamp_ns - self._grid_anchor_ns) / self._period_ns)
        missed = periods - self._grid_ticks - 1
        if missed * self._period_ns > MAX_CATCH_UP_NS:
            # a longer silence: coasted through as it happened, or (sensor_timeout over a
            # second) not replayed in one burst; the grid starts again at this sample
            self._grid_anchor_ns = None
            return
        if missed < -AHEAD_TICKS:
            # more ticks than periods: the input comes faster than 1/dt (DESIGN: one tick per
            # message), and each step still advances the model by one dt
            self.ticks_ahead += 1
            self._throttle.warn(
                "tick/ahead",
                f"{self._tick_on} messages come faster than the model's 1/dt "
                f"({1.0 / self._period:g} Hz): one step of {self._period:g} s per message "
                "runs its estimate ahead of time; publish them at 1/dt or set tick_on: timer",
            )
            self._grid_anchor_ns = None
            return
        for _ in range(missed):
            tick_ns = self._last_tick_ns + self._period_ns
            if tick_ns >= stamp_ns or not self._tick(tick_ns, catching_up=True):
                break
            self.coasting_ticks += 1
            self._grid_ticks += 1

    def _on_command(self, msg: Float64MultiArray) -> None:
        self.received["command"] += 1
        try:
            self._command = self.est.check_action(
                command_to_vector(msg, self.est.action_dim, self.est.action_names)
            )
        except (MessageError, InputError) as err:
            self._reject("command", err.reason, str(err))

    # ------------------------------------------------------------------ ticking
    def _on_timer(self) -> None:
        now = self._now_ns()
        if now == 0:
            return  # use_sim_time before the first /clock message: no time to stamp with
        period_ns = self._period_ns
        if self._tick_on == "timer":
            self._on_tick_timer(now)
            return
        if self._last_tick_ns is None:
            return  # coasting starts after the first input-driven tick
        # Coast one period at a time once the input is overdue, stamping each tick where the
        # missing sample would have been. Overdue is judged on the input's own time base (its
        # stamps may lag our clock, e.g. a replay on a busy machine), so coasted stamps never
        # run ahead of the samples still to come.
        for _ in range(10):
            if now - self._input_lag_ns - self._last_tick_ns < self._coast_after_ns:
                break
            if self._tick(self._last_tick_ns + period_ns, coasted=True):
                self.coasting_ticks += 1
                self._grid_ticks += 1

    def _on_tick_timer(self, now: int) -> None:
        """``tick_on: timer``: one step per period of the clock, on a grid of periods."""
        period_ns = self._period_ns
        if self._last_tick_ns is None or self.est.uses_dt or now <= self._last_tick_ns:
            self._tick(now)  # (a clock going back is handled there)
            # The grid starts where the timer meant this call to run, so that a late first
            # call does not put every later one half a period off the grid.
            until = self._tick_timer.time_until_next_call()
            late = 0 if until is None else min(max(period_ns - until, 0), period_ns // 2)
            self._grid_ns = now - late
            return
        # The clock can pass several periods between two callbacks: under `ros2 bag play
        # --clock` (40 Hz by default) a sim-time timer fires irregularly, up to about 0.6 s
        # apart in our tests, and a wall timer can run late. A model with a fixed dt then needs
        # one step per period passed; the grid keeps the count exact.
        periods = round((now - self._grid_ns) / period_ns)
        if periods < 1:
            return
        if (periods - 1) * period_ns > MAX_CATCH_UP_NS:  # a leap ahead: not replayed
            self._tick(now)
            self._grid_ns = now
            return
        for k in range(1, periods):
            self._tick(self._grid_ns + k * period_ns, catching_up=True)
        self._tick(now)
        self._grid_ns += periods * period_ns

    def _tick(self, tick_ns: int, catching_up: bool = False, coasted: bool = False) -> bool:
        """One step at ``tick_ns``; ``catching_up``: a tick for a period already past, which
        leaves samples stamped after it to the tick of their own time; ``coasted``: a tick
        without its input. False when no step ran."""
        if self._last_tick_ns is not None and tick_ns <= self._last_tick_ns:
            if self._last_tick_ns - tick_ns > JUMP_BACK_NS:
                self._restart("the clock", self._last_tick_ns - tick_ns)
            else:
                self.rejected[("tick", "repeated_time")] += 1
                return False
        inputs: dict[str, np.ndarray | None] = {}
        for source in self._sources:
            slot = self._slots[source]
            if catching_up and slot.value is not None and slot.stamp_ns > tick_ns:
                value = None
            else:
                value, slot.value = slot.value, None
            if value is not None and tick_ns - slot.stamp_ns > self._timeout_ns:
                self._reject(
                    source,
                    "stale",
                    f"sample stamped {(tick_ns - slot.stamp_ns) * 1e-9:.3f} s before the tick, "
                    f"sensor_timeout is {self._timeout_ns * 1e-9:.3f} s (raise it if the "
                    "driver stamps that much before delivery)",
                )
                value = None
            if value is None:
                self.missing[source] += 1
            if source == "image":
                inputs[self._image_sensor] = value
                continue
            start = 0
            for name in self._vector_sensors:
                dim = self.est.inputs[name].shape[0]
                inputs[name] = None if value is None else value[start : start + dim]
                start += dim
        command, self._command = self._command, None
        dt = None
        if self.est.uses_dt and self._last_tick_ns is not None:
            dt = (tick_ns - self._last_tick_ns) * 1e-9
        try:
            out = self.est.step(inputs, action=command, dt=dt)
        except InputError as err:  # inputs were checked on arrival; this is a bug guard
            self._reject("tick", err.reason, str(err))
            return False
        self._last_tick_ns = tick_ns
        self.ticks += 1
        # a late tick's stamp is a period or more old: it would not time the input's path
        timed = not (catching_up or coasted)
        self._publish(out, ns_to_stamp(tick_ns + self._offset_ns), tick_ns, timed)
        self.est.advance()  # the next tick's prior, now that the estimate is out
        return True

    def _publish(self, out: EstimatorOutput, stamp: Time, tick_ns: int, timed: bool) -> None:
        frame = self._frame_id
        state = fill_joint_state(self._state_msg, stamp, out.position, out.velocity)
        # Read before publish: the call can return late when the subscriber's wake-up preempts
        # this process, after the message has already gone out.
        handed_ns = time.time_ns()
        self.pub_state.publish(state)
        if timed and not self._sim_time:
            # input stamp (or the timer's now) to the ~/state publish, wall clock
            self.input_to_publish.add(max(0.0, (handed_ns - tick_ns) * 1e-9))
        self.pub_stddev.publish(
            fill_joint_state(self._stddev_msg, stamp, out.position_std, out.velocity_std)
        )
        if self.pub_prediction is not None:
            pred = self.est.predict(self._horizon)
            self.pub_prediction.publish(
                make_trajectory(
                    stamp, frame, self._joint_names, pred.dt, pred.position, pred.velocity
                )
            )
            self.pub_prediction_stddev.publish(
                make_trajectory(
                    stamp, frame, self._joint_names, pred.dt, pred.position_std, pred.velocity_std
                )
            )
        if self.pub_markers is not None:
            self.pub_markers.publish(self._markers(out, stamp))

    def _markers(self, out: EstimatorOutput, stamp: Time) -> MarkerArray:
        """The estimated chain (solid) and the chains at -2 and +2 sigma (faint)."""
        markers = []
        for k, (sign, alpha) in enumerate(((0.0, 1.0), (-2.0, 0.3), (2.0, 0.3))):
            points = chain_points(out.position + sign * out.position_std, self._link_lengths)
            marker = Marker()
            marker.header.stamp = stamp
            marker.header.frame_id = self._frame_id
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

    # ------------------------------------------------------------------ services, diagnostics
    def _restart(self, what: str, jump_ns: int) -> None:
        self.jump_resets += 1
        self._throttle.warn(
            f"{what}/jump",
            f"{what} jumped back by {jump_ns * 1e-9:.3f} s (a restarted simulation or a "
            "replayed bag): belief reset",
        )
        self._reset_state()

    def _reset_state(self) -> None:
        self.est.reset()
        for slot in self._slots.values():
            slot.value, slot.last_accepted_ns = None, None
        self._command = None
        self._last_tick_ns = None
        self._grid_anchor_ns = None

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        steps = self.est.steps_since_reset
        last_tick = self._last_tick_ns
        self._reset_state()
        # Keep stamps strictly increasing across the reset.
        self._last_tick_ns = last_tick
        response.success = True
        response.message = f"belief reset to the initial belief after {steps} ticks"
        self.get_logger().info(response.message)
        return response

    def _silent_message(self, source: str, topic: str) -> str:
        expected = self._topic_types[source]
        # DDS never connects a publisher of another type: say so, it is not a remapping problem
        others = sorted(
            {info.topic_type for info in self.get_publishers_info_by_topic(topic)} - {expected}
        )
        if not others:
            return f"nothing received on {topic} yet: is it remapped to your topic?"
        hint = (
            " (decompress it: ros2 run image_transport republish compressed raw)"
            if COMPRESSED_IMAGE in others
            else ""
        )
        return (
            f"nothing received on {topic}: its publishers send {', '.join(others)}, this input "
            f"takes {expected}{hint}"
        )

    def diagnostics(self) -> DiagnosticStatus:
        """The estimator's status: latency, tick rate, counts of missing and rejected inputs."""
        now = time.monotonic()
        elapsed = max(now - self._last_diag_time, 1e-9)
        rate = (self.ticks - self._ticks_at_last_diag) / elapsed
        self._ticks_at_last_diag, self._last_diag_time = self.ticks, now
        est = self.est
        values = {
            "model": est.name,
            "device": str(est.device),
            "backend": est.backend,
            "cuda_graph": str(est.uses_cuda_graph).lower(),
            "split_step": str(est.splits_step).lower(),
            "cpu_affinity": ",".join(map(str, self.cpus)) if self.cpus else "any",
            "tick_source": self._tick_on,
            "tick_period_s": f"{self._period:.6f}",
            "tick_rate_hz": f"{rate:.3f}",
            "ticks": str(self.ticks),
            "coasting_ticks": str(self.coasting_ticks),
            "ticks_ahead": str(self.ticks_ahead),
            "gap_resets": str(self.gap_resets),
            "jump_resets": str(self.jump_resets),
            "step_latency_p50_ms": f"{est.latency.p50_ms:.4f}",
            "step_latency_p99_ms": f"{est.latency.p99_ms:.4f}",
            "step_latency_max_ms": f"{est.latency.max_ms:.4f}",
            "model_step_p50_ms": f"{est.model_latency.p50_ms:.4f}",
            "input_to_publish_p50_ms": f"{self.input_to_publish.p50_ms:.4f}",
            "input_to_publish_p99_ms": f"{self.input_to_publish.p99_ms:.4f}",
        }
        for source, count in sorted(self.received.items()):
            values[f"received.{source}"] = str(count)
        for source, count in sorted(self.missing.items()):
            values[f"missing.{source}"] = str(count)
        for source, count in sorted(self.superseded.items()):
            values[f"superseded.{source}"] = str(count)
        for (source, reason), count in sorted(self.rejected.items()):
            values[f"rejected.{source}.{reason}"] = str(count)
        for (source, reason), count in sorted(self.ignored.items()):
            values[f"ignored.{source}.{reason}"] = str(count)
        status = DiagnosticStatus()
        status.name = f"{self.get_fully_qualified_name()}: RKN estimator"
        status.hardware_id = est.name
        # WARN while inputs are being refused, not forever after one bad message
        rejected = sum(self.rejected.values())
        recent, self._rejected_at_last_diag = rejected - self._rejected_at_last_diag, rejected
        status.level = DiagnosticStatus.WARN if recent or not self.ticks else DiagnosticStatus.OK
        status.message = (
            f"{self.ticks} ticks, {recent} inputs rejected in the last {elapsed:.1f} s "
            f"({rejected} in all)"
            if self.ticks
            else "waiting for the first tick"
        )
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        return status

    def _publish_diagnostics(self) -> None:
        for source, topic in self._topics.items():
            if not self.received[source]:  # a remapping that missed goes unnoticed otherwise
                self._throttle.warn(
                    f"{source}/silent", lambda s=source, t=topic: self._silent_message(s, t)
                )
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [self.diagnostics()]
        self.pub_diag.publish(msg)


def _type_name(msg_type: type) -> str:
    """``sensor_msgs.msg.Image`` -> ``sensor_msgs/msg/Image``, as the graph reports types."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def main(args: list[str] | None = None) -> int:
    """Console script ``rkn_estimator``: exits 1 with one line when the model cannot serve."""
    return run_node(NODE_NAME, EstimatorNode, args, (StartupError,))


if __name__ == "__main__":
    sys.exit(main())
