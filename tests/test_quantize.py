"""INT8 Q/DQ export: TensorRT's rules checked on the graph, the gate judged on the file's own
arithmetic (Q/DQ evaluated in float, the same on every CPU), the 7-bit CPU variant and this
CPU's own INT8 path recorded apart, broken quantization refused."""

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import INT8_WH as WH
from onnx import numpy_helper
from thresholds import check

from cifrenet_edge import quantize as q
from cifrenet_edge._io import sha256_file
from cifrenet_edge.data.calibration import load_calibration
from cifrenet_edge.errors import (
    CalibrationError,
    ConfigError,
    ModelFileError,
    ParityError,
)
from cifrenet_edge.manifest import read_manifest, sidecar_path
from cifrenet_edge.quantize import int8 as qpipe


def _graph(model):
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    prod = {o: n for n in model.graph.node for o in n.output}
    return inits, prod


def test_int8_export_passes_default_gates_and_writes_manifest(int8_env, int8_default):
    res = int8_default
    assert res.path.is_file() and res.manifest_path == sidecar_path(res.path)
    m = read_manifest(res.path)
    assert m["precision"] == "int8" and m["kind"] == "onnx"
    assert m["source"]["onnx_sha256"] == sha256_file(int8_env["fp32"])
    assert m["calibration"]["count"] == 29 and m["calibration"]["kind"] == "folder"
    assert m["calibration"]["preprocessing"]["wh"] == list(WH)
    assert m["quantization"]["method"] == "entropy"
    assert m["quantization"]["keep_float"] == ["classifier", "resize"]
    assert m["quantization"]["weight_form"] == "float->Q->DQ"
    assert m["quantization"]["float_parts"]["float_parts"] == "fp32"  # trt8.6: builder's FP16
    par = m["parity"]
    assert par["passed"] and par["agreement"] >= q.DEFAULT_GATES["min_agreement"]
    assert par["reference"] == q.REFERENCE and "disable_quant_qdq" in par["reference"]
    w7 = par["variants"]["weights_7bit"]
    assert w7["passed"] and 0.85 < w7["agreement"] <= par["agreement"] + 0.01
    cpu = par["this_cpu"]  # informational: which path this CPU takes, and how well
    assert cpu["backend"] in ("openvino", "onnxruntime", None) and "probe" in cpu
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
    users = {}
    for n in nodes:
        for i in n.input:
            users.setdefault(i, []).append(n)
    qdq = [n for n in nodes if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 100
    for n in qdq:  # symmetric int8, zero point 0
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any(), n.name
    # no int32 (bias) quantization, no int8 weight initializer (TensorRT 8.x refuses them)
    dtypes = {i.name: i.data_type for i in model.graph.initializer}
    assert onnx.TensorProto.INT32 not in dtypes.values()
    assert onnx.TensorProto.INT8 not in {
        dtypes.get(n.input[0]) for n in nodes if n.op_type == "DequantizeLinear"
    }
    # every DequantizeLinear has one consumer (dedicated pairs)
    shared = [
        n.name for n in nodes if n.op_type == "DequantizeLinear" and len(users[n.output[0]]) > 1
    ]
    assert shared == []
    # no Conv output quantized before its activation (Conv -> Q/DQ -> Clip/PRelu/Relu)
    for qn in (n for n in nodes if n.op_type == "QuantizeLinear"):
        src = prod.get(qn.input[0])
        if src is not None and src.op_type == "Conv":
            after = {c.op_type for d in users[qn.output[0]] for c in users.get(d.output[0], [])}
            assert after <= {"Conv", "Add", "GlobalAveragePool", "Concat"}, (src.name, after)
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
        wq = prod[w.input[0]]  # float weight -> Q -> DQ
        assert wq.op_type == "QuantizeLinear" and inits[wq.input[0]].dtype == np.float32
        axis = next(a.i for a in w.attribute if a.name == "axis")
        scale = inits[w.input[1]]
        assert axis == 0 and scale.shape == (inits[wq.input[0]].shape[0],), conv.name
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
    assert rules["conv_add_fusable"] == len(fused) and rules["int8_weight_initializers"] == 0


def _int8_weight_initializers(model) -> None:
    """The form TensorRT 8.x refuses: float weight -> Q replaced by an int8 initializer."""
    inits, _ = _graph(model)
    for n in [n for n in model.graph.node if n.op_type == "QuantizeLinear"]:
        if n.input[0] not in inits or inits[n.input[0]].ndim != 4:
            continue
        w, s = inits[n.input[0]], inits[n.input[1]]
        w8 = np.clip(np.rint(w / s.reshape(-1, 1, 1, 1)), -127, 127).astype(np.int8)
        model.graph.initializer.append(numpy_helper.from_array(w8, n.output[0]))
        model.graph.node.remove(n)


def _output_quantized_conv(model) -> str:
    """Put a Q/DQ pair between the first Conv -> Clip: the placement TensorRT cannot fuse."""
    users = {}
    for n in model.graph.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    conv = next(
        n
        for n in model.graph.node
        if n.op_type == "Conv" and [u.op_type for u in users[n.output[0]]] == ["Clip"]
    )
    (clip,) = users[conv.output[0]]
    scale = numpy_helper.from_array(np.array(0.05, np.float32), "t_scale")
    zp = numpy_helper.from_array(np.array(0, np.int8), "t_zp")
    model.graph.initializer.extend([scale, zp])
    qn = onnx.helper.make_node("QuantizeLinear", [conv.output[0], "t_scale", "t_zp"], ["t_q"])
    dq = onnx.helper.make_node("DequantizeLinear", ["t_q", "t_scale", "t_zp"], ["t_dq"])
    model.graph.node.extend([qn, dq])
    clip.input[0] = "t_dq"
    return conv.name


def test_qdq_rules_catch_each_tensorrt_problem(int8_default):
    """Each rule fires on a graph made to break it (and only then)."""
    base = onnx.load(str(int8_default.path))
    model = onnx.ModelProto()
    model.CopyFrom(base)
    _int8_weight_initializers(model)
    rules = q.check_qdq_rules(model)
    assert rules["int8_weight_initializers"] == rules["quantized_convs"] > 0
    assert any("int8 weight initializer" in p for p in rules["problems"])
    model.CopyFrom(base)
    name = _output_quantized_conv(model)
    problems = q.check_qdq_rules(model)["problems"]
    assert problems == [
        f"{name}: output quantized before Clip (quantize the inputs of weighted "
        "ops, not their outputs)"
    ]
    model.CopyFrom(base)  # a DequantizeLinear shared by two consumers
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and "_d1" in n.name)
    twin = next(n for n in model.graph.node if n.name == dq.name[: -len("_d1")])
    for n in model.graph.node:
        for i, name in enumerate(n.input):
            if name == dq.output[0]:
                n.input[i] = twin.output[0]
    problems = q.check_qdq_rules(model)["problems"]
    assert any("shared by several consumers" in p for p in problems), problems
    assert q.dedicate_qdq_pairs(model) >= 1 and q.check_qdq_rules(model)["problems"] == []


def _held(int8_env):
    m = read_manifest(int8_env["fp32"])
    return load_calibration(int8_env["holdout"], WH, mean_bgr=m["mean_bgr"], scale=m["scale"])


def test_gate_judges_the_files_own_arithmetic(int8_env, int8_default):
    """The reference runs Q/DQ as float ops: its logits equal a fake-quant done by hand."""
    from cifrenet_edge.quantize.verify import session

    model = onnx.load(str(int8_default.path))
    x = _held(int8_env).batches[0]
    ref = session(int8_default.path, float_qdq=True).run(None, {"input": x})[0]
    # the same arithmetic spelled out: every Q/DQ pair as round/clip/scale in float ops
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear":
            n.op_type, n.domain = "Identity", ""
            del n.input[1:]
            del n.attribute[:]
    for n in model.graph.node:
        if n.op_type == "DequantizeLinear":
            scale, axis = n.input[1], next((a.i for a in n.attribute if a.name == "axis"), 1)
            del n.attribute[:]
            n.op_type = "Identity"
            del n.input[1:]
            _fake_quant_after(model, n, scale, axis)
    manual = session(model.SerializeToString()).run(None, {"input": x})[0]
    rel = np.abs(ref - manual).max() / np.abs(ref).max()
    assert check("quantize.float_qdq_vs_manual_fakequant", rel, "<", 1e-3, 0.0)


def _fake_quant_after(model, node, scale: str, axis: int) -> None:
    """Replace ``node``'s output by clip(round(x / s), -128, 127) * s (float ops)."""
    h = onnx.helper
    inits, _ = _graph(model)
    s = inits[scale]
    shape = [1] * 4
    if s.ndim:
        shape[axis] = -1
    sname = f"{node.name}_fq_s"
    model.graph.initializer.append(numpy_helper.from_array(s.reshape(shape), sname))
    lo = numpy_helper.from_array(np.array(-128, np.float32), f"{node.name}_fq_lo")
    hi = numpy_helper.from_array(np.array(127, np.float32), f"{node.name}_fq_hi")
    model.graph.initializer.extend([lo, hi])
    out = node.output[0]
    raw = f"{out}_raw"
    node.output[0] = raw
    model.graph.node.extend(
        [
            h.make_node("Div", [raw, sname], [f"{out}_d"]),
            h.make_node("Round", [f"{out}_d"], [f"{out}_r"]),
            h.make_node("Clip", [f"{out}_r", lo.name, hi.name], [f"{out}_c"]),
            h.make_node("Mul", [f"{out}_c", sname], [out]),
        ]
    )
    nodes = list(model.graph.node)
    order = _toposort(nodes)
    del model.graph.node[:]
    model.graph.node.extend(order)


def _toposort(nodes):
    produced = {o: n for n in nodes for o in n.output}
    done, out = set(), []

    def visit(n):
        if id(n) in done:
            return
        done.add(id(n))
        for i in n.input:
            if i in produced:
                visit(produced[i])
        out.append(n)

    for n in nodes:
        visit(n)
    return out


def _corrupt_activation_scales(path: Path, factor: float) -> None:
    """Absurd activation ranges: every activation Q/DQ scale times ``factor``."""
    model = onnx.load(str(path))
    inits, _ = _graph(model)
    weights_dq_scales = {
        n.input[1]
        for n in model.graph.node
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] in inits
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
    real = qpipe.quantize_to

    def absurd(fp32, out, *a, **k):
        rec = real(fp32, out, *a, **k)
        _corrupt_activation_scales(out, 1 / 40.0)
        return rec

    monkeypatch.setattr(qpipe, "quantize_to", absurd)
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
    assert prod[resize.input[0]].op_type == "Conv"  # no output quantization, so float
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
    g = q.model_batches(frames, 2)
    stacks = list(g)  # iteration must end
    assert len(stacks) == 2 and stacks[1].shape == (2, 3, 4, 4)
    assert stacks[1][:, 0, 0, 0].tolist() == [2.0, 3.0]
    assert q.model_batches(frames, 1) is frames
    assert q.model_batches(frames) is frames
