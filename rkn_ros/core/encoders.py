"""Encoders: one per sensor, each mapping a sample to a latent observation `(w, var_obs)`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from rkn_ros.core.config import ModelConfig, SensorSpec
from rkn_ros.core.layers import elu_plus_one, feature_size_after_conv, mlp, run_mlp


class ImageEncoder(nn.Module):
    """The paper's conv encoder.

    conv c1@5x5 (same padding) + norm + ReLU + maxpool 2, conv c2@3x3 stride 2 + norm + ReLU +
    maxpool 2, dense (ReLU), then linear heads for `w` and `var_obs`. "norm" is a layer norm over
    (channels, height, width) (`GroupNorm` with one group). Works for any side >= 16
    (24x24: 3x3 features, 48x48: 6x6).

    Input [batch, height, width] (grey) or [batch, channels, height, width], float in [0, 1].
    Output w, var_obs: [batch, out_dim].
    """

    def __init__(self, spec: SensorSpec, out_dim: int, channels: tuple[int, ...], dense: int,
                 normalize: bool) -> None:
        super().__init__()
        self.grey = len(spec.shape) == 2
        c1, c2 = channels
        height, width = spec.shape[-2:]
        self.conv1 = nn.Conv2d(spec.channels, c1, 5, padding=2)
        self.features = nn.Sequential(
            # pool before ReLU: the same function (max commutes with a monotone map) on a
            # quarter of the elements
            nn.GroupNorm(1, c1),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1),
            nn.GroupNorm(1, c2),
            nn.MaxPool2d(2),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(c2 * feature_size_after_conv(height) * feature_size_after_conv(width), dense),
            nn.ReLU(),
        )
        self.heads = nn.Linear(dense, 2 * out_dim)
        self.out_dim = out_dim
        self.normalize = normalize

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if self.grey:
            images = images.unsqueeze(1)
        conv = self.conv1
        if (images.shape[0] < 16 and images.device.type == "cpu"
                and not torch.onnx.is_in_onnx_export()):
            # F.conv2d sends 5x5 kernels to oneDNN even at batch 1, where it costs about 6x
            # the plain im2col + GEMM kernel (measured 170 vs 27 us on the 24x24 pendulum);
            # that is the whole per-tick budget. Same math, chosen by shape only.
            x = torch.ops.aten._slow_conv2d_forward(images, conv.weight, conv.kernel_size,
                                                    conv.bias, conv.stride, conv.padding)
        else:
            x = conv(images)
        # The `features` layers called as functions: the module call machinery costs more
        # than these tiny layers at batch 1 (same parameters, same math).
        norm1, _, _, conv2, norm2, _, _, _, dense, _ = self.features
        x = F.relu(_max_pool2(_layer_norm(x, norm1)))
        x = F.conv2d(x, conv2.weight, conv2.bias, conv2.stride, conv2.padding)
        x = F.relu(_max_pool2(_layer_norm(x, norm2)))
        x = F.relu(F.linear(x.flatten(1), dense.weight, dense.bias))
        return _split_heads(F.linear(x, self.heads.weight, self.heads.bias), self.out_dim,
                            self.normalize)


def _layer_norm(x: Tensor, norm: nn.GroupNorm) -> Tensor:
    """`norm(x)` for a one-group `GroupNorm` and x [batch, channels, height, width].

    One group normalizes over (channels, height, width): a layer norm whose affine is the
    per-channel one broadcast. Exported to ONNX as that (one node) rather than as the five
    nodes of a group norm; in PyTorch the group-norm kernel.
    """
    if not torch.onnx.is_in_onnx_export():
        return F.group_norm(x, 1, norm.weight, norm.bias, norm.eps)
    shape = x.shape[1:]
    return F.layer_norm(x, shape, norm.weight[:, None, None].expand(shape),
                        norm.bias[:, None, None].expand(shape), norm.eps)


def _max_pool2(x: Tensor) -> Tensor:
    """`F.max_pool2d(x, 2)` for x [batch, channels, height, width].

    Without a gradient to record: the maximum of the four strided 2x2 corners, the same
    values (max is exact), about 1.7x faster at batch 1 and 5x at batch 3750 than the
    pooling kernel here. With one: the pooling kernel, whose backward sends each window's
    gradient to its first maximum (ties are common on blank background); recomputing those
    indices from the corners cost as much as the kernel saves (measured).
    """
    if (torch.is_grad_enabled() and x.requires_grad) or torch.onnx.is_in_onnx_export():
        return F.max_pool2d(x, 2)
    height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if height != x.shape[-2] or width != x.shape[-1]:  # odd sides: floor, as max_pool2d
        x = x[..., :height, :width]
    return torch.maximum(torch.maximum(x[..., ::2, ::2], x[..., ::2, 1::2]),
                         torch.maximum(x[..., 1::2, ::2], x[..., 1::2, 1::2]))


class VectorEncoder(nn.Module):
    """MLP encoder for vector readings (joint angles, pressures).

    Input [batch, dim]; output w, var_obs: [batch, out_dim]. With `hidden=()` and no
    normalisation it is affine, which lets an RKN represent a linear-Gaussian filter exactly.
    """

    def __init__(self, spec: SensorSpec, out_dim: int, hidden: tuple[int, ...],
                 normalize: bool) -> None:
        super().__init__()
        self.net = mlp(spec.shape[0], hidden, 2 * out_dim)
        self.out_dim = out_dim
        self.normalize = normalize

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return _split_heads(run_mlp(self.net, x), self.out_dim, self.normalize)


def _split_heads(out: Tensor, dim: int, normalize: bool) -> tuple[Tensor, Tensor]:
    # one linear layer for both heads: one matmul per step instead of two
    w, raw_var = out.split(dim, -1)
    if normalize:
        # F.normalize's math in one op fewer
        w = w / torch.linalg.vector_norm(w, dim=-1, keepdim=True).clamp_min(1e-8)
    return w, elu_plus_one(raw_var)


def _image_encoder(spec: SensorSpec, config: ModelConfig) -> nn.Module:
    return ImageEncoder(spec, config.latent_obs_dim, config.encoder_conv_channels,
                        config.encoder_dense, config.normalize_latent_obs)


def _vector_encoder(spec: SensorSpec, config: ModelConfig) -> nn.Module:
    return VectorEncoder(spec, config.latent_obs_dim, config.encoder_hidden,
                         config.normalize_latent_obs)


# The one place that chooses an encoder, by the sensor's data layout (SensorSpec.kind): camera
# frames get the conv encoder; every vector sensor kind (joint_state, imu, wrench, vector) the
# MLP, whose z-normalized input (train/data.py) makes one architecture fit all their units.
ENCODERS: dict[str, Callable[[SensorSpec, ModelConfig], nn.Module]] = {
    "image": _image_encoder,
    "vector": _vector_encoder,
}


def build_encoder(spec: SensorSpec, config: ModelConfig) -> nn.Module:
    """Encoder for one sensor, producing `latent_obs_dim`-sized (w, var_obs)."""
    try:
        choose = ENCODERS[spec.kind]
    except KeyError:
        raise ValueError(f"sensor {spec.name!r}: no encoder for kind {spec.kind!r} "
                         f"(known: {sorted(ENCODERS)})") from None
    return choose(spec, config)
