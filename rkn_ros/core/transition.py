"""The locally linear transition: banded basis, coefficient network, noise, control shift."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rkn_ros.core.config import ModelConfig
from rkn_ros.core.layers import (
    band_indices,
    band_layout,
    elu_plus_one,
    inverse_elu_plus_one,
    mlp,
    run_mlp,
)


class BandedTransition(nn.Module):
    """`A_t = sum_k alpha_k(mean) A^(k)`, `alpha = softmax(net([mean, dt]))`.

    Each basis matrix is four m x m band blocks; only the band entries are parameters
    ([K, nnz]). The filter works on `A_t` in band form, [batch, 2, 2, m, W] (row half, column
    half, row, diagonal offset; W = 2b + 1, zeros where the band leaves the block; `forward`
    uses [2, 2, m, W, batch] from `band_matrix_batch_last`): one
    [batch, K] x [K, 4 m W] product forms it and the prediction is a few element-wise passes
    over 4 m W entries instead of (2m)^2 (`belief.banded_predict`). `matrix` gives the dense
    [batch, 2m, 2m] form of the same `A_t`. All K bases start as `[[I, 0.2 I], [-0.2 I, I]]`.
    Transition noise is a learned diagonal (2m) through `elu + 1`, starting at
    `transition_noise_init`; with `state_dependent_noise` a linear function of the mean is
    added before the activation (zero at the start).
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        m = config.latent_obs_dim
        self.state_dim = 2 * m
        indices, init = band_indices(m, config.bandwidth)
        self.register_buffer("band_index", indices, persistent=False)
        band_position, gather_index, width = band_layout(indices, m, config.bandwidth)
        self.register_buffer("band_position", band_position, persistent=False)
        self.register_buffer("gather_index", gather_index, persistent=False)
        self.band_shape = (2, 2, m, width)
        self.basis = nn.Parameter(init.unsqueeze(0).repeat(config.num_basis, 1))
        self.use_dt = config.use_dt
        self.coefficients = mlp(2 * m + int(config.use_dt), config.coefficient_hidden,
                                config.num_basis)
        raw = inverse_elu_plus_one(config.transition_noise_init)
        self.raw_noise = nn.Parameter(torch.full((2 * m,), raw))
        self.noise_net: nn.Linear | None = None
        if config.state_dependent_noise:
            self.noise_net = nn.Linear(2 * m, 2 * m, bias=False)
            nn.init.zeros_(self.noise_net.weight)
        self.control = (mlp(config.action_dim, config.control_hidden, 2 * m)
                        if config.action_dim > 0 else None)

    def alpha(self, mean: Tensor, dt: Tensor | None) -> Tensor:
        """Basis weights [batch, K] for belief mean [batch, 2m] and dt [batch, 1]."""
        net_in = torch.cat([mean, dt], -1) if self.use_dt else mean
        return torch.softmax(run_mlp(self.coefficients, net_in), -1)

    def matrix(self, mean: Tensor, dt: Tensor | None) -> Tensor:
        """Transition matrix [batch, 2m, 2m] for belief mean [batch, 2m] and dt [batch, 1]."""
        alpha = self.alpha(mean, dt)
        batch = mean.shape[0]
        flat = mean.new_zeros(batch, self.state_dim * self.state_dim)
        flat = flat.index_copy(1, self.band_index, alpha @ self.basis)
        return flat.view(batch, self.state_dim, self.state_dim)

    def band_basis(self) -> Tensor:
        """The K bases in band form, [K, 4 m W] (weights only: once per sequence)."""
        _, _, m, width = self.band_shape
        flat = self.basis.new_zeros(self.basis.shape[0], 4 * m * width)
        return flat.index_copy(1, self.band_position, self.basis)

    def band_matrix(self, mean: Tensor, dt: Tensor | None, band_basis: Tensor) -> Tensor:
        """`A_t` in band form [batch, 2, 2, m, W] (see the class docstring)."""
        return torch.mm(self.alpha(mean, dt), band_basis).view(mean.shape[0], *self.band_shape)

    def band_matrix_batch_last(self, mean: Tensor, dt: Tensor | None,
                               band_basis_t: Tensor) -> Tensor:
        """`band_matrix` with the batch last: mean [2m, batch], dt [1, batch], band_basis_t
        the transposed band basis [4 m W, K] -> `A_t` [2, 2, m, W, batch]."""
        x = torch.cat([mean, dt]) if self.use_dt else mean
        for layer in self.coefficients:
            x = (torch.addmm(layer.bias.unsqueeze(1), layer.weight, x)
                 if isinstance(layer, nn.Linear) else torch.relu(x))
        alpha = torch.softmax(x, 0)
        return torch.mm(band_basis_t, alpha).view(*self.band_shape, mean.shape[1])

    def state_noise_batch_last(self, mean: Tensor) -> tuple[Tensor, Tensor]:
        """`state_noise` with the batch last: mean [2m, batch] -> upper, lower [m, batch]."""
        if self.noise_net is None:
            raise RuntimeError(
                "state_noise_batch_last() needs a model built with state_dependent_noise")
        q = elu_plus_one(torch.addmm(self.raw_noise.unsqueeze(1), self.noise_net.weight, mean))
        upper, lower = q.view(2, -1, mean.shape[1]).unbind(0)
        return upper, lower

    def state_noise(self, mean: Tensor) -> Tensor:
        """`state_dependent_noise`: noise of the upper and lower halves for belief mean
        [batch, 2m], as [2, batch, m]."""
        if self.noise_net is None:
            raise RuntimeError("state_noise() needs a model built with state_dependent_noise")
        q = elu_plus_one(self.raw_noise + self.noise_net(mean))
        return q.view(mean.shape[0], 2, -1).transpose(0, 1)

    def noise(self) -> tuple[Tensor, Tensor]:
        """Diagonal transition noise of the upper and lower halves, each [m] (with
        `state_dependent_noise`: its constant part, `state_noise` at mean 0)."""
        q = elu_plus_one(self.raw_noise)
        half = self.state_dim // 2
        return q[:half], q[half:]

    def shift(self, action: Tensor) -> Tensor:
        """ac-RKN control shift of the predicted mean [batch, 2m] for action [batch, action_dim]."""
        if self.control is None:
            raise RuntimeError("shift() needs a model built with action_dim > 0")
        return run_mlp(self.control, action)
