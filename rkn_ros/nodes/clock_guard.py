"""``/clock`` messages checked before rclpy's time source takes them.

rclpy's ``TimeSource`` converts every ``/clock`` message with ``Time.from_msg``, which raises on
negative seconds (what a stamp past 2^31 s becomes in the message's int32): the exception
leaves the executor and ends the node. :func:`guard_clock` puts a check in front of that
subscription: a malformed message is refused (the caller warns and counts it) and the clock
keeps its last good time. ``use_sim_time`` is fixed at start-up, so no later subscription can
come without the check.
"""

from __future__ import annotations

from collections.abc import Callable

from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from rosgraph_msgs.msg import Clock as ClockMsg

CLOCK_TOPIC = "/clock"
USE_SIM_TIME = "use_sim_time"
NS_PER_S = 1_000_000_000


def clock_problem(msg: ClockMsg) -> str | None:
    """What makes a ``/clock`` message unusable, or None."""
    sec, nanosec = int(msg.clock.sec), int(msg.clock.nanosec)
    if sec < 0:
        return f"/clock stamp has negative seconds ({sec}; a time past 2^31 s wraps to that)"
    if nanosec >= NS_PER_S:
        return f"/clock stamp has nanosec {nanosec}, not under 10^9"
    return None


def guard_clock(
    node: Node, on_refused: Callable[[str], None], on_time: Callable[[], None]
) -> bool:
    """Check every ``/clock`` message of ``node``'s time source; ``on_refused(why)`` for a bad
    one, ``on_time()`` after a good one moved the clock. Refuses changing ``use_sim_time`` at
    run time. Whether the node follows ``/clock`` (use_sim_time)."""
    node.add_on_set_parameters_callback(_fixed_sim_time)
    guarded = False
    for subscription in node.subscriptions:
        if subscription.topic_name != CLOCK_TOPIC:
            continue
        take = subscription.callback

        def checked(msg: ClockMsg, take: Callable[[ClockMsg], None] = take) -> None:
            problem = clock_problem(msg)
            if problem is None:
                try:
                    take(msg)
                except (ValueError, TypeError, OverflowError) as err:  # whatever rclpy refuses
                    problem = f"/clock stamp refused by rclpy: {err}"
            if problem is None:
                on_time()
            else:
                on_refused(problem)

        subscription.callback = checked
        guarded = True
    return guarded


def _fixed_sim_time(parameters: list[Parameter]) -> SetParametersResult:
    if any(p.name == USE_SIM_TIME for p in parameters):
        return SetParametersResult(
            successful=False, reason="use_sim_time is set at start-up (restart the node)"
        )
    return SetParametersResult(successful=True)
