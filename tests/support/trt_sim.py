"""TensorRT engines that really compute, over the simulated CUDA of ``cuda_sim.py``.

``ComputeStandIn`` is ``trt_standin.StandIn`` (names, deprecations, missing members exactly
as NVIDIA's bindings of that version) whose engine computes: the "engine file" names an ONNX
model, and ``execute_async_v2/v3`` enqueue, on the given stream, ONNX Runtime on the bytes at
the input address, written to the output address, with the engine's dtypes and shapes. It
returns what TensorRT returns: ``None`` from ``deserialize_cuda_engine`` for a foreign or
garbage plan and from ``create_execution_context`` without memory, ``bool`` from execute,
``False`` from ``set_input_shape`` outside the profile, ``-1`` from
``add_optimization_profile`` for an invalid profile. ``SimGpu`` assembles one machine (CUDA
through the real ``CudaPython`` wrapper, this TensorRT, CuPy); with a real ``CudaPython`` and
``TorchDeviceExecutor`` the same stand-in runs over real device memory
(``tests/gpu_checks.py``).

Nothing here stands in for ONNX Runtime: the engines call the real one.
"""

from __future__ import annotations

import contextlib
import json
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from .cuda_sim import (  # noqa: F401  (re-exported: one import for the tests)
    CUDA_PYTHON_VERSIONS,
    SimCudart,
    SimCupy,
    SimFault,
    load_cuda_api,
)
from .trt_build_sim import BuildModel
from .trt_standin import Scenario, StandIn, _manifest

# --------------------------------------------------------------------------- engines
ENGINE_MAGIC = b"cifrenet-sim-engine/1\n"


def engine_bytes(header: Dict[str, Any]) -> bytes:
    """A stand-in plan: the magic line and a JSON header naming the model and its I/O."""
    return ENGINE_MAGIC + json.dumps(header, sort_keys=True).encode()


def parse_engine(data: bytes) -> Optional[Dict[str, Any]]:
    if not isinstance(data, (bytes, bytearray)) or not bytes(data).startswith(ENGINE_MAGIC):
        return None
    try:
        return json.loads(bytes(data)[len(ENGINE_MAGIC) :].decode())
    except ValueError:
        return None


class OrtCompute:
    """The engine's network: ONNX Runtime on the engine's source ONNX (thread-safe run)."""

    def __init__(self, onnx_path: str) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        self.session = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
        self.in_name = self.session.get_inputs()[0].name
        self._shapes: Dict[Tuple[int, ...], Tuple[int, ...]] = {}

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.in_name: x.astype(np.float32)})[0]

    def output_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        if in_shape not in self._shapes:
            self._shapes[in_shape] = tuple(self(np.zeros(in_shape, np.float32)).shape)
        return self._shapes[in_shape]


class SimExecutor:
    """Enqueues the network on a simulated stream: input bytes in, output bytes out."""

    def __init__(self, sim: SimCudart, compute: Any, compute_ms: float = 2.0) -> None:
        self.sim, self.compute, self.compute_ms = sim, compute, compute_ms

    def output_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return self.compute.output_shape(tuple(in_shape))

    def enqueue(
        self, handle: int, inp: Tuple[int, tuple, Any], out: Tuple[int, tuple, Any]
    ) -> bool:
        (ip, ishape, idt), (op_, oshape, odt) = inp, out
        in_n = int(np.prod(ishape)) * np.dtype(idt).itemsize
        out_n = int(np.prod(oshape)) * np.dtype(odt).itemsize
        sim, compute = self.sim, self.compute

        def run() -> None:
            x = np.frombuffer(sim.read(ip, in_n), idt).reshape(ishape)
            with np.errstate(over="ignore", invalid="ignore"):  # garbage in: garbage, quietly
                y = compute(x.astype(np.float32))
                if tuple(y.shape) != tuple(oshape):
                    raise SimFault(f"network output {y.shape} does not match {oshape}")
                sim.write(op_, np.ascontiguousarray(y.astype(odt)).tobytes())

        ranges = [(ip, in_n), (op_, out_n)]
        return sim.enqueue_kernel(handle, "tensorrt.enqueue", run, ranges, self.compute_ms) == 0


class TrtWorld(BuildModel, Scenario):
    """The behaviour behind the strict stand-in classes: engines, contexts, profiles, and
    (``BuildModel``) the parser and builder with TensorRT's own refusals."""

    def __init__(
        self,
        version: str,
        executor_for: Callable[[Dict[str, Any]], Any],
        alloc: Callable[[int], Optional[int]],
        free: Callable[[int], None],
        dla_cores: int = 0,
        compute_capability: str = "8.7",
    ) -> None:
        super().__init__(version, dla_cores=dla_cores)
        self.compute_capability = compute_capability
        self._build_init()
        self.executor_for, self.alloc, self.free = executor_for, alloc, free
        self.loggers: List[Any] = []
        self.runtimes: List[Tuple[Any, Any]] = []  # (runtime, its logger)
        self.contexts: weakref.WeakSet[Any] = weakref.WeakSet()
        #: (name, args) -> callable(obj, *args): a test's extra behaviour (pauses, failures)
        self.hooks: Dict[str, Callable[..., Any]] = {}
        self.enqueues: List[Tuple[str, int]] = []  # (thread name, stream handle)
        #: init_libnvinfer_plugins called (an engine with a plugin layer needs it first)
        self.plugins_registered = False

    # state lives on the instance, outside the strict attribute machinery
    @staticmethod
    def state(obj: Any) -> Dict[str, Any]:
        st = obj.__dict__.get("_sim")
        if st is None:
            st = {}
            object.__setattr__(obj, "_sim", st)
        return st

    def on_init(self, s: StandIn, cls: str, obj: Any, args: tuple) -> None:
        if cls in ("Logger", "ILogger"):
            self.loggers.append(obj)
        elif cls == "Runtime":
            self.runtimes.append((obj, args[0] if args else None))
        elif cls == "OnnxParser":
            self.state(obj)["network"] = args[0] if args else None

    def on_set(self, s: StandIn, cls: str, obj: Any, item: str, value: Any) -> None:
        self.state(obj)[item] = value

    def returns(self, s: StandIn, cls: str, item: str, args: tuple) -> Any:
        obj = getattr(s._tls, "obj", None)
        hook = self.hooks.get(f"{cls}.{item}")
        if hook is not None:
            res = hook(obj, *args)
            if res is not None:
                return res
        fn = getattr(self, f"_{cls}__{item}", None)
        if fn is not None:
            return fn(s, obj, *args)
        return super().returns(s, cls, item, args)

    # -- module functions ----------------------------------------------------------------------
    def _tensorrt__init_libnvinfer_plugins(self, s, _obj, logger, namespace):
        self.plugins_registered = True  # initLibNvInferPlugins registers the creators
        return True

    # -- Runtime -----------------------------------------------------------------------------
    def _Runtime__deserialize_cuda_engine(self, s, runtime, data):
        header = parse_engine(data)
        if header is None or str(header.get("tensorrt")) != self.version_string:
            return None  # TensorRT logs "magic tag / version mismatch" and returns None
        if header.get("plugins") and not self.plugins_registered:
            return None  # "getPluginCreator could not find plugin ...": creators not registered
        eng = s.instance("ICudaEngine")
        st = self.state(eng)
        st["header"] = header
        st["io"] = [*header["inputs"], *header["outputs"]]
        order = header.get("order") or [t["name"] for t in st["io"]]
        st["order"] = order
        st["executor"] = self.executor_for(header)
        st["dla_core"] = self.state(runtime).get("DLA_core")
        return eng

    # -- ICudaEngine ---------------------------------------------------------------------------
    def _io(self, eng, name):
        for t in self.state(eng)["io"]:
            if t["name"] == name:
                return t
        return None

    def _is_input(self, eng, name) -> bool:
        return any(t["name"] == name for t in self.state(eng)["header"]["inputs"])

    def _ICudaEngine__num_io_tensors(self, s, eng):
        return len(self.state(eng)["io"])

    _ICudaEngine__num_bindings = _ICudaEngine__num_io_tensors

    def _ICudaEngine__get_tensor_name(self, s, eng, i):
        return self.state(eng)["order"][int(i)]

    _ICudaEngine__get_binding_name = _ICudaEngine__get_tensor_name

    def _ICudaEngine__get_binding_index(self, s, eng, name):
        order = self.state(eng)["order"]
        return order.index(name) if name in order else -1

    def _ICudaEngine__binding_is_input(self, s, eng, i):
        return self._is_input(eng, self.state(eng)["order"][int(i)])

    def _ICudaEngine__get_tensor_mode(self, s, eng, name):
        return getattr(s.enums["TensorIOMode"], "INPUT" if self._is_input(eng, name) else "OUTPUT")

    def _ICudaEngine__get_tensor_dtype(self, s, eng, name):
        return getattr(s.enums["DataType"], self._io(eng, name).get("dtype", "FLOAT"))

    def _ICudaEngine__get_binding_dtype(self, s, eng, i):
        return self._ICudaEngine__get_tensor_dtype(s, eng, self.state(eng)["order"][int(i)])

    def _ICudaEngine__get_tensor_shape(self, s, eng, name):
        t = self._io(eng, name)
        if "shape" in t:
            return tuple(t["shape"])
        inp = self.state(eng)["header"]["inputs"][0]
        if any(d < 0 for d in inp["shape"]):
            return (-1, -1, -1, -1)
        return tuple(self.state(eng)["executor"].output_shape(tuple(inp["shape"])))

    def _ICudaEngine__get_binding_shape(self, s, eng, i):
        return self._ICudaEngine__get_tensor_shape(s, eng, self.state(eng)["order"][int(i)])

    def _ICudaEngine__get_tensor_profile_shape(self, s, eng, name, profile_index):
        """[min, opt, max] of an input in profile ``profile_index`` (one profile is built)."""
        t = self._io(eng, name)
        if t is None or not self._is_input(eng, name) or int(profile_index) != 0:
            raise RuntimeError(f"no profile {profile_index} shapes for {name!r}")
        prof = t.get("profile")
        if prof is None:
            return [tuple(t["shape"])] * 3
        return [tuple(prof["min"]), tuple(prof["opt"]), tuple(prof["max"])]

    def _ICudaEngine__get_profile_shape(self, s, eng, profile_index, binding):
        name = binding if isinstance(binding, str) else self.state(eng)["order"][int(binding)]
        return self._ICudaEngine__get_tensor_profile_shape(s, eng, name, profile_index)

    def _ICudaEngine__create_execution_context(self, s, eng):
        need = int(self.state(eng)["header"].get("device_memory", 1 << 20))
        ptr = self.alloc(need)
        if ptr is None:
            return None  # TensorRT: "out of memory" in the log, None to the caller
        ctx = s.instance("IExecutionContext")
        st = self.state(ctx)
        st.update(engine=eng, shapes={}, addresses={}, memory=ptr)
        for t in self.state(eng)["header"]["inputs"]:
            if all(d >= 0 for d in t["shape"]):
                st["shapes"][t["name"]] = tuple(t["shape"])
        weakref.finalize(ctx, self.free, ptr)
        self.contexts.add(ctx)
        return ctx

    # -- IExecutionContext -------------------------------------------------------------------------
    def _ctx_engine(self, ctx):
        return self.state(ctx)["engine"]

    def _IExecutionContext__set_input_shape(self, s, ctx, name, shape):
        eng = self._ctx_engine(ctx)
        t = self._io(eng, name)
        shape = tuple(int(d) for d in shape)
        if t is None or not self._is_input(eng, name) or len(shape) != len(t["shape"]):
            return False
        prof = t.get("profile")
        if prof is None:
            ok = shape == tuple(t["shape"])
        else:
            ok = all(lo <= d <= hi for lo, d, hi in zip(prof["min"], shape, prof["max"]))
        if ok:
            self.state(ctx)["shapes"][name] = shape
        return ok

    def _IExecutionContext__set_binding_shape(self, s, ctx, index, shape):
        name = self.state(self._ctx_engine(ctx))["order"][int(index)]
        return self._IExecutionContext__set_input_shape(s, ctx, name, shape)

    def _IExecutionContext__get_tensor_shape(self, s, ctx, name):
        eng = self._ctx_engine(ctx)
        st = self.state(ctx)
        if self._is_input(eng, name):
            return st["shapes"].get(name, tuple(self._io(eng, name)["shape"]))
        inp = self.state(eng)["header"]["inputs"][0]["name"]
        if inp not in st["shapes"]:
            return (-1, -1, -1, -1)
        return tuple(self.state(eng)["executor"].output_shape(st["shapes"][inp]))

    def _IExecutionContext__get_binding_shape(self, s, ctx, index):
        name = self.state(self._ctx_engine(ctx))["order"][int(index)]
        return self._IExecutionContext__get_tensor_shape(s, ctx, name)

    def _IExecutionContext__set_tensor_address(self, s, ctx, name, ptr):
        if self._io(self._ctx_engine(ctx), name) is None:
            return False
        self.state(ctx)["addresses"][name] = int(ptr)
        return True

    def _IExecutionContext__get_tensor_address(self, s, ctx, name):
        return self.state(ctx)["addresses"].get(name, 0)

    def _launch(self, s, ctx, addresses: Dict[str, int], stream: int) -> bool:
        eng = self._ctx_engine(ctx)
        st, est = self.state(ctx), self.state(eng)
        header = est["header"]
        inp, out = header["inputs"][0], header["outputs"][0]
        if inp["name"] not in st["shapes"]:
            return False  # "not all input dimensions are specified"
        if not all(addresses.get(t["name"]) for t in est["io"]):
            return False  # "address is not set for tensor ..."
        shape = st["shapes"][inp["name"]]
        sim = getattr(est["executor"], "sim", None)
        if sim is not None and st.get("warm_shape") != shape:
            # The first enqueue of a context, and the first after an input shape change,
            # allocates (NvInferRuntime.h 8.5.2/8.6.1: "the first enqueueV2() call after a
            # setInputShapeBinding() call will cause failure in stream capture due to resource
            # allocation"; NVIDIA/TensorRT#2603: enqueueV3 under capture on 8.5.2, "operation
            # not permitted when stream is capturing"; trtexec enqueues once before capturing).
            with sim._lock:
                err = sim._unsafe_during_capture()  # cudaMalloc's rule: invalidates, 900
            if err:
                sim._last_error[threading.get_ident()] = err
                return False
        out_shape = est["executor"].output_shape(shape)
        dt = {
            "FLOAT": np.float32,
            "HALF": np.float16,
            "INT8": np.int8,
            "INT32": np.int32,
            "UINT8": np.uint8,
        }
        self.enqueues.append((threading.current_thread().name, int(stream)))
        ok = bool(
            est["executor"].enqueue(
                int(stream),
                (addresses[inp["name"]], shape, dt[inp.get("dtype", "FLOAT")]),
                (addresses[out["name"]], out_shape, dt[out.get("dtype", "FLOAT")]),
            )
        )
        if ok:
            st["warm_shape"] = shape
        return ok

    def _IExecutionContext__execute_async_v3(self, s, ctx, stream_handle):
        return self._launch(s, ctx, dict(self.state(ctx)["addresses"]), stream_handle)

    def _IExecutionContext__execute_async_v2(self, s, ctx, bindings, stream_handle):
        order = self.state(self._ctx_engine(ctx))["order"]
        if len(bindings) != len(order):
            return False
        return self._launch(s, ctx, {n: int(p) for n, p in zip(order, bindings)}, stream_handle)

    # -- builder side: profiles (what add_optimization_profile returns; set_shape: BuildModel) ----
    def _IBuilderConfig__add_optimization_profile(self, s, cfg, prof):
        shapes = self.state(prof).get("shapes", {})
        ok = bool(shapes) and all(
            len(lo) == len(opt) == len(hi)
            and all(a <= b <= c for a, b, c in zip(lo, opt, hi))
            and all(d > 0 for d in lo)
            for lo, opt, hi in shapes.values()
        )
        if not ok:
            return -1  # TensorRT: invalid profile -> -1 and an error in the log
        n = self.state(cfg).get("profiles", 0)
        self.state(cfg)["profiles"] = n + 1
        self.state(cfg).setdefault("profile_objs", []).append(prof)
        return n


class ComputeStandIn(StandIn):
    """``StandIn`` whose calls reach ``TrtWorld`` with the instance they were made on."""

    def __init__(self, version: str, world: TrtWorld) -> None:
        self._tls = threading.local()
        super().__init__(version, world)

    def make_class(self, cls: str) -> type:
        if cls in self.classes:
            return self.classes[cls]
        klass = super().make_class(cls)
        members, tls, world, standin = self.members(cls), self._tls, self.scenario, self
        strict_getattr, strict_setattr, strict_init = (
            klass.__getattr__,
            klass.__setattr__,
            klass.__init__,
        )

        def __getattr__(obj: Any, item: str) -> Any:
            if item.startswith("__"):
                raise AttributeError(item)
            tls.obj = obj
            try:
                value = strict_getattr(obj, item)
            finally:
                tls.obj = None  # hold no reference: a context must die with its last owner
            if members.get(item) != "method":
                return value

            def bound(*args: Any) -> Any:
                tls.obj = obj
                try:
                    return value(*args)
                finally:
                    tls.obj = None

            return bound

        def __setattr__(obj: Any, item: str, value: Any) -> None:
            strict_setattr(obj, item, value)
            if type(obj).__name__ == cls:
                world.on_set(standin, cls, obj, item, value)

        def __init__(obj: Any, *args: Any, **kwargs: Any) -> None:
            strict_init(obj, *args, **kwargs)
            world.on_init(standin, cls, obj, args)

        klass.__getattr__ = __getattr__
        klass.__setattr__ = __setattr__
        klass.__init__ = __init__
        return klass


# --------------------------------------------------------------------------- assembly
class SimGpu:
    """One machine: CUDA (through the real CudaPython wrapper), stand-in TensorRT, CuPy.

    Simulated by default. With ``cuda`` (a real ``CudaPython``) the same stand-in TensorRT
    runs over real device memory, execution contexts take their memory from ``cudaMalloc``
    and ``executor_for`` must compute on the device (``TorchDeviceExecutor``): that is what
    ``tests/gpu_checks.py`` does on a GPU machine without TensorRT.
    """

    def __init__(
        self,
        trt_version: str = "10.3.0",
        cuda_python: str = "13.4.4",
        executor_for: Optional[Callable[[Dict[str, Any]], Any]] = None,
        compute_ms: float = 2.0,
        dla_cores: int = 0,
        cuda: Any = None,
        **sim_kwargs: Any,
    ) -> None:
        from cifrenet_edge.trt.cuda import CudaPython

        self.compute_ms = compute_ms
        self._executor_for = executor_for
        if cuda is None:
            self.sim: Optional[SimCudart] = SimCudart(cuda_python, **sim_kwargs)
            self.cuda = CudaPython(0, cudart=self.sim)
            self.cupy: Optional[SimCupy] = SimCupy(self.sim)
            sim = self.sim
            alloc = lambda n: sim.alloc_device(n, owner="tensorrt")  # noqa: E731
            free = sim.free_device
        else:
            self.sim, self.cuda, self.cupy = None, cuda, None
            alloc, free = _device_alloc(cuda), _device_free(cuda)
        self.world = TrtWorld(trt_version, self.executor_for, alloc, free, dla_cores=dla_cores)
        self.standin = ComputeStandIn(trt_version, self.world)
        self.trt = self.standin.module()
        self._computes: Dict[str, Any] = {}

    def executor_for(self, header: Dict[str, Any]) -> Any:
        if self._executor_for is not None:
            return self._executor_for(header)
        path = header["onnx"]
        if path not in self._computes:
            self._computes[path] = OrtCompute(path)
        return SimExecutor(self.sim, self._computes[path], self.compute_ms)

    @property
    def rec(self):
        return self.standin.rec

    def write_engine(
        self,
        folder: Path,
        onnx: Path,
        shape: Tuple[int, int, int, int],
        dynamic: Optional[Dict[str, Any]] = None,
        dtypes: Optional[Dict[str, str]] = None,
        order: Optional[List[str]] = None,
        name: str = "m.engine",
        device_memory: int = 1 << 20,
        manifest: Optional[Dict[str, Any]] = None,
    ) -> Path:
        """A stand-in engine of ``onnx`` and its sidecar, as `export --format engine` writes."""
        dtypes = dtypes or {}
        n, c, h, w = shape
        in_shape = [n, c, h, w]
        profile = None
        if dynamic:
            in_shape = [-1, 3, -1, -1]
            b = dynamic.get("batch") or [1, 1, 1]
            profile = {
                "min": [b[0], 3, dynamic["min"][1], dynamic["min"][0]],
                "opt": [b[1], 3, dynamic["opt"][1], dynamic["opt"][0]],
                "max": [b[2], 3, dynamic["max"][1], dynamic["max"][0]],
            }
        m = dict(manifest) if manifest else _manifest("fp32", bool(dynamic))
        in_name, out_name = m.get("input_name", "input"), m.get("output_name", "logits")
        header = {
            "tensorrt": self.world.version_string,
            "onnx": str(onnx),
            "inputs": [
                {
                    "name": in_name,
                    "dtype": dtypes.get(in_name, "FLOAT"),
                    "shape": in_shape,
                    **({"profile": profile} if profile else {}),
                }
            ],
            "outputs": [{"name": out_name, "dtype": dtypes.get(out_name, "FLOAT")}],
            "order": order or [in_name, out_name],
            "device_memory": device_memory,
        }
        folder.mkdir(parents=True, exist_ok=True)
        eng = folder / name
        eng.write_bytes(engine_bytes(header))
        info = self.cuda.device_info()
        m["kind"] = "engine"
        m["resolution"] = None if dynamic else [w, h]
        m["dynamic"] = dynamic
        m["batch"] = n
        m["engine"] = {
            "tensorrt": self.world.version_string,
            "gpu": info["name"],
            "compute_capability": info["compute_capability"],
            **({"profile": profile} if profile else {}),
        }
        (folder / (name + ".json")).write_text(json.dumps(m))
        return eng

    @contextlib.contextmanager
    def installed(self, cupy: bool = False):
        """Make the TensorRT backend find this machine's TensorRT, CUDA (and CuPy)."""
        import sys

        from cifrenet_edge.runtime.backends import tensorrt as trt_backend
        from cifrenet_edge.trt import api

        had_cupy = "cupy" in sys.modules
        saved = (api.import_tensorrt, trt_backend._open_cuda, sys.modules.get("cupy"))
        api.import_tensorrt = lambda: self.trt
        trt_backend._open_cuda = lambda index: self.cuda
        if not cupy:
            sys.modules["cupy"] = None  # type: ignore[assignment]  # import cupy -> ImportError
        elif self.cupy is not None:
            sys.modules["cupy"] = self.cupy  # type: ignore[assignment]
        # else: a real GPU, the real CuPy
        try:
            yield self
        finally:
            api.import_tensorrt, trt_backend._open_cuda = saved[0], saved[1]
            if had_cupy:
                sys.modules["cupy"] = saved[2]  # type: ignore[assignment]
            else:
                sys.modules.pop("cupy", None)

    def open(self, engine: Path, input_shape=None, **kwargs: Any):
        """A TensorRTBackend on this machine (call inside ``installed()``)."""
        from cifrenet_edge.manifest import read_manifest
        from cifrenet_edge.runtime.backends.tensorrt import TensorRTBackend

        m = read_manifest(engine)
        if input_shape is None:
            w, h = m["resolution"] or m["dynamic"]["opt"]
            input_shape = (int(m.get("batch") or 1), 3, h, w)
        return TensorRTBackend(path=str(engine), manifest=m, input_shape=input_shape, **kwargs)


def make_onnx(
    path: Path,
    shape: Tuple[int, int, int, int] = (1, 3, 64, 128),
    classes: int = 19,
    dynamic: bool = False,
    stride: int = 1,
    seed: int = 0,
) -> Path:
    """A small real FP32 graph (Conv -> Relu -> Conv) named like an export.

    ``stride=2`` makes the logits half the input's size (a network without a final upsample);
    ``dynamic`` leaves N, H and W free as a ``--dynamic`` export does.
    """
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    w1 = helper.make_tensor(
        "w1", TensorProto.FLOAT, [8, 3, 3, 3], rng.normal(0, 0.5, 8 * 27).astype(np.float32)
    )
    w2 = helper.make_tensor(
        "w2",
        TensorProto.FLOAT,
        [classes, 8, 1, 1],
        rng.normal(0, 0.5, classes * 8).astype(np.float32),
    )
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c1"], pads=[1, 1, 1, 1], strides=[stride] * 2),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["logits"]),
    ]
    n, c, h, w = shape
    dims_in: List[Any] = ["N", 3, "H", "W"] if dynamic else [n, c, h, w]
    dims_out: List[Any] = (
        ["N", classes, "Ho", "Wo"] if dynamic else [n, classes, -(-h // stride), -(-w // stride)]
    )
    graph = helper.make_graph(
        nodes,
        "sim",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims_in)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, dims_out)],
        [w1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


# --------------------------------------------------------------------------- a real GPU
def _device_alloc(cuda: Any) -> Callable[[int], Optional[int]]:
    def alloc(n: int) -> Optional[int]:
        from cifrenet_edge.errors import BackendUnavailableError

        try:
            with cuda.activate():
                return int(cuda.malloc(n))
        except BackendUnavailableError:
            return None  # what TensorRT does without memory: no context

    return alloc


def _device_free(cuda: Any) -> Callable[[int], None]:
    def free(ptr: int) -> None:
        with contextlib.suppress(Exception), cuda.activate():  # interpreter shutdown
            cuda.free(ptr)

    return free


class _CudaArray:
    """``__cuda_array_interface__`` (v3) over a device pointer: PyTorch wraps it, no copy."""

    def __init__(self, ptr: int, shape: Tuple[int, ...], dtype: Any) -> None:
        self.__cuda_array_interface__ = {
            "shape": tuple(int(d) for d in shape),
            "typestr": np.dtype(dtype).str,
            "data": (int(ptr), False),
            "version": 3,
            "strides": None,
            "stream": None,  # ordering is ours: the views are used on the engine's stream
        }


class TorchDeviceExecutor:
    """The engine's network on the GPU: PyTorch on the given device pointers and stream.

    The tensors are views of the buffers the backend allocated (``torch.as_tensor`` over
    ``__cuda_array_interface__``), the work goes on ``torch.cuda.ExternalStream(handle)``,
    so a wrong pointer, size or stream shows in the results as it would with TensorRT.
    Views and stream wrappers are made on the first (plain) enqueue and reused, so an
    enqueue inside a CUDA-graph capture issues kernels only.
    """

    def __init__(self, model: Any, num_classes: int, device: str = "cuda:0") -> None:
        self.model, self.num_classes, self.device = model, int(num_classes), device
        self._lock = threading.Lock()
        self._views: Dict[Tuple[int, Tuple[int, ...], str], Any] = {}
        self._streams: Dict[int, Any] = {}

    def output_shape(self, in_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        n, _, h, w = in_shape
        return (n, self.num_classes, h, w)

    def _view(self, ptr: int, shape: Tuple[int, ...], dtype: Any) -> Any:
        import torch

        key = (int(ptr), tuple(shape), np.dtype(dtype).str)
        with self._lock:
            t = self._views.get(key)
            if t is None:
                t = torch.as_tensor(_CudaArray(ptr, shape, dtype), device=self.device)
                self._views[key] = t
            return t

    def enqueue(
        self, handle: int, inp: Tuple[int, tuple, Any], out: Tuple[int, tuple, Any]
    ) -> bool:
        import torch

        x = self._view(*inp)
        y = self._view(*out)
        with self._lock:
            stream = self._streams.get(int(handle))
            if stream is None:
                stream = torch.cuda.ExternalStream(int(handle), device=self.device)
                self._streams[int(handle)] = stream
        with torch.cuda.stream(stream), torch.inference_mode():
            y.copy_(self.model(x.float()).to(y.dtype))
        return True
