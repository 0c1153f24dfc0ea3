"""Evaluation of a trained model on a data set, in the data's own units.

Metrics (the paper's definitions):

- ``log_likelihood``: negated Gaussian NLL ``0.5 (log 2 pi + log var + (y - mu)^2 / var)``,
  summed over output dimensions, averaged over valid time steps and sequences;
- ``rmse`` over all elements; ``coverage_1sigma`` / ``coverage_2sigma``: share of errors inside
  1 and 2 standard deviations; ``calibration_histogram``: normalized errors ``(y - mu) / sigma``
  binned against the N(0, 1) probabilities of the same bins;
- ``angle_rmse`` (radians, wrapped) for sin/cos models: the quantity the estimator node reports;
- ``rmse_by_horizon`` for forward-prediction models (targets are next values): observations up
  to a context step ``c`` are given, later ones hidden (the actions stay known), and the output
  at ``c + k - 1`` is the ``k``-step-ahead prediction of step ``c + k``;
- ``bernoulli_log_likelihood`` for models with an image decoder (imputation): negated binary
  cross-entropy of the clean images summed over pixels, averaged over time and sequences.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rkn_ros.core.checkpoint import CheckpointMetadata, NormStats
from rkn_ros.core.decode import sincos_pairs
from rkn_ros.data.dataset import DatasetError, SequenceDataset
from rkn_ros.train.data import TensorData, to_tensors

HORIZONS = (1, 3, 5, 7, 10)
HIST_EDGES = tuple(float(v) for v in np.linspace(-4.0, 4.0, 17))
LOG_2PI = math.log(2.0 * math.pi)


def _batches(n: int, size: int) -> list[torch.Tensor]:
    return [torch.arange(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
def predict(model: torch.nn.Module, data: TensorData, device: torch.device,
            batch_size: int = 100, valid_override: dict[str, torch.Tensor] | None = None,
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Run the model over all sequences: means, variances ``[S, T, D]`` (normalized units)
    and decoded images (or None), on the CPU."""
    model.eval()
    means, variances, images = [], [], []
    for index in _batches(data.num_sequences, batch_size):
        obs, valid, _, _, actions, _ = data.batch(index, device)
        if valid_override is not None:
            valid = {k: v[index].to(device) for k, v in valid_override.items()}
        out = model(obs, valid, actions=actions)
        means.append(out.mean.float().cpu())
        variances.append(out.var.float().cpu())
        if getattr(out, "image", None) is not None:
            images.append(out.image.float().cpu())
    return torch.cat(means), torch.cat(variances), (torch.cat(images) if images else None)


@torch.no_grad()
def quick_metrics(model: torch.nn.Module, data: TensorData, device: torch.device,
                  loss: str = "gaussian") -> dict[str, float]:
    """Validation metrics in normalized units (for early stopping and the progress bar)."""
    mean, var, image = predict(model, data, device)
    mask = data.target_valid
    if loss == "bernoulli" and image is not None and data.clean_images is not None:
        nll = _bernoulli_nll(image, data.clean_images.float() / 255.0)
    else:
        nll = float(_gaussian_nll_per_step(mean, var, data.targets)[mask].mean())
    err = (mean - data.targets)[mask]
    z = err / var[mask].sqrt()
    return {
        "nll": nll,
        "rmse": float(err.pow(2).mean().sqrt()),
        "coverage_2sigma": float((z.abs() <= 2).float().mean()),
    }


def _gaussian_nll_per_step(mean: torch.Tensor, var: torch.Tensor, target: torch.Tensor
                           ) -> torch.Tensor:
    """NLL summed over the last dim: ``[S, T, D] -> [S, T]``."""
    var = var.double()
    return (0.5 * (LOG_2PI + var.log() + (target.double() - mean.double()) ** 2 / var)).sum(-1)


def _bernoulli_nll(probs: torch.Tensor, target: torch.Tensor) -> float:
    """Binary cross-entropy summed over pixels, averaged over time and sequences."""
    p = probs.double().clamp(1e-7, 1 - 1e-7)
    t = target.double()
    per_pixel = -(t * p.log() + (1 - t) * (1 - p).log())
    return float(per_pixel.flatten(2).sum(-1).mean())


def check_compatible(metadata: CheckpointMetadata, dataset: SequenceDataset) -> None:
    """The data set must offer the model's sensors, target size and actions (DatasetError)."""
    meta = dataset.metadata
    for name, spec in metadata.inputs.items():
        if name not in meta["inputs"]:
            raise DatasetError(
                f"data set has no input {name!r} that the checkpoint needs "
                f"(data inputs: {list(meta['inputs'])})"
            )
        have = list(dataset.arrays[meta["inputs"][name]["array"]].shape[2:])
        if have != list(spec.shape):
            raise DatasetError(
                f"input {name!r}: data set has shape {have}, the checkpoint expects "
                f"{list(spec.shape)}"
            )
    target_dim = metadata.model.output_dim
    have_dim = int(dataset.arrays[meta["targets"]["array"]].shape[-1])
    if have_dim != target_dim:
        raise DatasetError(f"targets: data set has {have_dim} columns, the checkpoint {target_dim}")
    if metadata.model.action_dim > 0 and not meta.get("actions"):
        raise DatasetError("the checkpoint is action-conditioned but the data set has no actions")
    if abs(float(meta["dt"]) - metadata.dt) > 1e-9:
        raise DatasetError(f"dt: data set has {meta['dt']} s, the checkpoint {metadata.dt} s")


def _denormalize(mean: torch.Tensor, var: torch.Tensor, stats: NormStats
                 ) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(stats.mean, dtype=np.float64)
    sd = np.asarray(stats.std, dtype=np.float64)
    return mean.double().numpy() * sd + mu, var.double().numpy() * sd**2


def _gaussian_report(mean: np.ndarray, var: np.ndarray, target: np.ndarray, mask: np.ndarray
                     ) -> dict[str, Any]:
    nll = 0.5 * (LOG_2PI + np.log(var) + (target - mean) ** 2 / var)
    err = (target - mean)[mask]
    z = err / np.sqrt(var[mask])
    counts, _ = np.histogram(z.reshape(-1), bins=np.asarray(HIST_EDGES))
    expected = [
        0.5 * (math.erf(b / math.sqrt(2)) - math.erf(a / math.sqrt(2)))
        for a, b in itertools.pairwise(HIST_EDGES)
    ]
    return {
        "log_likelihood": float(-nll.sum(-1)[mask].mean()),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "coverage_1sigma": float(np.mean(np.abs(z) <= 1.0)),
        "coverage_2sigma": float(np.mean(np.abs(z) <= 2.0)),
        "rmse_per_output": [float(v) for v in np.sqrt(np.mean(err**2, axis=0))],
        "calibration_histogram": {
            "edges": list(HIST_EDGES),
            "observed": [float(c) / max(1, z.size) for c in counts],
            "expected_normal": expected,
            "outside": float(np.mean(np.abs(z) > HIST_EDGES[-1])),
        },
    }


def _horizon_rmse(model, data: TensorData, device, stats: NormStats, target: np.ndarray,
                  keep_first: int, horizons: Sequence[int]) -> dict[str, float]:
    T = target.shape[1]
    h_max = max(horizons)
    last = T - h_max  # the context step c needs c + h_max - 1 <= T - 1
    first = max(keep_first - 1, 0)
    if last < first:
        raise DatasetError(
            f"sequences of {T} steps are too short for {h_max}-step-ahead prediction"
        )
    contexts = sorted({first, (first + last) // 2, last})
    squared = {h: [] for h in horizons}
    for c in contexts:
        override = {}
        for name, mask in data.valid.items():
            hidden = mask.clone()
            hidden[:, c + 1:] = False
            override[name] = hidden
        mean, var, _ = predict(model, data, device, valid_override=override)
        mu, _ = _denormalize(mean, var, stats)
        for h in horizons:
            squared[h].append((mu[:, c + h - 1] - target[:, c + h - 1]) ** 2)
    return {str(h): float(np.sqrt(np.mean(np.concatenate(squared[h])))) for h in horizons}


def _angles(values: np.ndarray, sin_idx: np.ndarray, cos_idx: np.ndarray) -> np.ndarray:
    return np.arctan2(values[..., sin_idx], values[..., cos_idx])


def evaluate(model: torch.nn.Module, metadata: CheckpointMetadata, dataset: SequenceDataset,
             device: torch.device | str = "cpu", plots: str | Path | None = None,
             horizons: Sequence[int] = HORIZONS) -> dict[str, Any]:
    """Full report (see the module docstring) on ``dataset``, applying the checkpoint's
    normalization. ``plots``: folder for PNG figures."""
    device = torch.device(device)
    check_compatible(metadata, dataset)
    sensors = list(metadata.inputs)
    data = to_tensors(dataset, metadata.normalization, sensors)
    mean_n, var_n, image = predict(model, data, device)
    tstats = metadata.normalization.target(metadata.model.output_dim)
    mean, var = _denormalize(mean_n, var_n, tstats)
    tmeta = dataset.metadata["targets"]
    target = dataset.arrays[tmeta["array"]].astype(np.float64)
    mask = data.target_valid.numpy()
    report: dict[str, Any] = {
        "checkpoint": metadata.name,
        "data_hash": dataset.content_hash(),
        "num_sequences": int(target.shape[0]),
        "sequence_length": int(target.shape[1]),
        **_gaussian_report(mean, var, target, mask),
        "output_names": list(tmeta.get("names", [])),
    }
    if metadata.outputs.kind == "sincos":
        n = target.shape[-1] - len(metadata.outputs.names)  # angles from 2n of the targets
        sin_idx, cos_idx = sincos_pairs(tmeta.get("names", []), n)
        diff = _angles(mean, sin_idx, cos_idx) - _angles(target, sin_idx, cos_idx)
        wrapped = (diff + math.pi) % (2 * math.pi) - math.pi
        report["angle_rmse"] = float(np.sqrt(np.mean(wrapped[mask] ** 2)))
    if tmeta.get("kind") == "next":
        keep_first = int(dataset.metadata.get("parameters", {}).get("keep_first", 5))
        report["rmse_by_horizon"] = _horizon_rmse(
            model, data, device, tstats, target, keep_first, horizons
        )
    if image is not None and data.clean_images is not None:
        report["bernoulli_log_likelihood"] = -_bernoulli_nll(
            image, data.clean_images.float() / 255.0
        )
    if plots is not None:
        from rkn_ros.train.plots import plot_report

        plot_report(Path(plots), report, mean, var, target, list(tmeta.get("names", [])), mask)
    return report


def write_json(report: dict[str, Any], path: str | Path) -> None:
    """Write the report with sorted keys (same report, same bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def load_data(path: str | Path, metadata: CheckpointMetadata | None = None,
              pam_part: str = "all") -> SequenceDataset:
    """A generated data-set folder or any PAM-format ``.npz`` (windowed like the checkpoint's
    training data, all episodes unless ``pam_part`` says otherwise)."""
    from rkn_ros.train.data import load_pam_part

    path = Path(path)
    if path.suffix == ".npz":
        options: dict[str, Any] = {}
        if metadata is not None:
            params = metadata.training.data_parameters
            for key in ("window", "include_pressures", "targets", "seed", "keep_first",
                        "validation_fraction"):
                if key in params:
                    options[key] = params[key]
        options["part"] = pam_part
        return load_pam_part(path, options, pam_part)
    if not path.exists():
        raise DatasetError(f"data {path} does not exist")
    return SequenceDataset.load(path)
