"""A model step as a graph: on a flat list of tensors (`FlatStep`, for tracing and export) and
traced into TorchScript (`CompiledStep`). Both use only the step contract
(core/step_contract.py), so any model that implements it exports the same way.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import Tensor, nn

from rkn_ros.core.step_contract import ModelState, StepContract, StepOutput

# The model these wrap: the step contract on an nn.Module (what every SequenceModel is; tracing
# needs the module). Typed by the contract so this module needs nothing from core.model.
StepModel = StepContract

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

    def __init__(self, model: StepModel, state_len: int, part: str = "step") -> None:
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
        state = model.unflatten_state(args[: self.state_len])
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
            return model.flatten_state(model.advance(state, action, dt))
        if self.part == "update":
            next_state, mean_features, var_features = model.update(state, encoded)
        else:
            next_state, mean_features, var_features, _ = model.cell(state, encoded, action, dt)
        mean, var, _ = model.decode(mean_features, var_features, image=False)
        return (*model.flatten_state(next_state), mean, var)


def flat_step(model: StepModel, batch_size: int,
              part: str = "step") -> tuple[FlatStep, tuple[Tensor, ...]]:
    """A `FlatStep` over a private copy of `model` (eval mode) and an example argument tuple
    for it: the model's `initial_state(batch_size)` (as the posterior for "advance"), zero
    observations, all valid, zero action, dt 1. What `compile_step` traces and
    `core.export.export_step_onnx` exports."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, received {batch_size!r}")
    dtype = model.dtype
    device = model.device
    with torch.no_grad():
        state = tuple(t.detach().clone() for t in
                      model.flatten_state(model.initial_state(batch_size, device)))
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

    def __init__(self, model: StepModel, batch_size: int) -> None:
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

    def __call__(self, state: ModelState, observations: dict[str, Tensor], valid: dict[str, Tensor],
                 action: Tensor | None = None, dt: Tensor | None = None) -> StepOutput:
        args = list(self._model.flatten_state(state))
        for name in self._names:
            args.append(observations[name])
            args.append(valid[name])
        if self._has_action:
            args.append(action)
        if self._has_dt:
            args.append(dt)
        out = self._module(*args)
        n = self._state_len
        return StepOutput(self._model.unflatten_state(out[:n]), out[n], out[n + 1])
