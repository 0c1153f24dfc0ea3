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
    # (x + 0 * r == x and x * (1 - 0) == x for finite x) and its gradient is zero, never NaN.
    inv = valid.unsqueeze(-1) / (var_upper + var_obs)
    # gains of both halves in one product: [su, ss] (Sigma H^T) / (su + r)
    gain = torch.cat([var_upper, var_side], -1) * inv.repeat(1, 2)
    post_mean = torch.addcmul(mean, gain, (w - mean[:, :m]).repeat(1, 2))
    q_upper, q_lower = gain.split(m, -1)
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
    a few element-wise passes over A instead of the paper's six products of m x m blocks.
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


def banded_predict(
    mean: Tensor,
    var_upper: Tensor,
    var_lower: Tensor,
    var_side: Tensor,
    band: Tensor,
    gather_index: Tensor,
    noise: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`kalman_predict` with the transition in band form (what the RKN's `step` uses).

    band: `A` as [batch, 2, 2, m, W] (row half, column half, row r, offset d: the entry of
    column r - b + d; zeros outside the block); gather_index [2 * 3 * m * W]: per column half
    k of A and band slot (r, d), the positions in `[su, ss, sl, mean]` ([batch, 5m]) of the
    diagonals of Sigma's blocks (k, 0), (k, 1) and of the mean half k at that slot's column,
    clamped into range (`layers.band_layout`); noise [2, m] or [2, batch, m] (upper, lower).
    Same outputs as `kalman_predict`: each row of `A Sigma` and `A` is non-zero only on its
    band, so every product runs over 4 m W entries instead of (2m)^2 (m = 100, b = 3: 14x
    fewer).
    """
    batch, m = var_upper.shape
    # one concatenation and one gather (few ops: at batch 1 each op costs more than its math)
    columns = torch.cat([var_upper, var_side, var_lower, mean], -1)
    # [batch, 1, column half k, 3, m, W]; (index_select along the last dim of a 2-D tensor:
    # 4-10x faster here than of a 3-D one)
    gathered = columns.index_select(1, gather_index).view(batch, 1, 2, 3, m, band.shape[-1])
    # [A Sigma | A mean] in band form: [batch, row half, 3, m, W]
    product = (band.unsqueeze(3) * gathered).sum(2)
    new_mean = product[:, :, 2].sum(-1).view(batch, 2 * m)
    # (A Sigma A^T) blocks' diagonals [batch, row half h, row half g, m]: row (h, r) of A Sigma
    # against row (g, r) of A, which share the band columns
    cov = (product[:, :, None, :2] * band.unsqueeze(1)).sum((3, 5))
    upper, _, side, lower = cov.view(batch, 4 * m).split(m, -1)
    return new_mean, upper + noise[0], lower + noise[1], side


def kalman_update_batch_last(
    mean: Tensor,
    var_upper: Tensor,
    var_lower: Tensor,
    var_side: Tensor,
    w: Tensor,
    var_obs: Tensor,
    valid: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`kalman_update` with the batch as the last dimension (the training loop's layout).

    mean [2m, batch] (contiguous); variances, w, var_obs [m, batch]; valid [1, batch] as
    0/1 floats.
    """
    m, batch = var_upper.shape
    inv = valid / (var_upper + var_obs)
    gain = torch.stack([var_upper, var_side]) * inv  # [2, m, batch]: gains of both halves
    post_mean = torch.addcmul(mean.view(2, m, batch), gain, w - mean[:m]).view(2 * m, batch)
    gain_upper, gain_lower = gain.unbind(0)
    keep = 1.0 - gain_upper
    return (
        post_mean,
        var_upper * keep,
        torch.addcmul(var_lower, gain_lower, var_side, value=-1.0),
        var_side * keep,
    )


def banded_predict_batch_last(
    mean: Tensor,
    var_upper: Tensor,
    var_lower: Tensor,
    var_side: Tensor,
    band: Tensor,
    gather_index: Tensor,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`banded_predict` with the batch as the last dimension, without the noise.

    mean [2m, batch]; variances [m, batch]; band `A` as [2, 2, m, W, batch] (the same band
    form as `banded_predict`, batch moved last); gather_index as there. Returns the mean
    [2m, batch] and the upper, lower and side diagonals of `A Sigma A^T` [m, batch].

    With the batch innermost every product and sum runs over contiguous rows of `batch`
    numbers; batch first, they run over rows of W (7) and their reductions cross strided
    dimensions, which is slower at training sizes (BENCHMARKS.md, "Training cost").
    """
    m, batch = var_upper.shape
    width = band.shape[-2]
    columns = torch.cat([var_upper, var_side, var_lower, mean])
    # per column half k: [3 (Sigma's column halves 0 and 1, the mean), m, W, batch]
    gathered = columns.index_select(0, gather_index).view(2, 3, m, width, batch).unbind(0)
    band_k = band.unsqueeze(2).unbind(1)  # per column half k: [row half, 1, m, W, batch]
    # [A Sigma | A mean] in band form: [row half, 3, m, W, batch]
    product = torch.addcmul(band_k[0] * gathered[0], band_k[1], gathered[1])
    a_sigma, a_mean = product.split([2, 1], 1)
    # diagonals of (A Sigma A^T)'s blocks [row half h, row half g, m, batch]
    cov = (a_sigma.unsqueeze(1) * band).sum((2, 4))
    upper, _, side, lower = cov.view(4, m, batch).unbind(0)
    return a_mean.sum(3).view(2 * m, batch), upper, lower, side


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
