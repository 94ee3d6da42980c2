"""A simulated ``pycuda.driver``, over the simulated CUDA of ``cuda_sim.py``.

pycuda cannot be installed here (source only, needs the CUDA toolkit), and Xavier / JetPack 5
images with Python 3.8 use it instead of cuda-python, so ``trt.cuda.PyCuda`` runs on this
stand-in of its real API. Names, signatures and behaviour follow inducer/pycuda v2026.1,
``src/wrapper/wrap_cudadrv.cpp`` (the bindings) and ``src/cpp/cuda.hpp`` (what they do):

* ``import pycuda.driver`` needs libcuda (the extension links it): ImportError without one;
  ``init(flags=0)`` first, else every call fails with "initialization error"; ``cuInit``
  without a GPU raises ``RuntimeError`` (pycuda's own, "no CUDA-capable device is detected").
* Contexts: a per-thread stack (``context_stack``). ``Device.retain_primary_context()``
  makes none current; ``ctx.push()`` pushes, the static ``Context.pop()`` pops and raises
  ``LogicError`` on an empty stack. Objects that are ``context_dependent`` (``Stream``,
  ``Event``, ``mem_alloc``'s ``DeviceAllocation``, ``pagelocked_empty``'s host allocation)
  need a current context when made: "explicit_context_dependent failed: invalid device context
  - no currently active context?"; driver calls without one fail "invalid device context".
* ``Stream(flags=0)``: 0 is CU_STREAM_DEFAULT, a blocking stream; there is no stream-flag
  constant in pycuda. ``handle`` is the CUstream as an int. Streams and events are destroyed
  with their Python object.
* ``mem_alloc(bytes)`` -> ``DeviceAllocation`` (``int()`` is the pointer, ``free()``);
  ``pagelocked_empty(shape, dtype, order="C", mem_flags=0)`` -> a numpy array whose ``base`` is
  the ``PagelockedHostAllocation`` (``free()``); ``memcpy_htod_async(dest, src, stream=None)``
  and ``memcpy_dtoh_async(dest, src, stream=None)`` (``None``: the legacy stream);
  ``Event(flags=0)`` with ``record(stream=None)`` and ``synchronize()`` returning the event and
  ``end.time_since(start)`` in ms; ``get_version()`` (the toolkit pycuda was built with, as a
  tuple) and ``get_driver_version()`` (an int).
* Errors: ``pycuda._driver.Error`` with ``LogicError``, ``RuntimeError``, ``MemoryError`` and
  ``LaunchError`` under it (``translate_cuda_error``), messages "<routine> failed: <cuda error
  string>".
"""

from __future__ import annotations

import threading
from typing import Any, List, Optional, Tuple

import numpy as np

from .cuda_sim import SimCudart

_CUDA_ERRORS = {  # cuGetErrorString
    1: "invalid argument",
    2: "out of memory",
    3: "initialization error",
    100: "no CUDA-capable device is detected",
    201: "invalid device context",
    400: "invalid resource handle",
    600: "device not ready",
    700: "an illegal memory access was encountered",
    900: "operation not permitted when stream is capturing",
}


def import_pycuda_driver(sim: SimCudart, toolkit: Tuple[int, int, int] = (11, 4, 0)) -> Any:
    """``import pycuda.driver`` on this machine: ImportError without libcuda."""
    if sim.driver_version <= 0:
        raise ImportError("libcuda.so.1: cannot open shared object file: No such file or directory")
    return SimPyCudaDriver(sim, toolkit)


class SimPyCudaDriver:
    """The ``pycuda.driver`` module as far as ``trt.cuda.PyCuda`` and a user touch it."""

    def __init__(self, sim: SimCudart, toolkit: Tuple[int, int, int]) -> None:
        self.sim, self.toolkit = sim, toolkit
        self._initialised = False
        self._tls = threading.local()
        #: every driver routine called, by pycuda's routine name (a test reads it)
        self.calls: List[str] = []
        drv = self

        class Error(Exception):
            pass

        class LogicError(Error):
            pass

        class RuntimeError_(Error):
            pass

        class MemoryError_(Error):
            pass

        class LaunchError(Error):
            pass

        RuntimeError_.__name__ = "RuntimeError"
        MemoryError_.__name__ = "MemoryError"
        self.Error, self.LogicError, self.LaunchError = Error, LogicError, LaunchError
        self.RuntimeError, self.MemoryError = RuntimeError_, MemoryError_

        class Context:
            def __init__(self, device: int) -> None:
                self.device = device

            def push(self) -> None:
                drv._check("cuCtxPushCurrent")
                drv._stack().append(self)

            @staticmethod
            def pop() -> None:
                if not drv._stack():
                    raise LogicError(
                        "context::pop failed: invalid device context - cannot pop non-current "
                        "context"
                    )
                drv._stack().pop()

            @staticmethod
            def get_current() -> Optional[Context]:
                stack = drv._stack()
                return stack[-1] if stack else None

            @staticmethod
            def synchronize() -> None:
                drv._current("cuCtxSynchronize")
                drv._rt("cuCtxSynchronize", sim._drain_all)

        class Device:
            def __init__(self, ordinal: int) -> None:
                drv._check("cuDeviceGet")
                if not 0 <= int(ordinal) < sim.device_count:
                    raise LogicError("cuDeviceGet failed: invalid device ordinal")
                self.ordinal = int(ordinal)

            @staticmethod
            def count() -> int:
                drv._check("cuDeviceGetCount")
                return sim.device_count

            def name(self) -> str:
                return sim.name

            def compute_capability(self) -> Tuple[int, int]:
                return tuple(sim.cc)

            def total_memory(self) -> int:
                return sim.memory_bytes

            def retain_primary_context(self) -> Context:
                drv._check("cuDevicePrimaryCtxRetain")
                return Context(self.ordinal)

        class Stream:
            def __init__(self, flags: int = 0) -> None:
                drv._dependent()
                self.flags = int(flags)
                self.handle = drv._rt(
                    "cuStreamCreate", lambda: sim._cudaStreamCreateWithFlags(self.flags)
                )

            def synchronize(self) -> None:
                drv._current("cuStreamSynchronize")
                drv._rt("cuStreamSynchronize", lambda: sim._cudaStreamSynchronize(self.handle))

            def __del__(self) -> None:  # ~stream: cuStreamDestroy in its own context
                handle = getattr(self, "handle", None)
                if handle is not None:
                    with sim._lock:
                        sim._cudaStreamDestroy(handle)

        class Event:
            def __init__(self, flags: int = 0) -> None:
                drv._dependent()
                self.h = drv._rt("cuEventCreate", sim._cudaEventCreate)

            def record(self, stream: Optional[Stream] = None) -> Event:
                drv._current("cuEventRecord")
                h = 0 if stream is None else stream.handle
                drv._rt("cuEventRecord", lambda: sim._cudaEventRecord(self.h, h))
                return self

            def synchronize(self) -> Event:
                drv._current("cuEventSynchronize")
                drv._rt("cuEventSynchronize", lambda: sim._cudaEventSynchronize(self.h))
                return self

            def time_since(self, start: Event) -> float:
                drv._current("cuEventElapsedTime")
                return float(
                    drv._rt(
                        "cuEventElapsedTime", lambda: sim._cudaEventElapsedTime(start.h, self.h)
                    )
                )

            def __del__(self) -> None:
                h = getattr(self, "h", None)
                if h is not None:
                    with sim._lock:
                        sim._cudaEventDestroy(h)

        class DeviceAllocation:
            def __init__(self, ptr: int) -> None:
                self.ptr, self.valid = int(ptr), True

            def __int__(self) -> int:
                return self.ptr

            __index__ = __int__

            def free(self) -> None:
                if not self.valid:
                    raise LogicError("device_allocation::free failed: invalid resource handle")
                drv._rt("cuMemFree", lambda: sim._cudaFree(self.ptr))
                self.valid = False

        class PagelockedHostAllocation:
            """The array's ``base``: numpy keeps it alive through ``__array_interface__``."""

            def __init__(self, ptr: int, shape: Tuple[int, ...], dtype: Any) -> None:
                self.ptr, self.valid = int(ptr), True
                self.__array_interface__ = {
                    "shape": shape,
                    "typestr": np.dtype(dtype).str,
                    "data": (int(ptr), False),
                    "version": 3,
                }

            def free(self) -> None:
                if self.valid:
                    drv._rt("cuMemFreeHost", lambda: sim._cudaFreeHost(self.ptr))
                    self.valid = False

        self.Context, self.Device, self.Stream, self.Event = Context, Device, Stream, Event
        self.DeviceAllocation, self.PagelockedHostAllocation = (
            DeviceAllocation,
            PagelockedHostAllocation,
        )

    # -- the machinery ------------------------------------------------------------------------
    def _stack(self) -> List[Any]:
        if not hasattr(self._tls, "stack"):
            self._tls.stack = []
        return self._tls.stack

    def stack_depth(self) -> int:
        """Contexts pushed and not popped on the calling thread."""
        return len(self._stack())

    def _check(self, routine: str) -> None:
        self.calls.append(routine)
        if not self._initialised:
            raise self.LogicError(f"{routine} failed: {_CUDA_ERRORS[3]}")

    def _current(self, routine: str) -> None:
        self._check(routine)
        if not self._stack():
            raise self.LogicError(f"{routine} failed: {_CUDA_ERRORS[201]}")

    def _dependent(self) -> None:
        """``context_dependent``'s constructor (``acquire_context``)."""
        self._check("explicit_context_dependent")
        if not self._stack():
            raise self.LogicError(
                "explicit_context_dependent failed: invalid device context - no currently "
                "active context?"
            )

    def _rt(self, routine: str, fn: Any) -> Any:
        """Run one simulated runtime step; a CUDA error is pycuda's exception."""
        with self.sim._lock:
            out = self.sim.sticky or fn()
        out = out if isinstance(out, tuple) else (out,)
        err = int(out[0])
        if err:
            text = f"{routine} failed: {_CUDA_ERRORS.get(err, f'error {err}')}"
            raise (self.MemoryError if err == 2 else self.LogicError)(text)
        return out[1] if len(out) > 1 else None

    # -- module functions ----------------------------------------------------------------------
    def init(self, flags: int = 0) -> None:
        self.calls.append("cuInit")
        if self.sim.device_count < 1:
            raise self.RuntimeError(f"cuInit failed: {_CUDA_ERRORS[100]}")
        self._initialised = True

    def get_version(self) -> Tuple[int, int, int]:
        return tuple(self.toolkit)

    def get_driver_version(self) -> int:
        self._check("cuDriverGetVersion")
        return int(self.sim.driver_version)

    def mem_alloc(self, nbytes: int) -> Any:
        self._dependent()
        ptr = self._rt("cuMemAlloc", lambda: self.sim._cudaMalloc(int(nbytes)))
        return self.DeviceAllocation(ptr)

    def pagelocked_empty(
        self, shape: Any, dtype: Any, order: str = "C", mem_flags: int = 0
    ) -> np.ndarray:
        self._dependent()
        dims = (int(shape),) if np.isscalar(shape) else tuple(int(d) for d in shape)
        nbytes = max(int(np.prod(dims)) * np.dtype(dtype).itemsize, 1)
        ptr = self._rt("cuMemHostAlloc", lambda: self.sim._cudaMallocHost(nbytes))
        return np.asarray(self.PagelockedHostAllocation(ptr, dims, dtype))

    def _copy(self, routine: str, dst: int, src: int, n: int, kind: int, stream: Any) -> None:
        self._current(routine)
        handle = 0 if stream is None else stream.handle
        self._rt(routine, lambda: self.sim._cudaMemcpyAsync(dst, src, n, kind, handle))

    def memcpy_htod_async(self, dest: Any, src: np.ndarray, stream: Any = None) -> None:
        _contiguous(src, "memcpy_htod_async")
        kind = int(self.sim.cudaMemcpyKind.cudaMemcpyHostToDevice)
        self._copy("cuMemcpyHtoDAsync", int(dest), src.ctypes.data, src.nbytes, kind, stream)

    def memcpy_dtoh_async(self, dest: np.ndarray, src: Any, stream: Any = None) -> None:
        _contiguous(dest, "memcpy_dtoh_async")
        kind = int(self.sim.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        self._copy("cuMemcpyDtoHAsync", dest.ctypes.data, int(src), dest.nbytes, kind, stream)


def _contiguous(a: Any, what: str) -> None:
    """``py_buffer_wrapper.get(..., PyBUF_ANY_CONTIGUOUS)``: a strided view is a TypeError."""
    if not isinstance(a, np.ndarray) or not (a.flags.c_contiguous or a.flags.f_contiguous):
        raise TypeError(f"{what}: the buffer is not contiguous")
