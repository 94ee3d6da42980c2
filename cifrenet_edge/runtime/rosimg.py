"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge or a ROS install.

The fields are the same in ROS 1, ROS 2 and the ``rosbags`` dataclasses, so the bag reader,
the bag writer and the ROS 2 example node all share these functions (the node stays thin and
this logic stays tested). numpy + OpenCV only, Python 3.8 syntax.
"""

from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np

from ..errors import FrameError, SourceError

# encoding -> (channels, conversion to BGR or None)
ENCODINGS = {
    "bgr8": (3, None),
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "mono8": (1, cv2.COLOR_GRAY2BGR),
    "8uc1": (1, cv2.COLOR_GRAY2BGR),
    "8uc3": (3, None),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
}


def check_encoding(encoding: str) -> None:
    """A topic in an encoding we cannot turn into BGR is a setup problem: stop, say so."""
    if str(encoding).lower() not in ENCODINGS:
        raise SourceError(
            f"image encoding {encoding!r} is not supported: publish bgr8, rgb8, mono8, bgra8 "
            "or rgba8 (e.g. debayer with image_proc), or a CompressedImage topic"
        )


def image_to_bgr(msg: Any) -> np.ndarray:
    """A sensor_msgs/Image (any object with its fields) -> HxWx3 uint8 BGR (a copy).

    Honours ``step`` (rows may be padded). Mono images become 3-channel grey: the network
    was trained on colour, but a grey frame still segments better than no frame.
    """
    check_encoding(str(msg.encoding))
    encoding = str(msg.encoding).lower()
    channels, conversion = ENCODINGS[encoding]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(
        bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, dtype=np.uint8
    )
    if h <= 0 or w <= 0 or step < w * channels or data.size < h * step:
        raise FrameError(
            f"image message is inconsistent ({w}x{h}, step {step}, {data.size} bytes of "
            f"{encoding}): skip it"
        )
    rows = data[: h * step].reshape(h, step)[:, : w * channels]
    image = rows.reshape(h, w, channels) if channels > 1 else rows.reshape(h, w)
    if conversion is None:
        return np.ascontiguousarray(image).copy()
    return cv2.cvtColor(np.ascontiguousarray(image), conversion)


def compressed_to_bgr(msg: Any) -> np.ndarray:
    """A sensor_msgs/CompressedImage (jpeg/png) -> HxWx3 uint8 BGR."""
    data = np.frombuffer(
        bytes(msg.data) if not isinstance(msg.data, np.ndarray) else msg.data, dtype=np.uint8
    )
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise FrameError(
            f"compressed image ({getattr(msg, 'format', '?')}, {data.size} bytes) does not "
            "decode: skip it"
        )
    return image


def image_fields(array: np.ndarray) -> Dict[str, Any]:
    """The Image fields (not the header) for an HxW uint8 (mono8) or HxWx3 uint8 (bgr8) array."""
    array = np.ascontiguousarray(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise FrameError(f"cannot publish a {array.dtype} {array.shape} array as an image")
    h, w = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    encoding = {1: "mono8", 3: "bgr8"}.get(channels)
    if encoding is None:
        raise FrameError(f"cannot publish a {channels}-channel array: give HxW or HxWx3")
    return {
        "height": h,
        "width": w,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": w * channels,
        "data": array.reshape(-1),
    }


def segment_message(
    segmenter: Any, msg: Any, overlay: bool = True, alpha: float = 0.5
) -> Tuple[Dict[str, Any], Optional[Dict[str, Any]]]:
    """Image or CompressedImage message -> (mask fields, overlay fields or None).

    What a ROS node's callback does, kept here so that it is tested without ROS: decode the
    message to BGR, segment it, encode the class map as mono8 and the overlay as bgr8. The
    caller copies the input header onto both (stamps must match for message_filters).
    Raises FrameError for a frame to skip, SourceError for an encoding to fix upstream.
    """
    frame = compressed_to_bgr(msg) if hasattr(msg, "format") else image_to_bgr(msg)
    mask = segmenter.predict(frame)
    view = image_fields(segmenter.overlay(frame, mask, alpha)) if overlay else None
    return image_fields(mask), view
