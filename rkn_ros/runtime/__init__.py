"""rkn_ros.runtime: the streaming estimator used at every tick; no ROS import."""

from rkn_ros.core.decode import OutputLayout, OutputLayoutError
from rkn_ros.runtime.estimator import (
    EstimatorOutput,
    InputError,
    InputSpec,
    Prediction,
    StreamingEstimator,
)
from rkn_ros.runtime.latency import LatencyStats

__all__ = [
    "EstimatorOutput",
    "InputError",
    "InputSpec",
    "LatencyStats",
    "OutputLayout",
    "OutputLayoutError",
    "Prediction",
    "StreamingEstimator",
]
