"""Decoding sensor messages into arrays, shared by the bag import and the estimator node.

The functions read message fields by name, so rclpy messages and ``rosbags`` messages serve
alike; nothing here imports ROS. A message that cannot be used raises :class:`MessageError`
with a short ``reason`` (the key the estimator counts on ``/diagnostics``). Colour conversion
uses ``rosbags-image`` (the cv_bridge equivalent that needs no ROS distribution); only the row
``step`` handling is ours, because that library assumes packed rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rosbags.image.image import ImageError, convert_color, to_cvtype

# What cameras send: grey (8 and 16 bit, also as the OpenCV-style 8UC1/16UC1 of depth and
# industrial cameras) and colour with or without alpha. Anything else is refused by name.
IMAGE_ENCODINGS = ("mono8", "8UC1", "mono16", "16UC1", "rgb8", "bgr8", "rgba8", "bgra8")
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"  # image_transport's compressed frames
# The OpenCV-style names say nothing about colour; they are grey, as their cameras mean them.
_GREY_ALIASES = {"8UC1": "mono8", "16UC1": "mono16"}


class MessageError(ValueError):
    """A message that cannot be used; ``reason`` is the diagnostics counter key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def image_to_array(msg: Any, color: bool = False) -> np.ndarray:
    """``sensor_msgs/Image`` -> ``[H, W]`` grey (uint8, or uint16 for 16-bit encodings) or
    ``[H, W, 3]`` RGB uint8 when ``color`` is asked for.

    Accepts :data:`IMAGE_ENCODINGS`; rows may be padded (``step`` larger than the packed row)
    but never shorter, and ``data`` must hold exactly ``step * height`` bytes.
    """
    encoding = str(msg.encoding)
    if encoding not in IMAGE_ENCODINGS:
        raise MessageError(
            "unknown_encoding",
            f"image encoding {encoding!r} is not accepted (accepted: {', '.join(IMAGE_ENCODINGS)})",
        )
    encoding = _GREY_ALIASES.get(encoding, encoding)
    depth, _, typestr, channels = to_cvtype(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * depth // 8
    if height <= 0 or width <= 0:
        raise MessageError("wrong_size", f"image size {height}x{width} is empty")
    if step < row_bytes:
        raise MessageError(
            "step_mismatch",
            f"image step {step} is shorter than a {width}-pixel {encoding} row ({row_bytes} bytes)",
        )
    data = _bytes(msg.data)
    if data.size != step * height:
        raise MessageError(
            "truncated_data",
            f"image data has {data.size} bytes, expected step {step} x height {height} = "
            f"{step * height}",
        )
    rows = data.reshape(height, step)[:, :row_bytes]
    dtype = np.dtype(typestr).newbyteorder(">" if msg.is_bigendian else "<")
    shape = (height, width) if channels == 1 else (height, width, channels)
    # astype to the native dtype swaps bytes only when the message's order is not ours
    image = np.ascontiguousarray(rows).view(dtype).reshape(shape).astype(typestr, copy=False)
    target = "rgb8" if color else ("mono16" if depth == 16 else "mono8")
    try:
        return np.ascontiguousarray(convert_color(image, encoding, target))
    except ImageError as err:
        raise MessageError("unknown_encoding", f"image {encoding} -> {target}: {err}") from err


def _bytes(data: Any) -> np.ndarray:
    """``data`` as a flat ``uint8`` array: rclpy gives ``array('B')``, rosbags an ndarray; a
    list (a message built by hand) or a strided array is copied."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError):
        try:
            return np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as err:
            raise MessageError("truncated_data", f"image data is not bytes: {err}") from err


def image_to_mono8(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` -> ``uint8 [H, W]``: :func:`image_to_array`, 16-bit grey scaled
    to 8 bits (the data sets store images as mono8)."""
    return _to_mono8(image_to_array(msg))


def compressed_image_to_mono8(msg: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG, as image_transport's ``compressed``
    plugin records them) -> ``uint8 [H, W]``.

    Decoded as stored (grey or colour, 8 or 16 bit), then made grey with the same conversion
    the node applies to the raw frames ``image_transport republish`` gives it live, so training
    and deployment agree.
    """
    import cv2  # only for compressed recordings; slow to import

    if "compressedDepth" in str(msg.format):
        raise MessageError(
            "unknown_encoding",
            f"compressed format {msg.format!r} (a depth image with its own header) is not "
            "accepted; record the raw depth topic",
        )
    data = _bytes(msg.data)
    try:
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except cv2.error:  # OpenCV raises on some broken streams, returns None on others
        image = None
    if image is None or image.dtype not in (np.uint8, np.uint16):
        raise MessageError(
            "truncated_data",
            f"compressed image ({msg.format!r}, {len(msg.data)} bytes) cannot be decoded",
        )
    if image.ndim == 3:  # OpenCV decodes colour as BGR or BGRA, 8 or 16 bit
        bits = "16" if image.dtype == np.uint16 else "8"
        encoding = ("bgra" if image.shape[2] == 4 else "bgr") + bits
        image = convert_color(image, encoding, "mono" + bits)
    return _to_mono8(image)


def _to_mono8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        image = convert_color(image, "mono16", "mono8")
    return np.ascontiguousarray(image, dtype=np.uint8)
