"""Recording stand-ins of TensorRT's Python API, one per version, generated from the binding
sources in ``resources/trt_api``: any call a version lacks fails, and each call is recorded
for the tests to assert on. ``Scenario`` says what the fake machine has; ``RecordingCuda``
records the CUDA calls. Shared by the tests and ``tests/gpu_checks.py``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from cifrenet_edge.presets import get_preset
from cifrenet_edge.trt import api
from cifrenet_edge.trt.cuda import CudaApi

API_DIR = Path(api.__file__).resolve().parents[1] / "resources" / "trt_api"
VERSIONS = api.SUPPORTED_VERSIONS


def load_api(version: str) -> Dict[str, Any]:
    return json.loads((API_DIR / f"tensorrt-{version}.json").read_text())


# --------------------------------------------------------------------------- the stand-in
class Record:
    """What a run touched: calls (qualified names with enum args), misses, deprecated uses."""

    def __init__(self) -> None:
        self.calls: List[str] = []
        self.missing: List[str] = []
        self.deprecated: List[str] = []

    def names(self) -> List[str]:
        return [c.split("(")[0] for c in self.calls]

    def called(self, qualname: str) -> bool:
        return qualname in self.names()


class EnumMember(int):
    def __new__(cls, enum: str, name: str, value: int) -> EnumMember:
        obj = int.__new__(cls, value)
        obj.enum, obj.name = enum, name
        return obj

    def __repr__(self) -> str:
        return f"{self.enum}.{self.name}"


ENUM_VALUES = Path(__file__).resolve().parents[1] / "data" / "trt_enum_values.json"


def enum_values(version: str) -> Dict[str, Dict[str, int]]:
    """Member values from NVIDIA's headers for one version (``data/trt_enum_values.json``)."""
    data = json.loads(ENUM_VALUES.read_text())["versions"].get(version, {})
    return {name: e["values"] for name, e in data.get("enums", {}).items()}


class StrictEnum:
    def __init__(
        self,
        name: str,
        members: List[str],
        deprecated: List[str],
        rec: Record,
        values: Optional[Dict[str, int]] = None,
    ):
        # the integer of each member is the header's (in 11.1 STRONGLY_TYPED is 0, the JIT
        # plugin flag 1): positions in the binding list would differ
        values = values or {}
        object.__setattr__(self, "_name", name)
        object.__setattr__(
            self,
            "_members",
            {m: EnumMember(name, m, values.get(m, i)) for i, m in enumerate(members)},
        )
        object.__setattr__(self, "_deprecated", set(deprecated))
        object.__setattr__(self, "_rec", rec)

    def __getattr__(self, item: str) -> Any:
        if item in self._members:
            if item in self._deprecated:
                self._rec.deprecated.append(f"{self._name}.{item}")
            return self._members[item]
        self._rec.missing.append(f"{self._name}.{item}")
        raise AttributeError(f"{self._name} has no member {item} in this TensorRT version")


def _arg_text(a: Any) -> str:
    return repr(a) if isinstance(a, EnumMember) else type(a).__name__


class StandIn:
    """Generates the strict ``tensorrt`` module of one version."""

    def __init__(self, version: str, scenario: Scenario) -> None:
        self.data = load_api(version)
        self.rec = Record()
        self.scenario = scenario
        self.classes: Dict[str, type] = {}
        self.enums: Dict[str, StrictEnum] = {}
        details = self.data.get("enum_details", {})
        values = enum_values(version)
        for name, members in self.data["enums"].items():
            dep = (details.get(name) or {}).get("deprecated", [])
            self.enums[name] = StrictEnum(name, members, dep, self.rec, values.get(name))

    # class members, following bases
    def members(self, cls: str) -> Dict[str, str]:
        info = self.data["classes"].get(cls)
        if info is None:
            return {}
        out: Dict[str, str] = {}
        for base in info.get("bases", []):
            out.update(self.members(base))
        for m in info.get("methods", []) + info.get("static_methods", []):
            out[m] = "method"
        for p in info.get("properties", []):
            out[p] = "property"
        for p in info.get("readonly_properties", []):
            out[p] = "readonly"
        return out

    def deprecated(self, cls: str) -> set:
        info = self.data["classes"].get(cls) or {}
        dep = set(info.get("deprecated", []))
        for base in info.get("bases", []):
            dep |= self.deprecated(base)
        return dep

    def make_class(self, cls: str) -> type:
        if cls in self.classes:
            return self.classes[cls]
        standin, members, dep = self, self.members(cls), self.deprecated(cls)
        class_deprecated = bool((self.data["classes"].get(cls) or {}).get("class_deprecated"))

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if "__init__" not in members:
                standin.rec.missing.append(f"{cls}.__init__")
                raise TypeError(f"{cls} has no constructor in this version")
            standin.rec.calls.append(f"{cls}.__init__")
            if class_deprecated:
                standin.rec.deprecated.append(cls)

        def __getattr__(self: Any, item: str) -> Any:
            if item.startswith("__"):
                raise AttributeError(item)
            kind = members.get(item)
            if kind is None:
                standin.rec.missing.append(f"{cls}.{item}")
                raise AttributeError(f"'{cls}' has no attribute '{item}' in this TensorRT version")
            if item in dep:
                standin.rec.deprecated.append(f"{cls}.{item}")
            if kind == "method":

                def call(*args: Any, **kwargs: Any) -> Any:
                    text = ",".join(_arg_text(a) for a in args)
                    standin.rec.calls.append(f"{cls}.{item}({text})")
                    return standin.scenario.returns(standin, cls, item, args)

                return call
            standin.rec.calls.append(f"{cls}.{item}")
            return standin.scenario.returns(standin, cls, item, ())

        def __setattr__(self: Any, item: str, value: Any) -> None:
            if type(self).__name__ != cls:  # a user subclass (calibrator, monitor): its own state
                object.__setattr__(self, item, value)
                return
            kind = members.get(item)
            if kind != "property":
                standin.rec.missing.append(f"{cls}.{item}= ({kind or 'absent'})")
                raise AttributeError(f"'{cls}'.{item} is not a writable property here")
            if item in dep:
                standin.rec.deprecated.append(f"{cls}.{item}")
            standin.rec.calls.append(f"{cls}.{item}=")

        ns: Dict[str, Any] = {
            "__init__": __init__,
            "__getattr__": __getattr__,
            "__setattr__": __setattr__,
        }
        if cls == "IHostMemory":
            ns["__bytes__"] = lambda self: b"serialized-by-stand-in"
        if cls in ("Logger", "ILogger"):
            sev = self.enums["ILogger.Severity"]
            ns["Severity"] = sev
            for m in self.data["enums"]["ILogger.Severity"]:
                ns[m] = getattr(sev, m)
        new = type(cls, (), ns)
        self.classes[cls] = new
        return new

    def instance(self, cls: str) -> Any:
        klass = self.make_class(cls)
        return object.__new__(klass)

    def module(self) -> Any:
        standin = self

        class Module:
            __version__ = self.scenario.version_string

            def __getattr__(self, item: str) -> Any:
                if item in standin.data["classes"]:
                    return standin.make_class(item)
                if item in standin.enums:
                    return standin.enums[item]
                if item in standin.data.get("functions", []):  # module-level m.def(...)

                    def call(*args: Any) -> Any:
                        text = ",".join(_arg_text(a) for a in args)
                        standin.rec.calls.append(f"tensorrt.{item}({text})")
                        return standin.scenario.returns(standin, "tensorrt", item, args)

                    return call
                standin.rec.missing.append(f"tensorrt.{item}")
                raise AttributeError(f"module 'tensorrt' has no attribute '{item}' here")

        return Module()


class Scenario:
    """Minimal return values: an engine with one input and one output at 1x3x96x160."""

    def __init__(self, version: str, dla_cores: int = 0, build_fails: bool = False) -> None:
        self.version_string = version
        self.dla_cores = dla_cores
        self.build_fails = build_fails
        self.in_shape = (1, 3, 96, 160)
        self.out_shape = (1, 19, 96, 160)

    def returns(self, s: StandIn, cls: str, item: str, args: tuple) -> Any:
        table = {
            ("Builder", "create_network"): lambda: s.instance("INetworkDefinition"),
            ("Builder", "create_builder_config"): lambda: s.instance("IBuilderConfig"),
            ("Builder", "create_optimization_profile"): lambda: s.instance("IOptimizationProfile"),
            ("Builder", "build_serialized_network"): lambda: (
                None if self.build_fails else s.instance("IHostMemory")
            ),
            ("Builder", "num_DLA_cores"): lambda: self.dla_cores,
            ("Runtime", "num_DLA_cores"): lambda: self.dla_cores,
            ("OnnxParser", "parse"): lambda: True,
            ("OnnxParser", "num_errors"): lambda: 0,
            ("INetworkDefinition", "num_layers"): lambda: 4,
            ("INetworkDefinition", "get_layer"): lambda: s.instance("ILayer"),
            ("IBuilderConfig", "create_timing_cache"): lambda: s.instance("ITimingCache"),
            ("IBuilderConfig", "get_timing_cache"): lambda: s.instance("ITimingCache"),
            ("IBuilderConfig", "set_timing_cache"): lambda: True,
            ("IBuilderConfig", "can_run_on_DLA"): lambda: True,
            ("IBuilderConfig", "add_optimization_profile"): lambda: 0,  # its index; -1 refused
            ("IBuilderConfig", "set_calibration_profile"): lambda: True,
            ("ITimingCache", "combine"): lambda: True,
            ("ITimingCache", "serialize"): lambda: s.instance("IHostMemory"),
            ("Runtime", "deserialize_cuda_engine"): lambda: s.instance("ICudaEngine"),
            ("ICudaEngine", "num_io_tensors"): lambda: 2,
            ("ICudaEngine", "num_bindings"): lambda: 2,
            ("ICudaEngine", "get_tensor_name"): lambda: ["input", "logits"][args[0]],
            ("ICudaEngine", "get_binding_name"): lambda: ["input", "logits"][args[0]],
            ("ICudaEngine", "binding_is_input"): lambda: args[0] == 0,
            ("ICudaEngine", "get_tensor_mode"): lambda: getattr(
                s.enums["TensorIOMode"], "INPUT" if args[0] == "input" else "OUTPUT"
            ),
            ("ICudaEngine", "get_tensor_dtype"): lambda: s.enums["DataType"].FLOAT,
            ("ICudaEngine", "get_binding_dtype"): lambda: s.enums["DataType"].FLOAT,
            ("ICudaEngine", "get_tensor_shape"): lambda: self.in_shape,
            ("ICudaEngine", "get_binding_shape"): lambda: self.in_shape,
            ("tensorrt", "init_libnvinfer_plugins"): lambda: True,
            ("ICudaEngine", "create_execution_context"): lambda: s.instance("IExecutionContext"),
            ("IExecutionContext", "get_tensor_shape"): lambda: self.out_shape,
            ("IExecutionContext", "get_binding_shape"): lambda: self.out_shape,
            ("IExecutionContext", "execute_async_v3"): lambda: True,
            ("IExecutionContext", "execute_async_v2"): lambda: True,
            ("IExecutionContext", "set_input_shape"): lambda: True,
            ("IExecutionContext", "set_binding_shape"): lambda: True,
            ("IExecutionContext", "set_tensor_address"): lambda: True,
        }
        fn = table.get((cls, item))
        return fn() if fn else None


class RecordingCuda(CudaApi):
    """CUDA stand-in: host memory is real numpy, device pointers are counters."""

    library = "stand-in"
    supports_graphs = True

    def __init__(self) -> None:
        super().__init__(0)
        self.calls: List[str] = []
        self.next_ptr = 0x1000
        self.live: Dict[int, int] = {}

    def _r(self, name: str) -> None:
        self.calls.append(name)

    def activate(self):  # type: ignore[override]
        import contextlib

        self._r("activate")
        return contextlib.nullcontext()

    def malloc(self, nbytes: int) -> int:
        self._r("malloc")
        self.next_ptr += 0x1000 + int(nbytes)
        self.live[self.next_ptr] = int(nbytes)
        return self.next_ptr

    def free(self, ptr: int) -> None:
        self._r("free")
        del self.live[ptr]

    def pinned_empty(self, shape, dtype):  # type: ignore[override]
        self._r("pinned_empty")
        return np.zeros(shape, dtype)

    def free_pinned(self, arr) -> None:  # type: ignore[override]
        self._r("free_pinned")

    def stream_create(self) -> Any:
        self._r("stream_create")
        return object()

    def stream_handle(self, stream: Any) -> int:
        return 7

    def stream_sync(self, stream: Any) -> None:
        self._r("stream_sync")

    def stream_destroy(self, stream: Any) -> None:
        self._r("stream_destroy")

    def htod_async(self, dst, src, stream) -> None:  # type: ignore[override]
        assert dst in self.live and src.nbytes <= self.live[dst]
        self._r("htod")

    def dtoh_async(self, dst, src, stream) -> None:  # type: ignore[override]
        assert src in self.live and dst.nbytes <= self.live[src]
        self._r("dtoh")

    def event_create(self) -> Any:
        return object()

    def event_record(self, event, stream) -> None:  # type: ignore[override]
        self._r("event_record")

    def event_elapsed_ms(self, start, end) -> float:  # type: ignore[override]
        return 0.0

    def event_destroy(self, event) -> None:  # type: ignore[override]
        pass

    def graph_capture_begin(self, stream) -> None:  # type: ignore[override]
        self._r("graph_capture_begin")

    def graph_capture_end(self, stream) -> Any:  # type: ignore[override]
        self._r("graph_capture_end")
        return object()

    def graph_capture_abort(self, stream) -> None:  # type: ignore[override]
        self._r("graph_capture_abort")

    def graph_launch(self, graph_exec, stream) -> None:  # type: ignore[override]
        self._r("graph_launch")

    def graph_destroy(self, graph_exec) -> None:  # type: ignore[override]
        self._r("graph_destroy")

    def device_info(self) -> Dict[str, Any]:
        return {
            "name": "Stand-in GPU",
            "compute_capability": "8.7",
            "total_memory_mib": 8192,
            "cuda_runtime": "12.6",
            "cuda_driver": "12.6",
            "cuda_library": self.library,
        }


# --------------------------------------------------------------------------- fixtures
def _manifest(precision: str, dynamic: bool = False) -> Dict[str, Any]:
    meta = get_preset("cityscapes").metadata()
    m: Dict[str, Any] = {
        "format": "cifrenet-edge/1",
        "kind": "onnx",
        "precision": precision,
        "input_name": "input",
        "output_name": "logits",
        "resolution": None if dynamic else [160, 96],
        "dynamic": (
            {"min": [128, 64], "opt": [160, 96], "max": [320, 192], "batch": [1, 1, 2]}
            if dynamic
            else None
        ),
        "batch": 1,
        "opset": 13,
        "target": "trt8.6",
        "toolkit_version": "test",
        "weights": {"path": "weights/cifrenet.pth", "sha256": "0" * 64, "trained": False},
    }
    for k in (
        "preset",
        "num_classes",
        "classes",
        "palette_rgb",
        "channel_order",
        "input_layout",
        "mean_bgr",
        "scale",
    ):
        m[k] = meta[k]
    if precision == "int8":
        m["calibration"] = {"sha256": "ab" * 32, "count": 5}
    return m
