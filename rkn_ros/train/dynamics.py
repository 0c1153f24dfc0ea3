"""What a trained RKN learned about the dynamics: the modes of its locally linear transition.

The RKN predicts the next latent state with `A_t = sum_k alpha_k(z_t) A^(k)` (Becker et al.,
ICML 2019, Sec. 3.2: the locally linear transition model), a 2m x 2m matrix over the observed
(upper) and memory (lower) halves of the state, chosen by the basis weights `alpha` of the
current posterior mean. Along filtered trajectories each `A_t` is linear, so its eigenvalues
`lambda` are the discrete-time modes at that state; `s = log(lambda) / dt` turns them into
continuous-time modes with natural frequency `|s|` (rad/s), damping ratio `-Re(s) / |s|` and
time constant `-1 / Re(s)` (negative: a growing mode).

- *Oscillatory* modes are complex-conjugate pairs (one of each pair is kept: Im > 0).
- *Real* modes (`lambda > 0`) decay or grow without oscillating.
- *Negative real* eigenvalues flip sign every step: `log` of them has no continuous-time
  meaning (its imaginary part would be the Nyquist frequency pi / dt), so they are counted and
  reported apart, never converted.

The *dominant mode* at a state is its oscillatory pair that decays slowest (largest `|lambda|`);
its frequency and damping are averaged over the visited states, with their spread.
`modes` ranks each state's oscillatory pairs from slowest to fastest decay and summarises each
rank over the states (rank 0 is the dominant mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rkn_ros.train.data import TensorData

# |Im lambda| below this (relative to |lambda|) counts as a real eigenvalue
REAL_TOLERANCE = 1e-6
# per-state eigen-decompositions beyond this many states are taken on an even subsample
MAX_STATES = 20000

# A real-valued array of the modes of every state, [states, modes] (NaN where a state has fewer)
ModeArray = np.ndarray


@dataclass(frozen=True)
class Trajectories:
    """The filter run over a data set.

    means: posterior means [S, T, 2m]; alpha: basis weights at them [S, T, K];
    matrices: the transition matrices `A_t` [S, T, 2m, 2m] (float64); outputs: the truth
    targets [S, T, D] (data units) for colouring and locating states; output_names: [D].
    """

    means: np.ndarray
    alpha: np.ndarray
    matrices: np.ndarray
    outputs: np.ndarray
    output_names: list[str]


@dataclass(frozen=True)
class StateModes:
    """Eigen-analysis of each visited state's `A_t` ([N] states, up to m oscillatory pairs).

    frequency, damping, time_constant, magnitude: oscillatory pairs [N, P] sorted by decreasing
    |lambda| (NaN-padded); real: positive real eigenvalues [N, R] (NaN-padded); negative:
    negative real eigenvalues [N, Q] (NaN-padded); eigenvalues: all eigenvalues [N, 2m].
    """

    frequency: ModeArray
    damping: ModeArray
    time_constant: ModeArray
    magnitude: ModeArray
    real: ModeArray
    negative: ModeArray
    eigenvalues: np.ndarray


@torch.no_grad()
def run_filter(model: torch.nn.Module, data: TensorData, dt: float, output_stats: dict | None,
               output_names: list[str], batch_size: int = 100) -> Trajectories:
    """Filter every sequence tick by tick (the model's `step`) and read `alpha` and `A_t` at
    each posterior mean. ``output_stats``: target normalization to undo (or None);
    ``output_names``: the targets' names."""
    from rkn_ros.data.pam import denormalize

    model.eval()
    transition = model.transition
    means, alphas = [], []
    for start in range(0, data.num_sequences, batch_size):
        index = torch.arange(start, min(start + batch_size, data.num_sequences))
        obs, valid, _, _, actions, _ = data.batch(index, torch.device("cpu"))
        state = model.initial_state(len(index))
        dt_in = torch.full((len(index), 1), dt) if model.config.use_dt else None
        steps = next(iter(valid.values())).shape[1]
        posteriors = []
        for t in range(steps):
            out = model.step(state, {k: v[:, t] for k, v in obs.items()},
                             {k: v[:, t] for k, v in valid.items()},
                             None if actions is None else actions[:, t], dt_in)
            posteriors.append(out.posterior.mean)
            state = out.state
        mean = torch.stack(posteriors, 1)  # [batch, T, 2m]
        flat = mean.reshape(-1, mean.shape[-1])
        flat_dt = torch.full((flat.shape[0], 1), dt) if model.config.use_dt else None
        means.append(mean.numpy())
        alphas.append(transition.alpha(flat, flat_dt).view(*mean.shape[:2], -1).numpy())
    mean_all, alpha_all = np.concatenate(means), np.concatenate(alphas)
    basis = dense_basis(transition)  # [K, 2m, 2m]
    matrices = np.einsum("stk,kij->stij", alpha_all.astype(np.float64), basis)
    outputs = data.targets.numpy().astype(np.float64)
    if output_stats is not None:
        outputs = denormalize(outputs, output_stats)
    return Trajectories(mean_all, alpha_all, matrices, outputs, list(output_names))


def dense_basis(transition: torch.nn.Module) -> np.ndarray:
    """The K basis matrices in dense form [K, 2m, 2m] (the band entries scattered into place):
    the four m x m band blocks make one 2m x 2m matrix over [upper; lower]."""
    n = transition.state_dim
    weights = transition.basis.detach().double()
    flat = weights.new_zeros(weights.shape[0], n * n)
    flat[:, transition.band_index] = weights
    return flat.view(-1, n, n).numpy()


def continuous_modes(eigenvalues: np.ndarray, dt: float) -> dict[str, np.ndarray]:
    """`s = log(lambda) / dt` -> natural frequency |s| (rad/s), damping ratio -Re(s)/|s| and
    time constant -1/Re(s) (s), element-wise. Only for eigenvalues off the negative real axis."""
    s = np.log(eigenvalues.astype(np.complex128)) / dt
    frequency = np.abs(s)
    with np.errstate(divide="ignore", invalid="ignore"):
        damping = np.where(frequency > 0, -s.real / frequency, np.nan)
        time_constant = np.where(s.real != 0, -1.0 / s.real, np.inf)
    return {"frequency": frequency, "damping": damping, "time_constant": time_constant}


def _padded(rows: list[np.ndarray]) -> np.ndarray:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), width), np.nan)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def state_modes(matrices: np.ndarray, dt: float) -> StateModes:
    """Classify and convert the eigenvalues of each `A_t` [N, 2m, 2m] (see StateModes)."""
    eig = np.linalg.eigvals(matrices)  # [N, 2m]
    scale = np.maximum(np.abs(eig), 1e-300)
    complex_upper = eig.imag > REAL_TOLERANCE * scale
    is_real = np.abs(eig.imag) <= REAL_TOLERANCE * scale
    pairs, real, negative = [], [], []
    for row, upper, real_mask in zip(eig, complex_upper, is_real, strict=True):
        oscillatory = row[upper]
        pairs.append(oscillatory[np.argsort(-np.abs(oscillatory))])
        real_values = row[real_mask].real
        real.append(np.sort(real_values[real_values > 0])[::-1])
        negative.append(np.sort(real_values[real_values <= 0]))
    width = max((len(p) for p in pairs), default=0)
    lam = np.full((len(pairs), width), np.nan, dtype=np.complex128)
    for i, p in enumerate(pairs):
        lam[i, : len(p)] = p
    converted = continuous_modes(np.where(np.isnan(lam), 1.0, lam), dt)
    missing = np.isnan(lam.real)
    pick = {k: np.where(missing, np.nan, v) for k, v in converted.items()}
    return StateModes(pick["frequency"], pick["damping"], pick["time_constant"],
                      np.where(missing, np.nan, np.abs(lam)), _padded(real), _padded(negative),
                      eig)


def _spread(values: np.ndarray) -> dict[str, float] | None:
    """mean, std, 5th/50th/95th percentiles of the finite values (None if there are none)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None
    p5, p50, p95 = np.percentile(finite, [5, 50, 95])
    return {"mean": float(finite.mean()), "std": float(finite.std()), "p5": float(p5),
            "median": float(p50), "p95": float(p95)}


def mode_table(modes: StateModes, dt: float) -> list[dict[str, Any]]:
    """One entry per oscillatory rank (0 = slowest-decaying pair), then the real modes."""
    table: list[dict[str, Any]] = []
    for rank in range(modes.frequency.shape[1]):
        present = np.isfinite(modes.frequency[:, rank])
        table.append({
            "kind": "oscillatory", "rank": rank, "share_of_states": float(present.mean()),
            "frequency_rad_s": _spread(modes.frequency[:, rank]),
            "damping_ratio": _spread(modes.damping[:, rank]),
            "time_constant_s": _spread(modes.time_constant[:, rank]),
            "eigenvalue_magnitude": _spread(modes.magnitude[:, rank]),
        })
    for rank in range(modes.real.shape[1]):
        lam = modes.real[:, rank]
        present = np.isfinite(lam)
        s = np.where(present, np.log(np.where(present, lam, 1.0)) / dt, np.nan)
        with np.errstate(divide="ignore"):
            tau = -1.0 / s
        table.append({
            "kind": "real", "rank": rank, "share_of_states": float(present.mean()),
            "eigenvalue": _spread(lam), "rate_1_s": _spread(s), "time_constant_s": _spread(tau),
        })
    return table


def basis_usage(alpha: np.ndarray, outputs: np.ndarray, output_names: list[str]
                ) -> dict[str, Any]:
    """How the basis weights partition the visited states: per basis its mean weight, the share
    of states where it has the largest weight and where those states lie (mean and std of each
    output there), plus the mean entropy of `alpha` against the uniform mix's log K."""
    flat = alpha.reshape(-1, alpha.shape[-1]).astype(np.float64)
    out = outputs.reshape(-1, outputs.shape[-1])
    winner = flat.argmax(1)
    entropy = -(flat * np.log(np.clip(flat, 1e-12, None))).sum(1)
    bases = []
    for k in range(flat.shape[1]):
        here = winner == k
        entry: dict[str, Any] = {"basis": k, "mean_weight": float(flat[:, k].mean()),
                                 "share_dominant": float(here.mean())}
        if here.any():
            entry["where"] = {name: {"mean": float(out[here, j].mean()),
                                     "std": float(out[here, j].std())}
                              for j, name in enumerate(output_names)}
        bases.append(entry)
    return {"num_basis": int(flat.shape[1]),
            "mean_entropy_nats": float(entropy.mean()),
            "uniform_entropy_nats": float(np.log(flat.shape[1])),
            "max_weight": _spread(flat.max(1)),
            "bases": bases}


def learned_noise_and_initial_belief(model: torch.nn.Module) -> dict[str, Any]:
    """The transition noise (diagonal, upper and lower halves; with state-dependent noise its
    constant part) and the initial belief the filter starts from."""
    upper, lower = (q.detach().double().numpy() for q in model.transition.noise())
    start = model.initial_state(1)
    return {
        "process_noise": {
            "upper": upper.tolist(), "lower": lower.tolist(),
            "state_dependent": model.transition.noise_net is not None,
        },
        "initial_belief": {
            "learned": model.initial_mean is not None,
            "mean": start.mean[0].detach().double().numpy().tolist(),
            "var_upper": start.var_upper[0].detach().double().numpy().tolist(),
            "var_lower": start.var_lower[0].detach().double().numpy().tolist(),
            "var_side": start.var_side[0].detach().double().numpy().tolist(),
        },
    }


def analyse(trajectories: Trajectories, dt: float, max_states: int = MAX_STATES
            ) -> tuple[dict[str, Any], StateModes, np.ndarray]:
    """The report's dynamics part, the per-state modes and the flat state indices they are of
    (all states, or an even subsample of ``max_states``)."""
    S, T = trajectories.alpha.shape[:2]
    total = S * T
    index = np.arange(total) if total <= max_states else np.linspace(
        0, total - 1, max_states).round().astype(np.int64)
    matrices = trajectories.matrices.reshape(total, *trajectories.matrices.shape[2:])[index]
    modes = state_modes(matrices, dt)
    dominant = {
        "frequency": modes.frequency[:, 0] if modes.frequency.shape[1] else np.full(len(index),
                                                                                  np.nan),
        "damping": modes.damping[:, 0] if modes.damping.shape[1] else np.full(len(index),
                                                                            np.nan),
        "time_constant": (modes.time_constant[:, 0] if modes.time_constant.shape[1]
                          else np.full(len(index), np.nan)),
    }
    frequency, damping = _spread(dominant["frequency"]), _spread(dominant["damping"])
    tau = _spread(dominant["time_constant"])
    negative_counts = np.isfinite(modes.negative).sum(1)
    report: dict[str, Any] = {
        "dt": dt,
        "state_dim": int(matrices.shape[-1]),
        "states_analysed": len(index),
        "states_visited": int(total),
        "dominant_frequency_rad_s": None if frequency is None else frequency["mean"],
        "dominant_damping_ratio": None if damping is None else damping["mean"],
        "dominant_time_constant_s": None if tau is None else tau["median"],
        "dominant_spread": {"frequency_rad_s": frequency, "damping_ratio": damping,
                            "time_constant_s": tau,
                            "share_of_states_with_a_pair": float(
                                np.isfinite(dominant["frequency"]).mean())},
        "modes": mode_table(modes, dt),
        "negative_real": {
            "note": "negative real eigenvalues flip sign every step and have no continuous-time "
                    "equivalent (log(lambda) / dt would sit at the Nyquist frequency pi / dt); "
                    "they are counted, not converted",
            "per_state": _spread(negative_counts.astype(np.float64)),
            "eigenvalue": _spread(modes.negative),
        },
        "eigenvalue_magnitude_max": _spread(np.abs(modes.eigenvalues).max(1)),
    }
    return report, modes, index
