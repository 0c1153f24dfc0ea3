"""The package itself: metadata a ROS 2 build needs, the README's commands, lint."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

KEYS = yaml.safe_load((REPO / "test" / "data" / "rosdep_keys.yaml").read_text())
DISTRIBUTIONS = ("humble", "jazzy", "kilted")
# Python imports -> the rosdep key that provides them (a distribution's package)
PYTHON_KEYS = {
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "matplotlib": "python3-matplotlib",
    "tqdm": "python3-tqdm",
    "cv2": "python3-opencv",
}
TEST_PYTHON_KEYS = {"pytest": "python3-pytest", "hypothesis": "python3-hypothesis"}
# Python imports installed with pip (no usable rosdep key: package.xml says why), by their
# names in setup.py's install_requires
PIP_ONLY = {"torch": "torch", "safetensors": "safetensors", "rosbags": "rosbags",
            "onnx": "onnx", "onnxruntime": "onnxruntime"}
# Test plugins the suite uses where installed and runs without (test/conftest.py), by their
# names in setup.py's test extra: pytest-xdist spreads the modules over the cores (`-n auto`)
OPTIONAL_TEST_PLUGINS = {"xdist": "pytest-xdist"}


def _dependencies(*tags: str) -> set[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return {element.text.strip() for tag in tags for element in root.iter(tag)}


def _imported(*folders: str) -> set[str]:
    """Top-level names of every absolute import in the Python files under ``folders``."""
    names = set()
    for folder in folders:
        for path in (REPO / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names.add(node.module.split(".")[0])
    return names


def _test_extra() -> set[str]:
    """The distribution names of setup.py's extras_require["test"]."""
    tree = ast.parse((REPO / "setup.py").read_text())
    (extras,) = [
        keyword.value for node in ast.walk(tree) if isinstance(node, ast.Call)
        for keyword in node.keywords if keyword.arg == "extras_require"
    ]
    return {re.split(r"[\[<>=]", r)[0] for r in ast.literal_eval(extras)["test"]}


def _install_requires() -> set[str]:
    """The distribution names setup.py's setup(install_requires=...) lists."""
    tree = ast.parse((REPO / "setup.py").read_text())
    (requirements,) = [
        keyword.value for node in ast.walk(tree) if isinstance(node, ast.Call)
        for keyword in node.keywords if keyword.arg == "install_requires"
    ]
    return {re.split(r"[\[<>=]", r)[0] for r in ast.literal_eval(requirements)}


def test_package_xml_is_format_3_ament_python() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.attrib["format"] == "3"
    assert root.findtext("name") == "rkn_ros"
    assert root.find("export/build_type").text == "ament_python"


def test_the_rosdep_key_list_is_dated_and_names_its_source() -> None:
    assert KEYS["source"] == "https://github.com/ros/rosdistro"
    assert re.fullmatch(r"[0-9a-f]{40}", KEYS["commit"])
    assert KEYS["taken"] == "2026-12-07"
    assert set(KEYS["ros_packages"]) == set(DISTRIBUTIONS) == set(KEYS["ubuntu"])


def test_every_package_xml_key_resolves_on_humble_jazzy_and_kilted() -> None:
    keys = _dependencies(
        "depend", "exec_depend", "build_depend", "buildtool_depend", "test_depend"
    )
    assert keys
    for distribution in DISTRIBUTIONS:
        ubuntu = KEYS["ubuntu"][distribution]
        for key in sorted(keys):
            if key in KEYS["ros_packages"][distribution]:
                continue
            rule = KEYS["system_keys"].get(key)
            assert rule is not None, f"{key}: no rosdep rule or {distribution} package"
            assert rule[ubuntu], f"{key}: no rule for Ubuntu {ubuntu} ({distribution})"
    # a pip rule runs pip on the system Python, which Ubuntu 24.04 refuses: runtime keys
    # must be distribution packages (the pip libraries go into the workspace's venv)
    for key in _dependencies("depend", "exec_depend"):
        rule = KEYS["system_keys"].get(key)
        assert rule is None or all(rule[u].startswith("apt ") for u in set(KEYS["ubuntu"].values()))


def test_every_imported_ros_package_and_library_is_declared() -> None:
    """An AST walk of rkn_ros/ and launch/: each import is the standard library, rkn_ros, a
    library with its rosdep key declared, a pip-only library in install_requires, or a ROS
    package declared in package.xml (and released on every distribution)."""
    runtime = _dependencies("depend", "exec_depend")
    install_requires = _install_requires()
    ros_imports = set()
    for name in _imported("rkn_ros", "launch") - set(sys.stdlib_module_names) - {"rkn_ros"}:
        if name in PYTHON_KEYS:
            assert PYTHON_KEYS[name] in runtime, f"import {name}: declare {PYTHON_KEYS[name]}"
        elif name in PIP_ONLY:
            assert PIP_ONLY[name] in install_requires, f"import {name}: add to install_requires"
        else:
            ros_imports.add(name)
    undeclared = ros_imports - runtime
    assert not undeclared, f"package.xml lacks exec_depend for {sorted(undeclared)}"
    for distribution in DISTRIBUTIONS:
        unknown = ros_imports - set(KEYS["ros_packages"][distribution])
        assert not unknown, f"not released on {distribution}: {sorted(unknown)}"
    # the ROS packages the code reaches without importing them
    assert {"ros2launch", "rclpy", "launch_ros"} <= runtime


def test_every_test_import_is_declared_as_a_test_dependency() -> None:
    tests = _dependencies("test_depend")
    local = {p.stem for folder in ("test", "benchmarks") for p in (REPO / folder).glob("*.py")}
    imported = _imported("test") - set(sys.stdlib_module_names) - local - {"rkn_ros"}
    for name in imported & set(TEST_PYTHON_KEYS):
        assert TEST_PYTHON_KEYS[name] in tests, name
    runtime = _dependencies("depend", "exec_depend")
    rest = (imported - set(TEST_PYTHON_KEYS) - set(PYTHON_KEYS) - set(PIP_ONLY)
            - set(OPTIONAL_TEST_PLUGINS))
    assert rest <= runtime, f"test imports undeclared {sorted(rest - runtime)}"
    assert set(OPTIONAL_TEST_PLUGINS.values()) <= _test_extra(), _test_extra()
    # what the test run uses without importing it
    assert {"python3-pytest-timeout", "python3-ruff-pip"} <= tests


def test_pytest_runs_without_the_timeout_plugin_and_applies_it_when_present(request) -> None:
    """pyproject.toml passes no plugin option, so `colcon test` on a distribution without
    pytest-timeout still collects; with the plugin (a declared test dependency), each test
    gets the timeout from test/conftest.py."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:timeout", "-p", "no:cacheprovider",
         "--collect-only", "-q", "test/test_package.py"],
        cwd=REPO, capture_output=True, text=True, check=False, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert request.config.pluginmanager.hasplugin("timeout")
    if request.config.getoption("timeout") is None:
        marker = request.node.get_closest_marker("timeout")
        assert marker is not None and marker.args == (600,)
        assert marker.kwargs == {"func_only": True}


def test_setup_installs_resource_marker_launch_config_and_console_scripts() -> None:
    source = (REPO / "setup.py").read_text()
    assert "share/ament_index/resource_index/packages" in source
    assert (REPO / "resource" / "rkn_ros").is_file()
    for folder in ("launch", "config", "models", "rviz"):
        assert f'"{folder}' in source or f"{folder}/" in source, folder
    tree = ast.parse(source)
    nodes = next(
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODES"
    )
    for key, value in zip(nodes.keys, nodes.values, strict=True):
        module, function = value.value.split(":")
        assert (REPO / (module.replace(".", "/") + ".py")).is_file(), f"{key}: {module} missing"
        assert f"def {function}(" in (REPO / (module.replace(".", "/") + ".py")).read_text()


def test_pip_only_ros_wheels_stay_out_of_install_requires() -> None:
    """A ROS 2 distribution user must not get a second rclpy from pip."""
    source = (REPO / "setup.py").read_text()
    install_requires = source.split("install_requires=")[1].split("]")[0]
    assert "ros-" not in install_requires and "rclpy" not in install_requires
    requirements = (REPO / "requirements.txt").read_text()
    assert "ros-rclpy" in requirements and "ros-rmw-fastrtps-cpp" in requirements
    assert re.search(r"^torch==\d+\.\d+\.\d+$", requirements, re.MULTILINE), "pin torch"


def _readme_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)\n```", readme, re.DOTALL)


def test_ci_calls_exactly_the_readme_test_command() -> None:
    commands = _readme_commands()
    assert len(commands) >= 2, "README must open with the set-up and the test command"
    setup_command, test_command = commands[0].strip(), commands[1].strip()
    assert "requirements.txt" in setup_command and "demo pendulum" in setup_command
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert ci_lines[-1] == test_command


LINTED = ("rkn_ros", "test", "benchmarks", "launch", "setup.py")


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", *LINTED],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
