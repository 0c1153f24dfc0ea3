"""Checkpoints for runtime and node tests: real files written by ``save_checkpoint`` from
untrained models (seeded), with the metadata of each demo system. No tests here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from rkn_ros.core import ModelConfig, SensorSpec, build_model
from rkn_ros.core.checkpoint import save_checkpoint


def pendulum_metadata(config: ModelConfig, name: str = "pendulum_test") -> dict:
    """Metadata of an image pendulum with ``config.output_dim / 2`` links (sin/cos targets)."""
    links = config.output_dim // 2
    image = config.sensors[0]
    return {
        "name": name,
        "model": dataclasses.asdict(config),
        "dt": 0.05,
        "inputs": {image.name: {"kind": "image", "shape": list(image.shape)}},
        "targets": {
            "names": [f"{f}_theta_{i + 1}" for i in range(links) for f in ("sin", "cos")],
            "units": ["1"] * (2 * links),
        },
        "outputs": {
            "names": [f"joint_{i + 1}" for i in range(links)],
            "units": ["rad"] * links,
            "kind": "sincos",
        },
        "actions": None,
        "normalization": {},
    }


def make_pendulum_checkpoint(
    folder: Path, links: int = 1, size: int = 24, seed: int = 0, latent: int = 15,
    channels: int = 1,
) -> Path:
    """An untrained image-pendulum RKN saved as a checkpoint folder."""
    torch.manual_seed(seed)
    shape = (size, size) if channels == 1 else (channels, size, size)
    config = ModelConfig(
        sensors=(SensorSpec("image", "image", shape),),
        output_dim=2 * links,
        latent_obs_dim=latent,
    )
    return save_checkpoint(folder, build_model(config), pendulum_metadata(config))


def make_joint_checkpoint(
    folder: Path, seed: int = 0, kind: str = "rkn", use_dt: bool = False, dt: float = 0.02
) -> Path:
    """An untrained action-conditioned joint model (angle + two pressures in, angle and
    velocity out), like the pneumatic demo's; ``use_dt``: one that takes the tick's dt."""
    torch.manual_seed(seed)
    config = ModelConfig(
        sensors=(SensorSpec("joints", "vector", (3,)),),
        output_dim=2,
        latent_obs_dim=8,
        action_dim=2,
        kind=kind,
        use_dt=use_dt,
    )
    metadata = {
        "name": "joint_test",
        "model": dataclasses.asdict(config),
        "dt": dt,
        "inputs": {
            "joints": {
                "kind": "vector",
                "shape": [3],
                "names": ["joint", "flexor/effort", "extensor/effort"],
                "units": ["rad", "bar", "bar"],
            }
        },
        "targets": {"names": ["joint", "joint_velocity"], "units": ["rad", "rad/s"]},
        "outputs": {
            "names": ["joint", "joint_velocity"],
            "units": ["rad", "rad/s"],
            "kind": "direct",
        },
        "actions": {"names": ["p_set_flexor", "p_set_extensor"], "units": ["bar", "bar"]},
        "normalization": {
            "inputs": {"joints": {"mean": [0.1, 2.0, 2.0], "std": [0.5, 1.0, 1.0]}},
            "targets": {"mean": [0.1, 0.0], "std": [0.5, 2.0]},
            "actions": {"mean": [2.0, 2.0], "std": [1.0, 1.0]},
        },
    }
    return save_checkpoint(folder, build_model(config), metadata)


def make_monotone_pendulum_checkpoint(folder: Path, seed: int = 0) -> Path:
    """An image pendulum whose decoder is linear, with the variance a positive sum of the
    latent variances and the mean near (sin, cos) = (0, 1): its reported angle std rises and
    falls with the filter's own uncertainty, which the gap tests need from an untrained model."""
    torch.manual_seed(seed)
    config = ModelConfig(
        sensors=(SensorSpec("image", "image", (24, 24)),),
        output_dim=2,
        latent_obs_dim=15,
        decoder_hidden=(),
    )
    model = build_model(config)
    m = config.latent_obs_dim
    with torch.no_grad():
        var_layer = model.decoder.var_net[0]
        var_layer.weight.zero_()
        var_layer.weight[:, : 2 * m] = 0.02  # upper and lower latent variances, not the side
        var_layer.bias.fill_(-0.9)
        mean_layer = model.decoder.mean_net[0]
        mean_layer.weight.mul_(0.01)
        mean_layer.bias.copy_(torch.tensor([0.0, 1.0]))
    return save_checkpoint(folder, model, pendulum_metadata(config, name="pendulum_monotone"))


def make_pam_checkpoint(folder: Path, seed: int = 0) -> Path:
    """An untrained action-conditioned model shaped like the PAM one: 4 joint angles and 8
    muscle commands in, the next 4 angles out."""
    torch.manual_seed(seed)
    config = ModelConfig(
        sensors=(SensorSpec("joints", "vector", (4,)),),
        output_dim=4,
        latent_obs_dim=8,
        action_dim=8,
    )
    joints = [f"joint_{i + 1}" for i in range(4)]
    metadata = {
        "name": "pam_test",
        "model": dataclasses.asdict(config),
        "dt": 0.01,
        "inputs": {
            "joints": {"kind": "vector", "shape": [4], "names": joints, "units": ["rad"] * 4}
        },
        "targets": {"names": [f"{j}_next" for j in joints], "units": ["rad"] * 4},
        "outputs": {"names": [f"{j}_next" for j in joints], "units": ["rad"] * 4, "kind": "direct"},
        "actions": {"names": [f"muscle_{i + 1}" for i in range(8)], "units": ["1"] * 8},
        "normalization": {},
    }
    return save_checkpoint(folder, build_model(config), metadata)
