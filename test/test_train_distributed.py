"""Data-parallel training: two gloo processes under torchrun train what one process trains.

The recipe has 21 training sequences in batches of 6 (the last batch, three sequences, splits
2 and 1, so the shares' losses need different weights), 5 validation sequences (shards of 3
and 2), observation drops and outages: each of these breaks the equivalence if the shares,
the loss weights, the drops or the validation reduction are wrong.

One basis matrix (``num_basis: 1``): with several, the coefficient net's gradients at
initialization are about 1e-10, rounding noise that differs with the summation order and that
Adam's normalization turns into steps of about 1e-5; every other weight agrees to about 3e-8.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from rkn_ros.cli import main as cli
from rkn_ros.core import build_model
from rkn_ros.core.checkpoint import METADATA_FILE, WEIGHTS_FILE
from rkn_ros.runtime import StreamingEstimator
from rkn_ros.train.config import recipe_from_dict
from rkn_ros.train.data import compute_normalization, generate_dataset, to_tensors
from rkn_ros.train.distributed import Cluster, share_weight
from rkn_ros.train.preparation import model_config_for
from rkn_ros.train.step import batch_loss, drop_observations, static_forward
from rkn_ros.train.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]
RECIPE = {
    "name": "ddp",
    "seed": 3,
    "data": {
        "train": {"generate": {"generator": "pendulum", "num_sequences": 21, "steps": 16,
                               "seed": 1, "noise": True}},
        "validation": {"generate": {"generator": "pendulum", "num_sequences": 5, "steps": 16,
                                    "seed": 2, "noise": True}},
    },
    "model": {"latent_obs_dim": 4, "num_basis": 1, "bandwidth": 1,
              "encoder_conv_channels": [4, 4], "encoder_dense": 8, "decoder_hidden": [8]},
    "training": {"epochs": 2, "batch_size": 6, "device": "cpu", "num_threads": 1,
                 "early_stopping_patience": 0, "observation_drop": 0.3, "keep_first": 2,
                 "drop_gap": 4},
}


IMPUTATION = {
    **RECIPE, "name": "ddp_imputation",
    "data": {"train": {"generate": {"generator": "pendulum", "num_sequences": 9, "steps": 12,
                                    "seed": 1, "drop_prob": 0.5}},
             "validation": {"generate": {"generator": "pendulum", "num_sequences": 3,
                                         "steps": 12, "seed": 2, "drop_prob": 0.5}}},
    "model": {**RECIPE["model"], "image_decoder": True},
    "training": {**RECIPE["training"], "epochs": 1, "batch_size": 4, "loss": "bernoulli",
                 "observation_drop": 0.0, "drop_gap": 0},
}


def _torchrun(recipe_file: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
         "-m", "rkn_ros.cli", "train", str(recipe_file), "--out", str(out), "--no-progress"],
        capture_output=True, text=True, cwd=REPO, timeout=240,
    )


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / WEIGHTS_FILE))


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "ddp.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


@pytest.fixture(scope="module")
def two_processes(recipe_file, tmp_path_factory) -> Path:
    """The recipe trained by `rkn-ros train` in two gloo processes under torchrun."""
    out = tmp_path_factory.mktemp("ddp") / "run"
    proc = _torchrun(recipe_file, out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("ddp: 2 epochs") == 1  # rank 0 alone reports
    return out


@pytest.fixture(scope="module")
def one_process(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("single") / "run"
    Trainer(recipe_from_dict(RECIPE), out, "cpu", show_progress=False).run()
    return out


def test_two_processes_train_the_weights_of_one(two_processes, one_process):
    for name in ("", "last"):
        ddp, single = _weights(two_processes / name), _weights(one_process / name)
        assert ddp.keys() == single.keys()
        for key, value in single.items():
            torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-6, msg=key)
    # and training moved them: the comparison is not between two initializations
    torch.manual_seed(RECIPE["seed"])
    recipe = recipe_from_dict(RECIPE)
    start = build_model(model_config_for(recipe, generate_dataset(
        dict(RECIPE["data"]["train"]["generate"])))).state_dict()
    moved = max(float((start[k] - v).abs().max()) for k, v in _weights(one_process).items())
    assert moved > 1e-3


def test_a_loss_on_the_images_alone_trains_the_same_in_two_processes(tmp_path):
    """Bernoulli loss: the mean and variance heads get no gradient (DDP must still hear from
    them), every frame weighs the same, and the last batch (one sequence) leaves rank 1 an
    empty share."""
    recipe_file = tmp_path / "imputation.yaml"
    recipe_file.write_text(yaml.safe_dump(IMPUTATION))
    proc = _torchrun(recipe_file, tmp_path / "ddp")
    assert proc.returncode == 0, proc.stderr[-3000:]
    Trainer(recipe_from_dict(IMPUTATION), tmp_path / "single", "cpu", show_progress=False).run()
    ddp, single = _weights(tmp_path / "ddp" / "last"), _weights(tmp_path / "single" / "last")
    for key, value in single.items():
        torch.testing.assert_close(ddp[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_logs_and_metadata_record_the_world_size(two_processes, one_process):
    meta = yaml.safe_load((two_processes / METADATA_FILE).read_text())
    assert meta["training"]["world_size"] == 2
    assert yaml.safe_load((one_process / METADATA_FILE).read_text())["training"]["world_size"] == 1
    ddp_rows = (two_processes / "log.csv").read_text().splitlines()
    single_rows = (one_process / "log.csv").read_text().splitlines()
    assert ddp_rows[0].split(",")[-2:] == ["world_size", "seconds"]
    assert [row.split(",")[-2] for row in ddp_rows[1:]] == ["2", "2"]
    # sharded validation and the reduced training loss give one process's numbers
    for ddp, single in zip(ddp_rows[1:], single_rows[1:], strict=True):
        ddp_values = [float(v) for v in ddp.split(",")[:6]]
        single_values = [float(v) for v in single.split(",")[:6]]
        np.testing.assert_allclose(ddp_values, single_values, rtol=1e-4, atol=1e-5)


def test_the_distributed_checkpoint_evaluates_and_runs(two_processes, tmp_path, capsys):
    data = generate_dataset({"generator": "pendulum", "num_sequences": 3, "steps": 16,
                             "seed": 9, "noise": True})
    data.save(tmp_path / "data")
    assert cli(["evaluate", str(two_processes), "--data", str(tmp_path / "data")]) == 0
    assert "log_likelihood" in capsys.readouterr().out
    est = StreamingEstimator.from_checkpoint(two_processes, device="cpu")
    for image in data.arrays["images"][0]:
        out = est.step({"image": image})
    assert all(math.isfinite(v) for v in out.position)


def test_same_recipe_twice_trains_the_same_weights(one_process, tmp_path):
    Trainer(recipe_from_dict(RECIPE), tmp_path / "again", "cpu", show_progress=False).run()
    assert (tmp_path / "again" / WEIGHTS_FILE).read_bytes() == (
        one_process / WEIGHTS_FILE).read_bytes()


def test_a_global_batch_that_does_not_divide_is_refused():
    cluster = Cluster(rank=1, world_size=4, device=torch.device("cpu"))
    with pytest.raises(ValueError, match=r"batch_size 6 is the global batch .* multiple of 4"):
        cluster.check_batch_size(6)
    cluster.check_batch_size(8)
    shares = [Cluster(r, 4, torch.device("cpu")).share(torch.arange(6)).tolist()
              for r in range(4)]
    assert shares == [[0, 1], [2, 3], [4], [5]]


def test_share_weights_make_the_ranks_mean_the_batch_mean():
    """What DDP averages, the ranks' weighted share losses, is the whole batch's loss, with
    shares of unequal size and targets missing unevenly (an empty share weighs nothing)."""
    recipe = recipe_from_dict(RECIPE)
    ds = generate_dataset(dict(RECIPE["data"]["train"]["generate"]))
    torch.manual_seed(0)
    model = build_model(model_config_for(recipe, ds))
    data = to_tensors(ds, compute_normalization(ds))
    data.target_valid[1, 3:] = False
    data.target_valid[4, :10] = False
    cpu = torch.device("cpu")
    for index in (torch.tensor([5, 1, 4, 0, 2]), torch.tensor([3])):
        whole = batch_loss(model, data, index, cpu, "gaussian")
        parts = []
        for rank in range(2):
            cluster = Cluster(rank, 2, cpu)
            share = cluster.share(index)
            weight = share_weight(cluster, data, index, share, "gaussian")
            if share.numel() == 0:
                assert weight == 0.0
                continue
            parts.append(batch_loss(model, data, share, cpu, "gaussian") * weight)
        torch.testing.assert_close(sum(parts) / 2, whole)


def test_cuda_only_step_options_are_refused_on_the_cpu(recipe_file, tmp_path, capsys):
    for option, words in ((["--step", "cuda_graph"], "needs a CUDA device"),
                          (["--precision", "tf32"], "CUDA matrix-product mode")):
        assert cli(["train", str(recipe_file), "--out", str(tmp_path / option[1]),
                    "--no-progress", *option]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0] and "cpu" in err[0], err
        assert not (tmp_path / option[1]).exists()


def test_the_capturable_forward_matches_the_model_with_frames_missing():
    """``static_forward`` (what a CUDA graph captures) encodes every frame and checks
    nothing; its outputs and gradients are the eager forward's."""
    recipe = recipe_from_dict(RECIPE)
    data = generate_dataset(dict(RECIPE["data"]["train"]["generate"]))
    torch.manual_seed(0)
    model = build_model(model_config_for(recipe, data))
    images = torch.from_numpy(data.arrays["images"][:4]).float() / 255.0
    valid = drop_observations({"image": torch.ones(4, 16, dtype=torch.bool)}, 0.4, 2,
                              [(0, 0, i) for i in range(4)], gap=4)
    assert not bool(valid["image"].all())
    results = []
    for forward in (lambda: model({"image": images}, valid),
                    lambda: static_forward(model, {"image": images}, valid, None)):
        model.zero_grad()
        out = forward()
        (out.mean.sum() + out.var.log().sum()).backward()
        results.append((out.mean.detach(), out.var.detach(),
                        [p.grad.clone() for p in model.parameters()]))
    (mean_a, var_a, grads_a), (mean_b, var_b, grads_b) = results
    torch.testing.assert_close(mean_b, mean_a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(var_b, var_a, rtol=1e-5, atol=1e-6)
    for grad_a, grad_b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(grad_b, grad_a, rtol=1e-4, atol=1e-6)


def test_bf16_autocast_trains_to_about_the_fp32_nll(one_process, tmp_path):
    recipe = recipe_from_dict({**RECIPE, "training": {**RECIPE["training"], "precision": "bf16"}})
    result = Trainer(recipe, tmp_path / "bf16", "cpu", show_progress=False).run()
    fp32 = yaml.safe_load((one_process / METADATA_FILE).read_text())["metrics"]
    assert result.best_val_nll == pytest.approx(fp32["validation_nll"], abs=0.1)
    assert result.best_val_nll != fp32["validation_nll"]  # it did run in another precision
