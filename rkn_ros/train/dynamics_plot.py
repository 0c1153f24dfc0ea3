"""The figure of ``rkn-ros dynamics --plot``: where the learned modes sit and how they move."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on robots and CI machines
import matplotlib.pyplot as plt
import numpy as np

from rkn_ros.train.dynamics import StateModes, Trajectories

MAX_POINTS = 4000  # states drawn on the complex plane


def plot_dynamics(path: Path, trajectories: Trajectories, modes: StateModes, index: np.ndarray,
                  report: dict[str, Any]) -> Path:
    """Left: the eigenvalues of `A_t` on the complex plane (unit circle = no decay), coloured
    by the first output's value at the state; right: the dominant mode's frequency along the
    first sequence, with that output beside it. ``index``: the flat state indices of ``modes``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    S, T = trajectories.alpha.shape[:2]
    colour = trajectories.outputs[..., 0].reshape(-1)[index]
    name = trajectories.output_names[0] if trajectories.output_names else "output 0"
    fig, (plane, along) = plt.subplots(1, 2, figsize=(11, 4.5))
    pick = np.arange(len(index)) if len(index) <= MAX_POINTS else np.linspace(
        0, len(index) - 1, MAX_POINTS).round().astype(np.int64)
    eig = modes.eigenvalues[pick]
    points = plane.scatter(eig.real.ravel(), eig.imag.ravel(),
                           c=np.repeat(colour[pick], eig.shape[1]), s=3, cmap="viridis",
                           alpha=0.5, linewidths=0)
    circle = np.linspace(0, 2 * np.pi, 400)
    plane.plot(np.cos(circle), np.sin(circle), color="k", lw=0.8)
    plane.set_aspect("equal")
    plane.set_xlabel("Re lambda")
    plane.set_ylabel("Im lambda")
    plane.set_title(f"eigenvalues of A_t ({report['state_dim']} per state)")
    fig.colorbar(points, ax=plane, label=f"{name} at the state")
    # the first sequence's states, where they were analysed
    first = index < T
    t = index[first] * report["dt"]
    frequency = modes.frequency[first, 0] if modes.frequency.shape[1] else np.full(t.shape,
                                                                                np.nan)
    along.plot(t, frequency, color="tab:blue", lw=1.2)
    along.axhline(report["dominant_frequency_rad_s"] or np.nan, color="tab:blue", ls=":",
                  lw=0.8, label="mean over all states")
    along.set_xlabel("time (s), first sequence")
    along.set_ylabel("dominant frequency (rad/s)", color="tab:blue")
    along.legend(loc="upper right")
    twin = along.twinx()
    twin.plot(np.arange(T) * report["dt"], trajectories.outputs[0, :, 0], color="0.4", lw=0.8)
    twin.set_ylabel(name, color="0.4")
    along.set_title(f"dominant mode along a trajectory ({S} sequences analysed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
