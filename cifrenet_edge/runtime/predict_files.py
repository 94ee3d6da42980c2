"""Segment everything a source yields and write masks/overlays: what ``cifrenet-edge predict`` does.

Outputs (every file written atomically: complete or absent):

* images / folders: ``<name>_mask.png`` (class ids, lossless) and ``<name>_overlay.jpg``;
* videos / cameras: ``<stem>_mask/000000.png ...`` and ``<stem>_overlay.mp4``;
* bags: a new bag of the same ROS version beside nothing else, ``<stem>_segmented.bag``
  (ROS 1) or ``<stem>_segmented/`` (ROS 2), with ``<ns>/segmentation/mask`` (mono8 class ids)
  and ``<ns>/segmentation/overlay`` (bgr8) sensor_msgs/Image topics, where ``<ns>`` is the
  input topic's namespace. Each message keeps the input message's header (stamp, frame_id) and
  bag timestamp, so the result replays in sync next to the original bag.

Which errors the loop survives, and which stop it (a robot log wants one line per problem):

* survives, skips the frame and counts it (``PredictSummary.skipped``/``skip_reasons``): a frame
  that does not decode (corrupt JPEG in a folder, truncated bag message, a malformed Image
  message) and any ``FrameError`` from ``Segmenter.predict``. One bad frame must not end an
  hour-long bag;
* stops with the error: a source that cannot be opened, a bag without the topic, an image
  encoding that no frame of the topic could be converted from (``SourceError``), a model or
  backend failure, an output that cannot be written. These repeat on every frame; continuing
  would only hide them. Outputs being written are removed, not left half-written;
* Ctrl-C (the normal way to stop a camera) stops cleanly: outputs written so far are
  finalised and valid, and the summary says ``interrupted``; a camera lost after it
  delivered frames (unplugged) ends the stream the same way, with ``ended_by`` saying why;
* a run in which every frame was skipped ends with ``SourceError`` naming the first reason.

numpy + OpenCV (+ rosbags for bags), Python 3.8 syntax.
"""

import contextlib
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import cv2
import numpy as np

from .._io import ensure_writable_dir, write_bytes_atomic
from ..errors import ConfigError, FrameError, SourceError
from .segmenter import Segmenter
from .sources import Bag, Frame, ImageFiles, Source, open_source

Progress = Callable[[int, Optional[int]], None]


class PredictSummary:
    """What a run did: counts, where the outputs are, which backend ran."""

    def __init__(self, source: str, kind: str, backend: Dict[str, Any]) -> None:
        self.source = source
        self.kind = kind
        self.backend = backend
        self.frames = 0
        self.written = 0
        self.skipped = 0
        self.skip_reasons = {}  # type: Dict[str, int]
        self.dropped = 0
        self.seconds = 0.0
        self.outputs = []  # type: List[str]
        self.interrupted = False
        self.ended_by = None  # type: Optional[str]

    def skip(self, reason: str) -> None:
        self.skipped += 1
        key = reason.strip().splitlines()[0][:120] if reason else "unknown"
        if key in self.skip_reasons or len(self.skip_reasons) < 10:
            self.skip_reasons[key] = self.skip_reasons.get(key, 0) + 1

    @property
    def fps(self) -> float:
        return self.written / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> Dict[str, Any]:
        return {
            "source": self.source,
            "kind": self.kind,
            "backend": self.backend,
            "frames": self.frames,
            "written": self.written,
            "skipped": self.skipped,
            "skip_reasons": dict(self.skip_reasons),
            "dropped": self.dropped,
            "seconds": round(self.seconds, 3),
            "fps": round(self.fps, 2),
            "outputs": list(self.outputs),
            "interrupted": self.interrupted,
            "ended_by": self.ended_by,
        }


def _png(mask: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", mask)
    if not ok:
        raise SourceError("OpenCV could not encode a PNG: check the opencv installation")
    return data.tobytes()


def _jpg(image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    if not ok:
        raise SourceError("OpenCV could not encode a JPEG: check the opencv installation")
    return data.tobytes()


def _partial(target: Path) -> Path:
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial{target.suffix}")


def _publish(tmp: Path, target: Path) -> None:
    """Move a finished file or folder into place, replacing an older result."""
    if target.is_dir() and not target.is_symlink():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(str(target), str(old))
        os.replace(str(tmp), str(target))
        shutil.rmtree(str(old), ignore_errors=True)
    else:
        os.replace(str(tmp), str(target))


def _discard(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(str(tmp), ignore_errors=True)
    elif tmp.exists():
        tmp.unlink()


class _Sink:
    def write(
        self, frame: Frame, mask: Optional[np.ndarray], overlay: Optional[np.ndarray]
    ) -> None:
        raise NotImplementedError

    def finish(self) -> List[str]:
        return []

    def abort(self) -> None:
        pass


class _ImageSink(_Sink):
    """One mask PNG / overlay JPEG per input image."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.paths = []  # type: List[str]

    def write(
        self, frame: Frame, mask: Optional[np.ndarray], overlay: Optional[np.ndarray]
    ) -> None:
        if mask is not None:
            self.paths.append(
                str(write_bytes_atomic(self.out / f"{frame.name}_mask.png", _png(mask)))
            )
        if overlay is not None:
            path = self.out / f"{frame.name}_overlay.jpg"
            self.paths.append(str(write_bytes_atomic(path, _jpg(overlay))))

    def finish(self) -> List[str]:
        return self.paths


class _StreamSink(_Sink):
    """Video/camera: a PNG sequence of masks and an overlay video."""

    def __init__(
        self, out: Path, stem: str, fps: float, save_mask: bool, save_overlay: bool
    ) -> None:
        self.mask_dir = out / f"{stem}_mask" if save_mask else None
        self.video_path = out / f"{stem}_overlay.mp4" if save_overlay else None
        self.fps = fps
        self._mask_tmp = _partial(self.mask_dir) if self.mask_dir else None
        self._video_tmp = _partial(self.video_path) if self.video_path else None
        self._writer = None  # type: Any
        if self._mask_tmp is not None:
            self._mask_tmp.mkdir(parents=True)

    def write(
        self, frame: Frame, mask: Optional[np.ndarray], overlay: Optional[np.ndarray]
    ) -> None:
        if mask is not None and self._mask_tmp is not None:
            (self._mask_tmp / f"{frame.name}.png").write_bytes(_png(mask))
        if overlay is not None and self._video_tmp is not None:
            h, w = overlay.shape[:2]
            if self._writer is None:
                fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                self._writer = cv2.VideoWriter(str(self._video_tmp), fourcc, self.fps, (w, h))
                self._size = (w, h)
                if not self._writer.isOpened():
                    raise SourceError(
                        f"cannot write video {self.video_path}: this OpenCV has no mp4v encoder; "
                        "use --save-mask only"
                    )
            if (w, h) != self._size:  # a stream that changes size: keep the first size
                overlay = cv2.resize(overlay, self._size, interpolation=cv2.INTER_AREA)
            self._writer.write(overlay)

    def finish(self) -> List[str]:
        paths = []
        if self._writer is not None:
            self._writer.release()
        if self._video_tmp is not None and self.video_path is not None and self._video_tmp.exists():
            _publish(self._video_tmp, self.video_path)
            paths.append(str(self.video_path))
        if self._mask_tmp is not None and self.mask_dir is not None:
            _publish(self._mask_tmp, self.mask_dir)
            paths.append(str(self.mask_dir))
        return paths

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.release()
        for tmp in (self._video_tmp, self._mask_tmp):
            if tmp is not None:
                _discard(tmp)


def output_topics(topic: str) -> Dict[str, str]:
    """``/cam/image_raw`` -> ``/cam/segmentation/mask`` and ``/cam/segmentation/overlay``."""
    ns = topic.rstrip("/").rsplit("/", 1)[0]
    return {"mask": f"{ns}/segmentation/mask", "overlay": f"{ns}/segmentation/overlay"}


class BagSink(_Sink):
    """A new bag (same ROS version as the input) with mask and overlay Image topics.

    Written under a temporary name and renamed into place when complete, as every output.
    A ROS 2 bag is a folder whose storage file ``ros2 bag record`` names after the folder,
    ``NAME_0.db3`` / ``NAME_0.mcap`` (rosbag2_cpp's ``format_storage_uri``: folder name,
    ``_``, split index); rosbags' writer names it ``FOLDER.db3``, after whatever folder it
    writes. So the bag is written as a folder ``NAME_0`` inside a hidden temporary folder and
    that folder is renamed to ``NAME``: the storage file, ``metadata.yaml`` and the metadata
    copy inside the storage file all say ``NAME_0.ext``, and no temporary name survives.
    """

    def __init__(
        self,
        target: Path,
        ros2: bool,
        topic: str,
        save_mask: bool,
        save_overlay: bool,
        storage: str = "sqlite3",
    ) -> None:
        from rosbags.typesys import Stores, get_typestore

        self.target = target
        self.ros2 = ros2
        self.tmp = _partial(target)
        #: what becomes ``target``: the bag file, or the bag folder inside ``tmp``
        self.written = self.tmp
        self.topics = output_topics(topic)
        if ros2:
            from rosbags.rosbag2 import StoragePlugin, Writer

            self.typestore = get_typestore(Stores.ROS2_HUMBLE)
            plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
            self.tmp.mkdir()
            self.written = self.tmp / f"{target.name}_0"
            self.writer = Writer(self.written, version=9, storage_plugin=plugin)  # type: Any
            self._serialize = self.typestore.serialize_cdr
        else:
            from rosbags.rosbag1 import Writer as Writer1

            self.typestore = get_typestore(Stores.ROS1_NOETIC)
            self.writer = Writer1(self.tmp)
            self._serialize = self.typestore.serialize_ros1
        try:
            self.writer.open()
        except BaseException:
            _discard(self.tmp)
            raise
        self.msgtype = "sensor_msgs/msg/Image"
        self.connections = {}  # type: Dict[str, Any]
        for key, wanted in (("mask", save_mask), ("overlay", save_overlay)):
            if wanted:
                self.connections[key] = self.writer.add_connection(
                    self.topics[key], self.msgtype, typestore=self.typestore
                )
        types = self.typestore.types
        self._Image = types["sensor_msgs/msg/Image"]
        self._Header = types["std_msgs/msg/Header"]
        self._Time = types["builtin_interfaces/msg/Time"]

    def _header(self, frame: Frame) -> Any:
        src = frame.header
        stamp_ns = frame.stamp_ns or 0
        if src is not None:
            sec, nsec = int(src.stamp.sec), int(src.stamp.nanosec)
            frame_id = str(src.frame_id)
        else:
            sec, nsec, frame_id = stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000, ""
        stamp = self._Time(sec=sec, nanosec=nsec)
        if self.ros2:
            return self._Header(stamp=stamp, frame_id=frame_id)
        seq = int(getattr(src, "seq", frame.index)) if src is not None else frame.index
        return self._Header(seq=seq, stamp=stamp, frame_id=frame_id)

    def write(
        self, frame: Frame, mask: Optional[np.ndarray], overlay: Optional[np.ndarray]
    ) -> None:
        from .rosimg import image_fields

        header = self._header(frame)
        stamp = int(frame.stamp_ns or 0)
        for key, array in (("mask", mask), ("overlay", overlay)):
            if array is None or key not in self.connections:
                continue
            msg = self._Image(header=header, **image_fields(array))
            self.writer.write(self.connections[key], stamp, self._serialize(msg, self.msgtype))

    def finish(self) -> List[str]:
        self.writer.close()
        _publish(self.written, self.target)
        _discard(self.tmp)  # a ROS 2 bag's temporary parent, empty now (no-op for ROS 1)
        return [str(self.target)]

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()
        _discard(self.tmp)


def _make_sink(source: Source, out: Path, save_mask: bool, save_overlay: bool) -> _Sink:
    if isinstance(source, Bag):
        name = f"{source.stem}_segmented" + ("" if source.ros2 else ".bag")
        return BagSink(
            out / name, source.ros2, source.topic, save_mask, save_overlay, source.storage
        )
    if isinstance(source, ImageFiles):
        return _ImageSink(out)
    return _StreamSink(out, source.stem, source.fps, save_mask, save_overlay)


def run_predict(
    model: Union[str, Path, Segmenter],
    source: Union[str, Source],
    output: Union[str, Path],
    save_mask: bool = False,
    save_overlay: bool = False,
    topic: Optional[str] = None,
    device: str = "auto",
    backend: Optional[str] = None,
    alpha: float = 0.5,
    max_frames: Optional[int] = None,
    progress: Optional[Progress] = None,
    on_open: Optional[Callable[[Segmenter, Source], None]] = None,
) -> PredictSummary:
    """Segment every frame of ``source`` into ``output``; neither flag set means both.

    ``model`` is a model path (opened and closed here) or an open ``Segmenter`` (left open).
    ``progress(done, total)`` is called after every frame (total None for live sources).
    ``on_open(segmenter, source)`` is called once both are open (the CLI prints from it).
    """
    if not save_mask and not save_overlay:
        save_mask = save_overlay = True
    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"--max-frames {max_frames} must be at least 1")
    out = Path(output).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out} is a file: give a folder")
    created_out = not out.exists()
    ensure_writable_dir(out / "x")
    own_model = not isinstance(model, Segmenter)
    src = None  # type: Optional[Source]
    try:
        src = open_source(source, topic) if isinstance(source, (str, Path)) else source
        seg = Segmenter.open(model, device=device, backend=backend) if own_model else model
    except BaseException:
        if src is not None:
            src.close()
        if created_out:  # a run that could not start leaves no empty output folder behind
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    assert isinstance(seg, Segmenter)
    summary = PredictSummary(src.uri, src.kind, seg.backend.describe())
    sink = None  # type: Optional[_Sink]
    started = time.perf_counter()
    try:
        if on_open is not None:
            on_open(seg, src)
        sink = _make_sink(src, out, save_mask, save_overlay)
        total = src.total if max_frames is None else min(src.total or max_frames, max_frames)
        try:
            for frame in src:
                summary.frames += 1
                if frame.image is None:
                    summary.skip(frame.error or "frame could not be decoded")
                else:
                    try:
                        mask = seg.predict(frame.image)
                    except FrameError as exc:
                        summary.skip(str(exc))
                    else:
                        view = seg.overlay(frame.image, mask, alpha) if save_overlay else None
                        sink.write(frame, mask if save_mask else None, view)
                        summary.written += 1
                summary.dropped = src.dropped
                if progress is not None:
                    progress(summary.frames, total)
                if max_frames is not None and summary.frames >= max_frames:
                    break
        except KeyboardInterrupt:
            summary.interrupted = True
        summary.ended_by = src.ended_by
        if summary.written == 0:
            first = next(iter(summary.skip_reasons), "the source yielded no frames")
            raise SourceError(
                f"no frame of {src.uri} could be segmented ({summary.skipped} skipped; first "
                f"reason: {first})"
            )
        summary.outputs = sink.finish()
        sink = None
    finally:
        summary.seconds = time.perf_counter() - started
        if sink is not None:
            sink.abort()
        src.close()
        if own_model:
            seg.close()
    return summary
