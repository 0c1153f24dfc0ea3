"""The streaming estimator: one model step per tick, from raw sensor arrays to named estimates.

No ROS import: a node, a test or any control loop drives it the same way::

    est = StreamingEstimator.from_checkpoint("models/pendulum", device="auto")
    out = est.step({"image": frame})           # frame: uint8 [24, 24], or None when missing
    out.names, out.mean, out.std, out.units     # numpy, decoded and un-normalized
    est.predict(steps=10)                       # open-loop k-step-ahead means and stds
    est.reset(); est.latency.p50_ms

A real-time caller can build it with ``split_step=True``, publish ``out`` first and then call
``est.advance()``: the prediction of the next tick's prior, the second part of the step, then
runs off the path from input to estimate (where the backend can split the step: an RKN in ONNX
Runtime; ``step`` runs it itself when the caller did not). Results are the same either way.

The estimator owns the belief (the prior for the next tick) and fixed input buffers allocated
once, so a step allocates nothing that outlives it. On the CPU the step runs in ONNX Runtime
(exported at start-up, bound to those buffers; 2-3x faster than TorchScript at batch 1),
or as a traced TorchScript step where onnxruntime is not installed or the export fails
(``backend_error`` says why). On CUDA the model step is captured once in a CUDA graph and
replayed every tick (host buffers are pinned; only the copies and one graph launch run per
step); if capture fails the eager step is used and ``graph_error`` says why. ``backend`` names
what runs.
"""

from __future__ import annotations

import dataclasses
import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rkn_ros.core.checkpoint import CheckpointError, CheckpointMetadata, load_checkpoint
from rkn_ros.core.decode import OutputLayout, OutputLayoutError
from rkn_ros.core.export import export_step_onnx
from rkn_ros.runtime.latency import LatencyStats
from rkn_ros.runtime.onnx_backend import OnnxRuntimeStep, OnnxSplitStep, onnxruntime_available

_IMAGE_SCALE = {np.dtype(np.uint8): 1.0 / 255.0, np.dtype(np.uint16): 1.0 / 65535.0}
# Inputs are written into float32 buffers: a finite float64 beyond this would become inf there.
_FLOAT32_LIMIT = float(np.finfo(np.float32).max)
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as OpenCV's RGB2GRAY
CPU_BACKENDS = ("auto", "onnxruntime", "torchscript")


class InputError(ValueError):
    """An input array the model cannot take; ``reason`` is a short key for counters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class InputSpec:
    """One model sensor as the runtime feeds it.

    ``shape`` is the model's per-sample shape: images ``(H, W)`` grey or ``(C, H, W)``; vectors
    ``(dim,)``. Vectors carry element ``names``/``units`` and the normalization statistics.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    names: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    mean: np.ndarray | None = None
    std: np.ndarray | None = None

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of an image sensor."""
        return int(self.shape[-2]), int(self.shape[-1])

    @property
    def channels(self) -> int:
        """1 for grey images, C for ``(C, H, W)``."""
        return int(self.shape[0]) if len(self.shape) == 3 else 1


class _Decoded:
    """Joint views of decoded outputs (shared by a step's output and a prediction)."""

    layout: OutputLayout
    mean: np.ndarray
    std: np.ndarray

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the decoded output dimensions."""
        return self.layout.names

    @property
    def units(self) -> tuple[str, ...]:
        """Units of the decoded output dimensions (radians for angles)."""
        return self.layout.units

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Joints, in the order of ``position``/``velocity``."""
        return self.layout.joint_names

    @property
    def position(self) -> np.ndarray:
        """Position estimate per joint, ``[..., n_joints]``."""
        return self.mean[..., self.layout.position_index]

    @property
    def position_std(self) -> np.ndarray:
        """Standard deviation of ``position``."""
        return self.std[..., self.layout.position_index]

    @property
    def velocity(self) -> np.ndarray | None:
        """Velocity per joint, or None when the model does not estimate velocities."""
        index = self.layout.velocity_index
        return None if index is None else self.mean[..., index]

    @property
    def velocity_std(self) -> np.ndarray | None:
        """Standard deviation of ``velocity`` (None when there is none)."""
        index = self.layout.velocity_index
        return None if index is None else self.std[..., index]


@dataclass(frozen=True)
class EstimatorOutput(_Decoded):
    """One tick's estimate: ``mean``/``std`` ``[n_outputs]`` named by ``names`` in ``units``."""

    layout: OutputLayout
    mean: np.ndarray
    std: np.ndarray
    used: dict[str, bool]  # which inputs were present at this tick
    step_index: int  # ticks since start or reset, this one included
    latency_s: float


@dataclass(frozen=True)
class Prediction(_Decoded):
    """Open-loop prediction: ``mean``/``std`` ``[steps, n_outputs]``, step k at ``(k+1) dt``."""

    layout: OutputLayout
    mean: np.ndarray
    std: np.ndarray
    dt: float


def _first_line(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _map_state(state: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor of a model state (Belief dataclass, tuple or tensor)."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return fn(state)
    if dataclasses.is_dataclass(state):
        return dataclasses.replace(
            state,
            **{f.name: _map_state(getattr(state, f.name), fn) for f in dataclasses.fields(state)},
        )
    if isinstance(state, tuple | list):
        return type(state)(_map_state(s, fn) for s in state)
    raise TypeError(f"unsupported model state element {type(state).__name__}")


def _state_tensors(state: Any) -> list[torch.Tensor]:
    """Every tensor of a model state in a fixed order."""
    tensors: list[torch.Tensor] = []
    _map_state(state, lambda t: tensors.append(t) or t)
    return tensors


class StreamingEstimator:
    """Holds a model and its belief; ``step`` consumes one tick of inputs (see module doc)."""

    def __init__(
        self,
        model: torch.nn.Module,
        metadata: CheckpointMetadata,
        device: torch.device | str = "cpu",
        *,
        resize_images: bool = False,
        warmup_steps: int = 20,
        latency_window: int = 1000,
        cuda_graph: bool = True,
        cpu_backend: str = "auto",
        split_step: bool = False,
    ) -> None:
        if cpu_backend not in CPU_BACKENDS:
            raise ValueError(f"cpu_backend: expected one of {CPU_BACKENDS}, got {cpu_backend!r}")
        self.model = model.eval()
        self.metadata = metadata
        self.device = torch.device(device)
        self.resize_images = resize_images
        # the whole step, inputs to decoded outputs (and its prediction where advance() ran it)
        self.latency = LatencyStats(latency_window)
        self.model_latency = LatencyStats(latency_window)  # the model step alone
        self.graph_error: str | None = None
        self.backend_error: str | None = None
        self.split_error: str | None = None  # why split_step could not be had
        config = model.config
        self.inputs: dict[str, InputSpec] = {}
        for sensor in config.sensors:
            entry = metadata.inputs.get(sensor.name)
            if entry is None:
                raise CheckpointError(
                    f"checkpoint '{metadata.name}': model sensor '{sensor.name}' is not in the "
                    f"metadata inputs {list(metadata.inputs)}"
                )
            shape = tuple(int(v) for v in sensor.shape)
            mean = std = None
            if sensor.kind == "vector":
                stats = metadata.normalization.input(sensor.name, shape[0])
                mean = np.asarray(stats.mean, dtype=np.float32).reshape(shape)
                std = np.asarray(stats.std, dtype=np.float32).reshape(shape)
                if np.any(std <= 0) or not np.all(np.isfinite(mean)):
                    raise CheckpointError(
                        f"checkpoint '{metadata.name}': normalization of '{sensor.name}' is invalid"
                    )
            elif sensor.kind != "image" or len(shape) not in (2, 3):
                raise CheckpointError(
                    f"checkpoint '{metadata.name}': sensor '{sensor.name}' has kind "
                    f"{sensor.kind!r} and shape {shape}; expected an image (H, W)/(C, H, W) "
                    "or a vector"
                )
            self.inputs[sensor.name] = InputSpec(
                name=sensor.name,
                kind=sensor.kind,
                shape=shape,
                names=entry.names,
                units=entry.units,
                mean=mean,
                std=std,
            )
        self.action_dim = int(getattr(config, "action_dim", 0) or 0)
        self.action_names = metadata.actions.names if metadata.actions else ()
        action_stats = metadata.normalization.action(self.action_dim)
        self._action_mean = np.asarray(action_stats.mean, dtype=np.float32).reshape(
            self.action_dim)
        self._action_std = np.asarray(action_stats.std, dtype=np.float32).reshape(
            self.action_dim)
        self.uses_dt = bool(getattr(config, "use_dt", False))
        try:
            self.layout = OutputLayout.from_metadata(
                metadata.outputs, metadata.targets, int(config.output_dim), metadata.normalization
            )
        except OutputLayoutError as err:
            raise CheckpointError(f"checkpoint '{metadata.name}': {err}") from err

        pin = self.device.type == "cuda"
        with torch.inference_mode():
            # Host buffers are written in place through numpy views; on CUDA they are pinned
            # and copied into device buffers of the same shape before each step.
            self._host_obs = {
                n: torch.zeros((1, *s.shape), dtype=torch.float32, pin_memory=pin)
                for n, s in self.inputs.items()
            }
            self._host_valid = {
                n: torch.zeros(1, dtype=torch.bool, pin_memory=pin) for n in self.inputs
            }
            self._host_action = torch.zeros((1, max(self.action_dim, 1)), pin_memory=pin)
            self._host_dt = torch.full((1, 1), float(metadata.dt), pin_memory=pin)
            if pin:
                self._obs = {n: t.to(self.device) for n, t in self._host_obs.items()}
                self._valid = {n: t.to(self.device) for n, t in self._host_valid.items()}
                self._action = self._host_action.to(self.device)
                self._dt = self._host_dt.to(self.device)
            else:
                self._obs, self._valid = self._host_obs, self._host_valid
                self._action, self._dt = self._host_action, self._host_dt
            self._obs_np = {n: t.numpy() for n, t in self._host_obs.items()}
            self._valid_np = {n: t.numpy() for n, t in self._host_valid.items()}
            self._action_np = self._host_action.numpy()
            self._dt_np = self._host_dt.numpy()
            self._initial = _map_state(
                model.initial_state(1, device=self.device), lambda t: t.detach().clone()
            )
            self._state = _map_state(self._initial, torch.clone)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._graph_out: tuple[torch.Tensor, torch.Tensor] | None = None
        # On the CPU, dispatching ~100 tiny ops is most of a batch-1 step: run them in ONNX
        # Runtime, else as a traced, frozen TorchScript step (core's compile_step). On CUDA
        # the graph below removes that overhead.
        self._onnx: OnnxRuntimeStep | OnnxSplitStep | None = None
        self._advance_pending = False  # the split step's prediction, not yet run
        self._compiled = None
        if self.device.type == "cpu":
            if cpu_backend != "torchscript":
                self._onnx = self._onnx_step(cpu_backend, split_step)
            if self._onnx is None:
                self._compiled = model.compile_step(1)
        self._steps = 0
        self._reset_action()
        self.warmup(warmup_steps)
        if pin and cuda_graph:
            self._capture_graph()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str = "auto",
        *,
        sensors: Sequence[str] | None = None,
        dt: float | None = None,
        image_shape: Sequence[int] | None = None,
        joint_names: Sequence[str] | None = None,
        resize_images: bool = False,
        warmup_steps: int = 20,
        latency_window: int = 1000,
        cuda_graph: bool = True,
        num_threads: int | None = None,
        cpu_backend: str = "auto",
        split_step: bool = False,
    ) -> StreamingEstimator:
        """Load a checkpoint folder and get it ready to serve (warmed up, graph captured).

        ``sensors``/``dt``/``image_shape``/``joint_names`` state what the caller will feed; a
        checkpoint that does not match raises :class:`CheckpointError` saying what differs.
        ``device``: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``.
        ``num_threads`` sets torch's intra-op threads (1 is fastest for batch-1 steps).
        ``cpu_backend``: ``auto`` (ONNX Runtime when installed, else TorchScript),
        ``onnxruntime`` (raise :class:`CheckpointError` if it cannot serve) or ``torchscript``.
        ``split_step``: run an RKN's step in ONNX Runtime as two parts, so that a caller can
        publish before the prediction of the next prior (:meth:`advance`); about 0.1 ms sooner
        to the estimate and 0.06-0.07 ms more per tick at 50 Hz (BENCHMARKS.md, "End to end").
        """
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        model, metadata = load_checkpoint(
            path,
            device=device,
            sensors=sensors,
            dt=dt,
            image_shape=None if resize_images else image_shape,
            joint_names=joint_names,
        )
        device_used = next(model.parameters()).device
        return cls(
            model,
            metadata,
            device_used,
            resize_images=resize_images,
            warmup_steps=warmup_steps,
            latency_window=latency_window,
            cuda_graph=cuda_graph,
            cpu_backend=cpu_backend,
            split_step=split_step,
        )

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        """The checkpoint's model name."""
        return self.metadata.name

    @property
    def dt(self) -> float:
        """The model's tick in seconds."""
        return float(self.metadata.dt)

    @property
    def backend(self) -> str:
        """What runs the model step: onnxruntime, torchscript, cuda_graph or cuda (eager)."""
        if self._onnx is not None:
            return "onnxruntime"
        if self._compiled is not None:
            return "torchscript"
        return "cuda_graph" if self._graph is not None else self.device.type

    @property
    def splits_step(self) -> bool:
        """True when :meth:`advance` can take the prediction off :meth:`step`'s path
        (``split_step`` asked for, an RKN, ONNX Runtime; else ``split_error`` may say why)."""
        return isinstance(self._onnx, OnnxSplitStep)

    @property
    def advance_pending(self) -> bool:
        """True between a split :meth:`step` and the :meth:`advance` that completes it."""
        return self._advance_pending

    @property
    def uses_cuda_graph(self) -> bool:
        """True when steps replay a captured CUDA graph."""
        return self._graph is not None

    @property
    def steps_since_reset(self) -> int:
        """Ticks since start-up or the last reset."""
        return self._steps

    def image_sensor(self) -> str | None:
        """Name of the first image sensor, if any."""
        return next((n for n, s in self.inputs.items() if s.kind == "image"), None)

    # ------------------------------------------------------------------ inputs
    def check_input(self, name: str, value: Any) -> np.ndarray:
        """Validate one raw input without touching the belief; returns it as an array.

        Raises :class:`InputError` (with ``reason``: unknown_input, wrong_shape, wrong_size,
        wrong_dtype, non_finite, out_of_range) naming the input, expected and received.
        """
        spec = self.inputs.get(name)
        if spec is None:
            raise InputError(
                "unknown_input", f"input '{name}' is not one of the model's {list(self.inputs)}"
            )
        try:
            array = np.asarray(value)
        except ValueError as err:  # e.g. a ragged list
            raise InputError("wrong_shape", f"input '{name}': not an array ({err})") from None
        if not array.dtype.isnative:  # big-endian data from another machine
            array = array.astype(array.dtype.newbyteorder("="))
        if spec.kind == "vector":
            if array.shape != spec.shape:
                raise InputError(
                    "wrong_shape",
                    f"input '{name}': expected shape {spec.shape}, received {array.shape}",
                )
            if array.dtype.kind not in "biuf":
                raise InputError(
                    "wrong_dtype", f"input '{name}': dtype {array.dtype} is not a real number"
                )
            if not np.all(np.isfinite(array)):
                raise InputError("non_finite", f"input '{name}': holds NaN or inf")
            # finite here but beyond float32 once normalized: it would turn the belief to NaN
            if not np.all(np.abs((array - spec.mean) / spec.std) < _FLOAT32_LIMIT):
                raise InputError(
                    "out_of_range", f"input '{name}': values {array.tolist()} beyond float32"
                )
            return array
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[:, :, 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
            raise InputError(
                "wrong_shape",
                f"input '{name}': expected an image [H, W] or [H, W, 3], received {array.shape}",
            )
        if array.ndim == 3 and spec.channels not in (1, 3):
            raise InputError(
                "wrong_shape",
                f"input '{name}': the model takes {spec.channels} channels, not a colour image "
                f"{array.shape}",
            )
        if array.size == 0:
            raise InputError("wrong_size", f"input '{name}': empty image {array.shape}")
        if array.dtype not in _IMAGE_SCALE and array.dtype not in (np.float32, np.float64):
            raise InputError(
                "wrong_dtype",
                f"input '{name}': image dtype must be uint8, uint16 or float, got {array.dtype}",
            )
        if array.dtype.kind == "f":
            if not np.all(np.isfinite(array)):
                raise InputError("non_finite", f"input '{name}': image holds NaN or inf")
            if array.min() < 0.0 or array.max() > 1.0:
                raise InputError("out_of_range", f"input '{name}': float image outside [0, 1]")
        if array.shape[:2] != spec.image_size and not self.resize_images:
            raise InputError(
                "wrong_size",
                f"input '{name}': expected image size {spec.image_size}, "
                f"received {array.shape[:2]}",
            )
        return array

    def _write_input(self, spec: InputSpec, array: np.ndarray) -> None:
        out = self._obs_np[spec.name][0]
        if spec.kind == "vector":
            # normalized in float64, then stored: the difference alone may not fit in float32
            np.divide(array - spec.mean, spec.std, out=out, casting="unsafe")
            return
        if array.shape[:2] != spec.image_size:
            import cv2  # only for users who configured resizing

            height, width = spec.image_size
            array = cv2.resize(array, (width, height), interpolation=cv2.INTER_AREA)
        scale = _IMAGE_SCALE.get(array.dtype, 1.0)
        if spec.channels == 1:
            if array.ndim == 3:
                np.copyto(out, array @ (_LUMA * scale), casting="unsafe")
            else:
                np.multiply(array, scale, out=out, casting="unsafe")
        elif array.ndim == 3:
            np.multiply(np.moveaxis(array, 2, 0), scale, out=out, casting="unsafe")
        else:
            np.multiply(array[None], scale, out=out, casting="unsafe")

    def check_action(self, action: Any) -> np.ndarray:
        """Validate a raw command without touching the held one; returns it ``[action_dim]``.

        Raises :class:`InputError` (``reason``: unexpected_action, wrong_dtype, wrong_shape,
        non_finite, out_of_range).
        """
        return self._checked_action(action)[0]

    def _checked_action(self, action: Any) -> tuple[np.ndarray, np.ndarray]:
        """A raw command checked: itself and normalized ``[action_dim]`` (float64, float32)."""
        if self.action_dim == 0:
            raise InputError("unexpected_action", f"model '{self.name}' takes no action input")
        try:
            array = np.asarray(action, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError) as err:
            raise InputError("wrong_dtype", f"action: not an array of numbers ({err})") from None
        if array.size != self.action_dim:
            raise InputError(
                "wrong_shape",
                f"action: expected {self.action_dim} values {list(self.action_names)}, "
                f"received {array.size}",
            )
        if not np.all(np.isfinite(array)):
            raise InputError("non_finite", "action: holds NaN or inf")
        normalized = (array - self._action_mean) / self._action_std
        if not np.all(np.abs(normalized) < _FLOAT32_LIMIT):
            raise InputError("out_of_range", f"action: values {array.tolist()} beyond float32")
        return array, normalized.astype(np.float32)

    def _checked_dt(self, dt: Any) -> float:
        try:
            if isinstance(dt, (str, bytes)):
                raise TypeError
            value = float(np.asarray(dt, dtype=np.float64).item())  # a number or one-element array
        except (TypeError, ValueError):
            raise InputError("bad_dt", f"dt must be a positive number of seconds, got {dt!r}") \
                from None
        if not (0.0 < value < _FLOAT32_LIMIT):
            raise InputError("bad_dt", f"dt must be a positive finite number, got {dt!r}")
        return value

    def _reset_action(self) -> None:
        # Before any command arrives the actuators are taken to be at zero command.
        self._action_np[0] = 0.0
        if self.action_dim:
            self._action_np[0, : self.action_dim] = self._checked_action(
                np.zeros(self.action_dim)
            )[1]

    def _onnx_step(self, cpu_backend: str,
                   split_step: bool) -> OnnxRuntimeStep | OnnxSplitStep | None:
        """The ONNX Runtime step bound to this estimator's buffers; None (and
        ``backend_error``) where it cannot serve and ``cpu_backend`` is ``auto``."""
        try:
            if not onnxruntime_available():
                raise RuntimeError("onnxruntime or onnx is not installed")
            buffers: dict[str, np.ndarray] = {}
            for name in self.inputs:
                buffers[f"obs_{name}"] = self._obs_np[name]
                buffers[f"valid_{name}"] = self._valid_np[name]
            if self.action_dim:
                buffers["action"] = self._action_np
            if self.uses_dt:
                buffers["dt"] = self._dt_np
            state = [t.numpy() for t in self.model._state_tensors(self._initial)]
            # one thread: a batch-1 step is too small to share (pendulum: 0.23 ms, 0.30 with 2)
            if split_step and self.model.splits_step:
                try:
                    return OnnxSplitStep(export_step_onnx(self.model, part="update"),
                                         export_step_onnx(self.model, part="advance"),
                                         buffers, state, threads=1)
                except Exception as err:  # the whole step may still serve: try it next
                    self.split_error = _first_line(err)
            return OnnxRuntimeStep(export_step_onnx(self.model), buffers, state, threads=1)
        except Exception as err:  # export and session errors come in many types
            message = _first_line(err)
            if cpu_backend == "onnxruntime":
                raise CheckpointError(
                    f"checkpoint '{self.metadata.name}': cannot run in ONNX Runtime: {message}"
                ) from err
            self.backend_error = message
            return None

    # ------------------------------------------------------------------ stepping
    def _model_step(self) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """``model.step`` without its input checks (same encode, cell and decode).

        The checks read tensor values back to the host, which a CUDA graph cannot capture and
        which cost as much as the cell at batch 1; here every input was checked in numpy by
        :meth:`check_input` and missing inputs are zeros, so they have nothing left to catch.
        """
        model = self.model
        if self._compiled is not None:
            out = self._compiled(
                self._state,
                self._obs,
                self._valid,
                self._action if self.action_dim else None,
                self._dt if self.uses_dt else None,
            )
            return out.mean, out.var, out.state
        encoded = [
            (w, var, self._valid[s.name])
            for s, (w, var) in zip(model.sensors, model.encode(self._obs), strict=True)
        ]
        state, mean_features, var_features, _ = model._cell(
            self._state,
            encoded,
            self._action if self.action_dim else None,
            self._dt if self.uses_dt else None,
        )
        mean, var = model.decoder(mean_features, var_features)
        return mean, var, state

    def step(
        self,
        inputs: Mapping[str, Any],
        action: Sequence[float] | np.ndarray | None = None,
        dt: float | None = None,
    ) -> EstimatorOutput:
        """One tick: ``inputs`` maps sensor name to a raw array or None (missing).

        Images: ``uint8``/``uint16`` ``[H, W]`` or ``[H, W, 3]`` (RGB) or float in [0, 1];
        vectors: ``[dim]`` in the units of the metadata (normalized here). Sensors left out
        are missing. ``action`` (raw units, ``[action_dim]``) is the command applied after this
        tick; when None the last one is held. ``dt`` (s) is used by models trained with a dt
        input and defaults to the model's. Raises :class:`InputError` on bad input, before the
        belief changes.
        """
        start = time.perf_counter()
        if not isinstance(inputs, Mapping):
            raise InputError(
                "wrong_type",
                f"inputs: expected a mapping of input name to value, got {type(inputs).__name__}",
            )
        unknown = [n for n in inputs if n not in self.inputs]
        if unknown:
            raise InputError(
                "unknown_input", f"inputs {unknown} are not among the model's {list(self.inputs)}"
            )
        # Everything is checked before anything is written: a refused tick changes nothing.
        arrays = {n: (None if v is None else self.check_input(n, v)) for n, v in inputs.items()}
        normalized_action = None if action is None else self._checked_action(action)[1]
        dt_value = None if dt is None else self._checked_dt(dt)
        # the last tick's prediction reads the action and dt buffers as they were: first
        advance_s = self._run_advance()
        if normalized_action is not None:
            self._action_np[0, : self.action_dim] = normalized_action
        if dt_value is not None:
            self._dt_np[0, 0] = dt_value
        elif self.uses_dt:
            self._dt_np[0, 0] = self.metadata.dt
        used: dict[str, bool] = {}
        for name, spec in self.inputs.items():
            array = arrays.get(name)
            if array is None:
                self._obs_np[name].fill(0.0)  # missing inputs must still be finite numbers
                self._valid_np[name][0] = False
            else:
                self._write_input(spec, array)
                self._valid_np[name][0] = True
            used[name] = array is not None
        model_start = time.perf_counter()
        mean, var = self._run()
        self.model_latency.add(time.perf_counter() - model_start + advance_s)
        out_mean, out_std = self.layout.decode(mean, var)
        self._steps += 1
        latency = time.perf_counter() - start
        self.latency.add(latency)
        return EstimatorOutput(
            layout=self.layout,
            mean=out_mean,
            std=out_std,
            used=used,
            step_index=self._steps,
            latency_s=latency,
        )

    def advance(self) -> None:
        """Run the prediction of the next tick's prior now, if the last step left it pending.

        For a caller that publishes ``step``'s estimate first and then has time to spare;
        ``step`` and ``predict`` run it themselves first when it is pending, ``reset`` drops
        it. Its time is added to the last step's entry in ``latency`` and ``model_latency``.
        """
        elapsed = self._run_advance()
        if elapsed:
            self.latency.add_to_last(elapsed)
            self.model_latency.add_to_last(elapsed)

    def _run_advance(self) -> float:
        """The pending prediction, if any; returns the seconds it took (0.0: none pending)."""
        if not self._advance_pending:
            return 0.0
        start = time.perf_counter()
        self._onnx.advance()
        self._advance_pending = False
        return time.perf_counter() - start

    def _run(self) -> tuple[np.ndarray, np.ndarray]:
        """Run the model on the filled buffers; returns normalized mean, var ``[target_dim]``.
        A split step leaves its prediction pending."""
        if self._onnx is not None:
            mean, var = self._onnx.run()
            self._advance_pending = isinstance(self._onnx, OnnxSplitStep)
            return mean[0].astype(np.float64), var[0].astype(np.float64)
        with torch.inference_mode():
            if self.device.type == "cuda":
                for name in self.inputs:
                    self._obs[name].copy_(self._host_obs[name], non_blocking=True)
                    self._valid[name].copy_(self._host_valid[name], non_blocking=True)
                self._action.copy_(self._host_action, non_blocking=True)
                self._dt.copy_(self._host_dt, non_blocking=True)
            if self._graph is not None and self._graph_out is not None:
                self._graph.replay()
                mean, var = self._graph_out
            else:
                mean, var, self._state = self._model_step()
            return (
                mean[0].to("cpu", torch.float64).numpy(),
                var[0].to("cpu", torch.float64).numpy(),
            )

    def warmup(self, steps: int) -> None:
        """Run ``steps`` throw-away ticks (inputs present and missing), then reset the belief."""
        for index in range(steps):
            present = index % 2 == 0
            self._run_advance()
            for name in self.inputs:
                self._obs_np[name].fill(0.0)
                self._valid_np[name][0] = present
            self._run()
        self._run_advance()
        self.reset()

    def _capture_graph(self) -> None:
        """Capture the model step (and the belief hand-over) in a CUDA graph."""
        static = _state_tensors(self._state)
        try:
            with torch.inference_mode():
                side = torch.cuda.Stream(self.device)
                side.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(side):
                    for _ in range(3):  # let lazy initialisation happen outside the capture
                        mean, var, state = self._model_step()
                        for dst, src in zip(static, _state_tensors(state), strict=True):
                            dst.copy_(src)
                torch.cuda.current_stream(self.device).wait_stream(side)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    mean, var, state = self._model_step()
                    for dst, src in zip(static, _state_tensors(state), strict=True):
                        dst.copy_(src)
                torch.cuda.synchronize(self.device)
        except RuntimeError as err:  # a model that syncs to host inside step cannot be captured
            self.graph_error = str(err).splitlines()[0]
            self._graph = None
            self._graph_out = None
            self.reset()
            return
        self._graph = graph
        self._graph_out = (mean, var)
        self.reset()

    def reset(self) -> None:
        """Back to the initial belief; the held action returns to zero command and the tick
        spacing to the model's dt."""
        self._advance_pending = False
        if self._onnx is not None:
            self._onnx.set_state([t.numpy() for t in self.model._state_tensors(self._initial)])
        with torch.inference_mode():
            if self._graph is not None:
                # The graph reads and writes these exact tensors: restore in place.
                for dst, src in zip(
                    _state_tensors(self._state), _state_tensors(self._initial), strict=True
                ):
                    dst.copy_(src)
            else:
                self._state = _map_state(self._initial, torch.clone)
        self._steps = 0
        self._reset_action()
        self._dt_np[0, 0] = self.metadata.dt

    def predict(
        self, steps: int, actions: np.ndarray | Sequence[Sequence[float]] | None = None
    ) -> Prediction:
        """Open-loop prediction ``steps`` ticks ahead of the last step, without updates.

        ``actions`` (raw units, ``[steps, action_dim]``) for action-conditioned models; when
        None the last command is held. A model with a dt input predicts in steps of the last
        tick's dt (``Prediction.dt``). The belief is not changed.
        """
        try:
            steps = operator.index(steps)
        except TypeError:
            raise ValueError(f"predict: steps must be an integer, got {steps!r}") from None
        if steps < 1:
            raise ValueError(f"predict: steps must be >= 1, got {steps}")
        action_tensor = None
        if self.action_dim:
            if actions is None:
                normalized = np.repeat(self._action_np[:, : self.action_dim], steps, axis=0)
            else:
                raw = np.asarray(actions, dtype=np.float64)
                if raw.shape != (steps, self.action_dim):
                    raise ValueError(
                        f"predict: actions must have shape {(steps, self.action_dim)}, "
                        f"got {raw.shape}"
                    )
                if not np.all(np.isfinite(raw)):
                    raise ValueError("predict: actions hold NaN or inf")
                normalized = (raw - self._action_mean) / self._action_std
            action_tensor = torch.as_tensor(
                normalized[None], dtype=torch.float32, device=self.device
            )
        elif actions is not None:
            raise ValueError(f"predict: model '{self.name}' takes no actions")
        # the spacing the estimator is being ticked at, as far as it knows
        step_dt = float(self._dt_np[0, 0]) if self.uses_dt else self.dt
        dt_tensor = (
            torch.full((1, steps, 1), step_dt, dtype=torch.float32, device=self.device)
            if self.uses_dt
            else None
        )
        self.advance()  # the prediction starts from the next tick's prior
        with torch.inference_mode():
            state = self._state
            if self._onnx is not None:
                state = self.model._state_from_tensors(
                    tuple(torch.from_numpy(a) for a in self._onnx.state))
            mean, var = self.model.predict(state, steps, action_tensor, dt_tensor)
            mean = mean[0].to("cpu", torch.float64).numpy()
            var = var[0].to("cpu", torch.float64).numpy()
        out_mean, out_std = self.layout.decode(mean, var)
        return Prediction(layout=self.layout, mean=out_mean, std=out_std, dt=step_dt)
