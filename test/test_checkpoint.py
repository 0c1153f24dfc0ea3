"""Checkpoint files: round trip, determinism, and one clear error for every kind of damage."""

from __future__ import annotations

import hashlib

import pytest
import torch
import yaml
from torch import nn

from rkn_ros.train.checkpoint import (
    METADATA_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    CheckpointMetadata,
    load_checkpoint,
    read_metadata,
    save_checkpoint,
)


class TinyNet(nn.Module):
    """A small module whose shapes come from the metadata's model dict."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.encoder = nn.Linear(3, width)
        self.decoder = nn.Linear(width, 2)
        self.register_buffer("scale", torch.ones(width))


def factory(meta: CheckpointMetadata) -> nn.Module:
    return TinyNet(int(meta.model["width"]))


def metadata(width: int = 4) -> dict:
    return {
        "name": "tiny",
        "model": {"width": width},
        "dt": 0.05,
        "inputs": {
            "image": {"kind": "image", "shape": [24, 24]},
            "joints": {"kind": "vector", "names": ["j1"], "units": ["rad"]},
        },
        "targets": {"names": ["sin_theta_1", "cos_theta_1"], "units": ["1", "1"]},
        "outputs": {"names": ["theta_1"], "units": ["rad"], "kind": "sincos"},
        "normalization": {"targets": {"mean": [0.0, 0.0], "std": [1.0, 1.0]}},
        "data_hash": "abc",
    }


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = TinyNet(4)
    folder = save_checkpoint(tmp_path / "ckpt", model, metadata())
    return folder, model


def test_round_trip_restores_weights_and_metadata(saved):
    folder, model = saved
    loaded, meta = load_checkpoint(folder, model_factory=factory)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert meta.name == "tiny" and meta.dt == 0.05
    assert meta.outputs["kind"] == "sincos"
    assert not loaded.training
    # The weights file path works as well as the folder.
    again, _ = load_checkpoint(folder / WEIGHTS_FILE, model_factory=factory)
    assert torch.equal(again.encoder.weight, model.encoder.weight)


def test_same_model_gives_same_bytes(saved, tmp_path):
    folder, model = saved
    other = save_checkpoint(tmp_path / "other", model, metadata())
    for name in (WEIGHTS_FILE, METADATA_FILE):
        assert (folder / name).read_bytes() == (other / name).read_bytes()


def test_weights_are_plain_safetensors(saved):
    folder, _ = saved
    blob = (folder / WEIGHTS_FILE).read_bytes()
    header_len = int.from_bytes(blob[:8], "little")
    assert blob[8:9] == b"{" and header_len < len(blob)
    meta = yaml.safe_load((folder / METADATA_FILE).read_text())
    assert meta["weights_sha256"] == hashlib.sha256(blob).hexdigest()


def test_truncated_weights_are_refused(saved):
    folder, _ = saved
    path = folder / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(folder, model_factory=factory)
    assert "\n" not in str(info.value)


def test_tampered_weights_are_refused(saved):
    folder, _ = saved
    path = folder / WEIGHTS_FILE
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x01  # flip one bit inside a tensor: still valid safetensors
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(folder, model_factory=factory)


def test_missing_files_are_named(saved, tmp_path):
    folder, _ = saved
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere", model_factory=factory)
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"missing {WEIGHTS_FILE}"):
        load_checkpoint(folder, model_factory=factory)
    (folder / METADATA_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"missing {METADATA_FILE}"):
        load_checkpoint(folder, model_factory=factory)


def test_metadata_not_matching_weights(saved):
    folder, _ = saved
    data = yaml.safe_load((folder / METADATA_FILE).read_text())
    data["model"]["width"] = 5
    (folder / METADATA_FILE).write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match=r"does not match the weights: '[\w.]+' has shape"):
        load_checkpoint(folder, model_factory=factory)


def test_weights_missing_a_key(tmp_path):
    class Bigger(TinyNet):
        def __init__(self, width: int) -> None:
            super().__init__(width)
            self.extra = nn.Linear(2, 2)

    folder = save_checkpoint(tmp_path / "c", TinyNet(4), metadata())
    with pytest.raises(CheckpointError, match=r"weights lack \['extra.bias', 'extra.weight'\]"):
        load_checkpoint(folder, model_factory=lambda m: Bigger(4))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dt": 0.01}, r"dt 0.01 s requested but the model has 0.05 s"),
        ({"image_shape": (48, 48)}, r"image size \[48, 48\] requested but input 'image' has"),
        ({"sensors": ["camera"]}, r"sensors \['camera'\] requested"),
        ({"joint_names": ["elbow"]}, r"joint names \['elbow'\] requested"),
    ],
)
def test_request_not_matching_metadata(saved, kwargs, message):
    folder, _ = saved
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder, model_factory=factory, **kwargs)


def test_matching_request_loads(saved):
    folder, _ = saved
    load_checkpoint(
        folder, model_factory=factory, sensors=["image"], dt=0.05, image_shape=(24, 24),
        joint_names=["j1"],
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(colour="red"), r"unknown key\(s\) \['colour'\]"),
        (lambda d: d.pop("dt"), r"missing key\(s\) \['dt'\]"),
        (lambda d: d.update(dt=-1), r"'dt' must be a positive number"),
        (lambda d: d.update(format_version=7), "format_version 7 is not supported"),
        (lambda d: d["outputs"].update(kind="polar"), "outputs.kind must be one of"),
    ],
)
def test_bad_metadata_is_refused(saved, edit, message):
    folder, _ = saved
    data = yaml.safe_load((folder / METADATA_FILE).read_text())
    edit(data)
    (folder / METADATA_FILE).write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match=message):
        read_metadata(folder)


def test_yaml_that_is_not_yaml(saved):
    folder, _ = saved
    (folder / METADATA_FILE).write_text("name: [unclosed\n")
    with pytest.raises(CheckpointError, match="not valid YAML"):
        read_metadata(folder)


def test_nan_weights_are_refused(tmp_path):
    model = TinyNet(4)
    with torch.no_grad():
        model.encoder.weight[0, 0] = float("nan")
    folder = save_checkpoint(tmp_path / "nan", model, metadata())
    with pytest.raises(CheckpointError, match=r"'encoder\.weight' holds NaN"):
        load_checkpoint(folder, model_factory=factory)
