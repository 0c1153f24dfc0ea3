"""A stateful pendulum simulator stepped one tick at a time (for the ROS simulator node).

It shares the physics (:mod:`rkn_ros.sim.pendulum`), the renderer (:mod:`rkn_ros.sim.render`)
and the image noise (:mod:`rkn_ros.sim.image_noise`) with the batch generator::

    sim = PendulumSimulator(PendulumParams.quad_link(), RenderParams(image_size=48), seed=0)
    image, angles, velocities = sim.reset()      # uint8 [H, W], float64 [links] (rad, rad/s)
    image, angles, velocities = sim.step()       # one dt later
    sim.noise_factor                             # 1.0 = clean frame (always 1.0 with noise off)

Angles are wrapped to [-pi, pi), 0 = hanging down, absolute per link (not relative to the
previous link).
"""

from __future__ import annotations

import numpy as np

from rkn_ros.sim.image_noise import CorrelatedNoise
from rkn_ros.sim.pendulum import (
    PendulumParams,
    chain_constants,
    initial_state,
    step_state,
    wrap_angle,
)
from rkn_ros.sim.render import RenderParams, render


class PendulumSimulator:
    """One pendulum (1..n links) with optional correlated image noise."""

    def __init__(self, params: PendulumParams | None = None,
                 render_params: RenderParams | None = None, seed: int = 0,
                 image_noise: bool = False) -> None:
        self.params = params if params is not None else PendulumParams()
        self.render_params = render_params if render_params is not None else RenderParams()
        self.render_params.levels(self.params.links)    # fail now on a grey-level count mismatch
        self._rng = np.random.default_rng(seed)
        self._const = chain_constants(self.params)
        self._noise = CorrelatedNoise(self._rng) if image_noise else None
        self.noise_factor = 1.0
        self._theta = np.zeros((1, self.params.links))
        self._omega = np.zeros((1, self.params.links))

    def reset(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Draw a new initial state; returns the first (image, angles, velocities)."""
        self._theta, self._omega = initial_state(self.params, 1, self._rng)
        if self._noise is not None:
            self._noise.reset()
        return self._observe()

    def step(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance one ``dt`` (with process noise); returns (image, angles, velocities)."""
        self._theta, self._omega = step_state(self._theta, self._omega, self.params, self._const,
                                              self._rng)
        return self._observe()

    def _observe(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = render(self._theta, self.params.lengths, self.render_params)[0]
        if self._noise is not None:
            image, self.noise_factor = self._noise.step(image)
        return image, wrap_angle(self._theta[0]), self._omega[0].copy()
