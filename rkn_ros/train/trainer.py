"""Train a model from a recipe: Adam, gradient-norm clipping, early stopping, resume, CSV log.

Output folder layout (``--out DIR``, default ``runs/<name>``)::

    DIR/model.safetensors, DIR/model.yaml   best model so far (lowest validation NLL)
    DIR/last/                               last state: weights, optimizer, progress (resume)
    DIR/log.csv                             one row per epoch: losses and validation metrics

Determinism: the model is initialized from ``seed``; epoch ``e`` shuffles with
``numpy.random.default_rng([seed, e])`` and draws its observation drops from the same stream,
and batch ``b`` draws its observation drops from ``default_rng([seed, e, b])``, so a run
stopped anywhere (``max_steps``) and resumed sees exactly the batches it would have seen.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors
from tqdm import tqdm

from rkn_ros import __version__
from rkn_ros.core import build_model
from rkn_ros.core.checkpoint import (
    CheckpointError,
    CheckpointMetadata,
    metadata_from_dict,
    read_weights,
    resolve_device,
    save_checkpoint,
)
from rkn_ros.core.config import ModelConfig, SensorSpec
from rkn_ros.core.typed_config import load_yaml
from rkn_ros.data.dataset import DatasetError, SequenceDataset
from rkn_ros.train import evaluation
from rkn_ros.train.allocator import keep_freed_memory
from rkn_ros.train.config import RecipeConfig, _listless
from rkn_ros.train.data import TensorData, compute_normalization, is_sincos, load_source, to_tensors

STATE_FILE = "training_state.yaml"
OPTIMIZER_FILE = "optimizer.safetensors"
LOG_FILE = "log.csv"
LOG_FIELDS = ("epoch", "step", "train_nll", "val_nll", "val_rmse", "val_coverage_2sigma", "seconds")


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


def recipe_warnings(recipe: RecipeConfig, train: SequenceDataset) -> list[str]:
    """What in a recipe, given its training data, trains a model other than the user means."""
    warnings = []
    cfg = recipe.training
    targets = train.metadata.get("targets", {})
    copies_input = targets.get("kind") == "joints" and "joints" in train.metadata["inputs"]
    if copies_input and cfg.observation_drop == 0.0 and cfg.drop_gap == 0:
        warnings.append(
            "the targets are the joint readings the model also takes as input (a bag imported "
            "without a truth topic); with training.observation_drop 0 it learns to copy them "
            "and never to estimate them without them. Set observation_drop (e.g. 0.5, "
            "keep_first 5) and drop_gap (e.g. 40)"
        )
    after_kept = train.sequence_length - cfg.keep_first
    if cfg.drop_gap and after_kept <= 0:
        warnings.append(
            f"training.keep_first {cfg.keep_first} keeps every step of the "
            f"{train.sequence_length}-step training sequences: drop_gap hides none. Lower "
            "keep_first or train on longer windows"
        )
    elif cfg.drop_gap > after_kept:
        warnings.append(
            f"training.drop_gap {cfg.drop_gap} is longer than the {after_kept} steps "
            f"after keep_first {cfg.keep_first} in the {train.sequence_length}-step training "
            "sequences: outages are cut at the sequence's end, so none is as long as drop_gap. "
            "Lower drop_gap or train on longer windows"
        )
    if cfg.batch_size > train.num_sequences:
        warnings.append(
            f"training.batch_size {cfg.batch_size} is more than the {train.num_sequences} "
            "training sequences: one optimiser step per epoch. Lower batch_size, or cut the "
            "recordings into more sequences (rkn-ros bag import --window)"
        )
    return warnings


def model_config_for(recipe: RecipeConfig, dataset: SequenceDataset) -> ModelConfig:
    """The recipe's model section completed with the data set's sensors, targets, actions."""
    meta = dataset.metadata
    sensors = []
    for name, spec in meta["inputs"].items():
        array = dataset.arrays[spec["array"]]
        shape = tuple(int(v) for v in array.shape[2:])
        sensors.append(SensorSpec(name=name, kind=spec["kind"], shape=shape))
    output_dim = int(dataset.arrays[meta["targets"]["array"]].shape[-1])
    action_dim = 0
    if meta.get("actions"):
        # ac-RKN shifts its predicted mean; LSTM/GRU get the action as an extra input.
        action_dim = int(dataset.arrays[meta["actions"]["array"]].shape[-1])
    return ModelConfig(
        sensors=tuple(sensors), output_dim=output_dim, action_dim=action_dim,
        **_listless(recipe.model),
    )


def outputs_for(dataset: SequenceDataset, kind: str = "auto") -> dict:
    """The checkpoint's ``outputs`` entry: names, units and how targets map to joint states."""
    targets = dataset.metadata["targets"]
    names = [str(n) for n in targets.get("names", [])]
    units = [str(u) for u in targets.get("units", ["1"] * len(names))]
    sincos = is_sincos(names) if kind == "auto" else kind == "sincos"
    if sincos:
        angles = [names[i][4:] for i in range(0, len(names), 2)]
        # Name the angles as the truth (and the simulator's joint states) do, when known.
        truth_names = (dataset.metadata.get("truth") or {}).get("names")
        if isinstance(truth_names, list) and len(truth_names) == len(angles):
            angles = [str(n) for n in truth_names]
        return {"names": angles, "units": ["rad"] * len(angles), "kind": "sincos"}
    truth_names = (dataset.metadata.get("truth") or {}).get("names")
    n = len(truth_names) if isinstance(truth_names, list) else 0
    if n and units == ["rad"] * n + ["rad/s"] * n:
        # Angle and velocity of the truth's joints: name them as the joint states do.
        names = [str(j) for j in truth_names] + [f"{j}_velocity" for j in truth_names]
    elif all(name.endswith("_next") for name in names):
        # Forward prediction of the next value of each joint: the joint's own name.
        names = [name[: -len("_next")] for name in names]
    return {"names": names, "units": units, "kind": "direct"}


def _input_entries(dataset: SequenceDataset) -> dict:
    entries = {}
    for name, spec in dataset.metadata["inputs"].items():
        entry = {k: v for k, v in spec.items() if k not in ("array", "valid")}
        entry["shape"] = [int(v) for v in dataset.arrays[spec["array"]].shape[2:]]
        entries[name] = entry
    return entries


def build_metadata(
    recipe: RecipeConfig, config: ModelConfig, train: SequenceDataset, normalization: dict,
    metrics: dict | None = None, training: dict | None = None,
) -> CheckpointMetadata:
    """Checkpoint metadata for a model trained on ``train``."""
    meta = train.metadata
    actions = meta.get("actions")
    return metadata_from_dict(dict(
        name=recipe.name,
        model=config.to_dict(),
        dt=float(meta["dt"]),
        inputs=_input_entries(train),
        targets={k: v for k, v in meta["targets"].items() if k not in ("array", "valid")},
        outputs=outputs_for(train, recipe.output_kind),
        actions=None if not actions else {k: v for k, v in actions.items() if k != "array"},
        normalization=normalization,
        data_hash=train.content_hash(),
        metrics=metrics or {},
        training={
            "recipe": recipe.portable_dict(),
            "data_generator": meta.get("generator"),
            "data_parameters": meta.get("parameters", {}),
            "rkn_ros_version": __version__,
            **(training or {}),
        },
    ))


def drop_observations(valid: dict[str, torch.Tensor], rate: float, keep_first: int,
                      rng: np.random.Generator, gap: int = 0) -> dict[str, torch.Tensor]:
    """Hide a random share ``rate`` of the valid observations ``[batch, time]`` (each sensor
    its own), and with ``gap`` > 0 one run of 1 to ``gap`` consecutive steps per sequence, the
    same steps for every sensor (an outage); the first ``keep_first`` steps are kept."""
    if rate <= 0 and gap <= 0:
        return valid
    keep = {name: rng.random(tuple(mask.shape)) >= rate for name, mask in valid.items()}
    batch, steps = next(iter(valid.values())).shape[:2]
    if gap > 0 and steps > keep_first:
        lengths = rng.integers(1, gap + 1, size=batch)
        starts = rng.integers(keep_first, steps, size=batch)
        time_index = np.arange(steps)
        outage = (time_index >= starts[:, None]) & (time_index < (starts + lengths)[:, None])
        keep = {name: kept & ~outage for name, kept in keep.items()}
    out = {}
    for name, mask in valid.items():
        kept = torch.from_numpy(keep[name]).to(mask.device)
        kept[:, :keep_first] = True
        out[name] = mask & kept
    return out


def batch_loss(model: torch.nn.Module, data: TensorData, index: torch.Tensor,
               device: torch.device, loss_kind: str,
               valid_override: Callable[[dict], dict] | None = None) -> torch.Tensor:
    """The training loss of one batch (Gaussian NLL of the targets, or Bernoulli of images)."""
    from rkn_ros.core.losses import bernoulli_nll, gaussian_nll

    obs, valid, targets, target_valid, actions, clean = data.batch(index, device)
    if valid_override is not None:
        valid = valid_override(valid)
    out = model(obs, valid, actions=actions)
    if loss_kind == "bernoulli":
        if out.image is None or clean is None:
            raise ValueError(
                "training.loss bernoulli needs model.image_decoder: true and images_clean data"
            )
        return bernoulli_nll(out.image, clean)
    return gaussian_nll(out.mean, out.var, targets, mask=target_valid)


class Trainer:
    """Runs one recipe; see the module docstring for the output folder."""

    def __init__(self, recipe: RecipeConfig, out_dir: str | Path, device: str = "auto",
                 resume: str | Path | None = None, show_progress: bool = True,
                 time_budget_s: float | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        """``time_budget_s``: stop this invocation (resumable, like ``max_steps``) after so many
        seconds, unlike ``training.max_time_s`` which bounds the whole run. ``warn`` hears
        :func:`recipe_warnings` before training starts (default: the ``logging`` module)."""
        self.recipe = recipe
        self.warn = warn or logging.getLogger(__name__).warning
        self.time_budget_s = time_budget_s
        self.out_dir = Path(out_dir)
        self.device = resolve_device(device)
        self.resume = Path(resume) if resume is not None else None
        self.show_progress = show_progress

    # ------------------------------------------------------------------ data and model
    def _load_data(self) -> tuple[SequenceDataset, SequenceDataset, SequenceDataset | None]:
        data = self.recipe.data
        train = load_source(data.train, "train")
        if data.validation is not None:
            validation = load_source(data.validation, "validation")
        elif data.train.path is not None and data.train.path.endswith(".npz"):
            # PAM files split by episode, so no window of one episode leaks across.
            validation = load_source(
                dataclasses.replace(
                    data.train, pam={**(data.train.pam or {}), "part": "validation"}
                ), "validation"
            )
        else:
            train, validation = train.split(data.validation_fraction, data.split_seed)
            if validation.num_sequences == 0:
                # one recording imported without --window is one sequence: nothing to split
                raise DatasetError(
                    f"data.validation_fraction {data.validation_fraction} of "
                    f"{train.num_sequences} training sequence(s) leaves no validation sequence: "
                    "give data.validation a data set of its own, or more sequences "
                    "(rkn-ros bag import --window T cuts recordings into sequences)"
                )
        test = load_source(data.test, "validation") if data.test is not None else None
        return train, validation, test

    def run(self) -> TrainResult:
        recipe = self.recipe
        cfg = recipe.training
        torch.set_num_threads(cfg.num_threads)
        if self.device.type == "cpu":
            keep_freed_memory()
        torch.manual_seed(recipe.seed)
        train_ds, val_ds, test_ds = self._load_data()
        model_config = model_config_for(recipe, train_ds)
        for warning in recipe_warnings(recipe, train_ds):
            self.warn(warning)
        normalization = compute_normalization(train_ds, cfg.normalize_targets)
        sensors = [s.name for s in model_config.sensors]
        train = to_tensors(train_ds, normalization, sensors)
        val = to_tensors(val_ds, normalization, sensors)
        model = build_model(model_config).to(self.device)
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        progress = {"epoch": 0, "batch": 0, "step": 0, "best_val_nll": math.inf,
                    "bad_epochs": 0, "elapsed_s": 0.0}
        if self.resume is not None:
            progress = self._restore(model, optimizer, model_config)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.out_dir / LOG_FILE
        if progress["epoch"] == 0 or not log_path.exists():
            with log_path.open("w", newline="") as handle:
                csv.writer(handle).writerow(LOG_FIELDS)

        def metadata_for(metrics: dict) -> CheckpointMetadata:
            return build_metadata(
                recipe, model_config, train_ds, normalization, metrics,
                {"epochs": progress["epoch"], "steps": progress["step"]},
            )

        n = train.num_sequences
        batches_per_epoch = max(1, math.ceil(n / cfg.batch_size))
        stopped = "epochs"
        session_start = time.monotonic()
        start = session_start - progress["elapsed_s"]
        bar = tqdm(total=cfg.epochs * batches_per_epoch,
                   initial=progress["epoch"] * batches_per_epoch + progress["batch"],
                   desc=recipe.name, disable=not self.show_progress, dynamic_ncols=True)
        val_text = ""
        while progress["epoch"] < cfg.epochs:
            epoch = progress["epoch"]
            order = torch.from_numpy(np.random.default_rng([recipe.seed, epoch]).permutation(n))
            model.train()
            running, count = 0.0, 0
            interrupted = False
            for b in range(progress["batch"], batches_per_epoch):
                index = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                rng = np.random.default_rng([recipe.seed, epoch, b])
                loss = batch_loss(
                    model, train, index, self.device, cfg.loss,
                    functools.partial(drop_observations, rate=cfg.observation_drop,
                                      keep_first=cfg.keep_first, rng=rng, gap=cfg.drop_gap),
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                optimizer.step()
                progress["step"] += 1
                running += float(loss.detach())
                count += 1
                bar.update(1)
                if count % cfg.log_every == 0 or b == batches_per_epoch - 1:
                    bar.set_postfix_str(f"loss {running / count:.4f}{val_text}")
                progress["batch"] = b + 1
                if cfg.max_steps is not None and progress["step"] >= cfg.max_steps:
                    interrupted, stopped = True, "max_steps"
                    break
                if cfg.max_time_s is not None and time.monotonic() - start > cfg.max_time_s:
                    interrupted, stopped = True, "max_time"
                    break
                if (self.time_budget_s is not None
                        and time.monotonic() - session_start > self.time_budget_s):
                    interrupted, stopped = True, "time_budget"
                    break
            if interrupted:
                # Mid-epoch: --resume continues with batch progress["batch"] of this epoch.
                progress["elapsed_s"] = time.monotonic() - start
                self._save_last(model, optimizer, progress, metadata_for({}))
                if not (self.out_dir / "model.yaml").exists():
                    self._save_best(model, val, val_ds, normalization, metadata_for)
                break
            progress["epoch"] += 1
            progress["batch"] = 0
            metrics = evaluation.quick_metrics(model, val, self.device, cfg.loss)
            val_nll = metrics["nll"]
            val_text = f" | val nll {val_nll:.4f} rmse {metrics['rmse']:.4f}"
            bar.set_postfix_str(f"loss {running / max(count, 1):.4f}{val_text}")
            with log_path.open("a", newline="") as handle:
                csv.writer(handle).writerow([
                    epoch + 1, progress["step"], f"{running / max(count, 1):.6f}", f"{val_nll:.6f}",
                    f"{metrics['rmse']:.6f}", f"{metrics['coverage_2sigma']:.6f}",
                    f"{time.monotonic() - start:.2f}",
                ])
            if val_nll < progress["best_val_nll"]:
                progress["best_val_nll"] = val_nll
                progress["bad_epochs"] = 0
                self._save_best(model, val, val_ds, normalization, metadata_for)
            else:
                progress["bad_epochs"] += 1
            progress["elapsed_s"] = time.monotonic() - start
            self._save_last(model, optimizer, progress, metadata_for({}))
            if not math.isfinite(running):  # NaN/inf weights do not come back
                stopped = "diverged"
                break
            patience = cfg.early_stopping_patience
            if patience and progress["bad_epochs"] >= patience:
                stopped = "early_stopping"
                break
            if cfg.max_time_s is not None and progress["elapsed_s"] > cfg.max_time_s:
                stopped = "max_time"
                break
            if (self.time_budget_s is not None and progress["epoch"] < cfg.epochs
                    and time.monotonic() - session_start > self.time_budget_s):
                stopped = "time_budget"
                break
        bar.close()
        if test_ds is not None and stopped not in ("max_steps", "time_budget"):
            self._final_test(test_ds)
        best_epoch = progress["epoch"] - progress["bad_epochs"]
        return TrainResult(self.out_dir, progress["epoch"], progress["step"],
                           progress["best_val_nll"], stopped, best_epoch, val_ds.num_sequences)

    # ------------------------------------------------------------------ saving
    def _save_best(self, model, val: TensorData, val_ds, normalization, metadata_for) -> None:
        metrics = evaluation.quick_metrics(model, val, self.device, self.recipe.training.loss)
        metrics = {f"validation_{k}": v for k, v in metrics.items()}
        save_checkpoint(self.out_dir, model, metadata_for(metrics))

    def _save_last(self, model, optimizer, progress: dict, metadata: CheckpointMetadata) -> None:
        last = self.out_dir / "last"
        save_checkpoint(last, model, metadata)
        tensors, layout = _flatten_optimizer(optimizer)
        save_safetensors(tensors, str(last / OPTIMIZER_FILE))
        state = {**progress, "optimizer": layout, "recipe": self.recipe.to_dict()}
        (last / STATE_FILE).write_text(yaml.safe_dump(_plain_floats(state), sort_keys=True))

    def _restore(self, model, optimizer, config: ModelConfig) -> dict:
        folder = resume_state_folder(self.resume)
        state = load_yaml(folder / STATE_FILE)
        from rkn_ros.core.checkpoint import load_weights_into, read_metadata

        metadata = read_metadata(folder)
        if metadata.model != config:
            raise CheckpointError(
                f"resume: {folder} was trained with a different model config than this recipe"
            )
        load_weights_into(model, read_weights(folder, metadata), source=str(folder))
        try:
            opt_tensors = load_safetensors(str(folder / OPTIMIZER_FILE))
        except (OSError, ValueError, RuntimeError) as err:
            raise CheckpointError(f"resume: {folder / OPTIMIZER_FILE} unreadable ({err})") from err
        optimizer.load_state_dict(
            _unflatten_optimizer(opt_tensors, state["optimizer"], self.device)
        )
        progress = {k: state[k] for k in ("epoch", "batch", "step", "best_val_nll",
                                          "bad_epochs", "elapsed_s")}
        progress["best_val_nll"] = float(progress["best_val_nll"])
        return progress

    def _final_test(self, test_ds: SequenceDataset) -> None:
        from rkn_ros.core.checkpoint import load_checkpoint

        model, metadata = load_checkpoint(self.out_dir, self.device)
        report = evaluation.evaluate(model, metadata, test_ds, self.device)
        evaluation.write_json(report, self.out_dir / "evaluation.json")


def _plain_floats(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_floats(v) for v in value]
    if isinstance(value, float) and math.isinf(value):
        return 1e300
    return value


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
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


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], layout: dict,
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
