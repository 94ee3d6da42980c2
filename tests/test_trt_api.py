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

from pathlib import Path
from typing import Any, List

import numpy as np
import pytest
from support.trt_cases import engine_files, onnx_with_manifest
from support.trt_standin import (
    VERSIONS,
    RecordingCuda,
    Scenario,
    StandIn,
    load_api,
)

from cifrenet_edge.errors import BackendUnavailableError, ConfigError
from cifrenet_edge.trt import api


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

    src = onnx_with_manifest(tmp_path, tiny_onnx, "fp32")
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

    src = onnx_with_manifest(tmp_path, tiny_onnx, "fp32")
    assert main([str(tmp_path / "missing.onnx"), "-q"]) == 2
    assert "does not exist" in capsys.readouterr().err
    if importlib.util.find_spec("tensorrt") is None:
        assert main([str(src), "--precision", "fp16", "-q"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: TensorRT is not installed") and err.count("\n") == 1


def test_unwritable_engine_output_is_refused_before_the_build(monkeypatch, tmp_path, tiny_onnx):
    """A Jetson build takes minutes: an --output that cannot be written is refused before
    TensorRT is touched (as the ONNX export does), not after the build."""
    from cifrenet_edge.trt import build

    touched = []

    def no_trt(*a: Any) -> None:
        touched.append("preflight")
        raise RuntimeError("TensorRT reached before the output folder was checked")

    monkeypatch.setattr(build, "_preflight", no_trt)
    src = onnx_with_manifest(tmp_path, tiny_onnx, "fp32")
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(ConfigError, match="output folder") as err:
        build.build_engine(src, precision="fp32", output=blocker / "m.engine", quiet=True)
    assert "\n" not in str(err.value) and touched == []


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
def _backend(monkeypatch, tmp_path, version, **kwargs):
    from cifrenet_edge.manifest import read_manifest
    from cifrenet_edge.runtime.backends import tensorrt as trt_backend

    s = StandIn(version, Scenario(version))
    cuda = kwargs.pop("cuda", None) or RecordingCuda()
    monkeypatch.setattr(api, "import_tensorrt", s.module)
    monkeypatch.setattr(trt_backend, "_open_cuda", lambda index: cuda)
    dynamic = kwargs.pop("dynamic", False)
    eng = engine_files(tmp_path, version, dynamic)
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
