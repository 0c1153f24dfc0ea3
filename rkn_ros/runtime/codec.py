"""The input codec: raw inputs checked, normalized and written into the step buffers once.

Every refusal is an :class:`InputError` whose ``reason`` is the counter key (`REASONS`); a node
counts it as ``rejection_key(source, reason)``. Checks come first and writes after, so a refused
tick changes nothing.

Range checks (raw units, from the checkpoint's training statistics): a vector reading or a
command element beyond ``range_sigmas`` training standard deviations outside the training
``[min, max]`` is ``out_of_range``; a checkpoint without min and max gives ``mean +-
range_sigmas std``, one that records no statistics no range. The default, 6, keeps every value
a sensor in the trained regime gives (training data spans about +-2-4 std around its mean,
noise included) with room for excursions the model extrapolates sensibly, and refuses readings
the model has no basis for: a unit error (mbar sent as bar), a sensor fault, a spoofed
message. ``inf`` turns the check off; values whose normalized form would overflow float32 are
refused regardless.

Checked once: `InputCodec.check_input` and `InputCodec.check_action` return typed checked values
(`CheckedInput`, `CheckedAction`) bound to the codec's spec. `check_tick` takes them as they
are, so a caller that checks each input on arrival (a node, to count refusals under the input)
hands the step what it checked without it being checked again; any other value is checked there.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from rkn_ros.runtime.buffers import StepBuffers
from rkn_ros.runtime.spec import ActionSpec, EstimatorSpec, InputSpec, ValueStats, Vector

DEFAULT_RANGE_SIGMAS = 6.0
# Inputs are written into float32 buffers: a finite float64 beyond this would become inf there.
FLOAT32_LIMIT = float(np.finfo(np.float32).max)
_IMAGE_SCALE = {np.dtype(np.uint8): 1.0 / 255.0, np.dtype(np.uint16): 1.0 / 65535.0}
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as OpenCV's RGB2GRAY

# Every reason an InputError can carry (documented in docs/runtime.md).
REASONS = ("wrong_type", "unknown_input", "wrong_shape", "wrong_size", "wrong_dtype",
           "non_finite", "out_of_range", "unexpected_action", "bad_dt")


def rejection_key(source: str, reason: str) -> str:
    """The diagnostics counter of a refused input: ``rejected.<source>.<reason>``."""
    return f"rejected.{source}.{reason}"


class InputError(ValueError):
    """An input the model cannot take; ``reason`` (one of `REASONS`) is the counter key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Bounds:
    """Accepted raw values per element: ``low <= x <= high``."""

    low: Vector  # [dim]
    high: Vector  # [dim]


def value_bounds(stats: ValueStats, sigmas: float) -> Bounds:
    """``[min - k std, max + k std]``, or ``mean +- k std`` without min/max (k = ``sigmas``);
    unbounded where the checkpoint records no statistics."""
    if not stats.recorded:
        return Bounds(np.full(stats.mean.shape, -np.inf), np.full(stats.mean.shape, np.inf))
    margin = sigmas * stats.std
    if stats.minimum is not None and stats.maximum is not None:
        return Bounds(stats.minimum - margin, stats.maximum + margin)
    return Bounds(stats.mean - margin, stats.mean + margin)


def normalize(what: str, array: np.ndarray, stats: ValueStats, bounds: Bounds) -> np.ndarray:
    """Finite, in-bounds raw values -> ``(x - mean) / std`` (float64), else InputError."""
    if not np.all(np.isfinite(array)):
        raise InputError("non_finite", f"{what}: holds NaN or inf")
    outside = (array < bounds.low) | (array > bounds.high)
    if np.any(outside):
        index = int(np.argmax(outside))
        raise InputError(
            "out_of_range",
            f"{what}: value {float(array[index]):.6g} at element {index} is outside "
            f"[{bounds.low[index]:.6g}, {bounds.high[index]:.6g}] (training range widened "
            f"by range_sigmas training std)")
    normalized = (array - stats.mean) / stats.std
    if not np.all(np.abs(normalized) < FLOAT32_LIMIT):
        raise InputError("out_of_range", f"{what}: values {array.tolist()} beyond float32")
    return normalized


class CheckedInput(NamedTuple):
    """One raw input checked by a codec: ``raw`` as received (an array of the input's shape, or
    the image), ``value`` its model form (the normalized float64 vector ``[dim]``, or the raw
    image, resized and scaled when written); ``spec`` the input it was checked against."""

    spec: InputSpec
    raw: np.ndarray
    value: np.ndarray


class CheckedAction(NamedTuple):
    """A raw command checked by a codec: ``raw`` ``[action_dim]`` float64 in raw units,
    ``normalized`` ``[action_dim]`` float32; ``spec`` the command it was checked against."""

    spec: ActionSpec
    raw: np.ndarray
    normalized: np.ndarray


class CheckedTick(NamedTuple):
    """One tick's inputs, checked: per sensor None (missing), the normalized float64 vector
    ``[dim]`` or the raw image (resized and scaled when written); the normalized
    command ``[action_dim]`` float32 or None (hold the last); dt in s or None (the model's)."""

    arrays: dict[str, np.ndarray | None]
    action: np.ndarray | None
    dt: float | None


class InputCodec:
    """Checks raw inputs against `spec` and writes them into `buffers` (see module doc)."""

    def __init__(self, spec: EstimatorSpec, buffers: StepBuffers, *, resize_images: bool = False,
                 range_sigmas: float = DEFAULT_RANGE_SIGMAS) -> None:
        if (not isinstance(range_sigmas, numbers.Real) or isinstance(range_sigmas, bool)
                or math.isnan(range_sigmas) or range_sigmas <= 0):
            raise ValueError(f"range_sigmas: expected a positive number of standard deviations "
                             f"(inf: no range check), got {range_sigmas!r}")
        self.spec = spec
        self.buffers = buffers
        self.resize_images = resize_images
        self.range_sigmas = float(range_sigmas)
        self._bounds = {n: value_bounds(s.stats, self.range_sigmas)
                        for n, s in spec.inputs.items() if s.stats is not None}
        self._action_bounds = value_bounds(spec.action.stats, self.range_sigmas)
        self._unbounded = value_bounds(dataclasses.replace(spec.action.stats, recorded=False),
                                       self.range_sigmas)

    # ------------------------------------------------------------------ checks
    def check_tick(self, inputs: Any, action: Any = None, dt: Any = None) -> CheckedTick:
        """Everything one tick takes, checked; nothing written. Values this codec checked
        already (`CheckedInput`, `CheckedAction`) are taken as they are."""
        if not isinstance(inputs, Mapping):
            raise InputError("wrong_type", f"inputs: expected a mapping of input name to value, "
                                           f"got {type(inputs).__name__}")
        unknown = [n for n in inputs if n not in self.spec.inputs]
        if unknown:
            raise InputError("unknown_input", f"inputs {unknown} are not among the model's "
                                              f"{list(self.spec.inputs)}")
        arrays = {n: (None if v is None else self._model_form(n, v)) for n, v in inputs.items()}
        if action is None:
            normalized = None
        elif isinstance(action, CheckedAction) and action.spec is self.spec.action:
            normalized = action.normalized
        else:  # a command checked for another model is checked here
            normalized = self.normalize_action(
                action.raw if isinstance(action, CheckedAction) else action)
        return CheckedTick(arrays, normalized, None if dt is None else check_dt(dt))

    def check_input(self, name: Any, value: Any) -> CheckedInput:
        """One raw input checked (`InputError` if refused), in the form `check_tick` takes."""
        spec = self.spec.inputs.get(name) if isinstance(name, str) else None
        raw, normalized = self._checked(name, value)
        return CheckedInput(spec, raw, raw if normalized is None else normalized)

    def _model_form(self, name: str, value: Any) -> np.ndarray:
        if isinstance(value, CheckedInput):
            if value.spec is self.spec.inputs[name]:
                return value.value
            value = value.raw  # checked against another input or model: checked here
        raw, normalized = self._checked(name, value)
        return raw if normalized is None else normalized

    def _checked(self, name: Any, value: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """(the checked raw array, its normalized float64 form for a vector, else None)."""
        spec = self.spec.inputs.get(name) if isinstance(name, str) else None
        if spec is None:
            raise InputError("unknown_input",
                             f"input '{name}' is not one of the model's {list(self.spec.inputs)}")
        try:
            array = np.asarray(value)
        except (TypeError, ValueError) as err:  # e.g. a ragged list
            raise InputError("wrong_shape", f"input '{name}': not an array ({err})") from None
        if not array.dtype.isnative:  # big-endian data from another machine
            array = array.astype(array.dtype.newbyteorder("="))
        if spec.kind == "vector":
            if array.shape != spec.shape:
                raise InputError("wrong_shape", f"input '{name}': expected shape {spec.shape}, "
                                                f"received {array.shape}")
            if array.dtype.kind not in "biuf":
                raise InputError("wrong_dtype",
                                 f"input '{name}': dtype {array.dtype} is not a real number")
            return array, normalize(f"input '{name}'", array.astype(np.float64), spec.stats,
                                    self._bounds[name])
        return check_image(spec, array, self.resize_images), None

    def check_action(self, action: Any) -> CheckedAction:
        """A raw command checked (`InputError` if refused), in the form `check_tick` takes."""
        raw = self._raw_action(action)
        normalized = normalize("action", raw, self.spec.action.stats, self._action_bounds)
        return CheckedAction(self.spec.action, raw, normalized.astype(np.float32))

    def normalize_action(self, action: Any) -> np.ndarray:
        """A raw command checked and normalized: ``[action_dim]`` float32."""
        return self.check_action(action).normalized

    def normalize_actions(self, actions: Any, steps: int) -> np.ndarray:
        """Raw commands ``[steps, action_dim]`` checked and normalized (float32)."""
        dim = self.spec.action.dim
        raw = self._as_numbers(actions, "actions")
        if raw.shape != (steps, dim):
            raise InputError("wrong_shape", f"predict: actions must have shape {(steps, dim)}, "
                                            f"got {raw.shape}")
        return np.stack([normalize(f"actions[{k}]", row, self.spec.action.stats,
                                   self._action_bounds) for k, row in enumerate(raw)]
                        ).astype(np.float32)

    def _raw_action(self, action: Any) -> np.ndarray:
        array = self._as_numbers(action, "action").reshape(-1)
        if array.size != self.spec.action.dim:
            raise InputError("wrong_shape",
                             f"action: expected {self.spec.action.dim} values "
                             f"{list(self.spec.action.names)}, received {array.size}")
        return array

    def _as_numbers(self, values: Any, what: str) -> np.ndarray:
        if self.spec.action.dim == 0:
            raise InputError("unexpected_action", f"model '{self.spec.name}' takes no action input")
        try:
            array = np.asarray(values)
        except (TypeError, ValueError, OverflowError) as err:  # e.g. a ragged list
            raise InputError("wrong_dtype", f"{what}: not an array of numbers ({err})") from None
        if array.dtype.kind not in "biuf":  # strings, objects, complex numbers, dates
            raise InputError("wrong_dtype", f"{what}: dtype {array.dtype} is not a real number")
        return array.astype(np.float64)

    # ------------------------------------------------------------------ writes
    def write(self, tick: CheckedTick) -> dict[str, bool]:
        """Write a checked tick into the buffers; returns which inputs are present."""
        buffers = self.buffers
        if tick.action is not None:
            buffers.action_np[0, : self.spec.action.dim] = tick.action
        buffers.dt_np[0, 0] = self.spec.dt if tick.dt is None else tick.dt
        used: dict[str, bool] = {}
        for name, spec in self.spec.inputs.items():
            array = tick.arrays.get(name)
            if array is None:
                buffers.obs_np[name].fill(0.0)  # missing inputs must still be finite numbers
            else:
                write_input(spec, array, buffers.obs_np[name][0])
            buffers.valid_np[name][0] = array is not None
            used[name] = array is not None
        return used

    def write_missing(self, present: bool) -> None:
        """Zeros in every input, all flagged ``present`` (warm-up ticks)."""
        for name in self.spec.inputs:
            self.buffers.obs_np[name].fill(0.0)
            self.buffers.valid_np[name][0] = present

    def reset(self) -> None:
        """Zero command held (actuators at rest before any command comes) and the model's dt."""
        buffers = self.buffers
        buffers.action_np[0] = 0.0
        dim = self.spec.action.dim
        if dim:  # no range check: zero may lie outside a trained command range
            buffers.action_np[0, :dim] = normalize("action", np.zeros(dim), self.spec.action.stats,
                                                   self._unbounded)
        buffers.dt_np[0, 0] = self.spec.dt

    @property
    def held_action(self) -> np.ndarray:
        """The normalized command in the buffer ``[action_dim]`` (a view)."""
        return self.buffers.action_np[0, : self.spec.action.dim]


def check_dt(dt: Any) -> float:
    """A tick spacing: a positive finite number of seconds (a number or one-element array)."""
    try:
        if isinstance(dt, str | bytes):
            raise TypeError
        value = float(np.asarray(dt, dtype=np.float64).item())
    except (TypeError, ValueError, OverflowError):
        raise InputError("bad_dt", f"dt must be a positive number of seconds, got {dt!r}") \
            from None
    if not (0.0 < value < FLOAT32_LIMIT):
        raise InputError("bad_dt", f"dt must be a positive finite number, got {dt!r}")
    return value


def check_image(spec: InputSpec, array: np.ndarray, resize: bool) -> np.ndarray:
    """A raw image ``[H, W]``/``[H, W, 1]``/``[H, W, 3]`` checked against `spec`."""
    name = spec.name
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise InputError("wrong_shape", f"input '{name}': expected an image [H, W] or [H, W, 3], "
                                        f"received {array.shape}")
    if array.ndim == 3 and spec.channels not in (1, 3):
        raise InputError("wrong_shape", f"input '{name}': the model takes {spec.channels} "
                                        f"channels, not a colour image {array.shape}")
    if array.size == 0:
        raise InputError("wrong_size", f"input '{name}': empty image {array.shape}")
    if array.dtype not in _IMAGE_SCALE and array.dtype not in (np.float32, np.float64):
        raise InputError("wrong_dtype", f"input '{name}': image dtype must be uint8, uint16 or "
                                        f"float, got {array.dtype}")
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise InputError("non_finite", f"input '{name}': image holds NaN or inf")
        if array.min() < 0.0 or array.max() > 1.0:
            raise InputError("out_of_range", f"input '{name}': float image outside [0, 1]")
    if array.shape[:2] != spec.image_size and not resize:
        raise InputError("wrong_size", f"input '{name}': expected image size {spec.image_size}, "
                                       f"received {array.shape[:2]}")
    return array


def write_input(spec: InputSpec, array: np.ndarray, out: np.ndarray) -> None:
    """A checked input (`CheckedTick.arrays`) -> the model's form in ``out``
    (``[*spec.shape]`` float32)."""
    if spec.kind == "vector":
        # normalized in float64 (the difference alone may not fit in float32), then stored
        np.copyto(out, array, casting="unsafe")
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
