"""The events and plans of :mod:`rkn_ros.runtime.ticks`: typed and immutable (named tuples
for what each event returns: they are made per message), no ROS."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

# Whatever the caller made of a message (the node: a checked numpy array); never None.
Sample = object

TIMER = "timer"


class TickKind(Enum):
    """Why a tick runs."""

    INPUT = "input"  # a sample of the tick_on input, at its stamp
    TIMER = "timer"  # tick_on timer, at the clock's time
    CATCH_UP = "catch_up"  # a period already past (a dropped sample, a clock leap)
    COASTED = "coasted"  # the tick_on input is overdue


class DropReason(str, Enum):
    """Why a sample (or a tick) was dropped; the value is the key on /diagnostics."""

    ZERO_STAMP = "zero_stamp"
    FUTURE_STAMP = "future_stamp"
    STAMP_BACKWARDS = "stamp_backwards"
    STALE = "stale"
    REPEATED_TIME = "repeated_time"


class ResetReason(Enum):
    """Why the belief starts fresh."""

    CLOCK_JUMP = "clock_jump"  # the clock went back by more than JUMP_BACK_NS
    GAP = "gap"  # the tick_on input resumed after more than reset_after_gap


@dataclass(frozen=True)
class TickConfig:
    """What the scheduler needs to know; ``inputs`` are sampled at every tick.

    ``fixed_dt``: each step advances the model by one period (a model without a ``dt`` input).
    ``sensor_timeout_ns`` None: two periods. ``reset_after_gap_ns`` 0: never (tick_on an input
    only). ``stamp_offset_ns`` is added to each tick's time in :attr:`Tick.stamp_ns`.
    """

    period_ns: int
    inputs: tuple[str, ...]
    tick_on: str = TIMER
    fixed_dt: bool = True
    sensor_timeout_ns: int | None = None
    max_future_ns: int = 500_000_000
    reset_after_gap_ns: int = 0
    stamp_offset_ns: int = 0

    def __post_init__(self) -> None:
        if self.period_ns <= 0:
            raise ValueError(f"period_ns must be positive, got {self.period_ns}")
        if self.tick_on != TIMER and self.tick_on not in self.inputs:
            raise ValueError(
                f"tick_on {self.tick_on!r} is neither {TIMER!r} nor one of {self.inputs}"
            )
        if min(self.max_future_ns, self.reset_after_gap_ns, self.sensor_timeout_ns or 0) < 0:
            raise ValueError("max_future_ns, reset_after_gap_ns and sensor_timeout_ns must be >= 0")

    @property
    def timeout_ns(self) -> int:
        """A sample older than this at the tick is stale."""
        return self.sensor_timeout_ns if self.sensor_timeout_ns else 2 * self.period_ns


class Tick(NamedTuple):
    """One step to run at ``time_ns`` with ``samples`` (input -> sample, None = missing)."""

    time_ns: int
    stamp_ns: int  # time_ns + stamp_offset: the output's stamp
    kind: TickKind
    samples: dict[str, Sample | None]
    dt_ns: int | None  # since the previous tick; None for the first since a reset

    @property
    def timed(self) -> bool:
        """Whether the tick runs as its input (or the timer) comes, so that input-to-output
        latency is worth measuring on it (a catch-up or coasted tick is a period or more old)."""
        return self.kind in (TickKind.INPUT, TickKind.TIMER)


class Reset(NamedTuple):
    """Start the belief fresh before the ticks after it; ``by_ns``: the jump or the gap."""

    reason: ResetReason
    by_ns: int


class Drop(NamedTuple):
    """A sample (``source`` an input) or a tick (``source`` "tick") dropped, and why."""

    source: str
    reason: DropReason
    detail: str


class Plan(NamedTuple):
    """What one event asks for: ``actions`` run in order; ``ahead``: the tick_on input comes
    faster than 1/dt (warn)."""

    actions: tuple[Tick | Reset, ...] = ()
    drops: tuple[Drop, ...] = ()
    ahead: bool = False

    @property
    def ticks(self) -> tuple[Tick, ...]:
        return tuple(a for a in self.actions if isinstance(a, Tick))


@dataclass
class TickCounts:
    """Totals since start-up (the node's /diagnostics)."""

    ticks: int = 0
    coasting_ticks: int = 0  # ticks without the tick_on input: coasted or for a dropped sample
    ticks_ahead: int = 0
    gap_resets: int = 0
    jump_resets: int = 0
    requested_resets: int = 0  # TickScheduler.reset calls (the node's ~/reset service)
    forward_jumps: int = 0  # the clock leapt ahead by more than MAX_CATCH_UP_NS (no reset)
    missing: Counter[str] = field(default_factory=Counter)  # ticks without a usable sample
    superseded: Counter[str] = field(default_factory=Counter)  # replaced before a tick
    held: Counter[str] = field(default_factory=Counter)  # stamped ahead: waited for the clock
    # tick_on samples stamped under half a period after the one before (a burst): still ticked
    burst: Counter[str] = field(default_factory=Counter)
    dropped: Counter[tuple[str, str]] = field(default_factory=Counter)  # (source, reason)
