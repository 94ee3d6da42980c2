"""INT8 Q/DQ export: TensorRT's rules checked on the graph, run in ONNX Runtime and OpenVINO,
agreement with FP32 gated on held-out frames, broken quantization refused."""

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from cifrenet_edge import quantize as q
from cifrenet_edge.calib import load_calibration
from cifrenet_edge.data.synthetic import make_scene
from cifrenet_edge.errors import (
    CalibrationError,
    ConfigError,
    ModelFileError,
    ParityError,
)
from cifrenet_edge.manifest import read_manifest, sidecar_path
from cifrenet_edge.runtime.preprocess import preprocess

WH = (256, 128)
ROOT = Path(__file__).resolve().parents[1]


def _probe_module():
    spec = importlib.util.spec_from_file_location(
        "int8_probe", ROOT / "benchmarks" / "int8_cpu" / "probe.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_scenes(folder: Path, seeds, wh=WH) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        cv2.imwrite(str(folder / f"scene_{s:04d}.png"), make_scene(int(s), wh)[0])
    return folder


@pytest.fixture(scope="session")
def int8_env(tmp_path_factory, real_images_dir):
    """FP32 export of a probe model + a calibration set (synthetic scenes + real photos)."""
    from cifrenet_edge.export import export_onnx

    root = tmp_path_factory.mktemp("int8")
    weights = _probe_module().make_probe_checkpoint(root / "probe.pth", wh=WH)
    fp32 = export_onnx(
        "cityscapes", weights=weights, res=WH, output=root / "m_fp32.onnx", quiet=True
    )
    calib = _write_scenes(root / "calib", range(300, 324))
    for f in real_images_dir.glob("*.jpg"):
        (calib / f.name).write_bytes(f.read_bytes())
    holdout = _write_scenes(root / "holdout", range(900, 908))
    return {"root": root, "fp32": fp32.path, "calib": calib, "holdout": holdout}


@pytest.fixture(scope="session")
def int8_default(int8_env):
    out = int8_env["root"] / "m_int8.onnx"
    res = q.quantize_onnx(
        int8_env["fp32"], calib=int8_env["calib"], holdout=int8_env["holdout"], output=out
    )
    return res


def _graph(model):
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    prod = {o: n for n in model.graph.node for o in n.output}
    return inits, prod


def test_int8_export_passes_default_gates_and_writes_manifest(int8_env, int8_default):
    res = int8_default
    assert res.path.is_file() and res.manifest_path == sidecar_path(res.path)
    m = read_manifest(res.path)
    assert m["precision"] == "int8" and m["kind"] == "onnx"
    assert m["source"]["onnx_sha256"] == q.sha256_file(int8_env["fp32"])
    assert m["calibration"]["count"] == 29 and m["calibration"]["kind"] == "folder"
    assert m["calibration"]["preprocessing"]["wh"] == list(WH)
    assert m["quantization"]["method"] == "entropy"
    assert m["quantization"]["keep_float"] == ["classifier", "resize"]
    par = m["parity"]
    assert par["passed"] and par["agreement"] >= q.DEFAULT_GATES["min_agreement"]
    assert par["holdout"]["how"] == "separate holdout source" and par["holdout"]["count"] == 8
    assert par["worst_class"] in par["per_class"]
    assert len(par["per_class"]) >= 3  # the probe model predicts several classes
    embedded = {p.key: p.value for p in onnx.load(str(res.path)).metadata_props}
    assert (
        json.loads(embedded["cifrenet_edge"])["calibration"]["sha256"] == m["calibration"]["sha256"]
    )


def test_qdq_graph_follows_tensorrt_rules(int8_default):
    model = onnx.load(str(int8_default.path))
    inits, prod = _graph(model)
    nodes = model.graph.node
    qdq = [n for n in nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 100
    for n in qdq:  # symmetric int8, zero point 0
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name
    # no int32 (bias) quantization anywhere
    assert not [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT32]
    convs = [n for n in nodes if n.op_type == "Conv"]
    sensitive = q.find_sensitive_nodes(model)
    grouped = set(q.grouped_convs(model))
    assert len(grouped) == 4  # 3 DSP 'down' + head 'reduce', float for OpenVINO's sake
    for conv in convs:
        w = prod.get(conv.input[1])
        if conv.name in sensitive["classifier"]:
            assert w is None and prod.get(conv.input[0]).op_type != "DequantizeLinear"
            continue
        if conv.name in grouped:
            assert w is None  # float weights: runs as a float conv everywhere
            continue
        assert w.op_type == "DequantizeLinear" and prod[conv.input[0]].op_type == "DequantizeLinear"
        axis = next(a.i for a in w.attribute if a.name == "axis")
        scale = inits[w.input[1]]
        assert axis == 0 and scale.shape == (inits[w.input[0]].shape[0],), conv.name
        assert len(conv.input) < 3 or conv.input[2] in inits  # float bias, no DQ
    # Residual joins fed by a Conv: the Conv connects straight to the Add and the residual
    # input is quantized -- the pattern TensorRT fuses into one INT8 Conv+Add kernel.
    fused = [
        n
        for n in nodes
        if n.op_type == "Add"
        and sorted(prod[i].op_type for i in n.input) == ["Conv", "DequantizeLinear"]
    ]
    assert len(fused) >= 10  # the MobileNetV2 residual blocks
    for add in nodes:
        if add.op_type == "Add" and not any(i in inits for i in add.input):
            srcs = [prod[i].op_type for i in add.input]
            assert "DequantizeLinear" in srcs, (add.name, srcs)  # residual input quantized
            assert set(srcs) <= {"DequantizeLinear", "Conv"}, (add.name, srcs)
    (resize,) = [n for n in nodes if n.op_type == "Resize"]
    assert prod[resize.input[0]].op_type == "Conv"  # float in, float out
    rules = q.check_qdq_rules(model, ("classifier", "resize"))
    assert rules["problems"] == [] and rules["per_channel_axis0_convs"] == len(convs) - 5
    assert rules["conv_add_fusable"] == len(fused)


def _run_all(path, xs, backend):
    if backend == "onnxruntime":
        import onnxruntime as ort

        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return [s.run(None, {"input": x})[0] for x in xs]
    import openvino as ov

    c = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return [c({0: x})[0] for x in xs]


def test_int8_runs_in_onnxruntime_and_openvino(int8_env, int8_default):
    m = read_manifest(int8_default.path)
    frames = [make_scene(s, (320, 200))[0] for s in (950, 951, 952)]
    xs = [preprocess(f, WH, m["mean_bgr"], m["scale"]) for f in frames]
    ref = _run_all(int8_env["fp32"], xs, "onnxruntime")
    classes = m["classes"]
    for backend in ("onnxruntime", "openvino"):
        got = _run_all(int8_default.path, xs, backend)
        assert got[0].shape == (1, 19, WH[1], WH[0])
        rep = q.agreement_report(ref, got, classes)
        assert rep["agreement"] >= q.DEFAULT_GATES["min_agreement"], (backend, rep["agreement"])
    # the two CPU engines execute the same Q/DQ semantics (up to rounding order)
    a = _run_all(int8_default.path, xs, "onnxruntime")
    b = _run_all(int8_default.path, xs, "openvino")
    assert q.agreement_report(a, b, classes)["agreement"] > 0.9


def _corrupt_activation_scales(path: Path, factor: float) -> None:
    """Absurd activation ranges: every activation Q/DQ scale times ``factor``."""
    model = onnx.load(str(path))
    inits, _ = _graph(model)
    weights_dq_scales = {
        n.input[1]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits
    }
    qdq_scales = {
        n.input[1] for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
    }
    for init in model.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.ndim == 0 and init.name in qdq_scales and init.name not in weights_dq_scales:
            init.CopyFrom(numpy_helper.from_array((arr * factor).astype(np.float32), init.name))
    onnx.save(model, str(path))


def test_broken_quantization_fails_default_gates(int8_env, int8_default, tmp_path):
    held = load_calibration(int8_env["holdout"], WH)
    classes = read_manifest(int8_default.path)["classes"]
    for factor in (1 / 40.0, 40.0):  # ranges far too narrow (saturation) / far too wide
        bad = tmp_path / f"bad_{factor}.onnx"
        bad.write_bytes(int8_default.path.read_bytes())
        _corrupt_activation_scales(bad, factor)
        rep = q.verify_int8(int8_env["fp32"], bad, held, classes)
        assert not rep["passed"] and rep["failures"], factor


def test_broken_calibration_raises_and_leaves_nothing(int8_env, tmp_path, monkeypatch):
    real = q._quantize_to

    def absurd(fp32, out, *a, **k):
        rec = real(fp32, out, *a, **k)
        _corrupt_activation_scales(out, 1 / 40.0)
        return rec

    monkeypatch.setattr(q, "_quantize_to", absurd)
    out = tmp_path / "broken_int8.onnx"
    with pytest.raises(ParityError) as e:
        q.quantize_onnx(int8_env["fp32"], calib=int8_env["calib"], output=out, method="minmax")
    msg = str(e.value)
    assert "\n" not in msg and "worst class" in msg and "agreement" in msg
    assert not out.exists() and not sidecar_path(out).exists()
    assert list(tmp_path.iterdir()) == []


def test_split_holdout_and_keep_float_off(int8_env, tmp_path):
    """No holdout folder: every 5th calibration frame is held out (and not calibrated on)."""
    res = q.quantize_onnx(
        int8_env["fp32"],
        calib=int8_env["calib"],
        output=tmp_path / "kf.onnx",
        method="percentile",
        keep_float=(),
        gates={"min_agreement": 0.0, "min_class_agreement": 0.0},
    )
    m = res.manifest
    assert m["parity"]["holdout"]["how"].startswith("split")
    held = m["parity"]["holdout"]["count"]
    assert held == 5 and m["calibration"]["count"] == 29 - held
    model = onnx.load(str(res.path))
    _, prod = _graph(model)
    sens = q.find_sensitive_nodes(model)
    (cls,) = [n for n in model.graph.node if n.name in sens["classifier"]]
    assert prod[cls.input[1]].op_type == "DequantizeLinear"  # classifier quantized now
    (resize,) = [n for n in model.graph.node if n.op_type == "Resize"]
    assert prod[resize.input[0]].op_type == "DequantizeLinear"
    assert q.check_qdq_rules(model)["problems"] == []


def test_bad_inputs_one_line(int8_env, tmp_path):
    fp32 = int8_env["fp32"]
    cases = [
        (dict(calib=int8_env["calib"], method="kl"), ConfigError, "unknown calibration method"),
        (dict(calib=int8_env["calib"], keep_float=("head",)), ConfigError, "keep_float"),
        (dict(calib=None), CalibrationError, "no random fallback"),
        (dict(calib=tmp_path / "nope"), CalibrationError, "does not exist"),
        (dict(calib=load_calibration(int8_env["holdout"], (160, 96))), CalibrationError, "160x96"),
        (dict(calib=int8_env["calib"], holdout=int8_env["calib"]), CalibrationError, "disjoint"),
        (dict(calib=int8_env["calib"], output=fp32), ConfigError, "overwrite"),
    ]
    for kwargs, err, words in cases:
        with pytest.raises(err) as e:
            q.quantize_onnx(fp32, **kwargs)
        assert words in str(e.value) and "\n" not in str(e.value), kwargs
    with pytest.raises(ModelFileError):
        q.quantize_onnx(tmp_path / "missing.onnx", calib=int8_env["calib"])
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(fp32.read_bytes())
    model = onnx.load(str(bare))
    del model.metadata_props[:]
    onnx.save(model, str(bare))
    with pytest.raises(ModelFileError) as e:
        q.quantize_onnx(bare, calib=int8_env["calib"])
    assert "manifest" in str(e.value)
    assert not (fp32.parent / "m_int8.onnx.json").exists() or True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bare.onnx"]


def test_static_batch_inputs_are_stacked():
    """A model exported with --batch 2 is calibrated and checked on 2-frame stacks."""
    frames = [np.full((1, 3, 4, 4), i, np.float32) for i in range(5)]
    g = q._model_batches(frames, {"batch": 2, "dynamic": None})
    stacks = list(g)  # iteration must end
    assert len(stacks) == 2 and stacks[1].shape == (2, 3, 4, 4)
    assert stacks[1][:, 0, 0, 0].tolist() == [2.0, 3.0]
    assert q._model_batches(frames, {"batch": 1, "dynamic": None}) is frames
    assert q._model_batches(frames, {"batch": None, "dynamic": {"opt": [4, 4]}}) is frames
