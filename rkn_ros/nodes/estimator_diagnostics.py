"""What the estimator node says on ``/diagnostics`` (docs/runtime.md, "Diagnostics"), in
diagnostic_updater's conventions: statuses named ``<node>: <task>``, each with a
``hardware_id``; one for the estimator, one per input, one for the rate of ``~/state``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from rkn_ros.data.messages import COMPRESSED_IMAGE
from rkn_ros.runtime import EstimatorOutput

if TYPE_CHECKING:
    from rkn_ros.nodes.estimator_parts import EstimatorParts as EstimatorNode


def type_name(msg_type: type) -> str:
    """``sensor_msgs.msg.Image`` -> ``sensor_msgs/msg/Image``, as the graph reports types."""
    return f"{msg_type.__module__.split('.')[0]}/msg/{msg_type.__name__}"


def silent_input_message(node: EstimatorNode, topic: str, msg_type: type) -> str:
    """Why nothing may have come on ``topic``: a remapping that missed, or publishers of
    another type (DDS never connects those: not a remapping problem)."""
    expected = type_name(msg_type)
    others = sorted(
        {info.topic_type for info in node.get_publishers_info_by_topic(topic)} - {expected}
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


def unusable_estimate(out: EstimatorOutput) -> bool:
    """Whether a tick's estimate must not go out: a step the runtime's output guard replaced by
    the last good belief (``guarded``), or one that is not finite."""
    return out.guarded or not (
        np.isfinite(out.mean).all() and np.isfinite(out.std).all()
    )


def make_status(
    level: bytes, name: str, message: str, hardware_id: str, values: dict[str, str]
) -> DiagnosticStatus:
    """A status with its key/values."""
    return DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=hardware_id,
        values=[KeyValue(key=k, value=v) for k, v in values.items()],
    )


@dataclass
class FrequencyWindow:
    """diagnostic_updater's FrequencyStatus without ROS: the rate of events over the last
    ``window`` checks, judged against ``min_hz``/``max_hz`` widened by ``tolerance``."""

    min_hz: float
    max_hz: float
    tolerance: float = 0.1
    window: int = 5
    start_s: float = field(default_factory=time.monotonic)
    _times: list[float] = field(init=False)
    _counts: list[int] = field(init=False)
    _index: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._times = [self.start_s] * self.window
        self._counts = [0] * self.window

    def check(self, count: int, now_s: float) -> tuple[bytes, str, dict[str, str]]:
        """Level, message and key/values with ``count`` events since the start."""
        events = count - self._counts[self._index]
        duration = max(now_s - self._times[self._index], 1e-9)
        self._counts[self._index], self._times[self._index] = count, now_s
        self._index = (self._index + 1) % self.window
        rate = events / duration
        low, high = self.min_hz * (1 - self.tolerance), self.max_hz * (1 + self.tolerance)
        if events == 0:
            level, message = DiagnosticStatus.ERROR, "No events recorded."
        elif rate < low:
            level, message = DiagnosticStatus.WARN, "Frequency too low."
        elif rate > high:
            level, message = DiagnosticStatus.WARN, "Frequency too high."
        else:
            level, message = DiagnosticStatus.OK, "Desired frequency met"
        values = {
            "Events in window": str(events),
            "Events since startup": str(count),
            "Duration of window (s)": f"{duration:.6f}",
            "Actual frequency (Hz)": f"{rate:.6f}",
        }
        if self.min_hz == self.max_hz:
            values["Target frequency (Hz)"] = f"{self.min_hz:.6f}"
        if self.min_hz > 0:
            values["Minimum acceptable frequency (Hz)"] = f"{low:.6f}"
        if math.isfinite(self.max_hz):
            values["Maximum acceptable frequency (Hz)"] = f"{high:.6f}"
        return level, message, values


def input_status(
    node: EstimatorNode, source: str, topic: str, msg_type: type, now_s: float
) -> DiagnosticStatus:
    """OK while ``source`` is fresh; WARN once silent past the sensor timeout (or never heard
    from), naming it and for how long."""
    timeout_s = node.scheduler.config.timeout_ns * 1e-9
    received = node.received[source]
    silent_s = now_s - node.heard[source]
    values = {
        "topic": topic,
        "type": type_name(msg_type),
        "received": str(received),
        "silent_s": f"{silent_s:.3f}",
        "sensor_timeout_s": f"{timeout_s:.3f}",
    }
    if not received:
        level = DiagnosticStatus.WARN
        message = f"{source}: {silent_input_message(node, topic, msg_type)}"
    elif silent_s > timeout_s:
        level = DiagnosticStatus.WARN
        message = (
            f"{source} on {topic} silent for {silent_s:.1f} s (sensor_timeout {timeout_s:g} s)"
        )
    else:
        level, message = DiagnosticStatus.OK, f"{source} on {topic} fresh"
    return make_status(level, f"{node.get_fully_qualified_name()}: {source} input", message,
                       topic, values)


class DiagnosticsReport:
    """The node's statuses at each call (:meth:`statuses`): the estimator's, each input's and
    the rate of ``~/state``."""

    def __init__(self, node: EstimatorNode) -> None:
        self._node = node
        self._time = time.monotonic()
        self._ticks = 0
        self._refused = 0
        self._unusable = 0
        self._failed = 0
        rate = 1.0 / node.plan.period_s
        self.state_rate = FrequencyWindow(rate, rate, start_s=self._time)

    def statuses(self) -> list[DiagnosticStatus]:
        """The estimator's status, then (while active) one per input and ``~/state``'s rate."""
        node = self._node
        now = time.monotonic()
        statuses = [self.status(now)]
        if node.active:
            for source, sub in node._subscriptions_by_input.items():
                statuses.append(input_status(node, source, sub.topic_name, sub.msg_type, now))
            level, message, values = self.state_rate.check(node.outputs.published, now)
            topic = node.outputs.pub_state.topic_name
            statuses.append(make_status(
                level, f"{node.get_fully_qualified_name()}: {topic} topic frequency", message,
                node.est.name, values,
            ))
        return statuses

    def status(self, now: float | None = None) -> DiagnosticStatus:
        """The estimator's status now; the rate and the WARN/ERROR levels count from the
        previous call: ERROR while estimates are non-finite or the model step fails, WARN
        while inputs are refused or none has come yet, OK otherwise."""
        node = self._node
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._time, 1e-9)
        counts = node.scheduler.counts
        est = node.est
        rate = (counts.ticks - self._ticks) / elapsed
        self._time, self._ticks = now, counts.ticks
        values = {
            "model": est.name,
            "device": str(est.device),
            "backend": est.backend,
            "cuda_graph": str(est.uses_cuda_graph).lower(),
            "split_step": str(est.splits_step).lower(),
            "cpu_affinity": ",".join(map(str, node.cpus)) if node.cpus else "any",
            "tick_source": node.settings.tick_on,
            "tick_period_s": f"{node.plan.period_s:.6f}",
            "tick_rate_hz": f"{rate:.3f}",
            "ticks": str(counts.ticks),
            "coasting_ticks": str(counts.coasting_ticks),
            "ticks_ahead": str(counts.ticks_ahead),
            "gap_resets": str(counts.gap_resets),
            "jump_resets": str(counts.jump_resets),
            "requested_resets": str(counts.requested_resets),
            "forward_jumps": str(counts.forward_jumps),
            "nonfinite_outputs": str(est.nonfinite_outputs),
            "step_latency_p50_ms": f"{est.latency.p50_ms:.4f}",
            "step_latency_p99_ms": f"{est.latency.p99_ms:.4f}",
            "step_latency_max_ms": f"{est.latency.max_ms:.4f}",
            "model_step_p50_ms": f"{est.model_latency.p50_ms:.4f}",
            "input_to_publish_p50_ms": f"{node.input_to_publish.p50_ms:.4f}",
            "input_to_publish_p99_ms": f"{node.input_to_publish.p99_ms:.4f}",
            "unusable_estimates": str(node.unusable_estimates),
            "step_failures": str(node.step_failures),
        }
        refused = node.rejected + counts.dropped
        for prefix, counter in (
            ("received", node.received),
            ("missing", counts.missing),
            ("superseded", counts.superseded),
            ("held", counts.held),
            ("burst", counts.burst),
            ("rejected", refused),
            ("ignored", node.ignored),
        ):
            for key, count in sorted(counter.items()):
                name = key if isinstance(key, str) else ".".join(key)
                values[f"{prefix}.{name}"] = str(count)
        total = sum(refused.values())
        # levels judge the time since the last call, not everything since start-up
        recent, self._refused = total - self._refused, total
        unusable, self._unusable = node.unusable_estimates - self._unusable, node.unusable_estimates
        failed, self._failed = node.step_failures - self._failed, node.step_failures
        if failed or unusable:
            level = DiagnosticStatus.ERROR
            message = (
                f"model step failed {failed} times in the last {elapsed:.1f} s: "
                f"{node.last_step_error}" if failed else
                f"{unusable} non-finite estimates in the last {elapsed:.1f} s (not published)"
            )
        elif not node.active:
            level, message = DiagnosticStatus.OK, "inactive: no input taken, no estimate published"
        elif not counts.ticks:
            level, message = DiagnosticStatus.WARN, "waiting for the first input"
        else:
            level = DiagnosticStatus.WARN if recent else DiagnosticStatus.OK
            message = (
                f"{counts.ticks} ticks, {recent} inputs rejected in the last {elapsed:.1f} s "
                f"({total} in all)"
            )
        return make_status(
            level, f"{node.get_fully_qualified_name()}: RKN estimator", message, est.name, values
        )
