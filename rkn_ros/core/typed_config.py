"""One loader for every YAML or dict config: frozen dataclasses built from plain mappings.

:func:`from_mapping` checks a mapping against a dataclass's annotations before the dataclass is
built: unknown keys, missing keys, wrong types and values outside the bounds a field declares
(:func:`limits`) raise :class:`ConfigError`, whose message starts with the key path
(``training.batch_size: expected an integer >= 1, got -3``). Supported annotations: ``bool``,
``int``, ``float`` (finite; an integer is accepted), ``str``, ``Literal[...]``, ``X | None``,
``tuple[X, ...]``, ``tuple[X, Y]``, ``dict[str, X]`` (plain ``dict``: any YAML mapping) and
nested dataclasses (given as mappings or as instances). No value is coerced silently except
int to float and lists to tuples.

:func:`load_yaml` reads a YAML file with its size bounded before parsing and anchors and
aliases refused, so a small file cannot expand into gigabytes (an alias bomb).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml

#: Largest YAML file any loader reads (recipes, simulator configs, checkpoint metadata).
MAX_YAML_BYTES = 1 << 20
#: Longest string and largest list or mapping a config may hold unless a field says otherwise.
MAX_STRING = 4096
MAX_ITEMS = 65536

PlainValue = Any  # what yaml.safe_load gives: None, bool, int, float, str, list, dict
Bounds = Mapping[str, float]


class ConfigError(ValueError):
    """A config value is invalid; the message is one line starting with the key path."""


def limits(*, ge: float | None = None, gt: float | None = None, le: float | None = None,
           lt: float | None = None, max_items: int | None = None) -> dict[str, Bounds]:
    """Field metadata with range bounds that :func:`from_mapping` checks:
    ``x: int = dataclasses.field(default=1, metadata=limits(ge=1))``.

    ``ge``/``gt``/``le``/``lt`` bound a number, or each number of a tuple; ``max_items`` bounds
    the length of a tuple, string or mapping.
    """
    bounds = {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt),
                                ("max_items", max_items)) if v is not None}
    return {"bounds": bounds}


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bound_text(bound: float) -> str:
    # whole bounds as written (10000000, not 1e+07), others in short form (1e-06, 1e+12)
    return str(int(bound)) if float(bound).is_integer() and abs(bound) < 1e9 else f"{bound:g}"


def _check_number(value: float, bounds: Bounds, where: str, kind: str) -> None:
    checks = (("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b),
              ("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b))
    parts = [f"{sign} {_bound_text(bounds[key])}" for key, sign, _ in checks if key in bounds]
    for key, _, ok in checks:
        if key in bounds and not ok(value, bounds[key]):
            raise ConfigError(f"{where}: expected {kind} {' and '.join(parts)}, got {value!r}")


def _check_length(value: Any, bounds: Bounds, where: str) -> None:
    limit = int(bounds.get("max_items", MAX_STRING if isinstance(value, str) else MAX_ITEMS))
    if len(value) > limit:
        raise ConfigError(f"{where}: expected at most {limit} items, got {len(value)}")


def convert(value: PlainValue, tp: Any, where: str, bounds: Bounds | None = None) -> Any:
    """``value`` checked against the annotation ``tp`` (and ``bounds``); ConfigError if not."""
    bounds = bounds or {}
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [o for o in typing.get_args(tp) if o is not type(None)]
        if value is None:
            if len(options) < len(typing.get_args(tp)):
                return None
            raise ConfigError(f"{where}: must not be null")
        errors = []
        for option in options:
            try:
                return convert(value, option, where, bounds)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if len(errors) == 1 else
                          f"{where}: invalid value {_describe(value)}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, bool) or value not in allowed:
            raise ConfigError(f"{where}: expected one of {list(allowed)}, got {_describe(value)}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        # an instance was checked when it was built
        return value if isinstance(value, tp) else from_mapping(tp, value, where)
    if origin is tuple or tp is tuple:
        return _convert_tuple(value, tp, where, bounds)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        return _convert_mapping(value, tp, where, bounds)
    if value is None:
        raise ConfigError(f"{where}: must not be null")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_describe(value)}")
        _check_number(value, bounds, where, "an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {_describe(value)}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        _check_number(float(value), bounds, where, "a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_describe(value)}")
        _check_length(value, bounds, where)
        return value
    raise ConfigError(f"{where}: unsupported annotation {getattr(tp, '__name__', tp)}")


def _convert_tuple(value: PlainValue, tp: Any, where: str, bounds: Bounds) -> tuple:
    if not isinstance(value, list | tuple):
        raise ConfigError(f"{where}: expected a list, got {_describe(value)}")
    _check_length(value, bounds, where)
    args = typing.get_args(tp)
    if not args or (len(args) == 2 and args[1] is Ellipsis):
        item = args[0] if args else Any
        return tuple(convert(v, item, f"{where}[{i}]", bounds) for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
    return tuple(convert(v, a, f"{where}[{i}]", bounds)
                 for i, (v, a) in enumerate(zip(value, args, strict=True)))


def _convert_mapping(value: PlainValue, tp: Any, where: str, bounds: Bounds) -> dict:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {_describe(value)}")
    _check_length(value, bounds, where)
    args = typing.get_args(tp)
    if not args:
        return dict(value)
    key_type, item_type = args
    out = {}
    for key, item in value.items():
        path = f"{where}.{key}" if where else str(key)
        out[convert(key, key_type, f"{where} key {_describe(key)}")] = convert(
            item, item_type, path, bounds)
    return out


def from_mapping(cls: type, data: PlainValue, where: str = "") -> Any:
    """Build the dataclass ``cls`` from ``data`` after checking every key (ConfigError).

    A ValueError or TypeError the dataclass's own ``__post_init__`` raises becomes a
    ConfigError prefixed with ``where``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or cls.__name__}: expected a mapping, got {_describe(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    prefix = f"{where}." if where else ""
    unknown = sorted(str(k) for k in set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (allowed: {', '.join(fields)})")
    values = {}
    for name, field in fields.items():
        if name not in data:
            if (field.default is dataclasses.MISSING
                    and field.default_factory is dataclasses.MISSING):
                raise ConfigError(f"{prefix}{name}: missing required key")
            continue
        values[name] = convert(data[name], hints[name], prefix + name,
                               field.metadata.get("bounds"))
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"{prefix}{err}" if where else str(err)) from err
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from err


def to_plain(value: Any) -> PlainValue:
    """A dataclass (or anything nested in one) as YAML-ready lists, dicts and numbers."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if hasattr(value, "tolist"):  # numpy and torch scalars
        return to_plain(value.tolist())
    return value


class _PlainLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses anchors and aliases (and so merge keys)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ConfigError(f"line {event.start_mark.line + 1}: YAML anchors and aliases "
                              "are not allowed")
        return super().compose_node(parent, index)


def parse_yaml(text: str | bytes, source: str = "YAML") -> PlainValue:
    """Parse YAML text (at most :data:`MAX_YAML_BYTES`) without anchors or aliases."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{source}: {len(text)} bytes, more than the {MAX_YAML_BYTES} a "
                          "config may have")
    try:
        return yaml.load(text, Loader=_PlainLoader)  # a SafeLoader without aliases
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from err
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"{source}: not valid YAML ({first})") from err
    except RecursionError as err:
        raise ConfigError(f"{source}: YAML nested too deeply") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{source}: not UTF-8 text") from err


def load_yaml(path: str | Path, max_bytes: int = MAX_YAML_BYTES) -> PlainValue:
    """Read and parse a YAML file; its size is checked before a byte is parsed (ConfigError)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ConfigError(f"{path}: {size} bytes, more than the {max_bytes} a config may have")
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from err
    return parse_yaml(raw, str(path))


def load_config(cls: type, path: str | Path, where: str = "") -> Any:
    """:func:`load_yaml` then :func:`from_mapping`; errors name the file and the key."""
    data = load_yaml(path)
    try:
        return from_mapping(cls, {} if data is None else data, where)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
