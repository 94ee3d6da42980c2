"""A simulated CUDA: cuda-python's runtime module and the CuPy calls of the GPU argmax.

``SimCudart`` is cuda-python's runtime module (``cuda.bindings.runtime``) as far as
``trt.cuda.CudaPython`` uses it, with each function's arity and return tuple taken from
the real wheels (``tests/data/cuda_python_runtime_api.json``: 11.8.7, 12.6.2, 13.4.4), so the
real wrapper runs on it as on a GPU machine. Device memory is host bytes at integer addresses
above ``1 << 47`` (never a host address); allocations never overlap and have gaps between
them; an access outside a live allocation, or after its free, is a fault: like a real GPU it
surfaces as the sticky ``cudaErrorIllegalAddress`` (700) at the next call, and its reason
lands in ``sim.faults``. Pinned memory is real host memory (the wrapper builds numpy views on
it). Streams are ordered queues run at synchronisation; events carry a simulated clock;
stream capture records a stream's work into a graph that launches replay. The capture rules
are CUDA's: no capture of the legacy stream, no sync of a capturing stream, no
cudaMalloc/cudaFree from the capturing thread, no use of the legacy stream while a *blocking*
stream captures (each invalidates the capture). ``SimCupy`` is the few CuPy calls of
``TensorRTBackend._predict_frame``, over the same memory and streams.

``trt_sim.py`` builds TensorRT engines that compute on top of it.
"""

from __future__ import annotations

import ctypes
import enum
import json
import threading
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

API_FILE = Path(__file__).resolve().parents[1] / "data" / "cuda_python_runtime_api.json"
CUDA_PYTHON_VERSIONS = ("11.8.7", "12.6.2.post1", "13.4.4")

# CUDA runtime error codes beyond those in the JSON (driver_types.h).
_EXTRA_ERRORS = {"cudaErrorInvalidDevice": 101, "cudaErrorInvalidResourceHandle": 400}

# Without libcuda, cuda-python 11.8.7 and 12.6.2.post1 raise RuntimeError from every call that
# reaches the driver: "Failed to dlopen libcuda.so.1" the first time, then 'Function "cuInit"
# not found' (cudaDriverGetVersion: "cuDriverGetVersion"); these calls answer without it.
# 13.x returns cudaErrorInsufficientDriver (35) instead. Run on the real wheels, no GPU.
_NO_DRIVER_NEEDED = ("cudaRuntimeGetVersion", "cudaGetErrorName", "cudaGetLastError")


class SimFault(Exception):
    """An access a real GPU would fault on (out of bounds, after free, wrong memory kind)."""


def load_cuda_api() -> Dict[str, Any]:
    return json.loads(API_FILE.read_text())


def _runtime_version(version: str) -> int:
    major, minor = (int(p) for p in version.split(".")[:2])
    return major * 1000 + minor * 10


class _Alloc:
    __slots__ = ("base", "buf", "freed", "kind", "owner", "size")

    def __init__(self, base: int, size: int, buf: Any, kind: str, owner: str = "") -> None:
        self.base, self.size, self.buf, self.kind = base, size, buf, kind
        self.freed = False
        self.owner = owner


class _Op:
    """One unit of stream work: its effect, the memory it touches, its simulated duration."""

    __slots__ = ("fn", "ms", "name", "ranges")

    def __init__(
        self,
        name: str,
        fn: Callable[[], None],
        ranges: Sequence[Tuple[int, int]] = (),
        ms: float = 0.0,
    ):
        self.name, self.fn, self.ranges, self.ms = name, fn, tuple(ranges), float(ms)


class _Stream:
    def __init__(self, handle: int, flags: int) -> None:
        self.handle, self.flags = handle, flags
        self.queue: List[_Op] = []
        self.clock = 0.0
        self.capture: Optional[Dict[str, Any]] = None  # {"ops", "thread", "mode", "invalid"}


class SimCudart:
    """cuda-python's runtime API over simulated device memory, streams, events and graphs."""

    DEVICE_BASE = 1 << 47  # above every user-space host address on x86-64 and aarch64
    GAP = 4096  # unmapped bytes between allocations: an overrun hits nothing

    def __init__(
        self,
        version: str = "13.4.4",
        driver_version: Optional[int] = None,
        device_count: int = 1,
        memory_bytes: int = 1 << 30,
        name: str = "Sim GPU",
        compute_capability: Tuple[int, int] = (8, 7),
        h2d_gbps: float = 12.0,
        free_synchronizes: bool = False,
    ) -> None:
        api = load_cuda_api()["versions"][version]
        self.version = version
        self._fns: Dict[str, Dict[str, Any]] = api["functions"]
        consts: Dict[str, int] = api["constants"]
        self.runtime_version = _runtime_version(version)
        self.driver_version = self.runtime_version if driver_version is None else driver_version
        self.device_count, self.memory_bytes = device_count, memory_bytes
        self.name, self.cc = name, compute_capability
        self.h2d_gbps = h2d_gbps
        # cudaFree is observed to wait for the device, but no CUDA document promises it (the
        # programming guide's implicit-synchronisation list names allocations, not frees):
        # by default a free with queued work still using the memory is a fault here.
        self.free_synchronizes = free_synchronizes
        errors = {k.split(".", 1)[1]: v for k, v in consts.items() if k.startswith("cudaError_t.")}
        errors.update(_EXTRA_ERRORS)
        self.cudaError_t = enum.IntEnum("cudaError_t", errors)
        self.cudaMemcpyKind = enum.IntEnum(
            "cudaMemcpyKind",
            {k.split(".", 1)[1]: v for k, v in consts.items() if k.startswith("cudaMemcpyKind.")},
        )
        self.cudaStreamCaptureMode = enum.IntEnum(
            "cudaStreamCaptureMode",
            {
                k.split(".", 1)[1]: v
                for k, v in consts.items()
                if k.startswith("cudaStreamCaptureMode.")
            },
        )
        self.cudaStreamNonBlocking = consts["cudaStreamNonBlocking"]
        self.cudaStreamDefault = consts["cudaStreamDefault"]
        self._lock = threading.RLock()
        self._next = self.DEVICE_BASE
        self._device: Dict[int, _Alloc] = {}
        self._pinned: Dict[int, _Alloc] = {}
        self._freed: List[_Alloc] = []
        self._streams: Dict[int, _Stream] = {0: _Stream(0, 0)}  # 0: the legacy stream
        self._events: Dict[int, Dict[str, Any]] = {}
        self._graphs: Dict[int, List[_Op]] = {}
        self._execs: Dict[int, List[_Op]] = {}
        self._handle = 0x100
        self._device_set: Dict[int, int] = {}
        self.sticky = 0
        #: why each fault happened (a test asserts this is empty, or names the planted bug)
        self.faults: List[str] = []
        #: (stream handle, thread name) of every capture begun
        self.captures: List[Tuple[int, str]] = []
        #: name -> callable(*args), run before the call outside the lock (tests pause threads)
        self.hooks: Dict[str, Callable[..., None]] = {}
        #: every cuda-python call made, by name
        self.calls: List[str] = []
        #: name -> error code the call returns instead of running (a test's failure injection)
        self.fail: Dict[str, int] = {}
        #: per thread: the last error a runtime call returned (cudaGetLastError reads, resets)
        self._last_error: Dict[int, int] = {}
        self._dlopen_tried = False  # no-driver 11.8/12.x: the first driver call tries libcuda

    # -- the module surface ---------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        fns = self.__dict__.get("_fns") or {}
        if name not in fns:
            raise AttributeError(f"cuda-python {self.__dict__.get('version')} has no {name}")
        impl = getattr(type(self), "_" + name, None)
        if impl is None:
            raise AttributeError(f"the simulated CUDA does not implement {name}")
        spec = fns[name]
        params, n_out = spec["params"], int(spec["returns"])

        def call(*args: Any) -> Tuple[Any, ...]:
            if len(args) != len(params):  # what the Cython signature enforces
                raise TypeError(
                    f"{spec['signature']} takes {len(params)} positional arguments "
                    f"({len(args)} given) in cuda-python {self.version}"
                )
            hook = self.hooks.get(name)
            if hook is not None:
                hook(*args)
            with self._lock:
                self.calls.append(name)
                self._no_libcuda(name)
                if self.sticky and name not in (
                    "cudaGetErrorName",
                    "cudaDriverGetVersion",
                    "cudaRuntimeGetVersion",
                ):
                    out: Any = self.sticky
                elif name in self.fail:
                    out = self.fail[name]
                else:
                    out = impl(self, *args)
            out = out if isinstance(out, tuple) else (out,)
            err = self.cudaError_t(int(out[0]))
            if int(err) != 0 and name != "cudaGetLastError":
                self._last_error[threading.get_ident()] = int(err)
            rest = list(out[1:]) + [None] * (n_out - len(out))
            return (err, *rest[: n_out - 1])

        return call

    # -- helpers ----------------------------------------------------------------------------
    def _no_libcuda(self, name: str) -> None:
        """cuda-python < 13 on a machine without libcuda: RuntimeError, not an error code."""
        if self.driver_version > 0 or int(self.version.split(".")[0]) >= 13:
            return
        if name in _NO_DRIVER_NEEDED:
            return
        if not self._dlopen_tried:
            self._dlopen_tried = True
            raise RuntimeError("Failed to dlopen libcuda.so.1")
        cu = "cuDriverGetVersion" if name == "cudaDriverGetVersion" else "cuInit"
        raise RuntimeError(f'Function "{cu}" not found')

    def _new_handle(self) -> int:
        self._handle += 1
        return self._handle

    def _capturing_thread(self) -> Optional[_Stream]:
        me = threading.get_ident()
        for s in self._streams.values():
            if s.capture is not None and s.capture["thread"] == me and s.capture["mode"] != 2:
                return s
        return None

    def _unsafe_during_capture(self) -> int:
        """cudaMalloc/cudaFree... from the capturing thread (global/thread-local modes)."""
        s = self._capturing_thread()
        if s is not None:
            s.capture["invalid"] = True
            return 900  # cudaErrorStreamCaptureUnsupported
        return 0

    def _legacy_use(self) -> int:
        """Use of the legacy stream while a blocking stream captures: invalid, invalidates."""
        bad = [
            s
            for s in self._streams.values()
            if s.capture is not None and not (s.flags & self.cudaStreamNonBlocking)
        ]
        for s in bad:
            s.capture["invalid"] = True
        return 906 if bad else 0  # cudaErrorStreamCaptureImplicit

    def _find(self, ptr: int, n: int) -> Optional[_Alloc]:
        table = self._device if ptr >= self.DEVICE_BASE else self._pinned
        for a in table.values():
            if a.base <= ptr and ptr + n <= a.base + a.size:
                return a
        return None

    def _pinned_at(self, ptr: int) -> Optional[_Alloc]:
        """The pinned allocation (live or freed) ``ptr`` points into, if any."""
        for a in list(self._pinned.values()) + [f for f in self._freed if f.kind == "pinned"]:
            if a.base <= ptr < a.base + a.size:
                return a
        return None

    def _describe(self, ptr: int, n: int) -> str:
        for a in self._freed:
            if a.base <= ptr < a.base + a.size:
                return f"{n} bytes at {ptr:#x} in freed {a.kind} allocation of {a.size} bytes"
        for a in list(self._device.values()) + list(self._pinned.values()):
            if a.base <= ptr < a.base + a.size:
                return (
                    f"{n} bytes at {ptr:#x}: {ptr + n - a.base - a.size} bytes past the end of "
                    f"a {a.kind} allocation of {a.size} bytes"
                )
        return f"{n} bytes at {ptr:#x}: no allocation there"

    def read(self, ptr: int, n: int) -> bytes:
        """The bytes a kernel or copy would read; SimFault outside live memory."""
        with self._lock:
            a = self._find(int(ptr), int(n))
            if a is None:
                raise SimFault("read of " + self._describe(int(ptr), int(n)))
            off = int(ptr) - a.base
            return bytes(memoryview(a.buf)[off : off + int(n)])

    def write(self, ptr: int, data: bytes) -> None:
        with self._lock:
            n = len(data)
            a = self._find(int(ptr), n)
            if a is None:
                raise SimFault("write of " + self._describe(int(ptr), n))
            off = int(ptr) - a.base
            memoryview(a.buf)[off : off + n] = data

    def alloc_device(self, nbytes: int, owner: str = "") -> Optional[int]:
        """A device allocation (also for TensorRT's own context memory); None when full."""
        with self._lock:
            nbytes = max(int(nbytes), 1)
            if self.live_device_bytes() + nbytes > self.memory_bytes:
                return None
            base = self._next
            self._next += (nbytes + self.GAP + 255) // 256 * 256
            self._device[base] = _Alloc(base, nbytes, bytearray(nbytes), "device", owner)
            return base

    def free_device(self, ptr: int) -> None:
        with self._lock:
            a = self._device.pop(int(ptr))
            a.freed = True
            self._freed.append(a)

    def _pending_refs(self, a: _Alloc) -> List[str]:
        refs = []
        for s in self._streams.values():
            for op in s.queue:
                if any(a.base <= p < a.base + a.size for p, _ in op.ranges):
                    refs.append(f"{op.name} on stream {s.handle:#x}")
        return refs

    def _run(self, stream: _Stream, upto: Optional[_Op] = None) -> int:
        """Execute a stream's queue in order (up to ``upto`` inclusive); sticky 700 on a fault."""
        while stream.queue:
            op = stream.queue.pop(0)
            try:
                op.fn()
            except SimFault as exc:
                self.faults.append(f"{op.name}: {exc}")
                stream.queue.clear()
                self.sticky = 700  # cudaErrorIllegalAddress: the context is unusable from now
                return 700
            stream.clock += op.ms
            if op is upto:
                break
        return 0

    def _drain_all(self) -> int:
        for s in list(self._streams.values()):
            if s.capture is None:
                err = self._run(s)
                if err:
                    return err
        return 0

    def _enqueue(self, handle: int, op: _Op) -> int:
        s = self._streams.get(int(handle))
        if s is None:
            return 400  # cudaErrorInvalidResourceHandle
        if s.handle == 0:
            err = self._legacy_use()
            if err:
                return err
        if s.capture is not None:
            s.capture["ops"].append(op)
        else:
            s.queue.append(op)
        return 0

    def enqueue_kernel(
        self, handle: int, name: str, fn: Callable[[], None], ranges: Sequence[Tuple[int, int]], ms
    ) -> int:
        """What a TensorRT enqueue or a CuPy kernel does: one op on the given stream."""
        with self._lock:
            return self._enqueue(handle, _Op(name, fn, ranges, ms))

    def stream(self, handle: int) -> _Stream:
        return self._streams[int(handle)]

    # -- observations for tests --------------------------------------------------------------
    def live_device_bytes(self) -> int:
        return sum(a.size for a in self._device.values())

    def live(self) -> Dict[str, int]:
        """What is still allocated: every count must be 0 after a clean close."""
        with self._lock:
            return {
                "device": len([a for a in self._device.values() if a.owner != "tensorrt"]),
                "context_memory": len([a for a in self._device.values() if a.owner == "tensorrt"]),
                "pinned": len(self._pinned),
                "streams": len(self._streams) - 1,
                "events": len(self._events),
                "graphs": len(self._graphs),
                "graph_execs": len(self._execs),
            }

    # -- device and versions -------------------------------------------------------------------
    def _init_error(self) -> int:
        if self.driver_version <= 0 or self.driver_version // 1000 < self.runtime_version // 1000:
            return 35  # cudaErrorInsufficientDriver: no driver, or one too old for these bindings
        if self.device_count < 1:
            return 100  # cudaErrorNoDevice
        return 0

    def _cudaGetDeviceCount(self):
        err = self._init_error()
        return (err, None) if err else (0, self.device_count)

    def _cudaSetDevice(self, device):
        err = self._init_error()
        if err:
            return err
        if not 0 <= int(device) < self.device_count:
            return 101
        self._device_set[threading.get_ident()] = int(device)
        return 0

    def _cudaDriverGetVersion(self):
        return (0, self.driver_version)

    def _cudaRuntimeGetVersion(self):
        return (0, self.runtime_version)

    def _cudaGetLastError(self):
        if self.sticky:
            return self.sticky  # a sticky error is never reset
        if self.driver_version <= 0:
            return 35  # 13.4.4 without a driver: every call, also this one, and it stays
        return self._last_error.pop(threading.get_ident(), 0)

    def _cudaGetErrorName(self, error):
        return (0, self.cudaError_t(int(error)).name.encode())

    def _cudaGetDeviceProperties(self, device):
        if self._init_error():
            return self._init_error()
        prop = SimpleNamespace(
            name=self.name.encode() + b"\0" * 8,
            major=self.cc[0],
            minor=self.cc[1],
            totalGlobalMem=self.memory_bytes,
            multiProcessorCount=8,
        )
        return (0, prop)

    # -- memory -------------------------------------------------------------------------------
    def _cudaMalloc(self, size):
        err = self._unsafe_during_capture()
        if err:
            return err
        ptr = self.alloc_device(int(size))
        return (2, None) if ptr is None else (0, ptr)  # cudaErrorMemoryAllocation

    def _cudaFree(self, devPtr):
        err = self._unsafe_during_capture()
        if err:
            return err
        ptr = int(devPtr)
        if ptr == 0:
            return 0
        if ptr not in self._device:
            return 1  # cudaErrorInvalidValue: not the start of a live allocation
        if self.free_synchronizes:
            err = self._drain_all()
            if err:
                return err
        for ref in self._pending_refs(self._device[ptr]):
            self.faults.append(f"cudaFree({ptr:#x}) while {ref} still uses it")
        self.free_device(ptr)
        return 0

    def _cudaMallocHost(self, size):
        err = self._unsafe_during_capture()
        if err:
            return err
        buf = np.zeros(max(int(size), 1), np.uint8)
        ptr = int(buf.ctypes.data)
        self._pinned[ptr] = _Alloc(ptr, buf.size, buf, "pinned")
        return (0, ptr)

    def _cudaFreeHost(self, ptr):
        err = self._unsafe_during_capture()
        if err:
            return err
        a = self._pinned.get(int(ptr))
        if a is None:
            return 1
        # Not documented as synchronising: freeing host memory a queued copy still reads or
        # writes is a use-after-free. The memory is kept mapped here (numpy views of it may
        # live on) but every later access through the simulator faults.
        for ref in self._pending_refs(a):
            self.faults.append(f"cudaFreeHost({int(ptr):#x}) while {ref} still uses it")
        del self._pinned[a.base]
        a.freed = True
        self._freed.append(a)
        return 0

    def _cudaMemset(self, devPtr, value, count):
        err = self._legacy_use()
        if err:
            return err
        if self._find(int(devPtr), int(count)) is None:
            return 1
        self._drain_all()
        self.write(int(devPtr), bytes([int(value) & 0xFF]) * int(count))
        return 0

    def _host_read(self, ptr: int, n: int) -> Callable[[], bytes]:
        """Pinned: read when the copy runs. Pageable: staged now (cudaMemcpyAsync's rule)."""
        if ptr >= self.DEVICE_BASE:
            raise SimFault(f"a device pointer {ptr:#x} passed as the host side of a copy")
        if self._pinned_at(ptr) is not None:  # checked (and faults) when the copy runs
            return lambda: self.read(ptr, n)
        staged = ctypes.string_at(ptr, n)  # pageable: the caller's buffer is free after return
        return lambda: staged

    def _cudaMemcpyAsync(self, dst, src, count, kind, stream):
        dst, src, n = int(dst), int(src), int(count)
        kinds = self.cudaMemcpyKind
        if int(kind) == kinds.cudaMemcpyHostToDevice:
            if self._find(dst, n) is None or dst < self.DEVICE_BASE:
                return 1  # cudaErrorInvalidValue: the device range is not allocated
            try:
                get = self._host_read(src, n)
            except SimFault as exc:
                self.faults.append(f"cudaMemcpyAsync(HtoD): {exc}")
                return 1
            op = _Op(
                "cudaMemcpyAsync(HtoD)",
                lambda: self.write(dst, get()),
                [(dst, n), (src, n)],
                n / (self.h2d_gbps * 1e6),
            )
        elif int(kind) == kinds.cudaMemcpyDeviceToHost:
            if self._find(src, n) is None or src < self.DEVICE_BASE:
                return 1
            if dst >= self.DEVICE_BASE:
                self.faults.append(f"cudaMemcpyAsync(DtoH): device pointer {dst:#x} as host side")
                return 1
            if self._pinned_at(dst) is None:  # pageable destination: a synchronous copy
                s = self._streams.get(int(stream))
                if s is None:
                    return 400
                err = self._run(s)
                if err:
                    return err
                ctypes.memmove(dst, self.read(src, n), n)
                return 0
            op = _Op(
                "cudaMemcpyAsync(DtoH)",
                lambda: self.write(dst, self.read(src, n)),
                [(dst, n), (src, n)],
                n / (self.h2d_gbps * 1e6),
            )
        elif int(kind) == kinds.cudaMemcpyDeviceToDevice:
            if self._find(src, n) is None or self._find(dst, n) is None:
                return 1
            op = _Op(
                "cudaMemcpyAsync(DtoD)",
                lambda: self.write(dst, self.read(src, n)),
                [(dst, n), (src, n)],
                n / 500e6,
            )
        else:
            return 1
        return self._enqueue(int(stream), op)

    def _cudaMemcpy(self, dst, src, count, kind):
        """Synchronous: the legacy stream, then waits for it (and, by legacy rules, others)."""
        err = self._legacy_use()
        if err:
            return err
        err = self._cudaMemcpyAsync(dst, src, count, kind, 0)
        if err:
            return err
        return self._run(self._streams[0])

    # -- streams and events -------------------------------------------------------------------
    def _cudaStreamCreate(self):
        return self._cudaStreamCreateWithFlags(self.cudaStreamDefault)

    def _cudaStreamCreateWithFlags(self, flags):
        h = self._new_handle()
        self._streams[h] = _Stream(h, int(flags))
        return (0, h)

    def _cudaStreamSynchronize(self, stream):
        s = self._streams.get(int(stream))
        if s is None:
            return 400
        if s.capture is not None:
            s.capture["invalid"] = True
            return 900  # synchronising a capturing stream is illegal
        if s.handle == 0:
            err = self._legacy_use()
            if err:
                return err
        return self._run(s)

    def _cudaStreamDestroy(self, stream):
        s = self._streams.get(int(stream))
        if s is None or s.handle == 0:
            return 400
        if s.capture is not None:
            s.capture["invalid"] = True
            return 900
        err = self._run(s)  # pending work completes before the stream's resources go
        del self._streams[s.handle]
        return err

    def _cudaStreamIsCapturing(self, stream):
        s = self._streams.get(int(stream))
        if s is None:
            return 400
        if s.capture is None:
            return (0, 0)
        return (0, 2 if s.capture["invalid"] else 1)

    def _cudaEventCreate(self):
        h = self._new_handle()
        self._events[h] = {"stream": None, "op": None, "time": None, "captured": False}
        return (0, h)

    def _cudaEventRecord(self, event, stream):
        ev = self._events.get(int(event))
        s = self._streams.get(int(stream))
        if ev is None or s is None:
            return 400

        def stamp(ev=ev, s=s) -> None:
            ev["time"] = s.clock

        op = _Op("cudaEventRecord", stamp)
        ev.update(stream=s, op=op, time=None, captured=s.capture is not None)
        return self._enqueue(s.handle, op)

    def _cudaEventSynchronize(self, event):
        ev = self._events.get(int(event))
        if ev is None:
            return 400
        s = ev["stream"]
        if s is None:
            return 0
        if ev["captured"] or s.capture is not None:
            if s.capture is not None:
                s.capture["invalid"] = True
            return 900
        if ev["op"] in s.queue:
            return self._run(s, upto=ev["op"])
        return 0

    def _cudaEventElapsedTime(self, start, end):
        a, b = self._events.get(int(start)), self._events.get(int(end))
        if a is None or b is None or a["stream"] is None or b["stream"] is None:
            return 400
        if a["time"] is None or b["time"] is None:
            return 600  # cudaErrorNotReady
        return (0, float(b["time"] - a["time"]))

    def _cudaEventDestroy(self, event):
        return 0 if self._events.pop(int(event), None) is not None else 400

    # -- graphs ----------------------------------------------------------------------------------
    def _cudaStreamBeginCapture(self, stream, mode):
        s = self._streams.get(int(stream))
        if s is None:
            return 400
        if s.handle == 0:
            return 900  # the legacy stream cannot be captured
        if s.capture is not None:
            return 1
        s.capture = {
            "ops": [],
            "thread": threading.get_ident(),
            "mode": int(mode),
            "invalid": False,
        }
        self.captures.append((s.handle, threading.current_thread().name))
        return 0

    def _cudaStreamEndCapture(self, stream):
        s = self._streams.get(int(stream))
        if s is None:
            return 400
        if s.capture is None:
            return 903  # cudaErrorStreamCaptureUnmatched
        if s.capture["mode"] != 2 and s.capture["thread"] != threading.get_ident():
            s.capture["invalid"] = True
            return 908  # cudaErrorStreamCaptureWrongThread
        cap, s.capture = s.capture, None
        if cap["invalid"]:
            return 901  # cudaErrorStreamCaptureInvalidated
        h = self._new_handle()
        self._graphs[h] = list(cap["ops"])
        return (0, h)

    def _instantiate(self, graph):
        ops = self._graphs.get(int(graph))
        if ops is None:
            return 400
        h = self._new_handle()
        self._execs[h] = list(ops)
        return (0, h)

    def _cudaGraphInstantiate(self, graph, *rest):
        return self._instantiate(graph)

    def _cudaGraphInstantiateWithFlags(self, graph, flags):
        return self._instantiate(graph)

    def _cudaGraphDestroy(self, graph):
        return 0 if self._graphs.pop(int(graph), None) is not None else 400

    def _cudaGraphLaunch(self, graphExec, stream):
        ops = self._execs.get(int(graphExec))
        if ops is None:
            return 400
        for op in ops:
            err = self._enqueue(int(stream), op)
            if err:
                return err
        return 0

    def _cudaGraphExecDestroy(self, graphExec):
        return 0 if self._execs.pop(int(graphExec), None) is not None else 400


# --------------------------------------------------------------------------- CuPy, simulated
class SimCupy:
    """The CuPy calls of ``TensorRTBackend._predict_frame``: views, argmax, astype, get."""

    float32 = np.float32
    uint8 = np.uint8

    def __init__(self, sim: SimCudart) -> None:
        self.sim = sim
        self._tls = threading.local()
        cp = self

        class UnownedMemory:
            def __init__(self, ptr: int, size: int, owner: Any, device_id: int = 0) -> None:
                self.ptr, self.size, self.owner = int(ptr), int(size), owner

        class MemoryPointer:
            def __init__(self, mem: Any, offset: int) -> None:
                self.mem, self.ptr = mem, int(mem.ptr) + int(offset)

        class ExternalStream:
            def __init__(self, handle: int) -> None:
                self.handle = int(handle)

            def __enter__(self) -> ExternalStream:
                cp._stack().append(self.handle)
                return self

            def __exit__(self, *exc: object) -> None:
                cp._stack().pop()

            def synchronize(self) -> None:
                cp._check(sim.__getattr__("cudaStreamSynchronize")(self.handle)[0])

        self.cuda = SimpleNamespace(
            UnownedMemory=UnownedMemory, MemoryPointer=MemoryPointer, ExternalStream=ExternalStream
        )

    def _stack(self) -> List[int]:
        if not hasattr(self._tls, "stack"):
            self._tls.stack = []
        return self._tls.stack

    def _stream(self) -> int:
        stack = self._stack()
        return stack[-1] if stack else 0

    @staticmethod
    def _check(err: Any) -> None:
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {getattr(err, 'name', err)} (simulated CuPy)")

    def ndarray(self, shape: Sequence[int], dtype: Any = np.float32, memptr: Any = None):
        return _SimArray(self, tuple(int(d) for d in shape), np.dtype(dtype), memptr.ptr, None)

    def _new(self, shape: Tuple[int, ...], dtype: Any) -> _SimArray:
        dt = np.dtype(dtype)
        ptr = self.sim.alloc_device(int(np.prod(shape)) * dt.itemsize, owner="cupy")
        if ptr is None:
            raise RuntimeError("out of memory (simulated CuPy)")
        return _SimArray(self, shape, dt, ptr, ptr)

    def _kernel(self, name: str, src: _SimArray, out: _SimArray, fn: Callable) -> None:
        def run() -> None:
            a = np.frombuffer(self.sim.read(src.ptr, src.nbytes), src.dtype).reshape(src.shape)
            self.sim.write(out.ptr, np.ascontiguousarray(fn(a), out.dtype).tobytes())

        ranges = [(src.ptr, src.nbytes), (out.ptr, out.nbytes)]
        self._check(self.sim.enqueue_kernel(self._stream(), name, run, ranges, 0.01))

    def argmax(self, a: _SimArray, axis: int = 0) -> _SimArray:
        shape = a.shape[:axis] + a.shape[axis + 1 :]
        out = self._new(shape, np.int64)
        self._kernel("cupy.argmax", a, out, lambda v: np.argmax(v, axis=axis))
        return out


class _SimArray:
    def __init__(self, cp: SimCupy, shape, dtype, ptr: int, owned: Optional[int]) -> None:
        self.cp, self.shape, self.dtype, self.ptr = cp, shape, np.dtype(dtype), int(ptr)
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize
        self._owned = owned
        if owned is not None:
            weakref.finalize(self, cp.sim.free_device, owned)

    def astype(self, dtype: Any) -> _SimArray:
        out = self.cp._new(self.shape, dtype)
        self.cp._kernel("cupy.astype", self, out, lambda v: v.astype(dtype))
        return out

    def get(self, stream: Any = None) -> np.ndarray:
        handle = stream.handle if stream is not None else self.cp._stream()
        sim = self.cp.sim
        host = np.empty(self.shape, self.dtype)
        holder: Dict[str, bytes] = {}

        def copy() -> None:
            holder["b"] = sim.read(self.ptr, self.nbytes)

        self.cp._check(sim.enqueue_kernel(handle, "cupy.get", copy, [(self.ptr, self.nbytes)], 0))
        self.cp._check(sim.__getattr__("cudaStreamSynchronize")(handle)[0])
        host[...] = np.frombuffer(holder["b"], self.dtype).reshape(self.shape)
        return host
