"""Small building blocks shared by encoders, decoders and the transition."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def elu_plus_one(x: Tensor) -> Tensor:
    """Positive activation used for every variance: `elu(x) + 1` (> 0, linear for x > 0).

    Written as `exp(min(x, 0)) + max(x, 0)` rather than `F.elu(x) + 1`: in float32 the latter
    rounds to exactly 0 for x < -17 (elu(x) == -1.0), and a zero variance makes the NLL infinite.
    """
    return torch.exp(x.clamp(max=0.0)) + x.clamp(min=0.0)


def inverse_elu_plus_one(value: float) -> float:
    """Raw parameter `x` with `elu(x) + 1 == value` (value > 0)."""
    return math.log(value) if value < 1.0 else value - 1.0


def mlp(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """Linear layers with ReLU between them; `hidden=()` gives a single linear layer."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def run_mlp(net: nn.Sequential, x: Tensor) -> Tensor:
    """`net(x)` for an `mlp`, calling the layers' functions directly.

    Same math; skips the per-module call machinery, which costs more than the tiny matmuls
    of a batch-1 step (there are no hooks on these modules).
    """
    for layer in net:
        x = F.linear(x, layer.weight, layer.bias) if isinstance(layer, nn.Linear) else F.relu(x)
    return x


def band_indices(m: int, bandwidth: int) -> tuple[Tensor, Tensor]:
    """Free entries of a 2m x 2m matrix made of four m x m band blocks (|i - j| <= bandwidth).

    Returns the flat indices into the row-major 2m x 2m matrix [nnz] and the initial values
    [nnz] of the paper's basis `[[I, 0.2 I], [-0.2 I, I]]`.
    """
    # Index arithmetic stays on the CPU, so a model can be laid out on the meta device (to
    # check a weights file's shapes before any memory is spent).
    rows = torch.arange(m, device="cpu").unsqueeze(1)
    cols = torch.arange(m, device="cpu").unsqueeze(0)
    in_band = (rows - cols).abs() <= bandwidth
    r, c = torch.nonzero(in_band, as_tuple=True)
    on_diag = (r == c).to(torch.float32)
    indices, values = [], []
    for block_row, block_col, diag_value in ((0, 0, 1.0), (0, 1, 0.2), (1, 0, -0.2), (1, 1, 1.0)):
        indices.append((block_row * m + r) * (2 * m) + block_col * m + c)
        values.append(on_diag * diag_value)
    return torch.cat(indices), torch.cat(values)


def band_layout(indices: Tensor, m: int, bandwidth: int) -> tuple[Tensor, Tensor, int]:
    """Band form of the entries `band_indices` lists.

    A 2m x 2m matrix of four band blocks is stored as [2, 2, m, W] (row half, column half,
    row r, offset d; column c = r - b + d, W = 2b + 1 with b capped at m - 1). Returns the
    flat position of each entry in that form [nnz]; the gather index of
    `belief.banded_predict` [2 * 3 * m * W]: for column half k and slot (r, d), the position
    of column c (clamped into range: band slots outside the block hold zeros, so whatever
    they multiply drops out) in `[su, ss, sl, mean_upper, mean_lower]` ([5m]) of the
    diagonals of the covariance blocks (k, 0) and (k, 1) and of the mean half k; and W.
    """
    b = min(bandwidth, m - 1)
    width = 2 * b + 1
    row, col = indices // (2 * m), indices % (2 * m)
    half_row, r, half_col, c = row // m, row % m, col // m, col % m
    position = ((half_row * 2 + half_col) * m + r) * width + (c - r + b)
    column = (torch.arange(m).unsqueeze(1) - b + torch.arange(width).unsqueeze(0)).clamp(0, m - 1)
    # block (0, 0) = su, (0, 1) = (1, 0) = ss, (1, 1) = sl; mean halves after them
    offsets = torch.tensor([[0, 1, 3], [1, 2, 4]]) * m
    gather = offsets[:, :, None, None] + column
    return position, gather.flatten(), width


def feature_size_after_conv(size: int) -> int:
    """Side length after the image encoder's pool 2 -> conv 3x3 stride 2 (pad 1) -> pool 2."""
    size = size // 2
    size = (size - 1) // 2 + 1
    return size // 2

