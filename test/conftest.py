"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny tensors: a second torch thread only adds synchronisation (2x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def probe_node(request):
    """The node tests' own rclpy node, one per test module (test_nodes_support.TestNode)."""
    from test_nodes_support import TestNode  # sets the node tests' ROS environment

    node = TestNode(f"rkn_probe_{request.module.__name__}")
    yield node
    node.close()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """The node tests' checkpoints by name, each written on first use."""
    from test_nodes_support import Checkpoints

    return Checkpoints(tmp_path_factory.mktemp("node_checkpoints"))


@pytest.fixture(scope="session")
def system_checkpoints(tmp_path_factory):
    """Small checkpoints of the demo systems (name -> folder), for the launch and demo
    tests."""
    from test_runtime_support import (
        make_joint_checkpoint,
        make_monotone_pendulum_checkpoint,
        make_pam_checkpoint,
        make_pendulum_checkpoint,
    )

    root = tmp_path_factory.mktemp("system_checkpoints")
    return {
        "pendulum": make_monotone_pendulum_checkpoint(root / "pendulum"),
        "quad_link": make_pendulum_checkpoint(root / "quad_link", links=4, size=48),
        "pneumatic": make_joint_checkpoint(root / "pneumatic"),
        "pam": make_pam_checkpoint(root / "pam"),
        # the shipped fused model: the small test checkpoints have one sensor each
        "fusion": Path(__file__).resolve().parents[1] / "models" / "fusion",
    }


# A test still running after this long is hung: pytest-timeout (a test dependency) ends it
# with a traceback. Applied here, not in addopts, so that pytest runs without the plugin too
# (a ROS distribution's `colcon test` where it is not installed).
TEST_TIMEOUT_S = 600


# The modules that take longest, slowest first. Under pytest-xdist (the README's `-n auto`)
# the workers take them before the rest, so that they end together rather than one worker
# finishing the demos alone.
SLOWEST_MODULES = (
    "test_demo.py",
    "test_nodes_processes.py",
    "test_file_faults.py",
    "test_dynamics.py",
    "test_nodes_managed.py",
    "test_models_shipped.py",
    "test_train_distributed.py",
)


def module_rank(item: pytest.Item) -> int:
    name = item.path.name
    return SLOWEST_MODULES.index(name) if name in SLOWEST_MODULES else len(SLOWEST_MODULES)


def pytest_collection_modifyitems(config, items):
    missing = [name for name in SLOWEST_MODULES if not (Path(__file__).parent / name).is_file()]
    if missing:
        raise pytest.UsageError(f"conftest.SLOWEST_MODULES names modules that do not exist: "
                                f"{missing}")
    items.sort(key=module_rank)  # stable: the collection order within each rank
    if not config.pluginmanager.hasplugin("timeout") or config.getoption("timeout") is not None:
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            # func_only: a slow module-scoped fixture (a checkpoint build) is not the test's
            item.add_marker(pytest.mark.timeout(TEST_TIMEOUT_S, func_only=True))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Whole modules per worker (their tests share module-scoped nodes and checkpoints), in the
    order above; an explicit `--dist` other than xdist's default `load` is kept."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False  # xdist would reorder by number of tests
    return LoadFileScheduling(config, log)


@pytest.fixture(scope="session")
def pam_shared(tmp_path_factory):
    """RKN_ROS_SHARED for processes that look the PAM recordings up by themselves (the demo,
    pam_replay in the launch tests): the full recordings where they exist, else the fixture."""
    from pam_recordings import shared_folder_with

    return str(shared_folder_with(tmp_path_factory.mktemp("pam_shared")))
