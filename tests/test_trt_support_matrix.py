"""Which TensorRT runs on which GPU, the install that picks it, and the build fixes around it.

NVIDIA's support matrix (compute capabilities per TensorRT release, from release notes and
maintainers' answers) is part of the rule table (``hw.sm-*`` rules): a GTX 1080 Ti with a
10.x TensorRT is refused before anything is exported, naming the pip extra that installs
8.6.x, and ``info --env`` names the same extra. Without a GPU: plans, the stand-in
``tensorrt`` modules of ``support/trt_standin.py`` and the packaging metadata.
"""

import io
import json
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import tomllib
from packaging.specifiers import SpecifierSet
from support.trt_cases import plain_conv, qdq_conv
from support.trt_standin import RecordingCuda, Scenario, StandIn, _manifest

from cifrenet_edge.errors import BackendUnavailableError, ConfigError
from cifrenet_edge.trt import api, rules
from cifrenet_edge.trt.plan import plan_build

ROOT = Path(__file__).resolve().parents[1]
# `pip index versions tensorrt` on PyPI, 2026-12-04 (the real release list, oldest last)
PYPI_TENSORRT = [
    "11.4.0.106",
    "11.3.0.99",
    "11.2.1.2",
    "11.1.0.106",
    "11.0.0.114",
    "10.16.1.11",
    "10.16.0.72",
    "10.15.1.29",
    "10.14.1.48.post1",
    "10.14.1.48",
    "10.13.3.9.post1",
    "10.13.3.9",
    "10.13.2.6",
    "10.13.0.35",
    "10.12.0.36",
    "10.11.0.33",
    "10.10.0.31",
    "10.9.0.34",
    "10.8.0.43",
    "10.7.0.post1",
    "10.7.0",
    "10.6.0.post2",
    "10.6.0.post1",
    "10.6.0",
    "10.5.0",
    "10.4.0",
    "10.3.0",
    "10.2.0.post1",
    "10.2.0",
    "10.1.0",
    "10.0.1",
    "8.6.1.post1",
    "8.6.1",
]


def extras() -> dict:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return data["project"]["optional-dependencies"]


def resolves_to(extra: str) -> set:
    (req,) = extras()[extra]
    assert req.startswith("tensorrt")
    spec = SpecifierSet(req[len("tensorrt") :])
    return {v for v in PYPI_TENSORRT if spec.contains(v, prereleases=False)}


def test_each_generation_extra_resolves_to_that_generation_only():
    assert resolves_to("trt86") == {"8.6.1", "8.6.1.post1"}
    assert {v.split(".")[0] for v in resolves_to("trt10")} == {"10"}
    assert {v.split(".")[0] for v in resolves_to("trt11")} == {"11"}
    assert "10.0.1" in resolves_to("trt10") and "10.16.1.11" in resolves_to("trt10")


def test_readme_installs_tensorrt_86_on_the_1080ti():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### GTX 1080 Ti (TensorRT 8.6)")[1].split("###")[0]
    line = next(x for x in section.splitlines() if "pip install" in x)
    extra = line.split("[")[1].split("]")[0].split(",")[0]
    assert extra == "trt86" and all(v.startswith("8.6.") for v in resolves_to(extra))


def test_pascal_on_trt10_is_refused_naming_the_install():
    with pytest.raises(BackendUnavailableError) as err:
        plan_build(api.capabilities("10.3.0"), "fp32", compute_capability="6.1")
    msg = str(err.value)
    assert "[hw.sm-pascal]" in msg and "pip install 'cifrenet-edge[trt86]'" in msg
    assert "\n" not in msg and "Unsupported SM: 0x601" in msg
    assert plan_build(api.capabilities("8.6.1"), "fp32", compute_capability="6.1").warnings == ()
    for version in ("10.16", "11.1"):
        with pytest.raises(BackendUnavailableError, match="trt86"):
            plan_build(api.capabilities(version), "int8", compute_capability="6.1")


@pytest.mark.parametrize(
    "version, cc, rule_id, ok_version",
    [
        ("8.6.1", "5.2", "hw.sm-maxwell", "8.5.2"),
        ("8.5.2", "5.3", "hw.sm-jetson-tx", "8.2.1"),
        ("8.6.1", "7.2", "hw.sm-xavier", "8.5.2"),
        ("10.16", "7.0", "hw.sm-volta", "10.3.0"),
        ("8.2.1", "8.9", "hw.sm-ada", "8.6.1"),
        ("10.3.0", "12.0", "hw.sm-blackwell", "10.16"),
    ],
)
def test_support_matrix_bounds(version, cc, rule_id, ok_version):
    with pytest.raises(BackendUnavailableError, match=rf"\[{rule_id}\]"):
        plan_build(api.capabilities(version), "fp32", compute_capability=cc)
    plan_build(api.capabilities(ok_version), "fp32", compute_capability=cc)


def test_the_hardware_rules_are_one_entry_point_for_info_env():
    """What another check (``info --env``) calls: the rules of the hardware kind alone."""
    c = rules.Context(span=rules.version_span((10, 3, 0)), compute_capability="6.1")
    (finding,) = rules.evaluate(c, kinds=("hardware",))
    assert finding.rule.id == "hw.sm-pascal" and finding.severity == "error"
    ok = c._replace(span=rules.version_span((8, 6, 1)))
    assert rules.evaluate(ok, kinds=("hardware",)) == []


def test_build_on_pascal_with_trt10_stops_before_any_work(build_on):
    out = build_on("10.3.0", "6.1", "int8")
    assert isinstance(out.result, BackendUnavailableError) and "trt86" in str(out.result)
    assert not out.standin.rec.called("OnnxParser.parse")
    assert not out.standin.rec.called("Builder.build_serialized_network")


def test_info_env_names_the_extra_this_gpu_needs():
    from rich.console import Console

    from cifrenet_edge.device.env import environment_report, render_environment, tensorrt_install

    assert tensorrt_install("6.1")["command"] == "pip install 'cifrenet-edge[trt86]'"
    assert tensorrt_install("8.6")["extra"] == "trt11"
    assert "10.5" in tensorrt_install("7.0")["command"]  # Volta: 10.4 at the newest
    assert "8.5.3" in tensorrt_install("5.2")["command"]  # Maxwell: no pip wheel
    assert "JetPack" in tensorrt_install("8.7", jetson=True)["command"]
    assert tensorrt_install(None)["command"] == ""
    report = environment_report()
    report["gpu"] = {"name": "NVIDIA GeForce GTX 1080 Ti", "compute_capability": "6.1"}
    report["tensorrt_install"] = tensorrt_install("6.1")
    out = io.StringIO()
    render_environment(report, Console(file=out, width=200))
    assert "cifrenet-edge[trt86]" in out.getvalue()


# --------------------------------------------------------------------------- build fixes
def test_calibrator_int8_keeps_the_fp16_fallback_on_10_12_plus():
    plan = plan_build(api.capabilities("10.16"), "int8", "calibrator", "fp32", "8.7")
    assert plan.builder_flags == ("INT8", "FP16")
    no_fast = plan_build(api.capabilities("8.6.1"), "int8", "calibrator", "fp32", "6.1")
    assert no_fast.builder_flags == ("INT8",)


def test_qdq_with_fp32_float_parts_on_a_strongly_typed_build_warns(build_on):
    for version, cc, target in (("10.3.0", "8.7", "trt10"), ("11.1", "8.9", "trt11")):
        out = build_on(version, cc, "int8", qdq_conv())
        (line,) = [w for w in out.result.warnings if "[qdq.fp32-float-parts]" in w]
        assert f"--target {target}" in line
    half = qdq_conv(scale_type=onnx.TensorProto.FLOAT16, opset=19)
    out = build_on("10.3.0", "8.7", "int8", half)
    assert not any("fp32-float-parts" in w for w in out.result.warnings)


def test_one_logger_and_one_builder_per_build(monkeypatch, tmp_path):
    from cifrenet_edge.trt import build

    src = tmp_path / "m_fp32.onnx"
    onnx.save(plain_conv(13), str(src))
    (tmp_path / "m_fp32.onnx.json").write_text(json.dumps(_manifest("fp32")))
    s = StandIn("8.6.1", Scenario("8.6.1"))
    module = s.module()  # one module object, as `import tensorrt` gives
    monkeypatch.setattr(api, "import_tensorrt", lambda: module)
    monkeypatch.setattr(build, "_open_cuda", lambda: RecordingCuda())
    build.build_engine(src, precision="fp32", output=tmp_path / "e", quiet=True)
    build.build_engine(src, precision="fp32", output=tmp_path / "e", quiet=True)
    assert s.rec.names().count("Logger.__init__") == 1  # one for the process
    assert s.rec.names().count("Builder.__init__") == 2  # one per build


def test_dla_is_refused_from_10_8():
    with pytest.raises(BackendUnavailableError, match=r"\[dla.unsupported\]") as err:
        plan_build(
            api.capabilities("10.16"), "fp16", compute_capability="8.7", dla_core=0, dla_cores=2
        )
    assert "10.3-10.7" in str(err.value)
    plan_build(
        api.capabilities("10.3.0"), "fp16", compute_capability="8.7", dla_core=0, dla_cores=2
    )
    readme = (ROOT / "README.md").read_text()
    dla_line = next(x for x in readme.splitlines() if "--dla-core 0" in x and "trt10" in x)
    assert "10.16" not in dla_line and "JetPack 6" in dla_line


def test_fp16_advice_without_int8_hardware_is_fp32():
    (w,) = plan_build(api.capabilities("8.5.2"), "fp16", compute_capability="5.2").warnings
    assert "[hw.fp16-none]" in w and "use --precision fp32" in w
    (w,) = plan_build(api.capabilities("8.6.1"), "fp16", compute_capability="6.1").warnings
    assert "[hw.fp16-slow]" in w and "use --precision int8" in w


def test_device_builder_runs_without_opencv(tmp_path):
    """The CUDA wrapper is importable without cv2; the names that need it say so."""
    code = (
        "import sys; sys.modules['cv2'] = None\n"
        "import cifrenet_edge.trt.cuda as c\n"
        "from cifrenet_edge.trt import build\n"
        "assert callable(c.open_cuda)\n"
        "try:\n"
        "    from cifrenet_edge.runtime import Segmenter\n"
        "except ImportError as e:\n"
        "    print('ImportError:', e)\n"
    )
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "needs OpenCV" in out.stdout and "opencv-python-headless" in out.stdout


def test_device_builder_reports_a_missing_package_in_one_line(monkeypatch, capsys, tmp_path):
    from cifrenet_edge.trt import build

    def missing(*a, **k):
        raise ImportError("No module named 'cv2'")

    monkeypatch.setattr(build, "build_engine", missing)
    assert build.main([str(tmp_path / "m.onnx"), "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No module named 'cv2'") and err.count("\n") == 1


def test_unknown_precision_still_refused():
    with pytest.raises(ConfigError):
        plan_build(api.capabilities("8.6.1"), "bf16")


def test_failed_qdq_build_names_the_float_and_calibrator_ways_out(run_build):
    """A Q/DQ layer with no INT8 kernel fails the whole build (NVIDIA/TensorRT#3385, 8.5.2)."""
    from cifrenet_edge.errors import ExportError

    with pytest.raises(ExportError) as err:
        run_build("8.5.2", "int8", build_fails=True)
    assert "--keep-float" in str(err.value) and "--int8-mode calibrator" in str(err.value)
    with pytest.raises(ExportError) as err:
        run_build("8.5.2", "fp16", build_fails=True)
    assert "--keep-float" not in str(err.value) and "--workspace" in str(err.value)


def test_keep_float_dw_prelu_leaves_those_depthwise_convs_float(int8_env, tmp_path):
    """The fallback for a Q/DQ depthwise conv TensorRT has no INT8 kernel for (#3385)."""
    from cifrenet_edge import quantize as q

    res = q.quantize_onnx(
        int8_env["fp32"],
        calib=int8_env["calib"],
        holdout=int8_env["holdout"],
        output=tmp_path / "dw.onnx",
        keep_float=("classifier", "resize", "dw-prelu"),
    )
    model = onnx.load(str(res.path))
    dw = q.find_sensitive_nodes(model)["dw-prelu"]
    assert len(dw) == 13  # CIFReNet's depthwise convs feeding a PReLU (LRM, DSP paths)
    prod = {o: n for n in model.graph.node for o in n.output}
    by_name = {n.name: n for n in model.graph.node}
    for name in dw:
        srcs = [prod.get(i) for i in by_name[name].input if i]
        assert not any(s is not None and s.op_type == "DequantizeLinear" for s in srcs), name
    kf = ("classifier", "resize", "dw-prelu")
    assert q.check_qdq_rules(model, kf)["problems"] == []
    assert res.manifest["quantization"]["keep_float"] == list(kf)
    assert q.check_qdq_rules(model)["quantized_convs"] > 0  # the rest is still INT8
