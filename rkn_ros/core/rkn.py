"""The Recurrent Kalman Network (Becker et al. 2019), with ac-RKN control and RKN-dt options."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from rkn_ros.core.belief import (
    Belief,
    banded_predict,
    banded_predict_batch_last,
    kalman_update,
    kalman_update_batch_last,
)
from rkn_ros.core.config import ModelConfig
from rkn_ros.core.layers import elu_plus_one
from rkn_ros.core.model import Encoded, SequenceModel, _check_tensor
from rkn_ros.core.transition import BandedTransition


class RKN(SequenceModel):
    """RKN: per tick, successive Kalman updates (one per sensor, in config order), decode the
    posterior, then predict the prior of the next tick through the locally linear transition.

    State: `Belief` (mean [batch, 2m], variances [batch, m]). Decoder inputs: posterior mean
    (2m) and `[su, sl, ss]` (3m); with `config.variance_from_mean` (not the paper's) the
    variance decoder reads `[su, sl, ss, mean]` (5m); with `config.mean_from_variance` the mean
    decoder reads `[mean, su, sl, ss]` (5m); `config.log_variance_features` replaces
    `[su, sl, ss]` there by `[log su, log sl, ss / sqrt(su sl)]`.
    """

    def __init__(self, config: ModelConfig) -> None:
        m = config.latent_obs_dim
        super().__init__(config, mean_features=(5 if config.mean_from_variance else 2) * m,
                         var_features=(5 if config.variance_from_mean else 3) * m)
        self.latent_obs_dim = m
        self.variance_from_mean = config.variance_from_mean
        self.mean_from_variance = config.mean_from_variance
        self.log_variance_features = config.log_variance_features
        self.transition = BandedTransition(config)
        if config.learn_initial_state:
            self.initial_mean = nn.Parameter(torch.zeros(2 * m))
            self.initial_log_var = nn.Parameter(torch.full((2, m), math.log(config.initial_var)))
        else:
            self.initial_mean = None
            self.initial_log_var = None
        self._cached_constants: tuple[tuple[Any, ...], tuple[Tensor, Tensor]] | None = None

    def initial_state(self, batch_size: int, device: torch.device | str | None = None) -> Belief:
        """Initial belief: mean 0, su = sl = initial_var, ss = 0 (or the learned ones)."""
        m = self.latent_obs_dim
        ref = self.transition.raw_noise
        device = ref.device if device is None else device
        zeros = torch.zeros(batch_size, m, dtype=ref.dtype, device=device)
        if self.initial_mean is not None and self.initial_log_var is not None:
            mean = self.initial_mean.to(device).expand(batch_size, -1)
            var = torch.exp(self.initial_log_var).to(device)
            return Belief(mean, var[0].expand(batch_size, -1), var[1].expand(batch_size, -1),
                          zeros)
        var = torch.full_like(zeros, self.config.initial_var)
        return Belief(torch.zeros(batch_size, 2 * m, dtype=ref.dtype, device=device), var, var,
                      zeros)

    def transition_step(self, belief: Belief, action: Tensor | None = None,
                        dt: Tensor | None = None,
                        constants: tuple[Tensor, Tensor] | None = None) -> Belief:
        """Prior of the next tick from a (posterior) belief: `A_t`, noise and control shift.

        constants: `sequence_constants()` if already computed for this sequence.
        """
        noise, band_basis = self.sequence_constants() if constants is None else constants
        mean = belief.mean
        transition = self.transition
        if transition.noise_net is not None:
            noise = transition.state_noise(mean)
        mean, upper, lower, side = banded_predict(
            mean, belief.var_upper, belief.var_lower, belief.var_side,
            transition.band_matrix(mean, dt, band_basis), transition.gather_index, noise)
        if action is not None:
            mean = mean + transition.shift(action)
        return Belief(mean, upper, lower, side)

    def sequence_constants(self) -> tuple[Tensor, Tensor]:
        """(transition noise [2, m], band-form basis [K, 4 m W]): functions of the weights only.

        With autograd on they are recomputed on every call (`forward` calls once per sequence);
        with it off (inference, `torch.no_grad`/`inference_mode`) they are cached and reused
        until a weight they depend on changes (in-place updates bump the parameter's version
        counter; `.to()`/`.double()` give it new storage; both are part of the key).
        """
        transition = self.transition
        if torch.is_grad_enabled() or transition.basis.is_inference():
            # (weights created under inference_mode have no version counter to key on)
            return self._compute_constants()
        key = tuple((p._version, p.data_ptr(), p.dtype, p.device)
                    for p in (transition.raw_noise, transition.basis))
        cached = self._cached_constants
        if cached is None or cached[0] != key:
            cached = (key, self._compute_constants())
            self._cached_constants = cached
        return cached[1]

    def _compute_constants(self) -> tuple[Tensor, Tensor]:
        transition = self.transition
        return (elu_plus_one(transition.raw_noise).view(2, self.latent_obs_dim),
                transition.band_basis())

    splits_step = True

    def update(self, state: Belief, encoded: list[Encoded]) -> tuple[Belief, Tensor, Tensor]:
        """Successive Kalman updates of the prior, one per sensor in config order (Sec. 3.2)."""
        mean, upper, lower, side = state.mean, state.var_upper, state.var_lower, state.var_side
        for w, var_obs, valid in encoded:  # several sensors: successive updates
            mean, upper, lower, side = kalman_update(mean, upper, lower, side, w, var_obs, valid)
        posterior = Belief(mean, upper, lower, side)
        return posterior, self._mean_features(posterior), self._var_features(posterior)

    def advance(self, posterior: Belief, action: Tensor | None, dt: Tensor | None) -> Belief:
        """The prior of the next tick through the transition (`transition_step`)."""
        return self.transition_step(posterior, action, dt)

    def cell(self, state: Belief, encoded: list[Encoded], action: Tensor | None,
             dt: Tensor | None,
             constants: tuple[Tensor, Tensor] | None = None
             ) -> tuple[Belief, Tensor, Tensor, Belief]:
        """`update` then `advance`; constants: `sequence_constants()` when already computed."""
        posterior, mean_features, var_features = self.update(state, encoded)
        prior = self.transition_step(posterior, action, dt, constants)
        return prior, mean_features, var_features, posterior

    def filter_sequence(self, state: Belief, encoded: list[tuple[Tensor, Tensor]],
                        valid: dict[str, Tensor], actions: Tensor | None,
                        dt: Tensor | None) -> tuple[Belief, Tensor, Tensor]:
        """The filter over a sequence (shapes: `StepContract.filter_sequence`): the same math
        as a loop over `cell` (`step` runs that), with the batch as the last dimension of
        every per-tick tensor.

        At training sizes (batch 50, m = 15) each tick's products and sums then run over
        contiguous rows of the batch, not over rows of the band width: the loop's forward
        and backward take 11-20% less time (BENCHMARKS.md, "Training cost").
        test_core_model checks outputs, final state and gradients against `cell`'s loop.
        """
        transition = self.transition
        noise, band_basis = self.sequence_constants()
        band_basis_t = band_basis.t()
        noise_upper, noise_lower = noise[0].unsqueeze(1), noise[1].unsqueeze(1)

        def ticks(x: Tensor) -> tuple[Tensor, ...]:
            """[batch, time, dim] -> per tick [dim, batch] (one copy for the whole sequence)."""
            return x.permute(1, 2, 0).contiguous().unbind(0)

        sensors = [(ticks(w), ticks(v), ticks(valid[spec.name].unsqueeze(-1).to(w.dtype)))
                   for (w, v), spec in zip(encoded, self.sensors, strict=True)]
        steps = valid[self.sensors[0].name].shape[1]
        shifts = ticks(transition.shift(actions)) if actions is not None else (None,) * steps
        dts = ticks(dt) if dt is not None else (None,) * steps
        mean, upper, lower, side = (x.t().contiguous() for x in state.tensors())
        posteriors = []
        for t in range(steps):
            for w_ticks, var_ticks, valid_ticks in sensors:
                mean, upper, lower, side = kalman_update_batch_last(
                    mean, upper, lower, side, w_ticks[t], var_ticks[t], valid_ticks[t])
            posteriors.append(torch.cat([mean, upper, lower, side]))
            if transition.noise_net is not None:
                noise_upper, noise_lower = transition.state_noise_batch_last(mean)
            band = transition.band_matrix_batch_last(mean, dts[t], band_basis_t)
            mean, upper, lower, side = banded_predict_batch_last(
                mean, upper, lower, side, band, transition.gather_index)
            upper, lower = upper + noise_upper, lower + noise_lower
            if shifts[t] is not None:
                mean = mean + shifts[t]
        m = self.latent_obs_dim
        # [time, 5m, batch] -> [batch, time, 5m]: the posteriors' mean, su, sl, ss
        parts = torch.stack(posteriors).permute(2, 0, 1).split([2 * m, m, m, m], -1)
        posterior = Belief(*parts)
        final = Belief(*(x.t().contiguous() for x in (mean, upper, lower, side)))
        return final, self._mean_features(posterior), self._var_features(posterior)

    def _mean_features(self, belief: Belief) -> Tensor:
        """Mean-decoder input: the mean, plus the variance parts with `mean_from_variance`."""
        if not self.mean_from_variance:
            return belief.mean
        return torch.cat([belief.mean, *self._variance_parts(belief)], -1)

    def _var_features(self, belief: Belief) -> Tensor:
        """Variance-decoder input: the variance parts, plus the mean with
        `variance_from_mean`."""
        parts = self._variance_parts(belief)
        if self.variance_from_mean:
            parts.append(belief.mean)
        return torch.cat(parts, -1)

    def _variance_parts(self, belief: Belief) -> list[Tensor]:
        """`[su, sl, ss]`, or `[log su, log sl, ss / sqrt(su sl)]` with
        `log_variance_features`."""
        upper, lower, side = belief.var_upper, belief.var_lower, belief.var_side
        if not self.log_variance_features:
            return [upper, lower, side]
        return [torch.log(upper), torch.log(lower), side * torch.rsqrt(upper * lower)]

    def _sequence_constants(self) -> dict[str, Any]:
        return {"constants": self.sequence_constants()}

    def flatten_state(self, state: Belief) -> tuple[Tensor, ...]:
        """(mean [batch, 2m], var_upper, var_lower, var_side [batch, m])."""
        return state.tensors()

    def unflatten_state(self, tensors: tuple[Tensor, ...]) -> Belief:
        return Belief(*tensors)

    def _check_state(self, state: Any, batch: int) -> None:
        if not isinstance(state, Belief):
            raise ValueError(f"state: expected a Belief (from initial_state or step), "
                             f"received {type(state).__name__}")
        m = self.latent_obs_dim
        dtype = self.dtype
        _check_tensor("state.mean", state.mean, (batch,), (2 * m,), "batch", dtype)
        for name in ("var_upper", "var_lower", "var_side"):
            _check_tensor(f"state.{name}", getattr(state, name), (batch,), (m,), "batch", dtype)

    def predict(self, state: Belief, steps: int, actions: Tensor | None = None,
                dt: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Open-loop k-step prediction from `state` (the prior returned by `step`).

        Output j (0-based) is the decoded belief at tick t+1+j, so j = 0 decodes `state`
        itself. actions [batch, steps, action_dim] / dt [batch, steps, 1]: entry j is applied
        after predicted tick j (the last entry is unused; the shapes match the outputs).
        Returns means, variances [batch, steps, output_dim].
        """
        batch = state.mean.shape[0] if isinstance(state, Belief) else -1
        self._check_state(state, batch)
        self._check_predict_args(steps, actions, dt, batch)
        mean_features, var_features = [], []
        constants = self.sequence_constants()
        for j in range(steps):
            mean_features.append(self._mean_features(state))
            var_features.append(self._var_features(state))
            if j < steps - 1:
                state = self.transition_step(state, actions[:, j] if actions is not None else None,
                                             dt[:, j] if dt is not None else None, constants)
        mean, var, _ = self.decode(torch.cat(mean_features), torch.cat(var_features))
        # cat puts the step index first: [steps * batch] -> [batch, steps]
        return (mean.view(steps, batch, -1).transpose(0, 1),
                var.view(steps, batch, -1).transpose(0, 1))
