"""`export()`: the FP32 ONNX first, then the INT8 / FP16 / engine stage it hands over to."""

import importlib.util
import json

import onnx
import pytest

from cifrenet_edge.errors import BackendUnavailableError, ConfigError
from cifrenet_edge.export import EngineOptions, Int8Options, OnnxOptions, export, needs

TINY = OnnxOptions(res=(96, 64))


def test_fp16_onnx_pipeline_keeps_the_fp32_reference(tmp_path):
    out = tmp_path / "half.onnx"
    res = export(TINY, precision="fp16", output=out, quiet=True)
    assert res.final == out and out.is_file()
    assert res.fp32.path == tmp_path / "cifrenet_cityscapes_96x64_fp32.onnx"
    assert [label for label, _ in res.artifacts] == ["fp32 onnx", "fp16 onnx"]
    half = onnx.load(str(out))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in half.graph.initializer)
    # The FP16 file still carries the manifest (classes, normalisation) for the runtime.
    assert (
        json.loads(dict((p.key, p.value) for p in half.metadata_props)["cifrenet_edge"])["classes"]
        == res.fp32.manifest["classes"]
    )


def test_int8_pipeline_calibrates_on_the_given_images(tmp_path, real_images_dir):
    out = tmp_path / "q.onnx"
    res = export(
        TINY,
        precision="int8",
        int8=Int8Options(calib=real_images_dir),
        output=out,
        quiet=True,
    )
    assert out.is_file() and res.fp32.path.is_file()
    q = onnx.load(str(out))
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in q.graph.node}
    # Without --verify-images the FP32 parity gate ran on the calibration photos.
    assert "real image(s)" in res.fp32.parity["inputs"]


@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here"
)
def test_engine_without_tensorrt_fails_before_exporting(tmp_path):
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        export(TINY, format="engine", output=tmp_path / "m.engine", quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_missing_stage_module_is_a_clear_error():
    expected = pytest.raises(BackendUnavailableError, match=r"cifrenet_edge\.nonexistent_stage")
    with expected, needs("--precision int8"):
        import cifrenet_edge.nonexistent_stage  # noqa: F401


@pytest.mark.parametrize(
    "options,match",
    [
        (
            {"precision": "int8", "int8": Int8Options(calib=".", mode="calibrator")},
            "--format engine",
        ),
        ({"int8": Int8Options(eval_data="synthetic:x")}, "--precision int8"),
        ({"int8": Int8Options(calib=".")}, "only apply to INT8"),
        ({"engine": EngineOptions(workspace=512)}, "engine options"),
        ({"format": "plan"}, "onnx or engine"),
        ({"precision": "int8", "int8": Int8Options(calib=".", method="kl")}, "entropy"),
    ],
)
def test_pipeline_option_conflicts(tmp_path, options, match):
    with pytest.raises(ConfigError, match=match):
        export(TINY, output=tmp_path / "m.onnx", quiet=True, **options)
    assert list(tmp_path.iterdir()) == []


def test_each_stage_checks_its_own_options():
    from cifrenet_edge.export import get_target

    t = get_target("trt11")
    with pytest.raises(ConfigError, match="unknown --int8-mode 'implicit'"):
        Int8Options(calib=".", mode="implicit").check("int8", "engine", t)
    with pytest.raises(ConfigError, match="removed INT8 calibrators"):
        Int8Options(calib=".", mode="calibrator").check("int8", "engine", t)
    Int8Options(calib=".").check("int8", "onnx", t)  # Q/DQ is what TensorRT 11 reads
    with pytest.raises(ConfigError, match="engine options"):
        EngineOptions(dla_core=0).check("onnx")
    EngineOptions(dla_core=0).check("engine")
    with pytest.raises(ConfigError, match="unknown target"):
        OnnxOptions(target="trt7").check()
    assert OnnxOptions(res="128x64", target="trt8.2").check()[0].name == "trt8.2"
