"""Typed model configuration: what `build_model` needs to rebuild a model exactly.

Serialised with `dataclasses.asdict` (tuples become lists in YAML) and rebuilt with
`ModelConfig.from_dict`, which rejects unknown keys so a typo in a recipe fails loudly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

MODEL_KINDS = ("rkn", "lstm", "gru")
SENSOR_KINDS = ("image", "vector")


def _reject_unknown(cls: type, data: dict[str, Any], where: str) -> None:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, received {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(known)}")


def _int_tuple(value: Any, where: str) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{where}: expected a list of integers, received {value!r}")
    items = tuple(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{where}: expected a list of integers, received {value!r}")
    return items


@dataclass(frozen=True)
class SensorSpec:
    """One input of the model.

    `shape` is the shape of one sample: image `(height, width)` (grey) or
    `(channels, height, width)`; vector `(dim,)`.
    """

    name: str
    kind: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _int_tuple(self.shape, f"sensor {self.name!r} shape"))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"sensor name: expected a non-empty string, received {self.name!r}")
        if self.kind not in SENSOR_KINDS:
            raise ValueError(
                f"sensor {self.name!r} kind: expected one of {SENSOR_KINDS}, received {self.kind!r}"
            )
        if any(s <= 0 for s in self.shape):
            raise ValueError(
                f"sensor {self.name!r} shape: sizes must be positive, received {self.shape}"
            )
        if self.kind == "vector" and len(self.shape) != 1:
            raise ValueError(
                f"sensor {self.name!r} shape: a vector sensor needs (dim,), received {self.shape}"
            )
        if self.kind == "image":
            if len(self.shape) not in (2, 3):
                raise ValueError(
                    f"sensor {self.name!r} shape: an image needs (height, width) or "
                    f"(channels, height, width), received {self.shape}"
                )
            height, width = self.shape[-2:]
            # two conv/pool stages reduce each side by 16 (rounded); 16 px is the smallest useful
            if height < 16 or width < 16:
                raise ValueError(
                    f"sensor {self.name!r} shape: images must be at least 16x16, "
                    f"received {height}x{width}"
                )

    @property
    def channels(self) -> int:
        """Image channels (1 for grey images given as (height, width))."""
        return self.shape[0] if len(self.shape) == 3 else 1

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensorSpec:
        _reject_unknown(cls, data, "sensor")
        missing = [k for k in ("name", "kind", "shape") if k not in data]
        if missing:
            raise ValueError(f"sensor: missing key(s) {missing}")
        return cls(name=data["name"], kind=data["kind"], shape=data["shape"])


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines a model's architecture (weights are stored separately)."""

    sensors: tuple[SensorSpec, ...]
    output_dim: int
    kind: str = "rkn"
    latent_obs_dim: int = 15  # m; the latent state has 2m entries
    num_basis: int = 15  # K
    bandwidth: int = 3  # b: entries with |i - j| <= b of each m x m block are free
    hidden_size: int = 50  # LSTM/GRU hidden size
    action_dim: int = 0  # > 0: ac-RKN control shift of the predicted mean
    use_dt: bool = False  # feed dt (time to the next tick) to the coefficient network
    image_decoder: bool = False  # also decode the first image sensor (Bernoulli probabilities)
    # encoders
    encoder_conv_channels: tuple[int, ...] = (12, 12)
    encoder_dense: int = 30  # image encoder: dense layer after the convolutions
    encoder_hidden: tuple[int, ...] = (60,)  # vector encoder MLP (empty: linear)
    normalize_latent_obs: bool = True  # L2-normalise w (paper's choice for images)
    # decoders
    decoder_hidden: tuple[int, ...] = (30,)  # Gaussian decoder MLPs (empty: linear)
    # RKN: the variance decoder also reads the posterior mean (paper: [su, sl, ss] only, so
    # the output variance cannot depend on the state, e.g. on the angle for sin/cos targets)
    variance_from_mean: bool = False
    # RKN: the mean decoder also reads [su, sl, ss] (paper: the posterior mean only, so the
    # mean cannot shrink sin/cos towards 0 when the angle is uncertain)
    mean_from_variance: bool = False
    # RKN: variances enter the decoders as [log su, log sl, ss / sqrt(su sl)] (scale-free, the
    # side term a correlation in [-1, 1]) instead of raw [su, sl, ss] (paper)
    log_variance_features: bool = False
    # transition
    coefficient_hidden: tuple[int, ...] = ()  # paper: no hidden layer
    control_hidden: tuple[int, ...] = (60,)  # ac-RKN action MLP
    transition_noise_init: float = 0.1
    # RKN: the transition noise Q depends on the posterior mean through a linear layer that
    # starts at zero, i.e. at the paper's constant Q (paper: constant), so the predicted
    # variance can grow where the dynamics are hard to predict
    state_dependent_noise: bool = False
    initial_var: float = 10.0
    learn_initial_state: bool = False

    def __post_init__(self) -> None:
        sensors = self.sensors
        if isinstance(sensors, SensorSpec) or not hasattr(sensors, "__iter__"):
            raise ValueError(f"sensors: expected a list of sensors, received {sensors!r}")
        sensors = tuple(
            s if isinstance(s, SensorSpec) else SensorSpec.from_dict(s) for s in sensors
        )
        object.__setattr__(self, "sensors", sensors)
        for name in (
            "encoder_conv_channels",
            "encoder_hidden",
            "decoder_hidden",
            "coefficient_hidden",
            "control_hidden",
        ):
            object.__setattr__(self, name, _int_tuple(getattr(self, name), name))
        if not sensors:
            raise ValueError("sensors: at least one sensor is required, received none")
        names = [s.name for s in sensors]
        if len(set(names)) != len(names):
            raise ValueError(f"sensors: names must be unique, received {names}")
        if self.kind not in MODEL_KINDS:
            raise ValueError(f"kind: expected one of {MODEL_KINDS}, received {self.kind!r}")
        for name in ("output_dim", "latent_obs_dim", "num_basis", "hidden_size", "encoder_dense"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, received {value!r}")
        for name in ("bandwidth", "action_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name}: expected a non-negative integer, received {value!r}")
        if len(self.encoder_conv_channels) != 2 or min(self.encoder_conv_channels) < 1:
            raise ValueError(
                "encoder_conv_channels: expected two positive integers, "
                f"received {self.encoder_conv_channels}"
            )
        for name in ("encoder_hidden", "decoder_hidden", "coefficient_hidden", "control_hidden"):
            if any(v < 1 for v in getattr(self, name)):
                raise ValueError(
                    f"{name}: layer widths must be positive, received {getattr(self, name)}"
                )
        rkn_only = [name for name in ("variance_from_mean", "mean_from_variance",
                                      "log_variance_features", "state_dependent_noise")
                    if getattr(self, name)]
        if self.kind != "rkn" and rkn_only:
            raise ValueError(f"{rkn_only[0]}: an RKN option, but kind is {self.kind!r}")
        if self.kind != "rkn" and self.hidden_size < 2:
            raise ValueError(f"hidden_size: at least 2 (mean and variance halves), received "
                             f"{self.hidden_size}")
        for name in ("transition_noise_init", "initial_var"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"{name}: expected a positive number, received {value!r}")
        if self.image_decoder:
            image = self.decoded_image_sensor
            if image is None:
                raise ValueError("image_decoder: true needs an image sensor, the sensors have none")
            if image.shape[-2] % 4 or image.shape[-1] % 4:
                raise ValueError(
                    f"image_decoder: image sides must be divisible by 4, sensor {image.name!r} "
                    f"has {image.shape[-2]}x{image.shape[-1]}"
                )

    @property
    def decoded_image_sensor(self) -> SensorSpec | None:
        """The sensor the Bernoulli image decoder reconstructs (the first image sensor)."""
        return next((s for s in self.sensors if s.kind == "image"), None)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML-friendly dict (lists, not tuples) that `from_dict` turns back."""

        def plain(value: Any) -> Any:
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            if isinstance(value, dict):
                return {k: plain(v) for k, v in value.items()}
            return value

        return plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        _reject_unknown(cls, data, "model")
        missing = [k for k in ("sensors", "output_dim") if k not in data]
        if missing:
            raise ValueError(f"model: missing key(s) {missing}")
        sensors = data["sensors"]
        if not isinstance(sensors, (list, tuple)):
            raise ValueError(f"model sensors: expected a list, received {type(sensors).__name__}")
        return cls(**{**data, "sensors": tuple(SensorSpec.from_dict(s) if isinstance(s, dict)
                                               else s for s in sensors)})


__all__ = ["MODEL_KINDS", "SENSOR_KINDS", "ModelConfig", "SensorSpec"]
