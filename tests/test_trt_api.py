"""API-surface conformance of the TensorRT code paths, for every TensorRT version claimed.

This is NOT a stand-in for TensorRT's results: nothing here builds or runs a network. From
each ``cifrenet_edge/resources/trt_api/tensorrt-<v>.json`` (the classes, methods, properties
and enums of that version's Python bindings, extracted from NVIDIA's sources) a strict
stand-in ``tensorrt`` module is generated: every class, enum member, method and property
exists exactly as listed, anything else raises AttributeError and is recorded. ``build_engine``,
the INT8 calibrator, the progress monitor and the runtime backend are then run through it
(CUDA through a recording stand-in of ``trt.cuda.CudaApi``) and the tests assert that no
missing member was touched, that no deprecated member was used except where the path needs it,
and that the version-specific calls were made (``max_workspace_size`` on 8.2,
``set_memory_pool_limit`` on 8.5+, ``execute_async_v2`` on 8.2, ``execute_async_v3`` on 8.5+,
no precision builder flags on 11.1 ...). Return values are the minimum needed to walk the
path; they say nothing about whether TensorRT would accept the model: the ``gpu`` tests do.
"""

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import pytest

from cifrenet_edge.errors import BackendUnavailableError, ConfigError
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
    def __new__(cls, enum: str, name: str, value: int) -> "EnumMember":
        obj = int.__new__(cls, value)
        obj.enum, obj.name = enum, name
        return obj

    def __repr__(self) -> str:
        return f"{self.enum}.{self.name}"


ENUM_VALUES = Path(__file__).resolve().parent / "data" / "trt_enum_values.json"


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

    def __init__(self, version: str, scenario: "Scenario") -> None:
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


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A real (tiny) FP32 ONNX graph Conv -> Resize named like an export, for the FP16 path."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    w = helper.make_tensor(
        "w", TensorProto.FLOAT, [19, 3, 3, 3], rng.normal(size=19 * 27).astype(np.float32)
    )
    sizes = helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 19, 96, 160])
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Resize", ["c", "", "", "sizes"], ["logits"], mode="linear"),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 96, 160])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 19, 96, 160])],
        [w, sizes],
    )
    # opset 13: what every listed parser reads (TensorRT 8.2 stops at 13; trt.rules onnx.opset)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path_factory.mktemp("trt_api") / "tiny_fp32.onnx"
    onnx.save(model, str(path))
    return path


def _onnx_with_manifest(tmp_path: Path, src: Path, precision: str, dynamic: bool = False) -> Path:
    dst = tmp_path / f"m_{precision}.onnx"
    dst.write_bytes(src.read_bytes())
    (tmp_path / (dst.name + ".json")).write_text(json.dumps(_manifest(precision, dynamic)))
    return dst


@pytest.fixture
def run_build(monkeypatch, tmp_path, tiny_onnx):
    """Run build_engine against version v's stand-in; returns (result or exception, record)."""
    from cifrenet_edge.trt import build

    def go(
        version: str,
        precision: str,
        dynamic: bool = False,
        onnx_precision: Optional[str] = None,
        **kwargs: Any,
    ):
        scenario = Scenario(
            version,
            dla_cores=kwargs.pop("dla_cores", 0),
            build_fails=kwargs.pop("build_fails", False),
        )
        s = StandIn(version, scenario)
        cuda = RecordingCuda()
        monkeypatch.setattr(api, "import_tensorrt", s.module)
        monkeypatch.setattr(build, "_open_cuda", lambda: cuda)
        onnx_precision = onnx_precision or ("int8" if precision == "int8" else "fp32")
        src = _onnx_with_manifest(tmp_path, tiny_onnx, onnx_precision, dynamic)
        result = build.build_engine(
            src,
            precision=precision,
            output=tmp_path / "m.engine",
            quiet=kwargs.pop("quiet", True),
            **kwargs,
        )
        return result, s.rec, cuda

    return go


# --------------------------------------------------------------------------- the table vs the JSON
@pytest.mark.parametrize("version", VERSIONS)
def test_capabilities_match_binding_sources(version):
    """Every switch of ``capabilities`` agrees with what NVIDIA's bindings of that version have."""
    d = load_api(version)
    s = StandIn(version, Scenario(version))
    caps = api.capabilities(version)
    cfg, ctx, builder = (
        s.members("IBuilderConfig"),
        s.members("IExecutionContext"),
        s.members("Builder"),
    )
    bflags, nflags = d["enums"]["BuilderFlag"], d["enums"]["NetworkDefinitionCreationFlag"]
    bdep = set((d["enum_details"].get("BuilderFlag") or {}).get("deprecated", []))
    ndep = set((d["enum_details"].get("NetworkDefinitionCreationFlag") or {}).get("deprecated", []))
    assert caps.memory_pools == ("set_memory_pool_limit" in cfg)
    assert caps.memory_pools != (
        "max_workspace_size" in cfg and "max_workspace_size" not in s.deprecated("IBuilderConfig")
    )
    assert caps.tensor_api == ("execute_async_v3" in ctx)
    assert caps.binding_api == ("execute_async_v2" in ctx)
    eb = (
        "absent"
        if "EXPLICIT_BATCH" not in nflags
        else ("ignored" if "EXPLICIT_BATCH" in ndep else "required")
    )
    assert caps.explicit_batch_flag == eb
    assert caps.strongly_typed_flag == ("STRONGLY_TYPED" in nflags and "STRONGLY_TYPED" not in ndep)
    assert caps.always_strongly_typed == ("FP16" not in bflags and "INT8" not in bflags)
    assert caps.precision_flags == ("FP16" in bflags and "FP16" not in bdep)
    assert caps.precision_flags_present == ("FP16" in bflags)
    assert caps.implicit_int8 == (
        "IInt8EntropyCalibrator2" in d["classes"] and "int8_calibrator" in cfg
    )
    assert caps.progress_monitor == (
        "IProgressMonitor" in d["classes"] and "progress_monitor" in cfg
    )
    assert caps.platform_fast_flags == ("platform_has_fast_fp16" in builder)
    assert caps.optimization_level == ("builder_optimization_level" in cfg)


# --------------------------------------------------------------------------- build paths
EXPECT_BUILD = {
    # version: (workspace call, network flags used, progress monitor)
    "8.2.1": ("IBuilderConfig.max_workspace_size=", ["EXPLICIT_BATCH"], False),
    "8.5.2": ("IBuilderConfig.set_memory_pool_limit", ["EXPLICIT_BATCH"], False),
    "8.6.1": ("IBuilderConfig.set_memory_pool_limit", ["EXPLICIT_BATCH"], False),
    "10.3.0": ("IBuilderConfig.set_memory_pool_limit", [], True),
    "10.16": ("IBuilderConfig.set_memory_pool_limit", [], True),
    "11.1": ("IBuilderConfig.set_memory_pool_limit", [], True),
}


@pytest.mark.parametrize("version", VERSIONS)
def test_fp32_build_path(version, run_build):
    result, rec, _ = run_build(version, "fp32", workspace_mib=256)
    assert rec.missing == []
    assert rec.deprecated == []
    workspace, net_flags, _ = EXPECT_BUILD[version]
    assert rec.called(workspace)
    assert not rec.called("IBuilderConfig.set_flag")
    for call in (
        "Builder.build_serialized_network",
        "OnnxParser.parse",
        "IBuilderConfig.create_timing_cache",
        "IBuilderConfig.set_timing_cache",
        "ITimingCache.serialize",
    ):
        assert rec.called(call), call
    assert not rec.called("Builder.build_engine")
    assert result.manifest["engine"]["network_flags"] == net_flags
    assert (
        result.manifest["kind"] == "engine"
        and result.path.read_bytes() == b"serialized-by-stand-in"
    )
    assert Path(result.manifest["engine"]["timing_cache"]).is_file()


@pytest.mark.parametrize("version", VERSIONS)
def test_fp16_build_path(version, run_build):
    result, rec, _ = run_build(version, "fp16")
    assert rec.missing == []
    caps = api.capabilities(version)
    if version in ("8.2.1", "8.5.2", "8.6.1", "10.3.0"):
        assert "IBuilderConfig.set_flag(BuilderFlag.FP16)" in rec.calls
        assert result.manifest["engine"]["onnx_variant"] == "as_is"
    else:  # 10.16 deprecates, 11.1 removes the flag: an FP16 ONNX, strongly typed
        assert not any("set_flag(BuilderFlag.FP16)" in c for c in rec.calls)
        assert result.manifest["engine"]["onnx_variant"] == "fp16"
        assert result.manifest["engine"]["strongly_typed"]
        assert (
            "STRONGLY_TYPED" in result.manifest["engine"]["network_flags"]
        ) == caps.strongly_typed_flag
    assert rec.deprecated == []


@pytest.mark.parametrize("version", VERSIONS)
def test_fp16_onnx_input_build_path(version, run_build):
    """export converts to FP16 ONNX for TRT 11 and hands it over with int8_mode=None."""
    result, rec, _ = run_build(version, "fp16", onnx_precision="fp16", int8_mode=None)
    assert rec.missing == [] and rec.deprecated == []
    eng = result.manifest["engine"]
    assert eng["onnx_variant"] == "as_is"  # no second conversion
    caps = api.capabilities(version)
    assert ("STRONGLY_TYPED" in eng["network_flags"]) == caps.strongly_typed_flag
    if caps.always_strongly_typed or caps.strongly_typed_flag:
        assert eng["builder_flags"] == []
    else:
        assert eng["builder_flags"] == ["FP16"]
    with pytest.raises(ConfigError, match="ONNX model is FP16"):
        run_build(version, "fp32", onnx_precision="fp16")


@pytest.mark.parametrize("version", VERSIONS)
def test_int8_qdq_build_path(version, run_build):
    result, rec, _ = run_build(version, "int8")
    assert rec.missing == [] and rec.deprecated == []
    flags = result.manifest["engine"]
    if version.startswith("8."):
        assert "IBuilderConfig.set_flag(BuilderFlag.INT8)" in rec.calls
    elif version.startswith("10."):
        assert flags["network_flags"] == ["STRONGLY_TYPED"] and flags["builder_flags"] == []
    else:
        assert flags["network_flags"] == [] and flags["builder_flags"] == []
    assert not rec.called("IBuilderConfig.int8_calibrator=")


@pytest.mark.parametrize("version", VERSIONS)
def test_int8_calibrator_path(version, run_build, real_images_dir, tmp_path):
    if version == "11.1":
        with pytest.raises(BackendUnavailableError, match="removed implicit INT8 calibration"):
            run_build(
                version,
                "int8",
                onnx_precision="fp32",
                int8_mode="calibrator",
                calib=real_images_dir,
            )
        return
    result, rec, cuda = run_build(
        version, "int8", onnx_precision="fp32", int8_mode="calibrator", calib=real_images_dir
    )
    assert rec.missing == []
    # the calibrator is deprecated since 10.1: using it there is the point of this path
    # (and BuilderFlag.INT8/FP16, deprecated since 10.12, which implicit calibration and its
    # FP16 fallback cannot do without)
    allowed = (
        {
            "IBuilderConfig.int8_calibrator",
            "IInt8EntropyCalibrator2",
            "BuilderFlag.INT8",
            "BuilderFlag.FP16",
        }
        if version.startswith("10.")
        else set()
    )
    assert set(rec.deprecated) <= allowed
    assert rec.called("IBuilderConfig.int8_calibrator=")
    assert rec.called("IInt8EntropyCalibrator2.__init__")
    assert "IBuilderConfig.set_flag(BuilderFlag.INT8)" in rec.calls
    assert result.manifest["calibration"]["count"] == 5
    assert cuda.live == {}  # the calibrator freed its device buffer


def test_failed_build_leaves_no_engine_and_frees_the_calibrator(
    run_build, real_images_dir, tmp_path
):
    from cifrenet_edge.errors import ExportError

    with pytest.raises(ExportError, match="could not build the int8 engine"):
        run_build(
            "8.6.1",
            "int8",
            onnx_precision="fp32",
            int8_mode="calibrator",
            calib=real_images_dir,
            build_fails=True,
        )
    assert not (tmp_path / "m.engine").exists() and not (tmp_path / "m.engine.json").exists()


def test_calibrator_feeds_every_batch_then_stops(monkeypatch, real_images_dir, tmp_path):
    """Drive the calibrator as TensorRT does: batches until None, cache written and re-read."""
    from cifrenet_edge.data.calibration import load_calibration
    from cifrenet_edge.trt.int8_calibrator import make_entropy_calibrator

    s = StandIn("8.6.1", Scenario("8.6.1"))
    cuda = RecordingCuda()
    data = load_calibration(real_images_dir, (160, 96))
    cache = tmp_path / "c.cache"
    cal = make_entropy_calibrator(s.module(), cuda, data.batches, cache)
    assert cal.get_batch_size() == 1
    ptrs = [cal.get_batch(["input"]) for _ in range(len(data.batches))]
    assert all(p and p[0] in cuda.live for p in ptrs)
    assert cal.get_batch(["input"]) is None
    assert cal.read_calibration_cache() is None
    cal.write_calibration_cache(b"TRT-8601-EntropyCalibration2\ninput: 3c010a14\n")
    assert cal.read_calibration_cache().startswith(b"TRT-8601")
    cal.release()
    assert cuda.live == {} and s.rec.missing == []


def test_calibrator_stacks_frames_for_a_static_batch_engine(real_images_dir, tmp_path):
    """A batch-2 engine reads 2 frames from each pointer: the buffer must hold both."""
    from cifrenet_edge.data.calibration import load_calibration
    from cifrenet_edge.trt.int8_calibrator import make_entropy_calibrator

    s = StandIn("8.6.1", Scenario("8.6.1"))
    cuda = RecordingCuda()
    data = load_calibration(real_images_dir, (160, 96))  # 5 frames
    cal = make_entropy_calibrator(s.module(), cuda, data.batches, tmp_path / "c", batch_size=2)
    assert cal.get_batch_size() == 2
    (ptr,) = cal.get_batch(["input"])
    assert cuda.live[ptr] == 2 * 3 * 96 * 160 * 4
    assert cal.get_batch(["input"]) is not None and cal.get_batch(["input"]) is None
    cal.release()
    assert cuda.live == {}


def test_calibration_cache_key_changes_with_each_input():
    from cifrenet_edge.trt.int8_calibrator import calibration_cache_key

    base = calibration_cache_key({"sha256": "a"}, "onnx1", "8.6.1")
    assert base == calibration_cache_key({"sha256": "a"}, "onnx1", "8.6.1")
    assert base != calibration_cache_key({"sha256": "b"}, "onnx1", "8.6.1")
    assert base != calibration_cache_key({"sha256": "a"}, "onnx2", "8.6.1")
    assert base != calibration_cache_key({"sha256": "a"}, "onnx1", "10.3.0")


@pytest.mark.parametrize("version", VERSIONS)
def test_dynamic_profile_and_dla(version, run_build):
    result, rec, _ = run_build(version, "fp16", dynamic=True)
    assert rec.missing == []
    assert rec.called("IOptimizationProfile.set_shape") and rec.called(
        "IBuilderConfig.add_optimization_profile"
    )
    assert result.manifest["engine"]["profile"]["max"] == [2, 3, 192, 320]
    if version.startswith("11.") or version == "10.16":
        return  # TensorRT 10.8-11.4.0 have no DLA (trt.rules dla.unsupported)
    # DLA needs min = opt = max (trt.rules dla.dynamic): a static model
    result, rec, _ = run_build(version, "fp16", dla_core=0, dla_cores=2)
    assert rec.missing == []
    assert rec.called("IBuilderConfig.DLA_core=") and rec.called("IBuilderConfig.can_run_on_DLA")
    assert "GPU_FALLBACK" in result.manifest["engine"]["builder_flags"]
    assert result.manifest["engine"]["dla"] == {"dla_layers": 4, "gpu_layers": 0}


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0", "11.1"])
def test_build_progress_shown(version, run_build):
    """IProgressMonitor bars where the bindings have it (10+), an elapsed-time spinner before."""
    import io

    from rich.console import Console

    out = io.StringIO()
    result, rec, _ = run_build(version, "fp32", quiet=False, console=Console(file=out))
    assert rec.missing == []
    assert (
        rec.called("IBuilderConfig.progress_monitor=") == api.capabilities(version).progress_monitor
    )
    assert "engine" in out.getvalue() and result.path.name in out.getvalue()


def test_dla_refused_without_cores_or_in_fp32(run_build):
    with pytest.raises(BackendUnavailableError, match="DLA cores"):
        run_build("10.3.0", "fp16", dla_core=0, dla_cores=0)
    with pytest.raises(ConfigError, match="DLA runs FP16 and INT8 only"):
        run_build("10.3.0", "fp32", dla_core=0, dla_cores=2)


def test_progress_monitor_drives_bars(monkeypatch, tmp_path):
    """The IProgressMonitor subclass (10+) is built on the version's class and reports phases."""
    from cifrenet_edge.trt.build import make_progress_monitor

    class Bars:
        def __init__(self):
            self.events = []

        def add_task(self, name, total):
            self.events.append(("add", name.strip(), total))
            return len(self.events)

        def update(self, task, completed):
            self.events.append(("update", task, completed))

        def remove_task(self, task):
            self.events.append(("remove", task))

    for version in ("10.3.0", "10.16", "11.1"):
        s = StandIn(version, Scenario(version))
        bars = Bars()
        mon = make_progress_monitor(s.module(), bars)
        mon.phase_start("Building engine", None, 3)
        assert mon.step_complete("Building engine", 0) is True
        mon.phase_finish("Building engine")
        assert bars.events == [("add", "Building engine", 3), ("update", 1, 1), ("remove", 1)]
        assert s.rec.missing == []
    s = StandIn("8.6.1", Scenario("8.6.1"))
    with pytest.raises(AttributeError):
        make_progress_monitor(s.module(), Bars())  # 8.x Python bindings have no IProgressMonitor


def test_cli_visible_errors_on_this_machine(tmp_path, tiny_onnx):
    """Without TensorRT, build_engine says what is missing and how to get it (one line)."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    from cifrenet_edge.trt.build import build_engine

    src = _onnx_with_manifest(tmp_path, tiny_onnx, "fp32")
    with pytest.raises(BackendUnavailableError) as err:
        build_engine(src, precision="fp32", output=tmp_path / "x.engine", quiet=True)
    msg = str(err.value)
    assert "TensorRT is not installed" in msg and "cifrenet-edge[trt86]" in msg and "\n" not in msg
    assert not (tmp_path / "x.engine").exists()
    with pytest.raises(ConfigError, match="unknown precision"):
        build_engine(src, precision="bf16", quiet=True)
    from cifrenet_edge.trt.build import preflight

    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        preflight()


def test_device_build_entry_point_reports_one_line(tmp_path, tiny_onnx, capsys):
    """`python3 -m cifrenet_edge.trt.build` (Jetsons without PyTorch): error line, exit 2."""
    import importlib.util

    from cifrenet_edge.trt.build import main

    src = _onnx_with_manifest(tmp_path, tiny_onnx, "fp32")
    assert main([str(tmp_path / "missing.onnx"), "-q"]) == 2
    assert "does not exist" in capsys.readouterr().err
    if importlib.util.find_spec("tensorrt") is None:
        assert main([str(src), "--precision", "fp16", "-q"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: TensorRT is not installed") and err.count("\n") == 1


# --------------------------------------------------------------------------- plan rules
def test_plan_warns_on_pascal_fp16_and_refuses_mismatched_inputs():
    from cifrenet_edge.trt.build import plan_build

    plan = plan_build(api.capabilities("8.6.1"), "fp16", compute_capability="6.1")
    assert any("no fast FP16" in w and "--precision int8" in w for w in plan.warnings)
    assert plan_build(api.capabilities("8.6.1"), "fp16", compute_capability="8.6").warnings == ()
    with pytest.raises(ConfigError, match="quantized ONNX"):
        plan_build(api.capabilities("8.6.1"), "int8", "qdq", "fp32")
    with pytest.raises(ConfigError, match="already INT8"):
        plan_build(api.capabilities("10.3.0"), "fp16", "qdq", "int8")
    calib = plan_build(api.capabilities("10.3.0"), "int8", "calibrator", "fp32", "8.7")
    assert calib.calibrator and any("deprecated since TensorRT 10.1" in w for w in calib.warnings)
    assert "STRONGLY_TYPED" not in calib.network_flags  # a calibrated network is weakly typed


# --------------------------------------------------------------------------- runtime paths
def _engine_files(tmp_path: Path, version: str, dynamic: bool = False) -> Path:
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"serialized-by-stand-in")
    m = _manifest("fp32", dynamic)
    m["kind"] = "engine"
    m["engine"] = {"tensorrt": version, "gpu": "Stand-in GPU", "compute_capability": "8.7"}
    (tmp_path / "m.engine.json").write_text(json.dumps(m))
    return eng


def _backend(monkeypatch, tmp_path, version, **kwargs):
    from cifrenet_edge.manifest import read_manifest
    from cifrenet_edge.runtime.backends import tensorrt as trt_backend

    s = StandIn(version, Scenario(version))
    cuda = kwargs.pop("cuda", None) or RecordingCuda()
    monkeypatch.setattr(api, "import_tensorrt", s.module)
    monkeypatch.setattr(trt_backend, "_open_cuda", lambda index: cuda)
    dynamic = kwargs.pop("dynamic", False)
    eng = _engine_files(tmp_path, version, dynamic)
    b = trt_backend.TensorRTBackend(
        path=str(eng), manifest=read_manifest(eng), input_shape=(1, 3, 96, 160), **kwargs
    )
    return b, s.rec, cuda


@pytest.mark.parametrize("version", VERSIONS)
def test_backend_infer_path(version, monkeypatch, tmp_path):
    b, rec, cuda = _backend(monkeypatch, tmp_path, version)
    out = b.infer(np.zeros((1, 3, 96, 160), np.float32))
    assert out.shape == (1, 19, 96, 160) and out.dtype == np.float32
    assert rec.missing == [] and rec.deprecated == []
    if version == "8.2.1":
        assert rec.called("IExecutionContext.execute_async_v2")
        assert not rec.called("IExecutionContext.execute_async_v3")
        assert rec.called("ICudaEngine.get_binding_name")
    else:
        assert rec.called("IExecutionContext.execute_async_v3")
        assert rec.called("IExecutionContext.set_tensor_address")
        assert not rec.called("IExecutionContext.execute_async_v2")
    stats = b.benchmark_gpu(iters=3, warmup=1)
    assert [len(stats[k]) for k in ("h2d", "compute", "d2h")] == [3, 3, 3]
    real = np.full((1, 3, 96, 160), 0.25, np.float32)  # the bench passes a real frame
    assert len(b.benchmark_gpu(iters=2, warmup=0, x=real)["compute"]) == 2
    with pytest.raises(ConfigError, match="engine's input shape"):
        b.benchmark_gpu(iters=1, warmup=0, x=np.zeros((1, 3, 8, 8), np.float32))
    b.close()
    assert cuda.live == {}  # every device buffer freed


@pytest.mark.parametrize("version", VERSIONS)
def test_backend_dynamic_shapes(version, monkeypatch, tmp_path):
    b, rec, _ = _backend(monkeypatch, tmp_path, version, dynamic=True)
    b.infer(np.zeros((1, 3, 96, 160), np.float32))
    assert rec.missing == []
    assert rec.called(
        "IExecutionContext.set_input_shape"
        if version != "8.2.1"
        else "IExecutionContext.set_binding_shape"
    )
    b.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_backend_cuda_graphs_from_8_5(version, monkeypatch, tmp_path):
    """trtexec 8.5.2 and 8.6.1 capture enqueueV3 as the backend does: graphs from 8.5."""
    assert api.capabilities(version).cuda_graphs == (version != "8.2.1")
    if not api.capabilities(version).cuda_graphs:
        with pytest.raises(BackendUnavailableError, match=r"TensorRT 8\.5"):
            _backend(monkeypatch, tmp_path, version, cuda_graph=True)
        return
    b, rec, cuda = _backend(monkeypatch, tmp_path, version, cuda_graph=True)
    b.infer(np.zeros((1, 3, 96, 160), np.float32))
    b.infer(np.zeros((1, 3, 96, 160), np.float32))
    assert cuda.calls.count("graph_capture_end") == 1 and cuda.calls.count("graph_launch") == 2
    assert rec.missing == []
    b.close()


def test_backend_gpu_argmax_needs_cupy(monkeypatch, tmp_path):
    """No CuPy: no ``predict_frame`` (the Segmenter post-processes on the host); asked: error."""
    import importlib.util

    if importlib.util.find_spec("cupy") is not None:
        pytest.skip("CuPy is installed here")
    b, _, _ = _backend(monkeypatch, tmp_path, "10.3.0")
    assert not hasattr(b, "predict_frame")
    b.close()
    with pytest.raises(BackendUnavailableError, match="gpu_argmax needs CuPy"):
        _backend(monkeypatch, tmp_path, "10.3.0", gpu_argmax=True)


def test_backend_threads_get_their_own_contexts(monkeypatch, tmp_path):
    import threading

    b, rec, _ = _backend(monkeypatch, tmp_path, "10.3.0", max_contexts=2)
    x = np.zeros((1, 3, 96, 160), np.float32)
    threads = [threading.Thread(target=b.infer, args=(x,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rec.names().count("ICudaEngine.create_execution_context") == 2  # capped, then shared
    b.close()


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_build_keeps_the_onnx_parser_alive_until_built(version, run_build, monkeypatch):
    """TensorRT's network points into weights the ONNX parser owns: it must outlive the build."""
    import gc
    import weakref

    from cifrenet_edge.trt import build

    parsers: List[Any] = []
    alive_at_build: List[bool] = []
    parse = build._parse_onnx

    def tracking_parse(*args: Any) -> Any:
        parser = parse(*args)
        parsers.append(weakref.ref(parser))
        return parser

    orig = Scenario.returns

    def returns(self, s, cls, item, args):
        if (cls, item) == ("Builder", "build_serialized_network"):
            gc.collect()
            alive_at_build.append(all(r() is not None for r in parsers))
        return orig(self, s, cls, item, args)

    monkeypatch.setattr(build, "_parse_onnx", tracking_parse)
    monkeypatch.setattr(Scenario, "returns", returns)
    run_build(version, "fp32")
    assert len(parsers) == 1 and alive_at_build == [True]


class ActiveCheckingCuda(RecordingCuda):
    """Records every CUDA call made while no CUDA context was activated on the calling thread."""

    def __init__(self) -> None:
        import threading

        super().__init__()
        self.tls = threading.local()
        self.outside: List[str] = []

    def activate(self):  # type: ignore[override]
        import contextlib

        @contextlib.contextmanager
        def cm():
            self._r("activate")
            self.tls.depth = getattr(self.tls, "depth", 0) + 1
            try:
                yield
            finally:
                self.tls.depth -= 1

        return cm()

    def _r(self, name: str) -> None:
        super()._r(name)
        if name != "activate" and getattr(self.tls, "depth", 0) == 0:
            self.outside.append(name)


def test_backend_makes_cuda_calls_only_with_the_context_active(monkeypatch, tmp_path):
    """A thread the backend did not create gets its context/stream/buffers under activate()."""
    import threading

    cuda = ActiveCheckingCuda()
    b, _, _ = _backend(monkeypatch, tmp_path, "10.3.0", cuda=cuda, cuda_graph=True)
    x = np.zeros((1, 3, 96, 160), np.float32)
    t = threading.Thread(target=b.infer, args=(x,))
    t.start()
    t.join()
    b.benchmark_gpu(iters=2, warmup=1)
    b.close()
    assert "stream_create" in cuda.calls and "malloc" in cuda.calls
    assert cuda.outside == []


def _refusing(monkeypatch, items, after=0):
    """Make the stand-in return False for ``items`` from the ``after``-th call on."""
    orig = Scenario.returns
    seen = {"n": 0}

    def returns(self, s, cls, item, args):
        if item in items:
            seen["n"] += 1
            if seen["n"] > after:
                return False
        return orig(self, s, cls, item, args)

    monkeypatch.setattr(Scenario, "returns", returns)


@pytest.mark.parametrize("version", VERSIONS)
def test_backend_shape_outside_the_profile_is_one_config_error(version, monkeypatch, tmp_path):
    b, _, _ = _backend(monkeypatch, tmp_path, version, dynamic=True)
    b.infer(np.zeros((1, 3, 96, 160), np.float32))
    _refusing(monkeypatch, ("set_input_shape", "set_binding_shape"))
    with pytest.raises(ConfigError, match="outside the engine's optimisation profile") as err:
        b.infer(np.zeros((1, 3, 64, 64), np.float32))
    assert "\n" not in str(err.value)
    b.close()


def test_backend_failed_graph_capture_ends_the_capture(monkeypatch, tmp_path):
    b, _, cuda = _backend(monkeypatch, tmp_path, "10.3.0", cuda_graph=True)
    _refusing(monkeypatch, ("execute_async_v3",), after=1)  # warm-up ok, capture fails
    with pytest.raises(BackendUnavailableError, match="CUDA graph capture"):
        b.infer(np.zeros((1, 3, 96, 160), np.float32))
    # ended once, by the abort path (which frees what the capture made)
    assert cuda.calls.count("graph_capture_begin") == cuda.calls.count("graph_capture_abort") == 1
    assert "graph_capture_end" not in cuda.calls and "graph_launch" not in cuda.calls
    b.close()


def test_backend_dynamic_engine_shares_one_context(monkeypatch, tmp_path):
    """One optimisation profile: one execution context may use it at a time."""
    import threading

    b, rec, _ = _backend(monkeypatch, tmp_path, "10.3.0", dynamic=True, max_contexts=4)
    x = np.zeros((1, 3, 96, 160), np.float32)
    threads = [threading.Thread(target=b.infer, args=(x,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rec.names().count("ICudaEngine.create_execution_context") == 1
    b.close()


def test_backend_refuses_cpu_device_and_fixed_shape_mismatch(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="runs on the GPU"):
        _backend(monkeypatch, tmp_path, "10.3.0", device="cpu")
    b, _, _ = _backend(monkeypatch, tmp_path, "10.3.0")
    with pytest.raises(ConfigError, match="built for input"):
        b.infer(np.zeros((1, 3, 64, 64), np.float32))
    b.close()


def test_runtime_modules_are_python38():
    """The backend, CUDA wrapper and engine checks run on JetPack 5 (Python 3.8)."""
    from conftest import assert_python38

    root = Path(api.__file__).resolve().parents[1]
    assert_python38(
        [
            root / "runtime" / "backends" / "tensorrt.py",
            root / "trt" / "cuda.py",
            root / "trt" / "api.py",
            root / "trt" / "engine_manifest.py",
            root / "trt" / "__init__.py",
        ]
    )
