"""Frame checks and the one preprocessing path every stage uses.

Training, export parity, INT8 calibration, evaluation and the runtime all call
``preprocess``; a calibration set preprocessed differently from inference is a classic
way to ship a broken INT8 model, so there is exactly one implementation.
numpy + OpenCV only, Python 3.8 syntax.
"""

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from .errors import FrameError

#: image files every loader reads (camera folders, calibration sets, datasets)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def check_frame(frame: object) -> np.ndarray:
    """Accept an HxWx3 uint8 BGR frame; anything else is a FrameError saying what to do."""
    if frame is None:
        raise FrameError("frame is None: the camera or decoder returned no image; skip it")
    if not isinstance(frame, np.ndarray):
        raise FrameError(
            f"frame is a {type(frame).__name__}, not a numpy array: pass an HxWx3 uint8 BGR image "
            "(cv2.imread, cv_bridge imgmsg_to_cv2(msg, 'bgr8'))"
        )
    if frame.size == 0:
        raise FrameError(f"frame is empty (shape {frame.shape}): skip it")
    if frame.dtype != np.uint8:
        raise FrameError(
            f"frame dtype is {frame.dtype}, expected uint8: convert 16-bit or float images "
            "first, e.g. "
            "cv2.convertScaleAbs(frame, alpha=255/65535)"
        )
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        raise FrameError(
            f"frame is grayscale {frame.shape}: convert with "
            "cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)"
        )
    if frame.ndim == 3 and frame.shape[2] == 4:
        raise FrameError(
            "frame has 4 channels (BGRA/RGBA): convert with cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)"
        )
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"frame shape {frame.shape} is not HxWx3: pass a BGR image")
    return frame


def resize_bgr(frame: np.ndarray, wh: Tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (width, height); a no-op when the size already matches."""
    if frame.shape[1] == wh[0] and frame.shape[0] == wh[1]:
        return frame
    return cv2.resize(frame, (int(wh[0]), int(wh[1])), interpolation=cv2.INTER_LINEAR)


def normalize_into(
    bgr: np.ndarray, mean_bgr: Sequence[float], scale: float, out: np.ndarray
) -> np.ndarray:
    """Write ``(bgr - mean) * scale`` as CHW float32 into ``out`` (3xHxW), no extra copies."""
    chw = out
    for c in range(3):
        np.subtract(bgr[:, :, c], np.float32(mean_bgr[c]), out=chw[c], dtype=np.float32)
    chw *= np.float32(scale)
    return chw


def preprocess(
    frame: np.ndarray,
    wh: Tuple[int, int],
    mean_bgr: Sequence[float],
    scale: float,
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """HxWx3 uint8 BGR -> 1x3xhxw float32 network input at ``wh`` = (width, height)."""
    bgr = resize_bgr(check_frame(frame), wh)
    if out is None:
        out = np.empty((1, 3, wh[1], wh[0]), dtype=np.float32)
    normalize_into(bgr, mean_bgr, scale, out[0])
    return out
