"""Why the RKN does not clearly beat the GRU on the quad-link images: separate cell from encoder.

    .venv/bin/python benchmarks/quad_link_study.py vector [--train 300] [--steps 75]
        [--epochs 20] [--seeds 3] [--jobs 2] [--lr 1e-3] [--noise-std 0.3] [--occlusion 0.2 0.7]
        [--out DIR] [--results FILE]

``vector``: the same quad-link dynamics (``PendulumParams.quad_link()``: 4 unit links, friction
0.1, process noise on the velocities), but observed by a vector sensor instead of a 48x48
image, so perception is not the bottleneck. The sensor reads ``(sin, cos)`` of each absolute
link angle with additive ``N(0, noise_std^2)`` noise; each link is occluded by its own Markov
chain (a visible link becomes occluded with probability ``p_occlude``, an occluded one stays
so with probability ``p_stay``): an occluded link's two entries read 0 and a visibility flag
per link is appended, so the reading is 12 numbers ``[sin_1, cos_1, ..., sin_4, cos_4,
visible_1..4]``. Targets are the clean ``(sin, cos)`` (8 outputs), as in the image experiment.

Models, as in ``benchmarks/experiments.py quad_link`` (same decoder widths, batch 50, lr 1e-3,
clipping 5, early stopping on validation NLL, same data, epochs and seeds): RKN with
``m = 50`` and ``m = 15``, LSTM and GRU with 50 units, and LSTM and GRU with the parameter
count of the RKN (m = 50); ``rkn_m50_perturbed`` is the RKN m = 50 with its transition bases
perturbed at initialization (see `run_job`). Training, evaluation and the summary table are
``experiments.run_one`` / ``experiments.summarize`` (imported, not copied). Besides the
test-set table, the learning curves (validation log-likelihood per epoch, mean over seeds)
show whether the gaps grow or shrink with training.
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import experiments  # benchmarks/ is on the path (above)

REPO = experiments.REPO
LINKS = 4


def vector_dataset(num_sequences: int, steps: int, seed: int, noise_std: float,
                   p_occlude: float, p_stay: float):
    """Quad-link trajectories seen through a noisy, occluding (sin, cos) sensor.

    Arrays: ``link_obs`` float32 [N, T, 12] (noisy sin/cos of the 4 links, 0 where occluded,
    then 4 visibility flags), ``targets`` float32 [N, T, 8] (clean sin/cos),
    ``joint_angles``/``joint_velocities`` [N, T, 4] (truth).
    """
    from rkn_ros.data.dataset import FORMAT_VERSION, SequenceDataset
    from rkn_ros.sim import pendulum

    physics = pendulum.PendulumParams.quad_link()
    rng_physics, rng_noise, rng_occ = (np.random.default_rng(s)
                                       for s in np.random.SeedSequence(seed).spawn(3))
    angles, velocities = pendulum.simulate(physics, num_sequences, steps, rng_physics)
    wrapped = pendulum.wrap_angle(angles)
    clean = np.stack([np.sin(wrapped), np.cos(wrapped)], -1)                 # [N, T, 4, 2]
    visible = np.empty((num_sequences, steps, LINKS), dtype=bool)
    state = np.ones((num_sequences, LINKS), dtype=bool)
    for t in range(steps):
        u = rng_occ.random((num_sequences, LINKS))
        state = np.where(state, u >= p_occlude, u >= p_stay)
        visible[:, t] = state
    noisy = clean + noise_std * rng_noise.standard_normal(clean.shape)
    noisy = np.where(visible[..., None], noisy, 0.0).reshape(num_sequences, steps, 2 * LINKS)
    obs = np.concatenate([noisy, visible.astype(np.float64)], -1).astype(np.float32)
    names = [f"{f}_theta_{i + 1}" for i in range(LINKS) for f in ("sin", "cos")]
    arrays = {
        "link_obs": obs,
        "link_obs_valid": np.ones((num_sequences, steps), dtype=bool),
        "targets": clean.reshape(num_sequences, steps, 2 * LINKS).astype(np.float32),
        "joint_angles": wrapped.astype(np.float32),
        "joint_velocities": velocities.astype(np.float32),
    }
    joints = [f"joint_{i + 1}" for i in range(LINKS)]
    metadata = {
        "format_version": FORMAT_VERSION,
        "generator": "quad_link",
        "seed": int(seed),
        "dt": float(physics.dt),
        "parameters": {"physics": physics.to_dict(), "sensor": "vector (sin, cos) per link",
                       "noise_std": float(noise_std), "p_occlude": float(p_occlude),
                       "p_stay": float(p_stay),
                       "occluded_share": float(1.0 - visible.mean())},
        "inputs": {"links": {"kind": "vector", "array": "link_obs", "valid": "link_obs_valid",
                             "names": [f"obs_{n}" for n in names]
                             + [f"visible_{j}" for j in joints],
                             "units": ["1"] * (3 * LINKS)}},
        "targets": {"array": "targets", "names": names, "units": ["1"] * (2 * LINKS)},
        "actions": None,
        "truth": {"angles": "joint_angles", "velocities": "joint_velocities", "names": joints,
                  "units": ["rad"] * LINKS},
    }
    return SequenceDataset(arrays=arrays, metadata=metadata)


def run_job(job: dict) -> dict:
    """`experiments.run_one`, with the RKN's K transition bases perturbed at initialization
    when ``job["basis_init_std"]`` is set (a diagnostic variant, not the paper's init).

    The paper (and its reference code) starts all K bases at the same matrix. Then every
    basis gets the gradient ``alpha_k * G`` and Adam, which normalizes each parameter's step,
    moves them all alike: they stay nearly identical, the coefficient network's gradient
    ``alpha_k (g_k - sum_j alpha_j g_j)`` with ``g_k = <G, A_k>`` stays near zero, and the
    "locally linear" transition remains one fixed linear map. A small seeded perturbation
    (``N(0, std^2)`` on every band entry, drawn after ``torch.manual_seed(seed)`` like all
    other weights) breaks the symmetry.
    """
    std = job.get("basis_init_std")
    if not std:
        return experiments.run_one(job)
    import torch

    from rkn_ros.core.transition import BandedTransition

    original = BandedTransition.__init__

    def perturbed_init(self: BandedTransition, config) -> None:
        original(self, config)
        with torch.no_grad():
            self.basis.add_(std * torch.randn_like(self.basis))

    BandedTransition.__init__ = perturbed_init
    try:
        return experiments.run_one(job)
    finally:  # the pool reuses this worker process for other jobs
        BandedTransition.__init__ = original


def _matched_hidden(kind: str, target: int, data: dict[str, Path], extra: dict) -> int:
    """Hidden size whose LSTM/GRU has the parameter count closest to ``target`` (2..300)."""
    counts = {h: experiments._count(experiments._rnn(kind, h, **extra), data)
              for h in range(2, 301)}
    return min(counts, key=lambda h: abs(counts[h] - target))


def plan_vector(args: argparse.Namespace, out: Path) -> tuple[list[dict], dict]:
    sizes = {"train": (args.train, 1), "validation": (max(20, args.train // 5), 2),
             "test": (max(50, args.train // 2), 3)}
    data: dict[str, Path] = {}
    info = {}
    for part, (n, seed) in sizes.items():
        folder = out / "data" / f"vector_{part}"
        if not (folder / "data.npz").exists():
            vector_dataset(n, args.steps, seed, args.noise_std, *args.occlusion).save(folder)
        data[part] = folder
        from rkn_ros.data.dataset import SequenceDataset
        info[part] = SequenceDataset.load(folder).metadata["parameters"]["occluded_share"]
    wide = {"decoder_hidden": [100]}
    rkn50 = experiments._rkn(latent_obs_dim=50, **wide)
    target = experiments._count(rkn50, data)
    models = {
        "rkn_m50": rkn50,
        "rkn_m15": experiments._rkn(latent_obs_dim=15, **wide),
        "lstm_50": experiments._rnn("lstm", 50, **wide),
        "gru_50": experiments._rnn("gru", 50, **wide),
        "lstm_matched": experiments._rnn("lstm", _matched_hidden("lstm", target, data, wide),
                                         **wide),
        "gru_matched": experiments._rnn("gru", _matched_hidden("gru", target, data, wide),
                                        **wide),
    }
    variants = {"rkn_m50_perturbed": args.basis_init_std}
    models["rkn_m50_perturbed"] = rkn50
    # Regularization / design variants (section C of the study). A change to the shared
    # encoder (`_nonorm`: w not L2-normalized) is given to the baselines as well.
    nonorm = {**wide, "normalize_latent_obs": False}
    models.update({
        "rkn_m50_nonorm": experiments._rkn(latent_obs_dim=50, **nonorm),
        "rkn_m50_k1": experiments._rkn(latent_obs_dim=50, num_basis=1, **wide),
        "rkn_m30": experiments._rkn(latent_obs_dim=30, **wide),
        "rkn_m50_varmean": experiments._rkn(latent_obs_dim=50, variance_from_mean=True,
                                            **wide),
        "rkn_m50_meanvar": experiments._rkn(latent_obs_dim=50, mean_from_variance=True,
                                            **wide),
        "rkn_m50_logvar": experiments._rkn(latent_obs_dim=50, log_variance_features=True,
                                           **wide),
        "rkn_m50_logvar_varmean": experiments._rkn(latent_obs_dim=50, log_variance_features=True,
                                                   variance_from_mean=True, **wide),
        "rkn_m50_qstate": experiments._rkn(latent_obs_dim=50, state_dependent_noise=True,
                                           **wide),
        "rkn_m50_qstate_logvar_varmean": experiments._rkn(
            latent_obs_dim=50, state_dependent_noise=True, log_variance_features=True,
            variance_from_mean=True, **wide),
        "lstm_50_nonorm": experiments._rnn("lstm", 50, **nonorm),
        "gru_50_nonorm": experiments._rnn("gru", 50, **nonorm),
        "gru_matched_nonorm": {**models["gru_matched"], "normalize_latent_obs": False},
    })
    # the GRU with as many parameters as the variance-pathway variant above (75.6k, not 55.6k)
    variant_size = experiments._count(models["rkn_m50_qstate_logvar_varmean"], data)
    models["gru_matched_qstate_logvar_varmean"] = experiments._rnn(
        "gru", _matched_hidden("gru", variant_size, data, wide), **wide)
    if args.models:
        models = {k: v for k, v in models.items() if k in args.models}
    jobs = []
    for name, model in models.items():
        for seed in range(args.seeds):
            recipe = experiments._recipe(f"vector_{name}", model, data, args.epochs, seed, "cpu",
                                         {"lr": args.lr, "weight_decay": args.weight_decay})
            run_dir = out / "runs" / "vector" / f"{name}_seed{seed}"
            jobs.append({"group": "quad_link_vector", "model": name, "seed": seed,
                         "recipe": recipe, "out": str(run_dir), "test": str(data["test"]),
                         "basis_init_std": variants.get(name)})
    return jobs, {"occluded_share": info, "models": {k: v for k, v in models.items()}}


def diagnose(checkpoint: Path, data: Path, sequences: int = 100) -> dict:
    """How a trained model uses its structure, on up to ``sequences`` test sequences.

    All models: spread of the predicted log-variance over time steps and sequences (a
    homoscedastic model has 0) and its rank correlation with the squared error (does the
    model know when it is wrong?). RKN only: the Kalman gain of the upper half (mean and its
    10-90 % range over ticks after the first 5: does the filter adapt its trust in the
    observation?), the mean prior variance and observation variance, the learned transition
    noise, how far the K transition bases moved from their (identical) initial value and from
    each other, and the entropy of the basis weights alpha (log K when they are uniform) with
    their variation over time (0 when the transition is one fixed linear map).
    """
    import torch

    from rkn_ros.core.belief import Belief, kalman_update
    from rkn_ros.core.checkpoint import load_checkpoint
    from rkn_ros.core.layers import band_indices, elu_plus_one
    from rkn_ros.data.dataset import SequenceDataset
    from rkn_ros.train.data import to_tensors

    torch.set_num_threads(1)
    model, meta = load_checkpoint(checkpoint, "cpu")
    ds = SequenceDataset.load(data)
    ds = ds.subset(np.arange(min(sequences, ds.num_sequences)))
    tensors = to_tensors(ds, meta.normalization, [s.name for s in model.config.sensors])
    obs, valid, targets, _, _, _ = tensors.batch(torch.arange(ds.num_sequences),
                                                 torch.device("cpu"))
    out: dict[str, float] = {}
    with torch.no_grad():
        pred = model(obs, valid)
        log_var = pred.var.log()[:, 5:]
        err = (pred.mean - targets).pow(2)[:, 5:]
        out["log_var_std"] = float(log_var.std(dim=(0, 1)).mean())
        ranks = [_spearman(log_var[..., d].flatten(), err[..., d].flatten())
                 for d in range(err.shape[-1])]
        out["var_error_rank_corr"] = float(np.mean(ranks))
        if model.config.kind != "rkn":
            return out
        name = model.config.sensors[0].name
        batch, steps = targets.shape[:2]
        flat = obs[name].reshape(batch * steps, *obs[name].shape[2:])
        w, var_obs = (x.view(batch, steps, -1) for x in model.encoders[name](flat))
        state = model.initial_state(batch)
        constants = model.sequence_constants()
        transition = model.transition
        gains, alphas, priors, noises = [], [], [], []
        for t in range(steps):
            gains.append(state.var_upper / (state.var_upper + var_obs[:, t]))
            priors.append(state.var_upper)
            post = Belief(*kalman_update(*state.tensors(), w[:, t], var_obs[:, t],
                                         valid[name][:, t]))
            alphas.append(transition.alpha(post.mean, None))
            # with state_dependent_noise, Q differs per tick: average what the filter used
            noises.append(transition.state_noise(post.mean).mean()
                          if transition.noise_net is not None
                          else elu_plus_one(transition.raw_noise).mean())
            state = model.transition_step(post, None, None, constants)
        gain = torch.stack(gains, 1)[:, 5:].mean(-1)
        alpha = torch.stack(alphas, 1)
        m = model.latent_obs_dim
        basis = model.transition.basis
        _, init = band_indices(m, model.config.bandwidth)
        out.update({
            "gain_mean": float(gain.mean()), "gain_p10": float(gain.quantile(0.1)),
            "gain_p90": float(gain.quantile(0.9)),
            "prior_var_upper": float(torch.stack(priors, 1)[:, 5:].mean()),
            "var_obs_mean": float(var_obs[:, 5:].mean()),
            "w_rms": float(w.pow(2).mean().sqrt()),
            "transition_noise_mean": float(torch.stack(noises).mean()),
            "basis_moved": float((basis - init).abs().mean()),
            "basis_spread": float(basis.std(0).mean()),
            "alpha_entropy": float(-(alpha * alpha.clamp_min(1e-12).log()).sum(-1).mean()),
            "alpha_entropy_uniform": float(np.log(alpha.shape[-1])),
            "alpha_std_over_time": float(alpha.std(1).mean()),
        })
    return out


def variance_split(checkpoint: Path, data: Path, sequences: int = 200) -> dict:
    """Where a model's log-likelihood comes from, on up to ``sequences`` sequences of ``data``
    (original units, time steps after the first 5, summed over the 8 outputs like the reported
    log-likelihood).

    ``ll``: the model's own; ``ll_scaled``: its variances times the best constant per output
    (fitted on this set: what a perfect global calibration of the scale would give);
    ``ll_homo``: its means with the best constant variance per output (the mean's quality
    alone); ``ll_oracle_bins``: its means with the best variance per output and bin of
    (link visible now, steps since the link was last seen 0/1/2/3+, |complementary target|
    in 4 bins: |cos| for a sine, |sin| for a cosine), i.e. what a variance that knew the
    occlusion and the state could reach. ``scale``: mean of ``err^2 / var`` (1 when calibrated;
    > 1 overconfident). ``ll_vis`` / ``ll_occ``: per-output log-likelihood (x 8) on visible /
    occluded readings; ``scale_vis`` / ``scale_occ`` likewise; ``scale_c0..3`` by bin of
    the complementary target (|cos| for a sine: the error of sin(theta) is |cos| times the
    angle error, so a well-calibrated variance must follow the state).
    """
    import torch

    from rkn_ros.core.checkpoint import load_checkpoint
    from rkn_ros.data.dataset import SequenceDataset
    from rkn_ros.train.data import to_tensors
    from rkn_ros.train.evaluation import predict

    torch.set_num_threads(1)
    model, meta = load_checkpoint(checkpoint, "cpu")
    ds = SequenceDataset.load(data)
    ds = ds.subset(np.arange(min(sequences, ds.num_sequences)))
    tensors = to_tensors(ds, meta.normalization, [s.name for s in model.config.sensors])
    mean_n, var_n, _ = predict(model, tensors, torch.device("cpu"))
    stats = meta.normalization.target(meta.model.output_dim)
    sd = np.asarray(stats.std, dtype=np.float64)
    mu = mean_n.double().numpy() * sd + np.asarray(stats.mean, dtype=np.float64)
    var = var_n.double().numpy() * sd**2
    target = ds.arrays["targets"].astype(np.float64)
    visible = ds.arrays["link_obs"][..., 2 * LINKS:].astype(bool)        # [N, T, 4]
    since = np.zeros(visible.shape, dtype=np.int64)
    for t in range(1, visible.shape[1]):
        since[:, t] = np.where(visible[:, t], 0, since[:, t - 1] + 1)
    start = 5
    mu, var, target = mu[:, start:], var[:, start:], target[:, start:]
    vis_out = np.repeat(visible[:, start:], 2, -1)                         # [N, T, 8]
    since_out = np.minimum(np.repeat(since[:, start:], 2, -1), 3)
    complement = np.abs(target.reshape(*target.shape[:2], LINKS, 2)[..., ::-1]).reshape(
        target.shape)
    comp_bin = np.minimum((complement * 4).astype(np.int64), 3)
    err2 = (target - mu) ** 2
    d = target.shape[-1]
    log2pi = float(np.log(2 * np.pi))

    def ll(v: np.ndarray, mask: np.ndarray | None = None) -> float:
        nll = 0.5 * (log2pi + np.log(v) + err2 / v)
        if mask is None:
            return float(-nll.sum(-1).mean())
        return float(-nll[mask].mean() * d)

    ratio = err2 / var
    scale = ratio.reshape(-1, d).mean(0)
    homo = err2.reshape(-1, d).mean(0)
    bins = (since_out * 4 + comp_bin) * d + np.arange(d)
    sums = np.bincount(bins.ravel(), err2.ravel(), minlength=16 * d)
    counts = np.bincount(bins.ravel(), minlength=16 * d)
    oracle = (sums / np.maximum(counts, 1))[bins]
    return {
        "ll": ll(var), "rmse": float(np.sqrt(err2.mean())),
        "ll_scaled": ll(var * scale), "ll_homo": ll(np.broadcast_to(homo, err2.shape)),
        "ll_oracle_bins": ll(np.maximum(oracle, 1e-12)),
        "scale": float(ratio.mean()),
        "ll_vis": ll(var, vis_out), "ll_occ": ll(var, ~vis_out),
        "scale_vis": float(ratio[vis_out].mean()), "scale_occ": float(ratio[~vis_out].mean()),
        "rmse_vis": float(np.sqrt(err2[vis_out].mean())),
        "rmse_occ": float(np.sqrt(err2[~vis_out].mean())),
        "log_var_std": float(np.log(var).std(axis=(0, 1)).mean()),
        **{f"scale_c{b}": float(ratio[comp_bin == b].mean()) for b in range(4)},
        **_radial_split(mu, target),
    }


def _radial_split(mu: np.ndarray, target: np.ndarray) -> dict:
    """The (sin, cos) error per link split along the predicted direction: with the target
    at angle theta on the unit circle and the prediction at radius r and angle phi,
    ``err^2 = (cos(theta - phi) - r)^2 + sin(theta - phi)^2``. ``rmse_radial`` /
    ``rmse_tangential``: the two parts as RMSEs per output (``rmse^2`` is their sum of
    squares); the tangential part depends on the angle error only, the radial part on how far
    the prediction is from the circle (shrinking it is the MSE-optimal answer to
    uncertainty). ``radius_mean``: mean predicted radius."""
    pred = mu.reshape(*mu.shape[:-1], LINKS, 2)
    true = target.reshape(*target.shape[:-1], LINKS, 2)
    radius = np.linalg.norm(pred, axis=-1)
    delta = np.arctan2(true[..., 0], true[..., 1]) - np.arctan2(pred[..., 0], pred[..., 1])
    return {"rmse_radial": float(np.sqrt(np.mean((np.cos(delta) - radius) ** 2) / 2)),
            "rmse_tangential": float(np.sqrt(np.mean(np.sin(delta) ** 2) / 2)),
            "radius_mean": float(radius.mean())}


def split_table(folders: list[Path], data_sets: dict[str, Path], sequences: int) -> str:
    """`variance_split` of every run folder (its best checkpoint and, when kept, ``last/``)
    on each data set, mean +- std over the seeds of one model."""
    rows: dict[tuple[str, str, str], list[dict]] = {}
    for folder in folders:
        model = folder.name.rsplit("_seed", 1)[0]
        for which, path in (("best", folder), ("last", folder / "last")):
            if not (path / "model.yaml").exists():
                continue
            for part, data in data_sets.items():
                rows.setdefault((model, which, part), []).append(
                    variance_split(path, data, sequences))
    keys = ["ll", "ll_scaled", "ll_homo", "ll_oracle_bins", "rmse", "scale", "ll_vis", "ll_occ",
            "scale_vis", "scale_occ", "rmse_vis", "rmse_occ", "log_var_std",
            *[f"scale_c{b}" for b in range(4)], "rmse_radial", "rmse_tangential",
            "radius_mean"]
    lines = ["| model | checkpoint | data | " + " | ".join(keys) + " |",
             "|" + " --- |" * (len(keys) + 3)]
    for (model, which, part), runs in rows.items():
        cells = []
        for k in keys:
            values = [r[k] for r in runs]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{statistics.fmean(values):.3f} +- {std:.3f}")
        lines.append(f"| {model} | {which} | {part} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _spearman(x, y) -> float:
    rx = x.argsort().argsort().double()
    ry = y.argsort().argsort().double()
    rx, ry = rx - rx.mean(), ry - ry.mean()
    return float((rx * ry).sum() / (rx.norm() * ry.norm()).clamp_min(1e-12))


def diagnostics_table(jobs: list[dict]) -> str:
    """Mean over seeds of `diagnose` for every finished run."""
    rows: dict[str, list[dict]] = {}
    for job in jobs:
        if (Path(job["out"]) / "model.yaml").exists():
            rows.setdefault(job["model"], []).append(diagnose(Path(job["out"]), Path(job["test"])))
    if not rows:
        return ""
    keys = sorted({k for runs in rows.values() for r in runs for k in r})
    lines = ["diagnostics on the test set (mean over seeds; see `diagnose`)", "",
             "| model | " + " | ".join(keys) + " |", "|" + " --- |" * (len(keys) + 1)]
    for model, runs in rows.items():
        cells = [f"{statistics.fmean([r[k] for r in runs]):.4f}" if all(k in r for r in runs)
                 else "-" for k in keys]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def learning_curves(jobs: list[dict], every: int) -> str:
    """Validation log-likelihood (-val NLL) every ``every`` epochs, mean +- std over seeds,
    with per run: the best epoch's value (what the checkpoint keeps), the mean of the last 5
    epochs, and the std of the epoch-to-epoch change over the last 10 (how noisy the curve
    is, against the gaps between models)."""
    curves: dict[str, dict[int, list[float]]] = {}
    runs: dict[str, list[list[float]]] = {}
    for job in jobs:
        log = Path(job["out"]) / "log.csv"
        if not log.exists():
            continue
        with log.open() as handle:
            values = [-float(row["val_nll"]) for row in csv.DictReader(handle)]
        runs.setdefault(job["model"], []).append(values)
        for epoch, value in enumerate(values, 1):
            curves.setdefault(job["model"], {}).setdefault(epoch, []).append(value)
    if not curves:
        return ""
    last = max(e for c in curves.values() for e in c)
    epochs = sorted({e for e in range(every, last + 1, every)} | {1, last})

    def cell(values: list[float]) -> str:
        if not values:
            return "-"
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.2f} +- {std:.2f}"

    lines = ["validation log-likelihood by epoch (mean +- std over seeds)", "",
             "| model | " + " | ".join(f"ep {e}" for e in epochs)
             + " | best epoch | last 5 | epoch-to-epoch change std |",
             "|" + " --- |" * (len(epochs) + 4)]
    for model, curve in curves.items():
        cells = [cell(curve.get(e, [])) for e in epochs]
        series = runs[model]
        jitter = [statistics.stdev(np.diff(v[-11:]).tolist()) for v in series if len(v) > 2]
        cells += [cell([max(v) for v in series]), cell([statistics.fmean(v[-5:]) for v in series]),
                  f"{statistics.fmean(jitter):.2f}" if jitter else "-"]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def experiment_jobs(folder: Path) -> list[dict]:
    """The runs of a `benchmarks/experiments.py` output folder, as jobs for `learning_curves`."""
    jobs = []
    for log in sorted(folder.glob("runs/*/*_seed*/log.csv")):
        model = log.parent.name.rsplit("_seed", 1)[0]
        jobs.append({"model": f"{log.parent.parent.name} {model}", "out": str(log.parent)})
    if not jobs:
        raise SystemExit(f"curves: no runs/<group>/<model>_seed<k>/log.csv under {folder}")
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", choices=("vector", "diagnose", "curves", "split"))
    parser.add_argument("paths", nargs="*", type=Path,
                        help="diagnose: CHECKPOINT DATA (a trained run folder and a data set); "
                             "curves: the --out folder of a benchmarks/experiments.py run; "
                             "split: DATA_DIR RUN_DIR... (DATA_DIR holds vector_train and "
                             "vector_test; see `variance_split`)")
    parser.add_argument("--train", type=int, default=300, help="training sequences")
    parser.add_argument("--steps", type=int, default=75)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (all models)")
    parser.add_argument("--weight-decay", type=float, default=0.0,
                        help="Adam weight decay (all models of the call)")
    parser.add_argument("--noise-std", type=float, default=0.3)
    parser.add_argument("--occlusion", type=float, nargs=2, default=(0.2, 0.7),
                        metavar=("P_OCCLUDE", "P_STAY"))
    parser.add_argument("--models", nargs="*", default=None, help="subset of the model names")
    parser.add_argument("--basis-init-std", type=float, default=0.05,
                        help="model rkn_m50_perturbed: std of the basis perturbation")
    parser.add_argument("--split-sequences", type=int, default=200,
                        help="split: sequences of each data set used")
    parser.add_argument("--curve-every", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--results", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.study == "diagnose":
        if len(args.paths) != 2:
            parser.error("diagnose needs CHECKPOINT DATA")
        print(json.dumps(diagnose(*args.paths), indent=1))
        return 0
    if args.study == "split":
        if len(args.paths) < 2:
            parser.error("split needs DATA_DIR RUN_DIR...")
        parts = {p: args.paths[0] / f"vector_{p}" for p in ("train", "test")}
        print(split_table(args.paths[1:], parts, args.split_sequences))
        return 0
    if args.study == "curves":
        if len(args.paths) != 1:
            parser.error("curves needs the output folder of benchmarks/experiments.py")
        print(learning_curves(experiment_jobs(args.paths[0]), args.curve_every))
        return 0
    out = (args.out or REPO / "runs" / "bench" / f"quad_link_study_{args.study}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    jobs, info = plan_vector(args, out)
    print(f"{args.study}: {len(jobs)} runs, {args.jobs} at a time; {json.dumps(info)}",
          flush=True)
    results = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
        for row in pool.map(run_job, jobs):
            results.append(row)
            print(json.dumps(row), flush=True)
    _, markdown = experiments.summarize(results, "quad_link_study")
    command = " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"## quad_link_study {args.study} ({platform.node()}, {os.cpu_count()} cpus, "
              f"torch threads 1, {args.jobs} jobs, {time.monotonic() - start:.0f} s)\n\n"
              f"Command: `.venv/bin/python benchmarks/quad_link_study.py {command}`\n\n"
              f"Occluded share of link readings: {json.dumps(info['occluded_share'])}\n\n")
    text = (header + markdown + "\n" + learning_curves(jobs, args.curve_every) + "\n"
            + diagnostics_table(jobs))
    results_file = args.results or REPO / "benchmarks" / "results" / \
        f"quad_link_study_{args.study}.md"
    results_file.write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
