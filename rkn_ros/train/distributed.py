"""Data-parallel training on ``torch.distributed``: process group, batch shares, reductions.

Launched by ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the
rendezvous), every rank loads the same data, builds the same model from the same seed and
walks the same global batches; rank ``r`` takes its share of each batch, and
``torch.nn.parallel.DistributedDataParallel`` averages the gradients. Without ``torchrun``
(``WORLD_SIZE`` unset or 1) there is no process group and nothing here communicates.

One global batch, any world size: a rank's loss is its share's mean times
``count_share / count_batch * world_size`` (counts of the valid targets, known before the
forward since every rank holds the whole data set), so the gradient DDP averages is the
gradient of the whole batch's mean, as in one process.
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import numpy as np
import torch
import torch.distributed as dist

from rkn_ros.core.checkpoint import resolve_device
from rkn_ros.train import evaluation
from rkn_ros.train.data import TensorData

# Collectives time out (an error on every rank) instead of hanging when a rank dies.
TIMEOUT = datetime.timedelta(minutes=10)


def launched_world_size() -> int:
    """The world size ``torchrun`` announced (1 when not launched by it)."""
    return _env_int("WORLD_SIZE", 1)


def launched_rank() -> int:
    """This process's rank (0 when not launched by ``torchrun``)."""
    return _env_int("RANK", 0)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from None


@dataclasses.dataclass(frozen=True)
class Cluster:
    """Where this process stands among the ranks of one training run."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes logs, progress and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def check_batch_size(self, batch_size: int) -> None:
        """``batch_size`` is the global batch: each rank takes an equal share of it."""
        if batch_size % self.world_size:
            raise ValueError(
                f"training.batch_size {batch_size} is the global batch and must divide among "
                f"the {self.world_size} processes: choose a multiple of {self.world_size}"
            )

    def share(self, index: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch ``index`` (the last batch of an epoch
        may be short: shares then differ by one, or are empty)."""
        if not self.distributed:
            return index
        return torch.tensor_split(index, self.world_size)[self.rank]

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model DDP-wrapped for training (the bare model in one process)."""
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        # The forward skips the encoder for missing frames and the image decoder when a loss
        # does not read it; which parameters get a gradient can change from batch to batch.
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=True
        )

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """Elementwise sum over the ranks (float64 on the CPU, returned there)."""
        if not self.distributed:
            return values
        buffer = values.to(self.device, torch.float64)
        dist.all_reduce(buffer, op=dist.ReduceOp.SUM)
        return buffer.cpu()

    def agree(self, value: int) -> int:
        """Rank 0's ``value`` on every rank (a stop decision, a resume position)."""
        if not self.distributed:
            return value
        buffer = torch.tensor([value], dtype=torch.int64, device=self.device)
        dist.broadcast(buffer, src=0)
        return int(buffer.item())


def join(device: str) -> Cluster:
    """Join the process group ``torchrun`` set up (gloo on the CPU, NCCL on CUDA), or stand
    alone. Each rank on a CUDA machine takes the GPU of its ``LOCAL_RANK``."""
    world_size = launched_world_size()
    resolved = resolve_device(device)
    if world_size <= 1:
        return Cluster(rank=0, world_size=1, device=resolved)
    if resolved.type == "cuda":
        resolved = torch.device("cuda", _env_int("LOCAL_RANK", 0))
        torch.cuda.set_device(resolved)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo",
                                timeout=TIMEOUT)
    return Cluster(rank=dist.get_rank(), world_size=dist.get_world_size(), device=resolved)


def leave(cluster: Cluster, finished: bool) -> None:
    """Tear the process group down at the end of a run (every rank); after a run that
    finished, wait for all ranks first (rank 0 may still be writing the checkpoint)."""
    if cluster.distributed and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def share_weight(cluster: Cluster, data: TensorData, index: torch.Tensor, share: torch.Tensor,
                 loss_kind: str) -> float:
    """``count_share / count_batch * world_size``: the factor on a share's mean loss that
    makes DDP's average of the gradients the gradient of the whole batch's mean."""
    if not cluster.distributed:
        return 1.0
    if loss_kind == "bernoulli":  # every frame counts
        part, whole = share.numel(), index.numel()
    else:
        part = int(data.target_valid[share].sum())
        whole = max(int(data.target_valid[index].sum()), 1)
    return part / whole * cluster.world_size


def validation_metrics(model: torch.nn.Module, data: TensorData, cluster: Cluster,
                       loss_kind: str) -> dict[str, float]:
    """``evaluation.quick_metrics`` over the whole validation set, each rank predicting its
    shard: sums and counts are reduced, so every rank gets the same numbers."""
    if not cluster.distributed:
        return evaluation.quick_metrics(model, data, cluster.device, loss_kind)
    n = data.num_sequences
    shard = torch.from_numpy(np.array_split(np.arange(n), cluster.world_size)[cluster.rank])
    sums = torch.zeros(6, dtype=torch.float64)
    if shard.numel():
        sums = _metric_sums(model, _subset(data, shard), cluster.device, loss_kind)
    nll_sum, nll_count, sq_sum, sq_count, inside, rows = cluster.sum(sums).tolist()
    return {"nll": nll_sum / max(nll_count, 1.0), "rmse": (sq_sum / max(sq_count, 1.0)) ** 0.5,
            "coverage_2sigma": inside / max(rows, 1.0)}


def _subset(data: TensorData, index: torch.Tensor) -> TensorData:
    def pick(tensor: torch.Tensor | None) -> torch.Tensor | None:
        return None if tensor is None else tensor[index]

    return TensorData(
        observations={k: v[index] for k, v in data.observations.items()},
        valid={k: v[index] for k, v in data.valid.items()},
        targets=data.targets[index], target_valid=data.target_valid[index],
        actions=pick(data.actions), clean_images=pick(data.clean_images),
    )


def _metric_sums(model: torch.nn.Module, data: TensorData, device: torch.device,
                 loss_kind: str) -> torch.Tensor:
    """(NLL sum, NLL count, squared-error sum, element count, rows inside 2 sigma, rows) of
    ``quick_metrics``' definitions, float64."""
    mean, var, image = evaluation.predict(model, data, device)
    mask = data.target_valid
    if loss_kind == "bernoulli" and image is not None and data.clean_images is not None:
        p = image.double().clamp(1e-7, 1 - 1e-7)
        t = data.clean_images.double() / 255.0
        per_frame = (-(t * p.log() + (1 - t) * (1 - p).log())).flatten(2).sum(-1)
        nll_sum, nll_count = float(per_frame.sum()), float(per_frame.numel())
    else:
        var64 = var.double()
        per_step = (0.5 * (evaluation.LOG_2PI + var64.log()
                           + (data.targets.double() - mean.double()) ** 2 / var64)).sum(-1)
        nll_sum, nll_count = float(per_step[mask].sum()), float(mask.sum())
    err = (mean - data.targets)[mask]
    z = err / var[mask].sqrt()
    return torch.tensor([nll_sum, nll_count, float(err.double().pow(2).sum()), float(err.numel()),
                         float((z.abs() <= 2).double().sum()), float(z.numel())],
                        dtype=torch.float64)
