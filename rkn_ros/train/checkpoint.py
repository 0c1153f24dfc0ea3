"""Checkpoint files: ``model.safetensors`` (weights only) plus ``model.yaml`` (metadata).

Loading never unpickles: weights go through ``safetensors`` and metadata through
``yaml.safe_load``. Every failure (missing file, truncated or tampered weights, metadata that
does not match the weights or what the caller needs) raises :class:`CheckpointError` with one
line saying what is wrong, so a node can log it and refuse to start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.yaml"
OUTPUT_KINDS = ("sincos", "direct")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message is one line naming the file and the problem."""


@dataclasses.dataclass(frozen=True)
class CheckpointMetadata:
    """Everything a checkpoint records besides its weights (the ``model.yaml`` content).

    ``model`` is the model configuration as a plain dict (``dataclasses.asdict(ModelConfig)``);
    ``inputs`` maps each sensor name to its data-set entry (kind, shape, names, units);
    ``normalization`` holds ``inputs/<sensor>``, ``targets`` and ``actions`` mean/std lists.
    """

    name: str
    model: dict
    dt: float
    inputs: dict
    targets: dict
    outputs: dict
    actions: dict | None = None
    normalization: dict = dataclasses.field(default_factory=dict)
    data_hash: str = ""
    metrics: dict = dataclasses.field(default_factory=dict)
    training: dict = dataclasses.field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    weights_sha256: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "metadata") -> CheckpointMetadata:
        """Validate a metadata mapping; raises CheckpointError naming the bad key."""
        if not isinstance(data, Mapping):
            raise CheckpointError(f"{source}: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CheckpointError(f"{source}: unknown key(s) {unknown}")
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [key for key in required if key not in data]
        if missing:
            raise CheckpointError(f"{source}: missing key(s) {missing}")
        version = data.get("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: format_version {version!r} is not supported (expected {FORMAT_VERSION})"
            )
        for key in ("model", "inputs", "targets", "outputs", "normalization", "metrics"):
            if key in data and not isinstance(data[key], Mapping):
                raise CheckpointError(f"{source}: '{key}' must be a mapping")
        if data.get("actions") is not None and not isinstance(data["actions"], Mapping):
            raise CheckpointError(f"{source}: 'actions' must be a mapping or null")
        dt = data["dt"]
        if isinstance(dt, bool) or not isinstance(dt, int | float) or not dt > 0:
            raise CheckpointError(f"{source}: 'dt' must be a positive number, got {dt!r}")
        if not math.isfinite(float(dt)):
            raise CheckpointError(f"{source}: 'dt' must be finite, got {dt!r}")
        kind = data["outputs"].get("kind")
        if kind not in OUTPUT_KINDS:
            raise CheckpointError(
                f"{source}: outputs.kind must be one of {OUTPUT_KINDS}, got {kind!r}"
            )
        if not data["inputs"]:
            raise CheckpointError(f"{source}: 'inputs' names no sensor")
        for sensor, spec in data["inputs"].items():
            if not isinstance(spec, Mapping) or spec.get("kind") not in ("image", "vector"):
                raise CheckpointError(
                    f"{source}: inputs.{sensor} needs kind 'image' or 'vector', got {spec!r}"
                )
        values = {key: data[key] for key in data}
        values["dt"] = float(dt)
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain dict for YAML (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def sensor_names(self) -> list[str]:
        """Sensor names in model order."""
        return list(self.inputs)

    def check_compatible(
        self,
        sensors: Sequence[str] | None = None,
        dt: float | None = None,
        image_shape: Sequence[int] | None = None,
        joint_names: Sequence[str] | None = None,
        dt_tolerance: float = 1e-6,
        source: str = "checkpoint",
    ) -> None:
        """Refuse (CheckpointError) a checkpoint that does not match what the caller provides.

        ``sensors``: sensor names the caller feeds (each must be one the model has);
        ``dt``: the caller's tick in seconds; ``image_shape``: (height, width) of the caller's
        images; ``joint_names``: the caller's joint names for the model's vector sensors.
        """
        if sensors is not None:
            unknown = [name for name in sensors if name not in self.inputs]
            if unknown:
                raise CheckpointError(
                    f"{source}: sensors {unknown} requested but the model has {self.sensor_names()}"
                )
        if dt is not None and abs(float(dt) - self.dt) > dt_tolerance * max(1.0, self.dt):
            raise CheckpointError(
                f"{source}: dt {float(dt)} s requested but the model has {self.dt} s"
            )
        if image_shape is not None:
            images = {n: s for n, s in self.inputs.items() if s.get("kind") == "image"}
            if not images:
                raise CheckpointError(
                    f"{source}: image_shape given but the model has no image input"
                )
            for name, spec in images.items():
                have = [int(v) for v in spec.get("shape", [])][-2:]
                if have != [int(v) for v in image_shape][-2:]:
                    raise CheckpointError(
                        f"{source}: image size {list(image_shape)} requested but input "
                        f"'{name}' has {have}"
                    )
        if joint_names is not None:
            have = [
                str(n)
                for spec in self.inputs.values()
                if spec.get("kind") == "vector"
                for n in spec.get("names", [])
            ]
            missing = [n for n in joint_names if n not in have]
            if missing:
                raise CheckpointError(
                    f"{source}: joint names {missing} requested but the model's vector inputs "
                    f"are {have}"
                )


def _plain(value: Any) -> Any:
    """Recursively turn tuples into lists and numpy/torch scalars into Python numbers for YAML."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return _plain(value.tolist())
    return value


def _weights_bytes(model: nn.Module) -> bytes:
    # Clone so tied or non-contiguous parameters serialise as independent, contiguous tensors.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    return safetensors_save(tensors, metadata={"format": "pt"})


def save_checkpoint(
    folder: str | Path, model: nn.Module, metadata: CheckpointMetadata | Mapping[str, Any]
) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/model.yaml``; returns the folder.

    The YAML records the sha256 of the weights so that a tampered file is refused on load.
    Same model and metadata give the same bytes.
    """
    folder = Path(folder)
    if not isinstance(metadata, CheckpointMetadata):
        metadata = CheckpointMetadata.from_dict(metadata)
    blob = _weights_bytes(model)
    metadata = dataclasses.replace(metadata, weights_sha256=hashlib.sha256(blob).hexdigest())
    folder.mkdir(parents=True, exist_ok=True)
    # Write to temporary names first so an interrupted save never leaves a half checkpoint.
    tmp_weights = folder / (WEIGHTS_FILE + ".tmp")
    tmp_meta = folder / (METADATA_FILE + ".tmp")
    tmp_weights.write_bytes(blob)
    tmp_meta.write_text(
        yaml.safe_dump(metadata.to_dict(), sort_keys=False, default_flow_style=None, width=100)
    )
    tmp_weights.replace(folder / WEIGHTS_FILE)
    tmp_meta.replace(folder / METADATA_FILE)
    return folder


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint folder for a folder, its ``.safetensors`` file or its ``model.yaml``."""
    path = Path(path)
    if path.is_file() and path.name in (WEIGHTS_FILE, METADATA_FILE):
        return path.parent
    if path.suffix == ".safetensors" or path.name == METADATA_FILE:
        if not path.exists():
            raise CheckpointError(f"checkpoint file {path} does not exist")
        raise CheckpointError(f"checkpoint file {path} must be named {WEIGHTS_FILE}")
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is neither a folder nor {WEIGHTS_FILE}")
    return path


def read_metadata(path: str | Path) -> CheckpointMetadata:
    """Read and validate ``model.yaml`` of a checkpoint (no weights are read)."""
    folder = resolve_checkpoint(path)
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"checkpoint {folder}: missing {METADATA_FILE}")
    try:
        data = yaml.safe_load(meta_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{meta_path}: not valid YAML ({first})") from err
    return CheckpointMetadata.from_dict(data, source=str(meta_path))


def read_weights(
    path: str | Path, metadata: CheckpointMetadata | None = None
) -> dict[str, torch.Tensor]:
    """Read ``model.safetensors`` into CPU tensors, checking it against the recorded sha256."""
    folder = resolve_checkpoint(path)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint {folder}: missing {WEIGHTS_FILE}")
    blob = weights_path.read_bytes()
    try:
        tensors = safetensors_load(blob)
    except SafetensorError as err:
        raise CheckpointError(
            f"{weights_path}: truncated or corrupt safetensors file ({str(err).splitlines()[0]})"
        ) from err
    if metadata is not None and metadata.weights_sha256:
        digest = hashlib.sha256(blob).hexdigest()
        if digest != metadata.weights_sha256:
            raise CheckpointError(
                f"{weights_path}: sha256 {digest[:12]}... does not match {METADATA_FILE} "
                f"({metadata.weights_sha256[:12]}...): weights were modified or belong elsewhere"
            )
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{weights_path}: tensor '{key}' holds NaN or inf")
    return tensors


def load_weights_into(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Copy ``tensors`` into ``model``; keys and shapes must match exactly (CheckpointError)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"weights lack {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if extra:
            parts.append(f"weights have unexpected {extra[:3]}{' ...' if len(extra) > 3 else ''}")
        raise CheckpointError(
            f"{source}: metadata does not match the weights: " + "; ".join(parts)
        )
    for key, want in expected.items():
        got = tensors[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                f"{source}: metadata does not match the weights: '{key}' has shape "
                f"{list(got.shape)} in the file, the model built from the metadata needs "
                f"{list(want.shape)}"
            )
        if got.dtype != want.dtype:
            raise CheckpointError(
                f"{source}: weight '{key}' has dtype {got.dtype}, expected {want.dtype}"
            )
    model.load_state_dict(dict(tensors), strict=True)


def _default_factory(metadata: CheckpointMetadata) -> nn.Module:
    from rkn_ros.core import build_model
    from rkn_ros.core.config import ModelConfig

    try:
        config = ModelConfig.from_dict(metadata.model)
    except (TypeError, ValueError, KeyError) as err:
        raise CheckpointError(f"model config in {METADATA_FILE} is invalid: {err}") from err
    return build_model(config)


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``"auto"`` picks CUDA when available; ``"cuda"`` or ``"cuda:N"`` without that GPU, or a
    string torch does not read as a CPU or CUDA device, is a ValueError saying so."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):  # torch's error for a malformed string
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        count = torch.cuda.device_count()
        if parsed.index is not None and parsed.index >= count:
            raise ValueError(f"device {device!r} requested but this machine has {count} CUDA "
                             f"device(s): cuda:0 to cuda:{count - 1}")
    return parsed


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    sensors: Sequence[str] | None = None,
    dt: float | None = None,
    image_shape: Sequence[int] | None = None,
    joint_names: Sequence[str] | None = None,
    model_factory: Callable[[CheckpointMetadata], nn.Module] | None = None,
) -> tuple[nn.Module, CheckpointMetadata]:
    """Load a checkpoint folder (or its ``model.safetensors``) as ``(model, metadata)``.

    The model is rebuilt from the metadata's model config (``rkn_ros.core.build_model`` unless
    ``model_factory`` is given), its weights checked against the file, and it is returned in
    eval mode on ``device``. ``sensors``/``dt``/``image_shape``/``joint_names`` describe what
    the caller provides; a mismatch raises CheckpointError before any weights are read.
    """
    folder = resolve_checkpoint(path)
    metadata = read_metadata(folder)
    metadata.check_compatible(
        sensors=sensors, dt=dt, image_shape=image_shape, joint_names=joint_names, source=str(folder)
    )
    tensors = read_weights(folder, metadata)
    model = (model_factory or _default_factory)(metadata)
    load_weights_into(model, tensors, source=str(folder))
    model.eval()
    return model.to(resolve_device(device)), metadata
