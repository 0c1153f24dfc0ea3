"""The demo systems' nodes, described once for ``launch/*.launch.py`` and ``rkn-ros demo``.

Each system is a source (a simulator or the PAM replay), ``rkn_estimator`` and ``rkn_monitor``,
wired by remapping the estimator's private inputs onto the source's topics and the monitor's
inputs onto the estimator's outputs. Names are relative, so a namespace given to the whole
system keeps it wired. No ROS import: a launch file and the demo both read this.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ESTIMATOR = "rkn_estimator"
MONITOR = "rkn_monitor"

# the estimator's private outputs that a launch argument `<output>_topic` may remap
ESTIMATOR_OUTPUTS = ("state", "state_stddev", "prediction", "prediction_stddev", "markers")

Remapping = tuple[str, str]  # (name the node uses, name it is remapped to), as `-r from:=to`


@dataclass(frozen=True)
class NodeSpec:
    """One process, and the graph entities whose appearance says it is ready.

    ``subscribes``, ``publishes`` and ``serves`` are the names the node's code uses (``~/x``
    private, else relative); :func:`resolve` gives them after the remappings.
    """

    executable: str
    name: str
    remappings: tuple[Remapping, ...] = ()
    subscribes: tuple[str, ...] = ()
    publishes: tuple[str, ...] = ()
    serves: tuple[str, ...] = ()


def resolve(spec: NodeSpec, name: str, namespace: str = "") -> str:
    """The fully qualified name of ``name`` for the node ``spec`` in ``namespace`` (rcl's
    expansion of ``~`` and relative names, after the node's remappings)."""
    target = dict(spec.remappings).get(name, name)
    base = "/" + namespace.strip("/") if namespace.strip("/") else ""
    if target.startswith("~/"):
        return f"{base}/{spec.name}/{target[2:]}"
    return target if target.startswith("/") else f"{base}/{target}"


@dataclass(frozen=True)
class DemoSystem:
    """A system: its parameter file, its source node and which estimator inputs it feeds."""

    config: str  # relative to the package share (or the source tree)
    source: str  # executable and node name of the simulator or replay
    inputs: tuple[str, ...]  # the estimator's input names ("command", "image", a sensor's name)
    launch_file: str

    def nodes(self, outputs: Mapping[str, str] | None = None) -> tuple[NodeSpec, ...]:
        """Source, estimator, monitor. ``outputs`` remaps estimator outputs (``state`` ->
        ``/robot/estimate``); the monitor then listens where the estimate goes."""
        outputs = {k: v for k, v in (outputs or {}).items() if v}
        unknown = set(outputs) - set(ESTIMATOR_OUTPUTS)
        if unknown:
            raise ValueError(f"unknown estimator outputs {sorted(unknown)}; "
                             f"known: {list(ESTIMATOR_OUTPUTS)}")
        source = NodeSpec(self.source, self.source)
        estimator = NodeSpec(
            ESTIMATOR,
            ESTIMATOR,
            tuple((f"~/{i}", f"{self.source}/{i}") for i in self.inputs)
            + tuple((f"~/{o}", outputs[o]) for o in ESTIMATOR_OUTPUTS if o in outputs),
            subscribes=tuple(f"~/{i}" for i in self.inputs),
            publishes=("~/state", "~/state_stddev"),
            serves=("~/reset",),  # created last, after the model has loaded
        )
        monitor = NodeSpec(
            MONITOR,
            MONITOR,
            (
                # the same name in the same namespace resolves to the same topic
                ("~/estimate", outputs.get("state", f"{ESTIMATOR}/state")),
                ("~/estimate_stddev", outputs.get("state_stddev", f"{ESTIMATOR}/state_stddev")),
                ("~/truth", f"{self.source}/joint_states_truth"),
            ),
            subscribes=("~/estimate", "~/estimate_stddev", "~/truth"),
        )
        return (source, estimator, monitor)


SYSTEMS: dict[str, DemoSystem] = {
    "pendulum": DemoSystem(
        "config/pendulum.yaml", "pendulum_sim", ("image",), "launch/pendulum_sim.launch.py"
    ),
    "quad_link": DemoSystem(
        "config/quad_link.yaml", "pendulum_sim", ("image",), "launch/pendulum_sim.launch.py"
    ),
    # two cameras (the side one dropping frames), an IMU and an encoder, fused by one model
    "fusion": DemoSystem(
        "config/fusion.yaml", "pendulum_sim", ("image", "image_side", "imu", "encoder"),
        "launch/fusion.launch.py",
    ),
    "pneumatic": DemoSystem(
        "config/pneumatic.yaml",
        "pneumatic_sim",
        ("command", "joint_states"),
        "launch/pneumatic_sim.launch.py",
    ),
    "pam": DemoSystem(
        "config/pam.yaml", "pam_replay", ("command", "joint_states"),
        "launch/pneumatic_sim.launch.py",
    ),
}
