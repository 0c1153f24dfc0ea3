"""Losses and metrics follow the definitions of Becker et al. (ICML 2019), 'Evaluation'."""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from rkn_ros.core import bernoulli_nll, coverage, gaussian_nll, rmse


def test_gaussian_nll_sums_dimensions_and_averages_steps() -> None:
    gen = torch.Generator().manual_seed(0)
    mean = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64)
    var = torch.rand(3, 5, 4, generator=gen, dtype=torch.float64) + 0.1
    target = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64)
    reference = -torch.distributions.Normal(mean, var.sqrt()).log_prob(target).sum(-1).mean()
    torch.testing.assert_close(gaussian_nll(mean, var, target), reference)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[1, 2:] = True
    masked = -torch.distributions.Normal(mean, var.sqrt()).log_prob(target).sum(-1)[mask].mean()
    torch.testing.assert_close(gaussian_nll(mean, var, target, mask), masked)
    # one standard normal dimension at its mean: 0.5 log(2 pi)
    zero = torch.zeros(1, 1, 1)
    assert math.isclose(gaussian_nll(zero, zero + 1, zero).item(), 0.5 * math.log(2 * math.pi),
                        rel_tol=1e-6)


def test_rmse_coverage_and_bernoulli() -> None:
    mean = torch.zeros(2, 2, 2)
    target = torch.tensor([[[1.0, -1.0], [3.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    assert math.isclose(rmse(mean, target).item(), math.sqrt((1 + 1 + 9) / 8), rel_tol=1e-6)
    # |error| <= 2 sigma holds for 7 of the 8 elements (3 > 2)
    assert math.isclose(coverage(mean, torch.ones(2, 2, 2), target, 2.0).item(), 7 / 8)
    gen = torch.Generator().manual_seed(1)
    probs = torch.rand(2, 3, 6, 6, generator=gen)
    images = (torch.rand(2, 3, 6, 6, generator=gen) > 0.5).float()
    reference = F.binary_cross_entropy(probs, images, reduction="none").sum((2, 3)).mean()
    torch.testing.assert_close(bernoulli_nll(probs, images), reference)
    # saturated probabilities stay finite
    assert math.isfinite(bernoulli_nll(torch.ones(1, 1, 2, 2), torch.zeros(1, 1, 2, 2)).item())
