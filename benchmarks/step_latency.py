"""One estimator step (encoder + update + predict + decoder, batch 1) through the runtime.

Prints, per model and CPU backend (ONNX Runtime, TorchScript), the model step's p50/p99 (the
budget's scope: encoder + update + predict + decoder) and the whole runtime step's p50 (also
input conversion and decoding to joint angles), beside a GRU of the same encoder/decoder run
through the same runtime in the same process (the same run's reference). Back-to-back
steps keep the CPU's caches and predictors warm; the "50 Hz" column times the model step when
the estimator sleeps between steps as a node does (typically 2-3x slower on this machine), and
"50 Hz est." the whole ``step`` call there, which is what a node waits for before it publishes:
it calls ``advance()`` after publishing, so where the backend splits the step (the RKN in ONNX
Runtime) the prediction of the next prior is not in it:

    .venv/bin/python benchmarks/step_latency.py [--device cpu|cuda] [--steps 3000]
        [--models pendulum quad_link node_joints]

Models: the shipped ``models/pendulum`` (24x24) and ``models/quad_link`` (48x48) when present,
else untrained models of the recipes' architectures (same cost: timing does not depend on the
weights). On CUDA the runtime captures the step in a CUDA graph; the line says whether it did.

``node_joints``: the shipped ``models/pneumatic`` (a joint reading and a command per tick)
served as the node serves it: each reading and command checked on arrival
(``check_input``/``check_action``) and what they return stepped, the whole tick timed; beside
it, in the same loop, a second estimator stepped with the raw values (``step`` checks them),
the same run's reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rkn_ros.core import ModelConfig, SensorSpec, build_model  # noqa: E402
from rkn_ros.core.checkpoint import (  # noqa: E402
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
)
from rkn_ros.runtime import StreamingEstimator  # noqa: E402

BUDGET_MS = {"pendulum": 0.18, "quad_link": 0.5}  # CPU p50 budgets; GPU: 0.3 ms
ARCHITECTURES = {
    "pendulum": dict(links=1, size=24, latent_obs_dim=15),
    "quad_link": dict(
        links=4, size=48, latent_obs_dim=50, encoder_dense=100, decoder_hidden=(100,)
    ),
}


def _metadata(config: ModelConfig, name: str, links: int) -> dict:
    return {
        "name": name,
        "model": dataclasses.asdict(config),
        "dt": 0.05,
        "inputs": {"image": {"kind": "image", "shape": list(config.sensors[0].shape)}},
        "targets": {
            "names": [f"{f}_theta_{i + 1}" for i in range(links) for f in ("sin", "cos")],
            "units": ["1"] * (2 * links),
        },
        "outputs": {
            "names": [f"joint_{i + 1}" for i in range(links)],
            "units": ["rad"] * links,
            "kind": "sincos",
        },
        "actions": None,
        "normalization": {"targets": {"mean": [0.0] * (2 * links), "std": [1.0] * (2 * links)}},
    }


def checkpoint_for(name: str, kind: str, folder: Path) -> Path:
    """The shipped model for ``kind == "rkn"`` when it exists, else a fresh one of that shape."""
    shipped = REPO / "models" / name
    if kind == "rkn" and (shipped / "model.yaml").is_file():
        try:
            load_checkpoint(shipped)
            return shipped
        except CheckpointError as err:
            print(f"(shipped {name} not usable, timing an untrained one of its shape: {err})")
    arch = dict(ARCHITECTURES[name])
    links, size = arch.pop("links"), arch.pop("size")
    if kind == "gru":
        # same encoder and decoder; hidden size = the RKN's latent state size (2m)
        arch = {"hidden_size": 2 * arch.pop("latent_obs_dim"), **arch}
    torch.manual_seed(0)
    config = ModelConfig(
        sensors=(SensorSpec("image", "image", (size, size)),),
        output_dim=2 * links,
        kind=kind,
        **arch,
    )
    return save_checkpoint(
        folder / f"{name}_{kind}", build_model(config), _metadata(config, f"{name}_{kind}", links)
    )


def measure(path: Path, device: str, steps: int, backend: str = "auto", seed: int = 0,
            period: float = 0.0) -> tuple[StreamingEstimator, float]:
    """Step the estimator ``steps`` times on random frames (a third missing), back to back or
    one step every ``period`` seconds (sleeping between, and calling ``advance`` after each
    step, as a node does between ticks). Returns it and the p50 of the ``step`` calls, ms."""
    est = StreamingEstimator.from_checkpoint(  # paced: split as in the node
        path, device=device, warmup_steps=50, latency_window=steps, cpu_backend=backend,
        split_step=period > 0,
    )
    size = est.inputs["image"].image_size
    rng = np.random.default_rng(seed)
    frames = [rng.integers(0, 256, size, dtype=np.uint8) for _ in range(64)]
    est.latency.clear()
    est.model_latency.clear()
    calls = np.empty(steps)
    for k in range(steps):
        start = time.perf_counter()
        est.step({"image": None if k % 3 == 2 else frames[k % 64]})
        calls[k] = time.perf_counter() - start
        if period:
            est.advance()
            time.sleep(max(0.0, period - (time.perf_counter() - start)))
    return est, float(np.median(calls)) * 1e3


def measure_node_path(path: Path, device: str, steps: int, backend: str) -> tuple[float, float]:
    """p50 ms of a tick as the node runs it (arrival checks + ``step``) and of a plain ``step``
    of the same raw values, interleaved tick by tick on two estimators of the same model."""
    node, plain = (StreamingEstimator.from_checkpoint(path, device=device, warmup_steps=50,
                                                      cpu_backend=backend) for _ in range(2))
    name = next(iter(node.inputs))
    stats = node.metadata.normalization.inputs[name]
    actions = node.metadata.normalization.actions
    rng = np.random.default_rng(0)
    readings = [np.asarray(stats.mean) + 0.5 * np.asarray(stats.std) * rng.standard_normal(
        len(stats.mean)) for _ in range(64)]
    commands = [np.asarray(actions.mean) + 0.5 * np.asarray(actions.std) * rng.standard_normal(
        len(actions.mean)) for _ in range(64)]
    node_s, plain_s = np.empty(steps), np.empty(steps)
    for k in range(steps):
        reading, command = readings[k % 64], commands[k % 64]
        start = time.perf_counter()
        node.step({name: node.check_input(name, reading)}, action=node.check_action(command))
        node_s[k] = time.perf_counter() - start
        start = time.perf_counter()
        plain.step({name: reading}, action=command)
        plain_s[k] = time.perf_counter() - start
    return float(np.median(node_s)) * 1e3, float(np.median(plain_s)) * 1e3


def graph_vs_eager(path: Path, device: str, steps: int = 300) -> float:
    """Largest difference between the CUDA-graph and the eager estimator on the same inputs."""
    graph = StreamingEstimator.from_checkpoint(path, device=device, cuda_graph=True)
    eager = StreamingEstimator.from_checkpoint(path, device=device, cuda_graph=False)
    size = graph.inputs["image"].image_size
    rng = np.random.default_rng(1)
    worst = 0.0
    for k in range(steps):
        frame = None if k % 4 == 3 else rng.integers(0, 256, size, dtype=np.uint8)
        if k == steps // 2:
            graph.reset()
            eager.reset()
        a, b = graph.step({"image": frame}), eager.step({"image": frame})
        worst = max(worst, float(np.abs(a.mean - b.mean).max()), float(np.abs(a.std - b.std).max()))
    pa, pb = graph.predict(5), eager.predict(5)
    return max(worst, float(np.abs(pa.mean - pb.mean).max()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--paced-steps", type=int, default=250,
                        help="steps at 50 Hz for the paced column (0: skip)")
    parser.add_argument("--models", nargs="+", default=["pendulum", "quad_link", "node_joints"],
                        choices=["pendulum", "quad_link", "node_joints"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, device {args.device}, threads {args.threads}, "
        f"{args.steps} steps each (one in three frames missing)"
    )
    if args.device.startswith("cuda"):
        print(f"GPU: {torch.cuda.get_device_name(torch.device(args.device))}")
    print(
        f"{'model':<10} {'kind':<4} {'backend':<12} {'model p50':>9} {'model p99':>9} "
        f"{'p99/p50':>7} {'budget':>6} {'runtime p50':>11} {'50 Hz p50':>9} {'50 Hz est.':>10}"
        "  note"
    )
    backends = ("onnxruntime", "torchscript") if args.device == "cpu" else ("auto",)
    with tempfile.TemporaryDirectory() as tmp:
        for name in (m for m in args.models if m in ARCHITECTURES):
            results = {}
            for backend in backends:
                for kind in ("rkn", "gru"):
                    path = checkpoint_for(name, kind, Path(tmp))
                    est, _ = measure(path, args.device, args.steps, backend)
                    results[kind, backend] = est
                    note = ("shipped model" if path.parent == REPO / "models"
                            else "untrained, same shape")
                    if est.device.type == "cuda" and not est.uses_cuda_graph:
                        note += f", eager ({est.graph_error})"
                    budget = 0.3 if est.device.type == "cuda" else BUDGET_MS[name]
                    model = est.model_latency
                    paced = paced_estimate = float("nan")
                    if args.paced_steps:
                        slow, paced_estimate = measure(path, args.device, args.paced_steps,
                                                       backend, period=0.02)
                        paced = slow.model_latency.p50_ms
                    print(
                        f"{name:<10} {kind:<4} {est.backend:<12} {model.p50_ms:9.4f} "
                        f"{model.p99_ms:9.4f} {model.p99_ms / model.p50_ms:7.2f} "
                        f"{budget if kind == 'rkn' else '':>6} {est.latency.p50_ms:11.4f} "
                        f"{paced:9.4f} {paced_estimate:10.4f}  {note}"
                    )
                    if est.uses_cuda_graph:
                        print(f"{'':<10} {kind:<4} graph replay vs eager step, max |diff| over "
                              f"300 steps: {graph_vs_eager(path, args.device):.2e}")
                ratio = (results["rkn", backend].model_latency.p50_ms
                         / results["gru", backend].model_latency.p50_ms)
                print(f"{name:<10} RKN / GRU model step p50 ({results['rkn', backend].backend}): "
                      f"{ratio:.2f}x")
    pneumatic = REPO / "models" / "pneumatic"
    if "node_joints" in args.models and (pneumatic / "model.yaml").is_file():
        print("models/pneumatic, a tick as the node runs it (checked on arrival, then step) "
              "vs a plain step of the same raw values (same loop):")
        for backend in backends:
            node_ms, plain_ms = measure_node_path(pneumatic, args.device, args.steps, backend)
            print(f"{'node_joints':<12} {backend:<12} node tick p50 {node_ms:.4f} ms, plain "
                  f"step p50 {plain_ms:.4f} ms, ratio {node_ms / plain_ms:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
