"""Checkpoint files: round trip, determinism, the typed schema, the format-1 migration, and one
clear error for every kind of damage."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import yaml

from rkn_ros.core import build_model
from rkn_ros.core.checkpoint import (
    FORMAT_VERSION,
    METADATA_FILE,
    WEIGHTS_FILE,
    CheckpointError,
    CheckpointMetadata,
    NormStats,
    load_checkpoint,
    metadata_from_dict,
    read_metadata,
    read_weights,
    save_checkpoint,
)
from rkn_ros.core.config import ModelConfig, SensorSpec

CONFIG = ModelConfig(
    sensors=(SensorSpec("image", "image", (24, 24)), SensorSpec("joints", "vector", (1,))),
    output_dim=2, latent_obs_dim=4, num_basis=3, bandwidth=1, encoder_conv_channels=(2, 2),
    encoder_dense=4, encoder_hidden=(4,), decoder_hidden=(4,),
)


def metadata(config: ModelConfig = CONFIG) -> dict:
    return {
        "name": "tiny",
        "model": config.to_dict(),
        "dt": 0.05,
        "inputs": {
            "image": {"kind": "image", "shape": [24, 24]},
            "joints": {"kind": "vector", "shape": [1], "names": ["j1"], "units": ["rad"]},
        },
        "targets": {"names": ["sin_theta_1", "cos_theta_1"], "units": ["1", "1"]},
        "outputs": {"names": ["theta_1"], "units": ["rad"], "kind": "sincos"},
        "normalization": {
            "inputs": {"joints": {"mean": [0.5], "std": [2.0], "min": [-3.0], "max": [4.0]}},
            "targets": {"mean": [0.0, 0.0], "std": [1.0, 1.0]},
        },
        "data_hash": "ab" * 32,
    }


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(0)
    model = build_model(CONFIG)
    folder = save_checkpoint(tmp_path / "ckpt", model, metadata())
    return folder, model


def _edit_yaml(folder, edit) -> None:
    data = yaml.safe_load((folder / METADATA_FILE).read_text())
    edit(data)
    (folder / METADATA_FILE).write_text(yaml.safe_dump(data))


def test_round_trip_restores_weights_and_typed_metadata(saved):
    folder, model = saved
    loaded, meta = load_checkpoint(folder)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert isinstance(meta, CheckpointMetadata) and meta.format_version == FORMAT_VERSION
    assert meta.name == "tiny" and meta.dt == 0.05 and meta.model == CONFIG
    assert meta.outputs.kind == "sincos" and meta.outputs.names == ("theta_1",)
    assert meta.inputs["joints"].names == ("j1",) and meta.inputs["image"].shape == (24, 24)
    joints = meta.normalization.inputs["joints"]
    assert (joints.mean, joints.std, joints.min, joints.max) == ((0.5,), (2.0,), (-3.0,), (4.0,))
    assert meta.normalization.targets.std == (1.0, 1.0) and meta.normalization.actions is None
    assert meta.training.world_size == 1 and meta.sensor_names == ["image", "joints"]
    assert not loaded.training
    # The weights file path works as well as the folder.
    again, _ = load_checkpoint(folder / WEIGHTS_FILE)
    key = next(iter(model.state_dict()))
    assert torch.equal(again.state_dict()[key], model.state_dict()[key])


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
    assert len(meta["checkpoint_sha256"]) == 64


def test_format_1_checkpoints_load_through_the_migration(saved):
    """A format-1 ``model.yaml`` (no min/max, world_size or checkpoint_sha256) still loads;
    its weights are still checked against its weights_sha256."""
    folder, model = saved

    def to_v1(data):
        data["format_version"] = 1
        del data["checkpoint_sha256"]
        del data["training"]["world_size"]
        for stats in data["normalization"]["inputs"].values():
            stats.pop("min"), stats.pop("max")
        for key in ("targets", "actions"):
            if data["normalization"].get(key):
                data["normalization"][key].pop("min", None)
                data["normalization"][key].pop("max", None)

    _edit_yaml(folder, to_v1)
    loaded, meta = load_checkpoint(folder)
    assert meta.format_version == 1 and meta.normalization.inputs["joints"].min is None
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    blob = bytearray((folder / WEIGHTS_FILE).read_bytes())
    blob[-3] ^= 0x01
    (folder / WEIGHTS_FILE).write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(folder)


def test_edited_metadata_is_detected(saved):
    folder, _ = saved
    _edit_yaml(folder, lambda d: d["normalization"]["inputs"]["joints"].update(mean=[0.6]))
    with pytest.raises(CheckpointError, match="checkpoint_sha256 does not match"):
        load_checkpoint(folder)


def test_truncated_weights_are_refused_from_the_header(saved):
    folder, _ = saved
    path = folder / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_checkpoint(folder)
    assert "\n" not in str(info.value)


def test_header_longer_than_the_file_is_refused(saved):
    folder, _ = saved
    path = folder / WEIGHTS_FILE
    blob = path.read_bytes()
    path.write_bytes((10**12).to_bytes(8, "little") + blob[8:])
    with pytest.raises(CheckpointError, match="header declares 1000000000000 bytes"):
        load_checkpoint(folder)


def test_header_shapes_are_checked_before_the_tensors(saved, tmp_path):
    """Weights of another model: refused from the header, naming the tensor."""
    folder, _ = saved
    wider = ModelConfig(**{**CONFIG.__dict__, "latent_obs_dim": 5})
    other = save_checkpoint(tmp_path / "other", build_model(wider), metadata(wider))
    (folder / WEIGHTS_FILE).write_bytes((other / WEIGHTS_FILE).read_bytes())
    with pytest.raises(CheckpointError, match=r"does not match the weights: '[\w.]+' has shape"):
        load_checkpoint(folder)


def test_tampered_weights_are_refused(saved):
    folder, _ = saved
    path = folder / WEIGHTS_FILE
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x01  # flip one bit inside a tensor: still valid safetensors
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(folder)


def test_oversized_weights_are_refused_unread(saved):
    folder, _ = saved
    with pytest.raises(CheckpointError, match="more than the 1000 a checkpoint may have"):
        read_weights(folder, max_bytes=1000)


def test_missing_files_are_named(saved, tmp_path):
    folder, _ = saved
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nowhere")
    (folder / WEIGHTS_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"missing {WEIGHTS_FILE}"):
        load_checkpoint(folder)
    (folder / METADATA_FILE).unlink()
    with pytest.raises(CheckpointError, match=f"missing {METADATA_FILE}"):
        load_checkpoint(folder)


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
        load_checkpoint(folder, **kwargs)


def test_matching_request_loads(saved):
    folder, _ = saved
    load_checkpoint(folder, sensors=["image"], dt=0.05, image_shape=(24, 24), joint_names=["j1"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(colour="red"), r"colour: unknown key"),
        (lambda d: d.pop("dt"), r"dt: missing required key"),
        (lambda d: d.update(dt=-1), r"dt: expected a number >= 1e-06 and <= 3600, got -1"),
        (lambda d: d.update(dt=float("nan")), r"dt: expected a finite number"),
        (lambda d: d.update(name=5), r"name: expected a string, got 5"),
        (lambda d: d.update(name=None), r"name: must not be null"),
        (lambda d: d.update(format_version=7), "format_version 7 is not supported"),
        (lambda d: d["outputs"].update(kind="polar"), r"outputs.kind: expected one of"),
        (lambda d: d["model"].update(latent_obs_dim=10**6), r"model.latent_obs_dim: at most"),
        (lambda d: d["inputs"]["image"].update(shape=[10**6, 24]), r"inputs.image.shape\[0\]"),
        (lambda d: d["normalization"]["inputs"]["joints"].update(std=[1e-12]),
         r"normalization.inputs.joints.std\[0\]: expected a number >= 1e-06"),
        (lambda d: d["normalization"]["inputs"]["joints"].update(mean=[float("inf")]),
         r"normalization.inputs.joints.mean\[0\]: expected a finite number"),
        (lambda d: d["normalization"]["inputs"]["joints"].update(min=[5.0]),
         r"normalization.inputs.joints.min\[0\]: 5.0 is above max 4.0"),
        (lambda d: d["normalization"]["targets"].update(mean=[0.0]),
         r"normalization.targets.std: expected 1 values, got 2"),
        (lambda d: d["inputs"]["joints"].update(names=["a", "b"]),
         r"inputs.joints.names: expected 1 values, got 2"),
        (lambda d: d["training"].update(world_size=0), r"training.world_size: expected an integer"),
    ],
)
def test_bad_metadata_is_refused_naming_the_field(saved, edit, message):
    folder, _ = saved
    _edit_yaml(folder, edit)
    with pytest.raises(CheckpointError, match=message) as info:
        read_metadata(folder)
    assert "\n" not in str(info.value) and str(folder / METADATA_FILE) in str(info.value)


def test_yaml_that_is_not_yaml(saved):
    folder, _ = saved
    (folder / METADATA_FILE).write_text("name: [unclosed\n")
    with pytest.raises(CheckpointError, match="not valid YAML"):
        read_metadata(folder)


def test_yaml_aliases_are_refused(saved):
    folder, _ = saved
    text = (folder / METADATA_FILE).read_text()
    (folder / METADATA_FILE).write_text("a: &x [1, 2]\nb: *x\n" + text)
    with pytest.raises(CheckpointError, match="anchors and aliases are not allowed"):
        read_metadata(folder)


def test_nan_weights_are_refused(tmp_path):
    model = build_model(CONFIG)
    with torch.no_grad():
        next(iter(model.parameters()))[0] = float("nan")
    folder = save_checkpoint(tmp_path / "nan", model, metadata())
    with pytest.raises(CheckpointError, match=r"holds NaN"):
        load_checkpoint(folder)


def test_schema_round_trips_through_plain_data(saved):
    folder, _ = saved
    meta = read_metadata(folder)
    again = metadata_from_dict(json.loads(json.dumps(meta.to_dict())))
    assert again == meta
    assert NormStats(mean=(1.0,), std=(2.0,)).dim == 1


def test_absent_statistics_mean_unscaled_values(tmp_path):
    """Checkpoints may omit a statistic; it then reads as mean 0, std 1."""
    data = metadata()
    data["normalization"] = {}
    folder = save_checkpoint(tmp_path / "plain", build_model(CONFIG), data)
    _, meta = load_checkpoint(folder)
    assert meta.normalization.targets is None
    assert meta.normalization.input("joints", 1) == NormStats(mean=(0.0,), std=(1.0,))
    assert meta.normalization.target(2).std == (1.0, 1.0)


def test_training_statistics_record_min_and_max():
    """compute_normalization keeps each vector's training range (valid rows only for inputs)
    beside its mean and std, in raw units."""
    import numpy as np

    from rkn_ros.train.data import compute_normalization, generate_dataset

    data = generate_dataset({"generator": "pneumatic", "num_sequences": 3, "steps": 40,
                             "seed": 5, "drop_prob": 0.3})
    norm = compute_normalization(data)
    valid = data.arrays["joint_obs_valid"]
    joints = data.arrays["joint_obs"][valid].astype(np.float64)
    stats = norm.inputs["joints"]
    np.testing.assert_allclose(stats.min, joints.min(axis=0))
    np.testing.assert_allclose(stats.max, joints.max(axis=0))
    np.testing.assert_allclose(stats.mean, joints.mean(axis=0))
    actions = data.arrays["actions"].reshape(-1, 2).astype(np.float64)
    np.testing.assert_allclose(norm.actions.max, actions.max(axis=0))
    assert norm.targets.min is not None and len(norm.targets.min) == 2
