"""When a streaming estimator steps: a tick scheduler with no ROS in it.

Events go in: a sample of an input with its stamp and the clock's time (:meth:`TickScheduler.admit`
then :meth:`TickScheduler.accept`), a timer call (:meth:`TickScheduler.on_timer`), a clock
update (:meth:`TickScheduler.on_clock`). A :class:`Plan` comes out: the resets and ticks to run,
in order, and the samples dropped, each with its reason. All times are integer nanoseconds.

The rules (docs/runtime.md, "Ticks and stamps"):

- ``tick_on`` the timer: a tick per period of the clock; a model with a fixed step (no ``dt``
  input) gets one tick per period passed even when the clock leaps several at once (up to
  ``MAX_CATCH_UP_NS``), on a grid of periods.
- ``tick_on`` an input: a tick per sample, at its stamp. When the input is overdue by
  ``sensor_timeout`` the timer coasts, a tick per period. A fixed-step model keeps one tick per
  period of the stamps: a sample with periods missing before it first gets their ticks, counted
  on a grid anchored at an input stamp (a sample stamped late and the next on time add none);
  an input faster than ``1/dt`` is flagged (``ticks_ahead``).
- Stamps are judged against the clock: zero is refused, beyond ``now + max_future`` refused,
  ahead of ``now`` held until the clock reaches them, not after the input's newest stamp that is
  already due refused as ``stamp_backwards`` (never a reset). A future stamp therefore never makes
  a later genuine sample stale, and no tick runs ahead of the clock. Only the clock going back by
  more than ``JUMP_BACK_NS`` resets (once per jump). A leap ahead of more than
  ``MAX_CATCH_UP_NS`` is counted (``forward_jumps``, once per jump) and not replayed: no reset,
  no coasting through it; the tick_on input's next sample ticks at its stamp.

A plain control loop uses it as the node does::

    sched = TickScheduler(TickConfig(period_ns=round(est.dt * 1e9), inputs=("camera",),
                                     tick_on="camera", fixed_dt=not est.uses_dt))
    while running:
        frame, stamp_ns = camera.read()
        now = time.time_ns()
        if sched.admit("camera", stamp_ns, now) is None:        # else: dropped, with a reason
            for action in sched.accept("camera", stamp_ns, now, frame).actions:
                if isinstance(action, Reset):
                    est.reset()
                else:
                    out = est.step({"image": action.samples["camera"]})
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from rkn_ros.runtime.tick_plan import (
    TIMER,
    Drop,
    DropReason,
    Plan,
    Reset,
    ResetReason,
    Sample,
    Tick,
    TickConfig,
    TickCounts,
    TickKind,
)

__all__ = [
    "TIMER", "Drop", "DropReason", "Plan", "Reset", "ResetReason", "Sample", "Tick",
    "TickConfig", "TickCounts", "TickKind", "TickScheduler",
]

# The clock going back by more than this is a new run (a restarted simulation, a bag played
# again with --loop), not jitter: the belief starts fresh.
JUMP_BACK_NS = 1_000_000_000
# Periods missed up to this much are caught up one tick per period; a longer leap ahead (a bag
# skipped forward) is not replayed.
MAX_CATCH_UP_NS = 1_000_000_000
# Ticking on an input, this many more ticks than periods passed means the input comes faster
# than 1/dt, not a late stamp.
AHEAD_TICKS = 2
# Samples stamped ahead of the clock held per input, at most (more are refused).
MAX_HELD = 4
# Coasting ticks at most per timer call (the rest follow at the next one).
MAX_COAST_PER_CALL = 10


@dataclass
class _Slot:
    sample: Sample | None = None  # newest due sample since the last tick
    stamp_ns: int = 0
    last_stamp_ns: int | None = None  # newest stamp that has come due
    arrived_ns: int | None = None  # clock time of the last accepted sample (kept over resets)
    held: list[tuple[int, int, Sample]] = field(default_factory=list)  # (stamp, seq, sample)


class TickScheduler:
    """Decides the ticks of one estimator from its input and clock events (module docstring)."""

    def __init__(self, config: TickConfig) -> None:
        self.config = config
        self.counts = TickCounts()
        self._slots = {name: _Slot() for name in config.inputs}
        self._coast_after_ns = max(3 * config.period_ns // 2, config.timeout_ns)
        self._last_tick_ns: int | None = None
        self._last_now_ns: int | None = None
        self._grid_ns = 0  # tick_on timer: where the current period began
        self._input_lag_ns = 0  # how far the tick_on input's stamps lag the clock
        self._last_input_ns: int | None = None
        self._grid_anchor_ns: int | None = None  # tick_on an input: the stamp anchoring the grid
        self._grid_ticks = 0  # ticks since the anchor
        self._held_seq = 0
        self._actions: list[Tick | Reset] = []
        self._drops: list[Drop] = []
        self._ahead = False

    def reconfigure(self, config: TickConfig) -> None:
        """Take ``config`` from the next event on (a parameter set at run time): its timeouts,
        ``max_future`` and stamp offset; the period, inputs and tick source stay, since the
        belief and the tick grid were built on them."""
        old = self.config
        if (config.period_ns, config.inputs, config.tick_on, config.fixed_dt) != (
            old.period_ns, old.inputs, old.tick_on, old.fixed_dt
        ):
            raise ValueError("reconfigure cannot change period_ns, inputs, tick_on or fixed_dt")
        self.config = config
        self._coast_after_ns = max(3 * config.period_ns // 2, config.timeout_ns)

    @property
    def last_tick_ns(self) -> int | None:
        """The time of the last tick run (None before the first and after a clock jump)."""
        return self._last_tick_ns

    # ------------------------------------------------------------------ events
    def admit(self, source: str, stamp_ns: int, now_ns: int) -> Drop | None:
        """Judge a sample's stamp against the clock before the caller converts it; a Drop is
        counted. A clock jump seen here resets at the next plan."""
        self._observe(now_ns)
        slot = self._slot(source)
        cfg = self.config
        if stamp_ns == 0:
            return self._drop(source, DropReason.ZERO_STAMP, "header stamp is zero (unset)")
        if stamp_ns > now_ns + cfg.max_future_ns:
            return self._drop(
                source,
                DropReason.FUTURE_STAMP,
                f"header stamp {stamp_ns * 1e-9:.6f} s is {(stamp_ns - now_ns) * 1e-9:.3f} s in "
                f"the future (max_future {cfg.max_future_ns * 1e-9:g} s)",
            )
        if stamp_ns > now_ns and len(slot.held) >= MAX_HELD:
            return self._drop(
                source,
                DropReason.FUTURE_STAMP,
                f"header stamp {stamp_ns * 1e-9:.6f} s is ahead of the clock and {MAX_HELD} "
                "such samples already wait for it",
            )
        return self._check_order(source, slot, stamp_ns)

    def accept(self, source: str, stamp_ns: int, now_ns: int, sample: Sample) -> Plan:
        """A sample that passed :meth:`admit` and the caller's checks: stored for the next tick
        (held while stamped ahead of the clock); ticking on this input, its ticks."""
        self._observe(now_ns)
        slot = self._slot(source)
        slot.arrived_ns = now_ns
        if stamp_ns > now_ns:
            self._release(now_ns)
            self._held_seq += 1
            self.counts.held[source] += 1
            bisect.insort(slot.held, (stamp_ns, self._held_seq, sample), key=lambda h: h[:2])
            return self._plan()
        # in stamp order: held samples now due that are stamped before this one come first,
        # those stamped after it (a sample in flight as they came due) after it
        self._release(stamp_ns - 1)
        if self._check_order(source, slot, stamp_ns) is None:
            self._take(source, slot, stamp_ns, sample, now_ns)
        self._release(now_ns)
        return self._plan()

    def on_timer(self, now_ns: int, late_ns: int = 0) -> Plan:
        """A timer call (every period); ``late_ns``: how late the timer runs this call (the
        first one anchors the timer's grid)."""
        self._observe(now_ns)
        self._release(now_ns)
        if self.config.tick_on == TIMER:
            self._timer_ticks(now_ns, late_ns)
        elif self._last_tick_ns is not None:
            # Coast one period at a time once the input is overdue, stamped where the missing
            # sample would have been. Overdue is judged on the input's own time base (its
            # stamps may lag the clock, a replay on a busy machine), so coasted stamps never
            # run ahead of the samples still to come.
            for _ in range(MAX_COAST_PER_CALL):
                if now_ns - self._input_lag_ns - self._last_tick_ns < self._coast_after_ns:
                    break
                if self._tick(self._last_tick_ns + self.config.period_ns, TickKind.COASTED):
                    self.counts.coasting_ticks += 1
                    self._grid_ticks += 1
        return self._plan()

    def on_clock(self, now_ns: int) -> Plan:
        """The clock moved (a /clock message): held samples that are now due come in."""
        self._observe(now_ns)
        self._release(now_ns)
        return self._plan()

    def reset(self) -> None:
        """Forget waiting samples and the stamp grid (a belief reset on request); the last
        tick's time stays, so output stamps keep rising."""
        self.counts.requested_resets += 1
        for slot in self._slots.values():
            slot.sample, slot.last_stamp_ns = None, None
            slot.held.clear()
        self._grid_anchor_ns = None

    def arriving(self, source: str, now_ns: int) -> bool:
        """Whether a sample of ``source`` was accepted within sensor_timeout of ``now_ns``."""
        at = self._slot(source).arrived_ns
        # a clock that went back (a restarted simulation) says nothing about whether they arrive
        return at is not None and 0 <= now_ns - at <= self.config.timeout_ns

    # ------------------------------------------------------------------ rules
    def _slot(self, source: str) -> _Slot:
        try:
            return self._slots[source]
        except KeyError:
            raise ValueError(f"unknown input {source!r}; inputs are {self.config.inputs}") from None

    def _drop(self, source: str, reason: DropReason, detail: str) -> Drop:
        drop = Drop(source, reason, detail)
        self.counts.dropped[(source, reason.value)] += 1
        self._drops.append(drop)
        return drop

    def _plan(self) -> Plan:
        plan = Plan(tuple(self._actions), tuple(self._drops), self._ahead)
        self._actions, self._drops, self._ahead = [], [], False
        return plan

    def _check_order(self, source: str, slot: _Slot, stamp_ns: int) -> Drop | None:
        last = slot.last_stamp_ns
        if last is not None and stamp_ns <= last:
            return self._drop(
                source,
                DropReason.STAMP_BACKWARDS,
                f"header stamp {stamp_ns * 1e-9:.6f} s is not after the last one used "
                f"({last * 1e-9:.6f} s) and the clock did not jump back",
            )
        return None

    def _observe(self, now_ns: int) -> None:
        last, self._last_now_ns = self._last_now_ns, now_ns
        if last is not None and now_ns - last > MAX_CATCH_UP_NS:
            # a leap ahead (a bag skipped forward, a clock stepped ahead): its periods are not
            # replayed, so the tick_on input is judged overdue from after the leap, on its own
            # time base, until its next sample sets that base again
            self.counts.forward_jumps += 1
            self._input_lag_ns += now_ns - last
        if last is None or last - now_ns <= JUMP_BACK_NS:
            return
        self.counts.jump_resets += 1
        self._actions.append(Reset(ResetReason.CLOCK_JUMP, last - now_ns))
        for slot in self._slots.values():
            slot.sample, slot.last_stamp_ns = None, None
            slot.held.clear()
        self._last_tick_ns = self._grid_anchor_ns = self._last_input_ns = None

    def _release(self, now_ns: int) -> None:
        for source, slot in self._slots.items():
            while slot.held and slot.held[0][0] <= now_ns:
                stamp_ns, _, sample = slot.held.pop(0)
                if self._check_order(source, slot, stamp_ns) is None:
                    self._take(source, slot, stamp_ns, sample, now_ns)

    def _take(self, source: str, slot: _Slot, stamp_ns: int, sample: Sample, now_ns: int) -> None:
        slot.last_stamp_ns = stamp_ns
        if slot.sample is not None:  # the tick takes the newest: this one replaces a waiting one
            self.counts.superseded[source] += 1
        slot.sample, slot.stamp_ns = sample, stamp_ns
        if source == self.config.tick_on:
            self._input_tick(stamp_ns, now_ns)

    def _input_tick(self, stamp_ns: int, now_ns: int) -> None:
        cfg = self.config
        self._input_lag_ns = max(0, now_ns - stamp_ns)
        previous, self._last_input_ns = self._last_input_ns, stamp_ns
        if previous is not None and 0 < stamp_ns - previous < cfg.period_ns / 2:
            self.counts.burst[cfg.tick_on] += 1  # ticked all the same (ticks_ahead: the rate)
        gap = cfg.reset_after_gap_ns
        if gap and previous is not None and stamp_ns - previous > gap:
            self.counts.gap_resets += 1
            self._actions.append(Reset(ResetReason.GAP, stamp_ns - previous))
            self._grid_anchor_ns = None
        elif cfg.fixed_dt:
            self._missed_periods(stamp_ns)
        if self._tick(stamp_ns, TickKind.INPUT) and cfg.fixed_dt:
            if self._grid_anchor_ns is None:
                self._grid_anchor_ns, self._grid_ticks = stamp_ns, 0
            else:
                self._grid_ticks += 1

    def _missed_periods(self, stamp_ns: int) -> None:
        """Before the tick of a sample with periods missing before it (a dropped frame, too
        short a gap to coast through), the missing samples' ticks on the period grid: each step
        of a fixed-step model advances it one period, so skipping them would run it slow.
        Counted on a grid anchored at an input stamp with every tick since, so a sample
        stamped late and the next on time add no tick."""
        period = self.config.period_ns
        if self._grid_anchor_ns is None or self._last_tick_ns is None:
            return
        missed = round((stamp_ns - self._grid_anchor_ns) / period) - self._grid_ticks - 1
        if missed * period > MAX_CATCH_UP_NS:
            self._grid_anchor_ns = None  # coasted through as it happened, or not replayed
            return
        if missed < -AHEAD_TICKS:
            # more ticks than periods: the input comes faster than 1/dt; each step still
            # advances the model by one period
            self.counts.ticks_ahead += 1
            self._ahead = True
            self._grid_anchor_ns = None
            return
        for _ in range(missed):
            tick_ns = self._last_tick_ns + period
            if tick_ns >= stamp_ns or not self._tick(tick_ns, TickKind.CATCH_UP):
                break
            self.counts.coasting_ticks += 1
            self._grid_ticks += 1

    def _timer_ticks(self, now_ns: int, late_ns: int) -> None:
        period = self.config.period_ns
        if self._last_tick_ns is None or not self.config.fixed_dt or now_ns <= self._last_tick_ns:
            self._tick(now_ns, TickKind.TIMER)
            # The grid starts where the timer meant this call to run, so that a late first call
            # does not put every later one half a period off the grid.
            self._grid_ns = now_ns - min(max(late_ns, 0), period // 2)
            return
        # The clock can pass several periods between two calls (`ros2 bag play --clock`
        # publishes at 40 Hz; a wall timer can run late): one tick per period passed.
        periods = round((now_ns - self._grid_ns) / period)
        if periods < 1:
            return
        if (periods - 1) * period > MAX_CATCH_UP_NS:  # a leap ahead: not replayed
            self._tick(now_ns, TickKind.TIMER)
            self._grid_ns = now_ns
            return
        for k in range(1, periods):
            self._tick(self._grid_ns + k * period, TickKind.CATCH_UP)
        self._tick(now_ns, TickKind.TIMER)
        self._grid_ns += periods * period

    def _tick(self, tick_ns: int, kind: TickKind) -> bool:
        """Plan one tick; a catch-up tick leaves samples stamped after it to their own tick.
        False when the time does not move on (no tick)."""
        last = self._last_tick_ns
        if last is not None and tick_ns <= last:
            self._drop(
                "tick",
                DropReason.REPEATED_TIME,
                f"tick at {tick_ns * 1e-9:.6f} s is not after the last one ({last * 1e-9:.6f} s)",
            )
            return False
        timeout = self.config.timeout_ns
        samples: dict[str, Sample | None] = {}
        for source, slot in self._slots.items():
            if kind is TickKind.CATCH_UP and slot.sample is not None and slot.stamp_ns > tick_ns:
                value = None
            else:
                value, slot.sample = slot.sample, None
            if value is not None and tick_ns - slot.stamp_ns > timeout:
                self._drop(
                    source,
                    DropReason.STALE,
                    f"sample stamped {(tick_ns - slot.stamp_ns) * 1e-9:.3f} s before the tick, "
                    f"sensor_timeout is {timeout * 1e-9:.3f} s (raise it if the driver stamps "
                    "that much before delivery)",
                )
                value = None
            if value is None:
                self.counts.missing[source] += 1
            samples[source] = value
        self._actions.append(
            Tick(tick_ns, tick_ns + self.config.stamp_offset_ns, kind, samples,
                 None if last is None else tick_ns - last)
        )
        self._last_tick_ns = tick_ns
        self.counts.ticks += 1
        return True
