"""`export()`: the FP32 ONNX first, then the INT8 / FP16 / engine stage it hands over to."""

import importlib.util
import json

import onnx
import pytest

from cifrenet_edge.errors import BackendUnavailableError, ConfigError
from cifrenet_edge.export import _stage, export


def test_fp16_onnx_pipeline_keeps_the_fp32_reference(tmp_path):
    out = tmp_path / "half.onnx"
    res = export(res=(96, 64), precision="fp16", output=out, quiet=True)
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
    res = export(res=(96, 64), precision="int8", calib=real_images_dir, output=out, quiet=True)
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
        export(res=(96, 64), format="engine", output=tmp_path / "m.engine", quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_missing_stage_module_is_a_clear_error():
    with pytest.raises(BackendUnavailableError, match=r"cifrenet_edge\.nonexistent_stage"):
        _stage("nonexistent_stage", "run", "--precision int8")


@pytest.mark.parametrize(
    "options,match",
    [
        ({"precision": "int8", "calib": ".", "int8_mode": "calibrator"}, "--format engine"),
        ({"eval_data": "synthetic:x"}, "--precision int8"),
        ({"calib": "."}, "only apply to INT8"),
        ({"workspace": 512}, "engine options"),
        ({"format": "plan"}, "onnx or engine"),
        ({"calib_method": "kl", "precision": "int8", "calib": "."}, "entropy"),
    ],
)
def test_pipeline_option_conflicts(tmp_path, options, match):
    with pytest.raises(ConfigError, match=match):
        export(res=(96, 64), output=tmp_path / "m.onnx", quiet=True, **options)
    assert list(tmp_path.iterdir()) == []
