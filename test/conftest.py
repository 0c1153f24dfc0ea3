"""Fixtures shared by the test modules."""

from __future__ import annotations

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
