"""Step latency statistics over a sliding window (a fixed ring buffer, no growth per step)."""

from __future__ import annotations

import numpy as np


class LatencyStats:
    """The last ``window`` durations in a preallocated ring buffer; percentiles in milliseconds."""

    def __init__(self, window: int = 1000) -> None:
        if window < 1:
            raise ValueError(f"latency window must be >= 1, got {window}")
        self._samples = np.zeros(window, dtype=np.float64)
        self._next = 0
        self._count = 0
        self.total = 0  # every sample ever added, for rates and counters

    def add(self, seconds: float) -> None:
        """Record one duration in seconds."""
        self._samples[self._next] = seconds
        self._next = (self._next + 1) % self._samples.size
        self._count = min(self._count + 1, self._samples.size)
        self.total += 1

    def add_to_last(self, seconds: float) -> None:
        """Add ``seconds`` to the last duration recorded (work of that step done later)."""
        if self._count:
            self._samples[self._next - 1] += seconds

    def clear(self) -> None:
        """Forget every sample (``total`` included)."""
        self._next = 0
        self._count = 0
        self.total = 0

    @property
    def count(self) -> int:
        """Samples currently in the window."""
        return self._count

    def percentile_ms(self, q: float) -> float:
        """The q-th percentile (0..100) of the window in milliseconds; NaN while empty."""
        if self._count == 0:
            return float("nan")
        return float(np.percentile(self._samples[: self._count], q)) * 1e3

    @property
    def p50_ms(self) -> float:
        """Median step latency over the window, ms."""
        return self.percentile_ms(50.0)

    @property
    def p99_ms(self) -> float:
        """99th percentile step latency over the window, ms."""
        return self.percentile_ms(99.0)

    @property
    def max_ms(self) -> float:
        """Largest latency in the window, ms."""
        return float(self._samples[: self._count].max()) * 1e3 if self._count else float("nan")

    def summary(self) -> dict[str, float]:
        """``{"count", "p50_ms", "p99_ms", "max_ms"}`` for reports and diagnostics."""
        return {
            "count": float(self._count),
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
        }
