"""`rkn-ros generate`: loadable data sets, byte-for-byte reproducibility, options, bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from rkn_ros.cli import main
from rkn_ros.data.dataset import SequenceDataset
from rkn_ros.data.generate import (
    PendulumConfig,
    default_pendulum_config,
    generate_pendulum,
    load_pendulum_config,
)

REPO = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_cli_writes_a_loadable_pendulum_data_set_byte_for_byte(tmp_path, capsys):
    args = ["generate", "pendulum", "--sequences", "4", "--steps", "12", "--seed", "3",
            "--noise", "--drop-prob", "0.5", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    other_seed = [a if a != "3" else "4" for a in args]
    assert main([*other_seed, "--out", str(tmp_path / "c")]) == 0
    printed = capsys.readouterr().out
    assert "wrote pendulum data set" in printed
    assert "dropped on purpose (--drop-prob), zeroed and flagged in 'images_valid'" in printed
    digest_a = _digest(tmp_path / "a")
    assert set(digest_a) == {"data.npz", "metadata.yaml"}
    assert digest_a == _digest(tmp_path / "b")
    assert digest_a["data.npz"] != _digest(tmp_path / "c")["data.npz"]   # another seed

    ds = SequenceDataset.load(tmp_path / "a")
    meta = ds.metadata
    assert meta["generator"] == "pendulum" and meta["seed"] == 3 and meta["dt"] == 0.05
    assert meta["inputs"]["image"]["shape"] == [24, 24]
    a = ds.arrays
    assert a["images"].shape == (4, 12, 24, 24) and a["images"].dtype == np.uint8
    assert a["targets"].shape == (4, 12, 2) and a["targets"].dtype == np.float32
    assert np.allclose(a["targets"][..., 0], np.sin(a["joint_angles"][..., 0]), atol=1e-6)
    assert np.allclose(a["targets"][..., 1], np.cos(a["joint_angles"][..., 0]), atol=1e-6)
    # first 5 frames clean and kept; dropped frames zero and flagged; clean images kept
    assert np.array_equal(a["images"][:, :5], a["images_clean"][:, :5])
    assert np.all(a["images_valid"][:, :5]) and not np.all(a["images_valid"])
    assert np.all(a["images"][~a["images_valid"]] == 0)
    assert a["images_clean"][~a["images_valid"]].max() == 255
    f = a["noise_factors"]
    assert f.min() >= 0.0 and f.max() <= 1.0 and np.all(f[:, :5] == 1.0)


def test_quad_link_generation_shapes_and_truth():
    config = default_pendulum_config("quad_link")
    ds = generate_pendulum("quad_link", config, num_sequences=2, steps=8, seed=0)
    a = ds.arrays
    assert a["images"].shape == (2, 8, 48, 48)
    assert a["targets"].shape == (2, 8, 8) and a["joint_angles"].shape == (2, 8, 4)
    assert ds.metadata["targets"]["names"][:2] == ["sin_theta_1", "cos_theta_1"]
    assert np.all(np.abs(a["joint_angles"]) <= np.pi)
    assert "images_clean" not in a and np.all(a["images_valid"])
    # velocities are the derivative of the angles (finite difference, short dt)
    unwrapped = np.unwrap(a["joint_angles"].astype(np.float64), axis=1)
    slope = np.diff(unwrapped, axis=1) / 0.05
    mid = 0.5 * (a["joint_velocities"][:, 1:] + a["joint_velocities"][:, :-1])
    assert np.corrcoef(slope.ravel(), mid.ravel())[0, 1] > 0.95


def test_noise_changes_only_the_images():
    clean = generate_pendulum("pendulum", PendulumConfig(), 3, 10, seed=1)
    noisy = generate_pendulum("pendulum", PendulumConfig(noise=True), 3, 10, seed=1)
    assert np.array_equal(clean.arrays["joint_angles"], noisy.arrays["joint_angles"])
    assert np.array_equal(clean.arrays["images"], noisy.arrays["images_clean"])
    assert not np.array_equal(clean.arrays["images"], noisy.arrays["images"])


@pytest.mark.parametrize("kind", ["pendulum", "quad_link"])
def test_config_files_equal_the_built_in_defaults(kind):
    assert load_pendulum_config(REPO / "config" / "sim" / f"{kind}.yaml", kind) == \
        default_pendulum_config(kind)


def test_cli_options_links_and_image_size(tmp_path):
    assert main(["generate", "pendulum", "--links", "2", "--image-size", "32", "--sequences", "2",
                 "--steps", "6", "--out", str(tmp_path), "--no-progress"]) == 0
    ds = SequenceDataset.load(tmp_path)
    assert ds.arrays["images"].shape == (2, 6, 32, 32)
    assert ds.arrays["targets"].shape == (2, 6, 4)
    assert ds.metadata["parameters"]["physics"]["integrator"] == "rk4"


@pytest.mark.parametrize("extra, message", [
    (["--sequences", "0"], "argument --sequences: must be an integer >= 1, received 0"),
    (["--steps", "five"], "argument --steps: must be an integer, received 'five'"),
    (["--drop-prob", "1.5"], "argument --drop-prob: must be in [0, 1), received 1.5"),
    (["--seed", "-1"], "argument --seed: must be an integer >= 0"),
])
def test_cli_rejects_bad_numbers(tmp_path, capsys, extra, message):
    base = {"--sequences": "2", "--steps": "8"}
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        base[flag] = value
    argv = ["generate", "pendulum", "--out", str(tmp_path / "x")]
    for flag, value in base.items():
        argv += [flag, value]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_cli_rejects_bad_combinations_and_files(tmp_path, capsys):
    out = tmp_path / "d"
    common = ["--sequences", "2", "--steps", "8", "--no-progress"]
    assert main(["generate", "quad_link", "--links", "3", "--out", str(out), *common]) == 1
    assert "--links: quad_link has 4 links, received 3" in capsys.readouterr().err

    bad = tmp_path / "bad.yaml"
    bad.write_text("physics:\n  mass: 2.0\n")
    assert main(["generate", "pendulum", "--config", str(bad), "--out", str(out), *common]) == 1
    assert f"{bad}: physics.mass: unknown key" in capsys.readouterr().err
    bad.write_text("physic: {}\n")
    assert main(["generate", "pendulum", "--config", str(bad), "--out", str(out), *common]) == 1
    assert f"{bad}: physic: unknown key (allowed: physics, render" in capsys.readouterr().err
    bad.write_text("physics:\n  masses: 1.0\n")
    assert main(["generate", "pendulum", "--config", str(bad), "--out", str(out), *common]) == 1
    assert f"{bad}: physics.masses: expected a list, got 1.0" in capsys.readouterr().err
    missing = tmp_path / "nope.yaml"
    assert main(["generate", "pendulum", "--config", str(missing), "--out", str(out),
                 *common]) == 1
    assert f"{missing}: cannot read" in capsys.readouterr().err
    bad.write_text("joint:\n  inertia: heavy\n")
    assert main(["generate", "pneumatic", "--config", str(bad), "--out", str(out), *common]) == 1
    assert "joint.inertia: expected a number, got 'heavy'" in capsys.readouterr().err
    bad.write_text("physics: 3\n")
    assert main(["generate", "pendulum", "--config", str(bad), "--out", str(out), *common]) == 1
    assert "physics: expected a mapping, got 3" in capsys.readouterr().err
    bad.write_text("noise: 'false'\n")           # a quoted YAML string, truthy for bool()
    assert main(["generate", "pendulum", "--config", str(bad), "--out", str(out), *common]) == 1
    assert "noise: expected true or false, got 'false'" in capsys.readouterr().err
    assert not out.exists()
    # an --out that cannot be created: one line naming it, no traceback
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["generate", "pendulum", "--out", str(blocker / "d"), *common]) == 2
    err = capsys.readouterr().err
    assert f"--out {blocker / 'd'}: cannot write the data set" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

    assert main(["generate", "pendulum", "--out", str(out), *common]) == 0
    assert main(["generate", "pendulum", "--out", str(out), *common]) == 2
    assert "already holds a data set" in capsys.readouterr().err
    assert main(["generate", "pendulum", "--out", str(out), "--overwrite", *common]) == 0


def test_cli_writes_a_reproducible_pneumatic_data_set(tmp_path, capsys):
    args = ["generate", "pneumatic", "--sequences", "3", "--steps", "40", "--seed", "2",
            "--drop-prob", "0.3", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    ds = SequenceDataset.load(tmp_path / "a")
    a, meta = ds.arrays, ds.metadata
    assert meta["generator"] == "pneumatic" and meta["dt"] == 0.01
    assert meta["inputs"]["joints"]["units"] == ["rad", "bar", "bar"]
    assert meta["actions"]["names"] == ["p_set_flexor", "p_set_extensor"]
    assert meta["parameters"]["valve"]["delay"] == 0.03
    assert a["joint_obs"].shape == (3, 40, 3) and a["actions"].shape == (3, 40, 2)
    assert a["targets"].shape == (3, 40, 2) and a["targets"].dtype == np.float32
    valid = a["joint_obs_valid"]
    assert np.all(valid[:, :5]) and not np.all(valid)
    assert np.all(a["joint_obs"][~valid] == 0.0)
    kept = a["joint_obs"][valid]
    assert np.abs(kept[:, 0] - a["joint_angles"][valid][:, 0]).max() < 0.01
    assert np.array_equal(a["targets"][..., 0], a["joint_angles"][..., 0])

    assert main(["generate", "pneumatic", "--noise", "--out", str(tmp_path / "c"),
                 "--sequences", "1", "--steps", "10"]) == 1
    assert "--noise applies to the pendulums" in capsys.readouterr().err


def test_pneumatic_excitation_option(tmp_path):
    assert main(["generate", "pneumatic", "--excitation", "steps", "--sequences", "2",
                 "--steps", "30", "--out", str(tmp_path), "--no-progress"]) == 0
    ds = SequenceDataset.load(tmp_path)
    assert ds.metadata["parameters"]["excitation"]["kind"] == "steps"
    # steps hold for at least hold_min = 0.1 s = 10 samples: few distinct commands
    assert len(np.unique(ds.arrays["actions"][0, :, 0])) <= 4
