"""The public step contract every sequence model implements (RKN, LSTM, GRU).

One tick of a filter is, in this order: `encode` each sensor's samples, `update` the prior with
the encodings (the RKN: one Kalman update per sensor, Becker et al. 2019, Sec. 3.2), `decode`
the posterior's features into the estimate, and `advance` the posterior to the next tick's prior
(the RKN: the locally linear transition, Sec. 3.1). `cell` is update then advance.
`filter_sequence` runs `cell` over whole encoded sequences (training, evaluation).
`flatten_state`/`unflatten_state` turn a state into a flat tuple of tensors and back, for graph
export (TorchScript, ONNX) and for callers that keep the state in their own buffers.

Callers that run a model one tick at a time outside `SequenceModel.step` (the streaming runtime,
the exported graphs) use these methods and nothing else of the model. They take unchecked,
well-formed tensors: zeros (not NaN) in missing samples, finite values, the model's dtype.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import Tensor

from rkn_ros.core.belief import Belief
from rkn_ros.core.config import ModelConfig, SensorSpec

# The recurrent state: a Belief for the RKN, a tuple of [batch, width] tensors for the LSTM/GRU.
ModelState = Belief | tuple[Tensor, ...]
# A state as a flat tuple of tensors, each [batch, width] (`flatten_state`).
FlatState = tuple[Tensor, ...]
# One sensor at one tick: (w [batch, m], var_obs [batch, m], valid [batch] bool).
Encoded = tuple[Tensor, Tensor, Tensor]
# (mean features [batch, mean_dim], var features [batch, var_dim]): the decoders' inputs.
Features = tuple[Tensor, Tensor]


@dataclass
class StepOutput:
    """Result of one tick.

    state: prior for the next tick (Belief for the RKN, tuple of tensors for LSTM/GRU);
    mean, var: [batch, output_dim]; image: Bernoulli probabilities [batch, *image shape] or None;
    posterior: the RKN's belief after this tick's observations (None for LSTM/GRU).
    """

    state: ModelState
    mean: Tensor
    var: Tensor
    image: Tensor | None = None
    posterior: Belief | None = None



class StepContract(abc.ABC):
    """One filter tick as separate, public parts (see the module docstring).

    `config` and `sensors` (config order) describe the inputs; `dtype` and `device` are the
    weights'. Every tensor argument is batch first, of that dtype and device.
    """

    config: ModelConfig
    sensors: tuple[SensorSpec, ...]

    # True where `update` and `advance` are both real work, so a real-time caller gains by
    # publishing the estimate after `update` and running `advance` later (the RKN). The
    # LSTM/GRU's `advance` only stores the command for the next tick: nothing to gain.
    splits_step: bool = False

    @property
    @abc.abstractmethod
    def dtype(self) -> torch.dtype:
        """The weights' dtype: every input tensor must have it."""

    @property
    @abc.abstractmethod
    def device(self) -> torch.device:
        """The weights' device."""

    @abc.abstractmethod
    def initial_state(self, batch_size: int,
                      device: torch.device | str | None = None) -> ModelState:
        """The prior of the first tick for `batch_size` sequences."""

    @abc.abstractmethod
    def encode(self, observations: dict[str, Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Per sensor, in config order: (w, var_obs) [N, m] of samples [N, *shape]."""

    @abc.abstractmethod
    def update(self, state: ModelState, encoded: list[Encoded]
               ) -> tuple[ModelState, Tensor, Tensor]:
        """This tick's observations into the prior: (posterior, mean features, var features)."""

    @abc.abstractmethod
    def advance(self, posterior: ModelState, action: Tensor | None,
                dt: Tensor | None) -> ModelState:
        """The next tick's prior from `update`'s posterior; action [batch, action_dim] is the
        command applied after this tick, dt [batch, 1] the time to the next one."""

    def cell(self, state: ModelState, encoded: list[Encoded], action: Tensor | None,
             dt: Tensor | None) -> tuple[ModelState, Tensor, Tensor, ModelState | None]:
        """One tick on encoded inputs: (next prior, mean features, var features, posterior)."""
        posterior, mean_features, var_features = self.update(state, encoded)
        return self.advance(posterior, action, dt), mean_features, var_features, posterior

    @abc.abstractmethod
    def filter_sequence(self, state: ModelState, encoded: list[tuple[Tensor, Tensor]],
                        valid: dict[str, Tensor], actions: Tensor | None, dt: Tensor | None
                        ) -> tuple[ModelState, Tensor, Tensor]:
        """`cell` over a whole sequence: the same function of the inputs, the state and the
        weights as the loop over `cell`, derivatives included (may run faster).

        state: the first tick's prior; encoded: per sensor, in config order, (w, var_obs)
        [batch, time, m] (any values where a sample is missing); valid: {sensor: [batch, time]
        bool}; actions: [batch, time, action_dim] (tick t's command applied after it) or None;
        dt: [batch, time, 1] or None. Returns (the prior after the last tick, mean features
        [batch, time, mean_dim], var features [batch, time, var_dim]) for `decode`."""

    @abc.abstractmethod
    def decode(self, mean_features: Tensor, var_features: Tensor, *, image: bool = True
               ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Features [N, dim] -> mean, var [N, output_dim] and the image probabilities
        [N, *image shape] (None without an image decoder, or with `image=False`)."""

    @abc.abstractmethod
    def flatten_state(self, state: ModelState) -> FlatState:
        """The state as a flat tuple of tensors, in a fixed order."""

    @abc.abstractmethod
    def unflatten_state(self, tensors: FlatState) -> ModelState:
        """Inverse of `flatten_state`."""

    @abc.abstractmethod
    def predict(self, state: ModelState, steps: int, actions: Tensor | None = None,
                dt: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Open-loop prediction from `state` (the prior `step` returned): means, variances
        [batch, steps, output_dim]; output j is tick t+1+j (j = 0 decodes `state` itself)."""
