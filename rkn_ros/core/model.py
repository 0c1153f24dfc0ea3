"""The interface every sequence model implements (RKN, LSTM, GRU), and its input checks.

`step` is encode -> cell -> decode for one tick; `forward` encodes all valid frames in one
batched call (the encoders are per-frame functions, so this is the same function), runs the
recurrence over time (`filter_sequence`), and decodes all ticks in one batched call.
`SequenceModel.filter_sequence` is the plain loop over `cell` (the step contract,
core/step_contract.py), the reference; the LSTM/GRU run the whole sequence in one
`nn.LSTM`/`nn.GRU` call with the same weights, and the RKN runs `cell`'s math with the batch as
the last dimension (faster at training sizes). Train, evaluation and runtime never diverge:
test_core_model checks forward against a loop of steps, and the RKN's `filter_sequence` against
the `cell` loop, gradients included.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rkn_ros.core.config import ModelConfig, SensorSpec
from rkn_ros.core.decoders import GaussianDecoder, ImageDecoder
from rkn_ros.core.encoders import build_encoder
from rkn_ros.core.step_contract import Encoded, ModelState, StepContract, StepOutput
from rkn_ros.core.step_graph import CompiledStep

__all__ = ["Encoded", "SequenceModel", "SequenceOutput", "StepOutput"]


@dataclass
class SequenceOutput:
    """Result of a sequence: mean, var [batch, time, output_dim]; image [batch, time, *shape]
    or None; state: the prior after the last tick (to continue filtering)."""

    mean: Tensor
    var: Tensor
    state: ModelState
    image: Tensor | None = None


def _shape(x: Tensor | tuple[int, ...]) -> str:
    dims = x.shape if isinstance(x, Tensor) else x
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _check_tensor(name: str, x: Any, lead: tuple[int, ...], tail: tuple[int, ...],
                  lead_names: str, dtype: torch.dtype) -> None:
    expected = f"[{lead_names}" + "".join(f", {d}" for d in tail) + "]"
    if not isinstance(x, Tensor):
        raise ValueError(f"{name}: expected a tensor of shape {expected}, "
                         f"received {type(x).__name__}")
    lead_ok = all(want < 0 or got == want for got, want in zip(x.shape, lead, strict=False))
    if x.dim() != len(lead) + len(tail) or tuple(x.shape[len(lead):]) != tail or not lead_ok:
        known = "" if min(lead, default=0) < 0 else (
            f" with {lead_names} = {', '.join(map(str, lead))}")
        raise ValueError(f"{name}: expected shape {expected}{known}, received {_shape(x)}")
    if x.dtype != dtype:
        raise ValueError(f"{name}: expected dtype {dtype} with shape {expected}, "
                         f"received {x.dtype} with shape {_shape(x)}")


def _check_finite(name: str, x: Tensor) -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name}: expected finite values (shape {_shape(x)}), "
                         f"received NaN or inf")


class SequenceModel(nn.Module, StepContract):
    """Base class: encoders, decoders, input checks, `step`, `forward`, on the step contract.

    Subclasses implement `initial_state`, `update`, `advance`, `flatten_state`,
    `unflatten_state`, `predict` and `_check_state` (and may override `cell`).
    """

    def __init__(self, config: ModelConfig, mean_features: int, var_features: int) -> None:
        super().__init__()
        self.config = config
        self.sensors: tuple[SensorSpec, ...] = config.sensors
        self.encoders = nn.ModuleDict({s.name: build_encoder(s, config) for s in config.sensors})
        self.decoder = GaussianDecoder(mean_features, var_features, config.output_dim,
                                       config.decoder_hidden)
        image = config.decoded_image_sensor if config.image_decoder else None
        self.image_decoder = (ImageDecoder(mean_features, image, config.encoder_conv_channels[-1])
                              if image is not None else None)

    @abc.abstractmethod
    def _check_state(self, state: Any, batch: int) -> None:
        """Raise ValueError naming the part of `state` that is not a [batch, ...] state."""

    def _sequence_constants(self) -> dict[str, Any]:
        """Keyword arguments for `cell` that depend on the weights only: computed once per
        sequence in the `cell` loop instead of once per tick (fewer graph nodes to
        back-propagate)."""
        return {}

    # -- shared ---------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.mean_net[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.decoder.mean_net[0].weight.device

    def _check_inputs(
        self, observations: Any, valid: Any, action: Any, dt: Any, lead: tuple[int, ...],
        lead_names: str, action_name: str,
    ) -> dict[str, Tensor]:
        """Validate inputs; return the observations with invalid samples replaced by zeros.

        Zeros (not the caller's NaN or garbage) must reach the encoder in `step`, which
        encodes every sample: the update gives an invalid sample zero gain, but a NaN input
        would still poison the weight gradients. (`forward` encodes only the valid ones.)
        """
        dtype = self.dtype
        names = [s.name for s in self.sensors]
        for arg, given in (("observations", observations), ("valid", valid)):
            if not isinstance(given, dict):
                raise ValueError(f"{arg}: expected a dict keyed by sensor name {names}, "
                                 f"received {type(given).__name__}")
            if sorted(given) != sorted(names):
                raise ValueError(f"{arg}: expected keys {sorted(names)}, received {sorted(given)}")
        cleaned = {}
        for spec in self.sensors:
            x = observations[spec.name]
            _check_tensor(f"observations[{spec.name!r}]", x, lead, spec.shape, lead_names, dtype)
            mask = valid[spec.name]
            _check_tensor(f"valid[{spec.name!r}]", mask, lead, (), lead_names, torch.bool)
            x = torch.where(mask.view(*mask.shape, *(1,) * len(spec.shape)), x,
                            torch.zeros((), dtype=dtype, device=x.device))
            # one reduction as the fast check; the element-wise one only to confirm (a sum of
            # huge finite values can overflow)
            if not bool(torch.isfinite(x.sum())):
                _check_finite(f"observations[{spec.name!r}] (valid samples)", x)
            cleaned[spec.name] = x
        for name, value, width, wanted in (
            (action_name, action, self.config.action_dim, self.config.action_dim > 0),
            ("dt", dt, 1, self.config.use_dt),
        ):
            if value is None and wanted:
                raise ValueError(f"{name}: this model needs it, shape [{lead_names}, {width}], "
                                 f"received None")
            if value is not None:
                if not wanted:
                    received = (f"shape {_shape(value)}" if isinstance(value, Tensor)
                                else type(value).__name__)
                    raise ValueError(f"{name}: this model was built without it "
                                     f"(action_dim={self.config.action_dim}, "
                                     f"use_dt={self.config.use_dt}), expected None, "
                                     f"received {received}")
                _check_tensor(name, value, lead, (width,), lead_names, dtype)
                _check_finite(name, value)
        return cleaned

    def encode(self, observations: dict[str, Tensor]) -> list[tuple[Tensor, Tensor]]:
        """Per sensor, in config order: (w, var_obs) [N, m] for samples [N, *shape]."""
        return [self.encoders[s.name](observations[s.name]) for s in self.sensors]

    def decode(self, mean_features: Tensor, var_features: Tensor, *, image: bool = True
               ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Features [N, dim] -> mean, var [N, output_dim] and image probabilities or None."""
        mean, var = self.decoder(mean_features, var_features)
        decoder = self.image_decoder if image else None
        return mean, var, decoder(mean_features) if decoder is not None else None

    def step(self, state: Any, observations: dict[str, Tensor], valid: dict[str, Tensor],
             action: Tensor | None = None, dt: Tensor | None = None, *,
             check: bool = True) -> StepOutput:
        """One tick.

        state: from `initial_state` or the previous step; observations: {sensor: [batch, *shape]};
        valid: {sensor: [batch] bool}; action: [batch, action_dim], applied after this tick;
        dt: [batch, 1], time from this tick to the next.

        `check=False` skips the input checks, which read values back to the host (no CUDA
        graph capture) and cost about as much as the cell at batch 1. The caller then
        guarantees the shapes and dtypes above and finite values, with zeros (not NaN) in
        missing samples; the math is identical.
        """
        if check:
            batch = _batch_of(observations)
            observations = self._check_inputs(observations, valid, action, dt, (batch,),
                                              "batch", "action")
            self._check_state(state, batch)
        encoded = [(w, v, valid[s.name])
                   for s, (w, v) in zip(self.sensors, self.encode(observations), strict=True)]
        next_state, mean_features, var_features, posterior = self.cell(state, encoded, action, dt)
        mean, var, image = self.decode(mean_features, var_features)
        return StepOutput(next_state, mean, var, image, posterior)

    def compile_step(self, batch_size: int = 1) -> CompiledStep:
        """`step(..., check=False)` traced and frozen into TorchScript for a fixed batch size.

        Same ops (outputs equal `step`'s to float rounding; test_core_model checks 1e-6), run
        without the Python interpreter between them: about 2x faster at batch 1 on CPU, where
        the per-op Python overhead is most of a step. It is a snapshot: weights (and the
        model's device and dtype) are folded in, so build it again after changing them. No
        image decoding. Call it under `torch.inference_mode()`.
        """
        return CompiledStep(self, batch_size)

    def forward(self, observations: dict[str, Tensor], valid: dict[str, Tensor],
                actions: Tensor | None = None, dt: Tensor | None = None,
                state: Any = None) -> SequenceOutput:
        """Filter whole sequences.

        observations: {sensor: [batch, time, *shape]}; valid: {sensor: [batch, time] bool};
        actions: [batch, time, action_dim]; dt: [batch, time, 1]; state: initial state or None.
        """
        batch, steps = _batch_time_of(observations)
        observations = self._check_inputs(observations, valid, actions, dt, (batch, steps),
                                          "batch, time", "actions")
        if state is None:
            state = self.initial_state(batch, device=next(iter(observations.values())).device)
        else:
            self._check_state(state, batch)
        encoded = [self._encode_valid(spec.name, observations[spec.name], valid[spec.name])
                   for spec in self.sensors]
        state, mean_features, var_features = self.filter_sequence(state, encoded, valid,
                                                                  actions, dt)
        mean, var, image = self.decode(mean_features.flatten(0, 1), var_features.flatten(0, 1))
        image = image.view(batch, steps, *image.shape[1:]) if image is not None else None
        return SequenceOutput(mean.view(batch, steps, -1), var.view(batch, steps, -1), state,
                              image)

    def _encode_valid(self, name: str, samples: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
        """(w, var_obs) [batch, time, m] of sensor `name`'s samples [batch, time, *shape].

        Only the valid samples go through the encoder (the image encoder is most of a training
        step, and training drops observations); the others get w = 0, var_obs = 1. The cell
        gives a missing sample zero gain (the LSTM/GRU input zeros it), so its encoding never
        reaches an output and its gradient is zero: the same outputs and gradients as encoding
        every sample (up to the summation order of the encoder's weight gradients).
        """
        batch, steps = valid.shape
        flat = samples.flatten(0, 1)
        index = valid.flatten().nonzero().squeeze(1)
        if index.numel() == flat.shape[0]:
            w, var_obs = self.encoders[name](flat)
        else:
            w_valid, var_valid = self.encoders[name](flat.index_select(0, index))
            size = (flat.shape[0], w_valid.shape[1])
            w = w_valid.new_zeros(size).index_copy(0, index, w_valid)
            var_obs = var_valid.new_ones(size).index_copy(0, index, var_valid)
        return w.view(batch, steps, -1), var_obs.view(batch, steps, -1)

    def filter_sequence(self, state: Any, encoded: list[tuple[Tensor, Tensor]],
                        valid: dict[str, Tensor], actions: Tensor | None, dt: Tensor | None
                        ) -> tuple[Any, Tensor, Tensor]:
        """The loop over `cell` (the reference; shapes: `StepContract.filter_sequence`);
        returns the final state and features [batch, time, dim]."""
        mean_features, var_features = [], []
        # Split along time once: the backward of `unbind` is one `stack`, where per-tick
        # indexing would back-propagate through a zero-filled [batch, time, dim] tensor per
        # tick and input.
        ticks = zip(*(part.unbind(1) for (w, v), s in zip(encoded, self.sensors, strict=True)
                      for part in (w, v, valid[s.name])), strict=True)
        steps = valid[self.sensors[0].name].shape[1]
        action_ticks = actions.unbind(1) if actions is not None else (None,) * steps
        dt_ticks = dt.unbind(1) if dt is not None else (None,) * steps
        constants = self._sequence_constants()
        for parts, action, dt_t in zip(ticks, action_ticks, dt_ticks, strict=True):
            tick = [parts[i:i + 3] for i in range(0, len(parts), 3)]
            state, mf, vf, _ = self.cell(state, tick, action, dt_t, **constants)
            mean_features.append(mf)
            var_features.append(vf)
        return state, torch.stack(mean_features, 1), torch.stack(var_features, 1)

    def _check_predict_args(self, steps: Any, actions: Tensor | None, dt: Tensor | None,
                            batch: int) -> None:
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"steps: expected a positive integer, received {steps!r}")
        dtype = self.dtype
        for name, value, width, wanted in (
            ("actions", actions, self.config.action_dim, self.config.action_dim > 0),
            ("dt", dt, 1, self.config.use_dt),
        ):
            if (value is None) == wanted:
                expected = (f"shape [batch, steps, {width}]" if wanted
                            else "None (the model does not use it)")
                received = _shape(value) if isinstance(value, Tensor) else value
                raise ValueError(f"{name}: expected {expected}, received {received}")
            if value is not None:
                _check_tensor(name, value, (batch, steps), (width,), "batch, steps", dtype)
                _check_finite(name, value)


def _batch_of(observations: Any) -> int:
    if isinstance(observations, dict) and observations:
        first = next(iter(observations.values()))
        if isinstance(first, Tensor) and first.dim() > 0:
            return first.shape[0]
    return -1


def _batch_time_of(observations: Any) -> tuple[int, int]:
    if isinstance(observations, dict) and observations:
        first = next(iter(observations.values()))
        if isinstance(first, Tensor) and first.dim() > 1:
            return first.shape[0], first.shape[1]
    return -1, -1
