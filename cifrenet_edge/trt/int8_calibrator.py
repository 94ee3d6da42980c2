"""Implicit INT8 calibration (TensorRT 8.x/10.x) with a cache that cannot go stale.

Explicit Q/DQ INT8 is the default everywhere; the calibrator path exists because explicit
INT8 has been measured slower than calibrator INT8 on some older TensorRT versions
(NVIDIA/TensorRT#3492, #4365). TensorRT's calibration cache says nothing about what it was
computed from, so a cache reused after the images, the model or TensorRT changed silently
gives a wrong engine. Here the cache file name carries a key made of the calibration
fingerprint, the ONNX sha256 and the TensorRT version: change any of them and the cache is
recomputed. Removed in TensorRT 11 (callers refuse before reaching this module).

TensorRT calls the callbacks below from C++. An exception escaping them is not a Python
error there: the 8.2 bindings have no try/catch around them (``python/src/infer/pyInt8.cpp``
at tag 8.2.1: the process ends in std::terminate); 8.5+ catch it, print it, and take it as
"no more batches", so TensorRT finishes calibration on the frames seen so far and writes a
cache from them under a key that claims the whole set. So every callback catches here, keeps
the first exception in ``error``, answers "no more batches" / "no cache", writes no cache
once something failed, and the builder raises ``error`` after the build.
"""

import hashlib
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .._io import write_bytes_atomic


def calibration_cache_key(fingerprint: Dict[str, Any], onnx_sha256: str, trt_version: str) -> str:
    """Stable key of (calibration data, model, TensorRT version)."""
    blob = json.dumps(
        {"calibration": fingerprint, "onnx_sha256": onnx_sha256, "tensorrt": trt_version},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def calibration_cache_path(engine_path: Path, key: str) -> Path:
    return engine_path.with_name(f"{engine_path.stem}.calib-{key[:16]}.cache")


def make_entropy_calibrator(
    trt: Any,
    cuda: Any,
    batches: Sequence[np.ndarray],
    cache_path: Path,
    input_name: str = "input",
    batch_size: int = 1,
) -> Any:
    """An ``IInt8EntropyCalibrator2`` over preprocessed 1x3xhxw float32 batches.

    Built inside a function because the base class lives in the lazily imported TensorRT
    module. ``cuda`` is a ``trt.cuda.CudaApi``. ``batch_size``: the engine's static
    batch N; TensorRT reads N inputs from the pointer, so N consecutive frames are stacked
    (a 1-frame buffer would be read past its end). ``batches`` stays lazy (``calib.Batches``
    preprocesses on access): hundreds of float32 frames at once do not fit a Jetson.
    """
    base = trt.IInt8EntropyCalibrator2
    n = max(int(batch_size), 1)

    class EntropyCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)  # pybind11 trampolines need the base __init__ called
            self.batches = batches
            self.count = len(batches) // n
            self.index = 0
            self.cache_path = Path(cache_path)
            self.nbytes = int(np.asarray(batches[0]).nbytes) * n if self.count else 4
            self.stream = cuda.stream_create()
            self.device_ptr = cuda.malloc(self.nbytes)
            self.used_cache = False
            self.wrote_cache = False
            self.error = None  # type: Optional[BaseException]

        def get_batch_size(self) -> int:
            return n

        def _keep(self, exc: BaseException) -> None:
            if self.error is None:
                self.error = exc

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            if self.error is not None or self.index >= self.count:
                return None  # tells TensorRT calibration is done
            try:
                rows = [self.batches[self.index * n + k] for k in range(n)]
                batch = np.ascontiguousarray(np.concatenate(rows, axis=0), dtype=np.float32)
                self.index += 1
                cuda.htod_async(self.device_ptr, batch, self.stream)
                cuda.stream_sync(self.stream)
                return [int(self.device_ptr) for _ in names]
            except BaseException as exc:  # Ctrl-C arrives here too
                self._keep(exc)
                return None

        def read_calibration_cache(self) -> Optional[bytes]:
            try:
                if self.cache_path.is_file():
                    data = self.cache_path.read_bytes()
                    self.used_cache = True
                    return data
            except BaseException as exc:
                self._keep(exc)
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if self.error is not None:
                return  # computed from partial data: never stored under the full set's key
            try:
                write_bytes_atomic(self.cache_path, bytes(cache))
                self.wrote_cache = True
            except BaseException as exc:
                self._keep(exc)

        def release(self) -> None:
            if self.device_ptr:
                cuda.free(self.device_ptr)
                self.device_ptr = 0
            cuda.stream_destroy(self.stream)

    return EntropyCalibrator()
