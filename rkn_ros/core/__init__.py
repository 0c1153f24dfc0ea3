"""rkn_ros.core: the Recurrent Kalman Network and its baselines in PyTorch (no ROS import).

`build_model(config)` returns a `SequenceModel` (RKN, LSTM or GRU) with one interface:
`initial_state`, `step`, `forward`, `predict` (see docs/interfaces.md).
"""

from rkn_ros.core.belief import Belief, kalman_predict, kalman_update, predict, update
from rkn_ros.core.config import ModelConfig, SensorSpec
from rkn_ros.core.losses import bernoulli_nll, coverage, gaussian_nll, rmse
from rkn_ros.core.model import SequenceModel, SequenceOutput, StepOutput
from rkn_ros.core.rkn import RKN
from rkn_ros.core.rnn import RecurrentBaseline


def build_model(config: ModelConfig) -> SequenceModel:
    """The model `config.kind` names, freshly initialised (seed torch first for determinism)."""
    if not isinstance(config, ModelConfig):
        raise ValueError(f"config: expected a ModelConfig, received {type(config).__name__}")
    if config.kind == "rkn":
        return RKN(config)
    return RecurrentBaseline(config)


__all__ = [
    "RKN",
    "Belief",
    "ModelConfig",
    "RecurrentBaseline",
    "SensorSpec",
    "SequenceModel",
    "SequenceOutput",
    "StepOutput",
    "bernoulli_nll",
    "build_model",
    "coverage",
    "gaussian_nll",
    "kalman_predict",
    "kalman_update",
    "predict",
    "rmse",
    "update",
]
