"""The estimator node's parameters: one table, and what is made from it (no ROS here).

The node declares exactly :data:`PARAMETERS`; ``config/estimator.yaml`` and the parameter table
of ``docs/runtime.md`` are printed from it (``python -m rkn_ros.nodes.estimator_params yaml`` or
``markdown``), and ``test/test_nodes_startup.py`` holds both files to it.
"""

from __future__ import annotations

import sys
import textwrap
from dataclasses import dataclass

# A parameter's value as rclpy gives it.
ParamValue = bool | int | float | str | list


@dataclass(frozen=True)
class ParamSpec:
    """One parameter: ``low``/``high`` a range for numbers; ``array`` ("string[]", "double[]",
    "int[]") types a list whose default is empty; ``runtime``: settable while the node runs
    (``ros2 param set``), else read-only (set at start-up)."""

    name: str
    default: ParamValue
    description: str
    low: float | None = None
    high: float | None = None
    array: str | None = None
    runtime: bool = False


PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec("model_path", "", "checkpoint folder (absolute, or relative to the package); "
              "required"),
    ParamSpec("device", "auto", "torch device: auto (the GPU if any, else CPU), cpu, cuda[:N]"),
    ParamSpec("cpu_backend", "auto", "CPU step: auto (ONNX Runtime when installed, else "
              "TorchScript), onnxruntime or torchscript"),
    ParamSpec("publish_before_predict", True, "publish each estimate before predicting the next "
              "tick's prior (an RKN in ONNX Runtime: ~0.1 ms sooner from input to ~/state, "
              "~0.06 ms more CPU per tick)"),
    ParamSpec("num_threads", 1, "torch intra-op threads (1 is fastest at batch 1)", 1, 64),
    ParamSpec("cpu_affinity", [], "CPUs this node's threads run on (Linux), e.g. [3] for an "
              "isolated core; empty = the OS schedules it", array="int[]"),
    ParamSpec("frequency", 0.0, "tick rate in Hz; 0 = 1/dt of the model", 0.0, 1000.0),
    ParamSpec("tick_on", "timer", "timer: tick at `frequency`; image / joint_states: one tick "
              "per message of that input (when it is overdue by sensor_timeout the timer coasts, "
              "one tick per period; a message after a dropped one first gets the dropped one's "
              "tick)"),
    ParamSpec("sensor_timeout", 0.0, "s; a sample older than this at the tick counts as missing "
              "(0 = two tick periods)", 0.0, 60.0, runtime=True),
    ParamSpec("reset_after_gap", 0.0, "s; when the tick_on input resumes after a silence longer "
              "than this, start a fresh belief (a new recording or episode) instead of "
              "continuing the coasted one; 0 = never; tick_on image or joint_states only",
              0.0, 3600.0),
    ParamSpec("max_future", 0.5, "s; samples stamped further ahead of the clock are dropped "
              "(nearer ones wait until the clock reaches their stamp)", 0.0, 60.0,
              runtime=True),
    ParamSpec("image_height", 0, "expected image height in pixels; 0 = the model's", 0, 8192),
    ParamSpec("image_width", 0, "expected image width in pixels; 0 = the model's", 0, 8192),
    ParamSpec("resize_images", False, "resize images of another size to the model's (area "
              "interpolation, aspect ratio not kept); false: dropped as wrong_size"),
    ParamSpec("joint_names", [], "JointState entries feeding the model's vector inputs, in model "
              "order: 'joint' (position) or 'joint/velocity', 'joint/effort' (also "
              "'joint:effort', as bag import names them); empty = the checkpoint's names",
              array="string[]"),
    ParamSpec("prediction_horizon", 0, "ticks predicted ahead on ~/prediction and "
              "~/prediction_stddev (0 = off)", 0, 1000, runtime=True),
    ParamSpec("publish_markers", False, "publish ~/markers (estimated links, +-2 sigma)",
              runtime=True),
    ParamSpec("marker_link_lengths", [], "m per link for ~/markers; empty = 1 m each",
              array="double[]"),
    ParamSpec("frame_id", "", "frame_id of the output headers"),
    ParamSpec("output_joint_names", [], "joint names in ~/state; empty = the checkpoint's output "
              "names", array="string[]"),
    ParamSpec("stamp_offset", 0.0, "s added to the tick's time in output stamps (a model trained "
              "on next-step targets estimates the state one dt after its inputs)", 0.0, 10.0,
              runtime=True),
    ParamSpec("diagnostics_period", 1.0, "s between /diagnostics messages", 0.05, 60.0),
    ParamSpec("warmup_steps", 20, "throw-away model steps at start-up", 0, 10000),
    ParamSpec("latency_window", 1000, "steps in the latency statistics window", 10, 1000000),
    ParamSpec("warn_throttle", 5.0, "s between repeated warnings of one kind", 0.0, 3600.0,
              runtime=True),
)


@dataclass(frozen=True)
class EstimatorSettings:
    """The parameters' values, typed (field names are the parameter names)."""

    model_path: str
    device: str
    cpu_backend: str
    publish_before_predict: bool
    num_threads: int
    cpu_affinity: list[int]
    frequency: float
    tick_on: str
    sensor_timeout: float
    reset_after_gap: float
    max_future: float
    image_height: int
    image_width: int
    resize_images: bool
    joint_names: list[str]
    prediction_horizon: int
    publish_markers: bool
    marker_link_lengths: list[float]
    frame_id: str
    output_joint_names: list[str]
    stamp_offset: float
    diagnostics_period: float
    warmup_steps: int
    latency_window: int
    warn_throttle: float

    @classmethod
    def defaults(cls, **values: ParamValue) -> EstimatorSettings:
        """The table's defaults with ``values`` set (for tests and plain Python use)."""
        return cls(**{**{p.name: p.default for p in PARAMETERS}, **values})


def _yaml_value(value: ParamValue) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value or '""'
    return str(value)


def _range(spec: ParamSpec) -> str:
    return "" if spec.low is None else f"{spec.low:g} .. {spec.high:g}"


def render_yaml() -> str:
    """``config/estimator.yaml``: every parameter with its default, described."""
    lines = [
        "# The estimator alone, for your own robot (launch/estimator.launch.py). Every parameter",
        "# with its default (model_path has none: give your checkpoint, e.g.",
        "# model_path:=/path/to/checkpoint); `ros2 param describe /rkn_estimator <name>` gives",
        "# the same descriptions and ranges. Printed from rkn_ros/nodes/estimator_params.py.",
        "# `/**/` before a node name matches that node in any namespace (namespace:=robot1).",
        "/**/rkn_estimator:",
        "  ros__parameters:",
    ]
    for spec in PARAMETERS:
        limits = f" [{_range(spec)}]" if spec.low is not None else ""
        settable = " (settable at run time)" if spec.runtime else ""
        text = spec.description + limits + settable
        lines += [f"    # {line}" for line in textwrap.wrap(text, 94)]
        lines.append(f"    {spec.name}: {_yaml_value(spec.default)}")
    return "\n".join(lines) + "\n"


def render_markdown() -> str:
    """The parameter table of ``docs/runtime.md``."""
    lines = [
        "| parameter | default | range | at run time | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in PARAMETERS:
        description = spec.description.replace("|", "\\|")
        settable = "settable" if spec.runtime else "read-only"
        lines.append(
            f"| `{spec.name}` | `{_yaml_value(spec.default)}` | {_range(spec)} | {settable} "
            f"| {description} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write({"yaml": render_yaml, "markdown": render_markdown}[sys.argv[1]]())
