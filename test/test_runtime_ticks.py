"""The tick scheduler's rules, event by event, in process (no ROS, no model)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rkn_ros.runtime.ticks import (
    MAX_HELD,
    Drop,
    DropReason,
    Reset,
    ResetReason,
    TickConfig,
    TickKind,
    TickScheduler,
)

PERIOD = 50_000_000  # 20 Hz
START = 100_000_000_000  # the clock's time at the first event


def camera(**config) -> TickScheduler:
    return TickScheduler(TickConfig(period_ns=PERIOD, inputs=("image",), tick_on="image", **config))


def frame(sched: TickScheduler, stamp: int, now: int | None = None, source: str = "image"):
    """Admit and accept a frame; the plan, or the drop when refused."""
    now = stamp if now is None else now
    drop = sched.admit(source, stamp, now)
    return drop if drop is not None else sched.accept(source, stamp, now, f"frame@{stamp}")


def tick_times(sched: TickScheduler, stamps: list[int]) -> list[int]:
    return [t.time_ns for s in stamps for t in frame(sched, s).ticks]


def test_one_tick_per_frame_at_its_stamp_with_its_sample():
    sched = camera()
    plan = frame(sched, START)
    (tick,) = plan.ticks
    assert (tick.time_ns, tick.kind, tick.samples, tick.dt_ns) == (
        START, TickKind.INPUT, {"image": f"frame@{START}"}, None)
    (tick,) = frame(sched, START + PERIOD).ticks
    assert tick.dt_ns == PERIOD and tick.timed
    assert sched.counts.ticks == 2


@pytest.mark.parametrize(
    ("case", "offsets"),
    [
        ("every other frame dropped", [2 * k for k in range(20)]),
        ("every fifth frame 0.6 periods late, none dropped",
         [k + (0.6 if k % 5 == 4 else 0.0) for k in range(40)]),
        ("every fifth frame 0.4 periods early, two dropped",
         [k - (0.4 if k % 5 == 4 else 0.0) for k in range(40) if k not in (17, 18)]),
    ],
)
def test_a_fixed_step_model_gets_one_tick_per_period_of_the_stamps(case, offsets):
    sched = camera()
    stamps = [START + round(o * PERIOD) for o in offsets]
    times = tick_times(sched, stamps)
    assert len(times) == round((stamps[-1] - stamps[0]) / PERIOD) + 1, case
    assert set(stamps) <= set(times)
    catch_up = [t for t in times if t not in stamps]
    assert all(t - PERIOD in times for t in catch_up), case  # a period after a tick
    assert sched.counts.coasting_ticks == len(catch_up) and sched.counts.ticks_ahead == 0


def test_a_catch_up_tick_leaves_the_sample_to_its_own_tick():
    sched = camera()
    frame(sched, START)
    ticks = frame(sched, START + 2 * PERIOD).ticks
    assert [(t.kind, t.samples["image"]) for t in ticks] == [
        (TickKind.CATCH_UP, None), (TickKind.INPUT, f"frame@{START + 2 * PERIOD}")]
    assert not ticks[0].timed and sched.counts.missing["image"] == 1


def test_a_model_with_a_dt_input_gets_no_catch_up_ticks():
    sched = camera(fixed_dt=False)
    assert tick_times(sched, [START, START + 3 * PERIOD]) == [START, START + 3 * PERIOD]


def test_an_input_faster_than_one_over_dt_ticks_per_message_and_is_flagged():
    sched = camera()
    plans = [frame(sched, START + k * PERIOD // 2) for k in range(20)]
    assert sum(len(p.ticks) for p in plans) == 20
    assert any(p.ahead for p in plans) and sched.counts.ticks_ahead >= 1


def test_each_frame_of_a_burst_is_counted_and_still_ticked():
    sched = camera()
    frame(sched, START)
    frame(sched, START + PERIOD)
    burst = [frame(sched, START + PERIOD + k * 1000) for k in range(1, 6)]  # 1..5 us later
    assert [len(p.ticks) for p in burst] == [1] * 5
    frame(sched, START + 2 * PERIOD)  # the next on time is no burst
    assert sched.counts.burst["image"] == 5
    # half a period apart or more is no burst: a late frame and the next on time
    sched = camera()
    tick_times(sched, [START, START + PERIOD // 2, START + PERIOD])
    assert sched.counts.burst["image"] == 0


def test_a_long_silence_is_not_replayed_in_one_burst():
    sched = camera(sensor_timeout_ns=5_000_000_000)  # the timer never coasts here
    frame(sched, START)
    assert len(frame(sched, START + 2_000_000_000).ticks) == 1


def test_the_timer_coasts_an_overdue_input_one_period_at_a_time():
    sched = camera(sensor_timeout_ns=120_000_000)
    frame(sched, START, now=START + 10_000_000)  # stamps lag the clock by 10 ms
    assert not sched.on_timer(START + 100_000_000).ticks  # not overdue yet
    ticks = sched.on_timer(START + 10_000_000 + 150_000_000).ticks
    assert [(t.time_ns, t.kind) for t in ticks] == [(START + PERIOD, TickKind.COASTED)]
    assert ticks[0].samples == {"image": None} and sched.counts.coasting_ticks == 1


def test_no_coasting_before_the_first_input_tick():
    assert not camera().on_timer(START).ticks


def test_ticking_on_the_timer_catches_up_periods_the_clock_leapt():
    """`ros2 bag play --clock` at 40 Hz: the clock leaps 2.5 periods per call; one tick per
    period of it all the same, the last of each call at the clock's time."""
    sched = TickScheduler(TickConfig(period_ns=PERIOD, inputs=("image",)))
    total = len(sched.on_timer(START).ticks)
    now = START
    for _ in range(40):
        now += 5 * PERIOD // 2
        ticks = sched.on_timer(now).ticks
        assert ticks[-1].time_ns == now and ticks[-1].kind is TickKind.TIMER
        assert all(t.kind is TickKind.CATCH_UP for t in ticks[:-1])
        total += len(ticks)
    assert abs(total - (1 + (now - START) // PERIOD)) <= 1


def test_the_timers_first_late_call_anchors_the_grid_where_it_was_meant():
    sched = TickScheduler(TickConfig(period_ns=PERIOD, inputs=("image",)))
    sched.on_timer(START, late_ns=10_000_000)
    # due at START - 10 ms + one period: a call 40 ms after the first is on time
    assert len(sched.on_timer(START + 40_000_000).ticks) == 1


def test_ticking_on_the_timer_leaps_over_more_than_a_second():
    sched = TickScheduler(TickConfig(period_ns=PERIOD, inputs=("image",)))
    sched.on_timer(START)
    assert len(sched.on_timer(START + 3_000_000_000).ticks) == 1


def test_a_timer_tick_takes_the_newest_sample_and_counts_the_replaced_ones():
    sched = TickScheduler(TickConfig(period_ns=PERIOD, inputs=("joint_states",)))
    for k in range(3):
        frame(sched, START + k * 1000, source="joint_states")
    (tick,) = sched.on_timer(START + 5000).ticks
    assert tick.samples == {"joint_states": f"frame@{START + 2000}"}
    assert sched.counts.superseded["joint_states"] == 2


def test_a_sample_older_than_sensor_timeout_at_the_tick_is_stale():
    sched = TickScheduler(TickConfig(period_ns=PERIOD, inputs=("joint_states",),
                                     sensor_timeout_ns=500_000_000))
    frame(sched, START - 700_000_000, now=START, source="joint_states")
    plan = sched.on_timer(START)
    assert plan.ticks[0].samples == {"joint_states": None}
    assert [(d.source, d.reason) for d in plan.drops] == [("joint_states", DropReason.STALE)]
    assert "sensor_timeout is 0.500 s" in plan.drops[0].detail


def test_a_clock_standing_still_repeats_no_tick():
    sched = TickScheduler(TickConfig(period_ns=PERIOD, inputs=("image",), fixed_dt=False))
    sched.on_timer(START)
    plan = sched.on_timer(START)
    assert not plan.ticks and plan.drops[0].reason is DropReason.REPEATED_TIME


def test_stamp_offset_moves_the_output_stamp_only():
    (tick,) = frame(camera(stamp_offset_ns=10_000_000), START).ticks
    assert (tick.time_ns, tick.stamp_ns) == (START, START + 10_000_000)


def test_reset_after_gap_starts_fresh_when_the_input_resumes():
    sched = camera(reset_after_gap_ns=500_000_000)
    frame(sched, START)
    assert not any(isinstance(a, Reset) for a in frame(sched, START + PERIOD).actions)
    actions = frame(sched, START + 2_000_000_000).actions
    assert isinstance(actions[0], Reset) and actions[0].reason is ResetReason.GAP
    assert [a.kind for a in actions[1:]] == [TickKind.INPUT]
    assert sched.counts.gap_resets == 1


# ------------------------------------------------------------------ the stamp policy
@pytest.mark.parametrize(
    ("stamp", "reason"),
    [(0, DropReason.ZERO_STAMP), (START + 600_000_000, DropReason.FUTURE_STAMP)],
)
def test_zero_and_too_far_future_stamps_are_refused(stamp, reason):
    sched = camera()
    assert sched.admit("image", stamp, START).reason is reason
    assert sched.counts.dropped[("image", reason.value)] == 1


def test_future_stamps_within_max_future_never_lock_the_genuine_stream_out():
    """A handful of spoofed frames stamped 0.4 s ahead: held, never ticked ahead of the clock;
    every genuine frame after them is used, on its own stamp."""
    sched = camera(max_future_ns=500_000_000)
    genuine = [START + k * PERIOD for k in range(20)]
    ticked = []
    for k, stamp in enumerate(genuine):
        if k < 3:
            spoof = stamp + 400_000_000 + k
            assert frame(sched, spoof, now=stamp).ticks == ()  # held, not ticked
        plan = frame(sched, stamp)
        assert not isinstance(plan, Drop), plan
        ticked += [t.time_ns for t in plan.ticks]
        assert all(t <= stamp for t in ticked)  # never ahead of the clock
    assert set(genuine) <= set(ticked)
    assert sched.counts.dropped[("image", "stamp_backwards")] <= 3  # the spoofs at most
    assert sched.counts.jump_resets == 0


def test_a_held_future_sample_comes_in_when_the_clock_reaches_it():
    sched = camera()
    frame(sched, START)
    assert frame(sched, START + PERIOD, now=START + 10_000_000).ticks == ()
    assert sched.on_clock(START + 30_000_000).ticks == ()
    (tick,) = sched.on_clock(START + PERIOD).ticks
    assert (tick.time_ns, tick.samples["image"]) == (START + PERIOD, f"frame@{START + PERIOD}")


def test_samples_ahead_of_the_clock_are_held_in_bounded_number():
    sched = camera()
    for k in range(MAX_HELD):
        frame(sched, START + 1 + k, now=START)
    drop = sched.admit("image", START + 100, START)
    assert drop.reason is DropReason.FUTURE_STAMP and "already wait" in drop.detail


def test_a_sample_stamped_in_the_past_is_dropped_never_a_reset():
    """A trickle of frames stamped 5 s back with the clock running on: each one dropped and
    counted, the belief left alone, the stream going on."""
    sched = camera()
    frame(sched, START)
    for k in range(1, 6):
        now = START + k * PERIOD
        drop = sched.admit("image", now - 5_000_000_000, now)
        assert drop.reason is DropReason.STAMP_BACKWARDS and "did not jump" in drop.detail
        assert [t.time_ns for t in frame(sched, now).ticks] == [now]
    assert sched.counts.jump_resets == 0
    assert sched.counts.dropped[("image", "stamp_backwards")] == 5


def test_a_clock_jumping_back_resets_once_and_the_new_run_is_used():
    sched = camera()
    for k in range(5):
        frame(sched, START + k * PERIOD)
    back = START - 30_000_000_000  # a bag played again
    plan = frame(sched, back)
    assert isinstance(plan.actions[0], Reset) and plan.actions[0].reason is ResetReason.CLOCK_JUMP
    assert [t.time_ns for t in plan.ticks] == [back] and plan.ticks[0].dt_ns is None
    later = [frame(sched, back + k * PERIOD) for k in range(1, 5)]
    assert not any(isinstance(a, Reset) for p in later for a in p.actions)
    assert sched.counts.jump_resets == 1


def test_a_clock_leaping_ahead_is_counted_once_never_reset_nor_coasted_through():
    sched = camera()
    for k in range(5):
        frame(sched, START + k * PERIOD)
    ahead = START + 4 * PERIOD + 2_000_000_000  # a bag skipped forward
    plan = sched.on_timer(ahead)
    assert not plan.actions and sched.counts.forward_jumps == 1
    later = [sched.on_timer(ahead + k * PERIOD // 2) for k in range(1, 3)]
    assert not any(p.actions for p in later)  # the input is not overdue on its own time base
    (tick,) = frame(sched, ahead + PERIOD).ticks
    assert (tick.time_ns, tick.kind) == (ahead + PERIOD, TickKind.INPUT)
    assert sched.counts.forward_jumps == 1 and sched.counts.jump_resets == 0
    # the input stopping after the leap still coasts, a sensor_timeout after its last sample
    coasted = sched.on_timer(ahead + 4 * PERIOD).ticks
    assert [t.kind for t in coasted] == [TickKind.COASTED] * len(coasted) and coasted
    # a clock going on in periods, or leaping less than a second, is no jump
    sched.on_timer(ahead + 4 * PERIOD + 900_000_000)
    assert sched.counts.forward_jumps == 1


def test_a_timer_clock_jumping_back_resets_at_the_next_timer_call():
    sched = TickScheduler(TickConfig(period_ns=PERIOD, inputs=("image",)))
    sched.on_timer(START)
    plan = sched.on_timer(START - 5_000_000_000)
    assert isinstance(plan.actions[0], Reset) and len(plan.ticks) == 1


def test_the_reset_request_keeps_output_times_rising():
    sched = camera()
    frame(sched, START)
    sched.reset()
    assert sched.counts.requested_resets == 1 and sched.counts.jump_resets == 0
    assert frame(sched, START).drops[0].reason is DropReason.REPEATED_TIME  # not re-ticked
    assert frame(sched, START + PERIOD).ticks[0].time_ns == START + PERIOD


def test_arriving_says_whether_an_input_came_within_sensor_timeout():
    sched = camera(sensor_timeout_ns=500_000_000)
    assert not sched.arriving("image", START)
    frame(sched, START)
    assert sched.arriving("image", START + 400_000_000)
    assert not sched.arriving("image", START + 600_000_000)
    assert not sched.arriving("image", START - 1)  # a clock that went back


def test_a_config_that_cannot_tick_is_refused():
    with pytest.raises(ValueError, match="tick_on 'image'"):
        TickConfig(period_ns=PERIOD, inputs=("joint_states",), tick_on="image")
    with pytest.raises(ValueError, match="period_ns"):
        TickConfig(period_ns=0, inputs=())
    with pytest.raises(ValueError, match="unknown input"):
        camera().admit("lidar", START, START)


# ------------------------------------------------------------------ any events at all
_EVENT = st.one_of(
    st.tuples(st.just("frame"), st.sampled_from(["image", "joint_states"]),
              st.integers(-3_000_000_000, 3_000_000_000), st.integers(-2_000_000_000, 200_000_000)),
    st.tuples(st.just("timer"), st.integers(-2_000_000_000, 400_000_000)),
    st.tuples(st.just("clock"), st.integers(-2_000_000_000, 400_000_000)),
    st.tuples(st.just("reset"),),
)


@settings(max_examples=200, deadline=None)
@given(
    events=st.lists(_EVENT, max_size=60),
    tick_on=st.sampled_from(["timer", "image", "joint_states"]),
    fixed_dt=st.booleans(),
    gap=st.sampled_from([0, 300_000_000]),
)
def test_any_events_give_rising_ticks_never_ahead_of_the_clock(events, tick_on, fixed_dt, gap):
    """Arbitrary stamps, clock steps both ways, timer calls and resets: nothing raises, tick
    times rise strictly between clock jumps, no tick runs ahead of the clock, each sample is
    used at most once, and every drop has a documented reason."""
    sched = TickScheduler(TickConfig(period_ns=PERIOD, inputs=("image", "joint_states"),
                                     tick_on=tick_on, fixed_dt=fixed_dt,
                                     reset_after_gap_ns=gap if tick_on != "timer" else 0))
    now = START
    last_tick = None
    used: set[str] = set()
    sent = ticks = 0
    for event in events:
        if event[0] == "reset":
            sched.reset()
            continue
        now = max(1, now + event[-1])
        if event[0] == "frame":
            _, source, offset, _ = event
            stamp = max(0, now + offset)
            if sched.admit(source, stamp, now) is not None:
                continue
            sent += 1
            plan = sched.accept(source, stamp, now, f"{source}#{sent}")
        else:
            plan = sched.on_timer(now) if event[0] == "timer" else sched.on_clock(now)
        assert all(isinstance(d.reason, DropReason) for d in plan.drops)
        for action in plan.actions:
            if isinstance(action, Reset):
                if action.reason is ResetReason.CLOCK_JUMP:
                    last_tick = None
                continue
            assert action.time_ns <= now
            assert last_tick is None or action.time_ns > last_tick
            last_tick = action.time_ns
            ticks += 1
            samples = [s for s in action.samples.values() if s is not None]
            assert used.isdisjoint(samples)
            used.update(samples)
    assert sched.counts.ticks == ticks


def test_a_sample_in_flight_as_a_held_one_comes_due_is_taken_in_stamp_order():
    """A genuine frame stamped before a held one but arriving after the clock passed the held
    one's stamp is used, and the held one after it."""
    sched = camera()
    frame(sched, START)
    frame(sched, START + PERIOD + 5_000_000, now=START + 1)  # held
    ticks = frame(sched, START + PERIOD, now=START + PERIOD + 8_000_000).ticks
    assert [t.samples["image"] for t in ticks] == [
        f"frame@{START + PERIOD}", f"frame@{START + PERIOD + 5_000_000}"]
    assert not sched.counts.dropped
