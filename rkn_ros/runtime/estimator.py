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

It composes four parts, each in its own module: the checkpoint's `EstimatorSpec` (spec.py), the
input codec that checks, normalizes and writes raw inputs into fixed buffers (codec.py,
buffers.py), the step backend chosen once for the device (backends/; ``backend`` names it,
``backend_error``/``graph_error`` say why a faster one could not serve) and the output guard
(guard.py), then decodes the outputs (decode.py).
"""

from __future__ import annotations

import operator
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rkn_ros.core.checkpoint import CheckpointError, CheckpointMetadata, load_checkpoint
from rkn_ros.core.decode import OutputLayout
from rkn_ros.core.model import SequenceModel
from rkn_ros.runtime.backends import BackendUnavailableError, select_backend
from rkn_ros.runtime.buffers import StepBuffers, allocate_buffers
from rkn_ros.runtime.codec import (
    DEFAULT_RANGE_SIGMAS,
    CheckedAction,
    CheckedInput,
    InputCodec,
)
from rkn_ros.runtime.guard import BeliefGuard
from rkn_ros.runtime.latency import LatencyStats
from rkn_ros.runtime.outputs import EstimatorOutput, Prediction
from rkn_ros.runtime.spec import InputSpec, spec_from_checkpoint


class StreamingEstimator:
    """Holds a model and its belief; ``step`` consumes one tick of inputs (see module doc)."""

    def __init__(
        self,
        model: SequenceModel,
        metadata: CheckpointMetadata,
        device: torch.device | str = "cpu",
        *,
        resize_images: bool = False,
        warmup_steps: int = 20,
        latency_window: int = 1000,
        cuda_graph: bool = True,
        cpu_backend: str = "auto",
        split_step: bool = False,
        range_sigmas: float = DEFAULT_RANGE_SIGMAS,
    ) -> None:
        self.model = model.eval()
        self.metadata = metadata
        self.device = torch.device(device)
        self.spec = spec_from_checkpoint(model.config, metadata)
        # the whole step, inputs to decoded outputs (and its prediction where advance() ran it)
        self.latency = LatencyStats(latency_window)
        self.model_latency = LatencyStats(latency_window)  # the model step alone
        self.buffers: StepBuffers = allocate_buffers(self.spec, self.device)
        self.codec = InputCodec(self.spec, self.buffers, resize_images=resize_images,
                                range_sigmas=range_sigmas)
        try:
            choice = select_backend(model, self.buffers, cpu_backend=cpu_backend,
                                    split_step=split_step, cuda_graph=cuda_graph)
        except BackendUnavailableError as err:
            raise CheckpointError(f"checkpoint '{self.name}': {err}") from err
        self._backend = choice.backend
        self.backend_error = choice.backend_error
        self.split_error = choice.split_error  # why split_step could not be had
        self.graph_error = choice.graph_error
        self.codec.reset()
        self._guard = BeliefGuard(self._backend, self._initial_estimate())
        self._advance_pending = False  # the split step's prediction, not yet run
        self._steps = 0
        self.warmup(warmup_steps)

    def _initial_estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """The initial belief's normalized mean and variance; a model whose very first estimate
        is not finite cannot serve (the output guard has nothing to fall back on)."""
        with torch.inference_mode():
            mean, var = self.model.predict(self._backend.state(), 1, *self._predict_args(1))
        mean = mean[0, 0].to("cpu", torch.float64).numpy()
        var = var[0, 0].to("cpu", torch.float64).numpy()
        if not (np.isfinite(mean).all() and np.isfinite(var).all()):
            raise CheckpointError(f"checkpoint '{self.name}': the model's initial estimate is "
                                  f"not finite (absurd weights?)")
        return mean, var

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
        range_sigmas: float = DEFAULT_RANGE_SIGMAS,
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
        ``range_sigmas``: how many training standard deviations beyond the training range a
        vector reading or command may lie before it is refused as ``out_of_range``
        (rkn_ros/runtime/codec.py says why 6; ``inf``: no range check).
        """
        if num_threads is not None:
            torch.set_num_threads(int(num_threads))
        model, metadata = load_checkpoint(
            path, device=device, sensors=sensors, dt=dt,
            image_shape=None if resize_images else image_shape, joint_names=joint_names,
        )
        return cls(model, metadata, next(model.parameters()).device,
                   resize_images=resize_images, warmup_steps=warmup_steps,
                   latency_window=latency_window, cuda_graph=cuda_graph,
                   cpu_backend=cpu_backend, split_step=split_step, range_sigmas=range_sigmas)

    # ------------------------------------------------------------------ properties
    @property
    def name(self) -> str:
        """The checkpoint's model name."""
        return self.spec.name

    @property
    def dt(self) -> float:
        """The model's tick in seconds."""
        return self.spec.dt

    @property
    def uses_dt(self) -> bool:
        """True for a model that takes each tick's dt as an input."""
        return self.spec.uses_dt

    @property
    def inputs(self) -> Mapping[str, InputSpec]:
        """The model's sensors in config order (read-only)."""
        return self.spec.inputs

    @property
    def layout(self) -> OutputLayout:
        """How the model's outputs decode into named joint quantities."""
        return self.spec.layout

    @property
    def action_dim(self) -> int:
        """Number of command values the model takes (0: none)."""
        return self.spec.action.dim

    @property
    def action_names(self) -> tuple[str, ...]:
        """Names of the command values."""
        return self.spec.action.names

    @property
    def resize_images(self) -> bool:
        """True when images of another size are resized to the model's."""
        return self.codec.resize_images

    @property
    def range_sigmas(self) -> float:
        """The range checks' margin in training standard deviations."""
        return self.codec.range_sigmas

    @property
    def backend(self) -> str:
        """What runs the model step: onnxruntime, torchscript, cuda_graph or cuda (eager)."""
        return self._backend.name

    @property
    def splits_step(self) -> bool:
        """True when :meth:`advance` can take the prediction off :meth:`step`'s path
        (``split_step`` asked for, an RKN, ONNX Runtime; else ``split_error`` may say why)."""
        return self._backend.splits_step

    @property
    def advance_pending(self) -> bool:
        """True between a split :meth:`step` and the :meth:`advance` that completes it."""
        return self._advance_pending

    @property
    def uses_cuda_graph(self) -> bool:
        """True when steps replay a captured CUDA graph."""
        return self._backend.name == "cuda_graph"

    @property
    def steps_since_reset(self) -> int:
        """Ticks since start-up or the last reset."""
        return self._steps

    @property
    def nonfinite_outputs(self) -> int:
        """Steps whose outputs were not finite (each one guarded: see ``EstimatorOutput``)."""
        return self._guard.nonfinite_steps

    def image_sensor(self) -> str | None:
        """Name of the first image sensor, if any."""
        return next((n for n, s in self.inputs.items() if s.kind == "image"), None)

    # ------------------------------------------------------------------ inputs
    def check_input(self, name: str, value: Any) -> CheckedInput:
        """Validate one raw input without touching the belief.

        Returns a `CheckedInput` (``raw``: the array as received, ``value``: its model form)
        that :meth:`step` takes in its place without checking it again, so a caller that
        checks on arrival checks once. Raises :class:`InputError` (with ``reason``:
        unknown_input, wrong_shape, wrong_size, wrong_dtype, non_finite, out_of_range) naming
        the input, expected and received.
        """
        return self.codec.check_input(name, value)

    def check_action(self, action: Any) -> CheckedAction:
        """Validate a raw command without touching the held one.

        Returns a `CheckedAction` (``raw`` ``[action_dim]``) that :meth:`step` takes as its
        ``action`` without checking it again. Raises :class:`InputError` (``reason``:
        unexpected_action, wrong_dtype, wrong_shape, non_finite, out_of_range).
        """
        return self.codec.check_action(action)

    # ------------------------------------------------------------------ stepping
    def step(
        self,
        inputs: Mapping[str, Any],
        action: Sequence[float] | np.ndarray | CheckedAction | None = None,
        dt: float | None = None,
    ) -> EstimatorOutput:
        """One tick: ``inputs`` maps sensor name to a raw array or None (missing).

        Images: ``uint8``/``uint16`` ``[H, W]`` or ``[H, W, 3]`` (RGB) or float in [0, 1];
        vectors: ``[dim]`` in the units of the metadata (normalized here); or the value
        :meth:`check_input` returned for it, taken as checked (the same for ``action`` and
        :meth:`check_action`). Sensors left out
        are missing. ``action`` (raw units, ``[action_dim]``) is the command applied after this
        tick; when None the last one is held. ``dt`` (s) is used by models trained with a dt
        input and defaults to the model's. Raises :class:`InputError` on bad input, before the
        belief changes. A step that is not finite returns the last good estimate with
        ``guarded`` set and the last good belief put back (``nonfinite_outputs`` counts them).
        """
        start = time.perf_counter()
        tick = self.codec.check_tick(inputs, action, dt)  # all checked before anything moves
        # the last tick's prediction reads the action and dt buffers as they were: first
        advance_s = self._run_advance()
        used = self.codec.write(tick)
        model_start = time.perf_counter()
        mean, var = self._backend.run()
        self.model_latency.add(time.perf_counter() - model_start + advance_s)
        mean, var, guarded = self._guard.check(mean, var)
        self._advance_pending = self._backend.splits_step and not guarded
        out_mean, out_std = self.layout.decode(mean, var)
        self._steps += 1
        latency = time.perf_counter() - start
        self.latency.add(latency)
        return EstimatorOutput(layout=self.layout, mean=out_mean, std=out_std, used=used,
                               step_index=self._steps, latency_s=latency, guarded=guarded)

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
        self._backend.advance()
        self._advance_pending = False
        return time.perf_counter() - start

    def warmup(self, steps: int) -> None:
        """Run ``steps`` throw-away ticks (inputs present and missing), then reset the belief."""
        for index in range(steps):
            self._run_advance()
            self.codec.write_missing(present=index % 2 == 0)
            self._backend.run()
            self._advance_pending = self._backend.splits_step
        self._run_advance()
        self.reset()

    def reset(self) -> None:
        """Back to the initial belief; the held action returns to zero command and the tick
        spacing to the model's dt."""
        self._advance_pending = False
        self._guard.reset()
        self._steps = 0
        self.codec.reset()

    def predict(
        self, steps: int, actions: np.ndarray | Sequence[Sequence[float]] | None = None
    ) -> Prediction:
        """Open-loop prediction ``steps`` ticks ahead of the last step, without updates.

        ``actions`` (raw units, ``[steps, action_dim]``, checked like ``step``'s, raising
        :class:`InputError`) for action-conditioned models; when None the last command is held.
        A model with a dt input predicts in steps of the last tick's dt (``Prediction.dt``).
        The belief is not changed. Steps from the first one that is not finite on are left out
        (``len(prediction.mean) < steps`` says the model's prediction diverged there).
        """
        try:
            steps = operator.index(steps)
        except TypeError:
            raise ValueError(f"predict: steps must be an integer, got {steps!r}") from None
        if steps < 1:
            raise ValueError(f"predict: steps must be >= 1, got {steps}")
        normalized = None if actions is None else self.codec.normalize_actions(actions, steps)
        args = self._predict_args(steps, normalized)
        self.advance()  # the prediction starts from the next tick's prior
        with torch.inference_mode():
            mean, var = self.model.predict(self._backend.state(), steps, *args)
            mean = mean[0].to("cpu", torch.float64).numpy()
            var = var[0].to("cpu", torch.float64).numpy()
        finite = np.isfinite(mean).all(axis=1) & np.isfinite(var).all(axis=1)
        kept = steps if finite.all() else int(np.argmin(finite))
        out_mean, out_std = self.layout.decode(mean[:kept], var[:kept])
        return Prediction(layout=self.layout, mean=out_mean, std=out_std,
                          dt=self._step_dt())

    def _step_dt(self) -> float:
        """The spacing the estimator is being ticked at, as far as it knows."""
        return float(self.buffers.dt_np[0, 0]) if self.uses_dt else self.dt

    def _predict_args(self, steps: int, normalized_actions: np.ndarray | None = None
                      ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(actions [1, steps, action_dim], dt [1, steps, 1]) for ``model.predict``."""
        action = None
        if self.action_dim:
            held = self.codec.held_action if normalized_actions is None else normalized_actions
            rows = np.broadcast_to(held, (steps, self.action_dim))
            action = torch.as_tensor(np.array(rows[None], dtype=np.float32), device=self.device)
        dt = (torch.full((1, steps, 1), self._step_dt(), dtype=torch.float32, device=self.device)
              if self.uses_dt else None)
        return action, dt
