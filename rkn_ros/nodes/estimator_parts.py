"""The estimator's parts, shared by ``rkn_estimator`` (:mod:`rkn_ros.nodes.estimator_node`)
and the managed ``rkn_lifecycle_estimator`` (:mod:`rkn_ros.nodes.lifecycle_estimator`):
declare, configure (load and check the model), activate (subscribe and publish), deactivate and
clean up; the callbacks translate messages and delegate (see estimator_node's docstring).
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.clock import Clock, ClockType
from rclpy.qos_overriding_options import QoSOverridingOptions
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger

from rkn_ros.data.messages import MessageError
from rkn_ros.nodes.clock_guard import guard_clock
from rkn_ros.nodes.conversions import (
    command_to_vector,
    ns_to_stamp,
)
from rkn_ros.nodes.estimator_diagnostics import (
    DiagnosticsReport,
    silent_input_message,
    unusable_estimate,
)
from rkn_ros.nodes.estimator_outputs import EstimatorOutputs
from rkn_ros.nodes.estimator_params import PARAMETERS, EstimatorSettings
from rkn_ros.nodes.estimator_runtime_params import apply_runtime_parameters
from rkn_ros.nodes.estimator_sensors import JOINT_QOS, SensorCallbacks, tick_inputs
from rkn_ros.nodes.params import Throttle, declare, declare_table, resolve_share_path
from rkn_ros.nodes.sensor_inputs import topic_parameters
from rkn_ros.nodes.startup import (
    COMMAND,
    check_settings,
    load_estimator,
    plan_serving,
    sensor_specs,
)
from rkn_ros.runtime import InputError, StreamingEstimator
from rkn_ros.runtime.latency import LatencyStats
from rkn_ros.runtime.ticks import Plan, Reset, ResetReason, Tick, TickScheduler

NODE_NAME = "rkn_estimator"
COMMAND_QOS = JOINT_QOS


class EstimatorParts(SensorCallbacks):
    """The estimator on an rclpy node, in the steps a managed node takes (docs/runtime.md,
    "Lifecycle"): :meth:`declare_estimator` at construction, :meth:`configure_estimator` loads
    and checks the model and makes the publishers, :meth:`activate_estimator` subscribes and
    ticks, :meth:`deactivate_estimator` stops both (the model stays),
    :meth:`cleanup_estimator` frees the model. Mixed into :class:`EstimatorNode` (all steps at
    start-up) and the managed node of :mod:`rkn_ros.nodes.lifecycle_estimator`."""

    def declare_estimator(self) -> None:
        """Declare the parameters (the run-time ones settable) and guard ``/clock``."""
        self.settings = EstimatorSettings(**declare_table(self, PARAMETERS))
        self.throttle = Throttle(self, self.settings.warn_throttle)
        self.est: StreamingEstimator | None = None
        self.active = False
        # since start-up (a malformed /clock is counted in any state)
        self.rejected: Counter[tuple[str, str]] = Counter()  # (input, reason): refused messages
        self.received: Counter[str] = Counter()
        self.ignored: Counter[tuple[str, str]] = Counter()
        self._subscriptions_by_input: dict[str, Subscription] = {}
        self._tick_timer: Timer | None = None
        self._sim_time = guard_clock(self, self._on_bad_clock, self._on_clock)
        self.add_on_set_parameters_callback(lambda params: apply_runtime_parameters(self, params))

    def configure_estimator(self) -> None:
        """Load and check the model, make the publishers, the reset service and the
        diagnostics; :class:`StartupError` when the model cannot serve."""
        s = self.settings
        check_settings(s)
        est, cpus = load_estimator(s, resolve_share_path(s.model_path))
        plan = plan_serving(s, est, self._declare_sensor_topics(est))
        # (the plan before any part is made: a refusal leaves nothing behind)
        self.est, self.cpus, self.plan = est, cpus, plan
        for warning in plan.warnings:
            self.get_logger().warning(warning)
        self.scheduler = TickScheduler(plan.ticks)
        self.heard: dict[str, float] = {}  # input -> monotonic time of its last message
        self.input_to_publish = LatencyStats(s.latency_window)
        self._command: np.ndarray | None = None
        self._measured = False  # no tick before the first input (docs/runtime.md, "Priors")
        self.unusable_estimates = 0  # non-finite estimates, not published
        self.step_failures = 0
        self.last_step_error = ""
        self._other_joints_logged = False
        self._input_joints = frozenset(joint for joint, _ in plan.joint_entries)
        self.outputs = EstimatorOutputs(
            self, self.est, plan.joint_names, s.frame_id, s.prediction_horizon,
            plan.link_lengths if s.publish_markers else None,
        )
        self.pub_state = self.outputs.pub_state
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._reset_service = self.create_service(Trigger, "~/reset", self._on_reset)
        self._report = DiagnosticsReport(self)
        self._diagnostics_timer = self.create_timer(
            s.diagnostics_period, self._publish_diagnostics,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )

    def activate_estimator(self) -> None:
        """Subscribe to the inputs and start ticking."""
        plan = self.plan
        qos = QoSOverridingOptions.with_default_policies()
        # The command subscription comes first: when a command and the sample of the same
        # step are both waiting, the executor serves them in creation order, and the tick that
        # the sample triggers must already see its command.
        wanted = {COMMAND: (f"~/{COMMAND}", Float64MultiArray, self._on_command, COMMAND_QOS)
                  } if self.est.action_dim else {}
        wanted.update(self.sensor_subscriptions())
        # the tick_on input last, for the same reason: the samples of its step, waiting beside
        # it, are taken before its tick
        if self.settings.tick_on in wanted:
            wanted[self.settings.tick_on] = wanted.pop(self.settings.tick_on)
        # the resolved names, after remapping: what a user checks a remapping against
        self._subscriptions_by_input = {
            source: self.create_subscription(
                msg_type, topic, callback, profile, qos_overriding_options=qos
            )
            for source, (topic, msg_type, callback, profile) in wanted.items()
        }
        # silence counts from the activation
        self.heard = dict.fromkeys(self._subscriptions_by_input, time.monotonic())
        self._tick_timer = self.create_timer(plan.period_s, self._on_timer)
        self.active = True
        self.get_logger().info(self._startup_line())

    def deactivate_estimator(self) -> None:
        """Stop ticking and listening; nothing goes out on the estimate topics until the next
        activation. The belief stays."""
        self.active = False
        if self._tick_timer is not None:
            self.destroy_timer(self._tick_timer)
            self._tick_timer = None
        for subscription in self._subscriptions_by_input.values():
            self.destroy_subscription(subscription)
        self._subscriptions_by_input = {}

    def cleanup_estimator(self) -> None:
        """Free the model and everything configure made."""
        self.deactivate_estimator()
        if self.est is None:
            return
        self.outputs.destroy()
        self.destroy_publisher(self.pub_diag)
        self.destroy_service(self._reset_service)
        self.destroy_timer(self._diagnostics_timer)
        self.est = None

    def _declare_sensor_topics(self, est: StreamingEstimator) -> dict[str, str]:
        """The per-sensor topic parameters, declared from the model's list of sensors (as
        robot_localization declares ``odomN``): input name -> topic ('' = ``~/<name>``)."""
        topics = {}
        for param, key in topic_parameters(sensor_specs(est)).items():
            description = f"topic of input '{key}'; empty = ~/{key} (remap it, or name it here)"
            value = self.get_parameter(param).value if self.has_parameter(param) else declare(
                self, param, "", description, read_only=True)
            topics[key] = value
        return topics

    def _startup_line(self) -> str:
        est = self.est
        topics = sorted(sub.topic_name for sub in self._subscriptions_by_input.values())
        return (
            f"model '{est.name}' on {est.device} ({est.backend})"
            f"{f' (no ONNX Runtime: {est.backend_error})' if est.backend_error else ''}"
            f"{f' (no CUDA graph: {est.graph_error})' if est.graph_error else ''}; inputs "
            f"{list(est.inputs)} from {topics}; tick on {self.settings.tick_on} every "
            f"{self.plan.period_s:.4f} s; outputs "
            f"{list(est.layout.names)}{f'; pinned to CPUs {self.cpus}' if self.cpus else ''}"
        )

    # ------------------------------------------------------------------ inputs
    def _now_ns(self) -> int:
        # Without sim time the ROS clock is the system clock; reading that directly saves two
        # Python objects per call.
        clock = self.get_clock()
        return clock.now().nanoseconds if clock.ros_time_is_active else time.time_ns()

    def _reject(self, source: str, reason: str, message: str) -> None:
        self.rejected[(source, reason)] += 1
        self._warn(source, reason, message)

    def _on_command(self, msg: Float64MultiArray) -> None:
        self.received["command"] += 1
        self.heard["command"] = time.monotonic()
        try:
            self._command = self.est.check_action(
                command_to_vector(msg, self.est.action_dim, self.est.action_names)
            )
        except (MessageError, InputError) as err:
            self._reject("command", err.reason, str(err))

    def _on_clock(self) -> None:
        """A good /clock message: samples stamped ahead of the old time may be due now."""
        self.received["clock"] += 1
        if self.active:
            self._run(self.scheduler.on_clock(self._now_ns()))

    def _on_bad_clock(self, problem: str) -> None:
        self.received["clock"] += 1
        self._reject("clock", "malformed", f"{problem}; the clock keeps its last good time")

    # ------------------------------------------------------------------ ticking
    def _on_timer(self) -> None:
        now = self._now_ns()
        if now == 0 or not self._measured:
            # use_sim_time before the first /clock message: no time to stamp with; before the
            # first input: no estimate, only the prior (docs/runtime.md, "Priors")
            return
        until = self._tick_timer.time_until_next_call()
        late = 0 if until is None else self.scheduler.config.period_ns - until
        self._run(self.scheduler.on_timer(now, late))

    def _warn(self, source: str, reason: str, detail: str) -> None:
        if (source, reason) != ("tick", "repeated_time"):  # a clock standing still: counted only
            self.throttle.warn(
                f"{source}/{reason}", f"dropped {source} message ({reason}): {detail}"
            )

    def _run(self, plan: Plan) -> None:
        """What the scheduler asks for: warnings, resets and ticks, in order."""
        for drop in plan.drops:
            self._warn(drop.source, drop.reason.value, drop.detail)
        if plan.ahead:
            period = self.plan.period_s
            self.throttle.warn(
                "tick/ahead",
                f"{self.settings.tick_on} messages come faster than the model's 1/dt "
                f"({1.0 / period:g} Hz): one step of {period:g} s per message runs its "
                "estimate ahead of time; publish them at 1/dt or set tick_on: timer",
            )
        for action in plan.actions:
            if isinstance(action, Reset):
                self._reset_belief(action)
            else:
                self._step(action)

    def _reset_belief(self, reset: Reset) -> None:
        if reset.reason is ResetReason.CLOCK_JUMP:
            self.throttle.warn(
                "clock/jump",
                f"the clock jumped back by {reset.by_ns * 1e-9:.3f} s (a restarted simulation "
                "or a replayed bag): belief reset",
            )
            self._command = None
        self.est.reset()

    def _step(self, tick: Tick) -> None:
        inputs = tick_inputs(self.plan, tick.samples)
        command, self._command = self._command, None
        dt = tick.dt_ns * 1e-9 if self.est.uses_dt and tick.dt_ns is not None else None
        try:
            try:
                out = self.est.step(inputs, action=command, dt=dt)
            except InputError as err:
                # Inputs were checked on arrival (a frame by its decoding), so this guards
                # against a bug: the tick still runs, with its inputs missing, and its estimate
                # goes out.
                self._reject("tick", err.reason, str(err))
                out = self.est.step(dict.fromkeys(inputs), action=command, dt=dt)
        except (RuntimeError, FloatingPointError) as err:  # torch's and ONNX Runtime's failures
            self.step_failures += 1
            self.last_step_error = str(err).splitlines()[0] if str(err) else type(err).__name__
            self.throttle.warn("tick/step_failed", f"model step failed: {self.last_step_error}")
            return
        if unusable_estimate(out):
            self.unusable_estimates += 1
            self.throttle.warn(
                "tick/nonfinite", "the model's estimate is not finite: not published "
                "(/diagnostics shows ERROR; check the checkpoint and the inputs' scale)",
            )
            self.est.advance()
            return
        timed = tick.timed and not self._sim_time

        def handed(ns: int) -> None:  # input stamp (or the timer's now) to the publish, wall
            if timed:
                self.input_to_publish.add(max(0.0, (ns - tick.time_ns) * 1e-9))

        self.outputs.publish(out, ns_to_stamp(tick.stamp_ns), handed)
        self.est.advance()  # the next tick's prior, now that the estimate is out

    # ------------------------------------------------------------------ services, diagnostics
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        steps = self.est.steps_since_reset
        self.est.reset()
        self.scheduler.reset()
        self._command = None
        response.success = True
        response.message = f"belief reset to the initial belief after {steps} ticks"
        self.get_logger().info(response.message)
        return response

    def diagnostics(self) -> DiagnosticStatus:
        """The estimator's status: latency, tick rate, counts of missing and refused inputs."""
        return self._report.status()

    def _publish_diagnostics(self) -> None:
        for source, sub in self._subscriptions_by_input.items():
            if not self.received[source]:  # a remapping that missed goes unnoticed otherwise
                self.throttle.warn(
                    f"{source}/silent",
                    lambda s=source, t=sub: silent_input_message(self, t.topic_name, t.msg_type),
                )
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = self._report.statuses()
        self.pub_diag.publish(msg)
