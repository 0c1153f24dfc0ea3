"""What ``rkn-ros demo`` reports: the summary of a run against the model's offline figures,
printed and plotted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rkn_ros.core.checkpoint import CheckpointError, read_metadata


def fmt(value: object, digits: int = 3) -> str:
    """A figure for the table: ``digits`` decimals, ``-`` when missing."""
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    return f"{float(value):.{digits}f}"



def offline_reference(model_dir: Path) -> tuple[dict, float | None]:
    """The checkpoint's offline figures (``evaluation.json``, else the metadata's metrics) and
    the offline RMSE in the demo's units: radians of the joint positions.

    Sin/cos models record that as ``angle_rmse``; for direct models it is the root mean square
    of ``rmse_per_output`` over the position outputs (velocities are in other units).
    """
    try:
        meta = read_metadata(model_dir)
    except CheckpointError:
        meta = None
    report: dict = dict(meta.metrics) if meta else {}
    evaluation = model_dir / "evaluation.json"
    if evaluation.is_file():
        report = json.loads(evaluation.read_text())
    offline = {k: v for k, v in report.items() if isinstance(v, int | float)}
    if meta and meta.outputs.kind == "sincos":
        return offline, offline.get("angle_rmse")
    per_output = report.get("rmse_per_output")
    units = list(meta.outputs.units) if meta else []
    if isinstance(per_output, list) and len(per_output) == len(units):
        positions = [
            float(r) for r, u in zip(per_output, units, strict=True) if not u.endswith("/s")
        ]
        if positions:
            return offline, float(np.sqrt(np.mean(np.square(positions))))
    return offline, None


def make_summary(system: str, model_dir: Path, monitor: dict, duration: float) -> dict:
    """The demo's result: online metrics, latencies and the model's offline figures."""
    position = monitor.get("position") or {}
    estimator = monitor.get("estimator") or {}
    age = monitor.get("estimate_age_ms") or {}
    offline, comparable = offline_reference(model_dir)

    def num(value: object) -> float | None:
        try:
            return float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None

    return {
        "system": system,
        "model": str(model_dir),
        "duration_s": duration,
        "ticks": num(estimator.get("ticks")),
        "matched": monitor.get("matched", 0),
        "rmse": position.get("rmse"),
        "rmse_per_joint": dict(
            zip(monitor.get("joints", []), position.get("rmse_per_dim", []), strict=False)
        ),
        "nll": position.get("nll"),
        "coverage_1sigma": position.get("coverage_1sigma"),
        "coverage_2sigma": position.get("coverage_2sigma"),
        "velocity": monitor.get("velocity"),
        "step_latency_p50_ms": num(estimator.get("step_latency_p50_ms")),
        "step_latency_p99_ms": num(estimator.get("step_latency_p99_ms")),
        "publish_to_estimate_p50_ms": num(estimator.get("input_to_publish_p50_ms")),
        "publish_to_estimate_p99_ms": num(estimator.get("input_to_publish_p99_ms")),
        "publish_to_monitor_p50_ms": age.get("p50_ms"),
        "publish_to_monitor_p99_ms": age.get("p99_ms"),
        "device": estimator.get("device"),
        "offline": offline,
        "offline_rmse": comparable,
        "online_over_offline_rmse": (
            position["rmse"] / comparable if comparable and position.get("rmse") else None
        ),
        "sensors": model_sensors(model_dir),
    }


def model_sensors(model_dir: Path) -> list[str]:
    """The model's input names, from its checkpoint metadata (empty when unreadable)."""
    try:
        return list(read_metadata(model_dir).inputs)
    except CheckpointError:
        return []


def print_summary(summary: dict) -> None:
    """The summary as aligned lines."""
    print("\nsummary")
    reference = summary["offline_rmse"]
    lines = [
        ("estimates matched with truth", summary["matched"], ""),
        (
            "RMSE (positions, rad)",
            fmt(summary["rmse"], 4),
            f"offline evaluation {fmt(reference, 4)}, ratio "
            f"{fmt(summary['online_over_offline_rmse'], 2)}"
            if reference is not None
            else "",
        ),
        ("NLL per tick", fmt(summary["nll"]), ""),
        ("2-sigma coverage", fmt(summary["coverage_2sigma"]), "(ideal 0.954)"),
        (
            "step latency p50 / p99 (ms)",
            f"{fmt(summary['step_latency_p50_ms'])} / {fmt(summary['step_latency_p99_ms'])}",
            f"on {summary['device']}",
        ),
        (
            "publish-to-estimate p50 / p99 (ms)",
            f"{fmt(summary['publish_to_estimate_p50_ms'])} / "
            f"{fmt(summary['publish_to_estimate_p99_ms'])}",
            "input stamp -> ~/state publish",
        ),
    ]
    for label, value, note in lines:
        print(f"  {label:<36} {value!s:>16}  {note}")


def plot_trace(trace_file: Path, png: Path, title: str) -> None:
    """Estimate +- 2 sigma against the truth, one panel per joint."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(trace_file, allow_pickle=False) as trace:
        stamps, names = trace["stamp_ns"], [str(n) for n in trace["names"]]
        mean, std, truth = trace["mean"], trace["std"], trace["truth"]
    t = (stamps - stamps[0]) * 1e-9
    fig, axes = plt.subplots(len(names), 1, figsize=(10, 2.2 * len(names) + 0.8), squeeze=False)
    for k, ax in enumerate(axes[:, 0]):
        # Show the estimate on the truth's branch of the circle, so wrapping does not draw jumps.
        shown = truth[:, k] + (np.mod(mean[:, k] - truth[:, k] + np.pi, 2 * np.pi) - np.pi)
        ax.fill_between(
            t,
            shown - 2 * std[:, k],
            shown + 2 * std[:, k],
            color="tab:blue",
            alpha=0.25,
            label="estimate ± 2σ",
        )
        ax.plot(t, truth[:, k], color="black", lw=1.0, label="truth")
        ax.plot(t, shown, color="tab:blue", lw=1.0, label="estimate")
        ax.set_ylabel(names[k])
    axes[0, 0].legend(loc="upper right", ncol=3, fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(f"rkn-ros demo {title}")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
