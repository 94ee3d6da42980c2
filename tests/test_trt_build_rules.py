"""The TensorRT acceptance rules (``trt.rules``) and the build plan, without a GPU.

Each rule of ``resources/trt_rules.json`` gets a case that breaks it and one that passes:
tiny ONNX graphs made with ``onnx.helper`` for the graph rules, ``plan_build`` with the facts
of a device for the option and hardware rules. The build fixes run ``build_engine`` through
the strict stand-in ``tensorrt`` modules of ``tests/support/trt_standin.py``, which here also act as
TensorRT does around Python callbacks: the 8.5+ bindings catch an exception from a calibrator
or progress-monitor callback and take it as "no more batches" / "cancel"
(``python/src/infer/pyInt8.cpp``, ``pyCore.cpp`` PyProgressMonitor).
"""

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from support.trt_cases import mixed_add, plain_conv, qdq_conv
from support.trt_standin import VERSIONS, RecordingCuda, Scenario, StandIn, _manifest

from cifrenet_edge.errors import (
    BackendUnavailableError,
    CalibrationError,
    ConfigError,
    ExportError,
    UnsupportedOpError,
)
from cifrenet_edge.trt import api, rules
from cifrenet_edge.trt.build import plan_build


# --------------------------------------------------------------------------- graphs
def graph_ids(model: onnx.ModelProto, version: str) -> List[str]:
    """Rule ids the graph breaks on one TensorRT version (errors and warnings)."""
    v = api.parse_version(version)
    onnx.checker.check_model(model)  # the cases are valid ONNX: only TensorRT refuses them
    c = rules.Context(
        span=rules.version_span(v),
        graph=rules.GraphView(model),
        parser_opsets=rules.parser_opsets(v),
    )
    return [f.rule.id for f in rules.evaluate(c, ("graph",))]


# rule id: (breaking model, the version it breaks on, a version or model that passes)
GRAPH_CASES: Dict[str, Any] = {
    "onnx.opset": (plain_conv(17), "8.2.1", (plain_conv(13), "8.2.1")),
    "qdq.int8-weights": (qdq_conv(int8_weights=True), "8.6.1", (qdq_conv(), "8.6.1")),
    "qdq.zero-point": (qdq_conv(act_zp=3), "10.3.0", (qdq_conv(), "10.3.0")),
    "qdq.uint8": (qdq_conv(zp_type=TensorProto.UINT8), "10.16", (qdq_conv(), "10.16")),
    "qdq.zero-point-missing": (qdq_conv(zero_point=False), "8.5.2", (qdq_conv(), "8.5.2")),
    "qdq.fp32-only": (
        qdq_conv(scale_type=TensorProto.FLOAT16),
        "8.6.1",
        (qdq_conv(), "8.6.1"),
    ),
    "qdq.scale-positive": (qdq_conv(act_scale=0.0), "11.1", (qdq_conv(), "11.1")),
    "qdq.per-channel-activation": (
        qdq_conv(act_per_channel=True),
        "10.3.0",
        (qdq_conv(), "10.3.0"),
    ),
    "qdq.weight-axis": (qdq_conv(weight_axis=1), "8.6.1", (qdq_conv(weight_axis=0), "8.6.1")),
    "types.mixed-inputs": (mixed_add(), "10.3.0", (mixed_add(TensorProto.FLOAT), "10.3.0")),
    # a Q/DQ ONNX made for 8.x (FP32 scales) on a strongly typed 10.x build; the trt10 export's
    # FP16 scales (opset 19) pass
    "qdq.fp32-float-parts": (
        qdq_conv(),
        "10.3.0",
        (qdq_conv(scale_type=TensorProto.FLOAT16, opset=19), "10.3.0"),
    ),
}


@pytest.mark.parametrize("rule_id", sorted(GRAPH_CASES))
def test_graph_rule_breaks_and_passes(rule_id):
    bad, version, (good, good_version) = GRAPH_CASES[rule_id]
    assert rule_id in graph_ids(bad, version)
    assert rule_id not in graph_ids(good, good_version)


def test_graph_rules_follow_the_version():
    """Forms 8.x refuses and 10.x accepts: weights stored as INT8, Q/DQ without zero point."""
    assert "qdq.int8-weights" not in graph_ids(qdq_conv(int8_weights=True), "10.3.0")
    assert "qdq.zero-point-missing" not in graph_ids(qdq_conv(zero_point=False), "10.3.0")
    assert "types.mixed-inputs" not in graph_ids(mixed_add(), "8.6.1")  # weakly typed
    assert "qdq.weight-axis" in graph_ids(qdq_conv(weight_axis=None), "8.6.1")  # ONNX reads 1
    assert graph_ids(qdq_conv(), "8.2.1") == []  # the form every 8.x target takes
    assert graph_ids(qdq_conv(), "10.3.0") == ["qdq.fp32-float-parts"]  # a warning there


def test_target_check_at_export_runs_the_graph_rules():
    """export's check_target_ops refuses the Q/DQ form 8.x cannot parse, one line with the fix."""
    from cifrenet_edge.export import check_target_ops

    bad = qdq_conv(int8_weights=True)
    with pytest.raises(UnsupportedOpError) as err:
        check_target_ops(bad, "trt8.6")
    msg = str(err.value)
    assert "w_dequant" in msg and "QuantizeLinear" in msg and "[qdq.int8-weights]" in msg
    assert "\n" not in msg
    (line,) = check_target_ops(bad, "trt10")["warnings"]  # FP32 float parts on trt10
    assert "[qdq.fp32-float-parts]" in line and "--target trt10" in line
    assert check_target_ops(qdq_conv(), "trt8.2")["warnings"] == []
    assert check_target_ops(bad, "onnxruntime")["ops"]["DequantizeLinear"] == 2


# --------------------------------------------------------------------------- option rules
def plan(version: str, precision: str, mode: str = "qdq", onnx_p: Optional[str] = None, **kw):
    onnx_p = onnx_p or ("int8" if precision == "int8" and mode == "qdq" else "fp32")
    return plan_build(api.capabilities(version), precision, mode, onnx_p, **kw)


def test_int8_refused_without_int8_hardware():
    """Finding 5: Nano (5.3), P100 (6.0), TX2 (6.2): one line naming fp16; 6.1 and 7.x build."""
    for cc in ("5.3", "6.0", "6.2"):
        with pytest.raises(BackendUnavailableError, match="--precision fp16") as err:
            plan("8.2.1", "int8", compute_capability=cc)
        assert "[hw.int8]" in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(BackendUnavailableError, match="no INT8 hardware"):
            plan("8.2.1", "int8", "calibrator", compute_capability=cc)
    assert plan("8.6.1", "int8", compute_capability="6.1").warnings == ()
    assert plan("8.5.2", "int8", compute_capability="7.2").warnings == ()


def test_qdq_int8_on_8x_also_sets_fp16_where_fp16_is_fast():
    """Finding 4, 8.x build: layers outside Q/DQ fall back to FP16, except on cc 6.1."""
    for version in ("8.2.1", "8.5.2", "8.6.1"):
        assert plan(version, "int8", compute_capability="7.5").builder_flags == ("INT8", "FP16")
        assert plan(version, "int8", compute_capability="6.1").builder_flags == ("INT8",)
    strongly = plan("10.3.0", "int8", compute_capability="8.7")
    assert strongly.builder_flags == () and strongly.network_flags == ("STRONGLY_TYPED",)


def test_fp16_on_pascal_is_a_warning():
    w = plan("8.6.1", "fp16", compute_capability="6.1").warnings
    assert len(w) == 1 and "[hw.fp16-slow]" in w[0] and "--precision int8" in w[0]
    assert plan("8.6.1", "fp16", compute_capability="8.6").warnings == ()


@pytest.mark.parametrize(
    "kw, exc, text",
    [
        ({"dla_core": -1}, ConfigError, "[dla.core-index]"),
        ({"dla_core": 1, "dla_cores": 1}, BackendUnavailableError, "[dla.no-core]"),
        ({"dla_core": 0, "dla_cores": 2, "dynamic": True}, ConfigError, "[dla.dynamic]"),
    ],
)
def test_dla_options_refused(kw, exc, text):
    with pytest.raises(exc) as err:
        plan("10.3.0", "fp16", compute_capability="8.7", **kw)
    assert text in str(err.value)
    ok = dict(kw, dla_core=0, dla_cores=2, dynamic=False)
    assert plan("10.3.0", "fp16", compute_capability="8.7", **ok).warnings == ()


def test_dla_fp32_and_explicit_int8():
    """Finding 8: Q/DQ INT8 on DLA is refused on 8.x (naming the calibrator), warned on 10.x."""
    with pytest.raises(ConfigError, match="DLA runs FP16 and INT8 only"):
        plan("8.5.2", "fp32", dla_core=0, dla_cores=2)
    with pytest.raises(ConfigError, match="--int8-mode calibrator") as err:
        plan("8.5.2", "int8", compute_capability="7.2", dla_core=0, dla_cores=2)
    assert "[dla.explicit-int8]" in str(err.value)
    calib = plan("8.5.2", "int8", "calibrator", compute_capability="7.2", dla_core=0, dla_cores=2)
    assert calib.calibrator and "FP16" in calib.builder_flags
    w = plan("10.3.0", "int8", compute_capability="8.7", dla_core=0, dla_cores=2).warnings
    assert any("[dla.explicit-int8-gpu]" in line for line in w)


def test_dla_on_trt11_and_calibrator_on_trt11_refused():
    with pytest.raises(BackendUnavailableError, match=r"\[dla.unsupported\]"):
        plan("11.1", "fp16", compute_capability="8.7", dla_core=0, dla_cores=2)
    with pytest.raises(BackendUnavailableError, match="removed implicit INT8 calibration"):
        plan("11.1", "int8", "calibrator", compute_capability="8.9")
    assert plan("10.3.0", "int8", "calibrator", compute_capability="8.7").calibrator


def test_strongly_typed_plans_carry_no_precision_flags():
    """The plan rule fires on a bad plan; no plan_build output breaks it on any version."""
    bad = rules.Context(
        span=rules.version_span((10, 3, 0)), strongly_typed=True, builder_flags=("FP16",)
    )
    (finding,) = rules.evaluate(bad, ("plan",))
    assert finding.rule.id == "st.precision-flags" and finding.severity == "error"
    ok = bad._replace(strongly_typed=False, builder_flags=("INT8", "FP16"))
    assert rules.evaluate(ok, ("plan",)) == []
    for version in VERSIONS:
        for precision, mode, onnx_p in (
            ("fp32", "qdq", "fp32"),
            ("fp16", "qdq", "fp32"),
            ("fp16", "qdq", "fp16"),
            ("int8", "qdq", "int8"),
        ):
            p = plan(version, precision, mode, onnx_p, compute_capability="8.6")
            assert not (p.strongly_typed and set(p.builder_flags) & set(rules.PRECISION_FLAGS))


# --------------------------------------------------------------------------- the table
OPTION_CASES = {  # ids covered by the option/hardware/plan tests above
    "hw.int8",
    "hw.fp16-slow",
    "hw.fp16-none",
    "hw.sm-maxwell",
    "hw.sm-jetson-tx",
    "hw.sm-pascal",
    "hw.sm-xavier",
    "hw.sm-volta",
    "hw.sm-ada",
    "hw.sm-blackwell",
    "dla.core-index",
    "dla.no-core",
    "dla.fp32",
    "dla.dynamic",
    "dla.explicit-int8",
    "dla.explicit-int8-gpu",
    "dla.unsupported",
    "calib.removed",
    "st.precision-flags",
}


def test_table_is_complete_and_sourced():
    ids = [r.id for r in rules.RULES]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(rules.CHECKS)  # every row detected, every check in the table
    assert set(ids) == set(GRAPH_CASES) | OPTION_CASES  # every rule has its tests here
    for r in rules.RULES:
        assert r.severity in ("error", "warning") and r.kind in rules._ERRORS
        assert r.until is None or r.since < r.until
        assert len(r.source) > 20 and len(r.fix) > 10, r.id
        assert (r.kind == "graph") == (r.id in GRAPH_CASES), r.id
    md = rules.markdown_table()
    assert md.count("\n") == len(ids) + 2 and "| qdq.int8-weights | 8.x | error |" in md


def test_target_spans_match_the_export_targets():
    from cifrenet_edge.export import TARGETS

    for name, (lo, end) in rules.TARGET_SPANS.items():
        assert api.target_for_version(lo) == name
        last = (end[0] - 1, 99, 0) if end[1:] == (0, 0) else (end[0], end[1] - 1, 99)
        assert api.target_for_version(last) == name
        listed = rules.TARGET_LISTING[name]
        assert TARGETS[name].ops_file == "onnx-parser-ops-{}.json".format(
            ".".join(str(p) for p in listed).replace("11.1.0", "11.1")
        )
        assert rules.parser_opsets(listed)[1] == TARGETS[name].opset_max


def test_export_option_check_warns_or_refuses_per_target():
    w = rules.check_export_options("trt8.2", "int8", "qdq")
    assert len(w) == 1 and "[hw.int8]" in w[0] and "Jetson Nano" in w[0]
    assert rules.check_export_options("trt8.5", "int8", "qdq") == []
    with pytest.raises(ConfigError, match=r"\[dla.explicit-int8\]"):
        rules.check_export_options("trt8.5", "int8", "qdq", dla_core=0)
    with pytest.raises(ConfigError, match=r"\[dla.dynamic\]"):
        rules.check_export_options("trt10", "fp16", dynamic=True, dla_core=0)
    # trt10 and trt11 span versions with and without DLA (none 10.8-11.4.0): decided on
    # the device
    for target in ("trt10", "trt11"):
        (line,) = rules.check_export_options(target, "fp16", dla_core=0)
        assert "[dla.unsupported]" in line and "on TensorRT 10.8-11.4.0" in line
    assert rules.check_export_options("onnxruntime", "int8") == []


def test_export_refuses_dla_with_dynamic_before_exporting(monkeypatch, tmp_path):
    """Finding 7 at export: one line in a second, not after the export and quantization."""
    from cifrenet_edge.export import EngineOptions, OnnxOptions, export
    from cifrenet_edge.export import stages as export_pipeline

    monkeypatch.setattr(api, "import_tensorrt", StandIn("10.3.0", Scenario("10.3.0")).module)

    def no_export(*a, **k):
        raise AssertionError("the export started")

    monkeypatch.setattr(export_pipeline, "export_onnx", no_export)
    with pytest.raises(ConfigError, match=r"\[dla.dynamic\]"):
        export(
            OnnxOptions(dynamic=True, target="trt10"),
            precision="fp16",
            format="engine",
            engine=EngineOptions(dla_core=0),
            output=tmp_path / "m.engine",
            quiet=True,
        )
    assert list(tmp_path.iterdir()) == []


def test_rules_module_is_python38():
    """The device builder imports the rules, the build and the calibrator on JetPack 5."""
    from conftest import assert_python38

    root = Path(rules.__file__).resolve().parent
    names = ("rules.py", "build.py", "plan.py", "timing_cache.py", "int8_calibrator.py")
    assert_python38([root / name for name in names])


# --------------------------------------------------------------------------- builds
def _scenario_returns(monkeypatch, table: Dict[Any, Any]) -> None:
    """Override some stand-in return values: (class, member) -> function of (stand-in, args)."""
    orig = Scenario.returns

    def returns(self, s, cls, item, args):
        fn = table.get((cls, item))
        return fn(s, args) if fn is not None else orig(self, s, cls, item, args)

    monkeypatch.setattr(Scenario, "returns", returns)


def _qdq_onnx(tmp_path: Path, model: onnx.ModelProto, precision: str = "int8") -> Path:
    path = tmp_path / f"q_{precision}.onnx"
    onnx.save(model, str(path))
    (tmp_path / (path.name + ".json")).write_text(json.dumps(_manifest(precision)))
    return path


def test_build_runs_the_graph_rules_before_parsing(monkeypatch, tmp_path):
    from cifrenet_edge.trt import build

    src = _qdq_onnx(tmp_path, qdq_conv(int8_weights=True))
    monkeypatch.setattr(build, "_open_cuda", lambda: RecordingCuda())
    s = StandIn("8.6.1", Scenario("8.6.1"))
    monkeypatch.setattr(api, "import_tensorrt", s.module)
    with pytest.raises(UnsupportedOpError, match=r"\[qdq.int8-weights\]"):
        build.build_engine(src, precision="int8", output=tmp_path / "e", quiet=True)
    assert not s.rec.called("OnnxParser.parse") and not (tmp_path / "e").exists()
    s = StandIn("10.3.0", Scenario("10.3.0"))  # 10.x reads INT8 weights behind a DQ
    monkeypatch.setattr(api, "import_tensorrt", s.module)
    res = build.build_engine(src, precision="int8", output=tmp_path / "e", quiet=True)
    assert res.manifest["engine"]["strongly_typed"] and s.rec.called("OnnxParser.parse")


def test_build_without_onnx_package_trusts_the_export_target(run_build, monkeypatch):
    """A Jetson without `onnx`: the graph rules ran at export; another target is a warning."""
    monkeypatch.setitem(sys.modules, "onnx", None)
    result, _, _ = run_build("10.3.0", "fp32")  # the manifest says --target trt8.6
    assert any("--target trt10" in w and "onnx" in w for w in result.warnings)


@pytest.mark.parametrize("version", ["8.5.2", "10.3.0"])
def test_build_refuses_dla_with_a_dynamic_model(version, run_build):
    """Finding 7: DLA needs min = opt = max; before, the engine ran on the GPU."""
    with pytest.raises(ConfigError, match=r"\[dla.dynamic\]"):
        run_build(version, "fp16", dynamic=True, dla_core=0, dla_cores=2)
    with pytest.raises(ConfigError, match=r"\[dla.core-index\]"):
        run_build(version, "fp16", dla_core=-1, dla_cores=2)


def test_build_refuses_int8_on_the_nano(run_build, monkeypatch):
    info = dict(RecordingCuda().device_info(), name="NVIDIA Tegra X1", compute_capability="5.3")
    monkeypatch.setattr(RecordingCuda, "device_info", lambda self: info)
    with pytest.raises(BackendUnavailableError, match=r"\[hw.int8\]"):
        run_build("8.2.1", "int8")
    result, _, _ = run_build("8.2.1", "fp16")
    assert result.manifest["engine"]["builder_flags"] == ["FP16"]


def test_refused_optimisation_profile_is_an_error(run_build, monkeypatch):
    """Finding 9: add_optimization_profile returns -1 for an invalid profile."""
    _scenario_returns(
        monkeypatch, {("IBuilderConfig", "add_optimization_profile"): lambda s, a: -1}
    )
    with pytest.raises(ExportError, match="refused the optimisation profile"):
        run_build("10.3.0", "fp16", dynamic=True)


def test_refused_calibration_profile_is_an_error(run_build, monkeypatch, real_images_dir, tmp_path):
    _scenario_returns(
        monkeypatch, {("IBuilderConfig", "set_calibration_profile"): lambda s, a: False}
    )
    with pytest.raises(CalibrationError, match="refused the calibration profile"):
        run_build(
            "8.6.1",
            "int8",
            dynamic=True,
            onnx_precision="fp32",
            int8_mode="calibrator",
            calib=real_images_dir,
        )
    assert not (tmp_path / "m.engine").exists()


def test_empty_parser_error_is_one_line(run_build, monkeypatch):
    """Finding 9: an empty error string from the parser used to raise IndexError."""

    class Blank:
        def __str__(self) -> str:
            return ""

    _scenario_returns(
        monkeypatch,
        {
            ("OnnxParser", "parse"): lambda s, a: False,
            ("OnnxParser", "num_errors"): lambda s, a: 1,
            ("OnnxParser", "get_error"): lambda s, a: Blank(),
        },
    )
    with pytest.raises(ExportError, match=r"rejected m_fp32\.onnx: no details"):
        run_build("8.6.1", "fp32")


def test_timing_cache_is_combined_with_the_file_under_a_lock(run_build, tmp_path):
    cache = tmp_path / "shared.timing.cache"
    _, rec, _ = run_build("8.6.1", "fp32", timing_cache=cache)
    assert cache.is_file() and not rec.called("ITimingCache.combine")  # nothing to merge yet
    _, rec, _ = run_build("8.6.1", "fp32", timing_cache=cache)
    assert rec.called("ITimingCache.combine") and rec.missing == []
    assert (tmp_path / "shared.timing.cache.lock").is_file()


def test_file_lock_excludes_a_second_holder(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    from cifrenet_edge.trt.timing_cache import file_lock as _file_lock

    target = tmp_path / "t.cache"
    lock = str(target) + ".lock"
    with _file_lock(target), open(lock, "a+b") as other, pytest.raises(BlockingIOError):
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(str(target) + ".lock", "a+b") as other:  # released: free again
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


# ----- callbacks: TensorRT's trampolines swallow Python exceptions (8.5+)
def _trampoline(fn, *args):
    """What pyInt8.cpp / pyCore.cpp (8.5+) do around a Python override: catch, print, fail."""
    try:
        return fn(*args), None
    except BaseException as exc:  # pybind11's error_already_set is a std::exception
        return None, exc


class FailingBatches:
    """Calibration frames whose third read fails (a file vanished, Ctrl-C ...)."""

    def __init__(self, exc: BaseException, n: int = 5) -> None:
        self.exc, self.n = exc, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> np.ndarray:
        if i == 2:
            raise self.exc
        return np.zeros((1, 3, 96, 160), np.float32)


def _calibrating_build(monkeypatch, captured: List[Any]) -> None:
    """The stand-in builder drives the calibrator as TensorRT does when it builds."""
    from cifrenet_edge.trt import int8_calibrator as cal_mod

    make = cal_mod.make_entropy_calibrator

    def capture(*a, **k):
        cal = make(*a, **k)
        captured.append(cal)
        return cal

    monkeypatch.setattr(cal_mod, "make_entropy_calibrator", capture)

    def build(s, args):
        cal = captured[-1]
        cache, _ = _trampoline(cal.read_calibration_cache)
        if cache is None:
            while _trampoline(cal.get_batch, ["input"])[0] is not None:
                pass
            _trampoline(cal.write_calibration_cache, b"TRT-8601-EntropyCalibration2\n")
        return s.instance("IHostMemory")

    _scenario_returns(monkeypatch, {("Builder", "build_serialized_network"): build})


class FakeCalib:
    def __init__(self, batches: Any) -> None:
        self.batches = batches
        self.fingerprint = {"sha256": "fa" * 32, "count": len(batches)}


@pytest.mark.parametrize(
    "exc, raised",
    [(OSError("frame 3 vanished"), CalibrationError), (KeyboardInterrupt(), KeyboardInterrupt)],
)
def test_calibrator_callback_failure_is_contained(monkeypatch, run_build, tmp_path, exc, raised):
    """Finding 6: no exception escapes into TensorRT; after the build it is raised, and neither
    the engine nor a cache computed from the partial data is written."""
    captured: List[Any] = []
    _calibrating_build(monkeypatch, captured)
    with pytest.raises(raised) as err:
        run_build(
            "8.6.1",
            "int8",
            onnx_precision="fp32",
            int8_mode="calibrator",
            calib=FakeCalib(FailingBatches(exc)),
        )
    if raised is CalibrationError:
        assert "frame 3 vanished" in str(err.value) and "\n" not in str(err.value)
    (cal,) = captured
    assert cal.error is exc and cal.index == 2 and not cal.wrote_cache
    assert not (tmp_path / "m.engine").exists() and list(tmp_path.glob("*.calib-*.cache")) == []
    assert cal.device_ptr == 0  # released however the build ended


def test_calibrator_callbacks_never_raise(monkeypatch, tmp_path):
    """TensorRT 8.2 has no try/catch around them (std::terminate): they must not raise."""
    from cifrenet_edge.trt.int8_calibrator import make_entropy_calibrator

    s = StandIn("8.2.1", Scenario("8.2.1"))
    cuda = RecordingCuda()
    cache = tmp_path / "c.cache"
    cal = make_entropy_calibrator(s.module(), cuda, FailingBatches(RuntimeError("bad")), cache)
    assert cal.get_batch(["input"]) is not None and cal.get_batch(["input"]) is not None
    assert cal.get_batch(["input"]) is None and isinstance(cal.error, RuntimeError)
    assert cal.get_batch(["input"]) is None  # stays stopped
    cal.write_calibration_cache(b"partial")
    assert not cache.exists()  # computed from partial data: not stored

    class Unreadable:
        def is_file(self) -> bool:
            return True

        def read_bytes(self) -> bytes:
            raise PermissionError("calibration cache: permission denied")

    cal2 = make_entropy_calibrator(s.module(), cuda, FailingBatches(RuntimeError("x"), 1), cache)
    cal2.cache_path = Unreadable()
    assert cal2.read_calibration_cache() is None and isinstance(cal2.error, PermissionError)
    cal.release()
    cal2.release()
    assert cuda.live == {}


def _progress_build(monkeypatch, fail: BaseException) -> None:
    """A build whose progress display fails inside step_complete, as TensorRT calls it."""
    from rich.progress import Progress

    def update(self, *a, **k):
        raise fail

    monkeypatch.setattr(Progress, "update", update)
    from cifrenet_edge.trt import build as build_mod

    monitors: List[Any] = []
    make = build_mod.make_progress_monitor
    monkeypatch.setattr(
        build_mod,
        "make_progress_monitor",
        lambda trt, progress: monitors.append(make(trt, progress)) or monitors[-1],
    )

    def build(s, args):
        mon = monitors[-1]
        _trampoline(mon.phase_start, "Building engine", None, 2)
        ok, _ = _trampoline(mon.step_complete, "Building engine", 0)
        if not ok:  # False or an exception: TensorRT cancels, the build returns None
            return None
        return s.instance("IHostMemory")

    _scenario_returns(monkeypatch, {("Builder", "build_serialized_network"): build})


def test_ctrl_c_during_the_build_is_a_keyboard_interrupt(monkeypatch, run_build, tmp_path):
    """Finding 9: Ctrl-C arrives inside step_complete; it used to read 'larger --workspace'."""
    import io

    from rich.console import Console

    _progress_build(monkeypatch, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_build("10.3.0", "fp32", quiet=False, console=Console(file=io.StringIO()))
    assert not (tmp_path / "m.engine").exists()


def test_failing_progress_display_is_reported_as_cancelled(monkeypatch, run_build):
    import io

    from rich.console import Console

    _progress_build(monkeypatch, RuntimeError("terminal closed"))
    with pytest.raises(ExportError, match="cancelled: the progress display failed") as err:
        run_build("10.3.0", "fp32", quiet=False, console=Console(file=io.StringIO()))
    assert "workspace" not in str(err.value)


# --------------------------------------------------------------------------- engine manifest
def test_engine_manifest_compares_the_build_number_on_every_version():
    """10.x and 8.x alike refuse another build of the same release (8.6: "expecting library
    version 8.6.1.6 got 8.6.1.2, please rebuild")."""
    from cifrenet_edge.trt.engine_manifest import compare_engine

    def manifest(trt: str) -> Dict[str, Any]:
        return {
            **_manifest("fp32"),
            "kind": "engine",
            "engine": {"tensorrt": trt, "gpu": "Orin", "compute_capability": "8.7"},
        }

    here = {"gpu": "Orin", "compute_capability": "8.7", "dla_cores": 0}
    errors, _ = compare_engine(manifest("10.3.0.26"), dict(here, tensorrt="10.3.0.30"))
    assert len(errors) == 1 and "10.3.0.26" in errors[0] and "10.3.0.30" in errors[0]
    assert compare_engine(manifest("10.3.0.30"), dict(here, tensorrt="10.3.0.30"))[0] == []
    assert compare_engine(manifest("10.3.0"), dict(here, tensorrt="10.3.0.30"))[0] == []
    (err,) = compare_engine(manifest("8.6.1.2"), dict(here, tensorrt="8.6.1.6"))[0]
    assert "8.6.1.2" in err and "8.6.1.6" in err
    assert len(compare_engine(manifest("8.5.2.2"), dict(here, tensorrt="8.5.2.4"))[0]) == 1
    assert compare_engine(manifest("8.6.1"), dict(here, tensorrt="8.6.1.6"))[0] == []
