"""The interface every sequence model implements (RKN, LSTM, GRU), and its input checks.

`step` is encode -> cell -> decode for one tick; `forward` encodes all valid frames in one
batched call (the encoders are per-frame functions, so this is the same function), runs the
recurrence over time (`_run`), and decodes all ticks in one batched call. `SequenceModel._run`
is the plain loop over `_cell`, the reference; the LSTM/GRU run the whole sequence in one
`nn.LSTM`/`nn.GRU` call with the same weights, and the RKN runs `_cell`'s math with the batch
as the last dimension (faster at training sizes). Train, evaluation and runtime never diverge:
test_core_model checks forward against a loop of steps, and the RKN's `_run` against the
`_cell` loop, gradients included.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rkn_ros.core.belief import Belief
from rkn_ros.core.config import ModelConfig, SensorSpec
from rkn_ros.core.decoders import GaussianDecoder, ImageDecoder
from rkn_ros.core.encoders import build_encoder

# (w [batch, m], var_obs [batch, m], valid [batch] bool) for one sensor at one tick
Encoded = tuple[Tensor, Tensor, Tensor]


@dataclass
class StepOutput:
    """Result of one tick.

    state: prior for the next tick (Belief for the RKN, tuple of tensors for LSTM/GRU);
    mean, var: [batch, output_dim]; image: Bernoulli probabilities [batch, *image shape] or None;
    posterior: the RKN's belief after this tick's observations (None for LSTM/GRU).
    """

    state: Any
    mean: Tensor
    var: Tensor
    image: Tensor | None = None
    posterior: Belief | None = None


@dataclass
class SequenceOutput:
    """Result of a sequence: mean, var [batch, time, output_dim]; image [batch, time, *shape]
    or None; state: the prior after the last tick (to continue filtering)."""

    mean: Tensor
    var: Tensor
    state: Any
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


class SequenceModel(nn.Module):
    """Base class: encoders, decoders, input checks, `step`, `forward`.

    Subclasses implement `initial_state`, `_cell`, `predict` and `_check_state`.
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

    # -- to implement ---------------------------------------------------------------------
    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> Any:
        raise NotImplementedError

    def _cell(self, state: Any, encoded: list[Encoded], action: Tensor | None,
              dt: Tensor | None) -> tuple[Any, Tensor, Tensor, Belief | None]:
        """One tick on encoded inputs -> (next state, mean features, var features, posterior)."""
        raise NotImplementedError

    def _check_state(self, state: Any, batch: int) -> None:
        raise NotImplementedError

    # A model whose `_cell` is an update on this tick's inputs followed by a prediction of the
    # next tick (the RKN) sets `splits_step` and implements `_update` and `_advance`: a
    # real-time caller can then publish the estimate before it pays for the prediction.
    splits_step = False

    def _update(self, state: Any, encoded: list[Encoded]) -> tuple[Any, Tensor, Tensor]:
        """The first part of `_cell`: (posterior, mean features, var features)."""
        raise NotImplementedError

    def _advance(self, posterior: Any, action: Tensor | None, dt: Tensor | None) -> Any:
        """The rest of `_cell`: the next tick's state from `_update`'s posterior."""
        raise NotImplementedError

    def _state_tensors(self, state: Any) -> tuple[Tensor, ...]:
        """The state as a flat tuple of tensors (for `compile_step`)."""
        raise NotImplementedError

    def _state_from_tensors(self, tensors: tuple[Tensor, ...]) -> Any:
        """Inverse of `_state_tensors`."""
        raise NotImplementedError

    def _sequence_constants(self) -> dict[str, Any]:
        """Keyword arguments for `_cell` that depend on the weights only: computed once per
        sequence in the `_cell` loop instead of once per tick (fewer graph nodes to
        back-propagate)."""
        return {}

    def predict(self, state: Any, steps: int, actions: Tensor | None = None,
                dt: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self.decoder.mean_net[0].weight.dtype

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

    def decode(self, mean_features: Tensor, var_features: Tensor
               ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Features [N, dim] -> mean, var [N, output_dim] and image probabilities or None."""
        mean, var = self.decoder(mean_features, var_features)
        image = self.image_decoder(mean_features) if self.image_decoder is not None else None
        return mean, var, image

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
        next_state, mean_features, var_features, posterior = self._cell(state, encoded, action, dt)
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
        state, mean_features, var_features = self._run(state, encoded, valid, actions, dt)
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

    def _run(self, state: Any, encoded: list[tuple[Tensor, Tensor]], valid: dict[str, Tensor],
             actions: Tensor | None, dt: Tensor | None) -> tuple[Any, Tensor, Tensor]:
        """The loop over `_cell`; returns the final state and features [batch, time, dim]."""
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
            state, mf, vf, _ = self._cell(state, tick, action, dt_t, **constants)
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


STEP_PARTS = ("step", "update", "advance")


class FlatStep(nn.Module):
    """`step(..., check=False)`, or a part of it, on a flat argument list (tracing and export
    need tensors in, tensors out).

    part "step": state tensors, then (observation, valid) per sensor in config order, then
    action and dt where the model takes them -> the next state's tensors, mean and var.
    part "update" (models with `splits_step`): state tensors and (observation, valid) per
    sensor -> the posterior's tensors, mean and var. part "advance": the posterior's tensors,
    action and dt -> the next state's tensors. `input_names`/`output_names` name the
    positions (`state_0`, `posterior_0`, `obs_<sensor>`, `valid_<sensor>`, `action`, `dt`;
    `next_state_0`, `posterior_0`, ..., `mean`, `var`).
    """

    def __init__(self, model: SequenceModel, state_len: int, part: str = "step") -> None:
        super().__init__()
        if part not in STEP_PARTS:
            raise ValueError(f"part: expected one of {STEP_PARTS}, received {part!r}")
        if part != "step" and not model.splits_step:
            raise ValueError(f"part {part!r}: a {model.config.kind} step does not split")
        self.model = model
        self.state_len = state_len
        self.part = part
        state_in = "posterior" if part == "advance" else "state"
        names = [f"{state_in}_{i}" for i in range(state_len)]
        if part != "advance":
            for spec in model.sensors:
                names += [f"obs_{spec.name}", f"valid_{spec.name}"]
        if part != "update":
            if model.config.action_dim > 0:
                names.append("action")
            if model.config.use_dt:
                names.append("dt")
        self.input_names = names
        state_out = "posterior" if part == "update" else "next_state"
        self.output_names = [f"{state_out}_{i}" for i in range(state_len)]
        if part != "advance":
            self.output_names += ["mean", "var"]

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        model = self.model
        state = model._state_from_tensors(args[: self.state_len])
        k = self.state_len
        encoded = []
        if self.part != "advance":
            encoded_in, masks = {}, []
            for spec in model.sensors:
                encoded_in[spec.name] = args[k]
                masks.append(args[k + 1])
                k += 2
            encoded = [(w, v, mask) for (w, v), mask in zip(model.encode(encoded_in), masks,
                                                             strict=True)]
        action = dt = None
        if self.part != "update":
            if model.config.action_dim > 0:
                action = args[k]
                k += 1
            if model.config.use_dt:
                dt = args[k]
        if self.part == "advance":
            return model._state_tensors(model._advance(state, action, dt))
        if self.part == "update":
            next_state, mean_features, var_features = model._update(state, encoded)
        else:
            next_state, mean_features, var_features, _ = model._cell(state, encoded, action, dt)
        mean, var = model.decoder(mean_features, var_features)
        return (*model._state_tensors(next_state), mean, var)


def flat_step(model: SequenceModel, batch_size: int,
              part: str = "step") -> tuple[FlatStep, tuple[Tensor, ...]]:
    """A `FlatStep` over a private copy of `model` (eval mode) and an example argument tuple
    for it: the model's `initial_state(batch_size)` (as the posterior for "advance"), zero
    observations, all valid, zero action, dt 1. What `compile_step` traces and
    `core.export.export_step_onnx` exports."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, received {batch_size!r}")
    dtype = model.dtype
    device = model.decoder.mean_net[0].weight.device
    with torch.no_grad():
        state = tuple(t.detach().clone() for t in
                      model._state_tensors(model.initial_state(batch_size, device)))
        example: list[Tensor] = list(state)
        if part != "advance":
            for spec in model.sensors:
                example += [torch.zeros(batch_size, *spec.shape, dtype=dtype, device=device),
                            torch.ones(batch_size, dtype=torch.bool, device=device)]
        if part != "update":
            if model.config.action_dim > 0:
                example.append(torch.zeros(batch_size, model.config.action_dim, dtype=dtype,
                                           device=device))
            if model.config.use_dt:
                example.append(torch.ones(batch_size, 1, dtype=dtype, device=device))
        # a private copy: freezing and export fold weights into the graph, some by
        # reference; a copy makes the step a snapshot of the weights as they are now
        snapshot = copy.deepcopy(model).eval()
    return FlatStep(snapshot, len(state), part).eval(), tuple(example)


class CompiledStep:
    """What `SequenceModel.compile_step` returns; call it like `step(..., check=False)`.

    `compiled(state, observations, valid, action=None, dt=None) -> StepOutput` (image and
    posterior None) with every tensor [batch_size, ...] of the model's dtype and device, and
    zeros in missing samples; the inputs are not checked (a wrong shape fails inside
    TorchScript or gives wrong numbers). Built by tracing on the model's
    `initial_state(batch_size)` and zero inputs; the trace holds no value-dependent branch.
    """

    def __init__(self, model: SequenceModel, batch_size: int) -> None:
        self._model = model
        self._names = [s.name for s in model.sensors]
        self._has_action = model.config.action_dim > 0
        self._has_dt = model.config.use_dt
        flat, example = flat_step(model, batch_size)
        self._state_len = flat.state_len
        with torch.no_grad(), warnings.catch_warnings():
            # weight-only constants enter the trace as constants: that is the point;
            # TorchScript is deprecated upstream (docs/core.md: what replaces it)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.trace(flat, example, check_trace=False)
            self._module = torch.jit.freeze(traced)

    def __call__(self, state: Any, observations: dict[str, Tensor], valid: dict[str, Tensor],
                 action: Tensor | None = None, dt: Tensor | None = None) -> StepOutput:
        args = list(self._model._state_tensors(state))
        for name in self._names:
            args.append(observations[name])
            args.append(valid[name])
        if self._has_action:
            args.append(action)
        if self._has_dt:
            args.append(dt)
        out = self._module(*args)
        n = self._state_len
        return StepOutput(self._model._state_from_tensors(out[:n]), out[n], out[n + 1])


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
