"""What the runtime needs to know of a checkpoint, as typed, frozen values (`EstimatorSpec`).

`spec_from_checkpoint` is the one place in the runtime that reads checkpoint metadata (inputs,
outputs, targets, actions, dt and the normalization statistics); everything else takes the
spec it builds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from rkn_ros.core.checkpoint import CheckpointError, CheckpointMetadata, NormStats
from rkn_ros.core.config import ModelConfig
from rkn_ros.core.decode import OutputLayout, OutputLayoutError

# Semantic aliases: per-element arrays of a vector input or of the command.
Vector = np.ndarray  # float64 [dim]


@dataclass(frozen=True)
class ValueStats:
    """Training statistics of a vector input or of the command, per element, raw units.

    ``mean``/``std`` normalize (``(x - mean) / std``); ``minimum``/``maximum`` are the
    training extremes, None where the checkpoint does not record them (older checkpoints).
    ``recorded`` is False where the checkpoint holds no statistics at all (a model trained on
    raw values): mean 0 and std 1 then, and no training range to check against.
    """

    mean: Vector  # [dim]
    std: Vector  # [dim], > 0
    minimum: Vector | None = None  # [dim]
    maximum: Vector | None = None  # [dim]
    recorded: bool = True


@dataclass(frozen=True)
class InputSpec:
    """One model sensor as the runtime feeds it.

    ``shape`` is the model's per-sample shape: images ``(H, W)`` grey or ``(C, H, W)``; vectors
    ``(dim,)``. Vectors carry element ``names``/``units`` and their training ``stats``.
    """

    name: str
    kind: str  # "image" | "vector"
    shape: tuple[int, ...]
    names: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    stats: ValueStats | None = None  # vectors only

    @property
    def mean(self) -> Vector | None:
        """Normalization mean ``[dim]`` of a vector input (None for images)."""
        return None if self.stats is None else self.stats.mean

    @property
    def std(self) -> Vector | None:
        """Normalization standard deviation ``[dim]`` of a vector input (None for images)."""
        return None if self.stats is None else self.stats.std

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of an image sensor."""
        return int(self.shape[-2]), int(self.shape[-1])

    @property
    def channels(self) -> int:
        """1 for grey images, C for ``(C, H, W)``."""
        return int(self.shape[0]) if len(self.shape) == 3 else 1


@dataclass(frozen=True)
class ActionSpec:
    """The command: ``dim`` values (0: the model takes none) named ``names``."""

    dim: int
    names: tuple[str, ...]
    stats: ValueStats


@dataclass(frozen=True)
class EstimatorSpec:
    """Everything the runtime reads from a checkpoint besides the model and its weights."""

    name: str
    dt: float  # the model's tick, s
    uses_dt: bool  # the model takes each tick's dt as an input
    inputs: Mapping[str, InputSpec]  # model sensors in config order (read-only)
    action: ActionSpec
    layout: OutputLayout


def spec_from_checkpoint(config: ModelConfig, metadata: CheckpointMetadata) -> EstimatorSpec:
    """The runtime's view of a checkpoint; raises CheckpointError naming what is inconsistent."""
    name = metadata.name
    normalization = metadata.normalization.inputs
    inputs: dict[str, InputSpec] = {}
    for sensor in config.sensors:
        entry = metadata.inputs.get(sensor.name)
        if entry is None:
            raise CheckpointError(
                f"checkpoint '{name}': model sensor '{sensor.name}' is not in the metadata "
                f"inputs {list(metadata.inputs)}"
            )
        shape = tuple(int(v) for v in sensor.shape)
        stats = None
        if sensor.kind == "vector":
            stats = _stats(_entry(normalization.get(sensor.name)), shape[0],
                           f"checkpoint '{name}': normalization of '{sensor.name}'")
        elif sensor.kind != "image" or len(shape) not in (2, 3):
            raise CheckpointError(
                f"checkpoint '{name}': sensor '{sensor.name}' has kind {sensor.kind!r} and "
                f"shape {shape}; expected an image (H, W)/(C, H, W) or a vector"
            )
        inputs[sensor.name] = InputSpec(
            name=sensor.name, kind=sensor.kind, shape=shape,
            names=tuple(entry.names), units=tuple(entry.units), stats=stats,
        )
    action_dim = int(config.action_dim)
    action = ActionSpec(
        dim=action_dim,
        names=tuple(metadata.actions.names) if metadata.actions is not None else (),
        stats=_stats(_entry(metadata.normalization.actions), action_dim,
                     f"checkpoint '{name}': normalization of the actions"),
    )
    try:
        layout = OutputLayout.from_metadata(metadata.outputs, metadata.targets,
                                            int(config.output_dim), metadata.normalization)
    except OutputLayoutError as err:
        raise CheckpointError(f"checkpoint '{name}': {err}") from err
    return EstimatorSpec(name=name, dt=float(metadata.dt), uses_dt=bool(config.use_dt),
                         inputs=MappingProxyType(inputs), action=action, layout=layout)


def _stats(entry: Mapping, dim: int, what: str) -> ValueStats:
    """Mean 0 and std 1 where a checkpoint records none (inputs trained unnormalized)."""
    def vector(key: str, fill: float | None) -> Vector | None:
        values = entry.get(key)
        if values is None:
            return None if fill is None else np.full(dim, fill)
        try:
            array = np.asarray(values, dtype=np.float64).reshape(dim)
        except (TypeError, ValueError):
            raise CheckpointError(f"{what}: {key} is not {dim} numbers") from None
        if not np.all(np.isfinite(array)):
            raise CheckpointError(f"{what}: {key} holds NaN or inf")
        return array

    mean, std = vector("mean", 0.0), vector("std", 1.0)
    if np.any(std <= 0):
        raise CheckpointError(f"{what} is invalid: std must be positive")
    minimum, maximum = vector("min", None), vector("max", None)
    if (minimum is None) != (maximum is None) or (
            minimum is not None and np.any(minimum > maximum)):
        raise CheckpointError(f"{what}: min and max must both be given, min <= max")
    recorded = any(entry.get(key) is not None for key in ("mean", "std", "min", "max"))
    return ValueStats(mean, std, minimum, maximum, recorded)


def _entry(stats: NormStats | None) -> Mapping:
    """A checkpoint's statistics as the mapping :func:`_stats` reads ({} where it has none)."""
    if stats is None:
        return {}
    return {"mean": stats.mean, "std": stats.std, "min": stats.min, "max": stats.max}
