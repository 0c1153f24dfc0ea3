"""Training recipes (``config/train/*.yaml``) as typed, frozen dataclasses.

Every key is checked before any work starts: unknown keys, wrong types and impossible values
raise :class:`ConfigError` naming the key (``training.lr: expected a number > 0, got -1``).
The ``model`` section is the core's ``ModelConfig`` without the parts the data decide
(sensors, output size, action size); it is validated by building a ``ModelConfig`` with the
data set's sensors once the data are known, and with a placeholder sensor right away.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

DEVICES = ("cpu", "cuda", "auto")


class ConfigError(ValueError):
    """A recipe is invalid; the message names the key."""


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where one data set comes from: exactly one of ``generate``, ``path``.

    ``generate``: generator name and options, generated on the fly deterministically (the
    options include the seed). ``path``: a generated data-set folder or a PAM-format ``.npz``.
    ``pam``: options for the PAM loader when ``path`` is an ``.npz`` (window, split, ...).
    """

    generate: dict | None = None
    path: str | None = None
    pam: dict | None = None

    def check(self, where: str) -> None:
        if (self.generate is None) == (self.path is None):
            raise ConfigError(f"{where}: give exactly one of 'generate' or 'path'")
        if self.generate is not None:
            from rkn_ros.train.data import check_generate_spec

            try:
                check_generate_spec(self.generate, f"{where}.generate")
            except ValueError as err:
                raise ConfigError(str(err)) from err
        if self.pam is not None and (self.path is None or not self.path.endswith(".npz")):
            raise ConfigError(f"{where}.pam: only valid with a PAM-format .npz 'path'")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Training data, and how to split off the validation part.

    ``validation``: a separate source; when null, ``validation_fraction`` of the training
    sequences (chosen with ``split_seed``) are held out. ``test``: optional held-out set that
    the recipe's final evaluation (the checkpoint's ``metrics``) runs on.
    """

    train: DataSource
    validation: DataSource | None = None
    test: DataSource | None = None
    validation_fraction: float = 0.1
    split_seed: int = 0

    def check(self, where: str) -> None:
        self.train.check(f"{where}.train")
        if self.validation is not None:
            self.validation.check(f"{where}.validation")
        if self.test is not None:
            self.test.check(f"{where}.test")
        if self.validation is None and not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(
                f"{where}.validation_fraction: expected a number in (0, 1), "
                f"got {self.validation_fraction}"
            )


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings (paper defaults: Adam lr 1e-3, gradient-norm clip 5)."""

    epochs: int = 10
    batch_size: int = 50
    lr: float = 1e-3
    grad_clip: float = 5.0
    weight_decay: float = 0.0
    early_stopping_patience: int = 5  # epochs without a better validation NLL; 0 = off
    max_steps: int | None = None  # stop after this many optimiser steps (for tests, resume)
    max_time_s: float | None = None  # wall-clock budget for the whole run
    device: Literal["cpu", "cuda", "auto"] = "auto"
    num_threads: int = 1  # torch CPU threads
    observation_drop: float = 0.0  # share of observations hidden during training (first kept)
    keep_first: int = 5  # first steps never dropped
    # also hide one run of consecutive steps per sequence, 1 to drop_gap steps long (0 = off):
    # random drops alone almost never hide 20 steps in a row, so a model never learns how far
    # its uncertainty must grow in a sensor outage of that length
    drop_gap: int = 0
    loss: Literal["gaussian", "bernoulli"] = "gaussian"
    normalize_targets: bool = True
    log_every: int = 10  # optimiser steps between progress-bar updates
    # how a step runs (rkn_ros.train.step): eager, or cuda_graph (CUDA only); precision fp32,
    # tf32 (CUDA only) or bf16 (autocast)
    step: Literal["eager", "cuda_graph"] = "eager"
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"

    def check(self, where: str) -> None:
        positive_int = ("epochs", "batch_size", "num_threads", "log_every")
        for key in positive_int:
            if getattr(self, key) < 1:
                raise ConfigError(
                    f"{where}.{key}: expected an integer >= 1, got {getattr(self, key)}"
                )
        for key in ("lr", "grad_clip"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{where}.{key}: expected a number > 0, got {value}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(
                f"{where}.weight_decay: expected a number >= 0, got {self.weight_decay}"
            )
        if self.early_stopping_patience < 0:
            raise ConfigError(
                f"{where}.early_stopping_patience: expected >= 0, "
                f"got {self.early_stopping_patience}"
            )
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"{where}.max_steps: expected an integer >= 1, got {self.max_steps}")
        if self.max_time_s is not None and not self.max_time_s > 0:
            raise ConfigError(f"{where}.max_time_s: expected a number > 0, got {self.max_time_s}")
        if not 0.0 <= self.observation_drop < 1.0:
            raise ConfigError(
                f"{where}.observation_drop: expected a number in [0, 1), "
                f"got {self.observation_drop}"
            )
        if self.keep_first < 0:
            raise ConfigError(f"{where}.keep_first: expected >= 0, got {self.keep_first}")
        if self.drop_gap < 0:
            raise ConfigError(f"{where}.drop_gap: expected >= 0, got {self.drop_gap}")


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """One training recipe: name, seed, data, model, training."""

    name: str
    data: DataConfig
    model: dict = dataclasses.field(default_factory=dict)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    seed: int = 0
    output_kind: Literal["auto", "sincos", "direct"] = "auto"

    def check(self) -> None:
        if not self.name or "/" in self.name:
            raise ConfigError(f"name: expected a non-empty name without '/', got {self.name!r}")
        if self.seed < 0:
            raise ConfigError(f"seed: expected an integer >= 0, got {self.seed}")
        self.data.check("data")
        self.training.check("training")
        for key in ("sensors", "output_dim", "action_dim"):
            if key in self.model:
                raise ConfigError(f"model.{key}: set from the data set, remove it from the recipe")
        _check_model_section(self.model)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def portable_dict(self) -> dict:
        """``to_dict`` with data paths next to the repository written relative to it
        (``../shared/data/pam/pam_dev.npz``), so checkpoints do not record this machine."""
        repo = Path(__file__).resolve().parents[2]
        data = self.to_dict()
        for part in ("train", "validation", "test"):
            source = data["data"].get(part)
            if source and source.get("path"):
                path = source["path"]
                if os.path.isabs(path) and path.startswith(str(repo.parent) + os.sep):
                    source["path"] = os.path.relpath(path, repo)
        return data


def _check_model_section(model: dict) -> None:
    from rkn_ros.core.config import ModelConfig, SensorSpec

    allowed = sorted(f.name for f in dataclasses.fields(ModelConfig)
                     if f.name not in ("sensors", "output_dim", "action_dim"))
    unknown = sorted(set(model) - set(allowed))
    if unknown:
        raise ConfigError(f"model.{unknown[0]}: unknown key (allowed: {', '.join(allowed)})")
    # The real sensors come from the data; a stand-in lets every other field be checked now.
    if model.get("image_decoder"):
        placeholder = (SensorSpec(name="placeholder", kind="image", shape=(24, 24)),)
    else:
        placeholder = (SensorSpec(name="placeholder", kind="vector", shape=(1,)),)
    try:
        ModelConfig(sensors=placeholder, output_dim=1, **_listless(model))
    except TypeError as err:
        raise ConfigError(f"model: {err}") from err
    except ValueError as err:
        raise ConfigError(f"model.{err}") from err


def _listless(model: Mapping[str, Any]) -> dict:
    # YAML gives lists where ModelConfig wants tuples.
    return {k: tuple(v) if isinstance(v, list) else v for k, v in model.items()}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (no silent coercion except int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None:
            if type(None) in options:
                return None
            raise ConfigError(f"{where}: must not be null")
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(value, option, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: invalid value {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: expected one of {list(allowed)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return _from_mapping(tp, value, where)
    if tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")


def _from_mapping(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'recipe'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{where}." if where else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown key (allowed: {', '.join(sorted(fields))})"
        )
    values = {}
    for name, field in fields.items():
        if name not in data:
            required = field.default is dataclasses.MISSING
            if required and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{prefix}{name}: missing required key")
            continue
        values[name] = _convert(data[name], hints[name], prefix + name)
    return cls(**values)


def recipe_from_dict(data: Mapping[str, Any], base_dir: Path | None = None) -> RecipeConfig:
    """Build and check a recipe; relative data paths are resolved against ``base_dir``."""
    recipe = _from_mapping(RecipeConfig, data, "")
    if base_dir is not None:
        recipe = _resolve_paths(recipe, base_dir)
    recipe.check()
    return recipe


def _resolve_paths(recipe: RecipeConfig, base_dir: Path) -> RecipeConfig:
    def fix(source: DataSource | None) -> DataSource | None:
        if source is None or source.path is None:
            return source
        path = Path(source.path).expanduser()
        shared = os.environ.get("RKN_ROS_SHARED")
        if shared and path.parts[:2] == ("..", "shared"):
            # The shared data folder may live elsewhere (CI, other checkouts).
            path = Path(shared).joinpath(*path.parts[2:])
        if not path.is_absolute():
            # Recipes name data relative to the repository (two levels above config/train).
            candidates = [base_dir / path, base_dir.parent.parent / path, Path.cwd() / path]
            path = next((c for c in candidates if c.exists()), candidates[-1])
        # abspath, not resolve: keep symlinked data where the user put it.
        return dataclasses.replace(source, path=os.path.abspath(path))

    data = recipe.data
    data = dataclasses.replace(
        data, train=fix(data.train), validation=fix(data.validation), test=fix(data.test)
    )
    return dataclasses.replace(recipe, data=data)


def load_recipe(path: str | Path) -> RecipeConfig:
    """Read ``config/train/X.yaml``; ConfigError names the file and the key on any problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    try:
        return recipe_from_dict(data if data is not None else {}, base_dir=path.resolve().parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
