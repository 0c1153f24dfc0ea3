"""JSON episode folder (layout of ALRhub/action-conditional-rkn data/PAMData/Data2) -> .npz."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from rkn_ros.data.dataset import DatasetError
from rkn_ros.data.pam import PamConfig, load_pam, load_recording
from rkn_ros.data.pam_convert import convert, main, write_npz


def write_episode(folder: Path, name: str, obs: np.ndarray, act: np.ndarray) -> None:
    # Same layout as the public files: one JSON object per file, no extension.
    (folder / name).write_text(json.dumps({"ob": obs.tolist(), "action": act.tolist()}))


@pytest.fixture
def json_folder(tmp_path: Path) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(0)
    folder = tmp_path / "Data2"
    folder.mkdir()
    episodes = {}
    # written out of order on purpose; the converter sorts by name (timestamp)
    for name, length, extra in (
        ("20190807-100240", 47, 0),
        ("20190807-100236", 45, 2),
        ("20190807-100243", 60, 1),
    ):
        obs = rng.normal(size=(length, 24))
        act = rng.normal(size=(length + extra, 8))
        act[0] = 0.0
        write_episode(folder, name, obs, act)
        episodes[name] = (obs, act)
    (folder / ".DS_Store").write_text("not an episode")
    return folder, episodes


def test_convert_matches_the_episodes(json_folder, tmp_path: Path, caplog) -> None:
    folder, episodes = json_folder
    with caplog.at_level(logging.INFO, logger="rkn_ros.data.pam_convert"):
        arrays = convert(folder)
    assert (
        "dropped 3 trailing action rows beyond the observations in 2 of 3 episodes" in caplog.text
    )
    assert "1 hidden entries ignored" in caplog.text
    names = sorted(episodes)
    assert arrays["episode_ids"].tolist() == names
    np.testing.assert_array_equal(arrays["episode_lengths"], [45, 47, 60])
    np.testing.assert_array_equal(arrays["episode_starts"], [0, 45, 92])
    for i, name in enumerate(names):
        obs, act = episodes[name]
        start, length = arrays["episode_starts"][i], arrays["episode_lengths"][i]
        rows = slice(start, start + length)
        np.testing.assert_array_equal(arrays["observations"][rows], obs.astype(np.float32))
        np.testing.assert_array_equal(arrays["actions"][rows], act[:length].astype(np.float32))
    write_npz(arrays, tmp_path / "pam.npz")
    recording = load_recording(tmp_path / "pam.npz")
    assert recording.num_episodes == 3
    train, _ = load_pam(tmp_path / "pam.npz", PamConfig(window=20, validation_fraction=0.0))
    assert len(train) == 6  # starts 0 and 20 in each: s + 21 <= L for L = 45, 47, 60


def test_cli_and_ids_from(json_folder, tmp_path: Path) -> None:
    folder, _ = json_folder
    out = tmp_path / "all.npz"
    assert main([str(folder), str(out)]) == 0
    first = out.read_bytes()
    assert main([str(folder), str(tmp_path / "again.npz")]) == 0
    assert (tmp_path / "again.npz").read_bytes() == first  # deterministic bytes
    # rebuild only the episodes (and order) named by another file
    subset = {k: v[[2, 0]] if k == "episode_ids" else v for k, v in np.load(out).items()}
    write_npz(subset, tmp_path / "ids.npz")
    assert (
        main([str(folder), str(tmp_path / "sub.npz"), "--ids-from", str(tmp_path / "ids.npz")]) == 0
    )
    sub = load_recording(tmp_path / "sub.npz")
    assert sub.episode_ids.tolist() == ["20190807-100243", "20190807-100236"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON episode file"),
        (json.dumps([1, 2]), "expected a JSON object with keys 'ob' and 'action'"),
        (
            json.dumps({"ob": [[0.0] * 24], "act": []}),
            r"keys 'ob' and 'action', got \['act', 'ob'\]",
        ),
        (json.dumps({"ob": [[0.0] * 23], "action": [[0.0] * 8]}), r"'ob' expected \[L, 24\]"),
        (
            json.dumps({"ob": [[0.0] * 24] * 3, "action": [[0.0] * 8] * 2}),
            "'action' has 2 rows, fewer than the 3 rows of 'ob'",
        ),
        (json.dumps({"ob": [[0.0] * 24, [0.0]], "action": [[0.0] * 8]}), "rectangular"),
        (json.dumps({"ob": [[float("nan")] * 24], "action": [[0.0] * 8]}), "NaN/inf"),
    ],
)
def test_bad_episode_files_are_named(json_folder, content: str, message: str) -> None:
    folder, _ = json_folder
    (folder / "20190807-999999").write_text(content)
    with pytest.raises(DatasetError, match=message) as info:
        convert(folder)
    if "NaN" not in message:
        assert "20190807-999999" in str(info.value)


def test_missing_folder_and_ids(tmp_path: Path, json_folder, capsys) -> None:
    folder, _ = json_folder
    with pytest.raises(DatasetError, match="does not exist"):
        convert(tmp_path / "nope")
    with pytest.raises(DatasetError, match="1 requested episodes not found"):
        convert(folder, ids=["20190807-100236", "19990101-000000"])
    assert main([str(tmp_path / "nope"), str(tmp_path / "x.npz")]) == 2
    capsys.readouterr()
    assert main([str(folder), str(tmp_path / "x.npz"), "--ids-from", str(tmp_path / "no.npz")]) == 2
    assert f"--ids-from {tmp_path / 'no.npz'}: no such file" in capsys.readouterr().err
    blocked = folder / "20190807-100240" / "x.npz"       # below a file: cannot be written
    assert main([str(folder), str(blocked)]) == 2
    err = capsys.readouterr().err
    assert f"{blocked}: cannot write" in err and "Traceback" not in err
