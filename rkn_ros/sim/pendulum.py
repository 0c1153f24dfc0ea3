"""n-link pendulum physics: a planar chain of uniform slender rods, vectorized over sequences.

Model (Lagrangian, absolute link angles ``theta_i`` measured from the downward vertical, so
``theta = 0`` hangs at rest). Rod ``i`` has mass ``m_i``, length ``l_i``, its centre of mass at
``l_i / 2`` and inertia ``m_i l_i^2 / 12`` about it (so a single link has ``m l^2 / 3`` about
the pivot, as in the paper). The equations of motion are

    sum_k C_jk cos(theta_j - theta_k) thetadd_k + sum_k C_jk sin(theta_j - theta_k) thetad_k^2
        + g G_j sin(theta_j) = tau_j

with constant ``C`` and ``G`` (see :func:`chain_constants`) and viscous joint friction
``tau = -b D thetad``: each joint damps the velocity of its link relative to the previous one
(``D = L^T L`` with ``L`` the difference matrix), which removes energy and never adds it.

Process noise: after every ``dt`` step, ``N(0, process_noise_std^2)`` is added to each angular
velocity (the paper's pendulum noise). The ``dt`` step is integrated with ``round(dt /
sub_step)`` sub-steps of either semi-implicit (symplectic) Euler, the paper's choice with 1e-4 s
sub-steps, or classical RK4, used with 2e-3 s sub-steps on the quad-link (worst energy drift
1.4e-4 relative over 1,000 steps from 100 random starts without friction; the tests check
< 0.1 %).

Difference from the paper's reference code: it uses ``g m l / I`` as the gravity gain of the single
link (a point-mass torque on a rod's inertia); a uniform rod has ``g m (l/2) / I``, which we use,
so our single pendulum swings ``sqrt(2)`` slower at the same length.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import numpy as np

INTEGRATORS = ("symplectic_euler", "rk4")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_positive_tuple(name: str, values: tuple[float, ...], links: int) -> None:
    if len(values) != links:
        raise ValueError(f"pendulum parameter '{name}': expected {links} values (one per link), "
                         f"received {len(values)}: {list(values)}")
    for v in values:
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"pendulum parameter '{name}': every value must be a finite "
                             f"number > 0, received {list(values)}")


@dataclass(frozen=True)
class PendulumParams:
    """Physical and integration parameters (SI units: kg, m, s, rad).

    Defaults are the paper's single pendulum; :meth:`quad_link` gives the quad-link preset.
    """

    links: int = 1
    masses: tuple[float, ...] = (1.0,)             # kg per link
    lengths: tuple[float, ...] = (1.0,)            # m per link
    friction: float = 0.1                          # N m s / rad, viscous, per joint
    gravity: float = 9.81                          # m / s^2
    dt: float = 0.05                               # s per recorded step
    sub_step: float = 1e-4                         # s per integration sub-step
    integrator: str = "symplectic_euler"           # "symplectic_euler" | "rk4"
    process_noise_std: float = 0.1                 # rad / s, added to velocities every dt
    init_angle_low: float = 0.0                    # rad, initial angles ~ U(low, high)
    init_angle_high: float = 2.0 * math.pi         # rad
    init_velocity: float = 0.0                     # rad / s

    def __post_init__(self) -> None:
        if not isinstance(self.links, int) or isinstance(self.links, bool) or self.links < 1:
            raise ValueError(f"pendulum parameter 'links': expected an integer >= 1, "
                             f"received {self.links!r}")
        # YAML hands over whatever the user wrote: name the parameter before float() fails
        for name in ("masses", "lengths"):
            values = getattr(self, name)
            if not isinstance(values, (list, tuple)) or not all(_is_number(v) for v in values):
                raise ValueError(f"pendulum parameter '{name}': expected a list of numbers (one "
                                 f"per link), received {values!r}")
        for name in ("friction", "gravity", "dt", "sub_step", "process_noise_std",
                     "init_angle_low", "init_angle_high", "init_velocity"):
            if not _is_number(getattr(self, name)):
                raise ValueError(f"pendulum parameter '{name}': expected a number, received "
                                 f"{getattr(self, name)!r}")
        object.__setattr__(self, "masses", tuple(float(m) for m in self.masses))
        object.__setattr__(self, "lengths", tuple(float(v) for v in self.lengths))
        _check_positive_tuple("masses", self.masses, self.links)
        _check_positive_tuple("lengths", self.lengths, self.links)
        for name in ("friction", "gravity", "process_noise_std"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"pendulum parameter '{name}': expected a finite number >= 0, "
                                 f"received {value!r}")
        for name in ("dt", "sub_step"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"pendulum parameter '{name}': expected a finite number > 0 "
                                 f"(seconds), received {value!r}")
        if self.sub_step > self.dt:
            raise ValueError(f"pendulum parameter 'sub_step' ({self.sub_step} s) must not exceed "
                             f"'dt' ({self.dt} s)")
        ratio = self.dt / self.sub_step
        if abs(ratio - round(ratio)) > 1e-6 * ratio:
            raise ValueError(f"pendulum parameter 'dt' ({self.dt} s) must be a whole multiple of "
                             f"'sub_step' ({self.sub_step} s)")
        if self.integrator not in INTEGRATORS:
            raise ValueError(f"pendulum parameter 'integrator': expected one of {INTEGRATORS}, "
                             f"received {self.integrator!r}")
        if not self.init_angle_low <= self.init_angle_high:
            raise ValueError("pendulum parameters 'init_angle_low' <= 'init_angle_high' expected, "
                             f"received {self.init_angle_low} > {self.init_angle_high}")

    @property
    def substeps(self) -> int:
        """Integration sub-steps per ``dt``."""
        return round(self.dt / self.sub_step)

    @classmethod
    def quad_link(cls, **overrides: object) -> PendulumParams:
        """The paper's quad-link: unit masses and lengths, friction 0.1, angles U(-pi, pi).

        RK4 with 2e-3 s sub-steps: 100 force evaluations per ``dt`` instead of the 500 of 1e-4 s
        Euler, for an energy drift below 0.1 % over 1,000 steps (see the module docstring).
        """
        values: dict[str, object] = {
            "links": 4, "masses": (1.0,) * 4, "lengths": (1.0,) * 4, "sub_step": 2e-3,
            "integrator": "rk4", "init_angle_low": -math.pi, "init_angle_high": math.pi,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, values: dict) -> PendulumParams:
        """Build from a plain mapping (e.g. YAML); unknown keys are rejected by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown pendulum parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain mapping (lists, floats) for metadata files."""
        out: dict = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


UNITS = {
    "links": "1", "masses": "kg", "lengths": "m", "friction": "N m s / rad", "gravity": "m / s^2",
    "dt": "s", "sub_step": "s", "integrator": "-", "process_noise_std": "rad / s",
    "init_angle_low": "rad", "init_angle_high": "rad", "init_velocity": "rad / s",
}


@dataclass(frozen=True)
class ChainConstants:
    """Angle-independent parts of the chain's equations of motion (see module docstring)."""

    inertia: np.ndarray    # C [n, n]: M(theta) = C * cos(theta_j - theta_k)
    gravity: np.ndarray    # g * G [n]: gravity torque = gravity * sin(theta)
    damping: np.ndarray    # b * L^T L [n, n]
    inv_inertia_1: float = field(default=0.0)  # 1 / C for the single link fast path


def chain_constants(params: PendulumParams) -> ChainConstants:
    """Constant matrices of the rod chain's Lagrangian dynamics."""
    n = params.links
    m = np.asarray(params.masses, dtype=np.float64)
    length = np.asarray(params.lengths, dtype=np.float64)
    # mass of everything beyond link i (those rods hang from its far end)
    beyond = np.concatenate([np.cumsum(m[::-1])[::-1][1:], [0.0]])
    C = np.zeros((n, n))
    for j in range(n):
        C[j, j] = m[j] * length[j] ** 2 / 3.0 + beyond[j] * length[j] ** 2
        for k in range(j + 1, n):
            C[j, k] = C[k, j] = length[j] * length[k] * (m[k] / 2.0 + beyond[k])
    G = params.gravity * length * (m / 2.0 + beyond)
    L = np.eye(n) - np.eye(n, k=-1)
    D = params.friction * L.T @ L
    return ChainConstants(C, G, D, 1.0 / C[0, 0])


def accelerations(theta: np.ndarray, omega: np.ndarray, const: ChainConstants) -> np.ndarray:
    """Angular accelerations ``[batch, links]`` for angles and velocities ``[batch, links]``."""
    if theta.shape[-1] == 1:
        return (-const.gravity[0] * np.sin(theta) - const.damping[0, 0] * omega) \
            * const.inv_inertia_1
    # cos/sin of the n^2 angle differences from n sines and cosines: transcendental calls
    # dominate the cost otherwise
    c, s = np.cos(theta), np.sin(theta)
    cos_diff = c[:, :, None] * c[:, None, :] + s[:, :, None] * s[:, None, :]
    sin_diff = s[:, :, None] * c[:, None, :] - c[:, :, None] * s[:, None, :]
    M = const.inertia * cos_diff
    coriolis = np.matmul(const.inertia * sin_diff, (omega * omega)[..., None])[..., 0]
    rhs = -coriolis - const.gravity * s - omega @ const.damping.T
    return np.linalg.solve(M, rhs[..., None])[..., 0]


def integrate_dt(theta: np.ndarray, omega: np.ndarray, params: PendulumParams,
                 const: ChainConstants) -> tuple[np.ndarray, np.ndarray]:
    """Advance ``[batch, links]`` angles and velocities by one ``dt`` without process noise."""
    h = params.sub_step
    if params.integrator == "symplectic_euler" and theta.size == 1:
        # one single pendulum (the ROS node's case): the same update on Python floats, ~30x
        # cheaper than 500 rounds of numpy calls on one-element arrays
        th, om = float(theta.flat[0]), float(omega.flat[0])
        gravity, damping = float(const.gravity[0]), float(const.damping[0, 0])
        inv_inertia = float(const.inv_inertia_1)
        for _ in range(params.substeps):
            om += h * ((-gravity * math.sin(th) - damping * om) * inv_inertia)
            th += h * om
        return np.full_like(theta, th), np.full_like(omega, om)
    if params.integrator == "symplectic_euler":
        for _ in range(params.substeps):
            omega = omega + h * accelerations(theta, omega, const)
            theta = theta + h * omega
        return theta, omega
    for _ in range(params.substeps):
        a1 = accelerations(theta, omega, const)
        t2, w2 = theta + 0.5 * h * omega, omega + 0.5 * h * a1
        a2 = accelerations(t2, w2, const)
        t3, w3 = theta + 0.5 * h * w2, omega + 0.5 * h * a2
        a3 = accelerations(t3, w3, const)
        t4, w4 = theta + h * w3, omega + h * a3
        a4 = accelerations(t4, w4, const)
        theta = theta + h / 6.0 * (omega + 2.0 * w2 + 2.0 * w3 + w4)
        omega = omega + h / 6.0 * (a1 + 2.0 * a2 + 2.0 * a3 + a4)
    return theta, omega


def energy(theta: np.ndarray, omega: np.ndarray, params: PendulumParams) -> np.ndarray:
    """Total mechanical energy ``[batch]`` in J, zero when the chain hangs at rest."""
    const = chain_constants(params)
    diff = theta[:, :, None] - theta[:, None, :]
    kinetic = 0.5 * np.einsum("bj,bjk,bk->b", omega, const.inertia * np.cos(diff), omega)
    potential = (const.gravity * (1.0 - np.cos(theta))).sum(axis=-1)
    return kinetic + potential


def wrap_angle(theta: np.ndarray) -> np.ndarray:
    """Angles mapped to [-pi, pi)."""
    return (theta + np.pi) % (2.0 * np.pi) - np.pi


def initial_state(params: PendulumParams, num: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random initial angles ``U(low, high)`` and constant velocities, each ``[num, links]``."""
    theta = rng.uniform(params.init_angle_low, params.init_angle_high, size=(num, params.links))
    omega = np.full((num, params.links), params.init_velocity, dtype=np.float64)
    return theta, omega


def step_state(theta: np.ndarray, omega: np.ndarray, params: PendulumParams,
               const: ChainConstants, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One recorded step: integrate ``dt``, then add the velocity process noise."""
    theta, omega = integrate_dt(theta, omega, params, const)
    if params.process_noise_std > 0:
        omega = omega + rng.normal(0.0, params.process_noise_std, size=omega.shape)
    return theta, omega


def simulate(params: PendulumParams, num_sequences: int, steps: int, rng: np.random.Generator,
             progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Simulate ``num_sequences`` pendulums for ``steps`` recorded steps (``t = 0`` is the start).

    Returns unwrapped angles and velocities, each ``[sequence, time, links]`` float64.
    ``progress(1)`` is called after every step (for a progress bar).
    """
    if num_sequences < 1 or steps < 1:
        raise ValueError(f"simulate: 'num_sequences' and 'steps' must be >= 1, received "
                         f"{num_sequences} and {steps}")
    const = chain_constants(params)
    theta, omega = initial_state(params, num_sequences, rng)
    angles = np.empty((num_sequences, steps, params.links))
    velocities = np.empty_like(angles)
    angles[:, 0], velocities[:, 0] = theta, omega
    for t in range(1, steps):
        theta, omega = step_state(theta, omega, params, const, rng)
        angles[:, t], velocities[:, t] = theta, omega
        if progress is not None:
            progress(1)
    return angles, velocities
