"""ament_python package rkn_ros; also installs with plain pip (see README)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "rkn_ros"

# Through rkn_ros.nodes.entry: a Ctrl-C while a node starts ends it quietly.
NODES = {
    "rkn_estimator": "rkn_ros.nodes.entry:rkn_estimator",
    "rkn_lifecycle_estimator": "rkn_ros.nodes.entry:rkn_lifecycle_estimator",
    "pendulum_sim": "rkn_ros.nodes.entry:pendulum_sim",
    "pneumatic_sim": "rkn_ros.nodes.entry:pneumatic_sim",
    "pam_replay": "rkn_ros.nodes.entry:pam_replay",
    "rkn_monitor": "rkn_ros.nodes.entry:rkn_monitor",
}

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
        (f"share/{PACKAGE}/config/sim", glob("config/sim/*.yaml")),
        (f"share/{PACKAGE}/rviz", glob("rviz/*.rviz")),
        *[
            (f"share/{PACKAGE}/{folder}", glob(f"{folder}/*.*"))
            for folder in sorted(set(p.rsplit("/", 1)[0] for p in glob("models/*/*.*")))
        ],
    ],
    # The ROS 2 Python packages (rclpy, messages) are NOT listed here: a ROS 2 distribution
    # provides them, and pip-only users get them from requirements.txt.
    install_requires=[
        "numpy>=1.24",
        "pyyaml>=6",
        "torch>=2.1",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "rosbags>=0.10",
        "rosbags-image[opencv-headless]>=0.10",
        "onnx>=1.15",
        "onnxruntime>=1.17",
    ],
    # pytest-xdist: the README's `pytest -n auto`; the suite also runs without it, one by one
    extras_require={
        "test": ["pytest>=8", "pytest-timeout>=2", "pytest-xdist>=3", "hypothesis>=6", "ruff>=0.6"]
    },
    zip_safe=True,
    maintainer="rkn_ros maintainers",
    maintainer_email="rkn-ros@example.com",
    description="Recurrent Kalman Network state estimation for ROS 2",
    license="MIT",
    entry_points={
        "console_scripts": [
            "rkn-ros = rkn_ros.cli:main",
            *[f"{name} = {target}" for name, target in NODES.items()],
        ],
    },
)
