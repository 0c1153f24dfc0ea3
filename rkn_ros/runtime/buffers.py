"""The fixed batch-1 input buffers a step reads, allocated once per estimator.

The codec writes raw inputs into the host buffers in place through numpy views; on CUDA those
are pinned and `to_device` copies them into device buffers of the same shape before each step
(on the CPU the device buffers are the host ones). So a step allocates nothing that outlives it,
and a backend can bind the buffers by address once (ONNX Runtime, a CUDA graph).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rkn_ros.runtime.spec import EstimatorSpec


@dataclass(frozen=True)
class StepBuffers:
    """Host tensors, their numpy views and the device tensors the model reads."""

    host_obs: dict[str, Tensor]  # per sensor [1, *shape] float32
    host_valid: dict[str, Tensor]  # per sensor [1] bool
    host_action: Tensor  # [1, max(action_dim, 1)] float32, normalized
    host_dt: Tensor  # [1, 1] float32, s
    obs: dict[str, Tensor]  # device copies of the above (the same tensors on the CPU)
    valid: dict[str, Tensor]
    action: Tensor
    dt: Tensor
    obs_np: dict[str, np.ndarray]  # numpy views of the host tensors
    valid_np: dict[str, np.ndarray]
    action_np: np.ndarray
    dt_np: np.ndarray
    action_dim: int
    uses_dt: bool

    @property
    def model_action(self) -> Tensor | None:
        """The action argument of a model step: [1, action_dim], or None without actions."""
        return self.action if self.action_dim else None

    @property
    def model_dt(self) -> Tensor | None:
        """The dt argument of a model step: [1, 1], or None for a model without dt."""
        return self.dt if self.uses_dt else None

    def to_device(self) -> None:
        """Copy the host buffers to the device ones (nothing to do on the CPU)."""
        if self.host_action is self.action:
            return
        for name, host in self.host_obs.items():
            self.obs[name].copy_(host, non_blocking=True)
            self.valid[name].copy_(self.host_valid[name], non_blocking=True)
        self.action.copy_(self.host_action, non_blocking=True)
        self.dt.copy_(self.host_dt, non_blocking=True)

    def onnx_inputs(self) -> dict[str, np.ndarray]:
        """The non-state inputs of an exported step (`FlatStep` names) -> host arrays."""
        arrays: dict[str, np.ndarray] = {}
        for name in self.obs_np:
            arrays[f"obs_{name}"] = self.obs_np[name]
            arrays[f"valid_{name}"] = self.valid_np[name]
        if self.action_dim:
            arrays["action"] = self.action_np
        if self.uses_dt:
            arrays["dt"] = self.dt_np
        return arrays


def allocate_buffers(spec: EstimatorSpec, device: torch.device) -> StepBuffers:
    """Zeroed buffers for `spec`'s inputs, pinned on the host where `device` is CUDA."""
    pin = device.type == "cuda"
    with torch.inference_mode():
        host_obs = {n: torch.zeros((1, *s.shape), dtype=torch.float32, pin_memory=pin)
                    for n, s in spec.inputs.items()}
        host_valid = {n: torch.zeros(1, dtype=torch.bool, pin_memory=pin) for n in spec.inputs}
        host_action = torch.zeros((1, max(spec.action.dim, 1)), pin_memory=pin)
        host_dt = torch.full((1, 1), spec.dt, pin_memory=pin)
        if pin:
            obs = {n: t.to(device) for n, t in host_obs.items()}
            valid = {n: t.to(device) for n, t in host_valid.items()}
            action, dt = host_action.to(device), host_dt.to(device)
        else:
            obs, valid, action, dt = host_obs, host_valid, host_action, host_dt
    return StepBuffers(
        host_obs=host_obs, host_valid=host_valid, host_action=host_action, host_dt=host_dt,
        obs=obs, valid=valid, action=action, dt=dt,
        obs_np={n: t.numpy() for n, t in host_obs.items()},
        valid_np={n: t.numpy() for n, t in host_valid.items()},
        action_np=host_action.numpy(), dt_np=host_dt.numpy(),
        action_dim=spec.action.dim, uses_dt=spec.uses_dt,
    )
