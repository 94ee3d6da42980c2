"""The few CUDA calls the TensorRT backend needs, over cuda-python or pycuda.

Why a wrapper: JetPack 4/5 images often have pycuda and no cuda-python wheel for their
Python, desktops have cuda-python, and cuda-python itself moved its module
(``cuda.bindings.runtime`` from 12.6, ``cuda.cudart`` removed in 13). The backend talks to
one small interface and never to either library directly.

Versions: cuda-python's major must not exceed the CUDA major the NVIDIA driver supports
(cuda-python 13 needs an R580+ driver, NVIDIA/cutlass#2866); JetPack 6 and older desktop
drivers need cuda-python 12 (``cifrenet-edge[cuda12]``). The mismatch is told apart from "no
driver" with ``cudaDriverGetVersion`` (0 without a driver) against ``cudaRuntimeGetVersion``
(the bindings' own CUDA), named with its fix, and ``open_cuda`` then falls back to pycuda.
No driver at all is ``NoCudaDeviceError``: cuda-python 13.x says so with error 35, 11.8/12.x
raise ``RuntimeError: Failed to dlopen libcuda.so.1`` (the real wheels, run without a GPU),
and ``open_cuda`` tries pycuda after either.
Signatures follow the wheels' own docstrings (``tests/data/cuda_python_runtime_api.json``,
11.8.7 / 12.6.2 / 13.4.4); the one call that differs, ``cudaGraphInstantiate``, is avoided:
``cudaGraphInstantiateWithFlags(graph, flags)`` is the same in all three.

Threads: robot callbacks run on threads the backend did not create. With cuda-python the
runtime API's primary context is bound to a thread by ``cudaSetDevice``; with pycuda the
retained primary context is pushed and popped around every call (never ``pycuda.autoinit``,
which binds a context to the importing thread only). ``activate()`` does the right one.
Streams are non-blocking with both libraries (pycuda's ``Stream()`` default, flags 0, is a
blocking stream that serialises with every other library's legacy-stream work).

numpy only, imported lazily; Python 3.8 syntax.
"""

import contextlib
import ctypes
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import BackendUnavailableError

CUDA_HINT = (
    "install cuda-python (`pip install 'cifrenet-edge[cuda]'`, needs Python >= 3.9) or pycuda "
    "(JetPack: `pip3 install pycuda`), and an NVIDIA driver"
)

# cuda-python release line per CUDA major: what to install for a driver of that major.
_CUDA_PYTHON_FOR_MAJOR = {
    11: "pip install 'cuda-python>=11.8,<12' (cifrenet-edge[cuda11])",
    12: "pip install 'cuda-python>=12.6,<13' (cifrenet-edge[cuda12])",
    13: "pip install 'cuda-python>=13,<14' (cifrenet-edge[cuda13])",
}


NO_DRIVER_HINT = (
    "no NVIDIA driver or GPU here: run on a machine with an NVIDIA GPU and its driver, or use "
    "the ONNX model on the CPU"
)

#: CUstream_flags.CU_STREAM_NON_BLOCKING (cuda.h): pycuda exports no stream-flag constant
#: (wrap_cudadrv.cpp binds ``Stream(flags=0)`` only), so the driver API's value is used.
CU_STREAM_NON_BLOCKING = 0x1


class CudaVersionMismatchError(BackendUnavailableError):
    """cuda-python built for a newer CUDA major than the NVIDIA driver supports."""


class NoCudaDeviceError(BackendUnavailableError):
    """No NVIDIA driver (libcuda) or no GPU: the other CUDA library is still worth a try."""


def _version_text(v: int) -> str:
    """CUDA encodes 12.6 as 12060."""
    return f"{v // 1000}.{(v % 1000) // 10}" if v > 0 else "none"


def import_cudart() -> Any:
    """cuda-python's runtime module, new layout first; ImportError when absent."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6 (13.x: only this)

        return cudart
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6

        return cudart


class CudaApi:
    """Device memory, pinned host memory, streams, events and graphs on one device."""

    library = "none"

    def __init__(self, device_id: int = 0) -> None:
        self.device_id = int(device_id)

    # context handling -------------------------------------------------------------------
    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        raise NotImplementedError

    # memory / streams / events (handles are ints or library objects; ptrs are ints) -----
    def malloc(self, nbytes: int) -> int:
        raise NotImplementedError

    def free(self, ptr: int) -> None:
        raise NotImplementedError

    def pinned_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        raise NotImplementedError

    def free_pinned(self, arr: np.ndarray) -> None:
        raise NotImplementedError

    def stream_create(self) -> Any:
        raise NotImplementedError

    def stream_handle(self, stream: Any) -> int:
        raise NotImplementedError

    def stream_sync(self, stream: Any) -> None:
        raise NotImplementedError

    def stream_destroy(self, stream: Any) -> None:
        raise NotImplementedError

    def htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        raise NotImplementedError

    def dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        raise NotImplementedError

    def event_create(self) -> Any:
        raise NotImplementedError

    def event_record(self, event: Any, stream: Any) -> None:
        raise NotImplementedError

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        raise NotImplementedError

    def event_destroy(self, event: Any) -> None:
        raise NotImplementedError

    # CUDA graphs (cuda-python only) -----------------------------------------------------
    supports_graphs = False

    def graph_capture_begin(self, stream: Any) -> None:
        raise BackendUnavailableError(
            "CUDA graphs need cuda-python here (pycuda has no graph capture): "
            "install cuda-python or run without cuda_graph"
        )

    def graph_capture_end(self, stream: Any) -> Any:
        raise NotImplementedError

    def graph_capture_abort(self, stream: Any) -> None:
        """End a capture that failed; free what it made and clear the error it left."""
        raise NotImplementedError

    def clear_last_error(self) -> None:
        """Reset this thread's CUDA runtime error after a failure that was handled."""
        return None

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        raise NotImplementedError

    def graph_destroy(self, graph_exec: Any) -> None:
        raise NotImplementedError

    # facts --------------------------------------------------------------------------
    def device_info(self) -> Dict[str, Any]:
        raise NotImplementedError


class CudaPython(CudaApi):
    """cuda-python (NVIDIA's own samples use it since TensorRT 8.6)."""

    library = "cuda-python"
    supports_graphs = True

    def __init__(self, device_id: int = 0, cudart: Any = None) -> None:
        super().__init__(device_id)
        self.rt = cudart if cudart is not None else import_cudart()
        self._pinned = {}  # type: Dict[int, int]
        try:
            err, count = self.rt.cudaGetDeviceCount()
        except RuntimeError as exc:
            # cuda-python 11.8/12.x load libcuda on first use and raise "Failed to dlopen
            # libcuda.so.1" (later calls: 'Function "cuInit" not found') where 13.x returns
            # cudaErrorInsufficientDriver; seen with the real 11.8.7 and 12.6.2 wheels.
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NoCudaDeviceError(
                f"CUDA cudaGetDeviceCount failed: {line} ({NO_DRIVER_HINT})"
            ) from None
        if int(err) == 35:  # cudaErrorInsufficientDriver: no driver, or one too old for us
            self._check_driver_version()
        count = self._call((err, count), "cudaGetDeviceCount")
        if int(count) <= self.device_id:
            raise BackendUnavailableError(
                f"CUDA device {self.device_id} requested but {count} found: "
                f"pick device=cuda:0..{max(int(count) - 1, 0)}"
            )
        self._call(self.rt.cudaSetDevice(self.device_id), "cudaSetDevice")

    def _versions(self) -> Tuple[int, int]:
        """(driver's CUDA, bindings' CUDA) as 12060-style ints; 0 when unknown / no driver."""
        versions = []
        for fn in ("cudaDriverGetVersion", "cudaRuntimeGetVersion"):
            try:
                err, value = getattr(self.rt, fn)()
                versions.append(int(value) if int(err) == 0 and value else 0)
            except Exception:  # a broken install must still get the one-line error below
                versions.append(0)
        return versions[0], versions[1]

    def _check_driver_version(self) -> None:
        """Error 35 with a driver present: the driver is older than cuda-python's CUDA."""
        driver, runtime = self._versions()
        if driver <= 0 or runtime <= 0 or driver // 1000 >= runtime // 1000:
            return  # no driver at all (or a minor-version gap): the generic error says so
        fix = _CUDA_PYTHON_FOR_MAJOR.get(
            driver // 1000, f"install the cuda-python release for CUDA {driver // 1000}"
        )
        raise CudaVersionMismatchError(
            f"cuda-python here is built for CUDA {_version_text(runtime)} but the NVIDIA driver "
            f"supports CUDA {_version_text(driver)} (cuda-python 13 needs an R580+ driver; "
            f"JetPack 6 ships CUDA 12): {fix}, or update the NVIDIA driver"
        )

    def _call(self, result: Any, what: str) -> Any:
        """cuda-python returns (err, value...) tuples; turn a failure into one line."""
        if isinstance(result, tuple):
            err, rest = result[0], result[1:]
        else:
            err, rest = result, ()
        if int(err) != 0:
            name = getattr(err, "name", str(err))
            if int(err) in (35, 100):  # insufficient driver / no device
                raise NoCudaDeviceError(f"CUDA {what} failed: {name} ({NO_DRIVER_HINT})")
            raise BackendUnavailableError(f"CUDA {what} failed: {name}")
        if not rest:
            return None
        return rest[0] if len(rest) == 1 else rest

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        # Binds the device's primary context to the calling thread; cheap when it already is.
        self._call(self.rt.cudaSetDevice(self.device_id), "cudaSetDevice")
        yield

    def malloc(self, nbytes: int) -> int:
        return int(self._call(self.rt.cudaMalloc(int(nbytes)), "cudaMalloc"))

    def free(self, ptr: int) -> None:
        self._call(self.rt.cudaFree(ptr), "cudaFree")

    def pinned_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dt.itemsize
        ptr = int(self._call(self.rt.cudaMallocHost(max(nbytes, 1)), "cudaMallocHost"))
        buf = (ctypes.c_byte * max(nbytes, 1)).from_address(ptr)
        arr = np.frombuffer(buf, dtype=dt, count=int(np.prod(shape))).reshape(tuple(shape))
        self._pinned[id(arr)] = ptr
        return arr

    def free_pinned(self, arr: np.ndarray) -> None:
        ptr = self._pinned.pop(id(arr), None)
        if ptr is not None:
            self._call(self.rt.cudaFreeHost(ptr), "cudaFreeHost")

    def stream_create(self) -> Any:
        # Non-blocking: while a *blocking* stream is being captured into a CUDA graph, any use
        # of the legacy default stream (another library's cudaMemcpy, CuPy or PyTorch on
        # stream 0, on any thread) is an error that invalidates the capture
        # (cudaErrorStreamCaptureImplicit, CUDA runtime docs of cudaStreamIsCapturing), and it
        # would serialise our copies with their work anyway.
        return self._call(
            self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking),
            "cudaStreamCreateWithFlags",
        )

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_sync(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def stream_destroy(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")

    def htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(
            self.rt.cudaMemcpyAsync(dst, src.ctypes.data, src.nbytes, kind, stream),
            "cudaMemcpyAsync(HtoD)",
        )

    def dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(
            self.rt.cudaMemcpyAsync(dst.ctypes.data, src, dst.nbytes, kind, stream),
            "cudaMemcpyAsync(DtoH)",
        )

    def event_create(self) -> Any:
        return self._call(self.rt.cudaEventCreate(), "cudaEventCreate")

    def event_record(self, event: Any, stream: Any) -> None:
        self._call(self.rt.cudaEventRecord(event, stream), "cudaEventRecord")

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        self._call(self.rt.cudaEventSynchronize(end), "cudaEventSynchronize")
        return float(self._call(self.rt.cudaEventElapsedTime(start, end), "cudaEventElapsedTime"))

    def event_destroy(self, event: Any) -> None:
        self._call(self.rt.cudaEventDestroy(event), "cudaEventDestroy")

    def graph_capture_begin(self, stream: Any) -> None:
        mode = self.rt.cudaStreamCaptureMode.cudaStreamCaptureModeThreadLocal
        self._call(self.rt.cudaStreamBeginCapture(stream, mode), "cudaStreamBeginCapture")

    def graph_capture_end(self, stream: Any) -> Any:
        graph = self._call(self.rt.cudaStreamEndCapture(stream), "cudaStreamEndCapture")
        try:
            # cudaGraphInstantiate is (graph, logBuffer, size) in cuda-python 11.x and
            # (graph, flags) from 12; ...WithFlags is (graph, flags) in 11.8, 12.x and 13.x.
            graph_exec = self._call(
                self.rt.cudaGraphInstantiateWithFlags(graph, 0), "cudaGraphInstantiateWithFlags"
            )
        except Exception:
            self.rt.cudaGraphDestroy(graph)  # best effort: the instantiate error is the news
            raise
        # The executable graph does not need its source graph: never leak either.
        try:
            self._call(self.rt.cudaGraphDestroy(graph), "cudaGraphDestroy")
        except Exception:
            self.rt.cudaGraphExecDestroy(graph_exec)
            raise
        return graph_exec

    def graph_capture_abort(self, stream: Any) -> None:
        """trtexec's ``endCaptureOnError`` (samples/common/sampleDevice.h, 8.5 to 11.1).

        The capture is ended whatever happened (a stream left capturing fails every later
        call); an invalidated capture returns no graph, a completed one is destroyed unused;
        then ``cudaGetLastError`` clears the error the failure left for this thread, so the
        next unrelated call's check does not report it.
        """
        err, graph = self.rt.cudaStreamEndCapture(stream)
        if int(err) == 0 and graph is not None:
            self.rt.cudaGraphDestroy(graph)
        self.clear_last_error()

    def clear_last_error(self) -> None:
        self.rt.cudaGetLastError()  # returns the error and resets it to cudaSuccess

    def graph_launch(self, graph_exec: Any, stream: Any) -> None:
        self._call(self.rt.cudaGraphLaunch(graph_exec, stream), "cudaGraphLaunch")

    def graph_destroy(self, graph_exec: Any) -> None:
        self._call(self.rt.cudaGraphExecDestroy(graph_exec), "cudaGraphExecDestroy")

    def device_info(self) -> Dict[str, Any]:
        prop = self._call(
            self.rt.cudaGetDeviceProperties(self.device_id), "cudaGetDeviceProperties"
        )
        name = prop.name
        if isinstance(name, bytes):
            name = name.split(b"\0", 1)[0].decode("utf-8", "replace")
        return {
            "name": str(name),
            "compute_capability": f"{prop.major}.{prop.minor}",
            "total_memory_mib": int(prop.totalGlobalMem) // (1 << 20),
            "cuda_runtime": _version_text(
                int(self._call(self.rt.cudaRuntimeGetVersion(), "cudaRuntimeGetVersion"))
            ),
            "cuda_driver": _version_text(
                int(self._call(self.rt.cudaDriverGetVersion(), "cudaDriverGetVersion"))
            ),
            "cuda_library": self.library,
        }


class PyCuda(CudaApi):
    """pycuda with the retained primary context pushed/popped around each call."""

    library = "pycuda"

    def __init__(self, device_id: int = 0, driver: Any = None) -> None:
        super().__init__(device_id)
        if driver is None:
            import pycuda.driver as driver  # never pycuda.autoinit: see the module docstring
        self.drv = driver
        try:
            self.drv.init()
            count = int(self.drv.Device.count())
        except self.drv.Error as exc:  # e.g. "cuInit failed: no CUDA-capable device is detected"
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NoCudaDeviceError(f"pycuda: {line} ({NO_DRIVER_HINT})") from None
        if count <= self.device_id:
            raise BackendUnavailableError(
                f"CUDA device {self.device_id} requested but {count} found: "
                f"pick device=cuda:0..{max(count - 1, 0)}"
            )
        self.device = self.drv.Device(self.device_id)
        self.context = self.device.retain_primary_context()
        self._allocs = {}  # type: Dict[int, Any]

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        self.context.push()
        try:
            yield
        finally:
            self.drv.Context.pop()

    def malloc(self, nbytes: int) -> int:
        alloc = self.drv.mem_alloc(int(nbytes))
        self._allocs[int(alloc)] = alloc
        return int(alloc)

    def free(self, ptr: int) -> None:
        alloc = self._allocs.pop(int(ptr), None)
        if alloc is not None:
            alloc.free()

    def pinned_empty(self, shape: Sequence[int], dtype: Any) -> np.ndarray:
        return self.drv.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def free_pinned(self, arr: np.ndarray) -> None:
        base = getattr(arr, "base", None)
        if base is not None and hasattr(base, "free"):
            base.free()

    def stream_create(self) -> Any:
        # Non-blocking, as on cuda-python: ``Stream()`` is flags=0, a blocking stream that
        # serialises with every other library's work on the legacy default stream.
        return self.drv.Stream(flags=CU_STREAM_NON_BLOCKING)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_sync(self, stream: Any) -> None:
        stream.synchronize()

    def stream_destroy(self, stream: Any) -> None:
        return None  # freed with the Python object

    def htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        self.drv.memcpy_htod_async(dst, src, stream)

    def dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        self.drv.memcpy_dtoh_async(dst, src, stream)

    def event_create(self) -> Any:
        return self.drv.Event()

    def event_record(self, event: Any, stream: Any) -> None:
        event.record(stream)

    def event_elapsed_ms(self, start: Any, end: Any) -> float:
        end.synchronize()
        return float(end.time_since(start))

    def event_destroy(self, event: Any) -> None:
        return None

    def device_info(self) -> Dict[str, Any]:
        major, minor = self.device.compute_capability()
        toolkit = ".".join(str(p) for p in self.drv.get_version()[:2])
        return {
            "name": str(self.device.name()),
            "compute_capability": f"{major}.{minor}",
            "total_memory_mib": int(self.device.total_memory()) // (1 << 20),
            "cuda_runtime": toolkit,
            "cuda_driver": _version_text(int(self.drv.get_driver_version())),
            "cuda_library": self.library,
        }


def open_cuda(device_id: int = 0, prefer: Optional[str] = None) -> CudaApi:
    """cuda-python if importable (or ``prefer="pycuda"``), else pycuda; says what is missing."""
    order = ("pycuda", "cuda-python") if prefer == "pycuda" else ("cuda-python", "pycuda")
    missing = []
    refused: List[BackendUnavailableError] = []
    for lib in order:
        try:
            if lib == "cuda-python":
                return CudaPython(device_id)
            return PyCuda(device_id)
        except ImportError as exc:
            missing.append(f"{lib} ({exc})")
        except (CudaVersionMismatchError, NoCudaDeviceError) as exc:
            refused.append(exc)  # the other library (built for this machine) may still do
    for kind in (CudaVersionMismatchError, NoCudaDeviceError):  # the fix first, then the cause
        for exc in refused:
            if isinstance(exc, kind):
                raise exc
    raise BackendUnavailableError(
        "no CUDA Python library: {}; {}".format("; ".join(missing), CUDA_HINT)
    )


def probe_cuda() -> Tuple[Optional[Dict[str, Any]], str]:
    """(device facts or None, why not): for `info --env`, never raises."""
    try:
        cuda = open_cuda(0)
    except BackendUnavailableError as exc:
        return None, str(exc)
    except Exception as exc:  # a broken driver install must not break `info --env`
        return None, "{}: {}".format(
            type(exc).__name__, str(exc).splitlines()[0] if str(exc) else ""
        )
    try:
        with cuda.activate():
            return cuda.device_info(), ""
    except Exception as exc:
        return None, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
