"""Decoders: Gaussian (mean, variance) for states, Bernoulli probabilities for images."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rkn_ros.core.config import SensorSpec
from rkn_ros.core.layers import elu_plus_one, mlp, run_mlp


class GaussianDecoder(nn.Module):
    """Mean from mean features [batch, mean_dim], variance from variance features [batch, var_dim].

    For the RKN the mean features are the posterior mean (2m) and the variance features
    `[su, sl, ss]` (3m). Outputs mean, var: [batch, out_dim]; var > 0 through `elu + 1`.
    """

    def __init__(self, mean_dim: int, var_dim: int, out_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.mean_net = mlp(mean_dim, hidden, out_dim)
        self.var_net = mlp(var_dim, hidden, out_dim)

    def forward(self, mean_features: Tensor, var_features: Tensor) -> tuple[Tensor, Tensor]:
        return (run_mlp(self.mean_net, mean_features),
                elu_plus_one(run_mlp(self.var_net, var_features)))


class ImageDecoder(nn.Module):
    """Transposed-conv decoder: features [batch, in_dim] -> pixel probabilities [batch, *shape].

    dense -> (c, H/4, W/4) -> convT 4x4 stride 2 + norm + ReLU -> convT 4x4 stride 2 -> sigmoid.
    """

    def __init__(self, in_dim: int, spec: SensorSpec, channels: int) -> None:
        super().__init__()
        self.shape = spec.shape
        height, width = spec.shape[-2:]
        self.start = (channels, height // 4, width // 4)
        self.dense = nn.Sequential(nn.Linear(in_dim, channels * (height // 4) * (width // 4)),
                                   nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1),
            nn.GroupNorm(1, channels),
            nn.ReLU(),
            nn.ConvTranspose2d(channels, spec.channels, 4, stride=2, padding=1),
        )

    def forward(self, features: Tensor) -> Tensor:
        x = self.dense(features).view(features.shape[0], *self.start)
        return torch.sigmoid(self.deconv(x)).view(features.shape[0], *self.shape)
