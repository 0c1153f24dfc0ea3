"""Step backends behind one protocol (`StepBackend`), chosen once by `select_backend`.

On the CPU, dispatching ~100 tiny ops is most of a batch-1 step: it runs in ONNX Runtime
(exported at start-up, bound to the buffers; 2-3x faster than TorchScript at batch 1), else as a
traced, frozen TorchScript step where onnxruntime is not installed or the export fails. On CUDA
the step is captured once in a CUDA graph and replayed every tick; where capture fails, or
``cuda_graph`` is off, it runs eagerly.
"""

from __future__ import annotations

from rkn_ros.core.model import SequenceModel
from rkn_ros.runtime.backends.base import BackendChoice, StateSlot, StepBackend, first_line
from rkn_ros.runtime.backends.onnx import OnnxBackend
from rkn_ros.runtime.backends.torch_step import CudaGraphBackend, EagerBackend, TorchScriptBackend
from rkn_ros.runtime.buffers import StepBuffers
from rkn_ros.runtime.onnx_backend import onnxruntime_available

CPU_BACKENDS = ("auto", "onnxruntime", "torchscript")

__all__ = ["CPU_BACKENDS", "BackendChoice", "BackendUnavailableError", "StateSlot", "StepBackend",
           "select_backend"]


class BackendUnavailableError(RuntimeError):
    """The backend asked for explicitly (``cpu_backend="onnxruntime"``) cannot serve."""


def select_backend(model: SequenceModel, buffers: StepBuffers, *, cpu_backend: str = "auto",
                   split_step: bool = False, cuda_graph: bool = True) -> BackendChoice:
    """The fastest backend that serves `model` on its device (see module doc)."""
    if cpu_backend not in CPU_BACKENDS:
        raise ValueError(f"cpu_backend: expected one of {CPU_BACKENDS}, got {cpu_backend!r}")
    if model.device.type == "cuda":
        if not cuda_graph:
            return BackendChoice(EagerBackend(model, buffers))
        try:
            return BackendChoice(CudaGraphBackend(model, buffers))
        except RuntimeError as err:  # a model that syncs to host inside step cannot be captured
            return BackendChoice(EagerBackend(model, buffers), graph_error=first_line(err))
    if cpu_backend == "torchscript":
        return BackendChoice(TorchScriptBackend(model, buffers))
    split_error = None
    try:
        if not onnxruntime_available():
            raise RuntimeError("onnxruntime or onnx is not installed")
        if split_step and model.splits_step:
            try:
                return BackendChoice(OnnxBackend(model, buffers, split=True))
            except Exception as err:  # the whole step may still serve: try it next
                split_error = first_line(err)
        return BackendChoice(OnnxBackend(model, buffers, split=False), split_error=split_error)
    except Exception as err:  # export and session errors come in many types
        if cpu_backend == "onnxruntime":
            raise BackendUnavailableError(f"cannot run in ONNX Runtime: {first_line(err)}") from err
        return BackendChoice(TorchScriptBackend(model, buffers), backend_error=first_line(err),
                             split_error=split_error)
