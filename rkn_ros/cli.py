"""The `rkn-ros` command: one entry point, one subcommand per job.

Each subcommand lives in the layer that owns it and exposes two functions:
``add_arguments(parser)`` and ``run(args) -> int``. Only the chosen subcommand's module is
imported, so ``rkn-ros --help`` stays fast and ``rkn-ros generate`` never imports rclpy.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "generate": (
        "rkn_ros.data.generate_cli",
        "write a simulated data set (pendulum, quad_link, pneumatic)",
    ),
    "bag": (
        "rkn_ros.data.bag_cli",
        "rosbag2 <-> data set: write a simulated episode as a bag, turn a recorded bag into data",
    ),
    "train": ("rkn_ros.train.train_cli", "train a model from a recipe in config/train/*.yaml"),
    "evaluate": ("rkn_ros.train.evaluate_cli", "evaluate a checkpoint on a data set or PAM .npz"),
    "dynamics": (
        "rkn_ros.train.dynamics_cli",
        "read the dynamics an RKN learned: modes of its locally linear transition",
    ),
    "demo": ("rkn_ros.nodes.demo", "run a simulator, the estimator and the monitor over DDS"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="rkn-ros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    chosen = next((arg for arg in argv if not arg.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
