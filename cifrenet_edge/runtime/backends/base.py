"""The one interface every inference backend implements (Polygraphy's runner idea, smaller).

A backend only translates "NCHW float32 in, NCHW float32 logits out" to its library. It knows
nothing of frames, resizing, palettes or argmax: the ``Segmenter`` owns pre/post-processing so
that every backend is checked against the same reference path, and ``bench`` can time
``infer`` alone (compute only, trtexec's "GPU compute time" idea on the host side).

Ownership is explicit: whoever constructs a backend calls ``close()`` (or uses ``with``); a
backend frees exactly what it created (sessions, compiled models, contexts, streams, device
buffers) and nothing it was given.

Contract for backend modules (``runtime/backends/<name>.py``), so ``load_backend`` can build any
of them the same way:

* the module imports its library lazily or at module import time, but never torch/onnx unless
  that *is* its library; importing the module on a machine without the library must raise
  ``ImportError`` (``load_backend`` turns that into ``BackendUnavailableError``);
* it defines a ``Backend`` subclass (named ``<Name>Backend``: ``TorchBackend``,
  ``OnnxRuntimeBackend``, ``OpenVINOBackend``, ``TensorRTBackend``) whose constructor takes
  keyword arguments ``path`` (str), ``manifest`` (dict, already validated), ``input_shape``
  ((n, 3, h, w) the Segmenter will feed), ``device`` (str: "auto", "cpu", "cuda", "cuda:1",
  "tensorrt"...), ``precision`` (None = the file's), ``threads`` (None = library default) and
  ignores nothing silently: an impossible request raises ``BackendUnavailableError`` or
  ``ConfigError`` with the fix;
* ``infer`` must be safe to call from several threads at once (own lock, per-thread request
  or context, or a library that is documented thread-safe);
* optional fast path: ``predict_frame(frame) -> HxW uint8`` for backends that do pre/post on
  the device (TensorRT); the Segmenter uses it when present and probabilities are not asked.

numpy only, Python 3.8 syntax.
"""

import threading
from typing import Any, Dict, Optional, Tuple

import numpy as np

from ...errors import ClosedError
from ...manifest import Manifest, ManifestLike

Shape = Tuple[int, int, int, int]


class Backend:
    """Base class: ``infer`` NCHW float32 -> NCHW float32 logits, ``close`` frees resources."""

    #: library name: "torch", "onnxruntime", "openvino", "tensorrt"
    name = "base"
    #: False for a model that returns class maps only (a ``cifrenet-edge serve`` model): it
    #: then has ``predict_frames(frames) -> [HxW uint8]``, and ``why_no_logits()`` says why
    #: ``infer`` and probabilities are refused
    returns_logits = True

    def __init__(
        self,
        path: str,
        manifest: ManifestLike,
        input_shape: Shape,
        device: str = "auto",
        precision: Optional[str] = None,
        threads: Optional[int] = None,
    ) -> None:
        self.path = str(path)
        self.manifest = Manifest.from_dict(manifest, path)  # a dict is checked and typed
        self.input_shape = tuple(int(v) for v in input_shape)  # type: Tuple[int, ...]
        self.requested_device = device
        #: resolved device, e.g. "cpu", "cuda:0" (set by the subclass once it knows)
        self.device = "cpu"
        #: precision the computation really runs in ("fp32", "fp16", "int8")
        self.precision = precision or self.manifest.precision
        self.threads = threads
        #: largest batch one ``infer`` call accepts (the Segmenter chunks bigger batches)
        self.max_batch = int(self.input_shape[0])
        #: True when ``infer`` accepts any batch size from 1 to ``max_batch``; False when the
        #: model was exported with a fixed batch (the Segmenter pads to ``input_shape[0]``)
        self.dynamic_batch = False
        self.closed = False
        self._close_lock = threading.Lock()

    def why_no_logits(self) -> str:
        return ""

    # -- what subclasses implement -------------------------------------------------------
    def infer(self, x: np.ndarray) -> np.ndarray:
        """NCHW float32 (contiguous) -> NCHW float32 logits; the caller owns the result."""
        raise NotImplementedError

    def _close(self) -> None:
        """Free what this backend created. Called once."""

    # -- shared behaviour ----------------------------------------------------------------
    def close(self) -> None:
        """Free the library objects; idempotent and safe to call from any thread."""
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
        self._close()

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(
                f"{self.name} backend for {self.path} is closed: open a new Segmenter"
            )

    def describe(self) -> Dict[str, Any]:
        """What runs, for logs and bench reports."""
        return {
            "backend": self.name,
            "device": self.device,
            "precision": self.precision,
            "input_shape": list(self.input_shape),
            "max_batch": self.max_batch,
        }

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(device={self.device!r}, precision={self.precision!r}, "
            f"input_shape={self.input_shape})"
        )


def parse_device(device: Optional[str]) -> Tuple[str, int]:
    """'auto' | 'cpu' | 'cuda[:i]' | 'gpu[:i]' | 'tensorrt[:i]' -> (kind, index)."""
    from ...errors import ConfigError

    text = (device or "auto").strip().lower()
    kind, _, index = text.partition(":")
    if kind == "gpu":
        kind = "cuda"
    if kind == "trt":
        kind = "tensorrt"
    if kind not in ("auto", "cpu", "cuda", "tensorrt") or (index and not index.isdigit()):
        raise ConfigError(
            f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or tensorrt (ONNX Runtime's "
            "TensorRT provider)"
        )
    return kind, int(index or 0)


def fixed_precision(backend: str, requested: Optional[str], manifest: Manifest) -> str:
    """The file's precision; a request for another one is an error naming the fix.

    ONNX and engine files carry their precision in their weights (Q/DQ nodes, FP16 tensors,
    the engine's kernels); a runtime flag cannot change it, so asking is a mistake to report,
    not to ignore.
    """
    from ...errors import ConfigError

    have = manifest.precision
    if requested is None or requested.lower() == have:
        return have
    raise ConfigError(
        f"the {backend} backend runs this {have} model as {have}, not {requested}: export a "
        f"{requested} model (cifrenet-edge export --precision {requested}) or drop precision="
    )
