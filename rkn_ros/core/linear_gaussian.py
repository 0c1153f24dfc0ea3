"""A known linear-Gaussian system and its exact Kalman filter: the yardstick for the RKN.

If an RKN trained on data from such a system matches the exact filter's likelihood and
calibration, it has learned to *be* the Kalman filter, uncertainty included (the seed test and
benchmarks/linear_gaussian.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LinearGaussianSystem:
    """`x_{t+1} = A x_t + N(0, Q)`, `y_t = H x_t + N(0, R)`, `x_0 ~ N(0, P0)`.

    A, Q, P0: [n, n]; H: [k, n]; R: [k, k].
    """

    A: np.ndarray
    Q: np.ndarray
    H: np.ndarray
    R: np.ndarray
    P0: np.ndarray

    def simulate(self, sequences: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """States [sequences, steps, n] and observations [sequences, steps, k] (float64)."""
        rng = np.random.default_rng(seed)
        n, k = self.A.shape[0], self.H.shape[0]
        x = rng.multivariate_normal(np.zeros(n), self.P0, size=sequences)
        states = np.empty((sequences, steps, n))
        for t in range(steps):
            states[:, t] = x
            x = x @ self.A.T + rng.multivariate_normal(np.zeros(n), self.Q, size=sequences)
        noise = rng.multivariate_normal(np.zeros(k), self.R, size=(sequences, steps))
        return states, states @ self.H.T + noise


def damped_oscillator(dt: float = 0.1, omega: float = 1.0, damping: float = 0.2,
                      q_position: float = 0.2, q_velocity: float = 2.0,
                      r_position: float = 16.0, p0: float = 40.0) -> LinearGaussianSystem:
    """Position and velocity of a damped spring (semi-implicit Euler step), position observed.

    Process noise is diagonal and the velocity is never observed: the filter has to infer it.
    """
    # v' = v + dt (-omega^2 p - damping v), then p' = p + dt v'
    velocity_row = np.array([-(omega**2) * dt, 1.0 - damping * dt])
    A = np.stack([np.array([1.0, 0.0]) + dt * velocity_row, velocity_row])
    return LinearGaussianSystem(
        A=A,
        Q=np.diag([q_position, q_velocity]),
        H=np.array([[1.0, 0.0]]),
        R=np.array([[r_position]]),
        P0=np.eye(2) * p0,
    )


def kalman_filter(system: LinearGaussianSystem, observations: np.ndarray,
                  valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact filtered means and marginal variances [sequences, steps, n] given y_1..y_t.

    observations [sequences, steps, k]; valid [sequences, steps] bool (False: no update).
    """
    sequences, steps, _ = observations.shape
    n = system.A.shape[0]
    if valid is None:
        valid = np.ones((sequences, steps), dtype=bool)
    mean = np.zeros((sequences, n))
    cov = np.broadcast_to(system.P0, (sequences, n, n)).copy()
    means = np.empty((sequences, steps, n))
    variances = np.empty((sequences, steps, n))
    H, R = system.H, system.R
    for t in range(steps):
        S = H @ cov @ H.T + R
        K = cov @ H.T @ np.linalg.inv(S)
        innovation = observations[:, t] - mean @ H.T
        upd_mean = mean + np.einsum("snk,sk->sn", K, innovation)
        upd_cov = cov - K @ H @ cov
        keep = valid[:, t, None]
        mean = np.where(keep, upd_mean, mean)
        cov = np.where(keep[..., None], upd_cov, cov)
        means[:, t] = mean
        variances[:, t] = np.diagonal(cov, axis1=1, axis2=2)
        mean = mean @ system.A.T
        cov = system.A @ cov @ system.A.T + system.Q
    return means, variances


def gaussian_nll_np(mean: np.ndarray, var: np.ndarray, target: np.ndarray) -> float:
    """The paper's NLL in numpy: per step summed over dimensions, averaged over steps/sequences."""
    per_dim = 0.5 * (np.log(2 * np.pi) + np.log(var) + (target - mean) ** 2 / var)
    return float(per_dim.sum(-1).mean())
