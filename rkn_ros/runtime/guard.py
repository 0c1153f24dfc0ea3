"""The output guard: a step's non-finite mean, variance or belief never leaves the estimator.

Before each step the prior is copied into a spare slot; a step whose normalized mean and
variance are finite makes that copy the last good belief (swapping slots, no copy). A step that
is not finite puts the last good belief back (a reset where there is none, or where the last
good one already failed the tick before) and hands out the last good estimate instead of its
own. Checking the outputs covers the belief: every part of the prior reaches the decoded mean or
variance of the next step (the RKN's decoders read the whole posterior mean and variances, the
LSTM/GRU's output mixes its whole state), so a non-finite prior shows there one tick later.
"""

from __future__ import annotations

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
    """Keeps the last good belief and estimate of a backend (see module doc).

    ``fallback``: the estimate handed out when no step has been good yet (the initial
    belief's, finite: the estimator refuses a model whose initial estimate is not).
    """

    def __init__(self, backend: StepBackend, fallback: tuple[np.ndarray, np.ndarray]) -> None:
        self._backend = backend
        self._initial = backend.new_slot()
        self._slots = [backend.new_slot(), backend.new_slot()]
        self._spare = 0  # the slot the next `before_step` writes; the other is the last good
        self._fallback = fallback
        self._last: tuple[np.ndarray, np.ndarray] | None = None
        self._failed_last = False
        self.nonfinite_steps = 0  # every step that was not finite, since construction

    def before_step(self) -> None:
        """Keep the prior the coming step reads (call just before the backend runs)."""
        self._backend.save_state(self._slots[self._spare])

    def check(self, mean: np.ndarray, var: np.ndarray) -> Guarded:
        """The step's outputs if finite (and their prior becomes the last good belief), else
        the last good estimate with the last good belief (or the initial one) put back."""
        if np.isfinite(mean).all() and np.isfinite(var).all():
            self._spare = 1 - self._spare
            self._last = (mean, var)
            self._failed_last = False
            return Guarded(mean, var, False)
        self.nonfinite_steps += 1
        if self._last is None or self._failed_last:
            self._backend.load_state(self._initial)
            self._last = None
        else:
            self._backend.load_state(self._slots[1 - self._spare])
        self._failed_last = True
        mean, var = self._fallback if self._last is None else self._last
        return Guarded(mean, var, True)

    def reset(self) -> None:
        """Back to the initial belief; nothing good kept."""
        self._backend.load_state(self._initial)
        self._last = None
        self._failed_last = False
