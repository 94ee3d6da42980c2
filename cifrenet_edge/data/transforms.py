"""Training augmentation of the paper (IV-A): random scale 0.5-1.5, flip, rotation +-3 deg, crop.

Scale and rotation are one affine warp (one resample, not two): the image bilinearly,
the label with nearest neighbour so no fake class appears on a boundary. Pixels the warp or
the crop padding invents are the dataset mean colour in the image (zero after
normalisation) and 255 in the label, so the loss never learns from them.

Normalisation is NOT done here: the training loop calls ``runtime.preprocess`` on the
crop, the one implementation shared with export, calibration and inference.
numpy + OpenCV; every random draw comes from the ``rng`` passed in (reproducible).
"""

from typing import Sequence, Tuple

import cv2
import numpy as np

IGNORE = 255


def augment(
    img: np.ndarray,
    lab: np.ndarray,
    crop_wh: Tuple[int, int],
    rng: np.random.Generator,
    mean_bgr: Sequence[float],
    scale_range: Tuple[float, float] = (0.5, 1.5),
    max_rotation: float = 3.0,
    flip: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """One training sample: (crop HxWx3 uint8 BGR, crop HxW uint8 label) at ``crop_wh``."""
    s = float(rng.uniform(*scale_range))
    angle = float(rng.uniform(-max_rotation, max_rotation)) if max_rotation > 0 else 0.0
    do_flip = bool(flip and rng.random() < 0.5)
    h, w = lab.shape
    out_w, out_h = max(1, round(w * s)), max(1, round(h * s))
    # rotate about the image centre and scale, mapping into the scaled canvas
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, s)
    m[0, 2] += out_w / 2.0 - w / 2.0
    m[1, 2] += out_h / 2.0 - h / 2.0
    fill = tuple(float(c) for c in mean_bgr)
    img = cv2.warpAffine(
        img,
        m,
        (out_w, out_h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=fill,
    )
    lab = cv2.warpAffine(
        lab,
        m,
        (out_w, out_h),
        flags=cv2.INTER_NEAREST,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=IGNORE,
    )
    if do_flip:
        img, lab = img[:, ::-1], lab[:, ::-1]
    return random_crop(img, lab, crop_wh, rng, fill)


def random_crop(
    img: np.ndarray,
    lab: np.ndarray,
    crop_wh: Tuple[int, int],
    rng: np.random.Generator,
    fill: Sequence[float],
) -> Tuple[np.ndarray, np.ndarray]:
    """A crop of ``crop_wh``; a smaller image is padded (mean colour / ignore) first."""
    cw, ch = int(crop_wh[0]), int(crop_wh[1])
    h, w = lab.shape
    pad_w, pad_h = max(0, cw - w), max(0, ch - h)
    if pad_w or pad_h:
        fill_u8 = tuple(round(float(c)) for c in fill)
        img = cv2.copyMakeBorder(
            np.ascontiguousarray(img), 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=fill_u8
        )
        lab = cv2.copyMakeBorder(
            np.ascontiguousarray(lab), 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=IGNORE
        )
        h, w = lab.shape
    x0 = int(rng.integers(0, w - cw + 1))
    y0 = int(rng.integers(0, h - ch + 1))
    return (
        np.ascontiguousarray(img[y0 : y0 + ch, x0 : x0 + cw]),
        np.ascontiguousarray(lab[y0 : y0 + ch, x0 : x0 + cw]),
    )
