"""PAM loader: the real recordings (the full file, or the fixture's subset of it) and small
synthetic files in the same format."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from pam_recordings import FIXTURE_DIR, FULL_FILE, PAM_FILE, USES_FIXTURE

from rkn_ros.data.dataset import DatasetError, SequenceDataset, npz_bytes, split_indices
from rkn_ros.data.pam import (
    PamConfig,
    PamRecording,
    denormalize,
    load_pam,
    load_recording,
    main,
    normalize,
)


def synthetic_arrays(lengths=(50, 61, 45, 90, 30, 70), seed: int = 0) -> dict[str, np.ndarray]:
    """Episodes back to back: smooth angles in columns 0-3, pressures in 8-15, zeros 22-23."""
    rng = np.random.default_rng(seed)
    obs, act = [], []
    for length in lengths:
        t = np.arange(length)[:, None] * 0.01
        episode = np.zeros((length, 24))
        episode[:, 0:4] = np.sin(2 * np.pi * rng.uniform(0.2, 1, 4) * t + rng.uniform(0, 6, 4))
        episode[:, 4:8] = rng.normal(size=(length, 4))
        episode[:, 8:16] = rng.uniform(0, 1.2, (length, 8))
        episode[:, 16:22] = rng.normal(size=(length, 6))
        obs.append(episode)
        commands = rng.normal(size=(length, 8))
        commands[0] = 0.0
        act.append(commands)
    lengths_array = np.asarray(lengths, dtype=np.int64)
    return {
        "observations": np.concatenate(obs).astype(np.float32),
        "actions": np.concatenate(act).astype(np.float32),
        "episode_starts": np.concatenate([[0], np.cumsum(lengths_array)[:-1]]).astype(np.int64),
        "episode_lengths": lengths_array,
        "episode_ids": np.asarray([f"20190807-1000{i:02d}" for i in range(len(lengths))]),
    }


def write(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.write_bytes(npz_bytes(arrays))
    return path


@pytest.fixture(scope="module")
def recording() -> PamRecording:
    return load_recording(PAM_FILE)


@pytest.fixture(scope="module")
def real_parts(recording: PamRecording) -> tuple[SequenceDataset, SequenceDataset]:
    return load_pam(recording, PamConfig(drop_prob=0.5, seed=0))


def test_real_file_shapes_and_metadata(real_parts) -> None:
    train, val = real_parts
    for part in (train, val):
        assert part.arrays["joint_obs"].shape[1:] == (40, 4)
        assert part.arrays["actions"].shape[1:] == (40, 8)
        assert part.arrays["targets"].shape[1:] == (40, 4)
        assert part.arrays["joint_obs_valid"].dtype == np.bool_
        assert part.metadata["dt"] == 0.01 and part.metadata["generator"] == "pam"
        assert part.metadata["targets"]["units"] == ["rad"] * 4
    # a window starting at s needs s + 40 + 1 <= L steps
    with np.load(PAM_FILE) as npz:
        lengths = npz["episode_lengths"]
    assert len(train) + len(val) == sum(len(range(0, n - 40, 40)) for n in lengths)
    assert len(train.metadata["split"]["episodes"]) == round(0.8 * len(lengths))


def test_fixture_is_small_and_held_out_by_the_shipped_model() -> None:
    """The fixture: a few dozen real episodes under 2 MB, all from the validation part of the
    shipped PAM model's split (checked against the full file where it exists)."""
    fixture = FIXTURE_DIR / "pam_fixture.npz"
    assert fixture.stat().st_size < 2 * 2**20
    small = load_recording(fixture)
    assert 24 <= small.num_episodes <= 100
    if USES_FIXTURE:
        return
    full = load_recording(FULL_FILE)
    params = yaml.safe_load((FIXTURE_DIR.parents[2] / "models" / "pam" / "model.yaml")
                            .read_text())["training"]["data_parameters"]
    _, validation = split_indices(full.num_episodes, params["validation_fraction"],
                                  params["seed"])
    ids = list(full.episode_ids)
    held_out = {ids[i] for i in validation}
    for e, episode_id in enumerate(small.episode_ids):
        assert episode_id in held_out
        for mine, theirs in zip(small.episode(e), full.episode(ids.index(episode_id)),
                                strict=True):
            np.testing.assert_array_equal(mine, theirs)


def test_real_file_split_has_no_overlap(real_parts) -> None:
    train, val = real_parts
    train_ids = set(train.metadata["split"]["episodes"])
    val_ids = set(val.metadata["split"]["episodes"])
    assert not train_ids & val_ids
    with np.load(PAM_FILE) as npz:
        assert train_ids | val_ids == set(npz["episode_ids"].tolist())


def test_real_file_windows_align_with_source(real_parts, recording: PamRecording) -> None:
    train, _ = real_parts
    ids = list(recording.episode_ids)
    split = train.metadata["split"]
    for w in (0, 1, 2, len(train) // 2, len(train) - 1):
        episode = ids.index(split["episodes"][split["window_episode"][w]])
        start = split["window_start"][w]
        obs, act = recording.episode(episode)
        np.testing.assert_array_equal(train.arrays["joint_angles"][w], obs[start : start + 40, :4])
        # the paper's protocol: target = next angles; actions[t] pairs with observations[t]
        np.testing.assert_array_equal(train.arrays["targets"][w], obs[start + 1 : start + 41, :4])
        np.testing.assert_array_equal(train.arrays["actions"][w], act[start : start + 40])


def test_real_file_normalization_from_training_episodes_only(
    real_parts, recording: PamRecording
) -> None:
    train, val = real_parts
    ids = list(recording.episode_ids)
    train_rows = np.concatenate(
        [recording.episode(ids.index(e))[0][:, :4] for e in train.metadata["split"]["episodes"]]
    ).astype(np.float64)
    stats = train.metadata["normalization"]["inputs"]["joints"]
    np.testing.assert_allclose(stats["mean"], train_rows.mean(0), rtol=1e-9)
    np.testing.assert_allclose(stats["std"], train_rows.std(0), rtol=1e-9)
    all_rows = recording.observations[:, :4].astype(np.float64)
    assert not np.allclose(stats["mean"], all_rows.mean(0), rtol=0, atol=1e-6)
    assert val.metadata["normalization"] == train.metadata["normalization"]


def test_real_file_drop_masks(real_parts) -> None:
    train, _ = real_parts
    valid = train.arrays["joint_obs_valid"]
    assert valid[:, :5].all()
    assert 0.45 < 1 - valid[:, 5:].mean() < 0.55
    assert (train.arrays["joint_obs"][~valid] == 0).all()
    kept = train.arrays["joint_obs"][valid]
    np.testing.assert_array_equal(kept, train.arrays["joint_angles"][valid])


def test_synthetic_windows_counts_and_short_episodes(tmp_path: Path, caplog) -> None:
    path = write(tmp_path / "pam.npz", synthetic_arrays())
    config = PamConfig(window=20, stride=10, validation_fraction=0.0)
    with caplog.at_level(logging.WARNING, logger="rkn_ros.data.pam"):
        train, val = load_pam(path, config)
    # windows start at 0, 10, ... while start + 21 <= L
    expected = sum(len(range(0, n - 20, 10)) for n in (50, 61, 45, 90, 30, 70))
    assert len(train) == expected
    assert len(val) == 0
    # the tail after the last window of each episode is counted, not silently lost
    tails = sum(n - (range(0, n - 20, 10)[-1] + 21) for n in (50, 61, 45, 90, 30, 70))
    assert tails == 40 and train.metadata["split"]["unused_steps"] == tails
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="rkn_ros.data.pam"):
        train, val = load_pam(path, PamConfig(window=50, validation_fraction=0.0))
    # only episodes of at least 51 steps give a window: 61, 90 and 70
    assert len(train) == 1 + 1 + 1
    assert "3 of 6 train episodes are shorter than window + 1 = 51" in caplog.text


def test_synthetic_delta_targets_pressures_and_determinism(tmp_path: Path) -> None:
    arrays = synthetic_arrays()
    path = write(tmp_path / "pam.npz", arrays)
    config = PamConfig(window=10, include_pressures=True, targets="delta", drop_prob=0.3, seed=4)
    a_train, a_val = load_pam(path, config)
    b_train, b_val = load_pam(path, config)
    assert a_train.content_hash() == b_train.content_hash()
    assert a_val.content_hash() == b_val.content_hash()
    held_out = {
        tuple(load_pam(path, PamConfig(window=10, seed=s))[1].metadata["split"]["episodes"])
        for s in range(8)
    }
    assert len(held_out) > 1  # the seed chooses the validation episodes
    assert a_train.arrays["joint_obs"].shape[-1] == 12
    names = a_train.metadata["inputs"]["joints"]["names"]
    assert names[:4] == ["joint_1", "joint_2", "joint_3", "joint_4"] and len(names) == 12
    w = 3
    split = a_train.metadata["split"]
    ep = [f"20190807-1000{i:02d}" for i in range(6)].index(
        split["episodes"][split["window_episode"][w]]
    )
    start = int(arrays["episode_starts"][ep]) + split["window_start"][w]
    angles = arrays["observations"][start : start + 11, :4]
    np.testing.assert_allclose(a_train.arrays["targets"][w], angles[1:] - angles[:-1], atol=1e-7)
    valid = a_train.arrays["joint_obs_valid"][w]
    pressures = arrays["observations"][start : start + 10, 8:16]
    np.testing.assert_array_equal(a_train.arrays["joint_obs"][w][valid, 4:], pressures[valid])


def test_normalize_round_trip(tmp_path: Path) -> None:
    train, _ = load_pam(write(tmp_path / "p.npz", synthetic_arrays()), PamConfig(window=10))
    stats = train.metadata["normalization"]["targets"]
    z = normalize(train.arrays["targets"], stats)
    assert abs(float(z.reshape(-1, 4).mean(0).mean())) < 0.2
    np.testing.assert_allclose(denormalize(z, stats), train.arrays["targets"], atol=1e-5)
    with pytest.raises(ValueError, match="3 columns, statistics 4"):
        normalize(np.zeros((2, 3), np.float32), stats)


def test_saved_parts_load_back(tmp_path: Path, capsys) -> None:
    path = write(tmp_path / "p.npz", synthetic_arrays())
    assert main([str(path), "--out", str(tmp_path / "p.npz" / "out"), "--window", "10"]) == 2
    assert "cannot write the data sets" in capsys.readouterr().err   # one line, no traceback
    assert main([str(path), "--out", str(tmp_path / "out"), "--window", "10"]) == 0
    train = SequenceDataset.load(tmp_path / "out" / "train")
    val = SequenceDataset.load(tmp_path / "out" / "validation")
    assert train.metadata["normalization"] == val.metadata["normalization"]
    assert train.metadata["split"]["part"] == "train" and len(train) > len(val) > 0


def _break(edit):
    arrays = synthetic_arrays()
    edit(arrays)
    return arrays


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a: a.pop("episode_ids"), r"missing arrays \['episode_ids'\]"),
        (
            lambda a: a.__setitem__("observations", a["observations"][:, :20]),
            r"'observations' expected float \[N, 24\], got float32 \[346, 20\]",
        ),
        (
            lambda a: a.__setitem__("actions", a["actions"][:-1]),
            r"'actions' expected 346 rows like observations, got 345 rows",
        ),
        (
            lambda a: a["observations"].__setitem__((100, 2), np.nan),
            r"'observations' expected finite values, got 1 rows with NaN/inf \(first: row 100, "
            r"episode 20190807-100001\)",
        ),
        (
            lambda a: a["episode_starts"].__setitem__(2, 5),
            r"'episode_starts' expected episodes back to back",
        ),
        (
            lambda a: a["episode_lengths"].__setitem__(-1, 71),
            r"'episode_starts' expected|'episode_lengths' expected sum 346",
        ),
        (
            lambda a: a["episode_ids"].__setitem__(1, a["episode_ids"][0]),
            r"'episode_ids' expected unique names",
        ),
        (
            lambda a: a.__setitem__("episode_lengths", a["episode_lengths"].astype(np.float32)),
            r"'episode_lengths' expected integer \[E\]",
        ),
    ],
)
def test_bad_pam_files(tmp_path: Path, edit, message: str) -> None:
    path = write(tmp_path / "bad.npz", _break(edit))
    with pytest.raises(DatasetError, match=message) as info:
        load_pam(path)
    assert "bad.npz" in str(info.value)


def test_bad_config_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="window expected >= 1"):
        PamConfig(window=0)
    assert PamConfig.from_dict({"window": 12, "targets": "delta"}) == PamConfig(12, targets="delta")
    with pytest.raises(ValueError, match=r"unknown keys \['widow'\]"):
        PamConfig.from_dict({"widow": 12})
    with pytest.raises(ValueError, match="targets expected 'next' or 'delta'"):
        PamConfig(targets="absolute")
    with pytest.raises(DatasetError, match="does not exist"):
        load_pam(tmp_path / "none.npz")
    with pytest.raises(DatasetError, match="is a folder, not a file"):
        load_pam(tmp_path)
    # recipes pass YAML values straight in: wrong types fail by name, not deep in the cutting
    with pytest.raises(ValueError, match=r"PamConfig\.window expected int, got '40'"):
        PamConfig.from_dict({"window": "40"})
    with pytest.raises(ValueError, match=r"PamConfig\.include_pressures expected bool, got 1"):
        PamConfig(include_pressures=1)
    with pytest.raises(ValueError, match=r"PamConfig\.seed expected int, got True"):
        PamConfig(seed=True)
    path = write(tmp_path / "short.npz", synthetic_arrays(lengths=(10, 12)))
    with pytest.raises(DatasetError, match="no train window of 40 \\+ 1 steps"):
        load_pam(path)
