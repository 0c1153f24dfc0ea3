"""Small building blocks shared by encoders, decoders and the transition."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def elu_plus_one(x: Tensor) -> Tensor:
    """Positive activation used for every variance: `elu(x) + 1` (> 0, linear for x > 0)."""
    return F.elu(x) + 1.0


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


def band_indices(m: int, bandwidth: int) -> tuple[Tensor, Tensor]:
    """Free entries of a 2m x 2m matrix made of four m x m band blocks (|i - j| <= bandwidth).

    Returns the flat indices into the row-major 2m x 2m matrix [nnz] and the initial values
    [nnz] of the paper's basis `[[I, 0.2 I], [-0.2 I, I]]`.
    """
    rows = torch.arange(m).unsqueeze(1)
    cols = torch.arange(m).unsqueeze(0)
    in_band = (rows - cols).abs() <= bandwidth
    r, c = torch.nonzero(in_band, as_tuple=True)
    on_diag = (r == c).to(torch.float32)
    indices, values = [], []
    for block_row, block_col, diag_value in ((0, 0, 1.0), (0, 1, 0.2), (1, 0, -0.2), (1, 1, 1.0)):
        indices.append((block_row * m + r) * (2 * m) + block_col * m + c)
        values.append(on_diag * diag_value)
    return torch.cat(indices), torch.cat(values)


def feature_size_after_conv(size: int) -> int:
    """Side length after the image encoder's pool 2 -> conv 3x3 stride 2 (pad 1) -> pool 2."""
    size = size // 2
    size = (size - 1) // 2 + 1
    return size // 2

