"""Parameters set while the estimator runs (``ros2 param set``): checked against the loaded
model as at start-up, then handed to the parts that use them.

The settable ones are marked ``runtime`` in :data:`rkn_ros.nodes.estimator_params.PARAMETERS`;
the others are declared read-only, so rclpy refuses them before this module sees them (and
``ros2 param describe`` says to restart the node).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from rcl_interfaces.msg import SetParametersResult
from rclpy.parameter import Parameter

from rkn_ros.nodes.estimator_params import PARAMETERS, EstimatorSettings
from rkn_ros.nodes.params import Throttle
from rkn_ros.nodes.startup import ServingPlan, StartupError, plan_serving
from rkn_ros.runtime import StreamingEstimator

if TYPE_CHECKING:
    from rkn_ros.nodes.estimator_parts import EstimatorParts

RUNTIME_PARAMETERS = frozenset(spec.name for spec in PARAMETERS if spec.runtime)


class RefusedChangeError(ValueError):
    """A run-time parameter change that cannot be applied; its text is the reason."""


def changed_settings(
    settings: EstimatorSettings, parameters: list[Parameter]
) -> EstimatorSettings | None:
    """``settings`` with the run-time ``parameters`` applied (all or none); None when none of
    them is the estimator's (rclpy's own: ``use_sim_time``, ``qos_overrides.*``).

    Raises :class:`RefusedChangeError` for an estimator parameter not settable at run time (one
    reaches here only when its read-only descriptor was bypassed)."""
    values = {}
    for param in parameters:
        if param.name not in RUNTIME_PARAMETERS:
            if param.name in {spec.name for spec in PARAMETERS}:
                raise RefusedChangeError(
                    f"{param.name} is read-only: restart the node to change it"
                )
            continue  # rclpy's own (use_sim_time, qos_overrides.*): not ours to judge
        values[param.name] = param.value
    return dataclasses.replace(settings, **values) if values else None


def replan(settings: EstimatorSettings, est: StreamingEstimator | None) -> ServingPlan | None:
    """The serving plan of new ``settings`` against the loaded model (None before a model is
    loaded: a managed node not configured yet), or :class:`RefusedChangeError` with the reason."""
    if est is None:
        return None
    try:
        return plan_serving(settings, est)
    except StartupError as err:
        raise RefusedChangeError(str(err)) from err


def apply_runtime_parameters(
    node: EstimatorParts, parameters: list[Parameter]
) -> SetParametersResult:
    """The estimator's on-set-parameters callback: the run-time ones checked against the model
    as at start-up, then handed to the scheduler, the outputs and the warnings; else refused
    with the reason (nothing changed)."""
    try:
        settings = changed_settings(node.settings, parameters)
        if settings is None:
            return SetParametersResult(successful=True)
        plan = replan(settings, node.est)
    except RefusedChangeError as err:
        return SetParametersResult(successful=False, reason=str(err))
    node.settings = settings
    node.throttle = Throttle(node, settings.warn_throttle)
    if plan is not None:
        node.plan = plan
        node.scheduler.reconfigure(plan.ticks)
        node.outputs.set_horizon(settings.prediction_horizon)
        node.outputs.set_markers(plan.link_lengths if settings.publish_markers else None)
    return SetParametersResult(successful=True)
