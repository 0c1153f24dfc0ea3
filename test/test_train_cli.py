"""`rkn-ros train` and `rkn-ros evaluate` end to end, resume, and one-line errors."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from pam_recordings import PAM_FILE

from rkn_ros.cli import main as cli
from rkn_ros.core.checkpoint import METADATA_FILE, WEIGHTS_FILE, load_checkpoint
from rkn_ros.data.dataset import SequenceDataset
from rkn_ros.runtime import StreamingEstimator
from rkn_ros.train.config import load_recipe
from rkn_ros.train.data import generate_dataset
from rkn_ros.train.trainer import Trainer, drop_observations

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "config" / "train" / "tiny.yaml"
REPORT_KEYS = {"log_likelihood", "rmse", "coverage_1sigma", "coverage_2sigma",
               "calibration_histogram", "angle_rmse"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The tiny recipe trained through the real console entry point (a subprocess)."""
    out = tmp_path_factory.mktemp("tiny")
    proc = subprocess.run(
        [sys.executable, "-m", "rkn_ros.cli", "train", str(TINY), "--out", str(out),
         "--device", "cpu"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "tiny: 2 epochs" in proc.stdout
    return out


@pytest.fixture(scope="module")
def fresh_data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "pendulum"
    generate_dataset({"generator": "pendulum", "num_sequences": 6, "steps": 20, "seed": 77,
                      "noise": True}).save(folder)
    return folder


def test_train_writes_checkpoint_and_log(trained):
    for name in (WEIGHTS_FILE, METADATA_FILE, "log.csv", "last/optimizer.safetensors"):
        assert (trained / name).is_file(), name
    rows = (trained / "log.csv").read_text().strip().splitlines()
    assert rows[0].startswith("epoch,step,train_nll,val_nll")
    assert len(rows) == 3  # header + 2 epochs
    meta = yaml.safe_load((trained / METADATA_FILE).read_text())
    assert meta["outputs"] == {"names": ["joint_1"], "units": ["rad"], "kind": "sincos"}
    assert meta["inputs"]["image"]["shape"] == [24, 24]
    assert meta["dt"] == 0.05 and len(meta["data_hash"]) == 64
    assert math.isfinite(meta["metrics"]["validation_nll"])


def test_training_into_an_earlier_run_needs_resume_or_overwrite(trained, tmp_path, capsys):
    """A second `train --out` to the same folder would replace a trained model silently."""
    before = (trained / WEIGHTS_FILE).read_bytes()
    assert cli(["train", str(TINY), "--out", str(trained), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already holds a training run" in err[0] and "--overwrite" in err[0]
    assert (trained / WEIGHTS_FILE).read_bytes() == before
    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    (copy / WEIGHTS_FILE).write_bytes(b"an older run")
    with (copy / "log.csv").open("a") as log:
        log.write("99,999,0,0,0,0,0\n")
    args = ["train", str(TINY), "--out", str(copy), "--device", "cpu", "--no-progress"]
    assert cli([*args, "--overwrite"]) == 0
    # replaced, not appended to: the same recipe trains the same weights and a fresh log
    assert (copy / WEIGHTS_FILE).read_bytes() == before
    def without_times(path: Path) -> list[list[str]]:
        return [row.split(",")[:-1] for row in path.read_text().splitlines()]

    assert without_times(copy / "log.csv") == without_times(trained / "log.csv")


def test_evaluate_cli_json_and_plots(trained, fresh_data, tmp_path, capsys):
    out_json = tmp_path / "report.json"
    code = cli(["evaluate", str(trained), "--data", str(fresh_data), "--json", str(out_json),
                "--plots", str(tmp_path / "plots")])
    assert code == 0
    report = json.loads(out_json.read_text())
    assert set(report) >= REPORT_KEYS
    assert 0.0 <= report["coverage_1sigma"] <= report["coverage_2sigma"] <= 1.0
    assert report["rmse"] > 0 and math.isfinite(report["log_likelihood"])
    hist = report["calibration_histogram"]
    assert len(hist["observed"]) == len(hist["edges"]) - 1
    assert abs(sum(hist["observed"]) + hist["outside"] - 1.0) < 1e-9
    for png in ("sequences.png", "calibration.png"):
        assert (tmp_path / "plots" / png).read_bytes()[:4] == b"\x89PNG"
    assert json.loads(capsys.readouterr().out)["rmse"] == report["rmse"]
    # The angle error again, by another road: the streaming runtime (ONNX Runtime, one tick at
    # a time, its own decoding) over the same sequences, scored on the true angles.
    data = SequenceDataset.load(fresh_data)
    est = StreamingEstimator.from_checkpoint(trained, device="cpu")
    errors = []
    for images, seen, angles in zip(data.arrays["images"], data.arrays["images_valid"],
                                    data.arrays["joint_angles"], strict=True):
        est.reset()
        for image, valid, angle in zip(images, seen, angles, strict=True):
            out = est.step({"image": image if valid else None})
            errors.append((angle[0] - out.position[0] + math.pi) % (2 * math.pi) - math.pi)
    assert report["angle_rmse"] == pytest.approx(np.sqrt(np.mean(np.square(errors))), rel=1e-3)


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):
    recipe = load_recipe(TINY)
    whole = Trainer(recipe, tmp_path / "whole", "cpu", show_progress=False).run()
    first = Trainer(
        _with_training(recipe, max_steps=3), tmp_path / "split", "cpu", show_progress=False
    ).run()
    assert first.stopped == "max_steps" and first.steps == 3
    # The interrupted run already holds a usable checkpoint.
    load_checkpoint(tmp_path / "split")
    resumed = Trainer(recipe, tmp_path / "split", "cpu", resume=tmp_path / "split",
                      show_progress=False).run()
    assert resumed.steps == whole.steps and resumed.epochs_done == 2
    a = (tmp_path / "whole" / WEIGHTS_FILE).read_bytes()
    b = (tmp_path / "split" / WEIGHTS_FILE).read_bytes()
    assert a == b


def test_same_recipe_same_bytes(trained, tmp_path):
    again = Trainer(load_recipe(TINY), tmp_path / "again", "cpu", show_progress=False).run()
    assert (again.out_dir / WEIGHTS_FILE).read_bytes() == (trained / WEIGHTS_FILE).read_bytes()


def _with_training(recipe, **changes):
    import dataclasses

    return dataclasses.replace(recipe, training=dataclasses.replace(recipe.training, **changes))


def _one_error_line(capsys, prefix: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(prefix), err
    assert "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["training"].update(learning_rate=0.1), "training.learning_rate: unknown key"),
        (lambda d: d["training"].update(epochs="ten"), "training.epochs: expected an integer"),
        (lambda d: d["training"].update(lr=-1.0), "training.lr: expected a number > 0"),
        (lambda d: d["training"].update(device="tpu"), "training.device: expected one of"),
        (lambda d: d["model"].update(latent_obs_dim=0), "model.latent_obs_dim"),
        (lambda d: d["model"].update(colour="red"), "model.colour: unknown key"),
        (lambda d: d["data"]["train"]["generate"].update(sequences=3),
         "data.train.generate.sequences"),
        (lambda d: d["data"].update(validation_fraction=1.5), "data.validation_fraction"),
        (lambda d: d["training"].update(drop_gap=-3),
         "training.drop_gap: expected an integer >= 0"),
    ],
)
def test_bad_config_is_one_clear_line(tmp_path, capsys, edit, message):
    data = yaml.safe_load(TINY.read_text())
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli(["train", str(path), "--out", str(tmp_path / "out")]) == 1
    err = _one_error_line(capsys, "rkn-ros train: error:")
    assert message in err and str(path) in err
    assert not (tmp_path / "out").exists()  # rejected before any work


def test_truncated_weights_one_line(trained, fresh_data, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / METADATA_FILE).write_bytes((trained / METADATA_FILE).read_bytes())
    (broken / WEIGHTS_FILE).write_bytes((trained / WEIGHTS_FILE).read_bytes()[:-100])
    assert cli(["evaluate", str(broken), "--data", str(fresh_data)]) == 1
    err = _one_error_line(capsys, "rkn-ros evaluate: error:")
    assert "truncated or corrupt" in err and WEIGHTS_FILE in err


def test_metadata_mismatch_one_line(trained, fresh_data, tmp_path, capsys):
    broken = tmp_path / "mismatch"
    broken.mkdir()
    (broken / WEIGHTS_FILE).write_bytes((trained / WEIGHTS_FILE).read_bytes())
    meta = yaml.safe_load((trained / METADATA_FILE).read_text())
    meta["model"]["latent_obs_dim"] = 5
    (broken / METADATA_FILE).write_text(yaml.safe_dump(meta))
    assert cli(["evaluate", str(broken), "--data", str(fresh_data)]) == 1
    err = _one_error_line(capsys, "rkn-ros evaluate: error:")
    assert "metadata does not match the weights" in err


def test_data_not_matching_checkpoint_one_line(trained, tmp_path, capsys):
    folder = tmp_path / "quad"
    generate_dataset({"generator": "quad_link", "num_sequences": 2, "steps": 8,
                      "seed": 1}).save(folder)
    assert cli(["evaluate", str(trained), "--data", str(folder)]) == 1
    err = _one_error_line(capsys, "rkn-ros evaluate: error:")
    assert "input 'image'" in err and "[48, 48]" in err


def test_training_outages_hide_one_run_of_steps_for_every_sensor():
    """``drop_gap``: besides the random drops (each sensor its own), every sequence loses one
    run of 1 to drop_gap consecutive steps, the same for all sensors, never in the first
    keep_first; without it each row's drops come from its own stream alone."""
    valid = {"image": torch.ones(400, 60, dtype=torch.bool),
             "joints": torch.ones(400, 60, dtype=torch.bool)}
    valid["joints"][:, 50:] = False  # steps already missing stay missing
    streams = [(0, 3, i) for i in range(400)]
    out = drop_observations(valid, 0.0, 5, streams, gap=12)
    hidden = ~out["image"]
    assert not hidden[:, :5].any()
    np.testing.assert_array_equal(out["joints"].numpy(), (~hidden & valid["joints"]).numpy())
    lengths = []
    for row in hidden.numpy():
        steps = np.flatnonzero(row)
        assert steps.size >= 1 and np.all(np.diff(steps) == 1)  # one contiguous run
        lengths.append(steps.size)
    assert max(lengths) == 12 and min(lengths) == 1  # cut at the end of a sequence too
    plain = drop_observations(valid, 0.5, 5, streams)
    for row, stream in enumerate(streams):
        rng = np.random.default_rng(list(stream))
        for name, mask in valid.items():  # each sensor its own draws, in order
            expected = mask[row].numpy() & (rng.random(60) >= 0.5)
            expected[:5] = mask[row, :5].numpy()
            np.testing.assert_array_equal(plain[name][row].numpy(), expected)
    # a row's drops are its stream's, whatever else is in the batch
    alone = drop_observations({k: v[7:8] for k, v in valid.items()}, 0.5, 5, streams[7:8], gap=12)
    both = drop_observations(valid, 0.5, 5, streams, gap=12)
    for name in valid:
        np.testing.assert_array_equal(alone[name][0].numpy(), both[name][7].numpy())


def test_pam_recipe_trains_and_reports_horizons(tmp_path):
    """Episodes the model never saw, in a PAM-format file of their own: forward-prediction RMSE
    at 1..10 steps."""
    with np.load(PAM_FILE) as npz:
        arrays = {k: npz[k] for k in npz.files}
    episodes = 24
    stop = int(arrays["episode_starts"][episodes - 1] + arrays["episode_lengths"][episodes - 1])
    small = {
        "observations": arrays["observations"][:stop],
        "actions": arrays["actions"][:stop],
        "episode_starts": arrays["episode_starts"][:episodes],
        "episode_lengths": arrays["episode_lengths"][:episodes],
        "episode_ids": arrays["episode_ids"][:episodes],
    }
    train_file = tmp_path / "pam_small.npz"
    np.savez(train_file, **small)
    recipe = tmp_path / "pam.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "pam_tiny",
        "data": {"train": {"path": str(train_file), "pam": {"window": 20, "seed": 0}}},
        "model": {"latent_obs_dim": 4, "num_basis": 3, "encoder_hidden": [8],
                  "decoder_hidden": [8], "control_hidden": [8]},
        "training": {"epochs": 10, "batch_size": 16, "lr": 0.01, "device": "cpu",
                     "observation_drop": 0.5},
    }))
    out = tmp_path / "out"
    assert cli(["train", str(recipe), "--out", str(out), "--no-progress"]) == 0
    _model, meta = load_checkpoint(out)
    assert meta.model.action_dim == 8 and meta.actions.names[0] == "muscle_1"
    assert meta.outputs.kind == "direct" and meta.outputs.units == ("rad",) * 4
    # the next 24 episodes of the recording, re-based as a file of their own
    first, end = int(arrays["episode_starts"][episodes]), episodes * 2
    stop2 = int(arrays["episode_starts"][end - 1] + arrays["episode_lengths"][end - 1])
    unseen = tmp_path / "unseen.npz"
    np.savez(
        unseen,
        observations=arrays["observations"][first:stop2],
        actions=arrays["actions"][first:stop2],
        episode_starts=arrays["episode_starts"][episodes:end] - first,
        episode_lengths=arrays["episode_lengths"][episodes:end],
        episode_ids=arrays["episode_ids"][episodes:end],
    )
    report_path = tmp_path / "pam.json"
    assert cli(["evaluate", str(out), "--data", str(unseen), "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    rmse = report["rmse_by_horizon"]
    assert set(rmse) == {"1", "3", "5", "7", "10"}
    # an observation one step back tells more than one ten steps back (a model that ignores
    # its inputs, or horizons mixed up, would not show it)
    assert 0 < rmse["1"] < rmse["10"] < 10, rmse


def test_one_recording_as_one_sequence_is_refused_with_what_to_do(tmp_path, capsys):
    """One bag imported without --window is one sequence: no validation split can be cut."""
    data = yaml.safe_load(TINY.read_text())
    data["data"]["train"]["generate"]["num_sequences"] = 1
    path = tmp_path / "one.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli(["train", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    err = _one_error_line(capsys, "rkn-ros train: error:")
    assert "validation_fraction 0.25 of 1 training sequence(s) leaves no validation sequence" in err
    assert "--window" in err
    assert not (tmp_path / "out").exists()


def test_early_stopping_that_keeps_the_first_epoch_is_warned_about(tmp_path, capsys):
    """A learning rate too small to move the weights: no epoch beats the first, early stopping
    ends the run, and the user hears that the model kept is the first epoch's."""
    data = yaml.safe_load(TINY.read_text())
    data["training"].update(lr=1e-12, epochs=6, early_stopping_patience=2)
    path = tmp_path / "stuck.yaml"
    path.write_text(yaml.safe_dump(data))
    assert cli(["train", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "3 epochs" in out and "after epoch 1 (stopped by: early_stopping)" in out
    assert "rkn-ros train: warning: the validation NLL was best after the first epoch" in err
    assert "validation set of 6 sequences" in err


def test_a_diverging_run_stops_and_fails_without_claiming_a_checkpoint(tmp_path, capsys):
    """A learning rate that turns the weights to NaN: the run stops after that epoch (it would
    not recover) and the CLI fails, naming the log, instead of printing a checkpoint path."""
    data = yaml.safe_load(TINY.read_text())
    data["training"].update(lr=1e8, epochs=5)
    path = tmp_path / "diverging.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert cli(["train", str(path), "--out", str(out), "--no-progress"]) == 1
    err = _one_error_line(capsys, "rkn-ros train: error: tiny: no epoch gave a finite validation")
    assert "(stopped by: diverged after epoch 1)" in err and str(out / "log.csv") in err
    assert not (out / "model.yaml").exists()
    assert len((out / "log.csv").read_text().splitlines()) == 2  # the header and epoch 1


def test_resume_goes_on_in_the_resumed_folder_and_never_over_another_run(
    trained, tmp_path, monkeypatch, capsys
):
    """`--resume DIR` without `--out` used to write into runs/<name>, over whatever run was
    there, splicing two logs; it continues in DIR. Into another run's folder it is refused."""
    monkeypatch.chdir(tmp_path)
    first = tmp_path / "first"
    base = ["train", str(TINY), "--device", "cpu", "--no-progress"]
    assert cli([*base, "--out", str(first), "--max-steps", "3"]) == 0
    other = tmp_path / "runs" / "tiny"  # where the recipe's name would put it
    shutil.copytree(trained, other)
    before = (other / WEIGHTS_FILE).read_bytes()
    capsys.readouterr()
    assert cli([*base, "--resume", str(first / "last")]) == 0
    assert f"checkpoint {first}" in capsys.readouterr().out
    assert (first / "model.yaml").exists()
    assert len((first / "log.csv").read_text().splitlines()) == 3  # header, epochs 1 and 2
    assert (other / WEIGHTS_FILE).read_bytes() == before
    assert cli([*base, "--resume", str(first), "--out", str(other)]) == 2
    assert "already holds a training run" in capsys.readouterr().err
    # --overwrite does not make that a fresh start: the resumed run's log would be spliced in
    assert cli([*base, "--resume", str(first), "--out", str(other), "--overwrite"]) == 2
    assert "pass one of them" in capsys.readouterr().err
    assert (other / WEIGHTS_FILE).read_bytes() == before
    # a copy of last/ kept elsewhere has no run folder to go on in: --out is needed
    snapshot = tmp_path / "snapshot"
    shutil.copytree(first / "last", snapshot)
    assert cli([*base, "--resume", str(snapshot)]) == 2
    assert "pass --out for the continued run" in capsys.readouterr().err
    assert not (snapshot / "last").exists()
    assert cli([*base, "--resume", str(snapshot), "--out", str(tmp_path / "from_snapshot")]) == 0
    assert cli([*base, "--resume", str(tmp_path / "nowhere")]) == 2
    assert "holds no training_state.yaml" in capsys.readouterr().err
