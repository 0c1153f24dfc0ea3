"""The pendulum data sets' optional sensors: a second camera, an IMU and a joint encoder.

Chosen with ``sensors`` (generator config or ``rkn-ros generate --sensors``), in model order;
the default ``[image]`` writes exactly what it always wrote. Each sensor is its own array with
its own valid mask (``N`` sequences, ``T`` steps):

- ``image``: ``images`` uint8 ``[N, T, H, W]`` + ``images_valid`` (the front camera, see
  :mod:`rkn_ros.data.generate`);
- ``image_side``: ``images_side`` uint8 ``[N, T, H2, W2]`` + ``images_side_valid``: a second
  camera at another viewpoint, scale and resolution, with an occluder
  (:class:`rkn_ros.sim.render.CameraView`); its own ``drop_prob``;
- ``imu``: ``imu`` float32 ``[N, T, 3]`` + ``imu_valid`` (every step): gyro rate and specific
  force on the last link (:mod:`rkn_ros.sim.imu`); the drifting bias is the truth array
  ``imu_bias`` ``[N, T, 3]``;
- ``encoder``: ``encoder`` float32 ``[N, T, J]`` + ``encoder_valid``: quantized relative joint
  angles every ``period`` steps, zeros between (:mod:`rkn_ros.sim.encoder`).

Each input's metadata names its ``sensor_kind``, the message kind a robot sends it as
(``image``, ``imu``, ``joint_state``), beside the data layout ``kind`` (image or vector).
Every sensor draws from a random stream of its own, split off the data set's seed after the
streams the images use, so adding a sensor changes no other array.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from rkn_ros.sim import encoder as encoder_sim
from rkn_ros.sim import image_noise
from rkn_ros.sim import imu as imu_sim
from rkn_ros.sim.encoder import EncoderParams
from rkn_ros.sim.imu import ImuParams
from rkn_ros.sim.pendulum import PendulumParams
from rkn_ros.sim.render import CameraView, RenderParams, render

SENSOR_NAMES = ("image", "image_side", "imu", "encoder")
DEFAULT_SENSORS = ("image",)
CONFIG_KEYS = ("sensors", "image_side", "imu", "encoder")   # generator config sections
# why a sensor's samples are missing, for the summary `rkn-ros generate` prints
MISSING_REASONS = {"image_side": "dropped on purpose (image_side.drop_prob)",
                   "encoder": "fall between the encoder's readings (encoder.period)"}
IMAGE_STREAMS = 4   # random streams of the seed that generate_pendulum uses for the images


def _default_view() -> CameraView:
    # seen from 0.9 rad to the side, turned, smaller and off centre; a box hides the lower right
    return CameraView(yaw=0.9, roll=0.35, scale=0.8, offset=(0.08, -0.06),
                      occluder=(0.6, 0.62, 0.95, 0.95))


@dataclasses.dataclass(frozen=True)
class SideCameraConfig:
    """The second camera: its image side, viewpoint and frame drops."""

    image_size: int | None = None   # px; None: 2/3 of the front camera's (24 -> 16, 48 -> 32)
    view: CameraView = dataclasses.field(default_factory=_default_view)
    drop_prob: float = 0.0          # probability of dropping a frame (first 5 always kept)

    def __post_init__(self) -> None:
        if not (isinstance(self.drop_prob, (int, float)) and not isinstance(self.drop_prob, bool)
                and 0.0 <= self.drop_prob < 1.0):
            raise ValueError(f"image_side option 'drop_prob': expected a number in [0, 1), "
                             f"received {self.drop_prob!r}")
        if self.image_size is not None and (not isinstance(self.image_size, int)
                                            or isinstance(self.image_size, bool)):
            raise ValueError(f"image_side option 'image_size': expected an integer number of "
                             f"px, received {self.image_size!r}")

    def render_params(self, front: RenderParams) -> RenderParams:
        """The front camera's rendering at this camera's side, lines scaled alike."""
        size = self.image_size or max(8, front.image_size * 2 // 3)
        return dataclasses.replace(front, image_size=size,
                                   line_width=front.line_width * size / front.image_size,
                                   margin=front.margin * size / front.image_size)

    def to_dict(self) -> dict:
        """Plain mapping for metadata files."""
        return {"image_size": self.image_size, "view": self.view.to_dict(),
                "drop_prob": float(self.drop_prob)}


@dataclasses.dataclass(frozen=True)
class SensorsConfig:
    """Which sensors a pendulum data set holds, and their parameters."""

    sensors: tuple[str, ...] = DEFAULT_SENSORS
    image_side: SideCameraConfig = dataclasses.field(default_factory=SideCameraConfig)
    imu: ImuParams = dataclasses.field(default_factory=ImuParams)
    encoder: EncoderParams = dataclasses.field(default_factory=EncoderParams)

    def __post_init__(self) -> None:
        names = self.sensors
        if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names \
                or any(n not in SENSOR_NAMES for n in names) or len(set(names)) != len(names):
            raise ValueError(f"pendulum data set option 'sensors': expected a non-empty list of "
                             f"distinct names from {list(SENSOR_NAMES)}, received {names!r}")
        object.__setattr__(self, "sensors", tuple(names))

    @property
    def is_default(self) -> bool:
        """Only the front camera: the data set is written as before sensors were options."""
        return self.sensors == DEFAULT_SENSORS

    def to_dict(self) -> dict:
        """The parameters of the chosen sensors, for the data set's metadata."""
        out: dict[str, Any] = {"sensors": list(self.sensors)}
        if "image_side" in self.sensors:
            out["image_side"] = self.image_side.to_dict()
        if "imu" in self.sensors:
            out["imu"] = {**self.imu.to_dict(), "link": "last"}
        if "encoder" in self.sensors:
            out["encoder"] = self.encoder.to_dict()
        return out


def parse_sensor_list(text: str) -> tuple[str, ...]:
    """``"image,imu"`` -> ``("image", "imu")`` (checked by :class:`SensorsConfig`)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def load_sensors_config(values: dict, base: SensorsConfig) -> SensorsConfig:
    """The sensor sections of a generator config (keys :data:`CONFIG_KEYS`) over ``base``."""
    def section(name: str) -> dict:
        value = values.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError(f"section '{name}' must be a mapping, received "
                             f"{type(value).__name__}")
        return value

    side = section("image_side")
    unknown = sorted(set(side) - {f.name for f in dataclasses.fields(SideCameraConfig)})
    if unknown:
        raise ValueError(f"unknown image_side option(s) {unknown}; known: "
                         f"{[f.name for f in dataclasses.fields(SideCameraConfig)]}")
    view = CameraView.from_dict({**base.image_side.view.to_dict(), **(side.get("view") or {})})
    return SensorsConfig(
        sensors=values.get("sensors", base.sensors),
        image_side=dataclasses.replace(base.image_side, view=view,
                                       **{k: v for k, v in side.items() if k != "view"}),
        imu=ImuParams.from_dict({**base.imu.to_dict(), **section("imu")}),
        encoder=EncoderParams.from_dict({**base.encoder.to_dict(),
                                                 **section("encoder")}),
    )


class SensorData(NamedTuple):
    """What the optional sensors add to a pendulum data set."""

    arrays: dict[str, np.ndarray]      # [N, T, ...] each
    inputs: dict[str, dict]            # metadata inputs, by sensor name
    truth: dict[str, str]              # metadata truth entries (array names)


def sensor_data(config: SensorsConfig, physics: PendulumParams, front: RenderParams,
                angles: np.ndarray, velocities: np.ndarray, seed: int) -> SensorData:
    """Arrays of the non-image sensors for unwrapped ``angles``/``velocities [N, T, links]``."""
    num, steps, links = angles.shape
    seeds = np.random.SeedSequence(seed).spawn(IMAGE_STREAMS + 3)[IMAGE_STREAMS:]
    rng_imu, rng_encoder, rng_side = (np.random.default_rng(s) for s in seeds)
    arrays: dict[str, np.ndarray] = {}
    inputs: dict[str, dict] = {}
    truth: dict[str, str] = {}
    if "image_side" in config.sensors:
        side = config.image_side.render_params(front)
        side.levels(links)
        images = render(angles.reshape(-1, links), physics.lengths, side,
                        view=config.image_side.view).reshape(num, steps, side.image_size,
                                                             side.image_size)
        valid = np.ones((num, steps), dtype=bool)
        if config.image_side.drop_prob > 0:
            valid = image_noise.keep_mask(rng_side, num, steps,
                                          keep_prob=1.0 - config.image_side.drop_prob)
            images = np.where(valid[:, :, None, None], images, np.uint8(0))
        arrays.update(images_side=np.ascontiguousarray(images, dtype=np.uint8),
                      images_side_valid=valid)
        inputs["image_side"] = {"kind": "image", "sensor_kind": "image", "array": "images_side",
                                "valid": "images_side_valid",
                                "shape": [side.image_size, side.image_size]}
    if "imu" in config.sensors:
        readings, bias = imu_sim.imu_readings(angles, velocities, physics, config.imu, rng_imu)
        arrays.update(imu=readings.astype(np.float32), imu_valid=np.ones((num, steps), bool),
                      imu_bias=bias.astype(np.float32))
        inputs["imu"] = {"kind": "vector", "sensor_kind": "imu", "array": "imu",
                         "valid": "imu_valid", "names": list(imu_sim.IMU_COLUMNS),
                         "units": list(imu_sim.IMU_UNITS)}
        truth["imu_bias"] = "imu_bias"
    if "encoder" in config.sensors:
        readings, valid = encoder_sim.encoder_readings(angles, config.encoder, rng_encoder)
        joints = config.encoder.measured(links)
        arrays.update(encoder=readings.astype(np.float32), encoder_valid=valid)
        inputs["encoder"] = {"kind": "vector", "sensor_kind": "joint_state", "array": "encoder",
                             "valid": "encoder_valid", "names": [f"joint_{j}" for j in joints],
                             "units": ["rad"] * len(joints)}
    return SensorData(arrays=arrays, inputs=inputs, truth=truth)


UNITS = {**{f"imu.{k}": v for k, v in imu_sim.UNITS.items()},
         **{f"encoder.{k}": v for k, v in encoder_sim.UNITS.items()},
         "image_side.image_size": "px", "image_side.view.yaw": "rad",
         "image_side.view.roll": "rad", "image_side.view.scale": "1",
         "image_side.view.offset": "image side", "image_side.view.occluder": "image side",
         "image_side.view.occluder_level": "0-255", "image_side.drop_prob": "1"}
