"""The paper's experiments on our data: RKN against LSTM and GRU, several seeds, one command each.

    .venv/bin/python benchmarks/experiments.py EXPERIMENT [--scale tiny|small|medium|large|paper]
        [--seeds 3] [--jobs N] [--device cpu|cuda|auto] [--epochs E] [--out DIR] [--deadline-s S]
        [--evaluate-stopped] [--rkn-variants] [--tasks clean,noisy|clean|noisy]

EXPERIMENT: ``pendulum`` (noisy 24x24, RKN m=15 vs LSTM/GRU with 50 units and parameter-matched
small ones), ``quad_link`` (48x48, with and without noise), ``imputation`` (half the frames
dropped, Bernoulli log-likelihood of the clean images), ``pam`` (real pneumatic muscles:
ac-RKN, RKN with the actions appended to its observations, LSTM, GRU; RMSE 1..10 steps ahead),
``cost`` (seconds per epoch, RKN against GRU on the same data and batch); ``curves`` only
plots ``OUT/curves.png`` (validation log-likelihood per epoch, also written after every
experiment) from the runs already in ``--out``.

Fairness: every model of one experiment trains on the same generated data (written once to
``OUT/data``), for the same epochs, batch size, learning rate and early-stopping rule, and is
evaluated on the same held-out test set. Each (model, seed) runs as its own process
(``--jobs`` at a time, one torch thread each on the CPU). Results: ``OUT/results.json`` and
``OUT/results.md`` (mean +- std over seeds, beside the paper's numbers).

Long runs in short commands: with ``--deadline-s S`` every run stops (resumably) in time for the
command to end within about S seconds; running the same command again continues the unfinished
runs and reuses the finished ones (``OUT/runs/<group>/<model>_seed<k>/result.json``). With
``--evaluate-stopped`` as well, runs the deadline stops are evaluated at their best checkpoint
so far and reported with their epoch count (``stopped: time_budget``), not left out.

``--rkn-variants`` (quad_link) adds an RKN beyond the paper's decoder: its variance decoder also
reads the posterior mean and takes scale-free log-variance features (``variance_from_mean``,
``log_variance_features``; see BENCHMARKS.md, "Accuracy against the paper").
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# The paper's log-likelihoods (Becker et al. 2019, "Evaluation"); RMSE where it reports one.
PAPER = {
    "pendulum": {"rkn": "6.182 +- 0.155", "lstm_50": "5.773", "lstm_small": "6.019 (m=6)",
                 "gru_50": "5.649", "gru_small": "6.051 (m=8)"},
    "quad_link_clean": {"rkn": "14.534 +- 0.176 (RMSE 0.103)", "lstm_50": "11.960 (RMSE 0.118)",
                        "gru_50": "10.346 (RMSE 0.121)"},
    "quad_link_noisy": {"rkn": "6.259 +- 0.412", "lstm_50": "5.21", "gru_50": "4.696"},
    "imputation": {"rkn": "1751 (Bernoulli LL)"},
    "pam": {"ac_rkn": "best at 1-10 steps (paper: m=60, lr 3.1e-3)", "rkn_appended": "-",
            "lstm": "-", "gru": "-"},
    "cost": {"rkn": "target: RKN epoch <= 2x GRU epoch"},
}

SCALES = {
    # sequences (train, validation, test), steps, epochs, rkn m for the quad-link
    "tiny": {"pendulum": (20, 6, 6, 20), "quad_link": (10, 4, 4, 20),
             "imputation": (20, 6, 6, 20), "epochs": 1, "quad_m": 8, "pam_fraction": 0.01},
    "small": {"pendulum": (300, 50, 100, 75), "quad_link": (200, 40, 60, 75),
              "imputation": (300, 50, 100, 75), "epochs": 12, "quad_m": 30,
              "pam_fraction": 0.25},
    "medium": {"pendulum": (1000, 100, 300, 75), "quad_link": (500, 60, 150, 100),
               "imputation": (1000, 100, 300, 75), "epochs": 25, "quad_m": 50,
               "pam_fraction": 1.0},
    "large": {"pendulum": (1000, 100, 500, 75), "quad_link": (2000, 200, 500, 100),
              "imputation": (1000, 100, 500, 75), "epochs": 40, "quad_m": 100,
              "pam_fraction": 1.0},
    "paper": {"pendulum": (2000, 200, 1000, 75), "quad_link": (4000, 400, 1000, 150),
              "imputation": (2000, 200, 1000, 75), "epochs": 60, "quad_m": 100,
              "pam_fraction": 1.0},
}


def _rkn(**extra: Any) -> dict:
    return {"kind": "rkn", **extra}


def _rnn(kind: str, hidden: int, **extra: Any) -> dict:
    return {"kind": kind, "hidden_size": hidden, **extra}


# ---------------------------------------------------------------------- data
def _generate(task: tuple[dict, Path]) -> None:
    from rkn_ros.train.data import generate_dataset

    spec, folder = task
    generate_dataset(dict(spec)).save(folder)


def _pendulum_data(out: Path, kind: str, sizes: tuple, noise: bool, drop: float = 0.0,
                   jobs: int = 1) -> dict[str, Path]:
    """Train/validation/test folders, generated where missing (with ``jobs`` > 1, each set in
    its own process)."""
    return _generate_all([(out, kind, sizes, noise, drop)], jobs)[0]


def _generate_all(requests: list[tuple], jobs: int) -> list[dict[str, Path]]:
    """Folders for each ``(out, kind, sizes, noise, drop)``; missing sets are generated up to
    ``jobs`` at a time. Each set is one seeded generator call, so parallelism does not change
    the data."""
    folders, missing = [], []
    for out, kind, sizes, noise, drop in requests:
        n_train, n_val, n_test, steps = sizes
        base = {"generator": kind, "steps": steps, "noise": noise}
        if drop:
            base["drop_prob"] = drop
        tag = f"{kind}_{'noisy' if noise else 'clean'}{'_drop' if drop else ''}"
        parts = {}
        for part, n, seed in (("train", n_train, 1), ("validation", n_val, 2),
                              ("test", n_test, 3)):
            folder = out / "data" / f"{tag}_{part}"
            parts[part] = folder
            if not (folder / "data.npz").exists():
                missing.append(({**base, "num_sequences": n, "seed": seed}, folder))
        folders.append(parts)
    # Largest first, so the longest generation starts at once.
    missing.sort(key=lambda task: -task[0]["num_sequences"])
    if jobs > 1 and len(missing) > 1:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(jobs, len(missing)), mp_context=context) as pool:
            list(pool.map(_generate, missing))
    else:
        for task in missing:
            _generate(task)
    return folders


def _pam_data(out: Path, fraction: float) -> dict[str, dict[str, Path]]:
    """Train/validation/test folders of the PAM recording, plain and with actions appended."""
    import numpy as np

    from rkn_ros.data.dataset import SequenceDataset
    from rkn_ros.train.data import load_pam_part

    shared = Path(os.environ.get("RKN_ROS_SHARED", REPO.parent / "shared"))
    npz = shared / "data" / "pam" / "pam_dev.npz"
    folders: dict[str, dict[str, Path]] = {"plain": {}, "appended": {}}
    options = {"window": 40, "validation_fraction": 0.2, "seed": 0, "targets": "next"}
    train_all = load_pam_part(npz, options, "train")
    test = load_pam_part(npz, options, "validation")
    rng = np.random.default_rng(0)
    keep = np.sort(rng.permutation(train_all.num_sequences)[
        : max(10, int(fraction * train_all.num_sequences))])
    train_all = train_all.subset(keep)
    train, validation = train_all.split(0.1, seed=0)
    for part, ds in (("train", train), ("validation", validation), ("test", test)):
        folder = out / "data" / f"pam_{part}"
        if not (folder / "data.npz").exists():
            ds.save(folder)
        folders["plain"][part] = folder
        folder = out / "data" / f"pam_appended_{part}"
        if not (folder / "data.npz").exists():
            arrays = dict(ds.arrays)
            arrays["joint_obs"] = np.concatenate([arrays["joint_obs"], arrays["actions"]], -1)
            meta = json.loads(json.dumps(ds.metadata))
            spec = meta["inputs"]["joints"]
            spec["names"] = spec["names"] + meta["actions"]["names"]
            spec["units"] = spec["units"] + meta["actions"]["units"]
            meta["actions"] = None
            del arrays["actions"]
            meta.pop("normalization", None)  # recomputed from the training part
            SequenceDataset(arrays=arrays, metadata=meta).save(folder)
        folders["appended"][part] = folder
    return folders


# ---------------------------------------------------------------------- one run
def _recipe(name: str, model: dict, data: dict[str, Path], epochs: int, seed: int,
            device: str, extra_training: dict | None = None) -> dict:
    return {
        "name": name,
        "seed": seed,
        "data": {"train": {"path": str(data["train"])},
                 "validation": {"path": str(data["validation"])}},
        "model": model,
        "training": {"epochs": epochs, "batch_size": 50, "lr": 1e-3, "grad_clip": 5.0,
                     "early_stopping_patience": max(3, epochs // 4), "device": device,
                     "num_threads": 1, **(extra_training or {})},
    }


def run_one(job: dict) -> dict:
    """Train one (model, seed) and evaluate it on the test set (runs in a worker process).

    Resumable: a finished run's row is kept in ``OUT/runs/.../result.json`` and reused; an
    unfinished one continues from its ``last/`` state. With a ``deadline`` (Unix time) the run
    stops in time to be continued by the next invocation of the same command.
    """
    import torch
    import yaml

    from rkn_ros.core.checkpoint import load_checkpoint
    from rkn_ros.data.dataset import SequenceDataset
    from rkn_ros.train.config import recipe_from_dict
    from rkn_ros.train.evaluation import evaluate
    from rkn_ros.train.trainer import STATE_FILE, Trainer

    out = Path(job["out"])
    done = out / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    head = {"model": job["model"], "seed": job["seed"], "group": job["group"]}
    budget = None
    if job.get("deadline") is not None:
        budget = job["deadline"] - time.time()
        if budget <= 0:
            return {**head, "incomplete": True}
    torch.set_num_threads(1)
    recipe = recipe_from_dict(job["recipe"])
    resume = out if (out / "last" / STATE_FILE).exists() else None
    result = Trainer(recipe, out, device=recipe.training.device, show_progress=False,
                     resume=resume, time_budget_s=budget).run()
    if result.stopped == "time_budget" and not job.get("evaluate_stopped"):
        return {**head, "incomplete": True, "epochs": result.epochs_done}
    # Training time so far, the partial epoch of a stopped run included.
    seconds = float(yaml.safe_load((out / "last" / STATE_FILE).read_text())["elapsed_s"])
    model, metadata = load_checkpoint(out, recipe.training.device
                                      if recipe.training.device != "auto" else "cpu")
    device = next(model.parameters()).device
    report = evaluate(model, metadata, SequenceDataset.load(job["test"]), device)
    params = sum(p.numel() for p in model.parameters())
    keys = ("log_likelihood", "rmse", "angle_rmse", "coverage_2sigma",
            "bernoulli_log_likelihood", "rmse_by_horizon")
    row = {**head, "parameters": params, "epochs": result.epochs_done, "train_seconds": seconds,
           "stopped": result.stopped, **{k: report[k] for k in keys if k in report}}
    if result.stopped != "time_budget":  # a stopped run goes on at the next invocation
        done.write_text(json.dumps(row))
    return row


def _param_matched(kind: str, target: int, data: dict[str, Path], extra: dict) -> int:
    """Hidden size whose LSTM/GRU has the parameter count closest to ``target``."""
    from rkn_ros.core import build_model
    from rkn_ros.data.dataset import SequenceDataset
    from rkn_ros.train.config import recipe_from_dict
    from rkn_ros.train.trainer import model_config_for

    ds = SequenceDataset.load(data["validation"])
    best, best_gap = 2, math.inf
    for hidden in range(2, 1025):
        recipe = recipe_from_dict(_recipe("x", _rnn(kind, hidden, **extra), data, 1, 0, "cpu"))
        count = sum(p.numel() for p in build_model(model_config_for(recipe, ds)).parameters())
        if abs(count - target) < best_gap:
            best, best_gap = hidden, abs(count - target)
        if count > target:  # the count grows with the hidden size: nothing closer follows
            break
    return best


def _count(model: dict, data: dict[str, Path]) -> int:
    from rkn_ros.core import build_model
    from rkn_ros.data.dataset import SequenceDataset
    from rkn_ros.train.config import recipe_from_dict
    from rkn_ros.train.trainer import model_config_for

    ds = SequenceDataset.load(data["validation"])
    recipe = recipe_from_dict(_recipe("x", model, data, 1, 0, "cpu"))
    return sum(p.numel() for p in build_model(model_config_for(recipe, ds)).parameters())


# ---------------------------------------------------------------------- experiments
def plan(args: argparse.Namespace, out: Path) -> list[dict]:
    """All (group, model, seed) jobs of one experiment."""
    scale = SCALES[args.scale]
    epochs = args.epochs or scale["epochs"]
    groups: list[tuple[str, dict[str, Path], dict[str, dict], dict]] = []
    if args.experiment == "pendulum":
        data = _pendulum_data(out, "pendulum", scale["pendulum"], noise=True, jobs=args.jobs)
        rkn = _rkn(latent_obs_dim=15)
        target = _count(rkn, data)
        models = {"rkn": rkn, "lstm_50": _rnn("lstm", 50), "gru_50": _rnn("gru", 50),
                  "lstm_small": _rnn("lstm", _param_matched("lstm", target, data, {})),
                  "gru_small": _rnn("gru", _param_matched("gru", target, data, {}))}
        groups.append(("pendulum", data, models, {}))
    elif args.experiment == "quad_link":
        m = scale["quad_m"]
        wide = {"encoder_dense": 100, "decoder_hidden": [100]}
        noises = [task == "noisy" for task in args.tasks.split(",")]
        both = _generate_all([(out, "quad_link", scale["quad_link"], noise, 0.0)
                              for noise in noises], args.jobs)
        for noise, data in zip(noises, both, strict=True):
            models = {"rkn": _rkn(latent_obs_dim=m, **wide)}
            if args.rkn_variants:
                models["rkn_logvar_mean"] = _rkn(latent_obs_dim=m, variance_from_mean=True,
                                                 log_variance_features=True, **wide)
            models |= {"lstm_50": _rnn("lstm", 50, **wide), "gru_50": _rnn("gru", 50, **wide)}
            if getattr(args, "matched", False):
                target = _count(models["rkn"], data)
                models |= {f"{kind}_matched": _rnn(kind, _param_matched(kind, target, data, wide),
                                                   **wide) for kind in ("lstm", "gru")}
            groups.append((f"quad_link_{'noisy' if noise else 'clean'}", data, models, {}))
    elif args.experiment == "imputation":
        data = _pendulum_data(out, "pendulum", scale["imputation"], noise=False, drop=0.5,
                              jobs=args.jobs)
        decoder = {"image_decoder": True}
        models = {"rkn": _rkn(latent_obs_dim=15, **decoder),
                  "lstm_50": _rnn("lstm", 50, **decoder), "gru_50": _rnn("gru", 50, **decoder)}
        groups.append(("imputation", data, models, {"loss": "bernoulli"}))
    elif args.experiment == "pam":
        folders = _pam_data(out, scale["pam_fraction"])
        vector = {"encoder_hidden": [120], "decoder_hidden": [120],
                  "normalize_latent_obs": False}
        training = {"observation_drop": 0.5, "keep_first": 5, "lr": 3e-3}
        for name, model, variant in (
            ("ac_rkn", _rkn(latent_obs_dim=30, control_hidden=[120, 120, 120], **vector), "plain"),
            ("rkn_appended", _rkn(latent_obs_dim=30, **vector), "appended"),
            ("lstm", _rnn("lstm", 60, **vector), "plain"),
            ("gru", _rnn("gru", 60, **vector), "plain"),
        ):
            groups.append(("pam", folders[variant], {name: model}, training))
    else:
        raise ValueError(f"unknown experiment {args.experiment!r}")
    jobs = []
    # the same step, precision, batch and learning rate for every model (fairness)
    overrides = {key: getattr(args, key) for key in ("step", "precision", "batch_size", "lr")
                 if getattr(args, key, None) is not None}
    for group, data, models, training in groups:
        training = {**training, **overrides}
        for name, model in models.items():
            for seed in range(args.seeds):
                run_dir = out / "runs" / group / f"{name}_seed{seed}"
                recipe = _recipe(f"{group}_{name}", model, data, epochs, seed, args.device,
                                 training)
                jobs.append({"group": group, "model": name, "seed": seed, "recipe": recipe,
                             "out": str(run_dir), "test": str(data["test"])})
    return jobs


def summarize(results: list[dict], experiment: str) -> tuple[dict, str]:
    """Mean +- std per (group, model) of every metric, and a markdown table."""
    table: dict[str, dict[str, dict]] = {}
    for row in results:
        entry = table.setdefault(row["group"], {}).setdefault(row["model"], {"runs": []})
        entry["runs"].append(row)
    lines = []
    for group, models in table.items():
        metrics = ["log_likelihood", "rmse", "angle_rmse", "coverage_2sigma",
                   "bernoulli_log_likelihood", "train_seconds", "epochs"]
        horizons = ["1", "3", "5", "7", "10"] if group == "pam" else []
        present = [m for m in metrics if any(m in r for v in models.values() for r in v["runs"])]
        header = ["model", "params", *present, *[f"rmse@{h}" for h in horizons], "paper"]
        lines += [f"### {group}", "", "| " + " | ".join(header) + " |",
                  "|" + " --- |" * len(header)]
        for name, entry in models.items():
            runs = entry["runs"]
            cells = [name, str(runs[0]["parameters"])]
            for metric in present:
                values = [r[metric] for r in runs if metric in r]
                entry[metric] = _stats(values)
                cells.append(_fmt(entry[metric]))
            for h in horizons:
                values = [r["rmse_by_horizon"][h] for r in runs]
                entry[f"rmse@{h}"] = _stats(values)
                cells.append(_fmt(entry[f"rmse@{h}"]))
            cells.append(PAPER.get(group, {}).get(name, "-"))
            lines.append("| " + " | ".join(cells) + " |")
        stopped = [f"{name} seed {r['seed']} ({r['epochs']} epochs)"
                   for name, entry in models.items() for r in entry["runs"]
                   if r.get("stopped") == "time_budget"]
        if stopped:
            lines += ["", "Stopped by the deadline before early stopping, evaluated at their best "
                      "checkpoint so far: " + ", ".join(stopped) + "."]
        lines.append("")
    return table, "\n".join(lines)


def _stats(values: list[float]) -> dict:
    if not values:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def _fmt(stats: dict) -> str:
    mean = stats["mean"]
    digits = 4 if abs(mean) < 10 else 1
    return f"{mean:.{digits}f} +- {stats['std']:.{digits}f}"


def cost(args: argparse.Namespace, out: Path) -> tuple[dict, str]:
    """Seconds per training epoch of RKN and GRU on the same pendulum data and batch size."""
    import torch

    from rkn_ros.core import build_model
    from rkn_ros.core.checkpoint import resolve_device
    from rkn_ros.data.dataset import SequenceDataset
    from rkn_ros.train.allocator import keep_freed_memory
    from rkn_ros.train.config import recipe_from_dict
    from rkn_ros.train.data import compute_normalization, to_tensors
    from rkn_ros.train.trainer import batch_loss, model_config_for

    torch.set_num_threads(1)
    device = resolve_device(args.device)
    if device.type == "cpu":
        keep_freed_memory()  # as the trainer does
    sizes = SCALES[args.scale]["pendulum"]
    data = _pendulum_data(out, "pendulum", sizes, noise=True)
    ds = SequenceDataset.load(data["train"])
    rows = {}
    for name, model in (("rkn", _rkn(latent_obs_dim=15)), ("gru_50", _rnn("gru", 50)),
                        ("lstm_50", _rnn("lstm", 50))):
        recipe = recipe_from_dict(_recipe(name, model, data, 1, 0, args.device))
        torch.manual_seed(0)
        net = build_model(model_config_for(recipe, ds)).to(device)
        tensors = to_tensors(ds, compute_normalization(ds))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        times = []
        for _epoch in range(args.seeds):
            start = time.perf_counter()
            for index in torch.arange(ds.num_sequences).split(50):
                loss = batch_loss(net, tensors, index, device, "gaussian")
                opt.zero_grad()
                loss.backward()
                opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        steps = ds.num_sequences * ds.sequence_length
        rows[name] = {"epoch_seconds": _stats(times[1:] or times),
                      "seconds_per_1000_sequence_steps": min(times) / steps * 1000}
    ratio = rows["rkn"]["epoch_seconds"]["mean"] / rows["gru_50"]["epoch_seconds"]["mean"]
    lines = ["### cost", "", f"pendulum, {ds.num_sequences} sequences x {ds.sequence_length} "
             f"steps, batch 50, device {device}", "",
             "| model | epoch seconds | s per 1000 sequence-steps |", "| --- | --- | --- |"]
    for name, row in rows.items():
        lines.append(f"| {name} | {_fmt(row['epoch_seconds'])} | "
                     f"{row['seconds_per_1000_sequence_steps']:.4f} |")
    lines += ["", f"RKN / GRU epoch time: {ratio:.2f} (target <= 2; the budget is 1.5)", ""]
    return {"cost": rows, "rkn_over_gru": ratio}, "\n".join(lines)


def plot_curves(out: Path) -> Path | None:
    """``OUT/curves.png``: validation log-likelihood per epoch, mean over seeds, per group and
    model, from the runs' ``log.csv`` (each model's curve as long as its shortest seed's);
    None when there are no logs."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    curves: dict[str, dict[str, list[list[float]]]] = {}
    for log in sorted((out / "runs").glob("*/*/log.csv")):
        group, model = log.parent.parent.name, log.parent.name.rsplit("_seed", 1)[0]
        with log.open() as f:
            values = [-float(row["val_nll"]) for row in csv.DictReader(f)]
        curves.setdefault(group, {}).setdefault(model, []).append(values)
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4), squeeze=False)
    for ax, (group, models) in zip(axes[0], curves.items(), strict=True):
        for model, runs in models.items():
            length = min(len(r) for r in runs)
            values = np.array([r[:length] for r in runs])
            epochs = np.arange(1, length + 1)
            line, = ax.plot(epochs, values.mean(0), label=f"{model} ({len(runs)} seeds)")
            ax.fill_between(epochs, values.min(0), values.max(0), color=line.get_color(),
                            alpha=0.15)
        ax.set_title(group)
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation log-likelihood (mean, min-max over seeds)")
        finite = [v for runs in models.values() for r in runs for v in r[len(r) // 5:]
                  if math.isfinite(v)]
        if finite:  # the first epochs are far below: show where the models differ
            ax.set_ylim(min(finite) - 0.5, max(finite) + 0.5)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment",
                        choices=("pendulum", "quad_link", "imputation", "pam", "cost",
                                 "curves"))
    parser.add_argument("--scale", choices=tuple(SCALES), default="small")
    parser.add_argument("--paper-scale", action="store_true", help="same as --scale paper")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model (cost: epochs)")
    parser.add_argument("--jobs", type=int, default=1, help="parallel training processes")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu")
    parser.add_argument("--epochs", type=int, default=None, help="override the scale's epochs")
    parser.add_argument("--out", type=Path, default=None, help="default runs/bench/EXPERIMENT")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="stop training after this many seconds (minus evaluation time) "
                             "so the command ends in time; run the same command again to go on")
    parser.add_argument("--evaluate-stopped", action="store_true",
                        help="with --deadline-s: evaluate runs the deadline stops at their best "
                             "checkpoint so far instead of leaving them out")
    parser.add_argument("--tasks", choices=("clean,noisy", "clean", "noisy"),
                        default="clean,noisy", help="quad_link: which image tasks")
    parser.add_argument("--rkn-variants", action="store_true",
                        help="quad_link: add the RKN with log-variance features and a "
                             "mean-reading variance decoder")
    parser.add_argument("--matched", action="store_true",
                        help="quad_link: add the LSTM and GRU with the RKN's parameter count")
    parser.add_argument("--step", choices=("eager", "cuda_graph"), default=None,
                        help="training.step of every run (cuda_graph: CUDA only)")
    parser.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default=None,
                        help="training.precision of every run")
    parser.add_argument("--batch-size", type=int, default=None, help="every run's batch size")
    parser.add_argument("--lr", type=float, default=None, help="every run's learning rate")
    args = parser.parse_args(argv)
    if args.paper_scale:
        args.scale = "paper"
    if args.seeds < 1 or args.jobs < 1:
        parser.error("--seeds and --jobs must be >= 1")
    out = (args.out or REPO / "runs" / "bench" / args.experiment).resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    if args.experiment == "curves":
        path = plot_curves(out)
        print(path or f"no run logs under {out / 'runs'}")
        return 0 if path else 1
    if args.experiment == "cost":
        table, markdown = cost(args, out)
    else:
        jobs = plan(args, out)
        if args.deadline_s is not None:
            # Leave room for evaluation and the summary after training stops.
            deadline = time.time() + 0.85 * args.deadline_s - 15
            for job in jobs:
                job["deadline"] = deadline
                job["evaluate_stopped"] = args.evaluate_stopped
        print(f"{args.experiment}: {len(jobs)} runs, {args.jobs} at a time, device {args.device}",
              flush=True)
        results = []
        context = multiprocessing.get_context("spawn")  # no forked torch/CUDA state
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            for row in pool.map(run_one, jobs):
                results.append(row)
                print(json.dumps(row), flush=True)
        complete = [row for row in results if not row.get("incomplete")]
        table, markdown = summarize(complete, args.experiment)
        if len(complete) < len(results):
            markdown += (f"\n**{len(results) - len(complete)} of {len(results)} runs unfinished**"
                         " (deadline): run the same command again to continue them.\n")
    header = (f"## {args.experiment} (scale {args.scale}, seeds {args.seeds}, device "
              f"{args.device}, {platform.node()} {os.cpu_count()} cpus, "
              f"{time.monotonic() - start:.0f} s)\n\n"
              f"Command: `python benchmarks/experiments.py "
              f"{' '.join(argv if argv is not None else sys.argv[1:])}`\n\n")
    (out / "results.md").write_text(header + markdown)
    (out / "results.json").write_text(json.dumps(
        {"experiment": args.experiment, "args": {k: str(v) for k, v in vars(args).items()},
         "paper": PAPER.get(args.experiment, {}), "results": table}, indent=2, default=str))
    print(header + markdown)
    if args.experiment != "cost":
        plot_curves(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
