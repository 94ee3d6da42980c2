"""``Segmenter``: frame in, class map out, over any backend.

Three verbs, as in jetson-inference: ``predict`` (frame -> class map), ``colorize`` and
``overlay``. Everything a model needs (classes, palette, normalisation, resolution) comes from
its manifest, written at export; nothing is passed by the caller, so a model cannot be fed the
wrong normalisation by a user who guessed it.

Threads: ``predict`` may be called from any thread. The backend is shared (each backend is
thread-safe, see ``backends/base.py``); input tensors and argmax scratch are per-thread
buffers, allocated once per thread and reused, so a long run allocates only the class map it
returns. Frames may change size from call to call: they are resized to the model's fixed
resolution and the class map is resized back to each frame's own size.

numpy + OpenCV (+ the backend's library), Python 3.8 syntax.
"""

import logging
import threading
import time
from pathlib import Path
from typing import (
    Any,
    List,
    Literal,
    NamedTuple,
    Optional,
    Sequence,
    Tuple,
    Union,
    overload,
)

import cv2
import numpy as np

from ..errors import BackendUnavailableError, ClosedError, ConfigError, FrameError, ModelFileError
from ..manifest import Manifest, Resolution, read_manifest, sidecar_path
from ..preprocess import check_frame, normalize_into, resize_bgr
from .backends import TORCH_SUFFIXES, Backend, choose_backend, is_remote, load_backend
from .backends.base import parse_device
from .postprocess import argmax_classes, palette_lut, resize_logits, resize_mask, softmax_


def open_manifest(path: Path) -> Manifest:
    """The manifest of any model file; checkpoints without a sidecar derive one."""
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist: check the path")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder: give the model file (.onnx, .engine, .pth)")
    if path.suffix.lower() in TORCH_SUFFIXES and not sidecar_path(path).is_file():
        try:
            from .backends.torch import derive_manifest  # imports torch: only for checkpoints
        except ImportError as exc:  # no torch, or the device install (no PyTorch code)
            raise BackendUnavailableError(
                f"{path.name} is a PyTorch checkpoint, which needs PyTorch and the full "
                f"toolkit ({exc}): export it to ONNX with `cifrenet-edge export` on a desktop"
            ) from None

        return derive_manifest(str(path))
    return read_manifest(path)


def _open_remote(
    url: str,
    device: str,
    backend: Optional[str],
    precision: Optional[str],
    threads: Optional[int],
    resolution: Resolution,
    timeout: Optional[float],
    warmup: int,
) -> "Segmenter":
    """``Segmenter.open`` for a Triton URL; options only the server can honour are errors."""
    local = {"device": device != "auto", "backend": backend, "precision": precision}
    local.update({"threads": threads, "resolution": resolution})
    asked = [k for k, v in local.items() if v]
    if asked:
        raise ConfigError(
            "{} cannot be chosen by a client of {}: the server runs the model (set them on "
            "`cifrenet-edge serve`)".format(", ".join(asked), url)
        )
    from .remote import DEFAULT_TIMEOUT_S, connect

    backend, manifest, reason = connect(url, DEFAULT_TIMEOUT_S if timeout is None else timeout)
    wh = (backend.input_shape[3], backend.input_shape[2])
    seg = Segmenter(backend, manifest, wh, url, reason)
    try:
        seg.warmup(min(warmup, 1))
    except BaseException:
        seg.close()
        raise
    return seg


def _check_ort_gpu() -> None:
    """The device check for ONNX Runtime's CUDA/TensorRT providers, before the session.

    Both ONNX Runtime packages installed, an onnxruntime-gpu built for a newer CUDA than the
    driver or without kernels for this GPU: one line with the fix, instead of a provider
    that silently fell back to the CPU.
    """
    from ..device.check import ORT_GPU, gather_facts, require

    for line in require(ORT_GPU, gather_facts()):
        logging.getLogger("cifrenet_edge").warning("%s", line)


class Prediction(NamedTuple):
    """``predict(frame, probabilities=True)``: the class map and the scores it is the argmax of
    (a tuple, so ``mask, probs = seg.predict(frame, probabilities=True)`` reads as before)."""

    mask: np.ndarray  # HxW uint8 class ids
    probs: np.ndarray  # HxWxC float32 softmax scores


class Timing(NamedTuple):
    """Milliseconds of one ``predict``/``predict_batch`` call, by phase. A backend that runs
    pre/post-processing on its device (TensorRT's fast path, a Triton server) reports it all
    as ``infer_ms``."""

    preprocess_ms: float
    infer_ms: float
    postprocess_ms: float

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.infer_ms + self.postprocess_ms


class _Buffers:
    """One thread's preallocated tensors (input batch, argmax scratch)."""

    def __init__(self, n: int, wh: Tuple[int, int], num_classes: int) -> None:
        w, h = wh
        self.input = np.zeros((n, 3, h, w), dtype=np.float32)
        self.best = np.empty((h, w), dtype=np.float32)
        self.small = np.empty((h, w), dtype=np.uint8)


class Segmenter:
    """A segmentation model ready for frames: use ``Segmenter.open(path)``.

    >>> with Segmenter.open("models/cifrenet_cityscapes_640x360_fp32.onnx") as seg:
    ...     mask = seg.predict(frame)              # HxW uint8 class ids
    ...     view = seg.overlay(frame, mask, 0.5)   # HxWx3 BGR
    """

    def __init__(
        self,
        backend: Backend,
        manifest: Manifest,
        wh: Tuple[int, int],
        path: str,
        reason: str,
    ) -> None:
        self._backend = backend
        self._manifest = manifest
        self._wh = wh
        self.path = path
        #: why this backend was chosen (one line, printed by the CLI)
        self.reason = reason
        self._mean = list(manifest.mean_bgr)
        self._scale = manifest.scale
        self._num_classes = manifest.num_classes
        self._lut = palette_lut(manifest.palette_rgb)
        self._local = threading.local()
        self._fast = getattr(backend, "predict_frame", None)
        self._closed = False

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: Union[str, Path],
        device: str = "auto",
        backend: Optional[str] = None,
        precision: Optional[str] = None,
        warmup: int = 2,
        threads: Optional[int] = None,
        resolution: Resolution = None,
        timeout: Optional[float] = None,
    ) -> "Segmenter":
        """Open a model file with the backend its format (and this machine) calls for.

        ``device``: "auto", "cpu", "cuda", "cuda:N" or "tensorrt" (ONNX Runtime's TensorRT
        provider). ``backend`` overrides the choice ("torch", "onnxruntime", "openvino",
        "tensorrt"; see ``backends.choose_backend`` for the rule). ``precision`` must match
        the file except where the backend can lower it itself (torch and ORT-TensorRT fp16).
        ``resolution`` picks a size inside a dynamic model's range (default: its 'opt').
        ``warmup`` inferences run here, so the first real frame is not the slow one.

        ``path`` may also be a Triton server's model, ``grpc://HOST:PORT/NAME`` or
        ``http://...`` (``cifrenet-edge serve``): a Segmenter over a ``runtime.remote`` backend,
        same API, whose calls fail within ``timeout`` seconds (default 10) when the server is
        down. The server chooses device, backend, precision and resolution there.
        """
        if is_remote(path):
            return _open_remote(
                str(path), device, backend, precision, threads, resolution, timeout, warmup
            )
        if timeout is not None:
            raise ConfigError("timeout= applies to Triton URLs (grpc://, http://), not to files")
        path = Path(path).expanduser()
        manifest = open_manifest(path)  # validated where it is read (or derived)
        wh = manifest.input_wh(resolution)
        name, reason = choose_backend(str(path), manifest, device, backend)
        if name == "onnxruntime" and parse_device(device)[0] in ("cuda", "tensorrt"):
            _check_ort_gpu()
        batch = manifest.call_batch
        impl = load_backend(
            name,
            str(path),
            manifest,
            (batch, 3, wh[1], wh[0]),
            device=device,
            precision=precision,
            threads=threads,
        )
        seg = cls(impl, manifest, wh, str(path), reason)
        try:
            seg.warmup(warmup)
        except BaseException:
            seg.close()
            raise
        return seg

    def warmup(self, iterations: int = 2) -> None:
        """Run the backend on a blank input: allocators, kernels and caches get ready.

        A device fast path (``predict_frame``) is warmed too: its first call would otherwise
        compile GPU kernels (CuPy's argmax) on the first real frame.
        """
        blank = np.zeros((self._wh[1], self._wh[0], 3), dtype=np.uint8)
        if not self._backend.returns_logits:  # a server's model: blank frames through it
            for _ in range(max(int(iterations), 0)):
                self._backend.predict_frames([blank])
            return
        x = self._buffers().input
        for _ in range(max(int(iterations), 0)):
            self._backend.infer(x)
            if self._fast is not None:
                self._fast(blank)

    # -- properties -----------------------------------------------------------------------
    @property
    def manifest(self) -> Manifest:
        return self._manifest

    @property
    def classes(self) -> List[str]:
        return list(self._manifest.classes)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def resolution(self) -> Tuple[int, int]:
        """(width, height) the network runs at."""
        return self._wh

    @property
    def backend(self) -> Backend:
        return self._backend

    @property
    def last_timing(self) -> Optional[Timing]:
        """Phase timings of this thread's last ``predict``/``predict_batch`` (None before one):
        per thread, so a camera loop reads its own call's figures even with other callers."""
        return getattr(self._local, "timing", None)

    @property
    def palette_bgr(self) -> np.ndarray:
        """num_classes x 3 uint8, BGR (OpenCV's order)."""
        return self._lut[: self._num_classes].copy()

    # -- inference ------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"Segmenter for {self.path} is closed: open a new one")

    def _buffers(self) -> _Buffers:
        buf = getattr(self._local, "buffers", None)
        if buf is None:
            n = self._backend.input_shape[0]
            buf = _Buffers(n, self._wh, self._num_classes)
            self._local.buffers = buf
        return buf

    def _infer(self, frames: Sequence[np.ndarray], buf: _Buffers, clock: List[float]) -> np.ndarray:
        """Preprocess ``frames`` into the thread's input buffer and run the backend; the two
        phases' seconds are added to ``clock[0]`` and ``clock[1]``."""
        t0 = time.perf_counter()
        k = len(frames)
        for i, frame in enumerate(frames):
            normalize_into(resize_bgr(frame, self._wh), self._mean, self._scale, buf.input[i])
        if not self._backend.dynamic_batch and k < buf.input.shape[0]:
            buf.input[k:] = 0.0  # a fixed-batch model runs padded; the extra rows are dropped
        t1 = time.perf_counter()
        logits = self._backend.infer(buf.input[:k] if self._backend.dynamic_batch else buf.input)
        clock[0] += t1 - t0
        clock[1] += time.perf_counter() - t1
        return logits

    def _record(self, clock: List[float]) -> None:
        self._local.timing = Timing(*(1000.0 * s for s in clock))

    def _post(
        self, logits: np.ndarray, hw: Tuple[int, int], probabilities: bool, buf: _Buffers
    ) -> Any:
        h, w = hw
        if probabilities:
            probs = softmax_(resize_logits(logits, (w, h)))
            return Prediction(np.argmax(probs, axis=-1).astype(np.uint8), probs)
        small = argmax_classes(logits, out=buf.small, best=buf.best)
        return resize_mask(small, (w, h))

    @overload
    def predict(self, frame: np.ndarray) -> np.ndarray: ...

    @overload
    def predict(self, frame: np.ndarray, probabilities: Literal[False]) -> np.ndarray: ...

    @overload
    def predict(self, frame: np.ndarray, probabilities: Literal[True]) -> Prediction: ...

    def predict(self, frame: np.ndarray, probabilities: bool = False) -> Any:
        """HxWx3 uint8 BGR -> HxW uint8 class ids at the frame's size.

        The class map is the argmax at the network resolution, resized nearest-neighbour to the
        frame (see ``postprocess``: 14x cheaper than resizing logits, 98%+ pixels identical).
        With ``probabilities=True``: a ``Prediction`` ``(mask, probs)``, probs HxWxC float32
        softmax scores of the bilinearly resized logits and mask their argmax (so the two
        always agree; it may differ from the fast path's mask on a thin band of class
        boundaries). ``last_timing`` then holds this call's phase timings.
        Bad frames raise ``FrameError`` (a camera loop drops the frame and goes on); nothing
        else about the frame is assumed, its size may change every call.
        """
        self._check_open()
        frame = check_frame(frame)
        clock = [0.0, 0.0, 0.0]
        if self._fast is not None and not probabilities:
            t0 = time.perf_counter()
            mask = self._fast(frame)
            clock[1] = time.perf_counter() - t0
            self._record(clock)
            return mask
        buf = self._buffers()
        logits = self._infer([frame], buf, clock)
        t0 = time.perf_counter()
        out = self._post(logits[0], frame.shape[:2], probabilities, buf)
        clock[2] = time.perf_counter() - t0
        self._record(clock)
        return out

    def predict_batch(self, frames: Sequence[np.ndarray], probabilities: bool = False) -> List[Any]:
        """``predict`` for several frames, batched as far as the model allows."""
        self._check_open()
        frames = list(frames)
        for i, frame in enumerate(frames):
            try:
                check_frame(frame)
            except FrameError as exc:
                raise FrameError(f"frame {i}: {exc}") from None
        clock = [0.0, 0.0, 0.0]
        if not self._backend.returns_logits:  # same-size frames travel in one request
            if probabilities:
                raise ConfigError(self._backend.why_no_logits())
            t0 = time.perf_counter()
            masks = list(self._backend.predict_frames(frames))
            clock[1] = time.perf_counter() - t0
            self._record(clock)
            return masks
        buf = self._buffers()
        step = buf.input.shape[0] if not self._backend.dynamic_batch else self._backend.max_batch
        if step > buf.input.shape[0]:
            buf = self._batch_buffers(step)
        results = []  # type: List[Any]
        for start in range(0, len(frames), step):
            chunk = frames[start : start + step]
            logits = self._infer(chunk, buf, clock)
            t0 = time.perf_counter()
            for i, frame in enumerate(chunk):
                results.append(self._post(logits[i], frame.shape[:2], probabilities, buf))
            clock[2] += time.perf_counter() - t0
        self._record(clock)
        return results

    def _batch_buffers(self, n: int) -> _Buffers:
        buf = getattr(self._local, "batch_buffers", None)
        if buf is None or buf.input.shape[0] != n:
            buf = _Buffers(n, self._wh, self._num_classes)
            self._local.batch_buffers = buf
        return buf

    # -- drawing --------------------------------------------------------------------------
    def colorize(self, mask: np.ndarray) -> np.ndarray:
        """HxW class ids -> HxWx3 uint8 BGR in the model's palette (ignore/unknown: black)."""
        mask = np.asarray(mask)
        if mask.dtype != np.uint8 or mask.ndim != 2:
            raise FrameError(
                f"mask must be HxW uint8 class ids, got {mask.dtype} {mask.shape}: pass what "
                "predict() returned"
            )
        return self._lut[mask]

    def overlay(self, frame: np.ndarray, mask: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """The frame with the colourised mask blended in: ``(1-alpha)*frame + alpha*colours``."""
        frame = check_frame(frame)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"alpha {alpha} is outside 0..1: 0 shows the frame, 1 the mask")
        if tuple(np.shape(mask)) != frame.shape[:2]:
            raise FrameError(
                f"mask {tuple(np.shape(mask))} and frame {frame.shape[:2]} differ in size: pass "
                "the mask predict() returned for this frame"
            )
        colours = self.colorize(mask)
        return cv2.addWeighted(frame, 1.0 - float(alpha), colours, float(alpha), 0.0)

    # -- lifetime -------------------------------------------------------------------------
    def close(self) -> None:
        """Free the backend; later calls raise ClosedError. Idempotent."""
        if not self._closed:
            self._closed = True
            self._backend.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        b = self._backend
        return (
            f"Segmenter({self.path!r}, backend={b.name}, device={b.device}, "
            f"precision={b.precision}, resolution={self._wh[0]}x{self._wh[1]})"
        )
