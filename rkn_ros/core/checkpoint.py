"""Checkpoint files: ``model.safetensors`` (weights only) plus ``model.yaml`` (metadata).

The format is shared by training, evaluation and the runtime, so it lives in the core layer.
Loading never unpickles and spends memory only after the files are checked:

1. ``model.yaml``: size bounded, parsed without anchors or aliases, every field checked by the
   schema (:mod:`rkn_ros.core.checkpoint_schema`);
2. ``model.safetensors``: the 8-byte header length and the JSON header are checked against the
   file's size and against the tensor names, shapes and dtypes of the model the metadata
   describes (built on the ``meta`` device, no memory), before the tensors are read;
3. the sha256 recorded in ``model.yaml`` is checked against the weights and, from format 2 on,
   against the metadata too, so an edited ``model.yaml`` is refused.

Every failure raises :class:`CheckpointError` with one line naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save
from torch import nn

from rkn_ros.core.checkpoint_schema import (
    FORMAT_VERSION,
    ActionsSpec,
    CheckpointError,
    CheckpointMetadata,
    InputSpec,
    Normalization,
    NormStats,
    OutputsSpec,
    TargetsSpec,
    TrainingRecord,
    metadata_from_dict,
)
from rkn_ros.core.typed_config import ConfigError, load_yaml

WEIGHTS_FILE = "model.safetensors"
METADATA_FILE = "model.yaml"
MAX_WEIGHTS_BYTES = 1 << 30  # far above any RKN (the shipped ones are under 0.5 MB)
MAX_HEADER_BYTES = 1 << 24
DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
          "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
          "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}

TensorLayout = dict[str, tuple[tuple[int, ...], torch.dtype]]  # name -> (shape, dtype)
ModelFactory = Callable[[CheckpointMetadata], nn.Module]


def metadata_digest(plain: Mapping) -> str:
    """What ``checkpoint_sha256`` records: sha256 over a ``model.yaml`` mapping as written
    (canonical JSON, without the two hash fields) and its ``weights_sha256``. It covers the
    file's content, so fields a later version adds do not change the digest of older files."""
    content = {k: v for k, v in plain.items() if k not in ("checkpoint_sha256", "weights_sha256")}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{canonical}\n{plain.get('weights_sha256', '')}".encode()).hexdigest()


def _weights_bytes(model: nn.Module) -> bytes:
    # Clone so tied or non-contiguous parameters serialise as independent, contiguous tensors.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    return safetensors_save(tensors, metadata={"format": "pt"})


def save_checkpoint(
    folder: str | Path, model: nn.Module, metadata: CheckpointMetadata | Mapping
) -> Path:
    """Write ``folder/model.safetensors`` and ``folder/model.yaml`` (format version 2).

    ``model.yaml`` records the sha256 of the weights and of metadata plus weights, so a
    tampered file of either kind is refused on load. Same model and metadata, same bytes.
    """
    folder = Path(folder)
    if not isinstance(metadata, CheckpointMetadata):
        metadata = metadata_from_dict(metadata)
    blob = _weights_bytes(model)
    metadata = dataclasses.replace(metadata, format_version=FORMAT_VERSION,
                                   weights_sha256=hashlib.sha256(blob).hexdigest())
    metadata = dataclasses.replace(metadata, checkpoint_sha256=metadata_digest(metadata.to_dict()))
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
    """Read and check ``model.yaml`` of a checkpoint (no weights are read)."""
    folder = resolve_checkpoint(path)
    meta_path = folder / METADATA_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"checkpoint {folder}: missing {METADATA_FILE}")
    try:
        data = load_yaml(meta_path)
    except ConfigError as err:
        raise CheckpointError(str(err)) from err
    return metadata_from_dict(data, source=str(meta_path))


def _header(path: Path, size: int, handle) -> TensorLayout:
    """The tensor layout the safetensors header declares, checked against the file size."""
    if size < 8:
        raise CheckpointError(f"{path}: {size} bytes, too short for a safetensors file "
                              "(truncated or corrupt)")
    length = int.from_bytes(handle.read(8), "little")
    if length > min(size - 8, MAX_HEADER_BYTES):
        raise CheckpointError(f"{path}: header declares {length} bytes, the file has "
                              f"{size - 8} after its length field (truncated or corrupt)")
    try:
        header = json.loads(handle.read(length))
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{path}: header is not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object")
    layout: TensorLayout = {}
    end = 0
    for name, entry in sorted(((k, v) for k, v in header.items() if k != "__metadata__"),
                              key=lambda kv: str(kv[1].get("data_offsets") if
                                                 isinstance(kv[1], dict) else "")):
        try:
            dtype = DTYPES[entry["dtype"]]
            shape = tuple(int(v) for v in entry["shape"])
            begin, stop = (int(v) for v in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"{path}: header entry {name!r} is malformed") from err
        count = 1
        for side in shape:
            count *= side
        if min(shape, default=1) < 0 or stop - begin != count * dtype.itemsize:
            raise CheckpointError(f"{path}: tensor {name!r} declares shape {list(shape)} "
                                  f"but {stop - begin} bytes")
        layout[name] = (shape, dtype)
        end = max(end, stop)
    if 8 + length + end != size:
        raise CheckpointError(f"{path}: tensors declare {end} bytes of data, the file has "
                              f"{size - 8 - length} (truncated or corrupt)")
    return layout


def read_weights(
    path: str | Path, metadata: CheckpointMetadata | None = None,
    expected: TensorLayout | None = None, max_bytes: int = MAX_WEIGHTS_BYTES,
) -> dict[str, torch.Tensor]:
    """Read ``model.safetensors`` into CPU tensors after checking its size and header
    (against ``expected`` names, shapes and dtypes when given) and, with ``metadata``,
    its sha256."""
    folder = resolve_checkpoint(path)
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f"checkpoint {folder}: missing {WEIGHTS_FILE}")
    try:
        size = weights_path.stat().st_size
        if size > max_bytes:
            raise CheckpointError(f"{weights_path}: {size} bytes, more than the {max_bytes} a "
                                  "checkpoint may have")
        with weights_path.open("rb") as handle:
            layout = _header(weights_path, size, handle)
            if expected is not None:
                _compare_layout(layout, expected, str(folder))
            handle.seek(0)
            blob = handle.read(size + 1)
    except OSError as err:
        raise CheckpointError(f"{weights_path}: cannot read ({err.strerror or err})") from err
    if len(blob) != size:
        raise CheckpointError(f"{weights_path}: changed size while being read")
    if metadata is not None:
        _check_integrity(metadata, hashlib.sha256(blob).hexdigest(), weights_path)
    try:
        tensors = safetensors_load(blob)
    except SafetensorError as err:
        raise CheckpointError(
            f"{weights_path}: truncated or corrupt safetensors file ({str(err).splitlines()[0]})"
        ) from err
    for key, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{weights_path}: tensor '{key}' holds NaN or inf")
    return tensors


def _check_integrity(metadata: CheckpointMetadata, digest: str, weights_path: Path) -> None:
    if metadata.weights_sha256 and digest != metadata.weights_sha256:
        raise CheckpointError(
            f"{weights_path}: sha256 {digest[:12]}... does not match {METADATA_FILE} "
            f"({metadata.weights_sha256[:12]}...): weights were modified or belong elsewhere"
        )
    if metadata.format_version >= 2:
        if not metadata.checkpoint_sha256 or not metadata.weights_sha256:
            raise CheckpointError(f"{weights_path.parent / METADATA_FILE}: checkpoint_sha256 "
                                  "and weights_sha256 are required from format_version 2")
        meta_path = weights_path.parent / METADATA_FILE
        try:
            written = load_yaml(meta_path)
        except ConfigError as err:
            raise CheckpointError(str(err)) from err
        if not isinstance(written, Mapping) or metadata_digest(written) != \
                metadata.checkpoint_sha256:
            raise CheckpointError(f"{meta_path}: checkpoint_sha256 does not match: the metadata "
                                  "was edited after saving")


def _compare_layout(have: TensorLayout, want: TensorLayout, source: str) -> None:
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"weights lack {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        if extra:
            parts.append(f"weights have unexpected {extra[:3]}{' ...' if len(extra) > 3 else ''}")
        raise CheckpointError(f"{source}: metadata does not match the weights: "
                              + "; ".join(parts))
    for key, (shape, dtype) in want.items():
        if have[key][0] != shape:
            raise CheckpointError(
                f"{source}: metadata does not match the weights: '{key}' has shape "
                f"{list(have[key][0])} in the file, the model built from the metadata needs "
                f"{list(shape)}")
        if have[key][1] != dtype:
            raise CheckpointError(f"{source}: weight '{key}' has dtype {have[key][1]}, "
                                  f"expected {dtype}")


def tensor_layout(model: nn.Module) -> TensorLayout:
    """Names, shapes and dtypes of a model's state dict (works on the ``meta`` device)."""
    return {k: (tuple(v.shape), v.dtype) for k, v in model.state_dict().items()}


def load_weights_into(
    model: nn.Module, tensors: Mapping[str, torch.Tensor], source: str = "checkpoint"
) -> None:
    """Copy ``tensors`` into ``model``; keys and shapes must match exactly (CheckpointError)."""
    _compare_layout({k: (tuple(v.shape), v.dtype) for k, v in tensors.items()},
                    tensor_layout(model), source)
    model.load_state_dict(dict(tensors), strict=True)


def _default_factory(metadata: CheckpointMetadata) -> nn.Module:
    from rkn_ros.core import build_model

    return build_model(metadata.model)


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


def check_compatible(
    metadata: CheckpointMetadata,
    sensors: Sequence[str] | None = None,
    dt: float | None = None,
    image_shape: Sequence[int] | None = None,
    joint_names: Sequence[str] | None = None,
    dt_tolerance: float = 1e-6,
    source: str = "checkpoint",
) -> None:
    """Refuse (CheckpointError) a checkpoint that does not match what the caller provides.

    ``sensors``: sensor names the caller feeds (each must be one the model has); ``dt``: the
    caller's tick in seconds; ``image_shape``: (height, width) of the caller's images;
    ``joint_names``: the caller's joint names for the model's vector sensors.
    """
    if sensors is not None:
        unknown = [name for name in sensors if name not in metadata.inputs]
        if unknown:
            raise CheckpointError(f"{source}: sensors {unknown} requested but the model has "
                                  f"{metadata.sensor_names}")
    if dt is not None and abs(float(dt) - metadata.dt) > dt_tolerance * max(1.0, metadata.dt):
        raise CheckpointError(f"{source}: dt {float(dt)} s requested but the model has "
                              f"{metadata.dt} s")
    if image_shape is not None:
        images = {n: s for n, s in metadata.inputs.items() if s.kind == "image"}
        if not images:
            raise CheckpointError(f"{source}: image_shape given but the model has no image input")
        for name, spec in images.items():
            if list(spec.shape[-2:]) != [int(v) for v in image_shape][-2:]:
                raise CheckpointError(f"{source}: image size {list(image_shape)} requested but "
                                      f"input '{name}' has {list(spec.shape[-2:])}")
    if joint_names is not None:
        have = [n for spec in metadata.inputs.values() if spec.kind == "vector"
                for n in spec.names]
        missing = [n for n in joint_names if n not in have]
        if missing:
            raise CheckpointError(f"{source}: joint names {missing} requested but the model's "
                                  f"vector inputs are {have}")


def load_checkpoint(
    path: str | Path,
    device: str | torch.device = "cpu",
    *,
    sensors: Sequence[str] | None = None,
    dt: float | None = None,
    image_shape: Sequence[int] | None = None,
    joint_names: Sequence[str] | None = None,
    model_factory: ModelFactory | None = None,
) -> tuple[nn.Module, CheckpointMetadata]:
    """Load a checkpoint folder (or its ``model.safetensors``) as ``(model, metadata)``.

    The model is rebuilt from the metadata (``rkn_ros.core.build_model`` unless
    ``model_factory`` is given), first on the ``meta`` device to check the weights file's
    header against it, then for real; it is returned in eval mode on ``device``.
    ``sensors``/``dt``/``image_shape``/``joint_names`` describe what the caller provides; a
    mismatch raises CheckpointError before any weights are read.
    """
    folder = resolve_checkpoint(path)
    metadata = read_metadata(folder)
    check_compatible(metadata, sensors=sensors, dt=dt, image_shape=image_shape,
                     joint_names=joint_names, source=str(folder))
    factory = model_factory or _default_factory
    with torch.device("meta"):
        expected = tensor_layout(factory(metadata))
    tensors = read_weights(folder, metadata, expected=expected)
    model = factory(metadata)
    load_weights_into(model, tensors, source=str(folder))
    model.eval()
    return model.to(resolve_device(device)), metadata


__all__ = [
    "FORMAT_VERSION", "METADATA_FILE", "WEIGHTS_FILE", "ActionsSpec", "CheckpointError",
    "CheckpointMetadata", "InputSpec", "NormStats", "Normalization", "OutputsSpec",
    "TargetsSpec", "TrainingRecord", "check_compatible", "load_checkpoint", "load_weights_into",
    "metadata_digest", "metadata_from_dict", "read_metadata", "read_weights",
    "resolve_checkpoint", "resolve_device", "save_checkpoint", "tensor_layout",
]
