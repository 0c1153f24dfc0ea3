"""The one config loader: types, nesting, bounds, unknown keys, and YAML that cannot expand."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Literal

import pytest

from rkn_ros.core.typed_config import (
    MAX_YAML_BYTES,
    ConfigError,
    from_mapping,
    limits,
    load_config,
    parse_yaml,
    to_plain,
)


@dataclasses.dataclass(frozen=True)
class Inner:
    width: int = field(default=4, metadata=limits(ge=1, le=64))
    scale: float = field(default=1.0, metadata=limits(gt=0.0))


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    kind: Literal["a", "b"] = "a"
    sizes: tuple[int, ...] = field(default=(), metadata=limits(ge=0, max_items=3))
    pair: tuple[int, str] = (1, "x")
    inner: Inner = field(default_factory=Inner)
    optional: Inner | None = None
    table: dict[str, Inner] = field(default_factory=dict)
    flag: bool = False


def test_a_mapping_becomes_typed_records():
    got = from_mapping(Outer, {"name": "n", "kind": "b", "sizes": [1, 2], "pair": [3, "y"],
                               "inner": {"width": 8, "scale": 2}, "optional": {},
                               "table": {"t": {"width": 2}}, "flag": True})
    assert got == Outer(name="n", kind="b", sizes=(1, 2), pair=(3, "y"), inner=Inner(8, 2.0),
                        optional=Inner(), table={"t": Inner(width=2)}, flag=True)
    assert isinstance(got.inner.scale, float)
    assert from_mapping(Outer, to_plain(got)) == got
    assert from_mapping(Outer, {"name": "n", "inner": Inner(3)}).inner == Inner(3)


@pytest.mark.parametrize(("data", "message"), [
    ({}, "name: missing required key"),
    ({"name": "n", "colour": 1}, "colour: unknown key (allowed: name, kind"),
    ({"name": 5}, "name: expected a string, got 5"),
    ({"name": None}, "name: must not be null"),
    ({"name": "n", "kind": "c"}, "kind: expected one of ['a', 'b'], got 'c'"),
    ({"name": "n", "sizes": [1, -1]}, "sizes[1]: expected an integer >= 0, got -1"),
    ({"name": "n", "sizes": [1, 2, 3, 4]}, "sizes: expected at most 3 items, got 4"),
    ({"name": "n", "sizes": 3}, "sizes: expected a list, got 3"),
    ({"name": "n", "pair": [1]}, "pair: expected 2 values, got 1"),
    ({"name": "n", "inner": {"width": 0}}, "inner.width: expected an integer >= 1 and <= 64"),
    ({"name": "n", "inner": {"width": True}}, "inner.width: expected an integer, got True"),
    ({"name": "n", "inner": {"scale": float("nan")}}, "inner.scale: expected a finite number"),
    ({"name": "n", "inner": {"scale": "big"}}, "inner.scale: expected a number, got 'big'"),
    ({"name": "n", "table": {"t": {"wide": 1}}}, "table.t.wide: unknown key"),
    ({"name": "n", "flag": "false"}, "flag: expected true or false, got 'false'"),
    ([1, 2], "Outer: expected a mapping, got [1, 2]"),
])
def test_errors_name_the_key_path(data, message):
    with pytest.raises(ConfigError) as info:
        from_mapping(Outer, data)
    assert str(info.value).startswith(message) and "\n" not in str(info.value)


def test_post_init_errors_become_config_errors():
    @dataclasses.dataclass(frozen=True)
    class Checked:
        low: int = 0
        high: int = 1

        def __post_init__(self):
            if self.low > self.high:
                raise ValueError("low above high")

    with pytest.raises(ConfigError, match=r"^section: low above high$"):
        from_mapping(Checked, {"low": 2}, "section")


def test_yaml_anchors_aliases_and_size_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="line 2: YAML anchors and aliases are not allowed"):
        parse_yaml("a: 1\nb: &x [1]\nc: *x\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_yaml("a: [1\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        parse_yaml("[" * 5000 + "]" * 5000)
    path = tmp_path / "big.yaml"
    path.write_text("a: 1\n" + "#" * MAX_YAML_BYTES)
    with pytest.raises(ConfigError, match=f"more than the {MAX_YAML_BYTES} a config may have"):
        load_config(Outer, path)
    path.write_text("name: n\ninner: {width: 99}\n")
    with pytest.raises(ConfigError, match=f"^{path}: inner.width: expected an integer"):
        load_config(Outer, path)
