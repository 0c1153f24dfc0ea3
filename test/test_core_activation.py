"""The positive activation behind every variance never rounds to zero."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rkn_ros.core.layers import elu_plus_one


def test_equals_elu_plus_one_where_float32_can_represent_it() -> None:
    x = torch.linspace(-10.0, 10.0, 2001)
    torch.testing.assert_close(elu_plus_one(x), F.elu(x) + 1.0, rtol=1e-6, atol=1e-6)


def test_stays_positive_with_finite_gradients_far_below_zero() -> None:
    x = torch.tensor([-20.0, -40.0, -80.0, 0.0, 50.0], requires_grad=True)
    value = elu_plus_one(x)
    assert (F.elu(x[:3]) + 1.0 == 0).all(), "the naive form underflows here"
    assert (value > 0).all()
    value.sum().backward()
    assert torch.isfinite(x.grad).all()
    torch.testing.assert_close(x.grad[-1], torch.tensor(1.0))
