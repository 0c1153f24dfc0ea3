"""Train a model from a recipe: Adam, gradient-norm clipping, early stopping, resume, CSV log.

Output folder layout (``--out DIR``, default ``runs/<name>``)::

    DIR/model.safetensors, DIR/model.yaml   best model so far (lowest validation NLL)
    DIR/last/                               last state: weights, optimizer, progress (resume)
    DIR/log.csv                             one row per epoch: losses and validation metrics

Determinism: the model is initialized from ``seed``; epoch ``e`` shuffles with
``numpy.random.default_rng([seed, e])``, and sequence ``i`` draws its observation drops in
epoch ``e`` from ``default_rng([seed, e, i])``, so a run stopped anywhere (``max_steps``) and
resumed sees exactly the batches it would have seen, and a run's batches and drops are the
same in one process and under ``torchrun`` with any number (``rkn_ros.train.distributed``:
``batch_size`` is the global batch, rank 0 writes everything, the world size is in the log and
the checkpoint's ``training.world_size``).
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

import numpy as np
import torch
import yaml
from safetensors.torch import load_file as load_safetensors
from safetensors.torch import save_file as save_safetensors
from tqdm import tqdm

from rkn_ros.core import build_model
from rkn_ros.core.checkpoint import (
    CheckpointError,
    CheckpointMetadata,
    load_weights_into,
    read_metadata,
    read_weights,
    resolve_device,
    save_checkpoint,
)
from rkn_ros.core.config import ModelConfig
from rkn_ros.core.typed_config import load_yaml
from rkn_ros.data.dataset import DatasetError, SequenceDataset
from rkn_ros.train import distributed, evaluation
from rkn_ros.train.allocator import keep_freed_memory
from rkn_ros.train.config import RecipeConfig
from rkn_ros.train.data import compute_normalization, load_source, to_tensors
from rkn_ros.train.distributed import Cluster
from rkn_ros.train.preparation import build_metadata, model_config_for, recipe_warnings
from rkn_ros.train.state import (
    OPTIMIZER_FILE,
    STATE_FILE,
    TrainResult,
    flatten_optimizer,
    plain_floats,
    resume_run_folder,
    resume_state_folder,
    unflatten_optimizer,
)
from rkn_ros.train.step import (
    EagerStep,
    GraphedStep,
    batch_loss,
    check_step_options,
    drop_observations,
    set_precision,
)

# the names callers import from here
__all__ = ["STATE_FILE", "TrainResult", "Trainer", "batch_loss", "drop_observations",
           "model_config_for", "resume_run_folder"]

LOG_FILE = "log.csv"
LOG_FIELDS = ("epoch", "step", "train_nll", "val_nll", "val_rmse", "val_coverage_2sigma",
              "world_size", "seconds")
CLOCK_STOPS = ("", "max_time", "time_budget")  # agreed across ranks by index


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
        """Train (every rank of a ``torchrun`` launch calls this; see the module docstring)."""
        cluster = distributed.join(str(self.device))
        finished = False
        try:
            result = self._run(cluster)
            finished = True
            return result
        finally:
            distributed.leave(cluster, finished)

    def _run(self, cluster: Cluster) -> TrainResult:
        recipe, cfg = self.recipe, self.recipe.training
        device = self.device = cluster.device
        check_step_options(cfg.step, cfg.precision, device, cluster.world_size)
        cluster.check_batch_size(cfg.batch_size)
        torch.set_num_threads(cfg.num_threads)
        if device.type == "cpu":
            keep_freed_memory()
        set_precision(cfg.precision, device)
        torch.manual_seed(recipe.seed)
        train_ds, val_ds, test_ds = self._load_data()
        model_config = model_config_for(recipe, train_ds)
        if cluster.is_main:
            for warning in recipe_warnings(recipe, train_ds):
                self.warn(warning)
        normalization = compute_normalization(train_ds, cfg.normalize_targets)
        sensors = [s.name for s in model_config.sensors]
        train = to_tensors(train_ds, normalization, sensors)
        val = to_tensors(val_ds, normalization, sensors)
        model = build_model(model_config).to(device)
        # capturable: Adam's step counter stays on the GPU, as a CUDA graph needs
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                     capturable=cfg.step == "cuda_graph")
        progress = {"epoch": 0, "batch": 0, "step": 0, "best_val_nll": math.inf,
                    "bad_epochs": 0, "elapsed_s": 0.0}
        if self.resume is not None:
            progress = self._restore(model, optimizer, model_config)
            if cluster.agree(progress["step"]) != progress["step"]:
                raise CheckpointError(f"resume: the processes read different training states "
                                      f"from {self.resume}: give every one the same folder")
        self.cluster, self.model, self.net = cluster, model, cluster.wrap(model)
        self.optimizer, self.train, self.val = optimizer, train, val
        self.stepper = (
            GraphedStep(model, optimizer, cfg.loss, cfg.grad_clip, cfg.precision)
            if cfg.step == "cuda_graph"
            else EagerStep(self.net, model, optimizer, cfg.loss, cfg.grad_clip, cfg.precision)
        )
        self.log_path = self.out_dir / LOG_FILE
        if cluster.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            if progress["epoch"] == 0 or not self.log_path.exists():
                with self.log_path.open("w", newline="") as handle:
                    csv.writer(handle).writerow(LOG_FIELDS)

        def metadata_for(metrics: dict) -> CheckpointMetadata:
            return build_metadata(
                recipe, model_config, train_ds, normalization, metrics,
                {"epochs": progress["epoch"], "steps": progress["step"],
                 "world_size": cluster.world_size},
            )

        self.metadata_for, self.progress = metadata_for, progress
        batches = max(1, math.ceil(train.num_sequences / cfg.batch_size))
        stopped = "epochs"
        self.session_start = time.monotonic()
        self.start = self.session_start - progress["elapsed_s"]
        self.bar = tqdm(total=cfg.epochs * batches,
                        initial=progress["epoch"] * batches + progress["batch"], desc=recipe.name,
                        disable=not (self.show_progress and cluster.is_main), dynamic_ncols=True)
        self.val_text = ""
        while progress["epoch"] < cfg.epochs:
            running, count, interrupted = self._epoch(batches)
            if interrupted:
                # Mid-epoch: --resume continues with batch progress["batch"] of this epoch.
                stopped = interrupted
                progress["elapsed_s"] = time.monotonic() - self.start
                first = not (self.out_dir / "model.yaml").exists()
                metrics = None
                if cluster.agree(int(cluster.is_main and first)):
                    metrics = distributed.validation_metrics(model, val, cluster, cfg.loss)
                if cluster.is_main:
                    self._save_last(progress, metadata_for({}))
                    if metrics is not None:
                        self._save_best(metrics)
                break
            stopped = self._end_epoch(running, count)
            if stopped:
                break
        stopped = stopped or "epochs"
        self.bar.close()
        if cluster.is_main and test_ds is not None and stopped not in ("max_steps", "time_budget"):
            self._final_test(test_ds)
        best_epoch = progress["epoch"] - progress["bad_epochs"]
        return TrainResult(self.out_dir, progress["epoch"], progress["step"],
                           progress["best_val_nll"], stopped, best_epoch, val_ds.num_sequences)

    # ------------------------------------------------------------------ one epoch
    def _epoch(self, batches: int) -> tuple[float, int, str]:
        """The batches of the current epoch from ``progress["batch"]`` on: (this rank's part
        of the summed batch losses, batches done, why it stopped early or "")."""
        cfg, cluster, progress = self.recipe.training, self.cluster, self.progress
        seed, epoch, n = self.recipe.seed, progress["epoch"], self.train.num_sequences
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(n))
        self.net.train()
        # summed on the device: reading each loss back would stall a GPU every step
        running, count = torch.zeros((), dtype=torch.float64, device=self.device), 0
        clocked = cfg.max_time_s is not None or self.time_budget_s is not None
        for b in range(progress["batch"], batches):
            index = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            share = cluster.share(index)
            weight = distributed.share_weight(cluster, self.train, index, share, cfg.loss)
            if share.numel() == 0:  # a short last batch: run one sequence at weight 0
                share = index[:1]
            drops = functools.partial(
                drop_observations, rate=cfg.observation_drop, keep_first=cfg.keep_first,
                streams=[(seed, epoch, int(i)) for i in share], gap=cfg.drop_gap,
            )
            loss = self._step(share, drops, weight)
            progress["step"] += 1
            running += loss.double() / cluster.world_size
            count += 1
            self.bar.update(1)
            if count % cfg.log_every == 0 or b == batches - 1:
                shown = float(running) * cluster.world_size / count  # rank 0's, rescaled
                self.bar.set_postfix_str(f"loss {shown:.4f}{self.val_text}")
            progress["batch"] = b + 1
            if cfg.max_steps is not None and progress["step"] >= cfg.max_steps:
                return float(running), count, "max_steps"
            if clocked:
                why = cluster.agree(CLOCK_STOPS.index(self._clock_stop(mid_epoch=True)))
                if why:
                    return float(running), count, CLOCK_STOPS[why]
        return float(running), count, ""

    def _step(self, share: torch.Tensor, drops: Callable[[dict], dict],
              weight: float) -> torch.Tensor:
        obs, valid, *rest = self.train.batch(share, self.device)
        return self.stepper((obs, drops(valid), *rest), weight)

    def _clock_stop(self, mid_epoch: bool) -> str:
        cfg, now = self.recipe.training, time.monotonic()
        if cfg.max_time_s is not None and now - self.start > cfg.max_time_s:
            return "max_time"
        more = mid_epoch or self.progress["epoch"] < cfg.epochs
        budget = self.time_budget_s
        if budget is not None and more and now - self.session_start > budget:
            return "time_budget"
        return ""

    def _end_epoch(self, running: float, count: int) -> str:
        """Validate, log, keep the best model, save the state; why to stop now, or ""."""
        cfg, cluster, progress = self.recipe.training, self.cluster, self.progress
        train_nll = float(cluster.sum(torch.tensor([running], dtype=torch.float64))[0])
        train_nll /= max(count, 1)
        progress["epoch"] += 1
        progress["batch"] = 0
        metrics = distributed.validation_metrics(self.model, self.val, cluster, cfg.loss)
        val_nll = metrics["nll"]
        self.val_text = f" | val nll {val_nll:.4f} rmse {metrics['rmse']:.4f}"
        self.bar.set_postfix_str(f"loss {train_nll:.4f}{self.val_text}")
        if cluster.is_main:
            with self.log_path.open("a", newline="") as handle:
                csv.writer(handle).writerow([
                    progress["epoch"], progress["step"], f"{train_nll:.6f}", f"{val_nll:.6f}",
                    f"{metrics['rmse']:.6f}", f"{metrics['coverage_2sigma']:.6f}",
                    cluster.world_size, f"{time.monotonic() - self.start:.2f}",
                ])
        if val_nll < progress["best_val_nll"]:
            progress["best_val_nll"] = val_nll
            progress["bad_epochs"] = 0
            if cluster.is_main:
                self._save_best(metrics)
        else:
            progress["bad_epochs"] += 1
        progress["elapsed_s"] = time.monotonic() - self.start
        if cluster.is_main:
            self._save_last(progress, self.metadata_for({}))
        reasons = ("", "diverged", "early_stopping", *CLOCK_STOPS[1:])
        why = ""
        if not math.isfinite(train_nll):  # NaN/inf weights do not come back
            why = "diverged"
        elif cfg.early_stopping_patience and progress["bad_epochs"] >= cfg.early_stopping_patience:
            why = "early_stopping"
        else:
            why = self._clock_stop(mid_epoch=False)
        # rank 0's clock decides for every rank
        return reasons[cluster.agree(reasons.index(why))]

    # ------------------------------------------------------------------ saving
    def _save_best(self, metrics: dict[str, float]) -> None:
        metrics = {f"validation_{k}": v for k, v in metrics.items()}
        save_checkpoint(self.out_dir, self.model, self.metadata_for(metrics))

    def _save_last(self, progress: dict, metadata: CheckpointMetadata) -> None:
        last = self.out_dir / "last"
        save_checkpoint(last, self.model, metadata)
        tensors, layout = flatten_optimizer(self.optimizer)
        save_safetensors(tensors, str(last / OPTIMIZER_FILE))
        state = {**progress, "optimizer": layout, "recipe": self.recipe.to_dict()}
        (last / STATE_FILE).write_text(yaml.safe_dump(plain_floats(state), sort_keys=True))

    def _restore(self, model, optimizer, config: ModelConfig) -> dict:
        folder = resume_state_folder(self.resume)
        state = load_yaml(folder / STATE_FILE)
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
            unflatten_optimizer(opt_tensors, state["optimizer"], self.device)
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
