"""Losses and metrics exactly as Becker et al. (ICML 2019) compute them in their evaluation."""

from __future__ import annotations

import math

import torch
from torch import Tensor

_LOG_2PI = math.log(2.0 * math.pi)


def _masked_mean(values: Tensor, mask: Tensor | None) -> Tensor:
    """Mean of values [batch, time] over the entries where mask [batch, time] is True."""
    if mask is None:
        return values.mean()
    weights = mask.to(values.dtype)
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def gaussian_nll(mean: Tensor, var: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Gaussian NLL per time step: `0.5 (log 2 pi + log var + (y - mu)^2 / var)` summed over the
    output dimension, averaged over time and batch.

    mean, var, target: [batch, time, dim] (or [batch, dim]); mask: [batch, time] bool, True
    where the target counts. The reported "log-likelihood" is the negative of this.
    """
    per_step = 0.5 * (_LOG_2PI + torch.log(var) + (target - mean) ** 2 / var)
    return _masked_mean(per_step.sum(-1), mask)


def rmse(mean: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Root mean squared error over all elements (of the masked time steps)."""
    squared = ((mean - target) ** 2).mean(-1)
    return torch.sqrt(_masked_mean(squared, mask))


def bernoulli_nll(probs: Tensor, target_images: Tensor, mask: Tensor | None = None,
                  eps: float = 1e-6) -> Tensor:
    """Binary cross-entropy summed over the pixels of a frame, averaged over time and batch.

    probs, target_images: [batch, time, *image shape] in [0, 1]; mask: [batch, time] bool.
    """
    p = probs.clamp(eps, 1.0 - eps)
    per_pixel = -(target_images * torch.log(p) + (1.0 - target_images) * torch.log1p(-p))
    return _masked_mean(per_pixel.flatten(2).sum(-1), mask)


def coverage(mean: Tensor, var: Tensor, target: Tensor, k_sigma: float = 2.0,
             mask: Tensor | None = None) -> Tensor:
    """Fraction of elements with `|y - mu| <= k_sigma * sqrt(var)` (0.954 for k = 2 when
    calibrated). Shapes [batch, time, dim]; mask [batch, time] bool."""
    inside = ((target - mean).abs() <= k_sigma * torch.sqrt(var)).to(mean.dtype).mean(-1)
    return _masked_mean(inside, mask)
