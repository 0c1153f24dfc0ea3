"""A noisy, quantized, lower-rate joint encoder on the pendulum's joints.

Each reading is a joint angle, as a rotary encoder in the joint measures it: **relative** to
the previous link (``q_i = theta_i - theta_(i-1)``, ``theta_0 = 0``, so the first joint reads
its link's absolute angle and a single pendulum reads ``theta``). With electrical noise added
before the count, ``N(0, noise_std^2)``, it is quantized to ``2 pi / counts_per_turn`` and
wrapped to [-pi, pi) (a single-turn absolute encoder).

It reads every ``period``-th step of the data set's grid (steps 0, period, 2 period, ...): an
integer fraction of the camera rate. Steps in between have no reading: zeros, flagged invalid.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields

import numpy as np

from rkn_ros.sim.pendulum import wrap_angle

MAX_PERIOD = 1000


@dataclass(frozen=True)
class EncoderParams:
    """Rate, resolution and noise of the joint encoders."""

    period: int = 2                 # one reading every `period` steps of dt
    counts_per_turn: int = 1024     # quantization step 2 pi / counts_per_turn rad
    noise_std: float = 0.005        # rad, added before quantization
    joints: tuple[int, ...] = ()    # 1-based joints read (joint 1 at the pivot); empty: all

    def __post_init__(self) -> None:
        for name, low, high in (("period", 1, MAX_PERIOD), ("counts_per_turn", 4, 1 << 24)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                    or not low <= value <= high:
                raise ValueError(f"encoder parameter '{name}': expected an integer in "
                                 f"[{low}, {high}], received {value!r}")
        if isinstance(self.noise_std, bool) or not isinstance(self.noise_std, numbers.Real) \
                or not (math.isfinite(self.noise_std) and self.noise_std >= 0):
            raise ValueError(f"encoder parameter 'noise_std': expected a finite number >= 0 "
                             f"(rad), received {self.noise_std!r}")
        joints = self.joints
        if not isinstance(joints, (list, tuple)) or not all(
                isinstance(j, numbers.Integral) and not isinstance(j, bool) and j >= 1
                for j in joints) or len(set(joints)) != len(joints):
            raise ValueError(f"encoder parameter 'joints': expected distinct joint numbers "
                             f">= 1 (1 = at the pivot), received {joints!r}")
        object.__setattr__(self, "joints", tuple(int(j) for j in joints))

    @classmethod
    def from_dict(cls, values: dict) -> EncoderParams:
        """Build from a plain mapping (e.g. YAML); unknown keys are rejected by name."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown encoder parameter(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        """Plain mapping for metadata files."""
        return {f.name: (list(getattr(self, f.name)) if f.name == "joints"
                         else getattr(self, f.name)) for f in fields(self)}

    def measured(self, links: int) -> list[int]:
        """The 1-based joints read on a chain of ``links`` links."""
        joints = list(self.joints) or list(range(1, links + 1))
        if max(joints) > links:
            raise ValueError(f"encoder parameter 'joints': {joints} on a chain of {links} "
                             f"link(s) (joints 1..{links})")
        return joints


UNITS = {"period": "steps", "counts_per_turn": "1", "noise_std": "rad", "joints": "1"}


def joint_angles(theta: np.ndarray) -> np.ndarray:
    """Relative joint angles ``[..., links]`` from absolute link angles ``[..., links]``."""
    return np.diff(theta, axis=-1, prepend=0.0)


def quantize(angles: np.ndarray, params: EncoderParams) -> np.ndarray:
    """Angles rounded to whole counts and wrapped to [-pi, pi)."""
    resolution = 2.0 * math.pi / params.counts_per_turn
    return wrap_angle(np.round(angles / resolution) * resolution)


def encoder_readings(angles: np.ndarray, params: EncoderParams,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Readings ``float64 [sequence, time, joints]`` (zeros between readings) and their mask
    ``bool [sequence, time]`` from absolute link angles ``[sequence, time, links]``."""
    num, steps, links = angles.shape
    columns = [j - 1 for j in params.measured(links)]
    relative = joint_angles(angles)[..., columns]
    noisy = relative + rng.normal(0.0, 1.0, size=relative.shape) * params.noise_std
    valid = np.zeros((num, steps), dtype=bool)
    valid[:, ::params.period] = True
    readings = np.where(valid[..., None], quantize(noisy, params), 0.0)
    return readings, valid
