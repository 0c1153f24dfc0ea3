"""The RKN belief as an explicit value, and the factorized Kalman update and prediction.

The latent state `z = [upper; lower]` has 2m entries; the upper half is observed directly
(`H = [I 0]`). The covariance is kept in factorized form
`Sigma = [[diag(su), diag(ss)], [diag(ss), diag(sl)]]`, so a belief is the mean plus three
m-vectors and every operation is element-wise or a product with the transition matrix; nothing
is inverted. With this structure the update below *is* the exact Kalman update; the prediction
keeps exactly the factorized parts (diagonals) of `A Sigma A^T + Q`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Belief:
    """Gaussian belief over the latent state, batch first.

    mean: [batch, 2m]; var_upper, var_lower, var_side: [batch, m].
    """

    mean: Tensor
    var_upper: Tensor
    var_lower: Tensor
    var_side: Tensor

    def tensors(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        return self.mean, self.var_upper, self.var_lower, self.var_side

    def covariance(self) -> Tensor:
        """Dense covariance [batch, 2m, 2m] (tests, plots, diagnostics; never in the loop)."""
        upper = torch.cat([torch.diag_embed(self.var_upper), torch.diag_embed(self.var_side)], -1)
        lower = torch.cat([torch.diag_embed(self.var_side), torch.diag_embed(self.var_lower)], -1)
        return torch.cat([upper, lower], -2)


def kalman_update(
    mean: Tensor,
    var_upper: Tensor,
    var_lower: Tensor,
    var_side: Tensor,
    w: Tensor,
    var_obs: Tensor,
    valid: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Factorized Kalman update with `H = [I 0]`, kept only where `valid`.

    mean [batch, 2m]; variances, w, var_obs [batch, m]; valid [batch] bool.
    Rows with `valid` False return the prior unchanged.
    """
    m = var_upper.shape[-1]
    # A missing row gets zero gain, so every update below returns its prior bit for bit
    # (x + 0 * y == x for finite y) and its gradient is zero, never NaN.
    inv = valid.unsqueeze(-1) / (var_upper + var_obs)
    q_upper = var_upper * inv
    q_lower = var_side * inv
    residual = w - mean[:, :m]
    post_mean = mean + torch.cat([q_upper * residual, q_lower * residual], -1)
    keep = 1.0 - q_upper
    return (
        post_mean,
        var_upper * keep,
        torch.addcmul(var_lower, q_lower, var_side, value=-1.0),
        var_side * keep,
    )


def kalman_predict(
    mean: Tensor,
    var_upper: Tensor,
    var_lower: Tensor,
    var_side: Tensor,
    transition: Tensor,
    noise_upper: Tensor,
    noise_lower: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Factorized prediction through the transition matrix A [batch, 2m, 2m].

    Returns the mean `A mean` [batch, 2m] and the factorized parts of `A Sigma A^T + Q`
    (noise [m] or [batch, m]; Q is diagonal so the side variance gets none).

    `A Sigma` for the factorized Sigma is `A * [su, sl] + swapped(A) * [ss, ss]` (column-wise
    scaling; `swapped` exchanges the column halves of A) and `diag(X Y^T) = sum(X * Y, -1)`:
    a few element-wise passes over A instead of the six products of m x m blocks in RKN.md.
    """
    m = var_upper.shape[-1]
    new_mean = torch.matmul(transition, mean.unsqueeze(-1)).squeeze(-1)
    swapped = torch.cat([transition[..., m:], transition[..., :m]], -1)
    a_sigma = torch.addcmul(
        transition * torch.cat([var_upper, var_lower], -1).unsqueeze(-2),
        swapped,
        torch.cat([var_side, var_side], -1).unsqueeze(-2),
    )
    diagonal = torch.linalg.vecdot(a_sigma, transition)
    new_side = torch.linalg.vecdot(a_sigma[:, m:], transition[:, :m])
    return new_mean, diagonal[:, :m] + noise_upper, diagonal[:, m:] + noise_lower, new_side


def update(belief: Belief, w: Tensor, var_obs: Tensor, valid: Tensor | None = None) -> Belief:
    """Kalman update of `belief` with latent observation `w` and variance `var_obs` [batch, m]."""
    if valid is None:
        valid = torch.ones(w.shape[0], dtype=torch.bool, device=w.device)
    return Belief(*kalman_update(*belief.tensors(), w, var_obs, valid))


def predict(
    belief: Belief,
    transition: Tensor,
    noise_upper: Tensor,
    noise_lower: Tensor,
    shift: Tensor | None = None,
) -> Belief:
    """Prior for the next tick: `A` [batch, 2m, 2m], noise [m], optional mean shift [batch, 2m]."""
    mean, upper, lower, side = kalman_predict(
        *belief.tensors(), transition, noise_upper, noise_lower
    )
    if shift is not None:
        mean = mean + shift
    return Belief(mean, upper, lower, side)
