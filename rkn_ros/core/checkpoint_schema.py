"""The ``model.yaml`` schema of a checkpoint: frozen, typed, versioned records.

Every field is type- and range-checked by :func:`rkn_ros.core.typed_config.from_mapping` before
any tensor exists; the limits lie where no reasonable model reaches, so a hostile or corrupt
file is refused with :class:`CheckpointError` naming the field (``normalization.inputs.joints
.std[1]: expected a number >= 1e-06 and <= 1e+12, got 0.0``).

Format versions: 1 recorded mean and std only and a sha256 of the weights; 2 adds each
statistic's training ``min``/``max``, ``training.world_size`` and ``checkpoint_sha256``, which
covers the metadata as well as the weights. :func:`metadata_from_dict` reads both.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Literal

from rkn_ros.core.config import ModelConfig
from rkn_ros.core.typed_config import ConfigError, PlainValue, from_mapping, limits, to_plain

FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
MAX_DIM = 4096  # widest layer, latent or vector a model may declare
MAX_IMAGE_SIDE = 1024  # pixels per image side
MAX_CHANNELS = 4
MIN_DT, MAX_DT = 1e-6, 3600.0  # seconds per tick
MIN_STD, MAX_STAT = 1e-6, 1e12  # normalization: smallest std, largest |value|
MAX_NAME = 256  # characters of a name or unit
MAX_ENTRIES = 4096  # names, units, statistics per record
STATS = limits(ge=-MAX_STAT, le=MAX_STAT, max_items=MAX_ENTRIES)
LIST = limits(max_items=MAX_ENTRIES)


class CheckpointError(ConfigError):
    """A checkpoint cannot be used; the message is one line naming the file and the field."""


def _names(values: Sequence[str], where: str) -> None:
    for i, name in enumerate(values):
        if not name or len(name) > MAX_NAME or not name.isprintable():
            raise ConfigError(f"{where}[{i}]: expected a printable name of 1 to {MAX_NAME} "
                              f"characters, got {name[:40]!r}")


def _length(values: Sequence, size: int, where: str) -> None:
    if len(values) != size:
        raise ConfigError(f"{where}: expected {size} values, got {len(values)}")


Stat = tuple[float, ...]
Names = tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class NormStats:
    """Training statistics of one vector ``[dim]`` in raw units: z = (x - mean) / std.

    ``min``/``max``: the training data's range (None in checkpoints of format 1).
    """

    mean: Stat = field(metadata=STATS)
    std: Stat = field(metadata=limits(ge=MIN_STD, le=MAX_STAT, max_items=MAX_ENTRIES))
    min: Stat | None = field(default=None, metadata=STATS)
    max: Stat | None = field(default=None, metadata=STATS)

    def __post_init__(self) -> None:
        _length(self.std, len(self.mean), "std")
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                _length(getattr(self, key), len(self.mean), key)
        if self.min is not None and self.max is not None:
            bad = [i for i, (lo, hi) in enumerate(zip(self.min, self.max, strict=True)) if lo > hi]
            if bad:
                raise ConfigError(f"min[{bad[0]}]: {self.min[bad[0]]} is above max "
                                  f"{self.max[bad[0]]}")

    @property
    def dim(self) -> int:
        return len(self.mean)

    @classmethod
    def identity(cls, dim: int) -> NormStats:
        """Mean 0, std 1: what an absent statistic means (the values are used as they are)."""
        return cls(mean=(0.0,) * dim, std=(1.0,) * dim)


@dataclasses.dataclass(frozen=True)
class Normalization:
    """``inputs[sensor]`` for vector sensors, ``targets`` ``[output_dim]``, ``actions``
    ``[action_dim]``; an absent entry means the values are used unscaled
    (:meth:`NormStats.identity`, what ``input``/``target``/``action`` return then)."""

    targets: NormStats | None = None
    inputs: dict[str, NormStats] = field(default_factory=dict, metadata=limits(max_items=64))
    actions: NormStats | None = None

    def input(self, name: str, dim: int) -> NormStats:
        """The statistics of vector input ``name`` (identity when absent)."""
        return self.inputs.get(name) or NormStats.identity(dim)

    def target(self, dim: int) -> NormStats:
        return self.targets or NormStats.identity(dim)

    def action(self, dim: int) -> NormStats:
        return self.actions or NormStats.identity(dim)


@dataclasses.dataclass(frozen=True)
class InputSpec:
    """One sensor: ``kind`` (the array layout), sample ``shape`` (image (H, W) or (C, H, W);
    vector (dim,)), per-entry ``names`` and ``units`` of a vector, the ROS ``topic`` it was
    recorded from, and ``sensor_kind``, what the sensor is when the layout does not say it
    (``imu``, ``joint_state``, ...)."""

    kind: Literal["image", "vector"]
    shape: tuple[int, ...] = field(metadata=limits(ge=1, le=MAX_DIM, max_items=3))
    names: Names = field(default=(), metadata=LIST)
    units: Names = field(default=(), metadata=LIST)
    topic: str | None = field(default=None, metadata=limits(max_items=MAX_NAME))
    sensor_kind: str | None = field(default=None, metadata=limits(max_items=MAX_NAME))

    def __post_init__(self) -> None:
        _names(self.names, "names")
        _names(self.units, "units")
        if self.kind == "vector":
            if len(self.shape) != 1:
                raise ConfigError(f"shape: a vector needs (dim,), got {list(self.shape)}")
            for key in ("names", "units"):
                if getattr(self, key):
                    _length(getattr(self, key), self.shape[0], key)
        else:
            if len(self.shape) not in (2, 3):
                raise ConfigError(f"shape: an image needs (H, W) or (C, H, W), got "
                                  f"{list(self.shape)}")
            if max(self.shape[-2:]) > MAX_IMAGE_SIDE:
                raise ConfigError(f"shape: image sides are at most {MAX_IMAGE_SIDE} px, got "
                                  f"{list(self.shape)}")
            if len(self.shape) == 3 and self.shape[0] > MAX_CHANNELS:
                raise ConfigError(f"shape: at most {MAX_CHANNELS} channels, got {self.shape[0]}")


@dataclasses.dataclass(frozen=True)
class TargetsSpec:
    """What the model was trained to output, ``[output_dim]`` entries (``kind``: e.g. next)."""

    names: Names = field(default=(), metadata=LIST)
    units: Names = field(default=(), metadata=LIST)
    kind: str | None = field(default=None, metadata=limits(max_items=MAX_NAME))

    def __post_init__(self) -> None:
        _names(self.names, "names")
        _names(self.units, "units")


@dataclasses.dataclass(frozen=True)
class OutputsSpec:
    """The decoded outputs: ``sincos`` (angles from sin/cos target pairs) or ``direct``."""

    kind: Literal["sincos", "direct"]
    names: Names = field(default=(), metadata=LIST)
    units: Names = field(default=(), metadata=LIST)

    def __post_init__(self) -> None:
        _names(self.names, "names")
        _names(self.units, "units")
        if self.units:
            _length(self.units, len(self.names), "units")


@dataclasses.dataclass(frozen=True)
class ActionsSpec:
    """The control input ``[action_dim]``: names and units of each entry."""

    names: Names = field(default=(), metadata=LIST)
    units: Names = field(default=(), metadata=LIST)

    def __post_init__(self) -> None:
        _names(self.names, "names")
        _names(self.units, "units")


@dataclasses.dataclass(frozen=True)
class TrainingRecord:
    """How the checkpoint was trained: the recipe, data generator and parameters, progress."""

    recipe: dict | None = None
    data_generator: str | None = field(default=None, metadata=limits(max_items=MAX_NAME))
    data_parameters: dict = field(default_factory=dict)
    rkn_ros_version: str = field(default="", metadata=limits(max_items=MAX_NAME))
    epochs: int = field(default=0, metadata=limits(ge=0))
    steps: int = field(default=0, metadata=limits(ge=0))
    world_size: int = field(default=1, metadata=limits(ge=1, le=65536))  # training processes


@dataclasses.dataclass(frozen=True)
class CheckpointMetadata:
    """Everything ``model.yaml`` records besides the weights.

    ``model``: the architecture; ``inputs[sensor]``: one :class:`InputSpec` per model sensor,
    in model order; ``dt``: seconds per tick; ``metrics``: evaluation figures by name;
    ``format_version``: the version the file was written in; ``weights_sha256``: sha256 of
    ``model.safetensors``; ``checkpoint_sha256``: sha256 over this metadata and the weights.
    """

    name: str = field(metadata=limits(max_items=MAX_NAME))
    model: ModelConfig
    dt: float = field(metadata=limits(ge=MIN_DT, le=MAX_DT))
    inputs: dict[str, InputSpec] = field(metadata=limits(max_items=64))
    targets: TargetsSpec
    outputs: OutputsSpec
    normalization: Normalization = field(default_factory=Normalization)
    actions: ActionsSpec | None = None
    data_hash: str = field(default="", metadata=limits(max_items=64))
    metrics: dict[str, float] = field(default_factory=dict, metadata=limits(max_items=256))
    training: TrainingRecord = field(default_factory=TrainingRecord)
    format_version: int = FORMAT_VERSION
    weights_sha256: str = field(default="", metadata=limits(max_items=64))
    checkpoint_sha256: str = field(default="", metadata=limits(max_items=64))

    def __post_init__(self) -> None:
        _names([self.name], "name")
        if self.format_version not in SUPPORTED_VERSIONS:
            raise ConfigError(f"format_version: {self.format_version} is not supported "
                              f"(this version reads {list(SUPPORTED_VERSIONS)})")
        _check_model_limits(self.model)
        _check_consistent(self)

    @property
    def sensor_names(self) -> list[str]:
        """Sensor names in model order."""
        return list(self.inputs)

    def to_dict(self) -> dict:
        """The ``model.yaml`` mapping (plain lists, dicts and numbers)."""
        return to_plain(self)


def _check_model_limits(model: ModelConfig) -> None:
    for entry in dataclasses.fields(model):
        value = getattr(model, entry.name)
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and v > MAX_DIM:
                raise ConfigError(f"model.{entry.name}: at most {MAX_DIM}, got {v}")
            if isinstance(v, float) and not (math.isfinite(v) and v <= MAX_STAT):
                raise ConfigError(f"model.{entry.name}: expected a finite number, got {v}")
    for i, sensor in enumerate(model.sensors):
        try:
            InputSpec(kind=sensor.kind, shape=sensor.shape)
        except ConfigError as err:
            raise ConfigError(f"model.sensors[{i}].{err}") from err


def _check_consistent(meta: CheckpointMetadata) -> None:
    """The records agree with each other and with the model (sizes, names, kinds)."""
    model = meta.model
    sensors = [s.name for s in model.sensors]
    if list(meta.inputs) != sensors:
        raise ConfigError(f"inputs: names {list(meta.inputs)} differ from the model's sensors "
                          f"{sensors}")
    norm = meta.normalization
    for sensor in model.sensors:
        spec = meta.inputs[sensor.name]
        if spec.kind != sensor.kind or spec.shape != sensor.shape:
            raise ConfigError(f"inputs.{sensor.name}: {spec.kind} {list(spec.shape)} differs from "
                              f"the model's {sensor.kind} {list(sensor.shape)}")
        stats = norm.inputs.get(sensor.name)
        if spec.kind == "vector" and stats is not None:
            _length(stats.mean, spec.shape[0], f"normalization.inputs.{sensor.name}.mean")
    extra = sorted(set(norm.inputs) - {s.name for s in model.sensors if s.kind == "vector"})
    if extra:
        raise ConfigError(f"normalization.inputs.{extra[0]}: not a vector input of the model")
    if norm.targets is not None:
        _length(norm.targets.mean, model.output_dim, "normalization.targets.mean")
    if meta.targets.names:
        _length(meta.targets.names, model.output_dim, "targets.names")
    outputs = meta.outputs
    if outputs.kind == "direct":
        _length(outputs.names, model.output_dim, "outputs.names")
    elif not 0 < model.output_dim - len(outputs.names) <= model.output_dim // 2:
        raise ConfigError(f"outputs.names: {len(outputs.names)} names do not fit sincos outputs "
                          f"from {model.output_dim} targets (n angles from 2n sin/cos targets)")
    if model.action_dim:
        if meta.actions is None:
            raise ConfigError(f"actions: missing, but the model takes {model.action_dim} actions")
        if norm.actions is not None:
            _length(norm.actions.mean, model.action_dim, "normalization.actions.mean")
        if meta.actions.names:
            _length(meta.actions.names, model.action_dim, "actions.names")
    elif meta.actions is not None or norm.actions is not None:
        raise ConfigError("actions: given but the model takes no action (model.action_dim 0)")


def _upgrade_v1(data: Mapping) -> dict:
    """Format 1 to the current layout: nothing to add (min, max, world_size and
    checkpoint_sha256 are optional); the version stays 1 so integrity checks know."""
    return dict(data)


_UPGRADES = {1: _upgrade_v1}


def metadata_from_dict(data: PlainValue, source: str = "metadata") -> CheckpointMetadata:
    """Check a ``model.yaml`` mapping of any supported version (CheckpointError naming the
    file and the field)."""
    if not isinstance(data, Mapping):
        raise CheckpointError(f"{source}: expected a mapping, got {type(data).__name__}")
    version = data.get("format_version", 1)
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise CheckpointError(f"{source}: format_version {version!r} is not supported (this "
                              f"version reads {list(SUPPORTED_VERSIONS)})")
    upgrade = _UPGRADES.get(version)
    if upgrade is not None:
        data = upgrade(data)
    try:
        return from_mapping(CheckpointMetadata, data, "")
    except ConfigError as err:
        raise CheckpointError(f"{source}: {err}") from err
