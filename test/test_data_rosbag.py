"""rosbag2 out and back in (MCAP and sqlite3), and every kind of bad bag."""

from __future__ import annotations

import dataclasses
import logging
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, get_typestore
from sensor_msgs.msg import JointState

from rkn_ros.data.bag_import import _grid, _Stream, read_bag
from rkn_ros.data.bag_spec import BagImport, JointField
from rkn_ros.data.dataset import SequenceDataset
from rkn_ros.data.generate import default_pendulum_config, generate_pendulum, generate_pneumatic
from rkn_ros.data.messages import image_to_mono8
from rkn_ros.data.rosbag_io import BagError, write_bag
from rkn_ros.nodes.conversions import joint_state_to_vector, parse_joint_entries
from rkn_ros.sim.pneumatic import PneumaticParams

TS = get_typestore(Stores.ROS2_KILTED)
STORAGES = ("mcap", "sqlite3")


@pytest.fixture(scope="module")
def pendulum() -> SequenceDataset:
    config = dataclasses.replace(default_pendulum_config("pendulum"), noise=True, drop_prob=0.3)
    return generate_pendulum("pendulum", config, num_sequences=2, steps=25, seed=3)


@pytest.fixture(scope="module")
def pneumatic() -> SequenceDataset:
    """The simulated pneumatic joint: measured angle + two pressures (some dropped), pressure
    set-points as actions, true angle and velocity."""
    return generate_pneumatic(PneumaticParams(), num_sequences=2, steps=30, seed=1, drop_prob=0.2)


def joint_labels(dataset: SequenceDataset) -> list[str]:
    """How to read the observed columns back: angles from position, the rest from effort."""
    spec = dataset.metadata["inputs"]["joints"]
    return [
        name if unit == "rad" else f"{name}:effort"
        for name, unit in zip(spec["names"], spec["units"], strict=True)
    ]


def pneumatic_import(dataset: SequenceDataset) -> BagImport:
    return BagImport(
        dt=dataset.dt,
        joint_topic="/pneumatic_sim/joint_states",
        joints=tuple(JointField.parse(label) for label in joint_labels(dataset)),
        command_topic="/pneumatic_sim/command",
        truth_topic="/pneumatic_sim/joint_states_truth",
        truth_joints=tuple(dataset.metadata["truth"]["names"]),
    )


@pytest.mark.parametrize("storage", STORAGES)
def test_pendulum_episode_round_trip(
    pendulum: SequenceDataset, tmp_path: Path, storage: str
) -> None:
    bag = tmp_path / "bag"
    counts = write_bag(pendulum, bag, sequence=1, storage=storage)
    valid = pendulum.arrays["images_valid"][1]
    assert counts == {
        "/pendulum_sim/image": int(valid.sum()),
        "/pendulum_sim/joint_states_truth": 25,
    }
    assert any(bag.glob("*.mcap" if storage == "mcap" else "*.db3"))
    back = read_bag(
        bag,
        BagImport(
            dt=0.05,
            image_topic="/pendulum_sim/image",
            truth_topic="/pendulum_sim/joint_states_truth",
            truth_joints=("joint_1",),
            targets="truth_sincos",
        ),
    )
    assert len(back) == 1 and back.sequence_length == 25
    for name in ("images", "images_valid", "joint_angles", "joint_velocities"):
        np.testing.assert_array_equal(back.arrays[name][0], pendulum.arrays[name][1], name)
    np.testing.assert_allclose(back.arrays["targets"][0], pendulum.arrays["targets"][1], atol=1e-6)
    assert back.arrays["truth_valid"].all()
    assert back.metadata["inputs"]["image"]["shape"] == [24, 24]
    assert back.metadata["dt"] == 0.05 and back.metadata["generator"] == "rosbag"
    back.save(tmp_path / "ds")  # the import is a valid data set on disk
    assert SequenceDataset.load(tmp_path / "ds").content_hash() == back.content_hash()


@pytest.mark.parametrize("storage", STORAGES)
def test_pneumatic_episode_round_trip(
    pneumatic: SequenceDataset, tmp_path: Path, storage: str, caplog
) -> None:
    data = pneumatic
    counts = write_bag(data, tmp_path / "bag", sequence=0, storage=storage)
    assert counts["/pneumatic_sim/command"] == 30
    with caplog.at_level(logging.INFO, logger="rkn_ros.data.bag_import"):
        back = read_bag(tmp_path / "bag", pneumatic_import(data))
    for name in ("joint_obs", "joint_obs_valid", "actions", "joint_angles", "joint_velocities"):
        np.testing.assert_array_equal(back.arrays[name][0], data.arrays[name][0], name)
    np.testing.assert_array_equal(back.arrays["targets"][0], data.arrays["joint_angles"][0])
    missing = int((~data.arrays["joint_obs_valid"][0]).sum())
    assert missing > 0  # the drop path is exercised
    assert back.metadata["parameters"]["counts"]["bag"]["joints_missing_steps"] == missing
    assert f"{missing} steps without a message (missing)" in caplog.text
    assert back.metadata["inputs"]["joints"]["names"] == joint_labels(data)


def test_the_node_reads_an_imported_models_joint_columns_as_they_were_imported(
    pneumatic: SequenceDataset, tmp_path: Path
) -> None:
    """Imported columns are named ``NAME:FIELD`` (the import's syntax). A checkpoint trained on
    them carries those names, and the node, left to the checkpoint's names, must read each
    column from the same JointState field (it once read them all as positions of joints named
    ``pam_flexor:effort``, so every message was refused and the node only coasted)."""
    write_bag(pneumatic, tmp_path / "bag", sequence=0, storage="sqlite3")
    spec = pneumatic_import(pneumatic)
    names = read_bag(tmp_path / "bag", spec).metadata["inputs"]["joints"]["names"]
    assert names == ["pam_joint", "pam_flexor:effort", "pam_extensor:effort"]
    entries = parse_joint_entries(names)
    assert entries == [(j.name, j.field) for j in spec.joints]
    msg = JointState(name=["pam_extensor", "pam_joint", "pam_flexor"],
                     position=[0.0, 0.25, 0.0], effort=[3.5, 0.0, 2.5])
    np.testing.assert_array_equal(joint_state_to_vector(msg, entries), [0.25, 2.5, 3.5])


def _write_raw(
    path: Path, messages: list[tuple[str, str, int, object]], storage_plugin=None
) -> Path:
    """messages: (topic, msgtype, receive time ns, message)."""
    kwargs = {} if storage_plugin is None else {"storage_plugin": storage_plugin}
    with Writer(path, version=9, **kwargs) as writer:
        connections = {}
        for topic, msgtype, stamp, msg in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            writer.write(connections[topic], stamp, TS.serialize_cdr(msg, msgtype))
    return path


def _header(ns: int):
    t = TS.types
    return t["std_msgs/msg/Header"](
        stamp=t["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9), frame_id=""
    )


def _image(
    ns: int,
    height: int = 4,
    width: int = 5,
    encoding: str = "mono8",
    fill: int = 7,
    padding: int = 0,
):
    channels = {"rgb8": 3, "bgr8": 3, "mono16": 2, "16UC1": 2, "bgra8": 4}.get(encoding, 1)
    data = np.full((height, width * channels + padding), 0xEE, dtype=np.uint8)  # 0xEE: padding
    data[:, : width * channels] = fill
    data = data.reshape(-1)
    return (
        "/cam",
        "sensor_msgs/msg/Image",
        ns,
        TS.types["sensor_msgs/msg/Image"](
            header=_header(ns),
            height=height,
            width=width,
            encoding=encoding,
            is_bigendian=0,
            step=width * channels + padding,
            data=data,
        ),
    )


def _joints(ns: int, names=("a", "b"), position=(0.1, 0.2)):
    return (
        "/js",
        "sensor_msgs/msg/JointState",
        ns,
        TS.types["sensor_msgs/msg/JointState"](
            header=_header(ns),
            name=list(names),
            position=np.asarray(position, float),
            velocity=np.zeros(0),
            effort=np.zeros(0),
        ),
    )


S = 10**9
MS = 10**6


def test_alignment_on_the_grid_counts_superseded_and_missing(tmp_path: Path, caplog) -> None:
    # dt 50 ms, cells [t_k - 25 ms, t_k + 25 ms) from t0 = 1 s: +0 and +20 ms fall in cell 0
    # (+20 ms is newer and wins), +40 and +52 ms in cell 1 (+52 wins), nothing in cell 2,
    # +150 ms in cell 3
    stamps = [S, S + 20 * MS, S + 40 * MS, S + 52 * MS, S + 150 * MS]
    msgs = [_joints(ns, position=(i, 10 * i)) for i, ns in enumerate(stamps)]
    bag = _write_raw(tmp_path / "bag", msgs)
    with caplog.at_level(logging.INFO, logger="rkn_ros.data.bag_import"):
        data = read_bag(
            bag, BagImport(dt=0.05, joint_topic="/js", joints=(JointField("b"), JointField("a")))
        )
    np.testing.assert_array_equal(data.arrays["joint_obs_valid"][0], [True, True, False, True])
    np.testing.assert_array_equal(data.arrays["joint_obs"][0], [[10, 1], [30, 3], [0, 0], [40, 4]])
    counts = data.metadata["parameters"]["counts"]["bag"]
    assert counts["joints_superseded"] == 2 and counts["joints_missing_steps"] == 1
    assert "2 superseded by a newer one in the same step, 1 steps without a message" in caplog.text
    # targets default to the observed joints
    np.testing.assert_array_equal(data.arrays["targets"], data.arrays["joint_obs"])


def test_window_cuts_long_recordings_and_several_bags(tmp_path: Path) -> None:
    bags = []
    for b, steps in enumerate((23, 17)):
        msgs = [_joints(S + k * 10 * MS, position=(k, b)) for k in range(steps)]
        bags.append(_write_raw(tmp_path / f"bag{b}", msgs))
    spec = BagImport(dt=0.01, joint_topic="/js", joints=(JointField("a"),), window=5)
    data = read_bag(bags, spec)
    assert len(data) == 4 + 3 and data.sequence_length == 5
    np.testing.assert_array_equal(data.arrays["joint_obs"][4, :, 0], [0, 1, 2, 3, 4])
    with pytest.raises(BagError, match=r"different numbers of steps \[17, 23\]"):
        read_bag(bags, dataclasses.replace(spec, window=0))


def _image_bag(tmp_path: Path, images: list) -> Path:
    joints = [_joints(m[2]) for m in images]
    return _write_raw(tmp_path / "bag", [*images, *joints])


IMAGE_IMPORT = BagImport(dt=0.05, image_topic="/cam", joint_topic="/js", joints=(JointField("a"),))


def test_image_encodings_are_converted_to_mono8(tmp_path: Path) -> None:
    bag = _image_bag(
        tmp_path,
        [
            _image(S, encoding="rgb8", fill=100),  # grey rgb stays 100
            _image(S + 50 * MS, encoding="mono8", fill=9),
            _image(S + 100 * MS, encoding="mono16", fill=7),  # 0x0707 = 1799 -> 1799 / 256
            _image(S + 150 * MS, encoding="16UC1", fill=8),  # a depth camera's
            _image(S + 200 * MS, encoding="8UC1", fill=5),
            _image(S + 250 * MS, encoding="bgra8", fill=60),  # alpha 60 is dropped
            _image(S + 300 * MS, encoding="mono8", fill=3, padding=3),  # rows padded to 8 bytes
        ],
    )
    data = read_bag(bag, IMAGE_IMPORT)
    images = data.arrays["images"][0]
    assert images.dtype == np.uint8 and images.shape == (7, 4, 5)
    assert [np.unique(image).tolist() for image in images] == [[100], [9], [7], [8], [5], [60], [3]]


@pytest.mark.parametrize(
    ("messages", "spec", "message"),
    [
        (
            [_joints(S)],
            BagImport(dt=0.05, image_topic="/camera", joint_topic="/js", joints=(JointField("a"),)),
            r"bag .*bag has no topic /camera \(sensor_msgs/msg/Image expected\); topics: \['/js'\]",
        ),
        (
            [_joints(S)],
            BagImport(dt=0.05, image_topic="/js", joint_topic="/other", joints=(JointField("a"),)),
            r"topic /js: type sensor_msgs/msg/JointState, expected sensor_msgs/msg/Image",
        ),
        (
            [_joints(S), _joints(S + 50 * MS, names=("a",), position=(1.0,))],
            BagImport(dt=0.05, joint_topic="/js", joints=(JointField("a"), JointField("b"))),
            r"topic /js message 1: joint 'b' missing; message names \['a'\] \(messages of "
            r"different publishers on one topic are not merged",
        ),
        (
            [_joints(S), _joints(S + 50 * MS)],
            BagImport(dt=0.05, joint_topic="/js", joints=(JointField("a"),), window=5),
            r"\(\[2\] steps of 0.05 s\) are shorter than one window of 5 steps",
        ),
        (
            [_joints(S)],
            BagImport(dt=0.05, joint_topic="/js", joints=(JointField.parse("a:effort"),)),
            r"topic /js message 0: joint 'a' has no effort \(0 effort values for 2 names\)",
        ),
        (
            # received in order, but the second header stamp goes back in time
            [_joints(S + 50 * MS), (*_joints(S)[:2], S + 60 * MS, *_joints(S)[3:])],
            BagImport(dt=0.05, joint_topic="/js", joints=(JointField("a"),)),
            r"topic /js: stamps not increasing at message 1",
        ),
        (
            [_image(S), _image(S + 50 * MS, height=6), _joints(S)],
            IMAGE_IMPORT,
            r"topic /cam: images of varying sizes \[\[4, 5\], \[6, 5\]\]",
        ),
        (
            [_image(S, encoding="yuv422"), _joints(S)],
            IMAGE_IMPORT,
            r"topic /cam message 0: image encoding 'yuv422' is not accepted",
        ),
    ],
)
def test_bad_bags_name_bag_topic_and_expectation(
    tmp_path: Path, messages, spec, message: str
) -> None:
    bag = _write_raw(tmp_path / "bag", messages)
    with pytest.raises(BagError, match=message):
        read_bag(bag, spec)


def test_bad_paths_and_specs(tmp_path: Path, pendulum: SequenceDataset) -> None:
    with pytest.raises(BagError, match="cannot open bag"):
        read_bag(tmp_path / "missing", IMAGE_IMPORT)
    with pytest.raises(BagError, match="already exists"):
        write_bag(pendulum, tmp_path)
    with pytest.raises(BagError, match="storage expected one of"):
        write_bag(pendulum, tmp_path / "b", storage="rosbag1")
    with pytest.raises(BagError, match=r"sequence expected in \[0, 2\)"):
        write_bag(pendulum, tmp_path / "b", sequence=2)
    with pytest.raises(BagError, match="NAME or NAME:FIELD"):
        JointField.parse("a:torque")
    with pytest.raises(BagError, match="joint topic /js given without joint names"):
        BagImport(dt=0.05, joint_topic="/js")
    with pytest.raises(BagError, match="need a truth topic or a joint topic"):
        BagImport(dt=0.05, image_topic="/cam")
    with pytest.raises(BagError, match="dt expected a positive number"):
        BagImport(dt=0.0, joint_topic="/js", joints=(JointField("a"),))


def test_cli_export_then_import(pneumatic: SequenceDataset, tmp_path: Path, capsys) -> None:
    from rkn_ros.cli import main

    pneumatic.save(tmp_path / "ds")
    assert (
        main(
            [
                "bag",
                "export",
                str(tmp_path / "ds"),
                "--sequence",
                "1",
                "--out",
                str(tmp_path / "bag"),
                "--storage",
                "sqlite3",
            ]
        )
        == 0
    )
    assert "/pneumatic_sim/command: 30" in capsys.readouterr().out
    assert (
        main(
            [
                "bag",
                "import",
                str(tmp_path / "bag"),
                "--dt",
                "0.01",
                "--joint-topic",
                "/pneumatic_sim/joint_states",
                "--joints",
                ",".join(joint_labels(pneumatic)),
                "--joint-units",
                "rad,bar,bar",
                "--command-topic",
                "/pneumatic_sim/command",
                "--command-names",
                "p_set_flexor,p_set_extensor",
                "--command-units",
                "bar,bar",
                "--window",
                "10",
                "--out",
                str(tmp_path / "back"),
            ]
        )
        == 0
    )
    back = SequenceDataset.load(tmp_path / "back")
    original = pneumatic
    assert len(back) == 3
    assert back.metadata["inputs"]["joints"]["units"] == ["rad", "bar", "bar"]
    assert back.metadata["actions"]["names"] == pneumatic.metadata["actions"]["names"]
    assert back.metadata["actions"]["units"] == ["bar", "bar"]
    np.testing.assert_array_equal(
        back.arrays["joint_obs"].reshape(30, 3), original.arrays["joint_obs"][1]
    )
    np.testing.assert_array_equal(
        back.arrays["actions"].reshape(30, 2), original.arrays["actions"][1]
    )
    # importing again into the same folder would replace that data set: refused, as generate does
    again = [
        "bag", "import", str(tmp_path / "bag"), "--dt", "0.01",
        "--joint-topic", "/pneumatic_sim/joint_states",
        "--joints", ",".join(joint_labels(pneumatic)), "--window", "10",
        "--out", str(tmp_path / "back"),
    ]  # fmt: skip
    capsys.readouterr()
    assert main(again) == 1
    assert "already holds a data set" in capsys.readouterr().err
    assert SequenceDataset.load(tmp_path / "back").metadata["inputs"]["joints"]["units"] == [
        "rad", "bar", "bar"
    ]
    assert main([*again, "--overwrite"]) == 0
    # bad input: a clear message and exit code 1, no traceback
    assert (
        main(
            [
                "bag",
                "import",
                str(tmp_path / "bag"),
                "--dt",
                "0.01",
                "--joint-topic",
                "/nope",
                "--joints",
                "pam_joint",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 1
    )
    assert "has no topic /nope" in capsys.readouterr().err
    argv = ["bag", "import", str(tmp_path / "bag"), "--dt", "0.01", "--out", str(tmp_path / "y"),
            "--joint-topic", "/pneumatic_sim/joint_states", "--joints", "pam_joint",
            "--joint-units", "rad,bar"]
    assert main(argv) == 1
    assert "joint_units has 2 entries for 1 joints" in capsys.readouterr().err
    # an output that cannot be created (below a file): one line, exit code 1, no traceback
    blocked = tmp_path / "ds" / "data.npz" / "bag"
    assert main(["bag", "export", str(tmp_path / "ds"), "--out", str(blocked)]) == 1
    err = capsys.readouterr().err
    assert f"--out {blocked}: cannot write" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    gaps=st.lists(st.integers(1, 120 * MS), min_size=1, max_size=40),
    dt_ms=st.integers(5, 100),
)
def test_grid_picks_the_newest_sample_within_half_a_step(gaps: list[int], dt_ms: int) -> None:
    stamps = list(np.cumsum([S, *gaps]))
    dt_ns = dt_ms * MS
    t0 = stamps[0]
    steps = (stamps[-1] - t0 + dt_ns // 2) // dt_ns + 1
    counts: dict[str, int] = {}
    picked, valid = _grid(_Stream("/t", stamps, stamps), t0, dt_ns, steps, counts, "x")
    for k in range(steps):
        t_k = t0 + k * dt_ns
        inside = [
            i for i, s in enumerate(stamps) if t_k - dt_ns // 2 <= s < t_k + dt_ns - dt_ns // 2
        ]
        assert picked[k] == (inside[-1] if inside else -1)
    assert counts["x_superseded"] + int(valid.sum()) == len(stamps)
    assert counts["x_missing_steps"] == steps - int(valid.sum())


def test_export_refuses_colour_images(tmp_path: Path, pendulum: SequenceDataset) -> None:
    arrays = dict(pendulum.arrays)
    arrays["images"] = np.repeat(arrays["images"][:, :, None], 3, axis=2)
    metadata = {
        **pendulum.metadata,
        "inputs": {
            "image": {
                "kind": "image",
                "array": "images",
                "valid": "images_valid",
                "shape": [3, 24, 24],
            }
        },
    }
    colour = SequenceDataset(arrays=arrays, metadata=metadata)
    colour.validate()
    with pytest.raises(BagError, match=r"only grey images \[time, H, W\].*\[25, 3, 24, 24\]"):
        write_bag(colour, tmp_path / "bag")
    assert not (tmp_path / "bag").exists()


def _command(ns: int, values: tuple[float, ...]):
    t = TS.types
    msg = t["std_msgs/msg/Float64MultiArray"](
        layout=t["std_msgs/msg/MultiArrayLayout"](dim=[], data_offset=0),
        data=np.asarray(values, float),
    )
    return ("/cmd", "std_msgs/msg/Float64MultiArray", ns, msg)


def test_nonfinite_joints_and_held_commands_are_counted_and_logged(
    tmp_path: Path, caplog
) -> None:
    # joints every 10 ms with a NaN at step 2; commands only at steps 0 and 3
    joints = [_joints(S + k * 10 * MS, position=(np.nan if k == 2 else k, 0.0)) for k in range(5)]
    commands = [_command(S, (1.0, 2.0)), _command(S + 30 * MS, (3.0, 4.0))]
    bag = _write_raw(tmp_path / "bag", sorted([*joints, *commands], key=lambda m: m[2]))
    spec = BagImport(dt=0.01, joint_topic="/js", joints=(JointField("a"),), command_topic="/cmd")
    with caplog.at_level(logging.INFO, logger="rkn_ros.data.bag_import"):
        data = read_bag(bag, spec)
    np.testing.assert_array_equal(data.arrays["joint_obs_valid"][0], [1, 1, 0, 1, 1])
    np.testing.assert_array_equal(data.arrays["joint_obs"][0, :, 0], [0, 1, 0, 3, 4])
    # zero-order hold between commands
    np.testing.assert_array_equal(
        data.arrays["actions"][0], [[1, 2], [1, 2], [1, 2], [3, 4], [3, 4]]
    )
    counts = data.metadata["parameters"]["counts"]["bag"]
    assert counts["joints_nonfinite"] == 1 and counts["commands_held"] == 3
    assert "1 steps with NaN/inf joint values marked missing" in caplog.text
    assert "3 steps without a command hold the previous one" in caplog.text
    # without names the commands still get names and units in the metadata
    actions = data.metadata["actions"]
    assert (actions["names"], actions["units"]) == (["command_0", "command_1"], ["1", "1"])


def test_command_names_and_units_reach_the_data_set_metadata(tmp_path: Path) -> None:
    """What each command value drives, given at import, is stored with the data set (training
    copies it into the checkpoint, whose node names it for a command of the wrong length); a
    count that does not match the commands is an error naming both."""
    joints = [_joints(S + k * 10 * MS, position=(k, 0.0)) for k in range(5)]
    commands = [_command(S + k * 10 * MS, (1.0, 2.0)) for k in range(5)]
    bag = _write_raw(tmp_path / "bag", sorted([*joints, *commands], key=lambda m: m[2]))
    base = {"dt": 0.01, "joint_topic": "/js", "joints": (JointField("a"),), "command_topic": "/cmd"}
    spec = BagImport(**base, command_names=("flexor", "extensor"), command_units=("bar", "bar"))
    data = read_bag(bag, spec)
    assert data.metadata["actions"]["names"] == ["flexor", "extensor"]
    assert data.metadata["actions"]["units"] == ["bar", "bar"]
    data.save(tmp_path / "ds")
    assert SequenceDataset.load(tmp_path / "ds").metadata["actions"]["units"] == ["bar", "bar"]
    with pytest.raises(BagError, match=r"commands hold 2 values, command names \['flexor'\]"):
        read_bag(bag, BagImport(**base, command_names=("flexor",)))
    with pytest.raises(BagError, match="command_units has 1 entries for 2 command names"):
        BagImport(**base, command_names=("flexor", "extensor"), command_units=("bar",))
    with pytest.raises(BagError, match="command names or units given without a command topic"):
        BagImport(dt=0.01, joint_topic="/js", joints=(JointField("a"),), command_names=("f",))


def test_another_publishers_joint_states_on_the_topic_are_skipped(tmp_path: Path, caplog) -> None:
    """An arm and a gripper driver both on /js, the gripper's stamps 200 ms behind: the
    gripper's messages are skipped and counted, the arm's aligned as if alone."""
    arm = [_joints(S + k * 10 * MS, position=(k, 0.0)) for k in range(4)]
    gripper = []
    for k in range(4):
        topic, msgtype, _, msg = _joints(S + k * 10 * MS - 200 * MS, names=("finger",))
        gripper.append((topic, msgtype, S + k * 10 * MS + 5 * MS, msg))  # received after arm k
    # the truth topic shared the same way (a simulator's truth beside another one's)
    truth = [("/truth", *m[1:]) for m in (_joints(S + k * 10 * MS, names=("a",)) for k in range(4))]
    other_truth = [("/truth", *m[1:]) for m in gripper[:2]]
    messages = sorted([*arm, *gripper, *truth, *other_truth], key=lambda m: m[2])
    bag = _write_raw(tmp_path / "bag", messages)
    spec = BagImport(dt=0.01, joint_topic="/js", joints=(JointField("a"),), truth_topic="/truth",
                     truth_joints=("a",))
    with caplog.at_level(logging.INFO, logger="rkn_ros.data.bag_import"):
        data = read_bag(bag, spec)
    np.testing.assert_array_equal(data.arrays["joint_obs"][0, :, 0], [0, 1, 2, 3])
    assert data.arrays["joint_obs_valid"][0].all() and data.arrays["truth_valid"][0].all()
    counts = data.metadata["parameters"]["counts"]["bag"]
    assert counts["joints_other_joints"] == 4 and counts["truth_other_joints"] == 2
    assert "4 messages name none of the chosen joints" in caplog.text
    # only the other publisher's messages: said so, not "no messages"
    with pytest.raises(BagError, match=r"none of its 4 messages names any of the joints \['a'\]"):
        read_bag(_write_raw(tmp_path / "gripper_only", [*gripper, *truth]), spec)


def _compressed(ns: int, encoded: bytes, fmt: str):
    return (
        "/cam/compressed",
        "sensor_msgs/msg/CompressedImage",
        ns,
        TS.types["sensor_msgs/msg/CompressedImage"](
            header=_header(ns), format=fmt, data=np.frombuffer(encoded, dtype=np.uint8)
        ),
    )


def test_compressed_recordings_import_as_their_raw_frames_would(tmp_path: Path) -> None:
    """image_transport's compressed topic (PNG here, lossless): the same mono8 frames a raw
    recording of the camera gives, colour made grey as the node does live."""
    import cv2

    grey = (np.arange(20, dtype=np.uint8).reshape(4, 5) * 12).astype(np.uint8)
    colour = np.stack([grey, grey // 2, 255 - grey], axis=2)  # BGR, as OpenCV encodes it
    def encode(ext: str, image: np.ndarray) -> bytes:
        return cv2.imencode(ext, image)[1].tobytes()

    frames = [
        _compressed(S, encode(".png", grey), "mono8; png compressed "),
        _compressed(S + 50 * MS, encode(".png", colour), "bgr8; png compressed"),
        _compressed(S + 100 * MS, encode(".jpg", colour), "bgr8; jpeg compressed"),
        _compressed(S + 150 * MS, encode(".png", colour.astype(np.uint16) * 257),
                    "bgr16; png compressed"),
    ]
    bag = _write_raw(tmp_path / "bag", [*frames, *[_joints(m[2]) for m in frames]])
    spec = dataclasses.replace(IMAGE_IMPORT, image_topic="/cam/compressed")
    images = read_bag(bag, spec).arrays["images"][0]
    assert images.dtype == np.uint8 and images.shape == (4, 4, 5)
    np.testing.assert_array_equal(images[0], grey)
    raw_bgr = {"encoding": "bgr8", "height": 4, "width": 5, "step": 15, "is_bigendian": 0,
               "data": colour.reshape(-1)}
    np.testing.assert_array_equal(images[1], image_to_mono8(types.SimpleNamespace(**raw_bgr)))
    assert np.abs(images[2].astype(int) - images[1]).max() <= 8  # JPEG is lossy
    assert np.abs(images[3].astype(int) - images[1]).max() <= 1  # 16 bits scaled, not wrapped
    # a frame that does not decode, and a depth format with its own header: named, not crashed
    for data, fmt, message in [
        (b"\x89PNG broken", "png", r"message 0: compressed image \('png', 11 bytes\) cannot be"),
        (b"", "jpeg", r"message 0: compressed image \('jpeg', 0 bytes\) cannot be decoded"),
        (encode(".png", grey), "16UC1; compressedDepth png",
         r"message 0: compressed format '16UC1; compressedDepth png' .* is not accepted"),
    ]:
        messages = [_compressed(S, data, fmt), _joints(S)]
        broken = _write_raw(tmp_path / f"broken_{len(data)}", messages)
        with pytest.raises(BagError, match=message):
            read_bag(broken, spec)


def test_training_on_a_joint_only_import_warns_what_the_recipe_gets_wrong(
    tmp_path: Path, capsys
) -> None:
    """A bag without a truth topic: the targets are the joint inputs. Trained without
    observation_drop the model only learns to copy them, and a batch larger than the data set
    makes one step per epoch; `rkn-ros train` says both before it starts."""
    import yaml

    from rkn_ros.cli import main as cli

    stamps = [S + k * 50 * MS for k in range(120)]
    bag = _write_raw(
        tmp_path / "bag", [_joints(ns, position=(np.sin(k / 5), np.cos(k / 7))) for k, ns in
                           enumerate(stamps)]
    )
    spec = BagImport(dt=0.05, joint_topic="/js", joints=(JointField("a"), JointField("b")),
                     window=10)
    read_bag(bag, spec).save(tmp_path / "data")
    recipe = {
        "name": "joints_only",
        "seed": 0,
        "data": {"train": {"path": str(tmp_path / "data")}, "validation_fraction": 0.25},
        "model": {"latent_obs_dim": 2, "num_basis": 2, "bandwidth": 1},
        "training": {"epochs": 1, "batch_size": 50, "device": "cpu", "num_threads": 1},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    out = ["train", str(path), "--out", str(tmp_path / "run"), "--no-progress"]
    assert cli(out) == 0
    err = capsys.readouterr().err
    assert "rkn-ros train: warning: the targets are the joint readings" in err
    assert "Set observation_drop" in err
    assert "training.batch_size 50 is more than the 9 training sequences" in err
    recipe["training"].update(observation_drop=0.5, batch_size=4)
    path.write_text(yaml.safe_dump(recipe))
    assert cli([*out, "--overwrite"]) == 0
    assert "warning" not in capsys.readouterr().err
    recipe["training"].update(drop_gap=6)  # 10-step windows, the first 5 always kept
    path.write_text(yaml.safe_dump(recipe))
    assert cli([*out, "--overwrite"]) == 0
    err = capsys.readouterr().err
    assert "training.drop_gap 6 is longer than the 5 steps after keep_first 5" in err
    assert err.count("warning") == 1
    recipe["training"].update(keep_first=10)
    path.write_text(yaml.safe_dump(recipe))
    assert cli([*out, "--overwrite"]) == 0
    assert "keep_first 10 keeps every step of the 10-step training sequences: drop_gap hides " \
        "none" in capsys.readouterr().err
