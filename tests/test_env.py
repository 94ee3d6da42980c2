"""`info --env` on this CPU machine, and the precision advice per compute capability."""

import json

from typer.testing import CliRunner

from cifrenet_edge.cli import app
from cifrenet_edge.device.env import environment_report, precision_support, recommend


def test_report_on_this_machine_is_complete_and_json_ready():
    r = environment_report()
    json.dumps(r)
    for key in (
        "python",
        "platform",
        "gpu",
        "cuda",
        "tensorrt",
        "onnxruntime",
        "openvino",
        "recommendation",
    ):
        assert key in r
    import onnxruntime

    assert r["onnxruntime"]["version"] == onnxruntime.__version__
    assert "CPUExecutionProvider" in r["onnxruntime"]["providers"]
    if r["gpu"] is None:  # this CI machine: says why, and advises a CPU path
        assert r["gpu_why_not"]
        assert r["recommendation"]["backend"] in ("openvino", "onnxruntime")
        assert "no NVIDIA GPU" in r["recommendation"]["reason"]


def test_cli_prints_the_environment():
    out = CliRunner().invoke(app, ["info", "--env"])
    assert out.exit_code == 0, out.output
    assert "TensorRT" in out.output and "Recommended" in out.output
    out = CliRunner().invoke(app, ["info", "--env", "--json"])
    assert json.loads(out.output)["recommendation"]["precision"] in ("fp32", "fp16", "int8")


def test_pascal_1080ti_gets_int8_never_fp16():
    s = precision_support("6.1")
    assert s["fast_int8"] and not s["fast_fp16"] and "1/64" in s["fp16_note"]
    rec = recommend("6.1", "8.6.1", False, True, True)
    assert rec["precision"] == "int8" and "never FP16" in rec["reason"]


def test_jetson_nano_gets_fp16_and_orin_int8():
    assert recommend("5.3", "8.2.1", False, False, False)["precision"] == "fp16"
    assert not precision_support("5.3")["fast_int8"]
    assert recommend("8.7", "10.3.0", False, False, True)["precision"] == "int8"
    assert precision_support("7.2")["fast_fp16"] and precision_support("12.0")["fast_int8"]


def test_cpu_advice_depends_on_openvino_and_the_int8_probe():
    vnni = recommend(None, None, True, True, True, "avx512_vnni")
    assert vnni["backend"] == "openvino" and "dot product (avx512_vnni)" in vnni["reason"]
    avx2 = recommend(None, None, True, True, False, "AVX2-only x86 CPU")
    # AVX2-only: never the saturating 8-bit path; 7-bit weights, and measure it here
    assert avx2["precision"] == "int8" and "7-bit" in avx2["reason"] and "bench" in avx2["reason"]
    assert recommend(None, None, False, True, True) == recommend(None, None, True, False, True)
    assert recommend(None, None, False, False, False)["precision"] == "fp32"


def test_report_follows_the_forced_cpu_probe(monkeypatch):
    from cifrenet_edge.runtime.cpu_int8 import FORCE_ENV

    monkeypatch.setenv(FORCE_ENV, "0")
    r = environment_report()
    assert r["cpu"]["int8_dot_product"] is False and FORCE_ENV in r["cpu"]["probe"]
    if r["gpu"] is None and r["recommendation"]["backend"] == "openvino":
        assert "7-bit" in r["recommendation"]["reason"]
    monkeypatch.setenv(FORCE_ENV, "1")
    assert environment_report()["cpu"]["int8_dot_product"] is True
