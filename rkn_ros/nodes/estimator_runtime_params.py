"""Parameters set while the estimator runs (``ros2 param set``): checked against the loaded
model as at start-up, then handed to the parts that use them.

The settable ones are marked ``runtime`` in :data:`rkn_ros.nodes.estimator_params.PARAMETERS`;
the others are declared read-only, so rclpy refuses them before this module sees them (and
``ros2 param describe`` says to restart the node).
"""

from __future__ import annotations

import dataclasses

from rclpy.parameter import Parameter

from rkn_ros.nodes.estimator_params import PARAMETERS, EstimatorSettings
from rkn_ros.nodes.startup import ServingPlan, StartupError, plan_serving
from rkn_ros.runtime import StreamingEstimator

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
