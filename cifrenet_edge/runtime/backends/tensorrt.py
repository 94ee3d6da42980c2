"""TensorRT backend: a serialized engine, checked against its manifest, run on its own stream.

* Before deserialising, the engine's sidecar is compared with the running TensorRT and GPU
  (``trt.engine_manifest.check_engine``): a wrong engine is an ``EngineMismatchError`` naming
  both sides and the rebuild command, never TensorRT's "magic tag" message or a crash.
* Two execution APIs, chosen by ``trt.api.capabilities``: the binding-index API with
  ``execute_async_v2`` (TensorRT 8.2, Jetson Nano) and the tensor-name API with
  ``execute_async_v3`` (8.5+, 10.x, 11.x). Optional CUDA graphs on 8.5+ (``cuda_graph=True``),
  captured as trtexec 8.5.2 to 11.1 capture ``enqueueV3``.
* Threads: an execution context is not thread-safe (NVIDIA/TensorRT#2040), so each calling
  thread gets its own context, stream and preallocated pinned/device buffers (up to
  ``max_contexts``; further threads share one slot under a lock). The CUDA context is made
  current on the calling thread around every call (``CudaApi.activate``), never by
  ``pycuda.autoinit``. ``close()`` may race calls from other threads: "closed" is checked
  under the slot list's lock (no slot is created after close took the list) and under each
  slot's lock (no call runs on freed buffers), and the loser always gets ``ClosedError``.
* One ``trt.Logger`` per process (``trt.api.shared_logger``): TensorRT 8.0 "maintains only a
  single logger pointer at any given time" (NVIDIA/TensorRT#1475), and plugins keep the first
  one (NVIDIA/TensorRT#4134); from 8.2 a logger must outlive everything made through it.
* Teardown synchronises each stream before freeing its buffers: a copy still queued must not
  write into freed pinned memory (``cudaFreeHost`` is not documented to wait for it).
* ``predict_frame`` (used by the Segmenter when present): with CuPy installed, the argmax
  runs on the GPU on the engine's output buffer and only the HxW uint8 class map at network
  resolution crosses back (230 KB at 640x360 instead of 17.5 MB of logits); the nearest
  resize to the frame's size and the preprocessing (``runtime.preprocess.preprocess``, the
  one implementation) stay on the host, so the class map is exactly the Segmenter's CPU
  path's. Without CuPy there is no ``predict_frame`` and the Segmenter does the post-
  processing on the host. Resize + normalise on the GPU (uint8 upload) is not done yet.

numpy + tensorrt + cuda-python/pycuda, imported lazily; Python 3.8 syntax.
"""

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Tuple

import numpy as np

from ...device.check import open_cuda_checked
from ...errors import (
    BackendUnavailableError,
    ClosedError,
    ConfigError,
    EngineMismatchError,
    ModelFileError,
)
from ...manifest import ManifestLike
from ...trt import api
from ...trt.engine_manifest import (
    check_engine,
    rebuild_command,
    require_engine_manifest,
    runtime_facts,
)
from .base import Backend, Shape, fixed_precision, parse_device

_LOG = logging.getLogger("cifrenet_edge")
_NP_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "UINT8": np.uint8,
}


def _dtype(trt_dtype: Any) -> Any:
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).rsplit(".", 1)[-1]
    if name not in _NP_DTYPES:
        raise ModelFileError(
            f"engine tensor type {name} is not supported by this runtime: rebuild with "
            "`cifrenet-edge export --format engine` (FP32 inputs/outputs)"
        )
    return _NP_DTYPES[name]


def _open_cuda(device_id: int) -> Any:
    """The CUDA wrapper (tests substitute a recording stand-in)."""
    from ...trt.cuda import open_cuda

    return open_cuda(device_id)


class _Slot:
    """One thread's execution context, stream, buffers, events and (optional) CUDA graph."""

    def __init__(self) -> None:
        self.context = None  # type: Any
        self.stream = None  # type: Any
        self.shape = None  # type: Optional[Tuple[int, ...]]
        self.out_shape = None  # type: Optional[Tuple[int, ...]]
        self.d_in = 0
        self.d_out = 0
        self.h_in = None  # type: Any
        self.h_out = None  # type: Any
        self.capacity = 0  # elements the buffers hold (input, output)
        self.out_capacity = 0
        self.graph = None  # type: Any
        self.events = []  # type: List[Any]
        self.lock = threading.Lock()


class TensorRTBackend(Backend):
    """Runs a ``.engine``/``.plan`` built by ``cifrenet-edge export --format engine``."""

    name = "tensorrt"

    def __init__(
        self,
        path: str,
        manifest: ManifestLike,
        input_shape: Shape,
        device: str = "auto",
        precision: Optional[str] = None,
        threads: Optional[int] = None,
        cuda_graph: bool = False,
        max_contexts: int = 4,
        gpu_argmax: Optional[bool] = None,
    ) -> None:
        manifest = require_engine_manifest(manifest, path)  # no sidecar: the fix, one line
        super().__init__(path, manifest, input_shape, device, precision, threads)
        kind, index = parse_device(device)
        if kind == "cpu":
            raise ConfigError(
                "a TensorRT engine runs on the GPU, not device='cpu': use device='auto' or "
                "'cuda', or open the .onnx file for the CPU"
            )
        self.precision = fixed_precision(self.name, precision, manifest)
        self.trt = trt = api.import_tensorrt()
        self.version = api.trt_version(trt)
        self.caps = api.capabilities(self.version)
        if cuda_graph and not self.caps.cuda_graphs:
            raise BackendUnavailableError(
                f"CUDA graphs with TensorRT {self.version} are not supported here "
                "(TensorRT 8.5+: execute_async_v3 is what gets captured): drop cuda_graph"
            )
        # The device check first: a cuda-python built for a newer driver, Python 3.8 without
        # pycuda, a TensorRT without kernels for this GPU, a pip TensorRT on a JetPack image.
        self.cuda, _, checked = open_cuda_checked(lambda: _open_cuda(index), self.version)
        for line in checked:
            _LOG.warning("%s", line)
        if cuda_graph and not self.cuda.supports_graphs:
            raise BackendUnavailableError(
                f"CUDA graphs need cuda-python ({self.cuda.library} is in use): install "
                "cuda-python or drop cuda_graph"
            )
        self.cuda_graph = bool(cuda_graph)
        self.max_contexts = max(int(max_contexts), 1)
        if manifest.dynamic:
            # "If the engine supports dynamic shapes, each execution context in concurrent use
            # must use a separate optimization profile" (IExecutionContext docs); the build
            # makes one profile, so threads share one context, serialised by its lock.
            self.max_contexts = 1
        self.in_name = manifest.input_name
        self.out_name = manifest.output_name
        self.dynamic = manifest.dynamic is not None
        self.dynamic_batch = self.dynamic
        self._slots = []  # type: List[_Slot]
        self._shared = None  # type: Optional[_Slot]
        self._local = threading.local()
        self._slots_lock = threading.Lock()
        self.engine = None  # type: Any
        self.runtime = None  # type: Any
        with self.cuda.activate():
            info = self.cuda.device_info()
            self.logger = api.shared_logger(trt)
            self.runtime = trt.Runtime(self.logger)
            facts = runtime_facts(trt, info, self.runtime.num_DLA_cores)
            #: same-architecture, other-GPU notes (the engine loads; TensorRT warns too)
            self.warnings = checked + check_engine(manifest, facts, path)
            dla = manifest.engine_field("dla_core")
            if dla is not None:
                self.runtime.DLA_core = int(dla)
            data = Path(path).read_bytes()
            api.init_plugins(trt, self.logger)  # an engine with a plugin layer needs them
            self.engine = self.runtime.deserialize_cuda_engine(data)
            if self.engine is None:
                raise EngineMismatchError(
                    f"TensorRT {self.version} could not deserialize {path} although its manifest "
                    "matches this machine (corrupt or truncated file?): rebuild it with: "
                    f"{rebuild_command(manifest, path, facts)}"
                )
            self._io = self._discover_io()
            if self.dynamic:
                self._batch_from_profile()
        self.device = f"cuda:{index}"
        self.gpu = info.get("name")
        self._cupy = None  # type: Any
        if gpu_argmax is not False and self._io["output"]["dtype"] is np.float32:
            try:
                import cupy

                self._cupy = cupy
            except ImportError:
                if gpu_argmax:
                    raise BackendUnavailableError(
                        "gpu_argmax needs CuPy: pip install cupy-cuda12x (or cupy-cuda11x), "
                        "or drop gpu_argmax"
                    ) from None
        if self._cupy is not None:
            # Only then does the Segmenter see a fast path (see the module docstring).
            self.predict_frame = self._predict_frame

    # -- engine I/O ------------------------------------------------------------------------
    def _discover_io(self) -> Dict[str, Any]:
        """Names, dtypes and binding indices of the engine's input and output."""
        trt, engine = self.trt, self.engine
        io = {}  # type: Dict[str, Any]
        if self.caps.tensor_api:
            names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
            for n in names:
                mode = engine.get_tensor_mode(n)
                role = "input" if mode == trt.TensorIOMode.INPUT else "output"
                io[role] = {"name": n, "dtype": _dtype(engine.get_tensor_dtype(n))}
        else:
            for i in range(engine.num_bindings):
                role = "input" if engine.binding_is_input(i) else "output"
                io[role] = {
                    "name": engine.get_binding_name(i),
                    "dtype": _dtype(engine.get_binding_dtype(i)),
                    "index": i,
                }
        if "input" not in io or "output" not in io:
            raise ModelFileError(
                f"engine {self.path} does not have one input and one output: rebuild it from a "
                "cifrenet-edge ONNX export"
            )
        return io

    def _batch_from_profile(self) -> None:
        """``max_batch`` from the engine's optimisation profile (0), as ONNX Runtime's backend
        reads its graph: without it a dynamic-batch engine gets one frame per enqueue.

        The engine, not the manifest, is asked: it is what ``set_input_shape`` checks against.
        ``get_tensor_profile_shape(name, 0)`` (8.5+) and ``get_profile_shape(0, index)`` (8.x)
        return (min, opt, max) shapes; a fixed batch dimension (not -1) stays a fixed batch.
        """
        engine, name = self.engine, self._io["input"]["name"]
        if self.caps.tensor_api:
            dims = tuple(engine.get_tensor_shape(name))
            shapes = engine.get_tensor_profile_shape(name, 0)
        else:
            dims = tuple(engine.get_binding_shape(self._io["input"]["index"]))
            shapes = engine.get_profile_shape(0, self._io["input"]["index"])
        if not dims or int(dims[0]) >= 0:
            self.dynamic_batch = False  # only H and W are free: the batch is the engine's
            return
        lo, hi = (int(next(iter(shapes[i]))) for i in (0, 2))  # the batch dimension
        if not lo <= int(self.input_shape[0]) <= hi:
            raise ConfigError(
                f"batch {self.input_shape[0]} is outside the engine's profile (batch {lo} to "
                f"{hi}): open it with a batch in that range or rebuild with a wider --dynamic"
            )
        self.dynamic_batch = True
        self.max_batch = max(hi, 1)

    def _new_slot(self) -> _Slot:
        slot = _Slot()
        try:
            slot.context = self.engine.create_execution_context()
            if slot.context is None:
                raise BackendUnavailableError(
                    f"TensorRT could not create an execution context for {self.path} (out of "
                    "GPU memory?): close other GPU programs or use fewer threads"
                )
            slot.stream = self.cuda.stream_create()
            for _ in range(4):
                slot.events.append(self.cuda.event_create())
            self._set_shape(slot, tuple(self.input_shape))
        except BaseException:
            self._destroy_slot(slot)  # stream, events, buffers, context: none outlives a failure
            raise
        return slot

    def _slot(self) -> _Slot:
        slot = getattr(self._local, "slot", None)
        if slot is not None:
            return slot
        with self._slots_lock:
            self._check_open()  # under the lock: close() takes the list under it too
            if len(self._slots) < self.max_contexts:
                # A robot callback thread has no current CUDA context (pycuda) or is bound to
                # device 0 (runtime API): the context, stream and buffers must be made on ours.
                with self.cuda.activate():
                    slot = self._new_slot()
                self._slots.append(slot)
            else:  # more threads than contexts: they share one, serialised by its lock
                if self._shared is None:
                    self._shared = self._slots[0]
                slot = self._shared
        self._local.slot = slot
        return slot

    @contextlib.contextmanager
    def _using(self, slot: _Slot) -> Iterator[None]:
        """The slot's lock and the CUDA context; ClosedError if close() got there first."""
        with slot.lock:
            self._check_open()
            if slot.context is None:  # freed by a close() this thread did not see start
                raise ClosedError(f"tensorrt backend for {self.path} is closed: open a new one")
            with self.cuda.activate():
                yield

    def _set_shape(self, slot: _Slot, shape: Tuple[int, ...]) -> None:
        """Fix the input shape on the context and (re)allocate buffers to fit."""
        ctx, cuda = slot.context, self.cuda
        ok = True
        if self.caps.tensor_api:
            if self.dynamic:
                ok = ctx.set_input_shape(self._io["input"]["name"], shape)
            out_shape = tuple(ctx.get_tensor_shape(self._io["output"]["name"]))
        else:
            if self.dynamic:
                ok = ctx.set_binding_shape(self._io["input"]["index"], shape)
            out_shape = tuple(ctx.get_binding_shape(self._io["output"]["index"]))
        if ok is False or any(int(d) < 0 for d in out_shape):
            # TensorRT returns False (and -1 output dims) for a shape outside the profile.
            raise ConfigError(
                f"input shape {tuple(shape)} is outside the engine's optimisation profile "
                f"{self.manifest.engine_field('profile')}: use a size within it "
                "or rebuild the engine with a wider --dynamic range"
            )
        n_in, n_out = int(np.prod(shape)), int(np.prod(out_shape))
        if n_in > slot.capacity or n_out > slot.out_capacity:
            slot.shape = slot.out_shape = None  # a failure below leaves no stale shape behind
            if slot.stream is not None:
                # A failed call (TensorRT refused the enqueue) can leave its input copy
                # queued: it must not read the pinned buffer freed below.
                cuda.stream_sync(slot.stream)
            self._free_buffers(slot)
            in_dt, out_dt = self._io["input"]["dtype"], self._io["output"]["dtype"]
            slot.h_in = cuda.pinned_empty((n_in,), in_dt)
            slot.h_out = cuda.pinned_empty((n_out,), out_dt)
            slot.d_in = cuda.malloc(n_in * np.dtype(in_dt).itemsize)
            slot.d_out = cuda.malloc(n_out * np.dtype(out_dt).itemsize)
            slot.capacity, slot.out_capacity = n_in, n_out
        if self.caps.tensor_api:
            for role, ptr in (("input", slot.d_in), ("output", slot.d_out)):
                if ctx.set_tensor_address(self._io[role]["name"], ptr) is False:
                    # TensorRT returns False (and logs why) for an unknown name or a pointer
                    # that breaks the tensor's alignment; an enqueue would then fail later.
                    raise BackendUnavailableError(
                        f"TensorRT refused the {role} buffer of {self.path} "
                        f"(set_tensor_address {self._io[role]['name']!r}, see its log above): "
                        "rebuild the engine from a cifrenet-edge ONNX export"
                    )
        if slot.graph is not None:
            cuda.graph_destroy(slot.graph)
            slot.graph = None
        slot.shape, slot.out_shape = tuple(shape), out_shape

    def _free_buffers(self, slot: _Slot) -> None:
        cuda = self.cuda
        if slot.d_in:
            cuda.free(slot.d_in)
        if slot.d_out:
            cuda.free(slot.d_out)
        if slot.h_in is not None:
            cuda.free_pinned(slot.h_in)
        if slot.h_out is not None:
            cuda.free_pinned(slot.h_out)
        slot.d_in = slot.d_out = 0
        slot.h_in = slot.h_out = None
        slot.capacity = slot.out_capacity = 0

    # -- execution -------------------------------------------------------------------------
    def _enqueue(self, slot: _Slot, use_graph: bool) -> None:
        """Launch the network on the slot's stream (graph replay when ``use_graph``).

        ``use_graph`` is passed by each call (never read from the backend): a benchmark with
        graphs on one thread must not switch another thread's calls to graphs.
        """
        handle = self.cuda.stream_handle(slot.stream)
        if self.caps.tensor_api:
            if use_graph:
                if slot.graph is None:
                    slot.graph = self._capture(slot, handle)
                self.cuda.graph_launch(slot.graph, slot.stream)
                return
            ok = slot.context.execute_async_v3(handle)
        else:
            bindings = [0, 0]
            bindings[self._io["input"]["index"]] = int(slot.d_in)
            bindings[self._io["output"]["index"]] = int(slot.d_out)
            ok = slot.context.execute_async_v2(bindings, handle)
        if ok is False:
            raise BackendUnavailableError(
                f"TensorRT failed to enqueue {self.path} (see its log above): check GPU memory "
                "and the input shape"
            )

    def _capture(self, slot: _Slot, handle: int) -> Any:
        """trtexec's pattern (sampleInference.cpp 8.5.2 to 11.1): a plain enqueue, a sync,
        then ``execute_async_v3`` captured into a graph.

        The plain enqueue lets TensorRT update shape-dependent state outside the capture.
        Every failure ends the capture, frees what it made and clears the CUDA error it left
        (``graph_capture_abort``): a stream left capturing, a leaked graph or a stale
        ``cudaGetLastError`` would each break a later, unrelated call.
        """
        cuda, ctx = self.cuda, slot.context
        if ctx.execute_async_v3(handle) is False:
            raise BackendUnavailableError(
                f"TensorRT failed to enqueue {self.path} (see its log above): check GPU memory "
                "and the input shape"
            )
        cuda.stream_sync(slot.stream)
        cuda.graph_capture_begin(slot.stream)
        try:
            ok = ctx.execute_async_v3(handle)
        except BaseException:
            with contextlib.suppress(Exception):  # TensorRT's own error is the news
                cuda.graph_capture_abort(slot.stream)
            raise
        if ok is False:
            with contextlib.suppress(Exception):  # e.g. a sticky error: reported below
                cuda.graph_capture_abort(slot.stream)
            raise BackendUnavailableError(
                f"TensorRT failed to enqueue {self.path} under CUDA graph capture (see its log "
                "above; the engine may hold operations a capture does not allow): run without "
                "cuda_graph"
            )
        try:
            return cuda.graph_capture_end(slot.stream)
        except BackendUnavailableError as exc:  # invalidated capture or failed instantiation
            cuda.clear_last_error()
            raise BackendUnavailableError(
                f"CUDA graph capture of {self.path} failed ({exc}): run without cuda_graph"
            ) from None

    def _prepare(self, slot: _Slot, x: np.ndarray) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ConfigError(f"TensorRT backend takes N x 3 x H x W input, got {tuple(x.shape)}")
        if tuple(x.shape) != slot.shape:
            if not self.dynamic:
                raise ConfigError(
                    f"engine {self.path} is built for input {slot.shape}, got {tuple(x.shape)}: "
                    "open it with the Segmenter (it resizes frames) or rebuild with --dynamic"
                )
            self._set_shape(slot, tuple(x.shape))
        n = int(np.prod(x.shape))
        np.copyto(slot.h_in[:n].reshape(x.shape), x, casting="same_kind")

    def infer(self, x: np.ndarray) -> np.ndarray:
        self._check_open()
        slot = self._slot()
        with self._using(slot):
            self._prepare(slot, x)
            n_in, n_out = int(np.prod(slot.shape)), int(np.prod(slot.out_shape))
            self.cuda.htod_async(slot.d_in, slot.h_in[:n_in], slot.stream)
            self._enqueue(slot, self.cuda_graph)
            self.cuda.dtoh_async(slot.h_out[:n_out], slot.d_out, slot.stream)
            self.cuda.stream_sync(slot.stream)
            out = slot.h_out[:n_out].reshape(slot.out_shape)
            return np.array(out, dtype=np.float32, copy=True)

    def _predict_frame(self, frame: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 BGR -> HxW uint8 class map; argmax on the GPU, uint8 crosses back."""
        from ...preprocess import check_frame, preprocess
        from ..postprocess import resize_mask

        self._check_open()
        frame = check_frame(frame)
        cp = self._cupy
        slot = self._slot()
        n, _, h, w = self.input_shape
        with self._using(slot):
            if slot.shape != tuple(self.input_shape):
                self._set_shape(slot, tuple(self.input_shape))
            n_in = int(np.prod(slot.shape))
            x = slot.h_in[:n_in].reshape(slot.shape)
            preprocess(frame, (w, h), self.manifest.mean_bgr, self.manifest.scale, out=x[:1])
            if n > 1:
                x[1:] = 0.0  # a fixed-batch engine runs padded; only row 0 is read back
            self.cuda.htod_async(slot.d_in, slot.h_in[:n_in], slot.stream)
            self._enqueue(slot, self.cuda_graph)
            # The logits' own size: a network may output below its input resolution (the
            # Segmenter's host path takes the argmax there too, then resizes the class map).
            c, oh, ow = (int(d) for d in slot.out_shape[1:4])
            nbytes = c * oh * ow * 4  # batch row 0 only
            mem = cp.cuda.UnownedMemory(int(slot.d_out), nbytes, self, self.cuda.device_id)
            logits = cp.ndarray((c, oh, ow), dtype=cp.float32, memptr=cp.cuda.MemoryPointer(mem, 0))
            stream = cp.cuda.ExternalStream(self.cuda.stream_handle(slot.stream))
            with stream:
                small = cp.argmax(logits, axis=0).astype(cp.uint8)  # first maximum, as numpy
                mask = small.get(stream=stream)
            stream.synchronize()
        return resize_mask(mask, (frame.shape[1], frame.shape[0]))

    def benchmark_gpu(
        self,
        iters: int = 200,
        warmup: int = 20,
        cuda_graph: bool = False,
        x: Optional[np.ndarray] = None,
    ) -> Dict[str, Any]:
        """Per-iteration device times in ms, trtexec's terms: ``h2d``, ``compute``, ``d2h``.

        CUDA events bracket each step on the slot's stream, so host Python overhead is not
        counted in ``compute`` (trtexec's "GPU Compute Time"); ``latency`` is h2d + compute +
        d2h from the same events. ``walltime_s`` is the host wall clock around the timed
        iterations (warm-up excluded): trtexec's "Total Host Walltime", which its throughput
        divides by. The input is ``x`` (a preprocessed real frame: INT8 kernels and denormals
        behave differently on real data) or zeros at the engine's shape. ``cuda_graph``
        applies to this call only.
        """
        self._check_open()
        if cuda_graph and not (self.caps.cuda_graphs and self.cuda.supports_graphs):
            raise BackendUnavailableError(
                "CUDA graphs need TensorRT 8.5+ and cuda-python "
                f"(have TensorRT {self.version}, {self.cuda.library})"
            )
        slot = self._slot()
        graph = bool(cuda_graph)
        result = {"h2d": [], "compute": [], "d2h": [], "latency": []}  # type: Dict[str, Any]
        wall = 0.0
        with self._using(slot):
            if slot.shape is None:  # a failed reshape left no buffers: make them again
                self._set_shape(slot, tuple(self.input_shape))
            n_in, n_out = int(np.prod(slot.shape)), int(np.prod(slot.out_shape))
            if x is None:
                slot.h_in[:n_in] = 0
            elif int(np.prod(x.shape)) != n_in:
                raise ConfigError(
                    f"benchmark input shape {tuple(x.shape)} does not match the engine's "
                    f"{tuple(slot.shape)}: pass a tensor of the engine's input shape"
                )
            else:
                np.copyto(slot.h_in[:n_in].reshape(slot.shape), x, casting="same_kind")
            if graph and slot.graph is None:
                # Capture (with its plain warm-up enqueue) outside the timed loop: with
                # warmup=0 it would otherwise land in the first ``compute`` sample.
                self._enqueue(slot, True)
                self.cuda.stream_sync(slot.stream)
            e0, e1, e2, e3 = slot.events
            t0 = time.perf_counter()
            for i in range(int(warmup) + int(iters)):
                if i == int(warmup):
                    t0 = time.perf_counter()
                self.cuda.event_record(e0, slot.stream)
                self.cuda.htod_async(slot.d_in, slot.h_in[:n_in], slot.stream)
                self.cuda.event_record(e1, slot.stream)
                self._enqueue(slot, graph)
                self.cuda.event_record(e2, slot.stream)
                self.cuda.dtoh_async(slot.h_out[:n_out], slot.d_out, slot.stream)
                self.cuda.event_record(e3, slot.stream)
                self.cuda.stream_sync(slot.stream)
                if i >= int(warmup):
                    h2d = self.cuda.event_elapsed_ms(e0, e1)
                    compute = self.cuda.event_elapsed_ms(e1, e2)
                    d2h = self.cuda.event_elapsed_ms(e2, e3)
                    result["h2d"].append(h2d)
                    result["compute"].append(compute)
                    result["d2h"].append(d2h)
                    result["latency"].append(h2d + compute + d2h)
            if int(iters) > 0:
                wall = time.perf_counter() - t0
        result.update(
            {
                "walltime_s": wall,
                "cuda_graph": graph,
                "input_shape": list(slot.shape or ()),
                "tensorrt": self.version,
                "gpu": self.gpu,
                "precision": self.precision,
            }
        )
        return result

    def describe(self) -> Dict[str, Any]:
        d = super().describe()
        d.update(
            {
                "tensorrt": self.version,
                "gpu": self.gpu,
                "execution_api": "execute_async_v3" if self.caps.tensor_api else "execute_async_v2",
                "cuda_library": self.cuda.library,
                "cuda_graph": self.cuda_graph,
                "warnings": list(self.warnings),
            }
        )
        return d

    # -- teardown --------------------------------------------------------------------------
    def _destroy_slot(self, slot: _Slot) -> None:
        """Free what a slot holds, whatever state it is in (also a half-built one).

        Best effort: after a sticky CUDA error every call fails, and freeing the rest still
        matters more than the first error (the process has to restart the GPU work anyway).
        """
        cuda = self.cuda
        steps = []  # type: List[Any]
        if slot.stream is not None:
            # Queued copies must not outlive the buffers they read and write.
            steps.append(lambda: cuda.stream_sync(slot.stream))
        if slot.graph is not None:
            steps.append(lambda g=slot.graph: cuda.graph_destroy(g))
        steps.append(lambda: self._free_buffers(slot))
        for ev in slot.events:
            steps.append(lambda ev=ev: cuda.event_destroy(ev))
        if slot.stream is not None:
            steps.append(lambda s=slot.stream: cuda.stream_destroy(s))
        for step in steps:
            with contextlib.suppress(Exception):  # see the docstring
                step()
        slot.graph = None
        slot.events = []
        slot.stream = None
        slot.context = None  # contexts before the engine, the engine before the runtime

    def _close(self) -> None:
        cuda = getattr(self, "cuda", None)
        if cuda is None:
            return
        with self._slots_lock:  # from here no thread can add a slot (``_slot`` checks closed)
            slots, self._slots, self._shared = list(self._slots), [], None
        with cuda.activate():
            for slot in slots:
                with slot.lock:  # waits for a call in flight on this slot to finish
                    self._destroy_slot(slot)
            self.engine = None
            self.runtime = None
