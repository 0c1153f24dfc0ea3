"""A run's resumable state (``DIR/last/``): progress, the optimizer without pickle, and what
a finished run reports."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import torch

from rkn_ros.core.checkpoint import CheckpointError

STATE_FILE = "training_state.yaml"
OPTIMIZER_FILE = "optimizer.safetensors"


@dataclasses.dataclass
class TrainResult:
    """What a finished (or stopped) run produced."""

    out_dir: Path
    epochs_done: int
    steps: int
    best_val_nll: float
    # "epochs" | "early_stopping" | "max_steps" | "max_time" | "time_budget" | "diverged"
    stopped: str
    best_epoch: int  # the epoch whose model was kept (0: none finished)
    validation_sequences: int

    def warnings(self) -> list[str]:
        """What a user should hear about the run, beyond its numbers."""
        if self.stopped == "early_stopping" and self.best_epoch == 1:
            return [
                f"the validation NLL was best after the first epoch and did not improve in the "
                f"{self.epochs_done - 1} after it, so the model kept is the first epoch's. On a "
                f"validation set of {self.validation_sequences} sequences that may be noise: "
                "give a larger one (data.validation, data.validation_fraction) or raise "
                "training.early_stopping_patience. If train_nll in log.csv rose as well, "
                "training.lr is too high"
            ]
        return []


def resume_state_folder(resume: Path) -> Path:
    """The folder with the training state that ``--resume`` names: a training output folder's
    ``last/``, that ``last/`` itself, a file in it, or a copy of it kept elsewhere."""
    folder = resume.parent if resume.is_file() else resume
    if not (folder / STATE_FILE).exists() and (folder / "last" / STATE_FILE).exists():
        folder = folder / "last"
    if not (folder / STATE_FILE).exists():
        raise CheckpointError(
            f"resume: {resume} holds no {STATE_FILE} (give a training output folder or its "
            "last/ folder)"
        )
    return folder


def resume_run_folder(resume: Path) -> Path | None:
    """The training output folder ``--resume`` continues, or None for a state kept elsewhere."""
    state = resume_state_folder(resume)
    return state.parent if state.name == "last" else None


def plain_floats(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: plain_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_floats(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return 1e300
    return value


def flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Adam state as named tensors (for safetensors) plus a YAML-able layout; no pickle."""
    state_dict = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for param_id, entries in state_dict["state"].items():
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{param_id}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(param_id), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, torch.Tensor], layout: dict,
                         device: torch.device) -> dict:
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        param_id, key = name.split(".", 1)
        state.setdefault(int(param_id), {})[key] = tensor.to(device) if key != "step" else tensor
    for param_id, entries in (layout.get("scalars") or {}).items():
        state.setdefault(int(param_id), {}).update(entries)
    groups = []
    for group in layout["param_groups"]:
        group = dict(group)
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
        groups.append(group)
    return {"state": state, "param_groups": groups}
