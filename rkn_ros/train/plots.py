"""PNG figures of an evaluation: estimate +- 2 sigma against the truth, and calibration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on robots and CI machines
import matplotlib.pyplot as plt
import numpy as np

NUM_SEQUENCES = 3
MAX_OUTPUTS = 4


def plot_report(folder: Path, report: dict[str, Any], mean: np.ndarray, var: np.ndarray,
                target: np.ndarray, names: list[str],
                valid: np.ndarray | None = None) -> list[Path]:
    """Write ``sequences.png`` and ``calibration.png`` into ``folder``; arrays ``[S, T, D]``,
    ``valid [S, T]`` marks steps with a target (the others are not drawn, as not scored)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    n_seq = min(NUM_SEQUENCES, mean.shape[0])
    n_out = min(MAX_OUTPUTS, mean.shape[2])
    fig, axes = plt.subplots(n_out, n_seq, figsize=(4 * n_seq, 2.2 * n_out), squeeze=False)
    t = np.arange(mean.shape[1])
    std = np.sqrt(var)
    for d in range(n_out):
        for s in range(n_seq):
            ax = axes[d][s]
            ax.fill_between(t, mean[s, :, d] - 2 * std[s, :, d], mean[s, :, d] + 2 * std[s, :, d],
                            color="tab:blue", alpha=0.25, label="estimate +- 2 sigma")
            ax.plot(t, mean[s, :, d], color="tab:blue", lw=1.2, label="estimate")
            truth = target[s, :, d]
            if valid is not None:  # a gap in the line, not a drop to 0
                truth = np.where(valid[s], truth, np.nan)
            ax.plot(t, truth, color="k", lw=1.0, ls="--", label="truth")
            if s == 0:
                ax.set_ylabel(names[d] if d < len(names) else f"output {d}")
            if d == 0:
                ax.set_title(f"sequence {s}")
            if d == n_out - 1:
                ax.set_xlabel("step")
    axes[0][0].legend(loc="best", fontsize="small")
    fig.suptitle(f"{report.get('checkpoint', '')}: LL {report['log_likelihood']:.3f}, "
                 f"RMSE {report['rmse']:.4f}")
    fig.tight_layout()
    path = folder / "sequences.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)

    hist = report["calibration_histogram"]
    edges = np.asarray(hist["edges"])
    widths = np.diff(edges)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.bar(edges[:-1], np.asarray(hist["observed"]) / widths, width=widths, align="edge",
           alpha=0.6, label="normalized errors")
    ax.step(edges, np.append(np.asarray(hist["expected_normal"]) / widths,
                             hist["expected_normal"][-1] / widths[-1]),
            where="post", color="k", label="N(0, 1)")
    ax.set_xlabel("(truth - mean) / sigma")
    ax.set_ylabel("density")
    ax.set_title(f"coverage 1 sigma {report['coverage_1sigma']:.2f} (0.68), "
                 f"2 sigma {report['coverage_2sigma']:.2f} (0.95)", fontsize="small")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = folder / "calibration.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)
    return written
