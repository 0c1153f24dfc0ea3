"""The estimator as ROS tools drive it: diagnostics per input and for the rate of ``~/state``,
ERROR on non-finite estimates, run-time parameters through the SetParameters service, and the
managed node through the lifecycle_msgs services, over real DDS (the rules themselves in
process first)."""

from __future__ import annotations

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.srv import SetParameters
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from test_nodes_support import NodeProcess, Probe, running_estimator  # sets ROS_DOMAIN_ID first

from rkn_ros.nodes.estimator_diagnostics import FrequencyWindow
from rkn_ros.nodes.estimator_params import EstimatorSettings
from rkn_ros.nodes.estimator_runtime_params import (
    RUNTIME_PARAMETERS,
    RefusedChangeError,
    changed_settings,
)
from rkn_ros.runtime.ticks import TickConfig, TickScheduler

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
MANAGED = "rkn_managed_estimator"


# ------------------------------------------------------------------ the rules, in process
def test_the_frequency_window_follows_diagnostic_updaters_levels():
    window = FrequencyWindow(20.0, 20.0, window=2, start_s=0.0)
    assert window.check(0, 1.0)[:2] == (ERROR, "No events recorded.")
    level, message, values = window.check(40, 2.0)  # 40 events over the 2 s window
    assert (level, message) == (OK, "Desired frequency met")
    assert float(values["Actual frequency (Hz)"]) == pytest.approx(20.0)
    assert float(values["Minimum acceptable frequency (Hz)"]) == pytest.approx(18.0)
    assert window.check(30, 3.0)[:2] == (WARN, "Frequency too low.")  # 30 over 1..3 s
    assert window.check(150, 4.0)[:2] == (WARN, "Frequency too high.")  # 110 over 2..4 s


def test_only_the_run_time_parameters_change_and_read_only_ones_are_refused():
    runtime = {"sensor_timeout", "warn_throttle", "max_future", "stamp_offset",
               "publish_markers", "prediction_horizon"}
    assert runtime == RUNTIME_PARAMETERS
    settings = EstimatorSettings.defaults(model_path="m")
    changed = changed_settings(settings, [Parameter("sensor_timeout", value=0.4)])
    assert changed.sensor_timeout == 0.4 and changed.model_path == "m"
    assert changed_settings(settings, [Parameter("use_sim_time", value=False)]) is None
    with pytest.raises(RefusedChangeError, match="tick_on is read-only: restart the node"):
        changed_settings(settings, [Parameter("sensor_timeout", value=0.4),
                                    Parameter("tick_on", value="image")])


def test_the_scheduler_takes_new_timeouts_but_not_a_new_period():
    config = TickConfig(period_ns=50_000_000, inputs=("image",), tick_on="image")
    scheduler = TickScheduler(config)
    longer = TickConfig(period_ns=50_000_000, inputs=("image",), tick_on="image",
                        sensor_timeout_ns=2_000_000_000, max_future_ns=0)
    scheduler.reconfigure(longer)
    assert scheduler.config.timeout_ns == 2_000_000_000
    # a sample stamped ahead of the clock is now beyond max_future (0): dropped
    drop = scheduler.admit("image", 1_000_000_001, 1_000_000_000)
    assert drop is not None and drop.reason.value == "future_stamp"
    with pytest.raises(ValueError, match="period_ns"):
        scheduler.reconfigure(TickConfig(period_ns=20_000_000, inputs=("image",),
                                         tick_on="image"))


# ------------------------------------------------------------------ over DDS
@pytest.fixture(scope="module")
def timer_estimator(checkpoints, probe_node, tmp_path_factory):
    """An estimator ticking on its timer, under its own name."""
    params = {
        "model_path": checkpoints["monotone"],
        "tick_on": "timer",
        "sensor_timeout": 0.3,
        "diagnostics_period": 0.2,
        "warn_throttle": 1.0,
        f"qos_overrides./{MANAGED}/state.publisher.reliability": "best_effort",
        f"qos_overrides./{MANAGED}/image.subscription.reliability": "reliable",
    }
    log = tmp_path_factory.mktemp("logs") / "timer_estimator.log"
    with running_estimator(probe_node, MANAGED, params, log) as running:
        yield running


def _status(probe: Probe, task: str, level: bytes, timeout: float = 10.0) -> DiagnosticStatus:
    assert probe.t.spin_until(
        lambda: task in probe.statuses and probe.statuses[task].level == level, timeout
    ), (task, level, probe.statuses.get(task))
    return probe.statuses[task]


def test_no_prior_goes_out_before_the_first_frame_and_a_silent_camera_warns(timer_estimator):
    probe, _ = timer_estimator
    probe.t.spin_for(0.6)  # three diagnostics periods, a dozen timer periods
    assert probe.states == [], "priors published before any input"
    assert _status(probe, "RKN estimator", WARN).message == "waiting for the first input"
    waiting = _status(probe, "image input", WARN)
    assert waiting.message.startswith(f"image: nothing received on /{MANAGED}/image yet")
    probe.feed(10)
    fresh = _status(probe, "image input", OK)
    assert fresh.hardware_id == f"/{MANAGED}/image" and probe.states
    probe.t.spin_for(0.5)  # the timer coasts: estimates go on, the camera is silent
    silent = _status(probe, "image input", WARN)
    assert f"image on /{MANAGED}/image silent for" in silent.message
    seconds = float(silent.message.split("silent for ")[1].split(" s")[0])
    assert seconds > 0.3 and "(sensor_timeout 0.3 s)" in silent.message
    rate = probe.statuses[f"/{MANAGED}/state topic frequency"]
    assert float(dict((kv.key, kv.value) for kv in rate.values)["Target frequency (Hz)"]) == 20.0
    # every status names its hardware
    assert all(s.hardware_id for s in probe.statuses.values()), probe.statuses


def _set(probe: Probe, **values) -> list:
    client = probe.t.node.create_client(SetParameters, f"/{probe.name}/set_parameters")
    try:
        assert client.wait_for_service(timeout_sec=20)
        request = SetParameters.Request(parameters=[
            ParameterMsg(name=k, value=Parameter(k, value=v).get_parameter_value())
            for k, v in values.items()
        ])
        future = client.call_async(request)
        assert probe.t.spin_until(future.done, 20)
        return future.result().results
    finally:
        probe.t.node.destroy_client(client)


def test_set_parameters_changes_the_run_time_ones_and_refuses_the_rest(timer_estimator):
    probe, _ = timer_estimator
    node = probe.t.node
    prediction = f"/{MANAGED}/prediction"
    assert node.count_publishers(prediction) == 0
    (result,) = _set(probe, prediction_horizon=2)
    assert result.successful, result.reason
    assert probe.t.spin_until(lambda: node.count_publishers(prediction) == 1, 10)
    probe.predictions.clear()
    probe.feed(5)
    assert probe.t.spin_until(lambda: probe.predictions, 10)
    assert len(probe.predictions[-1].points) == 2
    (result,) = _set(probe, prediction_horizon=0)
    assert result.successful and probe.t.spin_until(
        lambda: node.count_publishers(prediction) == 0, 10)
    # a longer sensor_timeout: the silent camera is judged against it
    (result,) = _set(probe, sensor_timeout=5.0)
    assert result.successful, result.reason
    probe.feed(3)

    def timeout_reported() -> str | None:
        status = probe.statuses.get("image input")
        return status and dict((kv.key, kv.value) for kv in status.values)["sensor_timeout_s"]

    # a report from before the change may still be the newest one: wait for the next
    assert probe.t.spin_until(lambda: timeout_reported() == "5.000", 10), timeout_reported()
    assert probe.statuses["image input"].level == OK
    probe.t.spin_for(0.8)
    assert probe.statuses["image input"].level == OK  # silent 0.8 s < 5 s
    refused = {
        "sensor_timeout": -1.0,  # out of its range
        "prediction_horizon": "three",  # wrong type
        "model_path": "/elsewhere",  # read-only
        "tick_on": "image",
    }
    for name, value in refused.items():
        (result,) = _set(probe, **{name: value})
        assert not result.successful and result.reason, name
    (result,) = _set(probe, model_path="/elsewhere")
    assert "read-only" in result.reason


def test_qos_overrides_apply_to_the_inputs_and_outputs(timer_estimator):
    """``qos_overrides./<node>/state.publisher.reliability`` and
    ``qos_overrides./<node>/image.subscription.reliability`` given at start-up (fixture); the
    graph shows reliability (not depth) of another process's endpoints."""
    probe, _ = timer_estimator
    (image,) = probe.t.node.get_subscriptions_info_by_topic(f"/{MANAGED}/image")
    assert image.qos_profile.reliability == ReliabilityPolicy.RELIABLE  # best effort without
    (state,) = probe.t.node.get_publishers_info_by_topic(f"/{MANAGED}/state")
    (stddev,) = probe.t.node.get_publishers_info_by_topic(f"/{MANAGED}/state_stddev")
    assert state.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert stddev.qos_profile.reliability == ReliabilityPolicy.RELIABLE


def test_non_finite_estimates_turn_the_status_to_error_and_are_not_published(
    checkpoints, probe_node, tmp_path
):
    params = {"model_path": checkpoints["overflowing"], "tick_on": "image",
              "diagnostics_period": 0.2, "warn_throttle": 1.0}
    with running_estimator(probe_node, "rkn_overflowing", params, tmp_path / "log") as (probe, _):
        probe.feed(8)
        status = _status(probe, "RKN estimator", ERROR)
        assert "non-finite estimates" in status.message and status.hardware_id
        assert probe.counter("unusable_estimates") >= 1
        assert probe.states == [], "a non-finite estimate went out"


# ------------------------------------------------------------------ the managed node
class Lifecycle:
    """The lifecycle_msgs services of one node, as nav2's lifecycle_manager calls them."""

    def __init__(self, probe: Probe) -> None:
        node = probe.t.node
        self.t = probe.t
        self.change = node.create_client(ChangeState, f"/{probe.name}/change_state")
        self.get = node.create_client(GetState, f"/{probe.name}/get_state")

    def _call(self, client, request):
        assert client.wait_for_service(timeout_sec=60)
        future = client.call_async(request)
        assert self.t.spin_until(future.done, 60)
        return future.result()

    def state(self) -> int:
        return self._call(self.get, GetState.Request()).current_state.id

    def transition(self, transition: int) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition
        return self._call(self.change, request).success


def test_the_managed_node_publishes_only_between_activate_and_deactivate(
    checkpoints, probe_node, tmp_path
):
    process = NodeProcess(
        "rkn_lifecycle_estimator",
        params={"model_path": checkpoints["monotone"], "tick_on": "image",
                "diagnostics_period": 0.2},
        log=tmp_path / "lifecycle.log",
    )
    try:
        probe = Probe(probe_node, "rkn_estimator")  # the default name: the YAML files apply
        lifecycle = Lifecycle(probe)
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
        probe.feed(3)
        assert lifecycle.transition(Transition.TRANSITION_CONFIGURE)
        assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE
        probe.feed(5)
        assert probe.states == [] and probe.images.get_subscription_count() == 0
        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        assert probe.t.spin_until(lambda: probe.images.get_subscription_count() > 0, 20)
        stamps = probe.feed(10)
        assert probe.t.spin_until(lambda: set(stamps) <= set(probe.by_stamp(probe.states)), 10)
        assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.state() == State.PRIMARY_STATE_INACTIVE
        probe.t.spin_for(0.3)
        count = len(probe.states)
        probe.feed(8)
        assert len(probe.states) == count, "published after deactivate"
        # the model stayed: activating again serves at once, from the same belief
        assert lifecycle.transition(Transition.TRANSITION_ACTIVATE)
        assert probe.t.spin_until(lambda: probe.images.get_subscription_count() > 0, 20)
        probe.feed(3)
        assert probe.t.spin_until(lambda: len(probe.states) > count, 10)
        assert lifecycle.transition(Transition.TRANSITION_DEACTIVATE)
        assert lifecycle.transition(Transition.TRANSITION_CLEANUP)
        assert lifecycle.state() == State.PRIMARY_STATE_UNCONFIGURED
        assert probe.t.node.count_publishers("/rkn_estimator/state") == 0
        assert lifecycle.transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert lifecycle.state() == State.PRIMARY_STATE_FINALIZED
    finally:
        assert process.process.poll() is None, process.output()
        assert process.stop() == 0, process.output()


@pytest.mark.parametrize("steps", [(), ("configure",), ("configure", "activate")])
def test_shutdown_works_from_every_state(checkpoints, probe_node, steps):
    from rkn_ros.nodes.lifecycle_estimator import LifecycleEstimator

    node = LifecycleEstimator(
        parameter_overrides=[Parameter("model_path", value=str(checkpoints["monotone"]))],
        cli_args=["--ros-args", "-r", "__node:=in_process_lifecycle"],
    )
    try:
        for step in steps:
            assert getattr(node, f"trigger_{step}")() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_shutdown() == TransitionCallbackReturn.SUCCESS
        assert node.est is None and not node.active and node._subscriptions_by_input == {}
    finally:
        node.destroy_node()
