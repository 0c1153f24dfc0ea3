"""The layer rule, from the bottom up: ``core`` and ``sim``; ``data``; ``train`` and ``runtime``
side by side; ``nodes``. No module imports a layer above or beside its own, and no import
cycle exists. The graph comes from the source of every module of ``rkn_ros`` (imports at module
level and inside functions both count), so it covers whatever modules exist."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import rkn_ros

LAYERS = {"core": 0, "sim": 0, "data": 1, "train": 2, "runtime": 2, "nodes": 3}
TOP = max(LAYERS.values()) + 1  # rkn_ros.cli and any other module beside the packages


def _module_names() -> list[str]:
    names = ["rkn_ros"]
    names += [info.name for info in pkgutil.walk_packages(rkn_ros.__path__, "rkn_ros.")]
    return sorted(names)


MODULES = _module_names()


def _package_of(name: str) -> str:
    spec = importlib.util.find_spec(name)
    is_package = spec is not None and spec.submodule_search_locations is not None
    return name if is_package else name.rsplit(".", 1)[0]


def _type_checking_blocks(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:``: imports for annotations that never run."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    return inside


def _imports(name: str, *, annotations: bool = True) -> set[str]:
    """The rkn_ros modules ``name`` imports anywhere in its source (``annotations``: also
    those imported only for type checking)."""
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.origin, name
    with open(spec.origin, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), spec.origin)
    skip = set() if annotations else _type_checking_blocks(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = _package_of(name).split(".")
                parent = package[: len(package) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                child = f"{base}.{alias.name}"
                found.add(child if child in MODULES else base)
    # a dotted import names its packages too; the closest module is the one it uses
    resolved = set()
    for target in found:
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target.startswith("rkn_ros") and target != name:
            resolved.add(target)
    return resolved


GRAPH = {name: _imports(name) for name in MODULES}
# what runs: a type-only import of a module that imports this one is no cycle at import time
RUN_GRAPH = {name: _imports(name, annotations=False) for name in MODULES}


def _layer(name: str) -> tuple[str | None, int]:
    parts = name.split(".")
    if name == "rkn_ros":
        return None, -1  # the package root (its version) sits below everything
    if parts[1] in LAYERS:
        return parts[1], LAYERS[parts[1]]
    return None, TOP


def test_the_graph_sees_the_known_layers():
    """The walk found modules of every layer, and imports between them (so the rule below
    has something to check)."""
    groups = {_layer(name)[0] for name in MODULES}
    assert set(LAYERS) <= groups
    assert "rkn_ros.core.checkpoint" in GRAPH["rkn_ros.train.trainer"]
    assert "rkn_ros.data.dataset" in GRAPH["rkn_ros.train.data"]


@pytest.mark.parametrize("name", MODULES)
def test_every_module_imports(name):
    importlib.import_module(name)


def test_no_module_imports_a_layer_above_or_beside_its_own():
    wrong = []
    for name, targets in GRAPH.items():
        group, level = _layer(name)
        for target in sorted(targets):
            other, other_level = _layer(target)
            if other == group:
                continue
            if other_level >= level:
                wrong.append(f"{name} ({group or 'top'}) imports {target} ({other or 'top'})")
    assert not wrong, "\n".join(wrong)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (as a path), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_type_only_imports_are_told_apart():
    source = "from typing import TYPE_CHECKING\nimport a\nif TYPE_CHECKING:\n    import b\n"
    tree = ast.parse(source)
    inside = _type_checking_blocks(tree)
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import)]
    assert [id(n) in inside for n in imports] == [False, True]


def test_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle():
    # a package's __init__ re-exporting its submodules is the package's interface, not a cycle;
    # the layer rule above counts type-only imports too
    graph = {name: {t for t in targets if not name.startswith(t + ".")}
             for name, targets in RUN_GRAPH.items()}
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_runtime_and_nodes_never_load_the_trainer():
    """In a fresh interpreter, importing every runtime and nodes module loads no
    rkn_ros.train module."""
    serving = [name for name in MODULES if _layer(name)[0] in ("runtime", "nodes")]
    assert serving
    code = (
        "import importlib, sys\n"
        f"for name in {serving!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('rkn_ros.train')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]", proc.stdout


def test_files_stay_under_400_lines():
    root = Path(rkn_ros.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert {p.parent.name for p in files} >= set(LAYERS)  # the scan saw every layer
    long = [f"{p.relative_to(root)}: {n}" for p in files
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400]
    assert not long, f"rkn_ros files over 400 lines: {long}"
