"""From the model's normalized targets to named joint quantities with units.

The one place that knows how targets map to joint states, so every node, the monitor and any
embedding control loop agree:

- ``outputs.kind == "direct"``: target ``i`` (un-normalized) is output ``i``.
- ``outputs.kind == "sincos"``: the first ``2 n`` targets are ``(sin, cos)`` pairs of ``n``
  angles (order taken from the target names when they say ``sin``/``cos``), decoded with
  ``atan2``; any further targets map one to one onto the remaining outputs (e.g. velocities).
  The angle's standard deviation is propagated to first order,
  ``var = (c^2 var_s + s^2 var_c) / (s^2 + c^2)^2``, and capped at ``pi / sqrt(3)``, the standard
  deviation of an angle uniform on the circle (no information).

Outputs whose unit ends in ``/s`` are velocities; one named ``<joint>_velocity`` (or
``_vel``/``_dot``) belongs to the position output ``<joint>``; velocities whose names pair with
no position pair with the positions left without one, in order. Everything else is a position.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rkn_ros.core.checkpoint_schema import Normalization, OutputsSpec, TargetsSpec
from rkn_ros.core.typed_config import ConfigError, from_mapping

UNIFORM_ANGLE_STD = math.pi / math.sqrt(3.0)
UNIFORM_ANGLE_VAR = math.pi**2 / 3.0
VELOCITY_SUFFIXES = ("_velocity", "_vel", "_dot", "/velocity")


class OutputLayoutError(ValueError):
    """Checkpoint metadata that does not describe its outputs consistently."""


def _record(cls: type, value: object) -> object:
    names = {"OutputsSpec": "outputs", "TargetsSpec": "targets", "Normalization": "normalization"}
    return value if isinstance(value, cls) else from_mapping(cls, value, names[cls.__name__])


def _vector(values: Sequence[float] | None, dim: int, fill: float, what: str) -> np.ndarray:
    if values is None:
        return np.full(dim, fill, dtype=np.float64)
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size != dim:
        raise OutputLayoutError(f"{what}: expected {dim} values, got {array.size}")
    if not np.all(np.isfinite(array)):
        raise OutputLayoutError(f"{what}: holds NaN or inf")
    return array


def sincos_pairs(names: Sequence[str], n_angles: int) -> tuple[np.ndarray, np.ndarray]:
    """Target indices ``(sin_index, cos_index)`` ``[n_angles]`` of each angle's pair among the
    first ``2 n_angles`` targets.

    Read from the names where they say which is which: a name with one word starting with
    ``sin`` or ``cos`` (``sin_theta_1``, ``theta_1_cos``, ``sin1``, ``cosine_1``,
    ``costheta``). Pairs are matched on the rest of the name (``sin_theta_1`` with
    ``cos_theta_1``), else in order of appearance, so interleaved
    ``(sin, cos)`` or ``(cos, sin)`` pairs and grouped ``sin1, sin2, cos1, cos2`` all decode.
    Names that say nothing (or none given) mean interleaved ``(sin, cos)`` pairs; names of
    which only some say it raise :class:`OutputLayoutError`.
    """
    default = np.arange(0, 2 * n_angles, 2, dtype=np.int64)
    head = [str(n).lower() for n in names[: 2 * n_angles]]
    if len(head) < 2 * n_angles:
        return default, default + 1
    kinds, keys = [], []
    for name in head:
        # a word starting with sin or cos says which: sin, sine, sintheta, cos1, cosine
        found = re.findall(r"(?<![a-z])(sin|cos)[a-z]*", name)
        kinds.append(found[0] if len(found) == 1 else None)
        keys.append(re.sub(r"(?<![a-z])(sine|cosine|sin|cos)", "", name))
    if all(kind is None for kind in kinds):
        return default, default + 1
    sines = [i for i, kind in enumerate(kinds) if kind == "sin"]
    cosines = [i for i, kind in enumerate(kinds) if kind == "cos"]
    if len(sines) != n_angles or len(cosines) != n_angles:
        raise OutputLayoutError(
            f"sincos targets {head}: expected {n_angles} names with 'sin' and {n_angles} with "
            "'cos' (or names that say neither, for interleaved (sin, cos) pairs)"
        )
    cos_by_key = {keys[i]: i for i in cosines}
    if len(cos_by_key) == n_angles and all(keys[i] in cos_by_key for i in sines):
        cosines = [cos_by_key[keys[i]] for i in sines]
    return np.array(sines, dtype=np.int64), np.array(cosines, dtype=np.int64)


@dataclass(frozen=True)
class OutputLayout:
    """How to decode ``[..., target_dim]`` normalized means/variances into named outputs."""

    kind: str
    target_dim: int
    names: tuple[str, ...]
    units: tuple[str, ...]
    target_mean: np.ndarray  # [target_dim]
    target_std: np.ndarray  # [target_dim]
    sin_index: np.ndarray  # [n_angles] target index of each angle's sine
    cos_index: np.ndarray  # [n_angles]
    joint_names: tuple[str, ...]
    position_index: np.ndarray  # [n_joints] output index of each joint's position
    velocity_index: np.ndarray | None  # [n_joints] or None when the model gives no velocities

    @classmethod
    def from_metadata(
        cls,
        outputs: OutputsSpec | Mapping,
        targets: TargetsSpec | Mapping,
        target_dim: int,
        normalization: Normalization | Mapping | None = None,
    ) -> OutputLayout:
        """Build from a checkpoint's ``outputs``, ``targets`` and ``normalization`` records (or
        their ``model.yaml`` mappings, checked by the schema)."""
        try:
            outputs, targets = _record(OutputsSpec, outputs), _record(TargetsSpec, targets)
            if normalization is not None:
                normalization = _record(Normalization, normalization)
        except ConfigError as err:
            raise OutputLayoutError(str(err)) from err
        kind = outputs.kind
        names = tuple(outputs.names)
        units = tuple(outputs.units) or ("",) * len(names)
        if len(units) != len(names):
            raise OutputLayoutError(f"outputs: {len(names)} names but {len(units)} units")
        norm = normalization.targets if normalization is not None else None
        mean = _vector(None if norm is None else norm.mean, target_dim, 0.0,
                       "normalization.targets.mean")
        std = _vector(None if norm is None else norm.std, target_dim, 1.0,
                      "normalization.targets.std")
        if np.any(std <= 0):
            raise OutputLayoutError("normalization.targets.std must be positive")
        if kind == "sincos":
            n_angles = target_dim - len(names)
            if n_angles < 1 or 2 * n_angles > target_dim:
                raise OutputLayoutError(
                    f"outputs.kind sincos: {len(names)} output names do not fit {target_dim} "
                    f"targets (need n angles from 2n sin/cos targets plus the rest one to one)"
                )
            names_given = list(targets.names)
            sin_index, cos_index = sincos_pairs(
                names_given if len(names_given) == target_dim else [], n_angles
            )
        elif kind == "direct":
            if len(names) != target_dim:
                raise OutputLayoutError(
                    f"outputs.kind direct: {len(names)} output names for {target_dim} targets"
                )
            sin_index = cos_index = np.zeros(0, dtype=np.int64)
        else:
            raise OutputLayoutError(f"outputs.kind must be 'sincos' or 'direct', got {kind!r}")

        velocity_of: dict[str, int] = {}
        positions: list[int] = []
        for index, (name, unit) in enumerate(zip(names, units, strict=True)):
            if unit.endswith("/s"):
                joint = next((name[: -len(s)] for s in VELOCITY_SUFFIXES if name.endswith(s)), name)
                velocity_of[joint] = index
            else:
                positions.append(index)
        joint_names = tuple(names[i] for i in positions)
        unmatched = [j for j in velocity_of if j not in joint_names]
        alone = [j for j in joint_names if j not in velocity_of]
        if unmatched and len(unmatched) == len(alone):
            # e.g. "angle" with "angular_velocity": names that do not pair up pair in order
            for joint, position in zip(unmatched, alone, strict=True):
                velocity_of[position] = velocity_of.pop(joint)
        elif unmatched:
            raise OutputLayoutError(
                f"outputs: velocities {sorted(unmatched)} have no position output of the same joint"
            )
        velocity_index = None
        if velocity_of:
            missing = [j for j in joint_names if j not in velocity_of]
            if missing:
                raise OutputLayoutError(
                    f"outputs: joints {missing} have a position but no velocity"
                )
            velocity_index = np.array([velocity_of[j] for j in joint_names], dtype=np.int64)
        return cls(
            kind=kind,
            target_dim=target_dim,
            names=names,
            units=units,
            target_mean=mean,
            target_std=std,
            sin_index=sin_index.astype(np.int64),
            cos_index=cos_index.astype(np.int64),
            joint_names=joint_names,
            position_index=np.array(positions, dtype=np.int64),
            velocity_index=velocity_index,
        )

    def decode(self, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalized ``mean, var [..., target_dim]`` -> output ``mean, std [..., len(names)]``.

        Written for a few-element vector per tick: each numpy call costs ~1-2 us whatever its
        size, so the angle math works on variances and reuses its squares.
        """
        if self.kind == "sincos" and mean.ndim == 1:
            return self._decode_tick(mean, var)
        mean = mean * self.target_std + self.target_mean
        var = np.maximum(var, 0.0) * (self.target_std * self.target_std)
        if self.kind == "direct":
            return mean, np.sqrt(var)
        s, c = mean[..., self.sin_index], mean[..., self.cos_index]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            s2, c2 = s * s, c * c
            radius2 = s2 + c2
            angle_var = (c2 * var[..., self.sin_index] + s2 * var[..., self.cos_index]) / (
                radius2 * radius2
            )
        # capped at no information; fmin also takes the cap for the NaN of a mean at the origin
        angle_std = np.sqrt(np.fmin(angle_var, UNIFORM_ANGLE_VAR))
        rest = slice(2 * self.sin_index.size, self.target_dim)
        return (
            np.concatenate([np.arctan2(s, c), mean[..., rest]], axis=-1),
            np.concatenate([angle_std, np.sqrt(var[..., rest])], axis=-1),
        )

    @functools.cached_property
    def _tick_constants(self) -> tuple[list[tuple[int, int]], np.ndarray, range]:
        """What every :meth:`_decode_tick` needs from the layout, worked out once: the (sin,
        cos) target index pairs, the squared target scales, the one-to-one targets."""
        pairs = list(zip(self.sin_index.tolist(), self.cos_index.tolist(), strict=True))
        return (pairs, self.target_std * self.target_std,
                range(2 * self.sin_index.size, self.target_dim))

    def _decode_tick(self, mean: np.ndarray, var: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`decode` of one tick ``[target_dim]``, the same numbers: at 1-4 angles a few
        float operations per angle cost less than the ~15 numpy calls of the array form."""
        pairs, target_var, rest = self._tick_constants
        m = (mean * self.target_std + self.target_mean).tolist()
        v = (np.maximum(var, 0.0) * target_var).tolist()
        out_mean, out_std = [], []
        for si, ci in pairs:
            s, c = m[si], m[ci]
            s2, c2 = s * s, c * c
            radius4 = (s2 + c2) * (s2 + c2)
            angle_var = (c2 * v[si] + s2 * v[ci]) / radius4 if radius4 > 0.0 else math.inf
            out_mean.append(math.atan2(s, c))
            # as np.fmin in the array form: the cap also replaces a NaN
            out_std.append(math.sqrt(angle_var if angle_var < UNIFORM_ANGLE_VAR
                                     else UNIFORM_ANGLE_VAR))
        for index in rest:
            out_mean.append(m[index])
            out_std.append(math.sqrt(v[index]))
        return np.array(out_mean), np.array(out_std)


def chain_points(angles: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Joint positions ``[links + 1, 2]`` (x right, z up) of a planar chain hanging from the
    origin, absolute link angles measured from the downward vertical (the simulator's convention).
    """
    steps = np.stack([np.sin(angles) * lengths, -np.cos(angles) * lengths], axis=-1)
    return np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)], axis=0)
