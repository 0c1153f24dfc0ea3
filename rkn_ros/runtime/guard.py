"""The output guard: a step's non-finite mean, variance or belief never leaves the estimator.

A step whose normalized mean or variance is not finite is undone: the backend puts back the
prior that step read (`StepBackend.rollback`, free on every backend), and the last good
estimate is handed out instead of the step's (the initial belief's before any good step). If
the next step fails as well, the prior itself may be what is broken, so the belief is reset to
the initial one. Checking the outputs covers the belief: every part of the prior reaches the
decoded mean or variance (the RKN's decoders read the whole posterior mean and variances, the
LSTM/GRU's output mixes its whole state), so a non-finite prior shows in the next step.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from rkn_ros.runtime.backends import StepBackend


class Guarded(NamedTuple):
    """A step's normalized mean and variance ``[output_dim]`` float64, and whether they are the
    fallback (the step itself was not finite)."""

    mean: np.ndarray
    var: np.ndarray
    guarded: bool


class BeliefGuard:
    """Checks a backend's step outputs and undoes the steps that are not finite (module doc).

    ``fallback``: the estimate handed out when no step has been good yet (the initial
    belief's, finite: the estimator refuses a model whose initial estimate is not).
    """

    def __init__(self, backend: StepBackend, fallback: tuple[np.ndarray, np.ndarray]) -> None:
        self._backend = backend
        self._initial = backend.new_slot()
        self._fallback = fallback
        self._last = fallback
        self._failed_last = False
        self.nonfinite_steps = 0  # every step that was not finite, since construction

    def check(self, mean: np.ndarray, var: np.ndarray) -> Guarded:
        """The step's outputs if finite, else the last good estimate with the step undone (or
        the belief reset after two failures in a row). Call right after the backend's run."""
        # in Python floats: a numpy reduction right after the model step costs ~4 us here
        # (measured in the step loop), a list of a few floats well under 1 us
        if all(map(math.isfinite, mean.tolist())) and all(map(math.isfinite, var.tolist())):
            self._last = (mean, var)
            self._failed_last = False
            return Guarded(mean, var, False)
        self.nonfinite_steps += 1
        if self._failed_last:
            self.reset()
        else:
            self._backend.rollback()
        self._failed_last = True
        return Guarded(*self._last, True)

    def reset(self) -> None:
        """Back to the initial belief and estimate."""
        self._backend.load_state(self._initial)
        self._last = self._fallback
        self._failed_last = False
