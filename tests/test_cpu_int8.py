"""INT8 on a CPU only where it is accurate, whatever CPU CI lands on.

Both kinds of CPU are covered on any machine: the probe is forced (``CIFRENET_EDGE_INT8_DOT``)
for the decision logic, and oneDNN's ISA cap (``ONEDNN_MAX_CPU_ISA=AVX2``, obeyed by
OpenVINO's CPU plugin) makes an AVX-512 VNNI Xeon execute int8 exactly as an AVX2-only
CPU does, saturation included -- on an AVX2-only CPU the cap changes nothing. The
subprocess test below is the end-to-end check that catches that saturation.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from conftest import INT8_WH as WH
from conftest import PROBE_GATES
from support.trt_standin import _manifest as full_manifest
from thresholds import check

from cifrenet_edge import Segmenter
from cifrenet_edge import quantize as q
from cifrenet_edge.data.calibration import load_calibration
from cifrenet_edge.errors import BackendUnavailableError, ConfigError
from cifrenet_edge.manifest import read_manifest, write_manifest
from cifrenet_edge.runtime.cpu_int8 import (
    FORCE_ENV,
    W7_QMAX,
    Int8Support,
    int8_support,
    plan_cpu_int8,
    weights_7bit,
)

VNNI = Int8Support(True, "avx512_vnni", ("avx512_vnni",), "x86_64")
AVX2 = Int8Support(False, "AVX2-only x86 CPU", (), "x86_64")


# --------------------------------------------------------------------------- the probe


def test_probe_reads_each_kind_of_cpu(monkeypatch):
    for var in (FORCE_ENV, "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(var, raising=False)
    x86 = ("sse4_2", "avx", "avx2", "fma")
    assert not int8_support(flags=x86, arch="x86_64").dot_product
    assert "AVX2-only" in int8_support(flags=x86, arch="x86_64").reason
    for flag in ("avx512_vnni", "avx_vnni", "amx_int8"):
        sup = int8_support(flags=(*x86, flag), arch="x86_64")
        assert sup.dot_product and flag in sup.reason
    assert int8_support(flags=("fp", "asimd", "asimddp"), arch="aarch64").dot_product
    assert not int8_support(flags=("fp", "asimd"), arch="aarch64").dot_product
    # oneDNN capped below VNNI runs int8 without the dot product, whatever the flags say
    vnni = (*x86, "avx512_vnni")
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    sup = int8_support(flags=vnni, arch="x86_64")
    assert not sup.dot_product and "capped at AVX2" in sup.reason
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx512_core_vnni")
    assert int8_support(flags=vnni, arch="x86_64").dot_product


def test_probe_can_be_forced_both_ways(monkeypatch):
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    vnni, avx2 = ("avx2", "avx512_vnni"), ("avx2",)
    monkeypatch.setenv(FORCE_ENV, "0")
    sup = int8_support(flags=vnni, arch="x86_64")
    assert not sup.dot_product and FORCE_ENV in sup.reason
    monkeypatch.setenv(FORCE_ENV, "1")
    assert int8_support(flags=avx2, arch="x86_64").dot_product
    monkeypatch.setenv(FORCE_ENV, "auto")
    assert not int8_support(flags=avx2, arch="x86_64").dot_product
    assert int8_support(force=True, flags=avx2, arch="x86_64").dot_product  # argument first
    monkeypatch.setenv(FORCE_ENV, "maybe")
    with pytest.raises(ConfigError) as e:
        int8_support(flags=vnni, arch="x86_64")
    assert FORCE_ENV in str(e.value) and "\n" not in str(e.value)


def test_pair_bounded_weights_cannot_overflow_a_16_bit_pair_sum():
    from cifrenet_edge.runtime.cpu_int8 import PAIR_CODE_SUM_MAX, weights_pair_bounded

    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.1, (16, 8, 3, 3)).astype(np.float32)
    w[3] *= 40
    w[5, 0, 0, 0] = 3.0  # one outlier: its channel keeps ~8 bits for the rest
    q, scale = weights_pair_bounded(w)
    flat = q.reshape(16, -1).astype(np.int32)
    for sign in (1, -1):
        top2 = -np.sort(-np.maximum(sign * flat, 0), axis=1)[:, :2].sum(axis=1)
        assert top2.max() <= PAIR_CODE_SUM_MAX
    assert 255 * PAIR_CODE_SUM_MAX <= 2**15 - 1
    _, s7 = weights_7bit(w, axis=0)
    assert np.all(scale <= s7) and scale[5] < 0.6 * s7[5]  # never coarser than 7-bit
    assert np.abs(q * scale - w).max() <= scale.max() / 2 + 1e-6


def test_seven_bit_weights_cannot_overflow_a_16_bit_pair_sum():
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.1, (16, 8, 3, 3)).astype(np.float32)
    w[3] *= 40  # channels of very different ranges: per-channel scales
    q7, scale = weights_7bit(w, axis=0)
    assert q7.dtype == np.int8 and np.abs(q7).max() == W7_QMAX
    assert scale.shape == (16, 1, 1, 1)
    assert np.abs(q7 * scale - w).max() <= scale.max() / 2 + 1e-7
    worst_pair = 2 * 255 * int(np.abs(q7).max())  # u8 activation x weight, summed in pairs
    assert worst_pair <= 2**15 - 1 < 2 * 255 * 127


# --------------------------------------------------------------------------- the rule


def _manifest(w7_passed=True, u8_passed=None):
    rec = {"agreement": 0.92, "passed": w7_passed, "failures": [] if w7_passed else ["x < y"]}
    variants = {"weights_7bit": rec}
    if u8_passed is not None:
        variants["u8_inputs"] = {"agreement": 0.93, "passed": u8_passed, "failures": []}
    return dict(
        full_manifest("int8"),
        source={"onnx": "/nowhere/m_fp32.onnx"},
        parity={"variants": variants},
    )


def test_plan_prefers_the_u8_inputs_variant_without_a_dot_product():
    plan = plan_cpu_int8("m.onnx", _manifest(u8_passed=True), AVX2, True, True)
    assert plan[:2] == ("openvino", 7) and plan.variant == "u8_inputs"
    assert "u8 inputs" in plan.reason and "0.930" in plan.reason
    failed = plan_cpu_int8("m.onnx", _manifest(u8_passed=False), AVX2, True, True)
    assert failed.variant == "weights_7bit"  # the older variant still runs when it passed
    assert plan_cpu_int8("m.onnx", _manifest(u8_passed=True), VNNI, True, True).variant == "file"
    both = plan_cpu_int8("m.onnx", _manifest(False, u8_passed=False), AVX2, True, True)
    assert both.backend is None and "failed the export's gate" in both.reason


def test_plan_runs_int8_only_where_it_is_accurate():
    m = _manifest()
    assert plan_cpu_int8("m.onnx", m, VNNI, True, True)[:2] == ("openvino", 8)
    assert plan_cpu_int8("m.onnx", m, VNNI, False, True)[:2] == ("onnxruntime", 8)
    assert plan_cpu_int8("m.onnx", m, AVX2, True, True)[:2] == ("openvino", 7)
    assert "7-bit" in plan_cpu_int8("m.onnx", m, AVX2, True, True).reason
    refusals = [
        plan_cpu_int8("m.onnx", m, AVX2, False, True),  # no OpenVINO: ORT would saturate
        plan_cpu_int8("m.onnx", m, AVX2, True, True, backend="onnxruntime"),
        plan_cpu_int8("m.onnx", _manifest(False), AVX2, True, True),  # 7-bit failed the gate
        plan_cpu_int8("m.onnx", dict(m, parity={}), AVX2, True, True),  # never verified
        plan_cpu_int8("m.onnx", m, AVX2._replace(arch="aarch64"), True, True),
    ]
    for plan in refusals:
        assert plan.backend is None
        assert "saturate" in plan.reason and "m_fp32.onnx" in plan.reason
        assert "\n" not in plan.reason
    assert "failed the export's gate (x < y)" in refusals[2].reason


# --------------------------------------------------------------------------- the runtime


def _held_inputs(int8_env):
    m = read_manifest(int8_env["fp32"])
    held = load_calibration(int8_env["holdout"], WH, mean_bgr=m["mean_bgr"], scale=m["scale"])
    return list(held.batches)


def _without_variant(int8_default, tmp_path, name):
    """A copy of the INT8 file whose manifest lacks CPU variant ``name`` (an older export)."""
    old = tmp_path / f"no_{name}_int8.onnx"
    old.write_bytes(int8_default.path.read_bytes())
    m = dict(read_manifest(int8_default.path))
    parity = dict(m["parity"])
    parity["variants"] = {k: v for k, v in parity["variants"].items() if k != name}
    m["parity"] = parity
    write_manifest(old, m)
    return old


def test_runtime_without_dot_product_runs_the_verified_7bit_variant(
    int8_env, int8_default, monkeypatch, tmp_path
):
    """OpenVINO's in-place 7-bit rewrite computes what the export verified (ORT, in float)."""
    from cifrenet_edge.quantize.verify import session

    monkeypatch.setenv(FORCE_ENV, "0")
    with Segmenter.open(_without_variant(int8_default, tmp_path, "u8_inputs")) as seg:
        assert seg.backend.name == "openvino" and "7-bit" in seg.reason
        assert seg.backend.describe()["int8_weight_bits"] == 7
        xs = _held_inputs(int8_env)
        got = [seg.backend.infer(x) for x in xs]
    variant = onnx.load(str(int8_default.path))
    assert q.seven_bit_weights(variant) == 84
    verified = session(variant.SerializeToString(), float_qdq=True)
    want = [verified.run(None, {"input": x})[0] for x in xs]
    # int8 kernels vs float evaluation of the same file: ~28 dB logit SNR here; the 8-bit
    # file against the 7-bit one: ~16 dB. So this tells the two weight widths apart.
    match = q.agreement_report(want, got, int8_default.manifest["classes"])
    assert check("cpu_int8.w7_kernels_vs_float.agreement", match["agreement"], ">", 0.95, 1.0)
    assert check("cpu_int8.w7_kernels_vs_float.snr_db", match["logits_snr_db"], ">", 22), match
    rec = int8_default.manifest["parity"]["variants"]["weights_7bit"]
    fp32 = session(int8_env["fp32"])
    ref = [fp32.run(None, {"input": x})[0] for x in xs]
    measured = q.agreement_report(ref, got, int8_default.manifest["classes"])["agreement"]
    # the record describes what runs
    assert check("cpu_int8.w7_record_vs_run", abs(measured - rec["agreement"]), "<", 0.01, 0.0)


def test_runtime_with_dot_product_runs_8bit_weights(int8_default, monkeypatch):
    monkeypatch.setenv(FORCE_ENV, "1")
    with Segmenter.open(int8_default.path) as seg:
        assert seg.backend.name == "openvino" and "dot product" in seg.reason
        assert seg.backend.describe()["int8_weight_bits"] == 8


# --------------------------------------------------------------------------- u8 inputs


def _u8_pairs(model):
    """(Clip, QuantizeLinear) of every u8 activation pair of a derived variant."""
    from cifrenet_edge.quantize.graph import producers

    prod = producers(model.graph)
    pairs = []
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] in prod:
            clip = prod[n.input[0]]
            if clip.op_type == "Clip" and clip.name == f"{n.name}_u8":
                pairs.append((clip, n))
    return pairs


def test_u8_inputs_variant_is_saturation_free_by_construction(int8_env, int8_default):
    """Every conv whose input may be negative has pair-bounded weights; every u8 tensor >= 0."""

    from cifrenet_edge.quantize.graph import (
        _weight_of,
        conv_input_kinds,
        initializers,
        producers,
        u8_inputs_variant,
    )
    from cifrenet_edge.quantize.verify import session

    model = onnx.load(str(int8_default.path))
    kinds = conv_input_kinds(model)
    counts = u8_inputs_variant(model)
    assert counts == int8_default.manifest["parity"]["variants"]["u8_inputs"]["convs"]
    assert counts["u8"] >= 30 and counts["pairs"] >= 30 and counts["float"] == 1
    graph = model.graph
    prod, values = producers(graph), initializers(graph)
    for conv in (n for n in graph.node if kinds.get(n.name) == "pairs"):
        w_dq, w, _ = _weight_of(conv, values, prod)
        scale = values[w_dq.input[1]].reshape(-1, *([1] * (w.ndim - 1)))
        codes = np.clip(np.rint(w / scale), -127, 127).reshape(w.shape[0], -1)
        for sign in (1, -1):  # any two same-sign products of u8 <= 255 stay < 2**15
            top = -np.sort(-np.maximum(sign * codes, 0), axis=1)[:, :2].sum(axis=1)
            assert 255 * top.max() <= 2**15 - 1, conv.name
        assert 255 * np.abs(codes).max() <= 2**15 - 1  # opposite signs: one product at most
    for conv in (n for n in graph.node if kinds.get(n.name) == "u8"):  # 8-bit, u8 <= 127
        w_dq, w, _ = _weight_of(conv, values, prod)
        assert 2 * 127 * 127 <= 2**15 - 1 and prod[conv.input[1]].op_type == "DequantizeLinear"
    pairs = _u8_pairs(model)
    assert len(pairs) == counts["u8"]
    for clip, qn in pairs:
        zp = values[qn.input[2]]
        assert zp.dtype == np.uint8 and not zp.any()
        low, high = (float(values[i]) for i in clip.input[1:3])
        assert low == 0.0 and high <= 127 * float(values[qn.input[1]]) * (1 + 1e-6)
    # the proof is about the graph; check it on data too: every clipped tensor is >= 0
    probe = onnx.load(str(int8_default.path))
    outs = sorted({clip.input[0] for clip, _ in pairs})
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(o) for o in outs)
    sess = session(probe.SerializeToString(), float_qdq=True)
    for x in _held_inputs(int8_env)[:3]:
        got = sess.run(outs, {"input": x})
        assert min(float(t.min()) for t in got) >= 0.0


def test_u8_inputs_variant_is_the_file_where_inputs_are_non_negative(int8_env, int8_default):
    """The u8 rewrite alone is exact; the whole variant keeps the file's class maps."""
    from cifrenet_edge.quantize.verify import session

    xs = _held_inputs(int8_env)
    model = onnx.load(str(int8_default.path))
    file = session(model.SerializeToString(), float_qdq=True)
    want = [file.run(None, {"input": x})[0] for x in xs]
    variant = onnx.load(str(int8_default.path))
    q.u8_inputs_variant(variant)
    derived = session(variant.SerializeToString(), float_qdq=True)
    got = [derived.run(None, {"input": x})[0] for x in xs]
    match = q.agreement_report(want, got, int8_default.manifest["classes"])
    # measured 0.954 (AVX-512 and the AVX2 cap alike: ORT's float path; the 7-bit weights of
    # the convs whose input may be negative): bound 0.94, 4.6 % of a 6 % disagreement budget
    assert check("cpu_int8.u8_variant_vs_file_float", match["agreement"], ">=", 0.94, 1.0), match


def test_runtime_without_dot_product_runs_the_u8_inputs_variant(
    int8_env, int8_default, monkeypatch
):
    """OpenVINO derives the variant the export verified and computes what it computes."""
    from cifrenet_edge.quantize.verify import session

    monkeypatch.setenv(FORCE_ENV, "0")
    with Segmenter.open(int8_default.path) as seg:
        assert seg.backend.name == "openvino" and "u8 inputs" in seg.reason
        assert seg.backend.describe()["int8_variant"] == "u8_inputs"
        xs = _held_inputs(int8_env)
        got = [seg.backend.infer(x) for x in xs]
    variant = onnx.load(str(int8_default.path))
    q.u8_inputs_variant(variant)
    verified = session(variant.SerializeToString(), float_qdq=True)
    want = [verified.run(None, {"input": x})[0] for x in xs]
    match = q.agreement_report(want, got, int8_default.manifest["classes"])
    assert check("cpu_int8.u8_kernels_vs_float.agreement", match["agreement"], ">", 0.95, 1.0)
    assert check("cpu_int8.u8_kernels_vs_float.snr_db", match["logits_snr_db"], ">", 22), match
    rec = int8_default.manifest["parity"]["variants"]["u8_inputs"]
    ref = [session(int8_env["fp32"]).run(None, {"input": x})[0] for x in xs]
    measured = q.agreement_report(ref, got, int8_default.manifest["classes"])["agreement"]
    # the record describes what runs
    assert check("cpu_int8.u8_record_vs_run", abs(measured - rec["agreement"]), "<", 0.01, 0.0)


def test_runtime_refuses_a_u8_variant_it_cannot_derive_as_verified(
    int8_default, tmp_path, monkeypatch
):
    monkeypatch.setenv(FORCE_ENV, "0")
    bad = tmp_path / "miscounted_int8.onnx"
    bad.write_bytes(int8_default.path.read_bytes())
    m = dict(read_manifest(int8_default.path))
    parity = dict(m["parity"])
    variants = dict(parity["variants"])
    variants["u8_inputs"] = dict(variants["u8_inputs"], convs={"u8": 1, "pairs": 0, "float": 0})
    parity["variants"] = variants
    m["parity"] = parity
    write_manifest(bad, m)
    from cifrenet_edge.errors import ModelFileError

    with pytest.raises(ModelFileError) as e:
        Segmenter.open(bad)
    assert "not the one the export verified" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("dot", ["1", "0"])
def test_openvino_takes_the_class_map_inside_openvino(int8_default, monkeypatch, dot):
    """predict's arg-max in the graph (no NCHW logits) gives the class map of infer's logits."""
    from cifrenet_edge.data.synthetic import make_scene
    from cifrenet_edge.preprocess import preprocess
    from cifrenet_edge.runtime.postprocess import argmax_classes, resize_mask

    monkeypatch.setenv(FORCE_ENV, dot)
    m = int8_default.manifest
    with Segmenter.open(int8_default.path) as seg:
        assert seg.backend.name == "openvino" and callable(seg.backend.predict_frame)
        for seed in (7000, 7001):
            frame = make_scene(seed, (320, 200))[0]
            x = preprocess(frame, WH, m["mean_bgr"], m["scale"])
            want = resize_mask(argmax_classes(seg.backend.infer(x)[0]), (320, 200))
            got = seg.predict(frame)
            assert got.shape == (200, 320) and got.dtype == np.uint8
            assert np.array_equal(got, want)  # stable TopK: ties go to the first class
            mask, probs = seg.predict(frame, probabilities=True)  # the logits path still works
            assert probs.shape == (200, 320, len(m["classes"])) and mask.shape == (200, 320)


def test_runtime_refuses_int8_that_would_saturate(int8_default, tmp_path, monkeypatch):
    monkeypatch.setenv(FORCE_ENV, "0")
    with pytest.raises(BackendUnavailableError) as e:
        Segmenter.open(int8_default.path, backend="onnxruntime")
    assert "saturate" in str(e.value) and "m_fp32.onnx" in str(e.value)
    old = tmp_path / "old_int8.onnx"  # an INT8 file from before the 7-bit verification
    old.write_bytes(int8_default.path.read_bytes())
    m = dict(read_manifest(int8_default.path))
    m["parity"] = {k: v for k, v in m["parity"].items() if k != "variants"}
    write_manifest(old, m)
    with pytest.raises(BackendUnavailableError) as e:
        Segmenter.open(old)
    assert "no verified 7-bit variant" in str(e.value) and "\n" not in str(e.value)


AVX2_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from pathlib import Path
    from cifrenet_edge import quantize as q
    from cifrenet_edge.data.calibration import load_calibration
    from cifrenet_edge.manifest import read_manifest
    from cifrenet_edge.runtime.backends import load_backend
    from cifrenet_edge.quantize.verify import session

    fp32, calib, holdout, out = (Path(a) for a in sys.argv[1:5])
    gates = json.loads(sys.argv[5])
    m = read_manifest(fp32)
    xs = list(load_calibration(holdout, tuple(m["resolution"]), mean_bgr=m["mean_bgr"],
                               scale=m["scale"]).batches)
    ref = [session(fp32).run(None, {"input": x})[0] for x in xs]
    # the export on a CPU whose int8 kernels saturate: the gate must not care
    res = q.quantize_onnx(fp32, calib=calib, holdout=holdout, output=out, quiet=True, gates=gates)
    result = {"gate": res.parity["agreement"], "passed": res.parity["passed"],
              "this_cpu": res.parity["this_cpu"]}
    import os
    from cifrenet_edge.quantize.graph import u8_inputs_variant
    import onnx
    v = onnx.load(str(out)); u8_inputs_variant(v)
    vs = session(v.SerializeToString(), float_qdq=True)
    fs = session(out, float_qdq=True)
    want_variant = [vs.run(None, {"input": x})[0] for x in xs]
    want_file = [fs.run(None, {"input": x})[0] for x in xs]
    w7_only = dict(res.manifest, parity=dict(res.manifest["parity"], variants={
        "weights_7bit": res.manifest["parity"]["variants"]["weights_7bit"]}))
    runs = {"8bit": ("1", res.manifest), "u8_inputs": ("0", res.manifest),
            "7bit": ("0", w7_only)}
    for name, (dot, man) in runs.items():  # what OpenVINO computes here with each variant
        os.environ["CIFRENET_EDGE_INT8_DOT"] = dot
        b = load_backend("openvino", str(out), man, xs[0].shape, device="cpu")
        result[f"variant_{name}"] = b.describe().get("int8_variant")
        got = [b.infer(x) for x in xs]
        result[f"openvino_{name}"] = q.agreement_report(ref, got, m["classes"])["agreement"]
        if name == "u8_inputs":
            result["u8_vs_variant"] = q.agreement_report(want_variant, got, m["classes"])
            result["u8_vs_variant"].pop("per_class")
            result["u8_vs_file"] = q.agreement_report(want_file, got, m["classes"])["agreement"]
        b.close()
    result["file_float"] = q.agreement_report(ref, want_file, m["classes"])["agreement"]
    print(json.dumps(result))
    """
)


@pytest.fixture(scope="module")
def avx2_emulated(int8_env, tmp_path_factory):
    """Export and run INT8 with oneDNN limited to AVX2 (like an AVX2-only AMD EPYC Zen 3)."""
    out = tmp_path_factory.mktemp("avx2") / "m_int8.onnx"
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", CIFRENET_EDGE_INT8_DOT="1")
    args = [str(int8_env[k]) for k in ("fp32", "calib", "holdout")] + [str(out)]
    args.append(json.dumps(PROBE_GATES))
    proc = subprocess.run(
        [sys.executable, "-c", AVX2_SCRIPT, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_avx2_export_passes_the_gate_and_reports_this_cpu_apart(avx2_emulated):
    r = avx2_emulated
    assert r["passed"] and r["gate"] >= PROBE_GATES["min_agreement"]
    cpu = r["this_cpu"]  # forced "dot product" on a capped oneDNN: the saturating path
    assert cpu["weight_bits"] == 8 and not cpu["passed"]
    assert check("cpu_int8.avx2_this_cpu_8bit.agreement", cpu["agreement"], "<", 0.85)


def test_avx2_saturates_8bit_weights_but_not_7bit(avx2_emulated):
    r = avx2_emulated
    assert r["variant_7bit"] == "weights_7bit" and r["variant_8bit"] == "file"
    # the emulation is real: 8-bit saturates (0.62 measured on an AVX2-only EPYC)
    assert check("cpu_int8.avx2_openvino_8bit.agreement", r["openvino_8bit"], "<", 0.85)
    gate = PROBE_GATES["min_agreement"]
    assert check("cpu_int8.avx2_openvino_7bit.agreement", r["openvino_7bit"], ">=", gate, 1.0)
    gain = r["openvino_7bit"] - r["openvino_8bit"]
    assert check("cpu_int8.avx2_7bit_minus_8bit", gain, ">", 0.1)


def test_avx2_u8_inputs_variant_computes_the_verified_arithmetic(avx2_emulated):
    """Under the AVX2 cap the u8/8-bit convs do not saturate: OpenVINO matches the variant."""
    r = avx2_emulated
    assert r["variant_u8_inputs"] == "u8_inputs"
    match = r["u8_vs_variant"]  # measured 0.979 / 29.4 dB; 8-bit weights saturate to 0.63
    assert check("cpu_int8.avx2_u8_vs_variant.agreement", match["agreement"], ">", 0.95, 1.0)
    assert check("cpu_int8.avx2_u8_vs_variant.snr_db", match["logits_snr_db"], ">", 22), match
    # the file's own arithmetic, within tolerance: measured 0.954 here, bound 0.94
    assert check("cpu_int8.avx2_u8_vs_file", r["u8_vs_file"], ">=", 0.94, 1.0), r["u8_vs_file"]
    assert r["openvino_u8_inputs"] > r["openvino_7bit"] - 0.005


def test_avx2_probe_follows_the_onednn_cap_in_a_fresh_process(int8_default):
    """Auto probe under the cap: the runtime picks 7-bit weights by itself."""
    code = (
        "from cifrenet_edge import Segmenter; import sys; "
        "s = Segmenter.open(sys.argv[1]); "
        "print(s.backend.describe()['int8_weight_bits'])"
    )
    env = {k: v for k, v in os.environ.items() if k != FORCE_ENV}
    env["ONEDNN_MAX_CPU_ISA"] = "AVX2"
    out = subprocess.run(
        [sys.executable, "-c", code, str(int8_default.path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "7"


# --------------------------------------------------------------------------- TensorRT 10/11


def test_strongly_typed_targets_get_fp16_float_parts(int8_env, tmp_path):
    """trt10/trt11: the layers outside Q/DQ run FP16 only if the file says so."""
    from cifrenet_edge.export import check_target_ops, export_onnx

    weights = int8_env["root"] / "probe.pth"
    fp32 = export_onnx(
        "cityscapes",
        weights=weights,
        res=WH,
        target="trt10",
        output=tmp_path / "t10.onnx",
        quiet=True,
    )
    res = q.quantize_onnx(
        fp32.path,
        calib=int8_env["calib"],
        holdout=int8_env["holdout"],
        output=tmp_path / "t10_int8.onnx",
        gates=PROBE_GATES,
        quiet=True,
    )
    m = res.manifest
    assert m["quantization"]["float_parts"]["float_parts"] == "fp16" and res.parity["passed"]
    model = onnx.load(str(res.path))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 19
    scales = {n.input[1] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    types = {i.data_type for i in model.graph.initializer if i.name in scales}
    assert types == {onnx.TensorProto.FLOAT16}
    io = [v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)]
    assert io == [onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT]
    assert q.check_qdq_rules(model)["problems"] == []
    check_target_ops(model, "trt10")
    assert res.parity["variants"]["weights_7bit"]["passed"]
    assert res.parity["variants"]["u8_inputs"]["passed"]  # FP16 float parts: u8 pairs retyped
    os.environ[FORCE_ENV] = "0"
    try:  # and OpenVINO derives the same variant from the FP16-float-parts file
        with Segmenter.open(res.path) as seg:
            assert seg.backend.describe()["int8_variant"] == "u8_inputs"
            assert seg.predict(np.zeros((128, 256, 3), np.uint8)).shape == (128, 256)
    finally:
        del os.environ[FORCE_ENV]
