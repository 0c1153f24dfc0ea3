"""From data sets on disk (or generated on the fly) to normalized torch tensors for training.

A :class:`TensorData` holds one data set as tensors ``[sequence, time, ...]`` on the CPU:
images stay ``uint8`` (scaled to ``[0, 1]`` per batch, saving 4x memory), vectors, targets and
actions are z-normalized with the statistics of the *training* data, which the checkpoint
stores so evaluation and the runtime apply exactly the same transform.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rkn_ros.core.checkpoint import Normalization, NormStats
from rkn_ros.core.typed_config import ConfigError, from_mapping
from rkn_ros.data.dataset import DatasetError, SequenceDataset
from rkn_ros.train.config import DataSource, GenerateSpec

MIN_STD = 1e-6


def load_source(source: DataSource, default_part: str = "train") -> SequenceDataset:
    """Generate or read the data set that ``source`` describes."""
    if source.generate is not None:
        return generate_dataset(source.generate)
    assert source.path is not None  # DataSource.check guarantees one of the two
    path = Path(source.path)
    if path.suffix == ".npz":
        return load_pam_part(path, source.pam or {}, default_part)
    return SequenceDataset.load(path)


def load_pam_part(
    path: str | Path, options: Mapping[str, Any], default_part: str
) -> SequenceDataset:
    """One part (``train``, ``validation`` or ``all``) of a PAM-format ``.npz``.

    ``options`` are :class:`rkn_ros.data.pam.PamConfig` fields plus ``part``.
    """
    from rkn_ros.data.pam import PamConfig, load_pam

    options = dict(options)
    part = options.pop("part", default_part)
    if part not in ("train", "validation", "all"):
        raise ConfigError(f"pam.part: expected train, validation or all, got {part!r}")
    if part == "all":
        options["validation_fraction"] = 0.0
    config = from_mapping(PamConfig, options, "pam")
    train, validation = load_pam(path, config)
    return validation if part == "validation" else train


def generate_dataset(spec: GenerateSpec | Mapping[str, Any]) -> SequenceDataset:
    """Generate the data set ``spec`` (or its recipe mapping) describes, deterministic in its
    seed; ConfigError names a bad key."""
    from rkn_ros.data import generate

    if not isinstance(spec, GenerateSpec):
        spec = from_mapping(GenerateSpec, spec, "generate")

    budget = {} if spec.memory_budget_mb is None else {
        "memory_budget": spec.memory_budget_mb * 2**20}
    if spec.generator in generate.PENDULUM_KINDS:
        if spec.config:
            base = generate.load_pendulum_config(_repo_path(spec.config), spec.generator)
        else:
            base = generate.default_pendulum_config(spec.generator)
        config = generate.PendulumConfig(
            physics=from_mapping(type(base.physics),
                                 {**base.physics.to_dict(), **(spec.physics or {})}, "physics"),
            render=from_mapping(type(base.render),
                                {**base.render.to_dict(), **(spec.render or {})}, "render"),
            noise=base.noise if spec.noise is None else spec.noise,
            drop_prob=base.drop_prob if spec.drop_prob is None else spec.drop_prob,
            sensors=base.sensors if spec.sensors is None
            else dataclasses.replace(base.sensors, sensors=tuple(spec.sensors)),
        )
        return generate.generate_pendulum(spec.generator, config, spec.num_sequences,
                                          spec.steps, spec.seed, **budget)
    from rkn_ros.sim.pneumatic import PneumaticParams

    params = (generate.load_pneumatic_params(_repo_path(spec.config)) if spec.config
              else PneumaticParams())
    return generate.generate_pneumatic(params, spec.num_sequences, spec.steps, spec.seed,
                                       drop_prob=spec.drop_prob or 0.0, **budget)


def _repo_path(path: str) -> Path:
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return Path(__file__).resolve().parents[2] / candidate


# ---------------------------------------------------------------------- normalization
def _stats(values: np.ndarray, mask: np.ndarray | None = None,
           given: Mapping[str, Any] | None = None) -> NormStats:
    """Mean, std (``given`` ones when the data set ships them), min and max per column."""
    flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
    if mask is not None:
        flat = flat[mask.reshape(-1)]
    if flat.shape[0] == 0:
        raise DatasetError("cannot compute normalization statistics: no valid rows")
    if given:
        mean, std = np.asarray(given["mean"]), np.asarray(given["std"])
    else:
        mean = flat.mean(axis=0)
        std = flat.std(axis=0)
        std[std < MIN_STD] = 1.0
    return NormStats(mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
                     min=tuple(float(v) for v in flat.min(axis=0)),
                     max=tuple(float(v) for v in flat.max(axis=0)))


def is_sincos(target_names: list[str]) -> bool:
    """Targets are (sin, cos) pairs of angles (names ``sin_*``, ``cos_*`` alternating)."""
    names = [str(n).lower() for n in target_names]
    if not names or len(names) % 2:
        return False
    pairs = zip(names[0::2], names[1::2], strict=True)
    return all({a[:3], b[:3]} == {"sin", "cos"} and a[4:] == b[4:] for a, b in pairs)


def compute_normalization(dataset: SequenceDataset, normalize_targets: bool = True
                          ) -> Normalization:
    """Statistics of the training data (the checkpoint's ``normalization``), in raw units.

    Vector inputs use valid rows only. Sin/cos targets are not scaled (they are already
    bounded and the runtime decodes angles from them); other targets are z-normalized. Each
    record also keeps the training min and max, which range checks downstream compare with.
    """
    meta = dataset.metadata
    given = meta.get("normalization") or {}
    inputs = {}
    for sensor, spec in meta["inputs"].items():
        if spec["kind"] != "vector":
            continue
        valid = dataset.arrays[spec["valid"]] if spec.get("valid") else None
        inputs[sensor] = _stats(dataset.arrays[spec["array"]], valid,
                                (given.get("inputs") or {}).get(sensor))
    targets = dataset.arrays[meta["targets"]["array"]]
    target_stats = _stats(targets, None, given.get("targets"))
    if not normalize_targets or is_sincos(meta["targets"].get("names", [])):
        dim = targets.shape[-1]
        target_stats = dataclasses.replace(target_stats, mean=(0.0,) * dim, std=(1.0,) * dim)
    actions = None
    if meta.get("actions"):
        actions = _stats(dataset.arrays[meta["actions"]["array"]], None, given.get("actions"))
    return Normalization(inputs=inputs, targets=target_stats, actions=actions)


def _apply(values: np.ndarray, stats: NormStats, what: str) -> np.ndarray:
    mean = np.asarray(stats.mean, dtype=np.float32)
    std = np.asarray(stats.std, dtype=np.float32)
    if mean.shape[-1] != values.shape[-1] or std.shape[-1] != values.shape[-1]:
        raise DatasetError(
            f"{what}: data have {values.shape[-1]} columns but the normalization has "
            f"{mean.shape[-1]}"
        )
    return ((values - mean) / std).astype(np.float32)


@dataclasses.dataclass
class TensorData:
    """A data set as CPU tensors, normalized; index with :meth:`batch`.

    ``observations[name]``: images ``uint8 [S, T, (C,) H, W]`` or vectors ``float [S, T, d]``;
    ``valid[name]``: ``bool [S, T]``; ``targets`` ``[S, T, D]`` (normalized);
    ``target_valid`` ``bool [S, T]``; ``actions`` ``[S, T, A]`` or None;
    ``clean_images`` ``uint8`` (imputation target) or None.
    """

    observations: dict[str, torch.Tensor]
    valid: dict[str, torch.Tensor]
    targets: torch.Tensor
    target_valid: torch.Tensor
    actions: torch.Tensor | None
    clean_images: torch.Tensor | None

    @property
    def num_sequences(self) -> int:
        return int(self.targets.shape[0])

    def batch(
        self, index: torch.Tensor, device: torch.device
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor, torch.Tensor,
               torch.Tensor | None, torch.Tensor | None]:
        """(observations in [0, 1] / normalized, valid, targets, target_valid, actions, clean)."""
        obs = {}
        for name, tensor in self.observations.items():
            part = tensor[index].to(device)
            obs[name] = part.float() / 255.0 if part.dtype == torch.uint8 else part
        valid = {name: v[index].to(device) for name, v in self.valid.items()}
        actions = None if self.actions is None else self.actions[index].to(device)
        clean = None
        if self.clean_images is not None:
            clean = self.clean_images[index].to(device).float() / 255.0
        return (
            obs,
            valid,
            self.targets[index].to(device),
            self.target_valid[index].to(device),
            actions,
            clean,
        )


def to_tensors(dataset: SequenceDataset, normalization: Normalization,
               sensors: list[str] | None = None) -> TensorData:
    """Normalize ``dataset`` with ``normalization`` (the checkpoint's) into a TensorData.

    ``sensors``: the model's sensors in order (default: the data set's); each must exist in
    the data set with the same kind.
    """
    meta = dataset.metadata
    arrays = dataset.arrays
    inputs = meta["inputs"]
    names = sensors if sensors is not None else list(inputs)
    S, T = dataset.num_sequences, dataset.sequence_length
    observations: dict[str, torch.Tensor] = {}
    valid: dict[str, torch.Tensor] = {}
    for name in names:
        if name not in inputs:
            raise DatasetError(f"data set has no input {name!r} (it has {list(inputs)})")
        spec = inputs[name]
        values = arrays[spec["array"]]
        mask = arrays[spec["valid"]] if spec.get("valid") else np.ones((S, T), dtype=bool)
        if spec["kind"] == "image":
            observations[name] = torch.from_numpy(np.ascontiguousarray(values))
        else:
            stats = normalization.input(name, values.shape[-1])
            scaled = _apply(values, stats, f"input {name!r}")
            scaled[~mask] = 0.0  # invalid rows must be finite zeros, never NaN
            observations[name] = torch.from_numpy(scaled)
        valid[name] = torch.from_numpy(np.ascontiguousarray(mask))
    tmeta = meta["targets"]
    raw_targets = arrays[tmeta["array"]]
    targets = _apply(raw_targets, normalization.target(raw_targets.shape[-1]), "targets")
    target_valid = (
        arrays[tmeta["valid"]] if tmeta.get("valid") else np.ones((S, T), dtype=bool)
    )
    actions = None
    if meta.get("actions"):
        raw = arrays[meta["actions"]["array"]]
        actions = torch.from_numpy(_apply(raw, normalization.action(raw.shape[-1]), "actions"))
    clean = arrays.get("images_clean")
    return TensorData(
        observations=observations,
        valid=valid,
        targets=torch.from_numpy(targets),
        target_valid=torch.from_numpy(np.ascontiguousarray(target_valid)),
        actions=actions,
        clean_images=None if clean is None else torch.from_numpy(np.ascontiguousarray(clean)),
    )
