"""``rkn-ros demo {pendulum,quad_link,pneumatic,pam}``: the launch file's nodes, without ROS launch.

Starts the simulator (or the PAM replay), ``rkn_estimator`` and ``rkn_monitor`` as separate
processes talking over DDS, with exactly the executables, parameter files and remappings that
``launch/*.launch.py`` use (:data:`SYSTEMS`; a test keeps the two in step). While it runs it
prints a table row per second from the monitor's summary; at the end it prints the summary
(RMSE, NLL, 2-sigma coverage, step latency p50/p99, publish-to-estimate latency), writes it as
JSON if asked, and plots the estimate +- 2 sigma against the truth (PNG).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from rkn_ros.data.pam import default_pam_file, missing_recordings_hint
from rkn_ros.nodes.params import node_parameters, resolve_share_path


@dataclass(frozen=True)
class NodeSpec:
    """One process: console script, node name, remappings (``from:=to`` as in ``--ros-args``)."""

    executable: str
    name: str
    remappings: tuple[tuple[str, str], ...] = ()
    parameters: dict = field(default_factory=dict)


ESTIMATOR = "rkn_estimator"
MONITOR = "rkn_monitor"
# in each consumer's start-up line only (rkn_ros/nodes/estimator_node.py, monitor_node.py),
# whatever the console's log format
READY_TEXT = {ESTIMATOR: " s; outputs [", MONITOR: "; report every "}


def _pipeline(source: NodeSpec, image: bool, joints: bool, command: bool) -> tuple[NodeSpec, ...]:
    """Source -> estimator -> monitor, wired by remapping the estimator's private inputs."""
    # Relative names, so a namespace given to the whole system keeps it wired.
    src = source.name
    remaps = []
    if image:
        remaps.append(("~/image", f"{src}/image"))
    if joints:
        remaps.append(("~/joint_states", f"{src}/joint_states"))
    if command:
        remaps.append(("~/command", f"{src}/command"))
    estimator = NodeSpec(ESTIMATOR, ESTIMATOR, tuple(remaps))
    monitor = NodeSpec(
        MONITOR,
        MONITOR,
        (
            ("~/estimate", f"{ESTIMATOR}/state"),
            ("~/estimate_stddev", f"{ESTIMATOR}/state_stddev"),
            ("~/truth", f"{src}/joint_states_truth"),
        ),
    )
    return (source, estimator, monitor)


@dataclass(frozen=True)
class DemoSystem:
    """A demo: its parameter file (the launch file's) and its processes."""

    config: str
    nodes: tuple[NodeSpec, ...]
    launch_file: str

    def model_path(self) -> str:
        """The estimator's ``model_path`` in the parameter file."""
        data = yaml.safe_load(resolve_share_path(self.config).read_text())
        return str(node_parameters(data, ESTIMATOR)["model_path"])


SYSTEMS: dict[str, DemoSystem] = {
    "pendulum": DemoSystem(
        "config/pendulum.yaml",
        _pipeline(
            NodeSpec("pendulum_sim", "pendulum_sim"), image=True, joints=False, command=False
        ),
        "launch/pendulum_sim.launch.py",
    ),
    "quad_link": DemoSystem(
        "config/quad_link.yaml",
        _pipeline(
            NodeSpec("pendulum_sim", "pendulum_sim"), image=True, joints=False, command=False
        ),
        "launch/pendulum_sim.launch.py",
    ),
    "pneumatic": DemoSystem(
        "config/pneumatic.yaml",
        _pipeline(
            NodeSpec("pneumatic_sim", "pneumatic_sim"), image=False, joints=True, command=True
        ),
        "launch/pneumatic_sim.launch.py",
    ),
    "pam": DemoSystem(
        "config/pam.yaml",
        _pipeline(NodeSpec("pam_replay", "pam_replay"), image=False, joints=True, command=True),
        "launch/pneumatic_sim.launch.py",
    ),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``rkn-ros demo``."""
    parser.add_argument("system", choices=sorted(SYSTEMS), help="which demo to run")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to run (default 30)")
    parser.add_argument("--json", type=Path, default=None, help="write the summary as JSON here")
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="PNG of estimate +- 2 sigma vs truth (default OUT/<system>.png)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="folder for logs, trace and plot"
    )
    parser.add_argument(
        "--model", default=None, help="checkpoint to use instead of the parameter file's"
    )
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=90.0,
        help="seconds to wait for the nodes to start and data to flow (default 90)",
    )
    parser.add_argument(
        "--domain-id",
        type=int,
        default=None,
        help="ROS_DOMAIN_ID for the demo's processes (default: $ROS_DOMAIN_ID, else one "
        "derived from this process id, so parallel demos do not see each other)",
    )


def node_command(spec: NodeSpec, config: Path, extra: dict | None = None) -> list[str]:
    """The command line that starts ``spec`` with the parameter file and its remappings."""
    executable = Path(sys.executable).parent / spec.executable
    program = str(executable) if executable.exists() else shutil.which(spec.executable)
    if program is None:
        raise FileNotFoundError(
            f"console script '{spec.executable}' not found next to {sys.executable} or on PATH; "
            "install the package (pip install -e .)"
        )
    command = [program, "--ros-args", "--params-file", str(config)]
    for source, target in spec.remappings:
        command += ["-r", f"{source}:={target}"]
    for key, value in {**spec.parameters, **(extra or {})}.items():
        command += ["-p", f"{key}:={_param_text(value)}"]
    return command


def _param_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def demo_environment(domain_id: int | None) -> dict[str, str]:
    """Environment for the node processes: an own DDS domain, discovery kept on this host."""
    env = dict(os.environ)
    if domain_id is None:
        domain_id = int(env.get("ROS_DOMAIN_ID", 100 + os.getpid() % 100))
    if not 0 <= domain_id <= 232:
        raise ValueError(f"--domain-id must be within 0..232, got {domain_id}")
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env["PYTHONUNBUFFERED"] = "1"
    # line by line into the log files, where the demo looks for the start-up lines (also when
    # RCUTILS_LOGGING_USE_STDOUT sends the log to a stream a file would fully buffer)
    env["RCUTILS_LOGGING_BUFFERED_STREAM"] = "1"
    return env


def stop_process(process: subprocess.Popen) -> None:
    """SIGINT a node process (its clean shutdown) and wait; kill it if stuck for 10 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _stop(processes: list[tuple[NodeSpec, subprocess.Popen]]) -> None:
    """Stop each process in order (source first, monitor last)."""
    for _, process in processes:
        stop_process(process)


def _fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value
    return f"{float(value):.{digits}f}"


def _row(elapsed: float, summary: dict) -> str:
    position = summary.get("position") or {}
    estimator = summary.get("estimator") or {}
    age = summary.get("estimate_age_ms") or {}
    return (
        f"{elapsed:6.1f} {estimator.get('ticks', '-'):>7} {_fmt(position.get('rmse'), 4):>8} "
        f"{_fmt(position.get('nll')):>8} {_fmt(position.get('coverage_2sigma')):>6} "
        f"{_fmt(estimator.get('step_latency_p50_ms')):>8} "
        f"{_fmt(estimator.get('step_latency_p99_ms')):>8} {_fmt(age.get('p50_ms')):>8}"
    )


HEADER = (
    "     t   ticks     rmse      nll  cov2σ  step50ms step99ms   e2e50ms\n"
    "------ ------- -------- -------- ------ -------- -------- ---------"
)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # not written yet (or being replaced): the next second will have it


def _wait_for_ready(
    processes: list[tuple[NodeSpec, subprocess.Popen]], logs: dict[str, Path], deadline: float
) -> NodeSpec | None:
    """Wait until each log in ``logs`` (node name -> log) has its node's start-up line (model
    loaded, subscribed); returns the node that exited meanwhile, if any."""
    waiting = dict(logs)
    while waiting and time.monotonic() < deadline:
        failed = next((s for s, p in processes if p.poll() is not None), None)
        if failed is not None:
            return failed
        for name, log in list(waiting.items()):
            try:
                if READY_TEXT[name] in log.read_text():
                    del waiting[name]
            except OSError:
                pass  # not created yet
        time.sleep(0.1)
    return None  # the source starts anyway; _wait_for_flow reports what does not flow


def _wait_for_flow(
    processes: list[tuple[NodeSpec, subprocess.Popen]], summary_file: Path, deadline: float,
    timeout: float,
) -> NodeSpec | None:
    """Wait until the monitor has matched an estimate with the truth (nodes up, data flowing);
    returns the node that exited meanwhile, if any. The duration is counted from here."""
    while time.monotonic() < deadline:
        failed = next((s for s, p in processes if p.poll() is not None), None)
        if failed is not None or _read_json(summary_file).get("matched", 0) > 0:
            return failed
        time.sleep(0.2)
    print(f"rkn-ros demo: no estimate reached the monitor within {timeout:.0f} s", file=sys.stderr)
    return None


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 on success, 1 when a node fails (its log is shown)."""
    system = SYSTEMS[args.system]
    config = resolve_share_path(system.config)
    if not config.is_file():
        print(f"rkn-ros demo: parameter file {system.config} not found", file=sys.stderr)
        return 1
    model = args.model or system.model_path()
    model_dir = resolve_share_path(model)
    if not model_dir.exists():
        print(
            f"rkn-ros demo: model {model} not found; train it with "
            f"`rkn-ros train config/train/{args.system}.yaml` or pass --model",
            file=sys.stderr,
        )
        return 1
    if args.system == "pam" and not default_pam_file().is_file():
        print(f"rkn-ros demo: {default_pam_file()} not found; {missing_recordings_hint()}",
              file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary_file = (out / f"{args.system}_monitor.json").resolve()
    trace_file = (out / f"{args.system}_trace.npz").resolve()
    for stale in (summary_file, trace_file):
        stale.unlink(missing_ok=True)
    env = demo_environment(args.domain_id)
    extras = {
        # the simulated pendulum starts when the estimator and the monitor hear it
        "pendulum_sim": {"wait_for_subscribers": True},
        ESTIMATOR: {"model_path": str(model_dir.resolve())},
        MONITOR: {"summary_file": str(summary_file), "trace_file": str(trace_file), "quiet": True},
    }
    processes: list[tuple[NodeSpec, subprocess.Popen]] = []
    logs = {}
    print(
        f"rkn-ros demo {args.system}: {config} (ROS_DOMAIN_ID={env['ROS_DOMAIN_ID']}), "
        f"model {model_dir}, {args.duration:.0f} s; logs in {out}/"
    )
    def launch(spec: NodeSpec) -> None:
        log = open(out / f"{args.system}_{spec.name}.log", "w")  # noqa: SIM115
        logs[spec.name] = log
        command = node_command(spec, config, extras.get(spec.name))
        processes.insert(
            0, (spec, subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
        )

    try:
        # Monitor and estimator first, and the source once both are up (both import torch, the
        # estimator loads its model: seconds). Started together, the pendulum had swung for
        # 3.5 s (70 frames) before the first estimate, and which part of the trajectory was
        # scored depended on the machine.
        source, *consumers = system.nodes
        for spec in reversed(consumers):
            launch(spec)
        deadline = time.monotonic() + args.startup_timeout
        failed = _wait_for_ready(
            processes, {s.name: out / f"{args.system}_{s.name}.log" for s in consumers}, deadline
        )
        if failed is None:
            launch(source)
            # its own budget if the start-up lines never showed: the data may flow all the same
            flow_deadline = max(deadline, time.monotonic() + 30.0)
            failed = _wait_for_flow(processes, summary_file, flow_deadline, args.startup_timeout)
        print(HEADER)
        start = time.monotonic()
        while failed is None and time.monotonic() - start < args.duration:
            time.sleep(1.0)
            failed = next((s for s, p in processes if p.poll() is not None), None)
            if failed is not None:
                break
            print(_row(time.monotonic() - start, _read_json(summary_file)), flush=True)
    finally:
        _stop(processes)
        for log in logs.values():
            log.close()
    if failed is not None:
        log_path = out / f"{args.system}_{failed.name}.log"
        print(
            f"rkn-ros demo: {failed.executable} exited early; its log ({log_path}):",
            file=sys.stderr,
        )
        print(log_path.read_text()[-3000:], file=sys.stderr)
        return 1
    monitor = _read_json(summary_file)
    summary = make_summary(args.system, model_dir, monitor, args.duration)
    print_summary(summary)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"summary written to {args.json}")
    plot = args.plot or out / f"{args.system}.png"
    if trace_file.exists():
        plot_trace(trace_file, plot, args.system)
        print(f"plot written to {plot}")
    else:
        print("rkn-ros demo: no estimate was matched with the truth; no plot", file=sys.stderr)
        return 1
    return 0


def offline_reference(model_dir: Path) -> tuple[dict, float | None]:
    """The checkpoint's offline figures (``evaluation.json``, else the metadata's metrics) and
    the offline RMSE in the demo's units: radians of the joint positions.

    Sin/cos models record that as ``angle_rmse``; for direct models it is the root mean square
    of ``rmse_per_output`` over the position outputs (velocities are in other units).
    """
    meta_file = model_dir / "model.yaml"
    meta = yaml.safe_load(meta_file.read_text()) if meta_file.is_file() else {}
    meta = meta or {}
    report: dict = meta.get("metrics") or {}
    evaluation = model_dir / "evaluation.json"
    if evaluation.is_file():
        report = json.loads(evaluation.read_text())
    offline = {k: v for k, v in report.items() if isinstance(v, int | float)}
    outputs = meta.get("outputs") or {}
    if outputs.get("kind") == "sincos":
        return offline, offline.get("angle_rmse")
    per_output = report.get("rmse_per_output")
    units = outputs.get("units") or []
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
    }


def print_summary(summary: dict) -> None:
    """The summary as aligned lines."""
    print("\nsummary")
    reference = summary["offline_rmse"]
    lines = [
        ("estimates matched with truth", summary["matched"], ""),
        (
            "RMSE (positions, rad)",
            _fmt(summary["rmse"], 4),
            f"offline evaluation {_fmt(reference, 4)}, ratio "
            f"{_fmt(summary['online_over_offline_rmse'], 2)}"
            if reference is not None
            else "",
        ),
        ("NLL per tick", _fmt(summary["nll"]), ""),
        ("2-sigma coverage", _fmt(summary["coverage_2sigma"]), "(ideal 0.954)"),
        (
            "step latency p50 / p99 (ms)",
            f"{_fmt(summary['step_latency_p50_ms'])} / {_fmt(summary['step_latency_p99_ms'])}",
            f"on {summary['device']}",
        ),
        (
            "publish-to-estimate p50 / p99 (ms)",
            f"{_fmt(summary['publish_to_estimate_p50_ms'])} / "
            f"{_fmt(summary['publish_to_estimate_p99_ms'])}",
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
