"""The package itself: metadata a ROS 2 build needs, the README's commands, lint."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RUNTIME_ROS_DEPENDENCIES = {
    "rclpy",
    "sensor_msgs",
    "std_msgs",
    "std_srvs",
    "trajectory_msgs",
    "visualization_msgs",
    "diagnostic_msgs",
    "python3-numpy",
    "python3-yaml",
}


def test_package_xml_is_format_3_ament_python_with_every_runtime_dependency() -> None:
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.tag == "package" and root.attrib["format"] == "3"
    assert root.findtext("name") == "rkn_ros"
    assert root.find("export/build_type").text == "ament_python"
    declared = {element.text for element in root.iter("exec_depend")}
    missing = RUNTIME_ROS_DEPENDENCIES - declared
    assert not missing, f"package.xml lacks exec_depend for {sorted(missing)}"
    assert any("pytorch" in name for name in declared), "torch must be declared"


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
