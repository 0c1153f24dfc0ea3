"""The estimator node's start-up checks, without rclpy: settings and model in, a serving plan or
one :class:`StartupError` line out (the node prints it and exits with code 1)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from rkn_ros.core.checkpoint import CheckpointError, InputSpec
from rkn_ros.nodes.conversions import parse_joint_entries
from rkn_ros.nodes.estimator_params import EstimatorSettings
from rkn_ros.nodes.sensor_inputs import SensorPlanError, SensorSubscription, sensor_plan
from rkn_ros.runtime import StreamingEstimator
from rkn_ros.runtime.affinity import pin_process
from rkn_ros.runtime.ticks import TIMER, TickConfig

# The command's input name: no sensor may take it.
COMMAND = "command"


class StartupError(RuntimeError):
    """The node cannot serve (model missing, corrupt, or not matching the configuration)."""


@dataclass(frozen=True)
class ServingPlan:
    """How the node maps its topics onto the model, decided once at start-up.

    ``sensors``: (input name, subscription) per topic, the input name being what the tick
    scheduler, the counters and ``tick_on`` call it (the sensor's name; ``image`` and
    ``joint_states`` for the shared topics of sensors without a recorded kind).
    ``image_sensor``: the model input read from ``~/image`` (a sensor without a recorded kind),
    if any; ``vector_sensors``: (model input, size) in the order their entries fill
    ``joint_entries`` (joint, field) of ``~/joint_states``; ``period_s``: the tick period.
    """

    sensors: tuple[tuple[str, SensorSubscription], ...]
    image_sensor: str | None
    vector_sensors: tuple[tuple[str, int], ...]
    joint_entries: tuple[tuple[str, str], ...]
    period_s: float
    ticks: TickConfig
    joint_names: tuple[str, ...]
    link_lengths: tuple[float, ...]
    warnings: tuple[str, ...]


def check_settings(s: EstimatorSettings) -> None:
    """What can be refused before the model loads."""
    if not s.model_path:
        raise StartupError("parameter 'model_path' is empty: name a checkpoint folder")
    if not s.tick_on or any(c.isspace() for c in s.tick_on):
        raise StartupError(f"parameter tick_on must be {TIMER!r} or an input name, got "
                           f"{s.tick_on!r}")


def load_estimator(
    s: EstimatorSettings, model_path: Path
) -> tuple[StreamingEstimator, list[int] | None]:
    """Pin the process (``cpu_affinity``) and load the model; the CPUs pinned to, or None."""
    cpus = None
    if s.cpu_affinity:
        # before the model loads, so any thread pool it starts inherits the affinity
        try:
            cpus = pin_process(s.cpu_affinity)
        except (ValueError, OSError) as err:
            raise StartupError(f"cpu_affinity {s.cpu_affinity}: {err}") from err
    image_shape = (s.image_height, s.image_width) if s.image_height and s.image_width else None
    try:
        est = StreamingEstimator.from_checkpoint(
            model_path,
            device=s.device,
            image_shape=image_shape,
            joint_names=None,
            resize_images=s.resize_images,
            warmup_steps=s.warmup_steps,
            latency_window=s.latency_window,
            num_threads=s.num_threads,
            cpu_backend=s.cpu_backend,
            split_step=s.publish_before_predict,
        )
    except (CheckpointError, ValueError, OSError) as err:
        raise StartupError(f"cannot serve model {model_path}: {err}") from err
    return est, cpus


def plan_serving(s: EstimatorSettings, est: StreamingEstimator,
                 topics: Mapping[str, str] | None = None) -> ServingPlan:
    """Check the settings against the loaded model; what the node serves with. ``topics``:
    input name -> topic, from the per-sensor parameters (``sensors.<name>.topic``)."""
    check_settings(s)
    name = est.name
    sensors = _sensor_topics(name, est, topics or {})
    recorded = sensor_specs(est)
    legacy_images = [n for n, spec in recorded.items()
                     if spec.kind == "image" and spec.sensor_kind is None]
    image_sensor = legacy_images[0] if legacy_images else None
    # (without resizing, the checkpoint's own check has refused this already)
    if s.image_height and s.image_width and image_sensor is None:
        raise StartupError(
            f"model {name}: image_height/image_width set but the model has no image input"
        )
    if s.image_height and s.image_width and len(
            [n for n, spec in est.inputs.items() if spec.kind == "image"]) > 1:
        raise StartupError(f"model {name}: image_height/image_width set but the model has "
                           "several image inputs")
    vector = [(n, int(spec.shape[0])) for n, spec in est.inputs.items()
              if spec.kind == "vector" and recorded[n].sensor_kind is None]
    model_entries = [e for n, _ in vector for e in est.inputs[n].names]
    size = sum(dim for _, dim in vector)
    entries = list(s.joint_names) or model_entries
    if len(entries) != size:
        raise StartupError(
            f"model {name}: joint_names {entries} has {len(entries)} entries, the model's "
            f"vector inputs {[n for n, _ in vector]} take {size} ({model_entries})"
        )
    inputs = tuple(source for source, _ in sensors)
    if s.tick_on != TIMER and s.tick_on not in inputs:
        raise StartupError(f"tick_on {s.tick_on!r} but model {name} has no such input (its "
                           f"inputs: {list(inputs)})")
    period = 1.0 / s.frequency if s.frequency > 0 else est.dt
    if not est.uses_dt and not math.isclose(period, est.dt, rel_tol=1e-6):
        # each step of such a model advances its belief by its training dt, whatever the clock
        # says: ticking at another rate would run its dynamics at the wrong speed
        raise StartupError(
            f"parameter frequency {s.frequency} Hz ticks every {period:g} s, but model {name} "
            f"was trained with dt {est.dt:g} s and takes no dt input: set frequency to "
            f"{1.0 / est.dt:g} or 0 (= 1/dt)"
        )
    model_joints = list(est.layout.joint_names)
    joint_names = list(s.output_joint_names) or model_joints
    if len(joint_names) != len(model_joints):
        raise StartupError(
            f"output_joint_names {joint_names} has {len(joint_names)} names, the model "
            f"estimates {len(model_joints)} joints {model_joints}"
        )
    links = list(s.marker_link_lengths) or [1.0] * len(model_joints)
    if s.publish_markers and len(links) != len(model_joints):
        raise StartupError(
            f"marker_link_lengths has {len(links)} values for {len(model_joints)} joints"
        )
    warnings = []
    if s.publish_markers and not s.frame_id:
        warnings.append(
            "publish_markers with an empty frame_id: rviz cannot place the markers (set "
            "frame_id to the frame of the first joint)"
        )
    if s.reset_after_gap and s.tick_on == TIMER:
        warnings.append(
            "reset_after_gap is ignored with tick_on: timer (the timer ticks through silences; "
            "a gap is judged on the tick_on input): set tick_on to image or joint_states, or "
            "call ~/reset"
        )
    ticks = TickConfig(
        period_ns=round(1e9 * period),
        inputs=inputs,
        tick_on=s.tick_on,
        fixed_dt=not est.uses_dt,
        sensor_timeout_ns=round(1e9 * s.sensor_timeout) or None,
        max_future_ns=round(1e9 * s.max_future),
        reset_after_gap_ns=round(1e9 * s.reset_after_gap) if s.tick_on != TIMER else 0,
        stamp_offset_ns=round(1e9 * s.stamp_offset),
    )
    return ServingPlan(
        sensors=sensors,
        image_sensor=image_sensor,
        vector_sensors=tuple(vector),
        joint_entries=tuple(parse_joint_entries(entries)),
        period_s=period,
        ticks=ticks,
        joint_names=tuple(joint_names),
        link_lengths=tuple(float(v) for v in links),
        warnings=tuple(warnings),
    )


def sensor_specs(est: StreamingEstimator) -> dict[str, InputSpec]:
    """The checkpoint's record of each model input (with its sensor kind), in model order."""
    return {name: est.metadata.inputs[name] for name in est.inputs}


def _sensor_topics(name: str, est: StreamingEstimator, topics: Mapping[str, str]
                   ) -> tuple[tuple[str, SensorSubscription], ...]:
    """(input name, subscription) for the model's sensors: the input name is the default
    topic's last part (``~/<name>``), whatever topic ``topics`` gives it."""
    try:
        defaults = sensor_plan(sensor_specs(est))
        plan = sensor_plan(sensor_specs(est), {k: v for k, v in topics.items() if v})
    except SensorPlanError as err:
        raise StartupError(f"model {name}: {err}") from err
    sources = tuple(sub.topic.removeprefix("~/") for sub in defaults)
    if COMMAND in sources:
        raise StartupError(f"model {name}: a sensor named {COMMAND!r} would share the "
                           "command's topic: rename the sensor")
    return tuple(zip(sources, plan, strict=True))
