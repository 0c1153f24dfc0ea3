"""What the estimator hands out: one tick's estimate and an open-loop prediction, decoded."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rkn_ros.core.decode import OutputLayout


class _Decoded:
    """Joint views of decoded outputs (shared by a step's output and a prediction)."""

    layout: OutputLayout
    mean: np.ndarray
    std: np.ndarray

    @property
    def names(self) -> tuple[str, ...]:
        """Names of the decoded output dimensions."""
        return self.layout.names

    @property
    def units(self) -> tuple[str, ...]:
        """Units of the decoded output dimensions (radians for angles)."""
        return self.layout.units

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Joints, in the order of ``position``/``velocity``."""
        return self.layout.joint_names

    @property
    def position(self) -> np.ndarray:
        """Position estimate per joint, ``[..., n_joints]``."""
        return self.mean[..., self.layout.position_index]

    @property
    def position_std(self) -> np.ndarray:
        """Standard deviation of ``position``."""
        return self.std[..., self.layout.position_index]

    @property
    def velocity(self) -> np.ndarray | None:
        """Velocity per joint, or None when the model does not estimate velocities."""
        index = self.layout.velocity_index
        return None if index is None else self.mean[..., index]

    @property
    def velocity_std(self) -> np.ndarray | None:
        """Standard deviation of ``velocity`` (None when there is none)."""
        index = self.layout.velocity_index
        return None if index is None else self.std[..., index]


@dataclass(frozen=True)
class EstimatorOutput(_Decoded):
    """One tick's estimate: ``mean``/``std`` ``[n_outputs]`` named by ``names`` in ``units``."""

    layout: OutputLayout
    mean: np.ndarray
    std: np.ndarray
    used: dict[str, bool]  # which inputs were present at this tick
    step_index: int  # ticks since start or reset, this one included
    latency_s: float
    # True when this tick's step was not finite: mean/std are then the last good estimate (or
    # the initial belief's) and the belief was put back (see rkn_ros/runtime/guard.py)
    guarded: bool = False


@dataclass(frozen=True)
class Prediction(_Decoded):
    """Open-loop prediction: ``mean``/``std`` ``[steps, n_outputs]``, step k at ``(k+1) dt``."""

    layout: OutputLayout
    mean: np.ndarray
    std: np.ndarray
    dt: float
