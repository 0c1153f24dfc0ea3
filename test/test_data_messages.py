"""Message conversions shared by the bag import and the estimator node: images on rosbags
messages, every sensor kind on rclpy messages, sensor specs from arbitrary text."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rosbags.typesys import Stores, get_typestore

from rkn_ros.data.messages import IMAGE_ENCODINGS, MessageError, image_to_array, image_to_mono8

TS = get_typestore(Stores.ROS2_KILTED)
GREY = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20  # 0 .. 220, every pixel different
RED = np.array([200, 10, 30], dtype=np.uint8)


def _message(pixels: np.ndarray, encoding: str, padding: int = 0, bigendian: bool = False):
    """An Image of ``pixels [H, W, bytes per pixel]`` with ``padding`` bytes after each row."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    rows = np.concatenate([rows, np.full((height, padding), 0xEE, np.uint8)], axis=1)
    return TS.types["sensor_msgs/msg/Image"](
        header=TS.types["std_msgs/msg/Header"](
            stamp=TS.types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id=""
        ),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=rows.shape[1],
        data=np.ascontiguousarray(rows).reshape(-1),
    )


def _encode(grey: np.ndarray, encoding: str, bigendian: bool = False) -> np.ndarray:
    """``grey uint8 [H, W]`` as the bytes of ``encoding``, ``[H, W, bytes per pixel]``."""
    if encoding in ("mono16", "16UC1"):
        wide = grey.astype(np.uint16) * 257  # 8-bit grey spread over 16 bits
        return wide.astype(">u2" if bigendian else "<u2").view(np.uint8).reshape(*grey.shape, 2)
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}.get(encoding, 1)
    pixels = np.repeat(grey[:, :, None], channels, axis=2)
    if channels == 4:
        pixels[:, :, 3] = 255  # opaque
    return pixels


@pytest.mark.parametrize("encoding", IMAGE_ENCODINGS)
@pytest.mark.parametrize("padding", [0, 3])
def test_every_accepted_encoding_gives_the_same_grey_and_colour_picture(
    encoding: str, padding: int
) -> None:
    msg = _message(_encode(GREY, encoding), encoding, padding)
    grey = image_to_array(msg)
    if "16" in encoding:
        assert grey.dtype == np.uint16
        np.testing.assert_array_equal(grey, GREY.astype(np.uint16) * 257)
    else:
        assert grey.dtype == np.uint8
        np.testing.assert_array_equal(grey, GREY)
    np.testing.assert_array_equal(image_to_mono8(msg), GREY)
    colour = image_to_array(msg, color=True)
    assert colour.dtype == np.uint8 and colour.shape == (*GREY.shape, 3)
    np.testing.assert_array_equal(colour, np.repeat(GREY[:, :, None], 3, axis=2))


@pytest.mark.parametrize(
    ("encoding", "pixel"),
    [("rgb8", RED), ("bgr8", RED[::-1]), ("rgba8", [*RED, 255]), ("bgra8", [*RED[::-1], 255])],
)
def test_colour_encodings_keep_their_channel_order(encoding: str, pixel) -> None:
    msg = _message(np.tile(np.asarray(pixel, np.uint8), (2, 3, 1)), encoding)
    np.testing.assert_array_equal(image_to_array(msg, color=True)[1, 2], RED)
    # grey by the usual luma weights: red is dark, not bright as blue-for-red would give
    assert abs(int(image_to_array(msg)[1, 2]) - round(0.299 * 200 + 0.587 * 10 + 0.114 * 30)) <= 1


def test_data_as_a_list_or_a_strided_array_is_read_as_the_bytes_it_holds() -> None:
    msg = _message(GREY[:, :, None], "mono8")
    packed = np.asarray(msg.data)
    msg.data = packed.tolist()  # a message built by hand
    np.testing.assert_array_equal(image_to_array(msg), GREY)
    msg.data = np.repeat(packed, 2)[::2]  # not contiguous
    np.testing.assert_array_equal(image_to_array(msg), GREY)
    msg.data = [300] * packed.size
    with pytest.raises(MessageError, match="image data is not bytes") as caught:
        image_to_array(msg)
    assert caught.value.reason == "truncated_data"


def test_big_endian_16_bit_is_read_in_its_byte_order() -> None:
    msg = _message(_encode(GREY, "mono16", bigendian=True), "mono16", bigendian=True)
    np.testing.assert_array_equal(image_to_array(msg), GREY.astype(np.uint16) * 257)


@pytest.mark.parametrize(
    ("fields", "reason", "message"),
    [
        ({"encoding": "yuv422"}, "unknown_encoding", r"'yuv422' is not accepted \(accepted: mono8"),
        ({"encoding": "32FC1"}, "unknown_encoding", r"'32FC1' is not accepted"),
        ({"step": 3}, "step_mismatch", r"step 3 is shorter than a 4-pixel mono8 row \(4 bytes\)"),
        ({"height": 4}, "truncated_data", r"12 bytes, expected step 4 x height 4 = 16"),
        ({"width": 0}, "wrong_size", r"image size 3x0 is empty"),
    ],
)
def test_unusable_images_name_what_is_wrong(fields: dict, reason: str, message: str) -> None:
    msg = _message(GREY[:, :, None], "mono8")
    for key, value in fields.items():
        setattr(msg, key, value)
    with pytest.raises(MessageError, match=message) as caught:
        image_to_array(msg)
    assert caught.value.reason == reason


def test_every_kinds_conversion_reads_rclpy_messages_as_the_node_will():
    """The registry's conversions read fields by name: rclpy messages (what a live node gets)
    give the rows a bag of the same messages gives."""
    from geometry_msgs.msg import Vector3, WrenchStamped
    from sensor_msgs.msg import Imu, JointState
    from std_msgs.msg import Float64MultiArray

    from rkn_ros.data.sensor_kinds import SENSOR_KINDS

    imu = Imu(angular_velocity=Vector3(x=0.1, y=0.2, z=0.3),
              linear_acceleration=Vector3(x=1.0, y=2.0, z=9.8))
    imu.orientation_covariance[0] = -1.0
    row = SENSOR_KINDS["imu"].convert(imu, "sensor_msgs/msg/Imu", ("angular_velocity.z",
                                                                   "linear_acceleration"))
    np.testing.assert_allclose(row, [0.3, 1.0, 2.0, 9.8])
    with pytest.raises(MessageError, match="imu publishes no orientation") as err:
        SENSOR_KINDS["imu"].convert(imu, "sensor_msgs/msg/Imu", ("orientation.w",))
    assert err.value.reason == "not_measured"
    wrench = WrenchStamped()
    wrench.wrench.torque.y = -4.0
    np.testing.assert_array_equal(SENSOR_KINDS["wrench"].convert(
        wrench, "geometry_msgs/msg/WrenchStamped", ("torque.y", "force.x")), [-4.0, 0.0])
    joints = JointState(name=["b", "a"], position=[1.0, 2.0], velocity=[3.0, 4.0])
    np.testing.assert_array_equal(SENSOR_KINDS["joint_state"].convert(
        joints, "sensor_msgs/msg/JointState", ("a", "b:velocity")), [2.0, 3.0])
    assert SENSOR_KINDS["joint_state"].convert(   # another publisher's message: not ours
        JointState(name=["finger"], position=[0.0]), "sensor_msgs/msg/JointState", ("a",)) is None
    with pytest.raises(MessageError, match="joint 'a' has no effort"):
        SENSOR_KINDS["joint_state"].convert(joints, "sensor_msgs/msg/JointState", ("a:effort",))
    np.testing.assert_array_equal(SENSOR_KINDS["vector"].convert(
        Float64MultiArray(data=[1.5, -2.0]), "std_msgs/msg/Float64MultiArray", ()), [1.5, -2.0])
    assert not SENSOR_KINDS["vector"].stamped and SENSOR_KINDS["imu"].stamped


@settings(max_examples=200, deadline=None, derandomize=True)
@given(text=st.text(alphabet=st.sampled_from("ab:/._,xyz \x00é") | st.characters(), max_size=40))
def test_sensor_specs_raise_nothing_but_value_errors(text):
    from rkn_ros.data.sensor_kinds import SensorInput

    for candidate in (text, f"s:imu:/t:{text}", f"s:wrench:/t:{text}",
                      f"s:joint_state:/t:{text}", f"{text}:vector:/t"):
        try:
            sensor = SensorInput.parse(candidate)
        except ValueError:
            continue
        assert sensor.name and sensor.topic.startswith("/")
