"""The CPU step in ONNX Runtime: the whole step, or the update and the prediction apart."""

from __future__ import annotations

import numpy as np
import torch

from rkn_ros.core.export import export_step_onnx
from rkn_ros.core.model import SequenceModel
from rkn_ros.core.step_contract import ModelState
from rkn_ros.runtime.backends.base import StateSlot
from rkn_ros.runtime.buffers import StepBuffers
from rkn_ros.runtime.onnx_backend import OnnxRuntimeStep, OnnxSplitStep


class OnnxBackend:
    """The exported step bound to the buffers (`onnx_backend` holds the bindings).

    With ``split`` (a model whose step splits) :meth:`run` is the update and :meth:`advance`
    the prediction; export or session errors propagate (the factory decides what follows).
    """

    name = "onnxruntime"

    def __init__(self, model: SequenceModel, buffers: StepBuffers, split: bool) -> None:
        self._model = model
        state = [t.numpy() for t in model.flatten_state(model.initial_state(1, "cpu"))]
        # one thread: a batch-1 step is too small to share (pendulum: 0.23 ms, 0.30 with 2)
        inputs = buffers.onnx_inputs()
        self._runner: OnnxRuntimeStep | OnnxSplitStep
        if split:
            self._runner = OnnxSplitStep(export_step_onnx(model, part="update"),
                                         export_step_onnx(model, part="advance"),
                                         inputs, state, threads=1)
        else:
            self._runner = OnnxRuntimeStep(export_step_onnx(model), inputs, state, threads=1)
        self.splits_step = split

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        mean, var = self._runner.run()
        return mean[0].astype(np.float64), var[0].astype(np.float64)

    def advance(self) -> None:
        if self.splits_step:
            self._runner.advance()

    def state(self) -> ModelState:
        return self._model.unflatten_state(
            tuple(torch.from_numpy(a) for a in self._runner.state))

    def new_slot(self) -> StateSlot:
        return tuple(a.copy() for a in self._runner.state)

    def rollback(self) -> None:
        if not self.splits_step:  # the split update leaves the prior alone
            self._runner.undo()

    def load_state(self, slot: StateSlot) -> None:
        self._runner.set_state(slot)
