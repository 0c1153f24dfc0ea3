"""The estimator node's start-up checks, without rclpy: settings and model in, a serving plan or
one :class:`StartupError` line out (the node prints it and exits with code 1)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rkn_ros.core.checkpoint import CheckpointError
from rkn_ros.nodes.conversions import parse_joint_entries
from rkn_ros.nodes.estimator_params import EstimatorSettings
from rkn_ros.runtime import StreamingEstimator
from rkn_ros.runtime.affinity import pin_process
from rkn_ros.runtime.ticks import TIMER, TickConfig

# The inputs the node can tick on besides the timer, by the topic they come from.
TICK_INPUTS = ("image", "joint_states")
TICK_SOURCES = (TIMER, *TICK_INPUTS)


class StartupError(RuntimeError):
    """The node cannot serve (model missing, corrupt, or not matching the configuration)."""


@dataclass(frozen=True)
class ServingPlan:
    """How the node maps its topics onto the model, decided once at start-up.

    ``vector_sensors``: (model input, size) in the order their entries fill ``joint_entries``
    (joint, field) of ``~/joint_states``; ``period_s``: the tick period.
    """

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
    if s.tick_on not in TICK_SOURCES:
        raise StartupError(f"parameter tick_on must be one of {TICK_SOURCES}, got {s.tick_on!r}")


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


def plan_serving(s: EstimatorSettings, est: StreamingEstimator) -> ServingPlan:
    """Check the settings against the loaded model; what the node serves with."""
    check_settings(s)
    name = est.name
    image_sensor = est.image_sensor()
    # (without resizing, the checkpoint's own check has refused this already)
    if s.image_height and s.image_width and image_sensor is None:
        raise StartupError(
            f"model {name}: image_height/image_width set but the model has no image input"
        )
    images = [n for n, spec in est.inputs.items() if spec.kind == "image"]
    if len(images) > 1:
        raise StartupError(f"model {name}: several image inputs {images}; one is supported")
    vector = [(n, int(spec.shape[0])) for n, spec in est.inputs.items() if spec.kind == "vector"]
    model_entries = [e for n, _ in vector for e in est.inputs[n].names]
    size = sum(dim for _, dim in vector)
    entries = list(s.joint_names) or model_entries
    if len(entries) != size:
        raise StartupError(
            f"model {name}: joint_names {entries} has {len(entries)} entries, the model's "
            f"vector inputs {[n for n, _ in vector]} take {size} ({model_entries})"
        )
    inputs = tuple(
        source
        for source, used in (("image", image_sensor is not None), ("joint_states", bool(vector)))
        if used
    )
    if s.tick_on != TIMER and s.tick_on not in inputs:
        raise StartupError(f"tick_on {s.tick_on!r} but model {name} has no such input")
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
        image_sensor=image_sensor,
        vector_sensors=tuple(vector),
        joint_entries=tuple(parse_joint_entries(entries)),
        period_s=period,
        ticks=ticks,
        joint_names=tuple(joint_names),
        link_lengths=tuple(float(v) for v in links),
        warnings=tuple(warnings),
    )
