"""The paper-scale quad-link recipe trained to early stopping: its wall-clock time, against the
target of 10 minutes on one H100.

    python benchmarks/paper_scale.py [--scale 1.0] [--device cuda] [--step cuda_graph]
        [--precision fp32|tf32|bf16] [--batch 50] [--lr 1e-3] [--noisy] [--epochs 60]
        [--patience N] [--deadline-s S] [--jobs 6] [--reference-epochs 1] [--seed 0]
        [--out DIR] [--json FILE]

The paper's protocol (Becker et al., ICML 2019, section 6.1): 4,000 training sequences of 150
48x48 quad-link images, RKN with m = 100 (here with ``experiments.py quad_link``'s encoder
and decoder widths), trained until the validation NLL stops improving. ``--scale F`` takes
F times the sequence counts (4,000 / 400 / 1,000), so ``--scale 0.01`` runs in seconds on a
CPU. The data are ``experiments.py``'s quad-link sets (seeds 1, 2, 3), generated into
``OUT/data`` where missing; training and the test-set evaluation are ``experiments.run_one``.
The reference in the same run: the epoch time of a GRU with 50 units and the same encoder
and decoder (eager step, cuDNN on a GPU), ``--reference-epochs`` epochs after a warm-up one.
With ``--deadline-s`` the RKN stops (and is evaluated) in time; the table says so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import experiments  # benchmarks/ is on the path (above)
import training_step

TARGET_S = 600.0
WIDE = {"encoder_dense": 100, "decoder_hidden": [100]}


def sizes_for(scale: float) -> tuple[int, int, int, int]:
    """(train, validation, test, steps) of the paper's sets times ``scale``."""
    n_train, n_val, n_test, steps = experiments.SCALES["paper"]["quad_link"]
    return (max(4, round(n_train * scale)), max(2, round(n_val * scale)),
            max(2, round(n_test * scale)), steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="share of the paper's counts")
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    parser.add_argument("--step", choices=("eager", "cuda_graph"), default="eager")
    parser.add_argument("--precision", choices=("fp32", "tf32", "bf16"), default="fp32")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--noisy", action="store_true", help="the noisy-image task")
    parser.add_argument("--epochs", type=int, default=experiments.SCALES["paper"]["epochs"])
    parser.add_argument("--patience", type=int, default=None,
                        help="early-stopping patience (default: experiments.py's, epochs / 4)")
    parser.add_argument("--deadline-s", type=float, default=None,
                        help="stop the RKN's training after this many seconds")
    parser.add_argument("--jobs", type=int, default=3, help="processes generating the data")
    parser.add_argument("--reference-epochs", type=int, default=1,
                        help="timed GRU epochs (0: no reference)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="default runs/bench/paper_scale")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    out = (args.out or experiments.REPO / "runs" / "bench" / "paper_scale").resolve()
    sizes = sizes_for(args.scale)
    device = "cuda" if args.device == "auto" and _cuda() else args.device
    start = time.monotonic()
    data = experiments._generate_all([(out, "quad_link", sizes, args.noisy, 0.0)], args.jobs)[0]
    generated_s = time.monotonic() - start
    print(f"quad-link {'noisy' if args.noisy else 'clean'} {sizes[0]} / {sizes[1]} / {sizes[2]} "
          f"sequences x {sizes[3]} steps (scale {args.scale}); data ready in {generated_s:.0f} s",
          flush=True)

    reference_s = None
    if args.reference_epochs:
        from rkn_ros.core.checkpoint import resolve_device
        from rkn_ros.data.dataset import SequenceDataset

        train = SequenceDataset.load(data["train"])
        base = {"name": "reference", "data": {"train": {"path": str(data["train"])}}}
        seconds = training_step.time_epochs(
            experiments._rnn("gru", 50, **WIDE), train, base, resolve_device(device), "eager",
            "fp32", args.batch, args.lr, 1 + args.reference_epochs, 0.0)
        reference_s = sum(seconds) / len(seconds)
        print(f"reference: GRU 50 (eager) {reference_s:.2f} s per epoch", flush=True)

    training = {"step": args.step, "precision": args.precision, "batch_size": args.batch,
                "lr": args.lr}
    if args.patience is not None:
        training["early_stopping_patience"] = args.patience
    model = experiments._rkn(latent_obs_dim=experiments.SCALES["paper"]["quad_m"], **WIDE)
    run_dir = out / "runs" / f"rkn_seed{args.seed}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a timing, not a continuation
    job = {"group": "paper_scale", "model": "rkn", "seed": args.seed, "out": str(run_dir),
           "test": str(data["test"]), "evaluate_stopped": True,
           "recipe": experiments._recipe("paper_scale_rkn", model, data, args.epochs,
                                         args.seed, device, training)}
    if args.deadline_s is not None:
        job["deadline"] = time.time() + args.deadline_s
    row = experiments.run_one(job)
    per_epoch = row["train_seconds"] / max(row["epochs"], 1)
    finished = row["stopped"] in ("early_stopping", "epochs")
    verdict = ("met" if row["train_seconds"] <= TARGET_S else "not met") if finished else (
        f"not known: stopped by {row['stopped']} after {row['epochs']} epochs")
    print(f"| step | precision | batch | lr | epochs | stopped by | train s | s / epoch | "
          f"GRU s / epoch | RKN / GRU | test LL | RMSE | angle RMSE |\n"
          f"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
          f"| {args.step} | {args.precision} | {args.batch} | {args.lr:g} | {row['epochs']} | "
          f"{row['stopped']} | {row['train_seconds']:.0f} | {per_epoch:.2f} | "
          f"{_fmt(reference_s)} | {_fmt(reference_s and per_epoch / reference_s)} | "
          f"{row['log_likelihood']:.3f} | {row['rmse']:.4f} | {row.get('angle_rmse', 0):.3f} |")
    print(f"time to early stopping: target <= {TARGET_S:.0f} s on one H100: {verdict}")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "sizes": sizes, "data_seconds": generated_s,
                                         "gru_epoch_s": reference_s, "rkn": row}, indent=2))
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
