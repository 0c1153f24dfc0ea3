"""rkn_ros.runtime: the streaming estimator used at every tick; no ROS import."""

from rkn_ros.core.decode import OutputLayout, OutputLayoutError
from rkn_ros.runtime.codec import CheckedAction, CheckedInput, InputError, rejection_key
from rkn_ros.runtime.estimator import StreamingEstimator
from rkn_ros.runtime.latency import LatencyStats
from rkn_ros.runtime.outputs import EstimatorOutput, Prediction
from rkn_ros.runtime.spec import EstimatorSpec, InputSpec

__all__ = [
    "CheckedAction",
    "CheckedInput",
    "EstimatorOutput",
    "EstimatorSpec",
    "InputError",
    "InputSpec",
    "LatencyStats",
    "OutputLayout",
    "OutputLayoutError",
    "Prediction",
    "StreamingEstimator",
    "rejection_key",
]
