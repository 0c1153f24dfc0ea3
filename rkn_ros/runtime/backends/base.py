"""The small protocol every step backend implements, and what the factory hands back.

A backend runs the model's step on the fixed `StepBuffers` and owns the belief (the prior for
the next tick). The estimator drives every backend through this protocol alone, so no code
outside the factory (`select_backend`) knows which one runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from torch import Tensor

from rkn_ros.core.step_contract import ModelState

# A copy of the belief, kept by the backend in its own storage (numpy arrays for ONNX Runtime,
# tensors on the model's device otherwise), in `flatten_state` order.
StateSlot = tuple[np.ndarray, ...] | tuple[Tensor, ...]


class StepBackend(Protocol):
    """Runs one model step on the buffers; holds the belief."""

    name: str  # onnxruntime | torchscript | cuda_graph | cpu / cuda (eager)
    splits_step: bool  # `run` is the update only; `advance` the prediction of the next prior

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        """One step (or its update part) on the buffers as written: the normalized mean and
        variance ``[output_dim]`` float64; the belief moves on."""
        ...

    def advance(self) -> None:
        """The prediction part of a split step (nothing to do where the step does not split)."""
        ...

    def state(self) -> ModelState:
        """The prior for the next tick, as the model's state (do not modify it)."""
        ...

    def rollback(self) -> None:
        """Put back the prior the last `run` read, as if it had not run (call before
        `advance`). Cheap on every backend: the run wrote its result elsewhere."""
        ...

    def new_slot(self) -> StateSlot:
        """A slot holding a copy of the current prior."""
        ...

    def load_state(self, slot: StateSlot) -> None:
        """Make ``slot``'s copy the current prior (the slot stays as it was)."""
        ...


@dataclass(frozen=True)
class BackendChoice:
    """The backend chosen, and why a faster one could not serve (None: it did, or not asked)."""

    backend: StepBackend
    backend_error: str | None = None  # ONNX Runtime on the CPU
    split_error: str | None = None  # the split ONNX step
    graph_error: str | None = None  # CUDA graph capture


def first_line(err: BaseException) -> str:
    """An exception as one line for a diagnostic."""
    return str(err).splitlines()[0] if str(err) else type(err).__name__
