"""LSTM and GRU baselines: the RKN's encoders, decoders and losses around a standard RNN.

Recurrent input per tick: for each sensor `[w * valid, var_obs * valid, valid]` (a missing
sample enters as zeros plus a 0 flag, so the network can tell "missing" from "observed zero"),
followed by the previous tick's action and dt (the action given at tick t, applied after it,
affects tick t+1; the state carries it). The hidden state is split in two halves: the first
feeds the mean decoder (and the image decoder), the second the variance decoder.
State: LSTM `(h, c, carry)`, GRU `(h, carry)` with h, c [batch, hidden] and
carry [batch, action_dim + use_dt] (width 0 without actions and dt).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from rkn_ros.core.config import ModelConfig
from rkn_ros.core.model import Encoded, SequenceModel, _check_tensor


class RecurrentBaseline(SequenceModel):
    """LSTM (`config.kind == "lstm"`) or GRU (`"gru"`) with the shared interface."""

    def __init__(self, config: ModelConfig) -> None:
        hidden = config.hidden_size
        super().__init__(config, mean_features=hidden // 2, var_features=hidden - hidden // 2)
        m = config.latent_obs_dim
        self.carry_dim = config.action_dim + int(config.use_dt)
        in_dim = len(config.sensors) * (2 * m + 1) + self.carry_dim
        rnn_class = nn.LSTM if config.kind == "lstm" else nn.GRU
        self.rnn = rnn_class(in_dim, hidden, batch_first=True)
        self.is_lstm = config.kind == "lstm"
        self.hidden_size = hidden

    def initial_state(self, batch_size: int,
                      device: torch.device | str | None = None) -> tuple[Tensor, ...]:
        ref = self.rnn.weight_hh_l0
        device = ref.device if device is None else device
        h = torch.zeros(batch_size, self.hidden_size, dtype=ref.dtype, device=device)
        carry = torch.zeros(batch_size, self.carry_dim, dtype=ref.dtype, device=device)
        return (h, torch.zeros_like(h), carry) if self.is_lstm else (h, carry)

    def _carry(self, action: Tensor | None, dt: Tensor | None, like: Tensor) -> Tensor:
        parts = [p for p in (action, dt) if p is not None]
        if not parts:
            return like.new_zeros(*like.shape[:-1], 0)
        return torch.cat(parts, -1)

    @staticmethod
    def _inputs(encoded: list[tuple[Tensor, Tensor, Tensor]]) -> list[Tensor]:
        parts = []
        for w, var_obs, valid in encoded:
            flag = valid.to(w.dtype).unsqueeze(-1)
            parts += [w * flag, var_obs * flag, flag]
        return parts

    def _split(self, out: Tensor) -> tuple[Tensor, Tensor]:
        half = self.hidden_size // 2
        return out[..., :half], out[..., half:]

    def _recur(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Run the LSTM/GRU over `x` [batch, time, in]; returns its output and hidden state."""
        if self.is_lstm:
            out, (h_n, c_n) = self.rnn(x, (state[0].unsqueeze(0), state[1].unsqueeze(0)))
            return out, (h_n[0], c_n[0])
        out, h_n = self.rnn(x, state[0].unsqueeze(0))
        return out, (h_n[0],)

    def update(self, state: tuple[Tensor, ...], encoded: list[Encoded]
               ) -> tuple[tuple[Tensor, ...], Tensor, Tensor]:
        """One LSTM/GRU step on this tick's inputs and the carried command; the posterior is
        the new hidden state with the carry as it was (`advance` replaces it)."""
        carry = state[-1]
        x = torch.cat([*self._inputs(encoded), carry], -1).unsqueeze(1)
        out, hidden = self._recur(x, state)
        mean_features, var_features = self._split(out[:, 0])
        return (*hidden, carry), mean_features, var_features

    def advance(self, posterior: tuple[Tensor, ...], action: Tensor | None,
                dt: Tensor | None) -> tuple[Tensor, ...]:
        """The next tick's state: the hidden state, carrying this tick's action and dt."""
        return (*posterior[:-1], self._carry(action, dt, posterior[0]))

    def cell(self, state: tuple[Tensor, ...], encoded: list[Encoded], action: Tensor | None,
             dt: Tensor | None) -> tuple[tuple[Tensor, ...], Tensor, Tensor, None]:
        """`update` then `advance`; no posterior is reported (it is not a belief)."""
        posterior, mean_features, var_features = self.update(state, encoded)
        return self.advance(posterior, action, dt), mean_features, var_features, None

    def filter_sequence(self, state: Any, encoded: list[tuple[Tensor, Tensor]],
                        valid: dict[str, Tensor], actions: Tensor | None, dt: Tensor | None
                        ) -> tuple[Any, Tensor, Tensor]:
        """The whole sequence in one nn.LSTM/GRU call (shapes: `StepContract.filter_sequence`):
        the same weights and equations as the one-tick `cell` (the carry is just the inputs
        shifted by one tick), only faster."""
        carry = state[-1]
        masks = [valid[s.name] for s in self.sensors]
        parts = self._inputs([(w, v, mask) for (w, v), mask in zip(encoded, masks, strict=True)])
        steps = masks[0].shape[1]
        carries = self._carry(actions, dt, parts[0])
        carry_in = torch.cat([carry.unsqueeze(1), carries[:, : steps - 1]], 1)
        x = torch.cat([*parts, carry_in], -1)
        out, hidden = self._recur(x, state)
        mean_features, var_features = self._split(out)
        return (*hidden, carries[:, -1]), mean_features, var_features

    def flatten_state(self, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """LSTM (h, c, carry), GRU (h, carry): already flat."""
        return state

    def unflatten_state(self, tensors: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return tuple(tensors)

    def _check_state(self, state: Any, batch: int) -> None:
        size = 3 if self.is_lstm else 2
        if not isinstance(state, tuple) or len(state) != size:
            raise ValueError(f"state: expected a tuple of {size} tensors (from initial_state or "
                             f"step), received {type(state).__name__}")
        dtype = self.dtype
        names = ("h", "c", "carry") if self.is_lstm else ("h", "carry")
        for name, tensor in zip(names, state, strict=True):
            width = self.carry_dim if name == "carry" else self.hidden_size
            _check_tensor(f"state.{name}", tensor, (batch,), (width,), "batch", dtype)

    def predict(self, state: tuple[Tensor, ...], steps: int, actions: Tensor | None = None,
                dt: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Open-loop k-step prediction: ticks t+1..t+steps with every sensor missing.

        Same conventions as `RKN.predict`: actions [batch, steps, action_dim] and
        dt [batch, steps, 1], entry j applied after predicted tick j. Returns means,
        variances [batch, steps, output_dim].
        """
        batch = state[0].shape[0] if isinstance(state, tuple) and state and isinstance(
            state[0], Tensor) and state[0].dim() > 0 else -1
        self._check_state(state, batch)
        self._check_predict_args(steps, actions, dt, batch)
        m = self.config.latent_obs_dim
        zeros = state[0].new_zeros(batch, m)
        missing = torch.zeros(batch, dtype=torch.bool, device=zeros.device)
        encoded = [(zeros, zeros, missing)] * len(self.sensors)
        mean_features, var_features = [], []
        for j in range(steps):
            state, mf, vf, _ = self.cell(state, encoded,
                                          actions[:, j] if actions is not None else None,
                                          dt[:, j] if dt is not None else None)
            mean_features.append(mf)
            var_features.append(vf)
        mean, var, _ = self.decode(torch.cat(mean_features), torch.cat(var_features))
        return (mean.view(steps, batch, -1).transpose(0, 1),
                var.view(steps, batch, -1).transpose(0, 1))
