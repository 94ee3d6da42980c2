"""Calibration data for INT8: real frames only, preprocessed by the runtime's own code.

INT8 ranges are only as good as the frames they were measured on. Three classic ways to
ship a broken INT8 model are closed here: there is no random-data fallback at all (no
frames, no INT8), frames are preprocessed by ``runtime.preprocess.preprocess`` (the exact
function inference uses, so resize and normalisation cannot drift), and every set gets a
fingerprint (file names, content hashes, preprocessing settings) that goes into the INT8
model's manifest so a stale or mismatched calibration can be traced.

A calibration source is one of:

- a folder of images (sorted by name; files without an image extension are skipped and
  counted, an image file that cannot be decoded stops the run with its name);
- a video file (frames sampled evenly over its whole length);
- a text file listing image paths, one per line (relative to the list; ``#`` comments).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .._io import make_dir, sha256_file
from ..errors import CalibrationError, ConfigError, FrameError
from ..preprocess import IMAGE_SUFFIXES, check_frame, preprocess, resize_bgr
from ..presets import BGR_MEAN, INPUT_SCALE

log = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".h264")
LIST_EXTS = (".txt", ".lst", ".list")
# Below this many frames the ranges are set by a handful of scenes: one bright sky or one
# night frame more or less moves the entropy/percentile thresholds of the late layers.
# TensorRT's guidance is ~500 images for ImageNet classifiers; a segmentation frame holds
# far more activations than a classifier image, but scene/lighting coverage is what
# counts, so we warn under 100 and advise a few hundred.
MIN_RECOMMENDED_COUNT = 100
# Taken when no --calib-count is given: enough for stable ranges, bounded memory and time
# (frames are kept as resized uint8, ~0.7 MB each at 640x360).
DEFAULT_COUNT = 300
# A frame whose pixels barely vary (lens cap, black start of a video, a test card of one
# colour) says nothing about activation ranges.
MIN_PIXEL_STD = 2.0
# Natural images are smooth: neighbouring pixels correlate strongly (typically > 0.6).
# Independent random noise has ~0 correlation; it is refused so nobody "calibrates" on
# np.random output saved as PNGs.
MIN_NEIGHBOUR_CORRELATION = 0.25
INTERPOLATION = "INTER_LINEAR"
PREPROCESS_FUNCTION = "cifrenet_edge.preprocess.preprocess"


class Batches(Sequence[np.ndarray]):
    """The calibration inputs, each a 1x3xhxw float32 array made by ``preprocess`` on access.

    Frames are held as uint8 already resized by the runtime's ``resize_bgr`` (4x smaller
    than float32), and turned into network input by the runtime's ``preprocess``: the
    result is bit-identical to preprocessing the original frame, at a quarter of the
    memory, which matters with a few hundred 640x360 frames on a small machine.
    """

    def __init__(self, frames: List[np.ndarray], wh: Tuple[int, int], mean_bgr, scale):
        self._frames = frames
        self._wh = wh
        self._mean = tuple(float(m) for m in mean_bgr)
        self._scale = float(scale)

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return preprocess(self._frames[i], self._wh, self._mean, self._scale)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]


@dataclass
class CalibrationData:
    """Preprocessed calibration inputs plus the fingerprint recorded in the INT8 manifest."""

    batches: Batches
    fingerprint: Dict[str, Any]
    names: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.batches)

    def subset(self, indices: Sequence[int], role: str) -> CalibrationData:
        """A view on some of the frames (e.g. the held-out split), with its own fingerprint."""
        idx = [int(i) for i in indices]
        frames = [self.batches._frames[i] for i in idx]
        fp = dict(self.fingerprint)
        fp["role"] = role
        fp["count"] = len(idx)
        if "files" in fp:
            fp["files"] = [fp["files"][i] for i in idx]
        if "frames" in fp:
            fp["frames"] = [fp["frames"][i] for i in idx]
        fp["sha256"] = _digest(fp)
        b = self.batches
        return CalibrationData(
            Batches(frames, b._wh, b._mean, b._scale), fp, [self.names[i] for i in idx]
        )


def _digest(fp: Dict[str, Any]) -> str:
    """One hash over content hashes and preprocessing: equal digests, equal calibration."""
    h = hashlib.sha256()
    for item in fp.get("files", []) + fp.get("frames", []):
        h.update(str(item.get("sha256", "")).encode())
        h.update(str(item.get("index", "")).encode())
    h.update(repr(sorted(fp["preprocessing"].items())).encode())
    return h.hexdigest()


def evenly_spaced(n: int, count: int) -> List[int]:
    """``count`` indices spread over ``range(n)`` including both ends (all when count >= n)."""
    if count >= n:
        return list(range(n))
    if count == 1:
        return [n // 2]
    return sorted({round(float(v)) for v in np.linspace(0, n - 1, count)})


def frame_problem(frame: np.ndarray) -> Optional[str]:
    """Why a frame is useless for calibration (constant or noise-like), or None if usable."""
    gray = frame.mean(axis=2, dtype=np.float32) if frame.ndim == 3 else frame.astype(np.float32)
    std = float(gray.std())
    if std < MIN_PIXEL_STD:
        return f"nearly constant (pixel std {std:.2f})"
    a = gray[:, :-1].ravel() - gray.mean()
    b = gray[:, 1:].ravel() - gray.mean()
    corr = float((a * b).mean() / (gray.var() + 1e-6))
    if corr < MIN_NEIGHBOUR_CORRELATION:
        return f"looks like random noise (neighbour correlation {corr:.2f})"
    return None


def _check_count(count: Optional[int]) -> Optional[int]:
    if count is None:
        return None
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ConfigError(f"calibration count {count!r} is invalid: pass a positive integer")
    return int(count)


def _read_image(path: Path) -> np.ndarray:
    """Decode an image as 8-bit BGR, or stop with the file's name (a curated set is broken)."""
    data = np.fromfile(str(path), dtype=np.uint8) if path.is_file() else None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if img is None:
        raise CalibrationError(
            f"cannot decode calibration image {path}: remove it or re-encode it as JPEG/PNG"
        )
    return img


def _list_folder(folder: Path) -> Tuple[List[Path], int]:
    try:
        entries = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as exc:
        raise CalibrationError(
            f"cannot read calibration folder {folder}: {exc.strerror}; check its permissions"
        ) from None
    images = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
    return images, len(entries) - len(images)


def _list_file(listing: Path) -> List[Path]:
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(
            f"cannot read calibration list {listing}: {exc}; pass a UTF-8 text file of image paths"
        ) from None
    paths = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = Path(line).expanduser()
        p = p if p.is_absolute() else listing.parent / p
        if not p.is_file():
            raise CalibrationError(
                f"calibration list {listing} names {line!r}, which does not exist: "
                "fix the path (relative paths are relative to the list file)"
            )
        paths.append(p)
    return paths


def _load_images(
    paths: List[Path], count: Optional[int], wh: Tuple[int, int], root: Path
) -> Tuple[List[np.ndarray], List[Dict[str, Any]], List[str], Dict[str, int], List[List[int]]]:
    chosen = evenly_spaced(len(paths), count or DEFAULT_COUNT)
    frames, files, names = [], [], []
    sizes = set()
    skipped: Dict[str, int] = {"unusable": 0}
    for i in chosen:
        p = paths[i]
        img = _read_image(p)
        problem = _frame_problem_checked(img, str(p))
        if problem:
            log.warning("skipping calibration image %s: %s", p, problem)
            skipped["unusable"] += 1
            continue
        sizes.add((img.shape[1], img.shape[0]))
        frames.append(resize_bgr(img, wh))
        try:
            name = str(p.resolve().relative_to(root.resolve()))
        except ValueError:
            name = str(p)
        names.append(name)
        files.append({"name": name, "sha256": sha256_file(p)})
    return frames, files, names, skipped, [list(s) for s in sorted(sizes)]


def _frame_problem_checked(img: np.ndarray, where: str) -> Optional[str]:
    try:
        check_frame(img)
    except FrameError as exc:
        raise CalibrationError(f"calibration frame {where} is unusable: {exc}") from None
    return frame_problem(img)


def _load_video(
    path: Path, count: Optional[int], wh: Tuple[int, int]
) -> Tuple[List[np.ndarray], List[Dict[str, Any]], List[str], Dict[str, int], List[List[int]]]:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise CalibrationError(
                f"cannot open video {path}: OpenCV has no decoder for it; convert it to H.264 "
                "MP4 (ffmpeg -i IN -c:v libx264 OUT.mp4) or extract frames to a folder"
            )
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        want = count or DEFAULT_COUNT
        frames, records, names = [], [], []
        skipped = {"unusable": 0}
        sizes = set()
        if n > 0:
            chosen = set(evenly_spaced(n, want))
            idx = 0
            while idx < n:
                if idx in chosen:
                    ok, img = cap.read()
                else:
                    ok, img = cap.grab(), None
                if not ok:
                    break
                if img is not None:
                    _add_video_frame(img, idx, path, wh, frames, records, names, skipped, sizes)
                idx += 1
        else:  # frame count unknown (some streams): decode all, then pick evenly
            allf = []
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                allf.append(resize_bgr(img, wh) if img is not None else None)
            for i in evenly_spaced(len(allf), want):
                if allf[i] is not None:
                    _add_video_frame(allf[i], i, path, wh, frames, records, names, skipped, sizes)
    finally:
        cap.release()
    if not frames and skipped["unusable"] == 0:
        raise CalibrationError(
            f"could not decode any frame of video {path}: the file is damaged or uses an "
            "unsupported codec; convert it to H.264 MP4 or extract frames to a folder"
        )
    return frames, records, names, skipped, [list(s) for s in sorted(sizes)]


def _add_video_frame(img, idx, path, wh, frames, records, names, skipped, sizes) -> None:
    problem = _frame_problem_checked(img, f"{path}#{idx}")
    if problem:
        log.warning("skipping frame %d of %s: %s", idx, path, problem)
        skipped["unusable"] += 1
        return
    sizes.add((img.shape[1], img.shape[0]))
    frames.append(resize_bgr(img, wh))
    names.append(f"{path.name}#{idx}")
    records.append({"index": idx, "sha256": hashlib.sha256(img.tobytes()).hexdigest()})


def source_kind(path: Path) -> str:
    """'folder', 'video' or 'list' by what the path is; a ConfigError for anything else."""
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTS:
        return "video"
    if suffix in LIST_EXTS:
        return "list"
    if suffix in IMAGE_SUFFIXES:
        raise ConfigError(
            f"calibration source {path} is a single image: pass a folder of a few hundred "
            "frames, a video, or a text file listing images"
        )
    raise ConfigError(
        f"calibration source {path} is not a folder, a video ({', '.join(VIDEO_EXTS)}) or an "
        f"image list ({', '.join(LIST_EXTS)}): pass one of those"
    )


def load_calibration(
    path,
    wh: Tuple[int, int],
    count: Optional[int] = None,
    mean_bgr: Sequence[float] = BGR_MEAN,
    scale: float = INPUT_SCALE,
    role: str = "calibration",
) -> CalibrationData:
    """Read a calibration source into network inputs at ``wh`` = (width, height).

    ``role="holdout"`` reads a held-out verification set the same way, without the
    calibration-size advice (a few dozen held-out frames are plenty for agreement).

    ``count`` frames are taken evenly spaced over the source (default: all, at most
    ``DEFAULT_COUNT``). Images at another resolution are resized exactly as the runtime
    resizes camera frames. Raises CalibrationError/ConfigError with one line naming the fix.
    """
    if path is None or str(path) == "":
        raise CalibrationError(
            "INT8 needs real calibration frames and none were given: pass --calib with a "
            "folder, video or image list from the deployment camera (there is no random fallback)"
        )
    count = _check_count(count)
    wh = (int(wh[0]), int(wh[1]))
    src = Path(path).expanduser()
    if not src.exists():
        raise CalibrationError(f"calibration source {src} does not exist: check the path")
    kind = source_kind(src)
    skipped: Dict[str, int] = {}
    if kind == "video":
        frames, records, names, sk, sizes = _load_video(src, count, wh)
        skipped.update(sk)
    else:
        if kind == "folder":
            paths, non_images = _list_folder(src)
            root = src
            if non_images:
                skipped["non_image"] = non_images
                log.warning(
                    "calibration folder %s: skipped %d file(s) without an image extension (%s)",
                    src,
                    non_images,
                    ", ".join(IMAGE_SUFFIXES),
                )
        else:
            paths = _list_file(src)
            root = src.parent
        if not paths:
            raise CalibrationError(
                f"calibration source {src} holds no images ({', '.join(IMAGE_SUFFIXES)}): "
                "put a few hundred frames from the deployment camera there"
            )
        frames, records, names, sk, sizes = _load_images(paths, count, wh, root)
        skipped.update(sk)
    if not frames:
        raise CalibrationError(
            f"calibration source {src} has no usable frame ({skipped.get('unusable', 0)} "
            "constant or noise-like): use real frames from the deployment camera"
        )
    warnings = []
    if count is not None and len(frames) < count:
        warnings.append(f"asked for {count} calibration frames, {src} gave {len(frames)}")
    if role == "calibration" and len(frames) < MIN_RECOMMENDED_COUNT:
        warnings.append(
            f"only {len(frames)} calibration frames (< {MIN_RECOMMENDED_COUNT}): INT8 ranges "
            "may not cover the scenes the camera will see; a few hundred frames are advised"
        )
    for w in warnings:
        log.warning(w)
    fingerprint: Dict[str, Any] = {
        "source": str(src),
        "kind": kind,
        "count": len(frames),
        "skipped": skipped,
        "source_sizes": sizes,
        "preprocessing": {
            "function": PREPROCESS_FUNCTION,
            "wh": list(wh),
            "interpolation": INTERPOLATION,
            "mean_bgr": [float(m) for m in mean_bgr],
            "scale": float(scale),
            "channel_order": "BGR",
        },
    }
    if kind == "video":
        fingerprint["video_sha256"] = sha256_file(src)
        fingerprint["frames"] = records
    else:
        fingerprint["files"] = records
    fingerprint["sha256"] = _digest(fingerprint)
    return CalibrationData(Batches(frames, wh, mean_bgr, scale), fingerprint, names, warnings)


def sample_video(video, out_dir, count: int = DEFAULT_COUNT, ext: str = ".png") -> List[Path]:
    """Write ``count`` evenly spaced frames of a video as images (a calibration folder).

    Frames are written at their original size (calibration resizes later, like the runtime)
    and the folder is filled only when every frame decoded: no half-written set.
    """
    count = _check_count(count) or DEFAULT_COUNT
    src = Path(video).expanduser()
    if src.is_dir():
        raise CalibrationError(
            f"{src} is a folder, not a video: pass it to --calib as it is, or give a video file"
        )
    if not src.is_file():
        raise CalibrationError(f"video {src} does not exist: check the path")
    if ext not in (".png", ".jpg"):
        raise ConfigError(f"unknown image format {ext!r}: use .png or .jpg")
    cap = cv2.VideoCapture(str(src))
    try:
        if not cap.isOpened():
            raise CalibrationError(
                f"cannot open video {src}: convert it to H.264 MP4 (ffmpeg -i IN -c:v libx264 "
                "OUT.mp4)"
            )
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        picked: List[Tuple[int, np.ndarray]] = []
        if n > 0:
            chosen = set(evenly_spaced(n, count))
            for idx in range(n):
                ok, img = cap.read() if idx in chosen else (cap.grab(), None)
                if not ok:
                    break
                if img is not None:
                    picked.append((idx, img))
        else:
            allf = []
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                allf.append(img)
            picked = [(i, allf[i]) for i in evenly_spaced(len(allf), count)]
    finally:
        cap.release()
    if not picked:
        raise CalibrationError(
            f"could not decode any frame of {src}: convert it to H.264 MP4 or check the file"
        )
    out = make_dir(out_dir, "folder", "--out")
    from .._io import write_bytes_atomic

    written = []
    for idx, img in picked:
        ok, buf = cv2.imencode(ext, img)
        if not ok:
            raise CalibrationError(f"cannot encode frame {idx} of {src} as {ext}")
        written.append(write_bytes_atomic(out / f"{src.stem}_{idx:06d}{ext}", buf.tobytes()))
    return written


def describe(path, wh: Tuple[int, int] = (640, 360), count: Optional[int] = None) -> Dict[str, Any]:
    """What a calibration source holds (for ``calib check``): count, kind, sizes, warnings."""
    data = load_calibration(path, wh, count=count)
    fp = data.fingerprint
    return {
        "source": fp["source"],
        "kind": fp["kind"],
        "usable_frames": fp["count"],
        "skipped": fp["skipped"],
        "source_sizes": fp["source_sizes"],
        "preprocessing": fp["preprocessing"],
        "sha256": fp["sha256"],
        "warnings": data.warnings,
        "enough": fp["count"] >= MIN_RECOMMENDED_COUNT,
    }
