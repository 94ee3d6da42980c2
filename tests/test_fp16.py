"""FP16 ONNX for TensorRT strong typing, verified in ONNX Runtime (CPU) against FP32.

The converted model must keep FP32 input/output (so callers and manifests do not change),
hold its weights in FP16 (so TensorRT 10.12+/11 really builds FP16 kernels), keep Resize in
FP32, and give the same class map as the FP32 export on real photographs. The models are
untrained, so their class maps are nearly constant: the logit error is also checked against
the logits' spatial variation, which a broken conversion would not meet.
"""

import cv2
import onnx
import pytest
from thresholds import check

from cifrenet_edge.errors import ExportError, ModelFileError
from cifrenet_edge.preprocess import preprocess
from cifrenet_edge.presets import BGR_MEAN, INPUT_SCALE
from cifrenet_edge.quantize.fp16 import convert_fp16_onnx, verify_fp16

WH = (256, 128)


@pytest.fixture(scope="module")
def fp32_export(small_fp32_onnx, tmp_path_factory):
    """A copy of the session's small FP32 export (the shared one stays read-only)."""
    import shutil

    out = tmp_path_factory.mktemp("fp16") / small_fp32_onnx.name
    shutil.copy(small_fp32_onnx, out)
    return out


@pytest.fixture(scope="module")
def fp16_model(fp32_export):
    return convert_fp16_onnx(fp32_export)


def test_io_stays_fp32_weights_become_fp16(fp16_model, fp32_export):
    m = onnx.load(str(fp16_model.path))
    F32 = onnx.TensorProto.FLOAT
    assert [v.type.tensor_type.elem_type for v in m.graph.input] == [F32]
    assert [v.type.tensor_type.elem_type for v in m.graph.output] == [F32]
    assert [v.name for v in m.graph.output] == ["logits"]
    conv_w = {n.input[1] for n in m.graph.node if n.op_type == "Conv"}
    dtypes = {t.data_type for t in m.graph.initializer if t.name in conv_w}
    assert dtypes == {onnx.TensorProto.FLOAT16}
    assert fp16_model.fp16_initializers > 50 and fp16_model.kept_fp32_nodes >= 1
    onnx.checker.check_model(m)
    # the manifest travels with it, precision updated
    props = {p.key: p.value for p in m.metadata_props}
    assert props.get("precision") == "fp16" and "cifrenet_edge" in props
    assert fp16_model.path.name == "cifrenet_cityscapes_256x128_fp16.onnx"


def test_same_class_map_as_fp32_in_onnxruntime(fp16_model, fp32_export, real_images_dir):
    frames = [cv2.imread(str(p)) for p in sorted(real_images_dir.glob("*.jpg"))]
    inputs = [preprocess(f, WH, BGR_MEAN, INPUT_SCALE) for f in frames]
    report = verify_fp16(fp32_export, fp16_model.path, inputs)
    assert check("fp16.argmax_agreement", report["argmax_agreement"], ">=", 0.99, 1.0), report
    # FP16 really ran: the logits differ from FP32, but only by FP16 rounding, small against
    # how much the logits vary over the image (the untrained model's class map is nearly
    # constant, so this is the check with teeth)
    assert report["max_abs_logit_diff"] > 0.0, report
    rel = report["max_abs_logit_diff"] / report["logit_spatial_std"]
    # 0.085 on every kernel ISA: FP16 rounding; a broken conversion is of the order of 1
    assert check("fp16.logit_diff_over_spatial_std", rel, "<", 0.125, 0.0), report


def test_fp16_model_opens_in_the_runtime_with_its_manifest(
    fp16_model, fp32_export, real_images_dir
):
    from cifrenet_edge import Segmenter
    from cifrenet_edge.manifest import read_manifest

    m = read_manifest(fp16_model.path)
    assert m["precision"] == "fp16" and m["source"]["onnx"] == str(fp32_export)
    frames = [cv2.imread(str(p)) for p in sorted(real_images_dir.glob("*.jpg"))]
    with Segmenter.open(
        fp16_model.path, device="cpu", backend="onnxruntime"
    ) as s16, Segmenter.open(fp32_export, device="cpu", backend="onnxruntime") as s32:
        assert s16.backend.precision == "fp16"
        same = sum(int((s16.predict(f) == s32.predict(f)).sum()) for f in frames)
        total = sum(f.shape[0] * f.shape[1] for f in frames)
    assert check("fp16.runtime_class_map_agreement", same / total, ">=", 0.99, 1.0)


def test_refuses_missing_and_qdq_models(tmp_path, fp32_export):
    with pytest.raises(ModelFileError, match="does not exist"):
        convert_fp16_onnx(tmp_path / "nope.onnx")
    m = onnx.load(str(fp32_export))
    node = onnx.helper.make_node("QuantizeLinear", ["x", "s"], ["y"])
    m.graph.node.append(node)
    q = tmp_path / "q.onnx"
    onnx.save(m, str(q))
    with pytest.raises(ExportError, match="Q/DQ"):
        convert_fp16_onnx(q)
    assert not (tmp_path / "q_fp16.onnx").exists()
