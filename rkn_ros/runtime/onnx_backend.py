"""The batch-1 CPU step in ONNX Runtime, bound to the estimator's own numpy buffers.

Inputs are bound once to the estimator's observation/valid/action/dt arrays (written in place
every tick) and outputs to fixed arrays, so a whole step (`OnnxRuntimeStep`) is one
`run_with_iobinding` call with no conversion or allocation in Python. Its belief lives in two
sets of arrays used in turn: a tick reads one set and writes the other (ONNX Runtime does not
run in place), and the next tick runs the binding that reads what this one wrote. A split step
(`OnnxSplitStep`) is two calls, the update (prior -> posterior) and the prediction (posterior
-> prior), each with its own binding.
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
        self._session = _session(graph, threads)
        _check_buffers(graph, inputs)
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

    def undo(self) -> None:
        """Make the state the last :meth:`run` read current again (that run wrote the other
        set, so it is intact): as if the run had not happened."""
        self._current = 1 - self._current

    @property
    def state(self) -> list[np.ndarray]:
        """The current state arrays (the prior for the next step); views, not copies."""
        return self._states[self._current]

    def set_state(self, values: Sequence[np.ndarray]) -> None:
        """Overwrite the current state in place."""
        for dst, src in zip(self.state, values, strict=True):
            np.copyto(dst, src)


class OnnxSplitStep:
    """A step run as its two parts (`export_step_onnx(..., part=...)`): :meth:`run` is the
    update (the prior and this tick's inputs -> the posterior, mean and var) and
    :meth:`advance` the prediction of the next tick's prior from that posterior, with the
    action and dt buffers as they are when it runs. So a real-time caller can publish the
    estimate before paying for the prediction. Call them in turn, ``run`` first; the prior and
    the posterior each live in their own bound arrays.
    """

    def __init__(self, update: OnnxStep, advance: OnnxStep, inputs: Mapping[str, np.ndarray],
                 initial_state: Sequence[np.ndarray], threads: int = 1) -> None:
        self._update = _session(update, threads)
        self._advance = _session(advance, threads)
        _check_buffers(update, inputs)
        _check_buffers(advance, inputs)
        self._inputs = dict(inputs)  # bound by address: they must outlive the sessions
        self._prior = [np.ascontiguousarray(a, dtype=np.float32).copy() for a in initial_state]
        self._posterior = [a.copy() for a in self._prior]
        outputs = {o.name: o for o in self._update.get_outputs()}
        self.mean = np.zeros(_fixed_shape(outputs["mean"].shape), dtype=np.float32)
        self.var = np.zeros_like(self.mean)
        self._update_binding = self._update.io_binding()
        self._advance_binding = self._advance.io_binding()
        for index, (prior, posterior) in enumerate(zip(self._prior, self._posterior,
                                                       strict=True)):
            _bind_input(self._update_binding, f"state_{index}", prior)
            _bind_output(self._update_binding, f"posterior_{index}", posterior)
            _bind_input(self._advance_binding, f"posterior_{index}", posterior)
            _bind_output(self._advance_binding, f"next_state_{index}", prior)
        for graph, binding in ((update, self._update_binding), (advance, self._advance_binding)):
            for name in graph.input_names[graph.state_len:]:
                _bind_input(binding, name, inputs[name])
        _bind_output(self._update_binding, "mean", self.mean)
        _bind_output(self._update_binding, "var", self.var)

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        """The update: writes the posterior; returns the (reused) mean and var arrays."""
        self._update.run_with_iobinding(self._update_binding)
        return self.mean, self.var

    def advance(self) -> None:
        """The prediction: the posterior of the last :meth:`run` -> the next prior."""
        self._advance.run_with_iobinding(self._advance_binding)

    @property
    def state(self) -> list[np.ndarray]:
        """The prior arrays (what the next :meth:`run` reads); views, not copies."""
        return self._prior

    def set_state(self, values: Sequence[np.ndarray]) -> None:
        """Overwrite the prior in place."""
        for dst, src in zip(self._prior, values, strict=True):
            np.copyto(dst, src)


def _session(graph: OnnxStep, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # A spinning worker burns a core between ticks; with one thread there is none.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initializers are not news
    return ort.InferenceSession(graph.model, options, providers=["CPUExecutionProvider"])


def _check_buffers(graph: OnnxStep, inputs: Mapping[str, np.ndarray]) -> None:
    missing = [n for n in graph.input_names[graph.state_len:] if n not in inputs]
    if missing:
        raise ValueError(f"onnx step: no buffer for inputs {missing}")


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
