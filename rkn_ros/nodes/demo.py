"""``rkn-ros demo {pendulum,quad_link,pneumatic,pam}``: the launch file's nodes, without ROS launch.

Starts the simulator (or the PAM replay), ``rkn_estimator`` and ``rkn_monitor`` as separate
processes talking over DDS, with exactly the executables, parameter files and remappings that
``launch/*.launch.py`` use: both read :data:`rkn_ros.nodes.systems.SYSTEMS`. It starts the source
once the graph shows the estimator and the monitor up (:mod:`rkn_ros.nodes.readiness`). While
it runs it prints a table row per second from the monitor's summary; at the end it prints the
summary (:mod:`rkn_ros.nodes.demo_report`), writes it as JSON if asked, and plots the estimate
+- 2 sigma against the truth (PNG).
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
from pathlib import Path

import yaml

from rkn_ros.data.pam import default_pam_file, missing_recordings_hint
from rkn_ros.nodes.demo_report import fmt, make_summary, plot_trace, print_summary
from rkn_ros.nodes.params import node_parameters, resolve_share_path
from rkn_ros.nodes.readiness import GraphWatcher
from rkn_ros.nodes.systems import ESTIMATOR, MONITOR, SYSTEMS, DemoSystem, NodeSpec


def configured_model_path(system: DemoSystem) -> str:
    """The estimator's ``model_path`` in the system's parameter file."""
    data = yaml.safe_load(resolve_share_path(system.config).read_text())
    return str(node_parameters(data, ESTIMATOR)["model_path"])


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
    """The command line that starts ``spec`` with the parameter file and its remappings.

    The console script is looked for next to the interpreter (pip), next to the running
    ``rkn-ros`` (colcon's lib/rkn_ros, as ``ros2 run rkn_ros rkn-ros demo`` starts it), then on
    PATH."""
    folders = (Path(sys.executable).parent, Path(sys.argv[0]).resolve().parent)
    found = [str(f / spec.executable) for f in folders if (f / spec.executable).is_file()]
    program = found[0] if found else shutil.which(spec.executable)
    if program is None:
        raise FileNotFoundError(
            f"console script '{spec.executable}' not found next to {sys.executable}, next to "
            f"{sys.argv[0]} or on PATH; install the package (pip install -e ., or colcon build)"
        )
    command = [program, "--ros-args", "--params-file", str(config)]
    for source, target in spec.remappings:
        command += ["-r", f"{source}:={target}"]
    for key, value in (extra or {}).items():
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
    # line by line into the log files, shown when a node fails (also when
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


def _row(elapsed: float, summary: dict) -> str:
    position = summary.get("position") or {}
    estimator = summary.get("estimator") or {}
    age = summary.get("estimate_age_ms") or {}
    return (
        f"{elapsed:6.1f} {estimator.get('ticks', '-'):>7} {fmt(position.get('rmse'), 4):>8} "
        f"{fmt(position.get('nll')):>8} {fmt(position.get('coverage_2sigma')):>6} "
        f"{fmt(estimator.get('step_latency_p50_ms')):>8} "
        f"{fmt(estimator.get('step_latency_p99_ms')):>8} {fmt(age.get('p50_ms')):>8}"
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
    processes: list[tuple[NodeSpec, subprocess.Popen]],
    consumers: list[NodeSpec],
    watcher: GraphWatcher,
    deadline: float,
) -> NodeSpec | None:
    """Wait until the graph holds each consumer's subscriptions, publishers and services (model
    loaded, subscribed); returns the node that exited meanwhile, if any."""
    missing: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        failed = next((s for s, p in processes if p.poll() is not None), None)
        if failed is not None:
            return failed
        missing = {spec.name: watcher.missing(spec) for spec in consumers}
        if not any(missing.values()):
            return None
        time.sleep(0.1)
    print(f"rkn-ros demo: not in the ROS graph yet: {missing}; starting the source anyway",
          file=sys.stderr)
    return None  # _wait_for_flow reports what does not flow


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
    model = args.model or configured_model_path(system)
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
    # this process's graph watcher discovers the nodes the way they discover each other
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "RMW_IMPLEMENTATION")})
    watcher = GraphWatcher(int(env["ROS_DOMAIN_ID"]))
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
        source, *consumers = system.nodes()
        for spec in reversed(consumers):
            launch(spec)
        deadline = time.monotonic() + args.startup_timeout
        failed = _wait_for_ready(processes, consumers, watcher, deadline)
        if failed is None:
            launch(source)
            # its own budget if the graph never showed them: the data may flow all the same
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
        watcher.close()
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
