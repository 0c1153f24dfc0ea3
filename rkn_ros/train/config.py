"""Training recipes (``config/train/*.yaml``) as typed, frozen dataclasses.

Every key is checked before any work starts: unknown keys, wrong types and impossible values
raise :class:`ConfigError` naming the key (``training.lr: expected a number > 0, got -1``).
The ``model`` section is the core's ``ModelConfig`` without the parts the data decide
(sensors, output size, action size); it is validated by building a ``ModelConfig`` with the
data set's sensors once the data are known, and with a placeholder sensor right away.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from rkn_ros.core.typed_config import (
    ConfigError,
    PlainValue,
    from_mapping,
    limits,
    load_yaml,
    to_plain,
)

DEVICES = ("cpu", "cuda", "auto")
MAX_SEQUENCES = 10**7  # per generated data set (the generator also checks its memory budget)
MAX_STEPS = 10**6
CPU_CORES = os.cpu_count() or 1


def _at_least(low: float, default: Any = dataclasses.MISSING, **bounds: float) -> Any:
    return field(default=default, metadata=limits(ge=low, **bounds))

PENDULUM_GENERATORS = ("pendulum", "quad_link")


@dataclasses.dataclass(frozen=True)
class GenerateSpec:
    """A data set generated on the fly, deterministically in its ``seed``.

    ``config``: a ``config/sim/<generator>.yaml``-style file; ``noise``, ``physics``,
    ``render`` and ``sensors`` (pendulums only: the inputs, in model order, from image,
    image_side, imu, encoder) override it; ``memory_budget_mb``: the most the generated
    arrays may take (the generator refuses a larger ``num_sequences x steps`` before it
    allocates).
    """

    generator: Literal["pendulum", "quad_link", "pneumatic"]
    num_sequences: int = field(metadata=limits(ge=1, le=MAX_SEQUENCES))
    steps: int = field(metadata=limits(ge=1, le=MAX_STEPS))
    seed: int = field(default=0, metadata=limits(ge=0))
    config: str | None = None
    noise: bool | None = None
    drop_prob: float | None = field(default=None, metadata=limits(ge=0.0, lt=1.0))
    physics: dict | None = None
    render: dict | None = None
    sensors: tuple[str, ...] | None = None
    memory_budget_mb: int | None = field(default=None, metadata=limits(ge=1))

    def __post_init__(self) -> None:
        if self.generator not in PENDULUM_GENERATORS:
            for key in ("noise", "physics", "render", "sensors"):
                if getattr(self, key) is not None:
                    raise ConfigError(f"{key}: unknown key for generator {self.generator} "
                                      "(only the pendulums take it)")
            return
        from rkn_ros.sim.pendulum import PendulumParams
        from rkn_ros.sim.render import RenderParams

        # the values are checked with the config file they override, when generating
        for key, params in (("physics", PendulumParams), ("render", RenderParams)):
            known = [f.name for f in dataclasses.fields(params)]
            unknown = sorted(set(getattr(self, key) or {}) - set(known))
            if unknown:
                raise ConfigError(f"{key}.{unknown[0]}: unknown key (allowed: "
                                  f"{', '.join(known)})")

    def options(self) -> dict[str, PlainValue]:
        """The keys the recipe set (None means the generator's default)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where one data set comes from: exactly one of ``generate``, ``path``.

    ``generate``: generator name and options, generated on the fly deterministically (the
    options include the seed). ``path``: a generated data-set folder or a PAM-format ``.npz``.
    ``pam``: options for the PAM loader when ``path`` is an ``.npz`` (window, split, ...).
    """

    generate: GenerateSpec | None = None
    path: str | None = None
    pam: dict | None = None

    def check(self, where: str) -> None:
        if (self.generate is None) == (self.path is None):
            raise ConfigError(f"{where}: give exactly one of 'generate' or 'path'")
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
    split_seed: int = _at_least(0, 0)

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

    epochs: int = _at_least(1, 10)
    batch_size: int = _at_least(1, 50)
    lr: float = field(default=1e-3, metadata=limits(gt=0.0))
    grad_clip: float = field(default=5.0, metadata=limits(gt=0.0))
    weight_decay: float = _at_least(0.0, 0.0)
    # epochs without a better validation NLL; 0 = off
    early_stopping_patience: int = _at_least(0, 5)
    # stop after this many optimiser steps (for tests, resume)
    max_steps: int | None = _at_least(1, None)
    max_time_s: float | None = field(default=None, metadata=limits(gt=0.0))  # whole run
    device: Literal["cpu", "cuda", "auto"] = "auto"
    # torch CPU threads: at most this machine's cores (more only oversubscribes, and absurd
    # counts crash torch's thread pool)
    num_threads: int = _at_least(1, 1, le=CPU_CORES)
    # share of observations hidden during training (first kept)
    observation_drop: float = field(default=0.0, metadata=limits(ge=0.0, lt=1.0))
    keep_first: int = _at_least(0, 5)  # first steps never dropped
    # also hide one run of consecutive steps per sequence, 1 to drop_gap steps long (0 = off):
    # random drops alone almost never hide 20 steps in a row, so a model never learns how far
    # its uncertainty must grow in a sensor outage of that length
    drop_gap: int = _at_least(0, 0)
    loss: Literal["gaussian", "bernoulli"] = "gaussian"
    normalize_targets: bool = True
    log_every: int = _at_least(1, 10)  # optimiser steps between progress-bar updates
    # how a step runs (rkn_ros.train.step): eager, or cuda_graph (CUDA only); precision fp32,
    # tf32 (CUDA only) or bf16 (autocast)
    step: Literal["eager", "cuda_graph"] = "eager"
    precision: Literal["fp32", "tf32", "bf16"] = "fp32"

    def check(self, where: str) -> None:
        """Check every field again (after ``dataclasses.replace``); ConfigError naming it."""
        from_mapping(TrainingConfig, to_plain(self), where)


@dataclasses.dataclass(frozen=True)
class RecipeConfig:
    """One training recipe: name, seed, data, model, training."""

    name: str
    data: DataConfig
    model: dict = dataclasses.field(default_factory=dict)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)
    seed: int = _at_least(0, 0)
    output_kind: Literal["auto", "sincos", "direct"] = "auto"

    def check(self) -> None:
        """Check every field (again, after ``dataclasses.replace``) and how they combine."""
        from_mapping(RecipeConfig, self.to_dict(), "")
        if not self.name or "/" in self.name:
            raise ConfigError(f"name: expected a non-empty name without '/', got {self.name!r}")
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
            spec = getattr(self.data, part)
            if source and spec.generate is not None:
                source["generate"] = spec.generate.options()  # the keys the recipe set
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


def recipe_from_dict(data: Mapping[str, Any], base_dir: Path | None = None) -> RecipeConfig:
    """Build and check a recipe; relative data paths are resolved against ``base_dir``."""
    recipe = from_mapping(RecipeConfig, data, "")
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
    data = load_yaml(path)
    try:
        return recipe_from_dict(data if data is not None else {}, base_dir=path.resolve().parent)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
