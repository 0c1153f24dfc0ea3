"""The paper's correlated image noise and frame dropping for imputation.

Noise (Becker et al. 2019): per sequence a factor ``f0 ~ U(0, 1)`` follows a random walk
``f_t+1 = clip(f_t + U(-0.2, 0.2), 0, 1)``; with ``t1 ~ U(0, 0.25)`` and ``t2 ~ U(0.75, 1)`` per
sequence it is rescaled ``f = clip((f - t1) / (t2 - t1), 0, 1)``, so long stretches are fully
clean (1) or pure noise (0). A frame becomes ``f * image + (1 - f) * uniform_noise``; the first
``clean_first`` frames have ``f = 1``.

Imputation: each frame is kept with probability ``keep_prob`` (the first ``keep_first`` always);
dropped frames are zeroed and flagged invalid.
"""

from __future__ import annotations

import numpy as np

CLEAN_FIRST = 5


def noise_factors(rng: np.random.Generator, num_sequences: int, steps: int,
                  step_range: float = 0.2, clean_first: int = CLEAN_FIRST) -> np.ndarray:
    """Correlated noise factors ``[sequence, time]`` float64 in [0, 1] (1 = clean)."""
    if num_sequences < 1 or steps < 1:
        raise ValueError(f"noise_factors: 'num_sequences' and 'steps' must be >= 1, received "
                         f"{num_sequences} and {steps}")
    factors = np.empty((num_sequences, steps))
    factors[:, 0] = rng.uniform(0.0, 1.0, size=num_sequences)
    for t in range(1, steps):
        step = rng.uniform(-step_range, step_range, size=num_sequences)
        factors[:, t] = np.clip(factors[:, t - 1] + step, 0.0, 1.0)
    t1 = rng.uniform(0.0, 0.25, size=(num_sequences, 1))
    t2 = rng.uniform(0.75, 1.0, size=(num_sequences, 1))
    factors = np.clip((factors - t1) / (t2 - t1), 0.0, 1.0)
    factors[:, :clean_first] = 1.0
    return factors


def apply_noise(images: np.ndarray, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blend ``uint8 [..., H, W]`` images with uniform noise by ``factors`` (shape ``[...]``).

    Returns ``uint8`` images of the same shape: ``f * image + (1 - f) * U(0, 255)``.
    """
    if images.dtype != np.uint8:
        raise ValueError(f"apply_noise: 'images' must be uint8, received {images.dtype}")
    if factors.shape != images.shape[:-2]:
        raise ValueError(f"apply_noise: 'factors' must have shape {list(images.shape[:-2])}, "
                         f"received {list(factors.shape)}")
    noise = rng.uniform(0.0, 255.0, size=images.shape)
    f = factors[..., None, None]
    return np.rint(f * images + (1.0 - f) * noise).astype(np.uint8)


def keep_mask(rng: np.random.Generator, num_sequences: int, steps: int, keep_prob: float = 0.5,
              keep_first: int = CLEAN_FIRST) -> np.ndarray:
    """Frames kept for imputation, ``bool [sequence, time]``; the first ``keep_first`` are kept."""
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"keep_mask: 'keep_prob' must be in (0, 1], received {keep_prob}")
    valid = rng.uniform(size=(num_sequences, steps)) < keep_prob
    valid[:, :keep_first] = True
    return valid


class CorrelatedNoise:
    """The same noise process one frame at a time, for a streaming simulator.

    The random walk matches :func:`noise_factors` in distribution (per-episode ``t1``, ``t2``
    drawn at :meth:`reset`), not draw for draw.
    """

    def __init__(self, rng: np.random.Generator, step_range: float = 0.2,
                 clean_first: int = CLEAN_FIRST) -> None:
        self._rng = rng
        self._step_range = step_range
        self._clean_first = clean_first
        self.reset()

    def reset(self) -> None:
        """Start a new episode: new walk, new ``t1``, ``t2``; the next frames are clean."""
        self._walk = float(self._rng.uniform(0.0, 1.0))
        self._t1 = float(self._rng.uniform(0.0, 0.25))
        self._t2 = float(self._rng.uniform(0.75, 1.0))
        self._tick = 0

    def step(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """Noisy version of one ``uint8 [H, W]`` image and the factor used (1 = clean)."""
        if self._tick > 0:
            self._walk = float(np.clip(
                self._walk + self._rng.uniform(-self._step_range, self._step_range), 0.0, 1.0))
        factor = float(np.clip((self._walk - self._t1) / (self._t2 - self._t1), 0.0, 1.0))
        if self._tick < self._clean_first:
            factor = 1.0
        self._tick += 1
        noisy = apply_noise(image[None], np.array([factor]), self._rng)[0]
        return noisy, factor
