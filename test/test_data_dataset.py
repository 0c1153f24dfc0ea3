"""SequenceDataset: save/load round trip, byte determinism, validation errors, splits."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from rkn_ros.data.dataset import (
    DATA_FILE,
    METADATA_FILE,
    DatasetError,
    SequenceDataset,
    npz_bytes,
    split_indices,
)


def make_dataset(sequences: int = 4, steps: int = 6, seed: int = 0) -> SequenceDataset:
    rng = np.random.default_rng(seed)
    angles = rng.uniform(-np.pi, np.pi, (sequences, steps, 1)).astype(np.float32)
    valid = rng.random((sequences, steps)) > 0.3
    images = rng.integers(0, 256, (sequences, steps, 8, 8), dtype=np.uint8)
    images[~valid] = 0
    arrays = {
        "images": images,
        "images_valid": valid,
        "targets": np.concatenate([np.sin(angles), np.cos(angles)], axis=-1),
        "joint_angles": angles,
    }
    metadata = {
        "format_version": 1,
        "generator": "pendulum",
        "version": "0.1.0",
        "seed": seed,
        "dt": 0.05,
        "parameters": {"links": 1, "length": np.float64(1.0), "size": (8, 8)},
        "inputs": {
            "image": {"kind": "image", "array": "images", "valid": "images_valid", "shape": [8, 8]}
        },
        "targets": {
            "array": "targets",
            "names": ["sin_theta_1", "cos_theta_1"],
            "units": ["1", "1"],
        },
        "actions": None,
        "truth": {"angles": "joint_angles"},
    }
    return SequenceDataset(arrays=arrays, metadata=metadata)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_keeps_arrays_metadata_and_hash(tmp_path: Path) -> None:
    data = make_dataset()
    data.save(tmp_path / "ds")
    back = SequenceDataset.load(tmp_path / "ds")
    assert sorted(back.arrays) == sorted(data.arrays)
    for name, array in data.arrays.items():
        assert back.arrays[name].dtype == array.dtype
        np.testing.assert_array_equal(back.arrays[name], array)
    assert back.metadata["parameters"] == {"links": 1, "length": 1.0, "size": [8, 8]}
    assert back.content_hash() == data.content_hash()
    assert (len(back), back.sequence_length, back.dt) == (4, 6, 0.05)


def test_identical_content_gives_identical_bytes(tmp_path: Path) -> None:
    make_dataset().save(tmp_path / "a")
    make_dataset().save(tmp_path / "b")
    for name in (DATA_FILE, METADATA_FILE):
        assert digest(tmp_path / "a" / name) == digest(tmp_path / "b" / name)
    # no wall-clock time in the zip (np.savez_compressed would stamp the current time)
    with zipfile.ZipFile(tmp_path / "a" / DATA_FILE) as archive:
        infos = archive.infolist()
    assert [i.filename for i in infos] == sorted(i.filename for i in infos)
    assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    # and the bytes follow the content
    make_dataset(seed=1).save(tmp_path / "c")
    assert digest(tmp_path / "a" / DATA_FILE) != digest(tmp_path / "c" / DATA_FILE)


def test_npz_bytes_independent_of_insertion_order() -> None:
    a = {"x": np.zeros((1, 2), np.float32), "y": np.ones((1, 2), bool)}
    b = {"y": a["y"], "x": a["x"]}
    assert npz_bytes(a) == npz_bytes(b)


def test_content_hash_sees_values_and_dtypes() -> None:
    data = make_dataset()
    changed = make_dataset()
    changed.arrays["joint_angles"] = changed.arrays["joint_angles"].copy()
    changed.arrays["joint_angles"][0, 0, 0] += 1.0
    assert changed.content_hash() != data.content_hash()


@pytest.mark.parametrize("missing", [DATA_FILE, METADATA_FILE])
def test_missing_file_is_named(tmp_path: Path, missing: str) -> None:
    make_dataset().save(tmp_path / "ds")
    os.remove(tmp_path / "ds" / missing)
    with pytest.raises(DatasetError, match=f"missing file {missing}"):
        SequenceDataset.load(tmp_path / "ds")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        SequenceDataset.load(tmp_path / "nowhere")


def _save_raw(folder: Path, arrays: dict, metadata: dict) -> None:
    folder.mkdir()
    (folder / DATA_FILE).write_bytes(npz_bytes(arrays))
    (folder / METADATA_FILE).write_text(yaml.safe_dump(metadata))


def _corrupt(tmp_path: Path, edit) -> Path:
    data = make_dataset()
    arrays = dict(data.arrays)
    metadata = yaml.safe_load(yaml.safe_dump({**data.metadata, "parameters": {}}))
    edit(arrays, metadata)
    _save_raw(tmp_path / "bad", arrays, metadata)
    return tmp_path / "bad"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda a, m: a.pop("joint_angles"), r"'joint_angles' named in metadata \(truth.angles\)"),
        (
            lambda a, m: a.__setitem__("targets", a["targets"][:, :5]),
            r"'targets' has leading dims \[sequence, time\] = \[4, 5\], expected \[4, 6\]",
        ),
        (
            lambda a, m: a.__setitem__("joint_angles", np.full((4, 6, 1), np.nan, np.float32)),
            r"'joint_angles' contains 24 NaN/inf",
        ),
        (
            lambda a, m: a.__setitem__("images_valid", a["images_valid"].astype(np.uint8)),
            r"valid mask 'images_valid' .* expected bool \[sequence, time\], got uint8",
        ),
        (
            lambda a, m: a.__setitem__("images", a["images"].astype(np.float32)),
            r"image array 'images' .* expected uint8 \[sequence, time, 8, 8\], got float32",
        ),
        (
            lambda a, m: a.__setitem__("targets", a["targets"][..., :1]),
            r"'targets' \(targets\) has 1 columns but metadata names 2",
        ),
        (
            lambda a, m: a.__setitem__("joint_angles", a["joint_angles"].astype(np.float64)),
            r"'joint_angles' expected dtype float32, got float64",
        ),
        (
            lambda a, m: a.__setitem__("extra", np.zeros(4, np.float32)),
            r"'extra' expected ndim >= 2",
        ),
        (
            lambda a, m: m["targets"].__setitem__("names", 2),
            r"targets.names expected a list of column names, got 2",
        ),
        (
            lambda a, m: m["inputs"]["image"].__setitem__("shape", 8),
            r"inputs.image.shape expected a list of integers .*, got 8",
        ),
        (lambda a, m: m.pop("dt"), r"missing keys \['dt'\]"),
        (lambda a, m: m.__setitem__("dt", -0.1), r"dt expected a positive number, got -0.1"),
        (lambda a, m: m.__setitem__("generator", "magic"), r"generator expected one of"),
        (lambda a, m: m.__setitem__("format_version", 7), r"format_version expected 1, got 7"),
    ],
)
def test_invalid_content_gives_clear_error(tmp_path: Path, edit, message: str) -> None:
    folder = _corrupt(tmp_path, edit)
    with pytest.raises(DatasetError, match=message) as info:
        SequenceDataset.load(folder)
    assert str(folder) in str(info.value)


def test_pickled_object_array_is_refused(tmp_path: Path) -> None:
    folder = _corrupt(tmp_path, lambda a, m: None)
    np.savez(folder / DATA_FILE, images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DatasetError, match="without unpickling"):
        SequenceDataset.load(folder)


def test_garbage_files(tmp_path: Path) -> None:
    folder = _corrupt(tmp_path, lambda a, m: None)
    (folder / METADATA_FILE).write_text("a: [unclosed")
    with pytest.raises(DatasetError, match="not valid YAML"):
        SequenceDataset.load(folder)
    _save_raw(tmp_path / "g2", {}, {})
    (tmp_path / "g2" / DATA_FILE).write_bytes(b"not a zip at all")
    (tmp_path / "g2" / METADATA_FILE).write_text(
        yaml.safe_dump(make_dataset().metadata | {"parameters": {}})
    )
    with pytest.raises(DatasetError, match=r"data\.npz: not a readable"):
        SequenceDataset.load(tmp_path / "g2")


def test_save_refuses_invalid_data(tmp_path: Path) -> None:
    data = make_dataset()
    data.arrays["targets"] = data.arrays["targets"].astype(np.float64)
    with pytest.raises(DatasetError, match="float32"):
        data.save(tmp_path / "x")
    assert not (tmp_path / "x" / DATA_FILE).exists()


def test_split_indices_is_seeded_disjoint_and_complete() -> None:
    train, val = split_indices(10, 0.2, seed=3)
    assert len(val) == 2 and len(train) == 8
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(10))
    again = split_indices(10, 0.2, seed=3)
    np.testing.assert_array_equal(again[1], val)
    others = {tuple(split_indices(10, 0.2, seed=s)[1]) for s in range(10)}
    assert len(others) > 1  # the seed matters
    assert len(split_indices(3, 0.01, 0)[1]) == 1  # a requested validation part is never empty
    with pytest.raises(ValueError, match="validation_fraction"):
        split_indices(10, 1.0, 0)


def test_split_and_subset(tmp_path: Path) -> None:
    data = make_dataset(sequences=5)
    train, val = data.split(0.4, seed=0)
    assert len(train) + len(val) == 5 and len(val) == 2
    rows = {tuple(a.ravel()) for a in data.arrays["joint_angles"]}
    got = {tuple(a.ravel()) for part in (train, val) for a in part.arrays["joint_angles"]}
    assert got == rows
    with pytest.raises(DatasetError, match=r"subset indices must lie in \[0, 5\)"):
        data.subset([7])
    val.save(tmp_path / "val")
    assert len(SequenceDataset.load(tmp_path / "val")) == 2
