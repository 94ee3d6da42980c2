"""Deterministic synthetic street scenes with exact Cityscapes trainId labels.

No labelled real dataset can be downloaded where this toolkit is built and tested, yet
training, evaluation and the INT8 accuracy gate must be exercised on data where a trained
network genuinely succeeds. These scenes are that data: a perspective road with lane
marks, sidewalks, kerbs, terrain, facades with windows, trees, poles carrying signs and
traffic lights, cars and people, drawn far-to-near so occlusion is consistent, then lit
(a global gain, a horizontal light gradient, shadows under cars) and noised like a cheap
camera. Each class has its own colour family *and* texture, so the task needs context and
texture, not one colour lookup, but stays learnable in a few CPU minutes.

The seed fixes everything: ``make_scene(s)`` is bit-identical across runs and machines
(numpy's PCG64 plus OpenCV drawing, no global RNG). Label 255 (ignore) marks what is
ambiguous by design: the ego-vehicle bonnet at the bottom of some frames (as Cityscapes
does) and unlabelled street clutter (bins, boxes) that belongs to no class.

numpy + OpenCV only, ~5-10 ms a scene at 640x360.
"""

from pathlib import Path
from typing import Dict, List, Tuple

import cv2
import numpy as np

IGNORE = 255

# Cityscapes trainIds (cityscapesscripts' table; checked against presets in the tests).
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN, VEGETATION, TERRAIN, SKY = range(11)
PERSON, RIDER, CAR = 11, 12, 13

#: The classes a scene can contain (others of the 19 never appear; mIoU excludes them).
SCENE_CLASSES = (
    ROAD,
    SIDEWALK,
    BUILDING,
    FENCE,
    POLE,
    LIGHT,
    SIGN,
    VEGETATION,
    TERRAIN,
    SKY,
    PERSON,
    CAR,
)

# Texture amplitude per class (grey levels of the shared noise fields): asphalt is grainy,
# sky smooth, vegetation very busy. Indexed by label, 256 entries so 255 works too.
_TEX = np.zeros(256, np.float32)
_TEX[[ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, LIGHT, SIGN]] = [10, 7, 9, 6, 5, 4, 3, 3]
_TEX[[VEGETATION, TERRAIN, SKY, PERSON, CAR, IGNORE]] = [26, 16, 2, 8, 4, 10]


def _jitter(rng: np.random.Generator, bgr: Tuple[int, int, int], amount: int) -> Tuple[int, ...]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in bgr)


class _Canvas:
    """An image and its label map drawn together, so a label can never drift from a pixel."""

    def __init__(self, w: int, h: int) -> None:
        self.img = np.zeros((h, w, 3), np.uint8)
        self.lab = np.full((h, w), IGNORE, np.uint8)
        self.w, self.h = w, h

    def poly(self, pts: np.ndarray, color: Tuple[int, ...], cls: int) -> None:
        p = [np.round(np.asarray(pts)).astype(np.int32).reshape(-1, 1, 2)]
        cv2.fillPoly(self.img, p, color)
        cv2.fillPoly(self.lab, p, int(cls))

    def rect(self, x0: float, y0: float, x1: float, y1: float, color, cls: int) -> None:
        self.poly(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), color, cls)

    def ellipse(self, c, axes, color, cls: int, angle: float = 0.0) -> None:
        c = (round(c[0]), round(c[1]))
        axes = (max(1, round(axes[0])), max(1, round(axes[1])))
        cv2.ellipse(self.img, c, axes, angle, 0, 360, color, -1)
        cv2.ellipse(self.lab, c, axes, angle, 0, 360, int(cls), -1)


def _sky_and_horizon(cv: _Canvas, rng: np.random.Generator, horizon: int) -> None:
    top = np.array(_jitter(rng, (225, 170, 120), 25), np.float32)  # BGR: blue-ish sky
    bottom = np.array(_jitter(rng, (240, 215, 195), 15), np.float32)
    t = np.linspace(0.0, 1.0, horizon + 1, dtype=np.float32)[:, None]
    cv.img[: horizon + 1] = (top * (1 - t) + bottom * t)[:, None, :].astype(np.uint8)
    cv.lab[: horizon + 1] = SKY
    for _ in range(int(rng.integers(0, 4))):  # soft clouds, still sky
        cx, cy = rng.uniform(0, cv.w), rng.uniform(0, horizon * 0.6)
        ax = (rng.uniform(20, 70) * cv.w / 640, rng.uniform(6, 16) * cv.h / 360)
        cv2.ellipse(
            cv.img,
            (round(cx), round(cy)),
            (round(ax[0]), round(ax[1])),
            0,
            0,
            360,
            _jitter(rng, (245, 245, 245), 8),
            -1,
        )


def _buildings(cv: _Canvas, rng: np.random.Generator, horizon: int, s: float) -> None:
    x = -rng.uniform(0, 40) * s
    while x < cv.w:
        bw = rng.uniform(60, 190) * s
        top = horizon - rng.uniform(40, 200) * s
        base = (
            _jitter(rng, (150, 160, 175), 50)
            if rng.random() < 0.6
            else _jitter(rng, (90, 110, 160), 40)
        )
        cv.rect(x, top, x + bw, horizon + 2, base, BUILDING)
        # windows: darker/blue-grey panes on a grid, still labelled building
        win = _jitter(rng, (110, 90, 70), 25)
        ww, wh = rng.uniform(7, 14) * s, rng.uniform(9, 16) * s
        gx, gy = ww * rng.uniform(1.6, 2.4), wh * rng.uniform(1.5, 2.2)
        yy = top + gy * 0.5
        while yy + wh < horizon - 6 * s:
            xx = x + gx * 0.4
            while xx + ww < x + bw - 4 * s:
                cv2.rectangle(
                    cv.img, (round(xx), round(yy)), (round(xx + ww), round(yy + wh)), win, -1
                )
                xx += gx
            yy += gy
        x += bw + rng.uniform(-10, 25) * s


def _road(cv: _Canvas, rng: np.random.Generator, horizon: int, vx: float, s: float):
    """Road, sidewalks, kerbs and terrain in perspective; returns the road edges' functions."""
    h, w = cv.h, cv.w
    half_bottom = w * rng.uniform(0.35, 0.6)
    walk = w * rng.uniform(0.12, 0.3)

    def edge(side: float, extra: float):
        # x of a line from the vanishing point to the bottom row at offset side*(half+extra)
        return lambda y: vx + (y - horizon) / (h - horizon) * side * (half_bottom + extra)

    left, right = edge(-1, 0), edge(1, 0)
    left_w, right_w = edge(-1, walk), edge(1, walk)
    far = horizon + 1
    # terrain / grass beyond the sidewalks, then the sidewalks, then the road on top
    terr = _jitter(rng, (60, 130, 110), 20)
    cv.rect(0, far, w, h, terr, TERRAIN)
    sw = _jitter(rng, (165, 170, 180), 25)
    for fl, fr in ((left_w, left), (right, right_w)):
        cv.poly(np.array([[fl(far), far], [fr(far), far], [fr(h), h], [fl(h), h]]), sw, SIDEWALK)
    # kerb stones along the road edge: a lighter line, sidewalk
    road_col = _jitter(rng, (95, 92, 90), 18)
    cv.poly(
        np.array([[left(far), far], [right(far), far], [right(h), h], [left(h), h]]), road_col, ROAD
    )
    for fe in (left, right):
        cv2.line(
            cv.img, (round(fe(far)), far), (round(fe(h)), h), (200, 200, 205), max(1, round(3 * s))
        )
    # sidewalk paving joints: lines converging to the vanishing point
    for k in range(1, 6):
        y = horizon + (h - horizon) * (k / 6.0) ** 1.6
        for fl, fr in ((left_w, left), (right, right_w)):
            cv2.line(cv.img, (round(fl(y)), round(y)), (round(fr(y)), round(y)), (130, 135, 140), 1)
    # dashed centre line and stop-line-like marks, all road
    n = 9
    for k in range(n):
        if k % 2:
            continue
        y0 = horizon + (h - horizon) * (k / n) ** 1.8
        y1 = horizon + (h - horizon) * ((k + 1) / n) ** 1.8
        t0, t1 = (y0 - horizon) / (h - horizon), (y1 - horizon) / (h - horizon)
        hw0, hw1 = 1 + 5 * t0 * s, 1 + 5 * t1 * s
        cv2.fillPoly(
            cv.img,
            [np.array([[vx - hw0, y0], [vx + hw0, y0], [vx + hw1, y1], [vx - hw1, y1]], np.int32)],
            (225, 225, 230),
        )
    return left, right, left_w, right_w


def _tree(cv: _Canvas, rng: np.random.Generator, x: float, base: float, size: float) -> None:
    trunk = _jitter(rng, (40, 60, 85), 15)
    cv.rect(x - 0.06 * size, base - 0.9 * size, x + 0.06 * size, base, trunk, VEGETATION)
    for _ in range(int(rng.integers(3, 6))):
        c = (x + rng.normal(0, 0.25 * size), base - size * rng.uniform(0.9, 1.4))
        ax = (size * rng.uniform(0.3, 0.55), size * rng.uniform(0.25, 0.45))
        cv.ellipse(c, ax, _jitter(rng, (50, 120, 60), 25), VEGETATION, rng.uniform(0, 180))


def _pole(cv: _Canvas, rng: np.random.Generator, x: float, base: float, size: float) -> None:
    pw = max(1.5, 0.035 * size)
    top = base - size * rng.uniform(1.6, 2.4)
    cv.rect(x - pw, top, x + pw, base, _jitter(rng, (115, 115, 120), 20), POLE)
    kind = rng.random()
    if kind < 0.45:  # traffic sign: disc, triangle or rectangle
        r = size * rng.uniform(0.14, 0.22)
        cy = top + r
        shape = int(rng.integers(0, 3))
        col = ((40, 40, 200), (180, 90, 20), (30, 200, 230))[int(rng.integers(0, 3))]
        if shape == 0:
            cv.ellipse((x, cy), (r, r), col, SIGN)
            cv2.circle(cv.img, (round(x), round(cy)), max(1, round(r * 0.6)), (235, 235, 235), -1)
        elif shape == 1:
            cv.poly(np.array([[x - r, cy + r], [x + r, cy + r], [x, cy - r]]), col, SIGN)
        else:
            cv.rect(x - r * 1.3, cy - r * 0.8, x + r * 1.3, cy + r * 0.8, col, SIGN)
    elif kind < 0.75:  # traffic light: dark housing with three lamps
        lw, lh = size * 0.12, size * 0.36
        cv.rect(x - lw, top, x + lw, top + lh, (30, 35, 35), LIGHT)
        on = int(rng.integers(0, 3))
        for k, col in enumerate(((40, 40, 230), (40, 200, 230), (80, 210, 60))):
            cc = col if k == on else tuple(c // 4 for c in col)
            cv2.circle(
                cv.img, (round(x), round(top + lh * (k + 0.5) / 3)), max(1, round(lw * 0.6)), cc, -1
            )


def _car(cv: _Canvas, rng: np.random.Generator, x: float, base: float, size: float) -> None:
    bw, bh = size * rng.uniform(1.6, 2.1), size * rng.uniform(0.5, 0.65)
    body = _jitter(
        rng,
        [
            (40, 40, 170),
            (160, 60, 30),
            (200, 200, 200),
            (40, 40, 40),
            (60, 150, 200),
            (30, 110, 40),
        ][int(rng.integers(0, 6))],
        30,
    )
    # shadow on the road (not a label change: shadows are lighting)
    cv2.ellipse(
        cv.img,
        (round(x), round(base)),
        (round(bw * 0.6), max(1, round(size * 0.08))),
        0,
        0,
        360,
        (35, 35, 35),
        -1,
    )
    cv.rect(x - bw / 2, base - bh, x + bw / 2, base - 0.12 * size, body, CAR)
    cab_w = bw * rng.uniform(0.5, 0.65)
    cv.poly(
        np.array(
            [
                [x - cab_w / 2, base - bh],
                [x - cab_w / 2 + 0.15 * size, base - bh - 0.35 * size],
                [x + cab_w / 2 - 0.15 * size, base - bh - 0.35 * size],
                [x + cab_w / 2, base - bh],
            ]
        ),
        body,
        CAR,
    )
    glass = _jitter(rng, (90, 70, 60), 20)
    cv2.rectangle(
        cv.img,
        (round(x - cab_w / 2 + 0.2 * size), round(base - bh - 0.28 * size)),
        (round(x + cab_w / 2 - 0.2 * size), round(base - bh - 0.03 * size)),
        glass,
        -1,
    )
    for sx in (-1, 1):  # wheels and lamps, all car
        cv.ellipse(
            (x + sx * bw * 0.32, base - 0.12 * size), (0.17 * size, 0.17 * size), (20, 20, 20), CAR
        )
        cv2.circle(
            cv.img,
            (round(x + sx * bw * 0.4), round(base - bh * 0.7)),
            max(1, round(0.06 * size)),
            (60, 220, 240),
            -1,
        )


def _person(cv: _Canvas, rng: np.random.Generator, x: float, base: float, size: float) -> None:
    skin = _jitter(
        rng, [(120, 160, 210), (70, 100, 150), (50, 70, 100)][int(rng.integers(0, 3))], 15
    )
    shirt = tuple(int(v) for v in rng.integers(20, 235, 3))
    trousers = _jitter(rng, (70, 50, 40), 30)
    hgt = size * rng.uniform(0.9, 1.1)
    cv.ellipse((x, base - hgt * 0.9), (hgt * 0.07, hgt * 0.09), skin, PERSON)
    cv.ellipse((x, base - hgt * 0.62), (hgt * 0.12, hgt * 0.2), shirt, PERSON)
    stride = hgt * rng.uniform(0.0, 0.12)
    for sx in (-1, 1):
        cv.poly(
            np.array(
                [
                    [x - hgt * 0.03, base - hgt * 0.45],
                    [x + hgt * 0.03, base - hgt * 0.45],
                    [x + sx * stride + hgt * 0.035, base],
                    [x + sx * stride - hgt * 0.035, base],
                ]
            ),
            trousers,
            PERSON,
        )


def _fence(cv: _Canvas, rng: np.random.Generator, x0: float, x1: float, base: float, s: float):
    col = _jitter(rng, (100, 130, 150), 25)
    hgt = rng.uniform(18, 34) * s
    cv.rect(x0, base - hgt, x1, base - hgt + 3 * s, col, FENCE)
    cv.rect(x0, base - hgt * 0.5, x1, base - hgt * 0.5 + 2 * s, col, FENCE)
    step = rng.uniform(10, 18) * s
    xx = x0
    while xx < x1:
        cv.rect(xx, base - hgt, xx + 2.5 * s, base, col, FENCE)
        xx += step


def make_scene(seed: int, wh: Tuple[int, int] = (640, 360)) -> Tuple[np.ndarray, np.ndarray]:
    """One street scene: (HxWx3 uint8 BGR image, HxW uint8 Cityscapes trainIds, 255 = ignore).

    Deterministic in ``seed``; any resolution (the layout scales with it, so a scene keeps
    its content at 160x96 or 1280x720).
    """
    w, h = int(wh[0]), int(wh[1])
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC1F2]))
    s = min(w / 640.0, h / 360.0)
    cv = _Canvas(w, h)
    horizon = int(h * rng.uniform(0.36, 0.52))
    vx = w * rng.uniform(0.35, 0.65)
    _sky_and_horizon(cv, rng, horizon)
    _buildings(cv, rng, horizon, s)
    left, right, left_w, right_w = _road(cv, rng, horizon, vx, s)

    def depth_size(y: float) -> float:  # object size grows linearly below the horizon
        return max(4.0, (y - horizon) / (h - horizon) * 150.0 * s)

    # objects: (base y, kind, x); drawn far to near so nearer ones occlude
    objs: List[Tuple[float, str, float]] = []
    span = h - horizon
    for _ in range(int(rng.integers(1, 5))):
        y = horizon + span * rng.uniform(0.08, 0.75)
        objs.append((y, "car", rng.uniform(left(y), right(y))))
    for _ in range(int(rng.integers(2, 6))):
        y = horizon + span * rng.uniform(0.05, 0.5)
        side = rng.random() < 0.5
        x = (
            left(y) - rng.uniform(0.4, 2.0) * depth_size(y)
            if side
            else right(y) + rng.uniform(0.4, 2.0) * depth_size(y)
        )
        objs.append((y, "tree", x))
    for _ in range(int(rng.integers(1, 5))):
        y = horizon + span * rng.uniform(0.05, 0.6)
        x = (
            rng.uniform(left_w(y), left(y))
            if rng.random() < 0.5
            else rng.uniform(right(y), right_w(y))
        )
        objs.append((y, "pole", x))
    for _ in range(int(rng.integers(0, 5))):
        y = horizon + span * rng.uniform(0.1, 0.85)
        x = (
            rng.uniform(left_w(y), left(y))
            if rng.random() < 0.5
            else rng.uniform(right(y), right_w(y))
        )
        objs.append((y, "person", x))
    if rng.random() < 0.5:
        y = horizon + span * rng.uniform(0.02, 0.12)
        objs.append((y, "fence", 0.0))
    if rng.random() < 0.4:
        y = horizon + span * rng.uniform(0.1, 0.6)
        objs.append((y, "clutter", rng.uniform(right(y), right_w(y))))
    objs.sort(key=lambda o: o[0])
    for y, kind, x in objs:
        size = depth_size(y)
        if kind == "car":
            _car(cv, rng, x, y, size)
        elif kind == "tree":
            _tree(cv, rng, x, y, size)
        elif kind == "pole":
            _pole(cv, rng, x, y, size)
        elif kind == "person":
            _person(cv, rng, x, y, size * 1.1)
        elif kind == "fence":
            if rng.random() < 0.5:
                _fence(cv, rng, 0, max(0.0, left_w(y)), y, s)
            else:
                _fence(cv, rng, min(float(w), right_w(y)), w, y, s)
        else:  # unlabelled clutter: a bin or box no class describes -> ignore
            b = size * rng.uniform(0.25, 0.5)
            cv.rect(x - b, y - 1.4 * b, x + b, y, _jitter(rng, (60, 90, 60), 40), IGNORE)
    if rng.random() < 0.3:  # ego-vehicle bonnet, ignored as in Cityscapes
        top = h - h * rng.uniform(0.05, 0.12)
        cv.ellipse((w / 2, h + (h - top) * 1.2), (w * 0.7, (h - top) * 2.2), (40, 40, 45), IGNORE)
    return _finish(cv, rng), cv.lab


def _finish(cv: _Canvas, rng: np.random.Generator) -> np.ndarray:
    """Texture per class, lighting and sensor noise; labels are untouched."""
    h, w = cv.h, cv.w
    # a low-frequency field (blotches) and a high-frequency one (grain), shared by all classes
    low = cv2.resize(
        rng.standard_normal((max(2, h // 16), max(2, w // 16)), np.float32),
        (w, h),
        interpolation=cv2.INTER_CUBIC,
    )
    high = rng.standard_normal((h, w), np.float32)
    tex = _TEX[cv.lab] * (0.7 * low + 0.5 * high)
    img = cv.img.astype(np.float32)
    img += tex[:, :, None]
    # lighting: global gain and a left-right gradient (sun from one side)
    gain = rng.uniform(0.7, 1.25)
    grad = np.linspace(
        1 - rng.uniform(-0.15, 0.15), 1 + rng.uniform(-0.15, 0.15), w, dtype=np.float32
    )
    img *= (gain * grad)[None, :, None]
    img += rng.uniform(-12, 12, 3).astype(np.float32)  # colour cast / white balance
    img += rng.standard_normal((h, w, 1), np.float32) * rng.uniform(1.0, 4.0)  # sensor noise
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        out = cv2.GaussianBlur(out, (3, 3), 0)  # slight defocus
    return out


def scene_class_counts(label: np.ndarray, num_classes: int = 19) -> Dict[int, int]:
    """Pixel count per class present in a label map (ignore excluded): a quick sanity view."""
    counts = np.bincount(label.ravel(), minlength=256)[:num_classes]
    return {int(c): int(n) for c, n in enumerate(counts) if n}


def write_synthetic_dataset(
    out_dir: Path,
    count: int,
    wh: Tuple[int, int] = (640, 360),
    seed: int = 0,
    val_fraction: float = 0.2,
    preset: str = "cityscapes",
    quiet: bool = True,
) -> Dict[str, object]:
    """Write ``count`` scenes in the generic folder layout ``folder:`` reads.

    Layout: ``classes.json`` (the preset's classes, palette and ignore index),
    ``images/{train,val}/scene_<seed>.png`` and ``masks/{train,val}/scene_<seed>.png``
    (single-channel trainIds, 255 = ignore). Scene ``k`` uses seed ``seed + k``; the last
    ``round(count * val_fraction)`` scenes (at least one when count >= 2) are the val split.
    PNG is lossless, so a written scene reads back bit-identical to ``make_scene``.
    Returns a summary dict (counts per split, path).
    """
    from .._io import write_bytes_atomic, write_json_atomic
    from ..errors import ConfigError
    from ..presets import get_preset

    if count < 1:
        raise ConfigError(f"--count {count} is too small: write at least one scene")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val fraction {val_fraction} must be in [0, 1)")
    out = Path(out_dir).expanduser()
    p = get_preset(preset)
    n_val = round(count * val_fraction)
    if count >= 2 and val_fraction > 0:
        n_val = min(max(1, n_val), count - 1)
    n_train = count - n_val
    for k in range(count):
        split = "train" if k < n_train else "val"
        img, lab = make_scene(seed + k, wh)
        name = f"scene_{seed + k:06d}.png"
        for sub, arr in (("images", img), ("masks", lab)):
            ok, buf = cv2.imencode(".png", arr)
            if not ok:  # pragma: no cover - OpenCV always encodes uint8 PNG
                raise ConfigError(f"cannot encode {name}")
            write_bytes_atomic(out / sub / split / name, buf.tobytes())
        if not quiet and (k + 1) % 50 == 0:
            print(f"  {k + 1}/{count} scenes")
    meta = {
        "preset": p.name,
        "classes": list(p.classes),
        "palette_rgb": [list(c) for c in p.palette_rgb],
        "ignore_index": IGNORE,
        "source": "cifrenet-edge synthetic street scenes",
        "seed": int(seed),
        "resolution": [int(wh[0]), int(wh[1])],
        "splits": {"train": n_train, "val": n_val},
    }
    write_json_atomic(out / "classes.json", meta)
    return {"path": str(out), "train": n_train, "val": n_val, "resolution": list(wh)}


def synthetic_batch(
    seeds: List[int], wh: Tuple[int, int]
) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """Several scenes at once (images, labels): what tests and calibration demos want."""
    pairs = [make_scene(s, wh) for s in seeds]
    return [p[0] for p in pairs], [p[1] for p in pairs]
