"""The step in PyTorch: traced TorchScript (CPU), eager (CUDA without a graph), a CUDA graph.

Each holds the belief as the model's state on the model's device; the eager and TorchScript
ones replace it every step, the CUDA graph writes it in place (the graph reads and writes those
exact tensors).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rkn_ros.core.model import SequenceModel
from rkn_ros.core.step_contract import ModelState
from rkn_ros.runtime.backends.base import StateSlot
from rkn_ros.runtime.buffers import StepBuffers


def _to_host(mean: Tensor, var: Tensor) -> tuple[np.ndarray, np.ndarray]:
    return mean[0].to("cpu", torch.float64).numpy(), var[0].to("cpu", torch.float64).numpy()


class _TorchStateBackend:
    """The belief as a replaceable model state; slots are tensors on the device."""

    name: str
    splits_step = False

    def __init__(self, model: SequenceModel, buffers: StepBuffers) -> None:
        self._model = model
        self._buffers = buffers
        with torch.inference_mode():
            self._state: ModelState = model.initial_state(1, device=model.device)
        self._previous = self._state  # what the last run read (runs replace, never write)

    def advance(self) -> None:
        """The step does not split: nothing left to run."""

    def state(self) -> ModelState:
        return self._state

    def new_slot(self) -> StateSlot:
        with torch.inference_mode():
            return tuple(t.detach().clone() for t in self._model.flatten_state(self._state))

    def rollback(self) -> None:
        self._state = self._previous

    def load_state(self, slot: StateSlot) -> None:
        with torch.inference_mode():
            self._state = self._model.unflatten_state(tuple(t.clone() for t in slot))


class TorchScriptBackend(_TorchStateBackend):
    """`SequenceModel.compile_step`: the step traced and frozen (CPU, no ONNX Runtime)."""

    name = "torchscript"

    def __init__(self, model: SequenceModel, buffers: StepBuffers) -> None:
        super().__init__(model, buffers)
        self._compiled = model.compile_step(1)

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        buffers = self._buffers
        with torch.inference_mode():
            out = self._compiled(self._state, buffers.obs, buffers.valid, buffers.model_action,
                                 buffers.model_dt)
            self._previous, self._state = self._state, out.state
            return _to_host(out.mean, out.var)


def eager_step(model: SequenceModel, buffers: StepBuffers,
               state: ModelState) -> tuple[Tensor, Tensor, ModelState]:
    """`model.step` without its input checks, through the step contract: encode, cell, decode.

    The checks read tensor values back to the host, which a CUDA graph cannot capture and which
    cost as much as the cell at batch 1; the codec checked every input in numpy and missing
    inputs are zeros, so they have nothing left to catch.
    """
    encoded = [(w, var, buffers.valid[s.name])
               for s, (w, var) in zip(model.sensors, model.encode(buffers.obs), strict=True)]
    next_state, mean_features, var_features, _ = model.cell(
        state, encoded, buffers.model_action, buffers.model_dt)
    mean, var, _ = model.decode(mean_features, var_features, image=False)
    return mean, var, next_state


class EagerBackend(_TorchStateBackend):
    """The contract's step op by op (CUDA where graph capture is off or failed)."""

    def __init__(self, model: SequenceModel, buffers: StepBuffers) -> None:
        super().__init__(model, buffers)
        self.name = model.device.type

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            self._buffers.to_device()
            self._previous = self._state
            mean, var, self._state = eager_step(self._model, self._buffers, self._state)
            return _to_host(mean, var)


class CudaGraphBackend:
    """The step and the belief hand-over captured once in a CUDA graph, replayed every tick
    (only the buffer copies and one graph launch run per step); the graph also keeps a copy of
    the prior it read, for `rollback`. Raises RuntimeError where the model cannot be captured
    (one that syncs to the host inside its step)."""

    name = "cuda_graph"
    splits_step = False

    def __init__(self, model: SequenceModel, buffers: StepBuffers) -> None:
        self._model = model
        self._buffers = buffers
        device = model.device
        with torch.inference_mode():
            self._static = tuple(t.detach().clone() for t in
                                 model.flatten_state(model.initial_state(1, device=device)))
            self._previous = tuple(t.clone() for t in self._static)
            self._initial = tuple(t.clone() for t in self._static)  # warm-up runs change static
            state = model.unflatten_state(self._static)
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(3):  # let lazy initialisation happen outside the capture
                    self._step_in_place(state)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                self._out = self._step_in_place(state)
            torch.cuda.synchronize(device)
        self._graph = graph
        self.load_state(self._initial)

    def _step_in_place(self, state: ModelState) -> tuple[Tensor, Tensor]:
        for dst, src in zip(self._previous, self._static, strict=True):  # for `rollback`
            dst.copy_(src)
        mean, var, next_state = eager_step(self._model, self._buffers, state)
        for dst, src in zip(self._static, self._model.flatten_state(next_state), strict=True):
            dst.copy_(src)
        return mean, var

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            self._buffers.to_device()
            self._graph.replay()
            return _to_host(*self._out)

    def advance(self) -> None:
        """The step does not split: nothing left to run."""

    def state(self) -> ModelState:
        return self._model.unflatten_state(self._static)

    def new_slot(self) -> StateSlot:
        with torch.inference_mode():
            return tuple(t.clone() for t in self._static)

    def rollback(self) -> None:
        self.load_state(self._previous)

    def load_state(self, slot: StateSlot) -> None:
        with torch.inference_mode():  # in place: the graph reads and writes these tensors
            for dst, src in zip(self._static, slot, strict=True):
                dst.copy_(src)
