"""The batch-1 CPU step in ONNX Runtime, bound to the estimator's own numpy buffers.

Inputs are bound once to the estimator's observation/valid/action/dt arrays (written in place
every tick) and outputs to fixed arrays, so a tick is one `run_with_iobinding` call with no
conversion or allocation in Python. The belief lives in two sets of arrays used in turn: a
tick reads one set and writes the other (ONNX Runtime does not run in place), and the next
tick runs the binding that reads what this one wrote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from rkn_ros.core.export import OnnxStep


def onnxruntime_available() -> bool:
    """True when `onnxruntime` and `onnx` (the exporter needs it) can be imported."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


class OnnxRuntimeStep:
    """Runs an exported step on fixed buffers.

    ``inputs`` maps every non-state input name of ``graph`` (``obs_<sensor>``,
    ``valid_<sensor>``, ``action``, ``dt``) to the C-contiguous array the caller fills before
    each :meth:`run`; ``initial_state`` gives the state arrays' values (float32, batch first).
    """

    def __init__(self, graph: OnnxStep, inputs: Mapping[str, np.ndarray],
                 initial_state: Sequence[np.ndarray], threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # A spinning worker burns a core between ticks; with one thread there is none.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3  # warnings about unused initializers are not news
        self._session = ort.InferenceSession(graph.model, options,
                                             providers=["CPUExecutionProvider"])
        missing = [n for n in graph.input_names[graph.state_len:] if n not in inputs]
        if missing:
            raise ValueError(f"onnx step: no buffer for inputs {missing}")
        self._inputs = dict(inputs)  # bound by address: they must outlive the session
        self._states = [[np.ascontiguousarray(a, dtype=np.float32).copy() for a in initial_state]
                        for _ in range(2)]
        outputs = {o.name: o for o in self._session.get_outputs()}
        self.mean = np.zeros(_fixed_shape(outputs["mean"].shape), dtype=np.float32)
        self.var = np.zeros_like(self.mean)
        self._bindings = []
        for read, write in ((0, 1), (1, 0)):
            binding = self._session.io_binding()
            for index in range(graph.state_len):
                _bind_input(binding, f"state_{index}", self._states[read][index])
                _bind_output(binding, f"next_state_{index}", self._states[write][index])
            for name in graph.input_names[graph.state_len:]:
                _bind_input(binding, name, inputs[name])
            _bind_output(binding, "mean", self.mean)
            _bind_output(binding, "var", self.var)
            self._bindings.append(binding)
        self._current = 0  # the state set the next run reads

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        """One step: advances the state; returns the (reused) mean and var arrays."""
        self._session.run_with_iobinding(self._bindings[self._current])
        self._current = 1 - self._current
        return self.mean, self.var

    @property
    def state(self) -> list[np.ndarray]:
        """The current state arrays (the prior for the next step); views, not copies."""
        return self._states[self._current]

    def set_state(self, values: Sequence[np.ndarray]) -> None:
        """Overwrite the current state in place."""
        for dst, src in zip(self.state, values, strict=True):
            np.copyto(dst, src)


def _fixed_shape(shape: Sequence) -> list[int]:
    if not all(isinstance(d, int) for d in shape):
        raise ValueError(f"onnx step: output shape {list(shape)} is not fixed")
    return [int(d) for d in shape]


def _bind_input(binding, name: str, array: np.ndarray) -> None:
    if not array.flags.c_contiguous:
        raise ValueError(f"onnx step: buffer for '{name}' is not C-contiguous")
    # bound by address: later in-place writes to `array` are what the next run reads
    binding.bind_input(name, "cpu", 0, array.dtype.type, list(array.shape), array.ctypes.data)


def _bind_output(binding, name: str, array: np.ndarray) -> None:
    binding.bind_output(name, "cpu", 0, array.dtype.type, list(array.shape), array.ctypes.data)
