"""One optimiser step: the batch's observation drops, its loss, and how the step runs.

``training.step``: ``eager`` runs the model's forward as written (any device). ``cuda_graph``
captures the whole step (forward over all time steps, loss, backward, gradient clipping,
Adam) in one CUDA graph per batch shape and replays it, so a step costs one launch instead of
one per operation and time step: the RKN's loop over time is launch-bound on a GPU. The
captured forward encodes every frame (the eager forward skips missing ones, which reads the
mask back to the host); a missing frame has zero gain, so the loss is the same.

``training.precision``: ``fp32``; ``tf32`` (CUDA: TF32 matrix products and convolutions);
``bf16`` (the forward under bfloat16 autocast; the loss is computed in float32).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from rkn_ros.core.losses import bernoulli_nll, gaussian_nll
from rkn_ros.core.model import SequenceOutput
from rkn_ros.train.data import TensorData

STEP_KINDS = ("eager", "cuda_graph")
PRECISIONS = ("fp32", "tf32", "bf16")
# eager steps per batch shape before its graph is captured (cuDNN and allocator warm-up)
GRAPH_WARMUP = 3

Batch = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], torch.Tensor, torch.Tensor,
              torch.Tensor | None, torch.Tensor | None]


def check_step_options(step: str, precision: str, device: torch.device,
                       world_size: int) -> None:
    """A clear ValueError for a step kind or precision this device or launch cannot run."""
    if step not in STEP_KINDS:
        raise ValueError(f"training.step: expected one of {list(STEP_KINDS)}, got {step!r}")
    if precision not in PRECISIONS:
        raise ValueError(
            f"training.precision: expected one of {list(PRECISIONS)}, got {precision!r}"
        )
    if step == "cuda_graph" and device.type != "cuda":
        raise ValueError(
            f"training.step cuda_graph captures the step in a CUDA graph and needs a CUDA "
            f"device; this run trains on {device}: use step eager (the default) on the CPU"
        )
    if step == "cuda_graph" and world_size > 1:
        raise ValueError(
            f"training.step cuda_graph runs in one process; this run has {world_size} "
            "(torchrun): use step eager with several processes"
        )
    if precision == "tf32" and device.type != "cuda":
        raise ValueError(
            f"training.precision tf32 is a CUDA matrix-product mode; this run trains on "
            f"{device}: use fp32 or bf16"
        )


def set_precision(precision: str, device: torch.device) -> None:
    """Process-wide matrix-product settings for ``precision`` (TF32 on or off on CUDA)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
        torch.backends.cudnn.allow_tf32 = precision == "tf32"


@contextlib.contextmanager
def autocast(precision: str, device: torch.device, cache: bool = True) -> Iterator[None]:
    """bfloat16 autocast for ``bf16``; nothing otherwise. ``cache=False`` under CUDA graph
    capture (a cached cast would outlive the graph's memory)."""
    if precision == "bf16":
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache):
            yield
    else:
        yield


def drop_observations(valid: dict[str, torch.Tensor], rate: float, keep_first: int,
                      streams: Sequence[Sequence[int]], gap: int = 0
                      ) -> dict[str, torch.Tensor]:
    """Hide a random share ``rate`` of the valid observations ``[batch, time]`` (each sensor
    its own), and with ``gap`` > 0 one run of 1 to ``gap`` consecutive steps per sequence, the
    same steps for every sensor (an outage); the first ``keep_first`` steps are kept.

    Row ``i`` draws from ``numpy.random.default_rng(streams[i])`` alone (the trainer passes
    ``(seed, epoch, sample index)``), so a sequence's drops do not depend on which batch, or
    which process's share of it, the sequence is in.
    """
    if rate <= 0 and gap <= 0:
        return valid
    batch, steps = next(iter(valid.values())).shape[:2]
    if len(streams) != batch:
        raise ValueError(f"drop_observations: {len(streams)} streams for {batch} sequences")
    keep = {name: np.empty((batch, steps), dtype=bool) for name in valid}
    time_index = np.arange(steps)
    for row, stream in enumerate(streams):
        rng = np.random.default_rng(list(stream))
        for name in valid:
            keep[name][row] = rng.random(steps) >= rate
        if gap > 0 and steps > keep_first:
            length = rng.integers(1, gap + 1)
            start = rng.integers(keep_first, steps)
            outage = (time_index >= start) & (time_index < start + length)
            for name in valid:
                keep[name][row] &= ~outage
    out = {}
    for name, mask in valid.items():
        kept = torch.from_numpy(keep[name]).to(mask.device)
        kept[:, :keep_first] = True
        out[name] = mask & kept
    return out


def loss_of(out: SequenceOutput, targets: torch.Tensor, target_valid: torch.Tensor,
            clean: torch.Tensor | None, loss_kind: str) -> torch.Tensor:
    """The training loss of model outputs (Gaussian NLL of the targets, or Bernoulli of
    images), in float32 whatever precision the forward ran in."""
    if loss_kind == "bernoulli":
        if out.image is None or clean is None:
            raise ValueError(
                "training.loss bernoulli needs model.image_decoder: true and images_clean data"
            )
        return bernoulli_nll(out.image.float(), clean)
    return gaussian_nll(out.mean.float(), out.var.float(), targets, mask=target_valid)


def batch_loss(model: torch.nn.Module, data: TensorData, index: torch.Tensor,
               device: torch.device, loss_kind: str,
               valid_override: Callable[[dict], dict] | None = None,
               precision: str = "fp32") -> torch.Tensor:
    """The training loss of the sequences ``index`` of ``data``."""
    obs, valid, targets, target_valid, actions, clean = data.batch(index, device)
    if valid_override is not None:
        valid = valid_override(valid)
    with autocast(precision, device):
        out = model(obs, valid, actions=actions)
    return loss_of(out, targets, target_valid, clean, loss_kind)


def static_forward(model: torch.nn.Module, observations: dict[str, torch.Tensor],
                   valid: dict[str, torch.Tensor], actions: torch.Tensor | None
                   ) -> SequenceOutput:
    """The model's forward with no read-back to the host (capturable): no input checks,
    every frame encoded. observations {sensor: [batch, time, *shape]}; valid {sensor:
    [batch, time] bool}; actions [batch, time, A] or None. Same outputs as ``model(...)``."""
    first = valid[model.sensors[0].name]
    batch, steps = first.shape
    state = model.initial_state(batch, device=first.device)
    encoded = []
    for w, v in model.encode({name: x.flatten(0, 1) for name, x in observations.items()}):
        encoded.append((w.view(batch, steps, -1), v.view(batch, steps, -1)))
    state, mean_features, var_features = model.filter_sequence(state, encoded, valid, actions,
                                                               None)
    mean, var, image = model.decode(mean_features.flatten(0, 1), var_features.flatten(0, 1))
    image = image.view(batch, steps, *image.shape[1:]) if image is not None else None
    return SequenceOutput(mean.view(batch, steps, -1), var.view(batch, steps, -1), state, image)


class EagerStep:
    """The training step as the model's forward runs it (any device, any world size).
    ``net`` is the model or its DDP wrapper, ``model`` the bare model (clipping)."""

    def __init__(self, net: torch.nn.Module, model: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, loss_kind: str, grad_clip: float,
                 precision: str) -> None:
        self.net, self.model, self.optimizer = net, model, optimizer
        self.loss_kind, self.grad_clip, self.precision = loss_kind, grad_clip, precision

    def __call__(self, batch: Batch, weight: float = 1.0) -> torch.Tensor:
        """One step on ``batch``, its loss scaled by ``weight`` (a rank's share weight)."""
        obs, valid, targets, target_valid, actions, clean = batch
        with autocast(self.precision, targets.device):
            out = self.net(obs, valid, actions=actions)
        loss = loss_of(out, targets, target_valid, clean, self.loss_kind)
        if self.net is not self.model:
            # DDP waits for a gradient of every parameter that produced an output; a loss that
            # reads only some outputs (Bernoulli: the images) gives the others a zero one
            loss = loss + 0.0 * sum(x.float().sum() for x in (out.mean, out.var, out.image)
                                    if x is not None)
        if weight != 1.0:
            loss = loss * weight
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return loss.detach()


class GraphedStep:
    """The whole training step captured in a CUDA graph, one per batch shape.

    The first ``GRAPH_WARMUP`` steps of a shape run eagerly (on a side stream, as capture
    needs), then the next is captured and replayed; every later batch of that shape is copied
    into the graph's input tensors and replayed. Each call is one real step, so the run is
    the eager run's. The optimizer must be built with ``capturable=True``.
    """

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 loss_kind: str, grad_clip: float, precision: str) -> None:
        self.model, self.optimizer = model, optimizer
        self.loss_kind, self.grad_clip, self.precision = loss_kind, grad_clip, precision
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, Batch, torch.Tensor]] = {}
        self.calls: dict[tuple, int] = {}

    def _step(self, batch: Batch) -> torch.Tensor:
        obs, valid, targets, target_valid, actions, clean = batch
        self.optimizer.zero_grad(set_to_none=False)
        with autocast(self.precision, targets.device, cache=False):
            out = static_forward(self.model, obs, valid, actions)
        loss = loss_of(out, targets, target_valid, clean, self.loss_kind)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.optimizer.step()
        return loss.detach()

    def __call__(self, batch: Batch, weight: float = 1.0) -> torch.Tensor:
        """One step on ``batch`` (tensors on the GPU); its loss (a GPU scalar). One process
        only: ``weight`` is always 1."""
        key = tuple(tuple(t.shape) for t in _flat(batch))
        if key in self.graphs:
            graph, static, loss = self.graphs[key]
            for target, source in zip(_flat(static), _flat(batch), strict=True):
                target.copy_(source)
            graph.replay()
            return loss.clone()
        count = self.calls.get(key, 0)
        self.calls[key] = count + 1
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        if count < GRAPH_WARMUP:
            with torch.cuda.stream(side):
                loss = self._step(batch)
            torch.cuda.current_stream().wait_stream(side)
            return loss
        static = batch  # this batch's tensors become the graph's inputs
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            loss = self._step(static)
        self.graphs[key] = (graph, static, loss)
        graph.replay()
        return loss.clone()


def _flat(batch: Batch) -> list[torch.Tensor]:
    obs, valid, targets, target_valid, actions, clean = batch
    tensors = [*obs.values(), *valid.values(), targets, target_valid]
    return tensors + [t for t in (actions, clean) if t is not None]
