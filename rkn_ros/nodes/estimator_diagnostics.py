"""What the estimator node says on ``/diagnostics``, and about an input it never heard from."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

from rkn_ros.data.messages import COMPRESSED_IMAGE

if TYPE_CHECKING:
    from rkn_ros.nodes.estimator_node import EstimatorNode


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


class DiagnosticsReport:
    """The node's status at each call: latency, tick rate since the last call, counts; WARN
    before the first tick and while inputs are refused (any since the last call), OK
    otherwise."""

    def __init__(self, node: EstimatorNode) -> None:
        self._node = node
        self._time = time.monotonic()
        self._ticks = 0
        self._refused = 0

    def status(self) -> DiagnosticStatus:
        """The status now; the rate and the WARN level count from the previous call."""
        node = self._node
        now = time.monotonic()
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
            "nonfinite_outputs": str(est.nonfinite_outputs),
            "step_latency_p50_ms": f"{est.latency.p50_ms:.4f}",
            "step_latency_p99_ms": f"{est.latency.p99_ms:.4f}",
            "step_latency_max_ms": f"{est.latency.max_ms:.4f}",
            "model_step_p50_ms": f"{est.model_latency.p50_ms:.4f}",
            "input_to_publish_p50_ms": f"{node.input_to_publish.p50_ms:.4f}",
            "input_to_publish_p99_ms": f"{node.input_to_publish.p99_ms:.4f}",
        }
        refused = node.rejected + counts.dropped
        for prefix, counter in (
            ("received", node.received),
            ("missing", counts.missing),
            ("superseded", counts.superseded),
            ("held", counts.held),
            ("rejected", refused),
            ("ignored", node.ignored),
        ):
            for key, count in sorted(counter.items()):
                name = key if isinstance(key, str) else ".".join(key)
                values[f"{prefix}.{name}"] = str(count)
        msg = DiagnosticStatus()
        msg.name = f"{node.get_fully_qualified_name()}: RKN estimator"
        msg.hardware_id = est.name
        # WARN while inputs are being refused, not forever after one bad message
        total = sum(refused.values())
        recent, self._refused = total - self._refused, total
        msg.level = DiagnosticStatus.WARN if recent or not counts.ticks else DiagnosticStatus.OK
        msg.message = (
            f"{counts.ticks} ticks, {recent} inputs rejected in the last {elapsed:.1f} s "
            f"({total} in all)"
            if counts.ticks
            else "waiting for the first tick"
        )
        msg.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        return msg
