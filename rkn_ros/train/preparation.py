"""What a recipe and its training data decide before training: the model config, the
checkpoint's metadata, and warnings about recipes that would train something unintended."""

from __future__ import annotations

from rkn_ros import __version__
from rkn_ros.core.checkpoint import CheckpointMetadata, metadata_from_dict
from rkn_ros.core.config import ModelConfig, SensorSpec
from rkn_ros.data.dataset import SequenceDataset
from rkn_ros.train.config import RecipeConfig, _listless
from rkn_ros.train.data import is_sincos


def recipe_warnings(recipe: RecipeConfig, train: SequenceDataset) -> list[str]:
    """What in a recipe, given its training data, trains a model other than the user means."""
    warnings = []
    cfg = recipe.training
    targets = train.metadata.get("targets", {})
    copies_input = targets.get("kind") == "joints" and "joints" in train.metadata["inputs"]
    if copies_input and cfg.observation_drop == 0.0 and cfg.drop_gap == 0:
        warnings.append(
            "the targets are the joint readings the model also takes as input (a bag imported "
            "without a truth topic); with training.observation_drop 0 it learns to copy them "
            "and never to estimate them without them. Set observation_drop (e.g. 0.5, "
            "keep_first 5) and drop_gap (e.g. 40)"
        )
    after_kept = train.sequence_length - cfg.keep_first
    if cfg.drop_gap and after_kept <= 0:
        warnings.append(
            f"training.keep_first {cfg.keep_first} keeps every step of the "
            f"{train.sequence_length}-step training sequences: drop_gap hides none. Lower "
            "keep_first or train on longer windows"
        )
    elif cfg.drop_gap > after_kept:
        warnings.append(
            f"training.drop_gap {cfg.drop_gap} is longer than the {after_kept} steps "
            f"after keep_first {cfg.keep_first} in the {train.sequence_length}-step training "
            "sequences: outages are cut at the sequence's end, so none is as long as drop_gap. "
            "Lower drop_gap or train on longer windows"
        )
    if cfg.batch_size > train.num_sequences:
        warnings.append(
            f"training.batch_size {cfg.batch_size} is more than the {train.num_sequences} "
            "training sequences: one optimiser step per epoch. Lower batch_size, or cut the "
            "recordings into more sequences (rkn-ros bag import --window)"
        )
    return warnings


def model_config_for(recipe: RecipeConfig, dataset: SequenceDataset) -> ModelConfig:
    """The recipe's model section completed with the data set's sensors, targets, actions."""
    meta = dataset.metadata
    sensors = []
    for name, spec in meta["inputs"].items():
        array = dataset.arrays[spec["array"]]
        shape = tuple(int(v) for v in array.shape[2:])
        sensors.append(SensorSpec(name=name, kind=spec["kind"], shape=shape))
    output_dim = int(dataset.arrays[meta["targets"]["array"]].shape[-1])
    action_dim = 0
    if meta.get("actions"):
        # ac-RKN shifts its predicted mean; LSTM/GRU get the action as an extra input.
        action_dim = int(dataset.arrays[meta["actions"]["array"]].shape[-1])
    return ModelConfig(
        sensors=tuple(sensors), output_dim=output_dim, action_dim=action_dim,
        **_listless(recipe.model),
    )


def outputs_for(dataset: SequenceDataset, kind: str = "auto") -> dict:
    """The checkpoint's ``outputs`` entry: names, units and how targets map to joint states."""
    targets = dataset.metadata["targets"]
    names = [str(n) for n in targets.get("names", [])]
    units = [str(u) for u in targets.get("units", ["1"] * len(names))]
    sincos = is_sincos(names) if kind == "auto" else kind == "sincos"
    if sincos:
        angles = [names[i][4:] for i in range(0, len(names), 2)]
        # Name the angles as the truth (and the simulator's joint states) do, when known.
        truth_names = (dataset.metadata.get("truth") or {}).get("names")
        if isinstance(truth_names, list) and len(truth_names) == len(angles):
            angles = [str(n) for n in truth_names]
        return {"names": angles, "units": ["rad"] * len(angles), "kind": "sincos"}
    truth_names = (dataset.metadata.get("truth") or {}).get("names")
    n = len(truth_names) if isinstance(truth_names, list) else 0
    if n and units == ["rad"] * n + ["rad/s"] * n:
        # Angle and velocity of the truth's joints: name them as the joint states do.
        names = [str(j) for j in truth_names] + [f"{j}_velocity" for j in truth_names]
    elif all(name.endswith("_next") for name in names):
        # Forward prediction of the next value of each joint: the joint's own name.
        names = [name[: -len("_next")] for name in names]
    return {"names": names, "units": units, "kind": "direct"}


def _input_entries(dataset: SequenceDataset) -> dict:
    entries = {}
    for name, spec in dataset.metadata["inputs"].items():
        entry = {k: v for k, v in spec.items() if k not in ("array", "valid")}
        entry["shape"] = [int(v) for v in dataset.arrays[spec["array"]].shape[2:]]
        entries[name] = entry
    return entries


def build_metadata(
    recipe: RecipeConfig, config: ModelConfig, train: SequenceDataset, normalization: dict,
    metrics: dict | None = None, training: dict | None = None,
) -> CheckpointMetadata:
    """Checkpoint metadata for a model trained on ``train``."""
    meta = train.metadata
    actions = meta.get("actions")
    return metadata_from_dict(dict(
        name=recipe.name,
        model=config.to_dict(),
        dt=float(meta["dt"]),
        inputs=_input_entries(train),
        targets={k: v for k, v in meta["targets"].items() if k not in ("array", "valid")},
        outputs=outputs_for(train, recipe.output_kind),
        actions=None if not actions else {k: v for k, v in actions.items() if k != "array"},
        normalization=normalization,
        data_hash=train.content_hash(),
        metrics=metrics or {},
        training={
            "recipe": recipe.portable_dict(),
            "data_generator": meta.get("generator"),
            "data_parameters": meta.get("parameters", {}),
            "rkn_ros_version": __version__,
            **(training or {}),
        },
    ))


