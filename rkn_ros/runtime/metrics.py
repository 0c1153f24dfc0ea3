"""Online accuracy of estimates against the truth: RMSE, Gaussian NLL, sigma coverage.

Definitions follow the offline evaluation (Becker et al. 2019): the NLL per tick is
``0.5 * (log(2 pi) + log var + err^2 / var)`` summed over the dimensions and averaged over
ticks; RMSE is over all elements; coverage is the share of elements with ``|err| <= k std``.
Angle errors are wrapped to [-pi, pi) (an estimate of pi - 0.01 for a truth of -pi + 0.01 is
0.02 rad off), so the figures are comparable with the offline ``angle_rmse``.
"""

from __future__ import annotations

import math

import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)
MIN_STD = 1e-9  # an estimate claiming zero spread is scored as this spread, not as infinity


def wrapped_error(estimate: np.ndarray, truth: np.ndarray, wrap: np.ndarray | bool) -> np.ndarray:
    """``estimate - truth``, wrapped to [-pi, pi) where ``wrap`` is true."""
    error = np.asarray(estimate, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return np.where(wrap, (error + np.pi) % (2.0 * np.pi) - np.pi, error)


class OnlineMetrics:
    """Running sums over matched (estimate, std, truth) samples of ``dim`` numbers each."""

    def __init__(self, dim: int, wrap: np.ndarray | bool = True) -> None:
        if dim < 1:
            raise ValueError(f"OnlineMetrics: dim must be >= 1, got {dim}")
        self.dim = dim
        self.wrap = np.broadcast_to(np.asarray(wrap, dtype=bool), (dim,)).copy()
        self.reset()

    def reset(self) -> None:
        """Forget every sample."""
        self.count = 0
        self._sq = np.zeros(self.dim)
        self._nll = 0.0
        self._in1 = np.zeros(self.dim)
        self._in2 = np.zeros(self.dim)

    def add(self, estimate: np.ndarray, std: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """Score one tick (each ``[dim]``); returns the (wrapped) error."""
        estimate, std, truth = (np.asarray(a, dtype=np.float64) for a in (estimate, std, truth))
        for name, array in (("estimate", estimate), ("std", std), ("truth", truth)):
            if array.shape != (self.dim,):
                raise ValueError(
                    f"OnlineMetrics.add: {name} must have shape ({self.dim},), got {array.shape}"
                )
            if not np.all(np.isfinite(array)):
                raise ValueError(f"OnlineMetrics.add: {name} holds NaN or inf")
        error = wrapped_error(estimate, truth, self.wrap)
        std = np.maximum(std, MIN_STD)
        var = std * std
        self.count += 1
        self._sq += error * error
        self._nll += float(0.5 * np.sum(_LOG_2PI + np.log(var) + error * error / var))
        self._in1 += np.abs(error) <= std
        self._in2 += np.abs(error) <= 2.0 * std
        return error

    def summary(self) -> dict[str, float | int | list[float]]:
        """``count``, ``rmse``, ``rmse_per_dim``, ``nll``, ``log_likelihood``,
        ``coverage_1sigma``, ``coverage_2sigma`` (NaN while empty)."""
        if self.count == 0:
            nan = float("nan")
            return {
                "count": 0,
                "rmse": nan,
                "rmse_per_dim": [nan] * self.dim,
                "nll": nan,
                "log_likelihood": nan,
                "coverage_1sigma": nan,
                "coverage_2sigma": nan,
            }
        n = self.count
        return {
            "count": n,
            "rmse": float(np.sqrt(self._sq.sum() / (n * self.dim))),
            "rmse_per_dim": [float(v) for v in np.sqrt(self._sq / n)],
            "nll": self._nll / n,
            "log_likelihood": -self._nll / n,
            "coverage_1sigma": float(self._in1.sum() / (n * self.dim)),
            "coverage_2sigma": float(self._in2.sum() / (n * self.dim)),
        }
