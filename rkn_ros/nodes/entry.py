"""Console-script entry points of the nodes: an interrupt while a node starts ends it quietly.

A node takes seconds to start (importing torch and rclpy, loading and exporting the model). A
Ctrl-C (or the SIGTERM of ``ros2 launch``) in that time used to land inside that work: a
traceback, an abort from C++, or, when a library swallowed the KeyboardInterrupt, a node that
went on running. Until the node spins (:func:`rkn_ros.nodes.params.run_node` then hands the
signals to rclpy), either signal ends the process at once, with code 0 as a stop while
spinning does.
"""

from __future__ import annotations

import importlib
import os
import signal


def _stop_while_starting(signum: int, frame: object) -> None:
    os._exit(0)  # nothing to clean up yet: no node has come up


def _run(module: str) -> int:
    signal.signal(signal.SIGINT, _stop_while_starting)
    signal.signal(signal.SIGTERM, _stop_while_starting)
    return importlib.import_module(module).main()


def rkn_estimator() -> int:
    """``rkn_estimator``."""
    return _run("rkn_ros.nodes.estimator_node")


def rkn_lifecycle_estimator() -> int:
    """``rkn_lifecycle_estimator``."""
    return _run("rkn_ros.nodes.lifecycle_estimator")


def pendulum_sim() -> int:
    """``pendulum_sim``."""
    return _run("rkn_ros.nodes.pendulum_sim_node")


def pneumatic_sim() -> int:
    """``pneumatic_sim``."""
    return _run("rkn_ros.nodes.pneumatic_sim_node")


def pam_replay() -> int:
    """``pam_replay``."""
    return _run("rkn_ros.nodes.pam_replay_node")


def rkn_monitor() -> int:
    """``rkn_monitor``."""
    return _run("rkn_ros.nodes.monitor_node")

