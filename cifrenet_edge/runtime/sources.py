"""Frame sources named by one string, as jetson-inference's ``videoSource`` does.

``open_source(uri)`` understands:

* an image file (``.jpg``, ``.png``, ...), a folder of images (sorted by name);
* a video file (``.mp4``, ``.avi``, ``.mkv``, ...) or a stream URL (``rtsp://``, ``http://``);
* a camera: ``0``, ``/dev/video0``, ``v4l2:///dev/video0`` or ``camera:0``;
* a rosbag: a ROS 1 ``.bag`` file, or a ROS 2 bag folder (``metadata.yaml`` + ``.db3`` /
  ``.mcap``), read with ``rosbags`` (no ROS install needed); ``topic`` picks the image topic.

Every source yields ``Frame`` items. A frame that cannot be decoded arrives with ``image=None``
and ``error`` set, so the loop can count and skip it; a source that cannot be opened, or a bag
without the requested topic, raises ``SourceError`` at once.

Cameras: latency beats throughput on a robot, so a grabber thread reads the camera as fast as
it delivers and keeps only the newest frame; a slow consumer gets the latest frame, never a
queue of stale ones (the number dropped is counted).

numpy + OpenCV (+ ``rosbags`` for bags, imported only then), Python 3.8 syntax.
"""

import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Iterator, List, NamedTuple, Optional, Tuple

import cv2
import numpy as np

from ..errors import ClosedError, FrameError, SourceError
from ..preprocess import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".h264")
STREAM_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://", "udp://")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


class Frame(NamedTuple):
    """One item from a source. ``image`` is None when it could not be decoded (see ``error``)."""

    image: Optional[np.ndarray]
    index: int
    name: str
    stamp_ns: Optional[int] = None
    header: Any = None
    error: Optional[str] = None


class Source:
    """Iterable of ``Frame``; ``len()`` is known for files and bags, None for live sources."""

    kind = "source"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.closed = False
        #: camera frames the grabber replaced before anyone read them
        self.dropped = 0
        #: why a live source ended early (camera unplugged after delivering frames), or None
        self.ended_by = None  # type: Optional[str]

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    @property
    def total(self) -> Optional[int]:
        return None

    @property
    def stem(self) -> str:
        """A file-name-safe name for outputs derived from this source."""
        text = Path(self.uri.rstrip("/")).name
        text = Path(text).stem if Path(text).suffix else text
        return "".join(ch for ch in text if ch.isalnum() or ch in "._-") or self.kind

    @property
    def fps(self) -> float:
        return 30.0

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ImageFiles(Source):
    """One image or a folder of images, in name order."""

    kind = "images"

    def __init__(self, uri: str, paths: List[Path]) -> None:
        super().__init__(uri)
        self.paths = paths

    @property
    def total(self) -> Optional[int]:
        return len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.paths):
            if self.closed:
                return
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            error = None if image is not None else f"{path.name} is not a readable image"
            yield Frame(image, i, path.stem, None, None, error)


class Video(Source):
    """A video file or network stream through OpenCV's VideoCapture."""

    kind = "video"

    def __init__(self, uri: str) -> None:
        super().__init__(uri)
        self.capture = cv2.VideoCapture(uri)
        if not self.capture.isOpened():
            raise SourceError(
                f"cannot open video {uri!r}: check the path/URL and that OpenCV was built with "
                "the codec (FFmpeg/GStreamer)"
            )
        count = int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self._total = count if count > 0 and "://" not in uri else None

    @property
    def total(self) -> Optional[int]:
        return self._total

    @property
    def fps(self) -> float:
        fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
        return fps if 0.0 < fps < 1000.0 else 30.0

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        while not self.closed:
            ok, image = self.capture.read()
            if not ok:
                return
            msec = self.capture.get(cv2.CAP_PROP_POS_MSEC)
            yield Frame(image, i, f"{i:06d}", int(msec * 1e6) if msec else None)
            i += 1

    def close(self) -> None:
        super().close()
        self.capture.release()


class LatestFrameGrabber:
    """Reads ``capture`` on its own thread and keeps only the newest frame.

    ``capture`` is anything with OpenCV's ``read() -> (ok, frame)`` and ``release()``.
    ``read(timeout)`` returns a frame newer than the last one returned (never the same frame
    twice); frames overwritten in between are counted in ``dropped``. After ``max_failures``
    failed reads in a row (camera unplugged) ``read`` raises ``SourceError``.
    """

    def __init__(self, capture: Any, max_failures: int = 100, retry_s: float = 0.01) -> None:
        self.capture = capture
        self.max_failures = max_failures
        self.retry_s = retry_s
        self.dropped = 0
        self._cond = threading.Condition()
        self._frame = None  # type: Optional[np.ndarray]
        self._seq = 0
        self._taken = 0
        self._error = None  # type: Optional[str]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera-grabber", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                ok, frame = self.capture.read()
            except Exception as exc:  # a driver error: report it to the reader, stop
                ok, frame = False, None
                failures = self.max_failures
                self._error = f"camera read failed: {exc}"
            if not ok or frame is None:
                failures += 1
                if failures >= self.max_failures:
                    with self._cond:
                        if self._error is None:
                            self._error = (
                                f"camera delivered no frame in {failures} tries: is it "
                                "unplugged or used by another program?"
                            )
                        self._cond.notify_all()
                    return
                time.sleep(self.retry_s)
                continue
            failures = 0
            with self._cond:
                if self._seq > self._taken:
                    self.dropped += 1  # the previous frame was never read: stale, replaced
                self._frame = frame
                self._seq += 1
                self._cond.notify_all()

    def read(self, timeout: float = 5.0) -> Tuple[int, np.ndarray]:
        """(sequence number, frame) of the newest frame not returned before."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._seq <= self._taken:
                if self._error is not None:
                    raise SourceError(self._error)
                if self._stop.is_set():
                    raise ClosedError("camera source is closed")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SourceError(
                        f"no camera frame within {timeout:.1f} s: check the camera connection"
                    )
                self._cond.wait(left)
            self._taken = self._seq
            frame = self._frame
        assert frame is not None
        return self._taken, frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        with self._cond:
            self._cond.notify_all()
        self.capture.release()


class Camera(Source):
    """A live camera: always the newest frame, stale ones dropped.

    ``capture``: an already opened capture-like object (``read()``/``release()``), e.g.
    ``cv2.VideoCapture(gstreamer_pipeline, cv2.CAP_GSTREAMER)`` for a Jetson CSI camera;
    by default ``cv2.VideoCapture(device)``.
    """

    kind = "camera"

    def __init__(self, uri: str, device: Any = None, capture: Any = None) -> None:
        super().__init__(uri)
        if capture is None:
            capture = cv2.VideoCapture(device)
            if not capture.isOpened():
                raise SourceError(
                    f"cannot open camera {uri!r}: check it is connected (ls /dev/video*) and "
                    "not used by another program"
                )
        get = getattr(capture, "get", None)
        self._fps = float(get(cv2.CAP_PROP_FPS) or 0.0) if get is not None else 0.0
        self.grabber = LatestFrameGrabber(capture)

    @property
    def stem(self) -> str:
        return "camera" + "".join(ch for ch in self.uri if ch.isdigit())

    @property
    def fps(self) -> float:
        return self._fps if 0.0 < self._fps < 1000.0 else 30.0

    def __iter__(self) -> Iterator[Frame]:
        i = 0
        while not self.closed:
            try:
                _, image = self.grabber.read()
            except ClosedError:
                return
            except SourceError as exc:
                if i == 0:
                    raise  # never delivered a frame: a setup problem, say so
                self.ended_by = str(exc)  # lost mid-run: end the stream, keep what was recorded
                return
            self.dropped = self.grabber.dropped
            yield Frame(image, i, f"{i:06d}", time.time_ns())
            i += 1

    def close(self) -> None:
        super().close()
        self.grabber.close()


def is_ros2_bag(path: Path) -> bool:
    return path.is_dir() and (path / "metadata.yaml").is_file()


class Bag(Source):
    """The image topic of a ROS 1 or ROS 2 bag (sensor_msgs/Image or CompressedImage)."""

    kind = "bag"

    def __init__(self, uri: str, path: Path, topic: Optional[str] = None) -> None:
        super().__init__(uri)
        try:
            from rosbags.highlevel import AnyReader
            from rosbags.typesys import Stores, get_typestore
        except ImportError:
            raise SourceError(
                "reading bags needs the rosbags package: pip install rosbags"
            ) from None
        self.path = path
        self.ros2 = path.is_dir()
        try:
            self.reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
            self.reader.open()
        except Exception as exc:
            raise SourceError(
                f"cannot read bag {path}: {str(exc)[:200]} (give a ROS 1 .bag file or a "
                "ROS 2 bag folder; check it is complete: `ros2 bag info` / `rosbag info`)"
            ) from None
        topics = self.reader.topics
        images = sorted(t for t, info in topics.items() if info.msgtype in IMAGE_TYPES)
        if not images:
            self.close()
            raise SourceError(
                "bag {} holds no image topic (its topics: {}): record a sensor_msgs/Image or "
                "CompressedImage topic".format(path, ", ".join(sorted(topics)) or "none")
            )
        if topic is None:
            if len(images) != 1:
                self.close()
                raise SourceError(
                    "bag {} has {} image topics ({}): pick one with --topic".format(
                        path, len(images), ", ".join(images) or "none"
                    )
                )
            topic = images[0]
        if topic not in images:
            others = ", ".join(sorted(topics)) or "none"
            self.close()
            raise SourceError(
                "bag {} has no image topic {!r}: its image topics are {} (all topics: {}); "
                "pass one of them with --topic".format(
                    path, topic, ", ".join(images) or "none", others
                )
            )
        self.topic = topic
        self.msgtype = topics[topic].msgtype
        self.connections = [c for c in self.reader.connections if c.topic == topic]
        self._total = sum(int(c.msgcount) for c in self.connections)
        self.storage = "mcap" if any(path.glob("*.mcap")) else "sqlite3"

    @property
    def total(self) -> Optional[int]:
        return self._total

    @property
    def stem(self) -> str:
        return self.path.stem if not self.ros2 else self.path.name

    def __iter__(self) -> Iterator[Frame]:
        from .rosimg import compressed_to_bgr, image_to_bgr

        decode = compressed_to_bgr if self.msgtype.endswith("CompressedImage") else image_to_bgr
        for i, (connection, stamp, raw) in enumerate(self.reader.messages(self.connections)):
            if self.closed:
                return
            try:
                msg = self.reader.deserialize(raw, connection.msgtype)
            except Exception as exc:  # a corrupt message: skip it, keep reading
                yield Frame(None, i, f"{i:06d}", stamp, None, f"undecodable message: {exc}")
                continue
            try:
                image = decode(msg)  # type: Optional[np.ndarray]
                error = None  # type: Optional[str]
            except FrameError as exc:
                image, error = None, str(exc)
            yield Frame(image, i, f"{i:06d}", stamp, msg.header, error)

    def close(self) -> None:
        if not self.closed and getattr(self, "reader", None) is not None:
            with contextlib.suppress(Exception):
                self.reader.close()
        super().close()


def _camera_device(uri: str) -> Optional[Any]:
    text = uri.strip()
    for prefix in ("camera:", "v4l2://", "cam:"):
        if text.startswith(prefix):
            text = text[len(prefix) :]
            break
    if text.isdigit():
        return int(text)
    if text.startswith("/dev/video"):
        return text
    return None


def open_source(uri: str, topic: Optional[str] = None) -> Source:
    """The right ``Source`` for a path, URL or camera index (see the module docstring)."""
    uri = str(uri)
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    device = _camera_device(uri)
    if device is not None and not Path(uri).is_file():
        return Camera(uri, device)
    if uri.lower().startswith(STREAM_SCHEMES):
        return Video(uri)
    path = Path(uri).expanduser()
    if not path.exists():
        raise SourceError(
            f"source {uri!r} does not exist: give an image, a folder, a video, a camera "
            "index (0) or a bag"
        )
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".bag":
        return Bag(uri, path, topic)
    if path.is_file() and suffix in (".db3", ".mcap") and is_ros2_bag(path.parent):
        return Bag(uri, path.parent, topic)
    if is_ros2_bag(path):
        return Bag(uri, path, topic)
    if topic is not None:
        raise SourceError(f"--topic {topic} only applies to bags, and {uri} is not a bag")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise SourceError(
                f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES[:4])}, ...)"
            )
        return ImageFiles(uri, files)
    if suffix in IMAGE_SUFFIXES:
        return ImageFiles(uri, [path])
    if suffix in VIDEO_SUFFIXES:
        return Video(str(path))
    raise SourceError(
        f"cannot tell what {uri} is from its suffix {suffix!r}: use an image, a video "
        f"({', '.join(VIDEO_SUFFIXES[:4])}, ...), a folder, a camera index or a bag"
    )
