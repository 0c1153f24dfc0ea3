"""``rkn-ros bag``: data set <-> rosbag2.

``rkn-ros bag export DATASET --sequence 0 --out BAG [--storage mcap|sqlite3]`` writes one
sequence of a data set folder (e.g. from ``rkn-ros generate``) as a rosbag2 on the simulator
topics. ``rkn-ros bag import BAG [BAG ...] --sensor NAME:KIND:TOPIC[:FIELDS] ... --dt 0.05
--out DIR`` turns recorded bags into a data set folder, one array and mask per sensor
(``--image-topic`` and ``--joint-topic``/``--joints`` are shorthands for the sensors ``image``
and ``joints``; see docs/data.md). Bad input is one line on stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from rkn_ros.data.bag_import import read_bag
from rkn_ros.data.bag_spec import BagImport, JointField
from rkn_ros.data.dataset import DATA_FILE, SequenceDataset
from rkn_ros.data.rosbag_io import STORAGES, write_bag
from rkn_ros.data.sensor_kinds import SENSOR_KINDS, SensorInput


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip()) if text else ()


SENSOR_KEYS = ("name", "kind", "topic", "fields", "units")


def _sensor_file(path: Path) -> list[SensorInput]:
    """A YAML list of sensors: ``[{name, kind, topic, fields: [...], units: [...]}, ...]``."""
    try:
        entries: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"--sensors-file {path}: cannot read ({err})") from err
    if not isinstance(entries, list):
        raise ValueError(f"--sensors-file {path}: expected a list of sensors, received "
                         f"{type(entries).__name__}")
    sensors = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) - set(SENSOR_KEYS):
            raise ValueError(f"--sensors-file {path} entry {i}: expected a mapping with keys "
                             f"from {list(SENSOR_KEYS)}, received {entry!r}")
        lists = {key: entry.get(key) or [] for key in ("fields", "units")}
        for key, value in lists.items():
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"--sensors-file {path} entry {i}: '{key}' expected a list of "
                                 f"strings, received {value!r}")
        try:
            sensors.append(SensorInput(name=entry.get("name"), kind=entry.get("kind"),
                                       topic=entry.get("topic"), fields=tuple(lists["fields"]),
                                       units=tuple(lists["units"])))
        except ValueError as err:
            raise ValueError(f"--sensors-file {path} entry {i}: {err}") from err
    return sensors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``rkn-ros bag export`` and ``rkn-ros bag import``."""
    actions = parser.add_subparsers(dest="bag_command", required=True, metavar="ACTION")
    export = actions.add_parser("export", help="write one sequence of a data set as a rosbag2")
    export.add_argument("dataset", type=Path, help="data set folder (data.npz + metadata.yaml)")
    export.add_argument("--sequence", type=int, default=0, help="sequence index (default 0)")
    export.add_argument("--out", type=Path, required=True, help="bag folder to create")
    export.add_argument("--storage", choices=sorted(STORAGES), default="mcap",
                        help="rosbag2 storage plugin (default mcap)")
    export.add_argument(
        "--namespace",
        default=None,
        help="topic namespace (default from the generator: /pendulum_sim, /pneumatic_sim)",
    )

    imp = actions.add_parser(
        "import",
        help="turn rosbag2 recordings into a data set",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="example (a bag exported from `rkn-ros generate pneumatic`):\n"
        "  rkn-ros bag import bags/pneumatic_0 --dt 0.01 --out data/from_bag \\\n"
        "    --joint-topic /pneumatic_sim/joint_states \\\n"
        "    --joints pam_joint,pam_flexor:effort,pam_extensor:effort \\\n"
        "    --joint-units rad,bar,bar \\\n"
        "    --command-topic /pneumatic_sim/command \\\n"
        "    --command-names p_set_flexor,p_set_extensor --command-units bar,bar \\\n"
        "    --truth-topic /pneumatic_sim/joint_states_truth --truth-joints pam_joint\n"
        "steps are aligned by header stamp on a grid of --dt; see docs/data.md",
    )
    imp.add_argument("bags", type=Path, nargs="+", help="bag folder(s), one recording each")
    imp.add_argument(
        "--dt", type=float, required=True, help="model step in s (pendulum 0.05, pneumatic 0.01)"
    )
    imp.add_argument("--out", type=Path, required=True, help="data set folder to write")
    imp.add_argument("--overwrite", action="store_true", help="replace a data set in --out")
    imp.add_argument(
        "--sensor", action="append", default=[], metavar="NAME:KIND:TOPIC[:FIELDS]",
        help=f"an input, repeatable, in model order; KIND one of {', '.join(SENSOR_KINDS)}; "
        "FIELDS comma separated: joint_state NAME[:velocity|:effort] (required), imu "
        "angular_velocity[.x|.y|.z], linear_acceleration[...], orientation[...] (default the "
        "first two), wrench force[...], torque[...] (default both), vector column names",
    )
    imp.add_argument("--sensors-file", type=Path, default=None,
                     help="YAML list of inputs {name, kind, topic, fields, units}, after --sensor")
    imp.add_argument("--image-topic", default=None,
                     help="shorthand for the sensor image:image:TOPIC (sensor_msgs/Image or an "
                          "image_transport compressed topic), array 'images'")
    imp.add_argument("--joint-topic", default=None,
                     help="shorthand for the sensor joints:joint_state:TOPIC:JOINTS, array "
                          "'joint_obs' (sensor_msgs/JointState)")
    imp.add_argument(
        "--joints",
        default=None,
        help="observed joints, comma separated; NAME (position) or NAME:velocity / NAME:effort",
    )
    imp.add_argument(
        "--joint-units",
        default=None,
        help="units of the --joints columns, comma separated (default: rad, rad/s, 1 by field)",
    )
    imp.add_argument("--command-topic", default=None, help="std_msgs/Float64MultiArray topic")
    imp.add_argument(
        "--command-names",
        default=None,
        help="what each command value drives, comma separated (default command_0, command_1, ...)",
    )
    imp.add_argument(
        "--command-units",
        default=None,
        help="units of the --command-names values, comma separated (default 1)",
    )
    imp.add_argument("--truth-topic", default=None, help="JointState topic with true angles")
    imp.add_argument("--truth-joints", default=None, help="joints on the truth topic")
    imp.add_argument(
        "--targets",
        choices=("auto", "joints", "truth", "truth_sincos"),
        default="auto",
        help="what to predict (auto: truth if a truth topic is given, else the joints)",
    )
    imp.add_argument(
        "--window", type=int, default=0, help="cut recordings into sequences of this many steps"
    )


def run(args: argparse.Namespace) -> int:
    """Export or import; bad input is one line on stderr and exit code 1."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        if args.bag_command == "export":
            dataset = SequenceDataset.load(args.dataset)
            counts = write_bag(
                dataset,
                args.out,
                sequence=args.sequence,
                storage=args.storage,
                namespace=args.namespace,
            )
            total = sum(counts.values())
            print(f"wrote {args.out} ({args.storage}): {total} messages on {len(counts)} topics")
            for topic, count in counts.items():
                print(f"  {topic}: {count}")
            return 0
        if (args.out / DATA_FILE).exists() and not args.overwrite:
            raise ValueError(f"--out {args.out} already holds a data set ({DATA_FILE}); pass "
                             "--overwrite to replace it")
        spec = BagImport(
            dt=args.dt,
            image_topic=args.image_topic,
            joint_topic=args.joint_topic,
            joints=tuple(JointField.parse(text) for text in _names(args.joints)),
            joint_units=_names(args.joint_units),
            command_topic=args.command_topic,
            command_names=_names(args.command_names),
            command_units=_names(args.command_units),
            truth_topic=args.truth_topic,
            truth_joints=_names(args.truth_joints),
            targets=args.targets,
            window=args.window,
            sensors=tuple(
                [SensorInput.parse(text) for text in args.sensor]
                + (_sensor_file(args.sensors_file) if args.sensors_file else [])
            ),
        )
        dataset = read_bag(args.bags, spec)
        dataset.save(args.out)
    except ValueError as err:
        print(f"rkn-ros bag: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        # reading errors are BagErrors already; what is left is writing --out
        print(f"rkn-ros bag: error: --out {args.out}: cannot write ({err})", file=sys.stderr)
        return 1
    print(
        f"wrote {args.out}: {len(dataset)} sequences of {dataset.sequence_length} steps "
        f"(dt {dataset.dt} s)"
    )
    return 0
