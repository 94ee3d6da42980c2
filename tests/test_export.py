"""ONNX export: target opsets, folded graphs, parity with PyTorch, manifests, atomic writes."""

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from thresholds import check

from cifrenet_edge._io import sha256_file
from cifrenet_edge.errors import (
    ConfigError,
    ModelFileError,
    ParityError,
    UnsupportedOpError,
)
from cifrenet_edge.export import (
    DEFAULT_MIN_AGREEMENT,
    SHAPE_OPS,
    TARGETS,
    check_parity,
    check_target_ops,
    default_output_path,
    export_onnx,
    parity_frames,
    resolve_opset,
)
from cifrenet_edge.manifest import (
    METADATA_KEY,
    check_manifest,
    read_manifest,
    sidecar_path,
)
from cifrenet_edge.model.weights import build_model

SHARED_OPS = Path(__file__).resolve().parents[2] / "shared" / "trt_api"
PACKAGED_OPS = (
    Path(__file__).resolve().parents[1] / "cifrenet_edge" / "resources" / "onnx_parser_ops"
)
# Everything a static CIFReNet graph may hold: compute only, no shape arithmetic, no BN.
STATIC_OPS = {
    "Conv",
    "Clip",
    "PRelu",
    "Add",
    "Mul",
    "Concat",
    "Reshape",
    "Transpose",
    "GlobalAveragePool",
    "Expand",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Resize",
}


def op_counts(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def embedded_manifest(path) -> dict:
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return json.loads(props[METADATA_KEY])


# ------------------------------------------------------------------------------------------
# static 640x360: the graph the issue specifies


@pytest.fixture(scope="module")
def export_640(tmp_path_factory):
    out = tmp_path_factory.mktemp("e640") / "m.onnx"
    return export_onnx("cityscapes", res=(640, 360), output=out, quiet=True)


def test_static_640x360_holds_only_compute_ops_at_opset_17(export_640):
    model = onnx.load(str(export_640.path))
    ops = {n.op_type for n in model.graph.node}
    assert ops == STATIC_OPS, f"unexpected op set: {sorted(ops ^ STATIC_OPS)}"
    assert not ops & SHAPE_OPS
    assert "BatchNormalization" not in ops
    counts = op_counts(export_640.path)
    # Three DSP shuffles remain; the head's shuffle and BN were folded into its convolutions,
    # the attention MLP became two 1x1 convs: 87 network convs + 2.
    assert counts["Transpose"] == 3 and counts["Conv"] == 89 and counts["Resize"] == 1
    assert [(i.domain, i.version) for i in model.opset_import] == [("", 17)]
    assert model.ir_version == 8  # the IR version opset 17 came with (onnx 1.12)
    # The final x8 upsampling is one bilinear half-pixel Resize producing the input size.
    (resize,) = [n for n in model.graph.node if n.op_type == "Resize"]
    attrs = {a.name: a.s.decode() for a in resize.attribute if a.s}
    assert attrs["mode"] == "linear"
    assert attrs["coordinate_transformation_mode"] == "half_pixel"
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, 360, 640]
    out_dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert out_dims == [1, 19, 360, 640]
    m = export_640.manifest
    assert m["resolution"] == [640, 360] and m["dynamic"] is None and m["opset"] == 17
    assert m["target"] == "trt8.6" and m["parity"]["passed"]
    agree, diff = m["parity"]["argmax_agreement"], m["parity"]["max_abs_diff"]
    assert check("export_640.argmax_agreement", agree, ">=", DEFAULT_MIN_AGREEMENT, 1.0)
    assert check("export_640.max_abs_diff", diff, "<=", 1e-4, 0.0)


@pytest.mark.parametrize("target", ["trt8.5", "trt8.6", "trt10", "trt11", "onnxruntime"])
def test_static_export_passes_every_opset17_target(export_640, target):
    report = check_target_ops(export_640.path, target)
    assert report["opset"] == 17 and report["ops"]["Conv"] > 80


def test_opset17_file_is_rejected_for_trt82(export_640):
    with pytest.raises(UnsupportedOpError, match=r"opset 17 .*TensorRT 8\.2.*--target trt8\.2"):
        check_target_ops(export_640.path, "trt8.2")


# ------------------------------------------------------------------------------------------
# every preset, static and dynamic


@pytest.mark.parametrize("preset,batch", [("camvid", 1), ("helen", 2)])
def test_static_export_per_preset(tmp_path, preset, batch):
    res = export_onnx(preset, res=(160, 96), output=tmp_path / "m.onnx", batch=batch, quiet=True)
    agree = res.parity["argmax_agreement"]
    assert res.parity["passed"] and check("export_preset.argmax_agreement", agree, ">=", 0.9999, 1)
    assert res.parity["sizes"][0]["batch"] == batch
    assert res.manifest["preset"] == preset and res.manifest["num_classes"] == 11
    assert res.manifest["batch"] == batch
    assert {n for n in op_counts(res.path)} <= STATIC_OPS
    check_target_ops(res.path, "trt8.6")
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": np.zeros((batch, 3, 96, 160), np.float32)})
    assert out.shape == (batch, 11, 96, 160)


def test_static_cityscapes_fixture(small_fp32_export):
    m = small_fp32_export.manifest
    assert m["preset"] == "cityscapes" and m["resolution"] == [256, 128] and m["opset"] == 17
    assert m["parity"]["passed"]
    check_target_ops(small_fp32_export.path, "trt8.6")


@pytest.mark.parametrize("preset,real", [("cityscapes", True), ("camvid", False), ("helen", False)])
def test_dynamic_export_per_preset(tmp_path, monkeypatch, preset, real, real_images_dir):
    monkeypatch.chdir(tmp_path)  # no ./calib folder to pick parity images from
    res = export_onnx(
        preset,
        res=(128, 96),
        dynamic=True,
        min_res=(64, 48),
        max_res=(192, 128),
        output=tmp_path / "d.onnx",
        verify_images=real_images_dir if real else None,
        quiet=True,
    )
    m = res.manifest
    dyn = m["dynamic"]
    assert m["resolution"] is None and m["batch"] is None
    assert dyn["min"] == [64, 48] and dyn["opt"] == [128, 96] and dyn["max"] == [192, 128]
    assert dyn["batch"][0] == 1 and dyn["batch"][2] >= 2 and 2 in dyn["verified_batches"]
    verified = [tuple(s) for s in dyn["verified"]]
    assert {(64, 48), (128, 96), (192, 128)} <= set(verified)
    assert any(w % 8 and h % 8 for w, h in verified), "no size off the stride-8 grid verified"
    assert {tuple(s["size"]) for s in m["parity"]["sizes"]} == set(verified)
    assert ("5 real image(s)" if real else "seeded random") in m["parity"]["inputs"]
    assert m["parity"]["passed"]
    check_target_ops(res.path, "trt8.6")
    model = onnx.load(str(res.path))
    # Shape arithmetic stays (the sizes are dynamic) but no select on shape tensors.
    assert not {"Equal", "Where", "BatchNormalization"} & set(op_counts(res.path))
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    # The file runs at a size and batch it was neither traced nor verified at.
    sess = ort.InferenceSession(str(res.path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"input": np.zeros((3, 3, 77, 101), np.float32)})
    assert out.shape == (3, m["num_classes"], 77, 101)


# ------------------------------------------------------------------------------------------
# targets and opsets


def test_trt82_export_uses_opset_13_and_passes_its_parser(tmp_path):
    res = export_onnx(
        "cityscapes", res=(96, 64), target="trt8.2", output=tmp_path / "n.onnx", quiet=True
    )
    model = onnx.load(str(res.path))
    assert model.opset_import[0].version == 13 and res.manifest["opset"] == 13
    assert model.ir_version == 7  # TensorRT 8.2's parser predates IR 8
    report = check_target_ops(res.path, "trt8.2")
    assert report["opset"] == 13
    assert res.manifest["target_check"]["parser"].startswith("onnx/onnx-tensorrt@")
    assert {n for n in op_counts(res.path)} <= STATIC_OPS


def test_opset_defaults_and_limits():
    assert {n: resolve_opset(n) for n in TARGETS} == {
        "trt8.2": 13,
        "trt8.5": 17,
        "trt8.6": 17,
        "trt10": 17,
        "trt11": 17,
        "onnxruntime": 17,
    }
    assert resolve_opset("trt10", 20) == 20
    with pytest.raises(ConfigError, match=r"opset 14 .*TensorRT 8\.2.*--opset 13"):
        resolve_opset("trt8.2", 14)
    with pytest.raises(ConfigError, match=r"--opset 17"):
        resolve_opset("trt8.6", 9)
    with pytest.raises(ConfigError, match="unknown target"):
        resolve_opset("trt7")


def test_default_output_path_names():
    assert default_output_path("cityscapes", (640, 360)) == Path(
        "models/cifrenet_cityscapes_640x360_fp32.onnx"
    )
    assert default_output_path("camvid", "480x360", "int8", True, "trt8.2") == Path(
        "models/cifrenet_camvid_dynamic_int8_trt8.2.onnx"
    )


def _graph(op: str, name: str, opset: int = 13, domain: str = "", **attrs) -> onnx.ModelProto:
    inp = helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    conv_w = helper.make_tensor("w", TensorProto.FLOAT, [3, 3, 1, 1], np.eye(3).ravel().tolist())
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="ok_conv"),
        helper.make_node(op, ["c"], ["out"], name=name, domain=domain, **attrs),
    ]
    graph = helper.make_graph(nodes, "g", [inp], [out], initializer=[conv_w])
    opsets = [helper.make_opsetid("", opset)]
    if domain:
        opsets.append(helper.make_opsetid(domain, 1))
    return helper.make_model(graph, opset_imports=opsets)


def test_op_the_82_parser_lacks_is_rejected_naming_node_and_op():
    model = _graph("NonZero", "find_nonzero")
    with pytest.raises(UnsupportedOpError, match=r"find_nonzero \(NonZero\)") as err:
        check_target_ops(model, "trt8.2")
    assert "ok_conv" not in str(err.value) and "\n" not in str(err.value)
    assert check_target_ops(model, "trt8.5")["ops"] == {"Conv": 1, "NonZero": 1}  # 8.5 has it


def test_custom_domain_and_unsupported_resize_modes_are_rejected():
    with pytest.raises(UnsupportedOpError, match=r"my_gelu \(com\.microsoft::Gelu"):
        check_target_ops(_graph("Gelu", "my_gelu", domain="com.microsoft"), "trt11")
    cubic = _graph("Resize", "up", mode="cubic")
    with pytest.raises(UnsupportedOpError, match=r"up \(Resize mode=cubic"):
        check_target_ops(cubic, "trt8.6")


def test_packaged_parser_op_lists_equal_the_shared_originals():
    packaged = sorted(p.name for p in PACKAGED_OPS.glob("onnx-parser-ops-*.json"))
    needed = {t.ops_file for t in TARGETS.values() if t.ops_file}
    assert needed <= set(packaged)
    if not SHARED_OPS.is_dir():
        pytest.skip("../shared/trt_api not present (installed package): nothing to compare")
    shared = sorted(p.name for p in SHARED_OPS.glob("onnx-parser-ops-*.json"))
    assert packaged == shared
    for name in shared:
        assert (PACKAGED_OPS / name).read_bytes() == (SHARED_OPS / name).read_bytes(), name


def _expand_graph(wildcard):
    """Expand(g, Where(Equal(sizes, wildcard), 1, sizes)), sizes = [-1, -1, H(x), W(x)]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, "h", "w"])
    g = helper.make_tensor_value_info("g", TensorProto.FLOAT, [1, 2, 1, 1])
    out = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, "h", "w"])
    i64 = TensorProto.INT64
    inits = [
        helper.make_tensor("m1", i64, [2], [-1, -1]),
        helper.make_tensor("i2", i64, [], [2]),
        helper.make_tensor("i3", i64, [], [3]),
        helper.make_tensor("ax", i64, [1], [0]),
        helper.make_tensor("k", i64, [4], wildcard),
        helper.make_tensor("one", i64, [4], [1, 1, 1, 1]),
    ]
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i2"], ["h"]),
        helper.make_node("Gather", ["s", "i3"], ["w"]),
        helper.make_node("Unsqueeze", ["h", "ax"], ["h1"]),
        helper.make_node("Unsqueeze", ["w", "ax"], ["w1"]),
        helper.make_node("Concat", ["m1", "h1", "w1"], ["sizes"], axis=0),
        helper.make_node("Equal", ["sizes", "k"], ["is_wild"]),
        helper.make_node("Where", ["is_wild", "one", "sizes"], ["shape"], name="sel"),
        helper.make_node("Expand", ["g", "shape"], ["y"]),
    ]
    graph = helper.make_graph(nodes, "e", [x, g], [out], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_fold_expand_wildcards_removes_the_select_and_keeps_the_result():
    from cifrenet_edge.export import fold_expand_wildcards

    x = np.zeros((1, 2, 5, 7), np.float32)
    g = np.arange(2, dtype=np.float32).reshape(1, 2, 1, 1)
    model = _expand_graph([-1, -1, -1, -1])
    before = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x, "g": g})[0]
    assert fold_expand_wildcards(model) == 1
    ops = {n.op_type for n in model.graph.node}
    assert not {"Equal", "Where"} & ops and "Expand" in ops
    onnx.checker.check_model(model)
    after = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x, "g": g})[0]
    assert after.shape == (1, 2, 5, 7) and np.array_equal(before, after)
    # A wildcard a real dimension could equal is not decidable from constants: left alone.
    undecidable = _expand_graph([-1, -1, 5, -1])
    assert fold_expand_wildcards(undecidable) == 0
    assert "Where" in {n.op_type for n in undecidable.graph.node}


# ------------------------------------------------------------------------------------------
# parity gate


def test_parity_gate_catches_a_model_that_computes_something_else(small_fp32_onnx):
    with torch.random.fork_rng():
        torch.manual_seed(1)  # the exported file holds the seed-0 weights
        other, _ = build_model("cityscapes")
    frames, source = parity_frames(None)
    with pytest.raises(ParityError, match="argmax agreement"):
        check_parity(small_fp32_onnx, other, [(256, 128)], frames=frames, source=source)


def test_failed_parity_leaves_no_file(tmp_path):
    out = tmp_path / "sub" / "m.onnx"
    with pytest.raises(ParityError, match="not written"):
        export_onnx(res=(64, 48), output=out, quiet=True, min_agreement=1.5)
    assert not out.exists() and not sidecar_path(out).exists()
    assert list((tmp_path / "sub").iterdir()) == []  # no .partial either


def test_parity_frames_use_calib_folder_then_random(tmp_path, monkeypatch, real_images_dir):
    monkeypatch.chdir(tmp_path)
    frames, source = parity_frames(None)
    assert "seeded random" in source and len(frames) == 2
    again, _ = parity_frames(None)
    assert all((a == b).all() for a, b in zip(frames, again))  # seeded: reproducible
    (tmp_path / "calib").mkdir()
    shutil.copy(real_images_dir / "chelsea.jpg", tmp_path / "calib")
    frames, source = parity_frames(None)
    assert source == "1 real image(s) from calib" and frames[0].ndim == 3


def test_parity_frames_reject_a_folder_without_images(tmp_path):
    with pytest.raises(ConfigError, match="holds no images"):
        parity_frames(tmp_path)


# ------------------------------------------------------------------------------------------
# manifest


def test_manifest_round_trips(small_fp32_export, tmp_path):
    src = small_fp32_export.path
    side = json.loads(small_fp32_export.manifest_path.read_text())
    assert side == embedded_manifest(src) == small_fp32_export.manifest
    assert read_manifest(src) == side
    for key in (
        "preset",
        "classes",
        "palette_rgb",
        "mean_bgr",
        "scale",
        "toolkit_version",
        "created",
        "opset",
        "target",
        "parity",
        "weights",
    ):
        assert key in side, key
    assert side["channel_order"] == "BGR" and side["input_layout"] == "NCHW"
    assert len(side["classes"]) == side["num_classes"] == 19
    props = {p.key: p.value for p in onnx.load(str(src)).metadata_props}
    assert props["preset"] == "cityscapes" and props["classes"].startswith("road,sidewalk")
    # Without the sidecar the embedded copy is read.
    lone = tmp_path / "lone.onnx"
    shutil.copy(src, lone)
    assert read_manifest(lone) == side
    broken = dict(side)
    del broken["classes"]
    with pytest.raises(ModelFileError, match="missing classes"):
        check_manifest(broken, lone)
    broken = dict(side, palette_rgb=side["palette_rgb"][:3])
    with pytest.raises(ModelFileError, match="palette"):
        check_manifest(broken, lone)


def test_untrained_export_is_recorded(small_fp32_export):
    w = small_fp32_export.manifest["weights"]
    assert w["trained"] is False and w["sha256"] is None and w["path"] is None


def test_trained_export_records_weights_hash(tmp_path):
    from cifrenet_edge.model.weights import save_checkpoint

    model, _ = build_model("camvid")
    ckpt = save_checkpoint(model, tmp_path / "camvid.pth")
    res = export_onnx("camvid", weights=ckpt, res=(64, 48), output=tmp_path / "c.onnx", quiet=True)
    w = res.manifest["weights"]
    assert w["trained"] is True and w["sha256"] == sha256_file(ckpt)
    assert embedded_manifest(res.path)["weights"] == w
