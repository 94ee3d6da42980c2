"""The TensorRT stand-in refuses from its own model, and every rule of the table is needed.

``trt_build_sim.BuildModel`` (the stand-in's parser and builder) refuses what TensorRT
refuses, each refusal with its source, without reading ``resources/trt_rules.json``. So the
last test here drops one rule at a time from the toolkit's table and runs a case that the
rule exists for through ``build_engine`` and the stand-in: with the rule the toolkit refuses
(or warns) first, in one line naming the rule; without it the case gets through the toolkit
and TensorRT's own model refuses it, or accepts it to the user's loss (FP16 with no fast
FP16, layers falling back from DLA), which the stand-in records. A rule no case needs would
fail that test, and so would a rule whose removal TensorRT would not notice.
"""

import json
from typing import Any, Callable, Dict, NamedTuple

import onnx
import pytest
from onnx import TensorProto
from support.trt_cases import Outcome, machine, mixed_add, plain_conv, qdq_conv
from support.trt_standin import StandIn, _manifest

from cifrenet_edge.errors import ExportError
from cifrenet_edge.trt import api, rules

TABLE = json.loads(rules.TABLE.read_text())["rules"]


# --------------------------------------------------------------------------- the model itself
def test_enum_values_are_the_headers():
    """In 11.1 STRONGLY_TYPED is 0 and PREFER_JIT_PYTHON_PLUGINS 1 (NvInfer.h v11.1), not
    their positions in the binding list; 10.x keeps EXPLICIT_BATCH 0 and STRONGLY_TYPED 1."""
    t11 = StandIn("11.1", machine("11.1", "8.9").world).module()
    flag = t11.NetworkDefinitionCreationFlag
    assert (int(flag.STRONGLY_TYPED), int(flag.PREFER_JIT_PYTHON_PLUGINS)) == (0, 1)
    assert int(flag.PREFER_AOT_PYTHON_PLUGINS) == 2
    t10 = StandIn("10.3.0", machine("10.3.0", "8.7").world).module()
    assert int(t10.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 1
    assert int(t10.BuilderFlag.GPU_FALLBACK) == 3 and int(t10.DataType.HALF) == 1
    t8 = StandIn("8.6.1", machine("8.6.1", "6.1").world).module()
    assert int(t8.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) == 0
    assert int(t8.BuilderFlag.INT8) == 1


@pytest.mark.parametrize("version", api.SUPPORTED_VERSIONS)
def test_every_enum_the_toolkit_converts_has_header_values(version):
    """Each member of the enums the code turns into integers has its value from NvInfer.h."""
    from support.trt_standin import enum_values, load_api

    values, members = enum_values(version), load_api(version)["enums"]
    for name in ("NetworkDefinitionCreationFlag", "BuilderFlag", "DataType", "TensorIOMode"):
        if name in members:  # TensorIOMode from 8.5
            assert set(values[name]) == set(members[name]), (version, name)
    if "WEIGHTLESS" in members["BuilderFlag"]:  # an alias in NvInfer.h: "= kSTRIP_PLAN"
        assert values["BuilderFlag"]["WEIGHTLESS"] == values["BuilderFlag"]["STRIP_PLAN"]


def test_network_flags_reach_the_builder_by_their_header_values(build_on):
    out = build_on("10.3.0", "8.7", "int8")
    assert not isinstance(out.result, BaseException), out.result
    assert out.result.manifest["engine"]["network_flags"] == ["STRONGLY_TYPED"]
    assert out.world.build_errors == []


def test_create_network_refuses_an_unknown_flag_bit():
    m = machine("11.1", "8.9")
    trt = m.standin.module()
    builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
    assert builder.create_network(1 << 5) is None  # no such flag in NvInfer.h v11.1
    assert builder.create_network(1 << 0) is not None  # STRONGLY_TYPED (deprecated, ignored)


def test_set_shape_raises_on_inconsistent_shapes_and_the_build_says_so(build_on, tmp_path):
    """pyCore.cpp v8.6.1: RuntimeError; the toolkit used to let it out as a traceback."""
    m = machine("10.3.0", "8.7")
    trt = m.standin.module()
    prof = trt.Builder(trt.Logger(trt.Logger.WARNING)).create_optimization_profile()
    with pytest.raises(RuntimeError, match="max is inconsistent"):
        prof.set_shape("input", (1, 3, 8, 8), (1, 3, 16, 16), (1, 3, 12, 12))
    with pytest.raises(RuntimeError, match="opt is inconsistent"):
        prof.set_shape("input", (1, 3, 8, 8), (1, 3, 8), (1, 3, 12, 12))
    # a manifest whose dynamic range runs backwards: one line, not a RuntimeError
    src = _manifest("fp32", dynamic=True)
    src["dynamic"]["min"] = [400, 300]
    out = build_on("10.3.0", "8.7", "fp16", dynamic=True)  # the valid range builds
    assert not isinstance(out.result, BaseException), out.result
    (tmp_path / "m_fp32.onnx.json").write_text(json.dumps(src))
    from cifrenet_edge.trt import build

    with pytest.raises(ExportError, match="refused the optimisation profile") as err:
        build.build_engine(tmp_path / "m_fp32.onnx", precision="fp16", quiet=True)
    assert "\n" not in str(err.value)


def _raw_build(version: str, cc: str, net_flags=(), flags=(), model=None, dla=None, cores=0):
    """Drive the stand-in as TensorRT's own API, without the toolkit."""
    m = machine(version, cc, cores)
    trt = m.standin.module()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    bits = 0
    for name in net_flags:
        bits |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    net = builder.create_network(bits)
    parser = trt.OnnxParser(net, logger)
    ok = parser.parse((model or plain_conv(13)).SerializeToString())
    cfg = builder.create_builder_config()
    for name in flags:
        cfg.set_flag(getattr(trt.BuilderFlag, name))
    if dla is not None:
        cfg.DLA_core = dla
    return ok, builder.build_serialized_network(net, cfg), m.world


@pytest.mark.parametrize(
    "version, cc, net_flags, flags, model, dla, cores, why",
    [
        ("8.6.1", "7.5", ["EXPLICIT_BATCH"], [], "qdq", None, 0, "int8 is not configured"),
        ("8.2.1", "5.3", ["EXPLICIT_BATCH"], ["INT8"], "qdq", None, 0, "Int8 support"),  # #3157
        ("8.6.1", "6.0", ["EXPLICIT_BATCH"], ["INT8"], "qdq", None, 0, "Int8 support"),
        ("8.2.1", "6.2", ["EXPLICIT_BATCH"], ["INT8"], "qdq", None, 0, "Int8 support"),
        ("10.3.0", "6.1", [], [], None, None, 0, "0x601"),  # #3826
        ("10.16", "7.0", [], [], None, None, 0, "Unsupported SM"),
        ("10.3.0", "12.0", [], [], None, None, 0, "Target GPU SM"),
        ("10.3.0", "8.7", ["STRONGLY_TYPED"], ["FP16"], None, None, 0, "kFP16"),  # #4228
        ("10.16", "8.7", [], ["FP16"], None, 0, 2, "DLA is not supported"),
        ("10.3.0", "8.7", [], ["FP16"], None, 2, 2, "getNbDLACores"),
    ],
)
def test_builder_refuses_on_its_own(version, cc, net_flags, flags, model, dla, cores, why):
    onnx_model = qdq_conv() if model == "qdq" else None
    ok, plan, world = _raw_build(version, cc, net_flags, flags, onnx_model, dla, cores)
    assert ok and plan is None
    assert any(why in e for e in world.build_errors), world.build_errors
    # the same network on a GPU and version TensorRT supports, asked rightly, builds
    good_flags = [f for f in flags if f != "FP16"] if "STRONGLY_TYPED" in net_flags else flags
    if model == "qdq" and version.startswith("8.") and "INT8" not in good_flags:
        good_flags = [*good_flags, "INT8"]
    good_version = "8.6.1" if version.startswith("8.") else "10.3.0"
    assert _raw_build(good_version, "8.6", net_flags, good_flags, onnx_model)[1] is not None


def test_parser_refuses_on_its_own():
    for version, model, why in [
        ("8.6.1", qdq_conv(int8_weights=True), "Int8"),
        ("8.5.2", qdq_conv(zero_point=False), "3 inputs"),
        ("10.3.0", qdq_conv(act_zp=3), "zero_point must be zero"),
        ("8.2.1", plain_conv(17), "opset 17"),
        ("8.6.1", qdq_conv(weight_axis=1), "does not match axis 1"),
        ("11.1", mixed_add(), "element type"),
    ]:
        batch = ["EXPLICIT_BATCH"] if version.startswith("8.") else []
        ok, _, _ = _raw_build(version, "8.6", batch, model=model)
        assert not ok, (version, why)
    assert _raw_build("10.3.0", "8.6", model=qdq_conv(int8_weights=True))[0]  # 10.x reads them
    assert _raw_build("10.3.0", "8.6", model=mixed_add())[0]  # weakly typed: casts inserted
    assert not _raw_build("8.6.1", "8.6", [], model=plain_conv(13))[0]  # 8.x: explicit batch


def test_calibrator_is_driven_as_tensorrt_drives_it(build_on, tmp_path):
    out = build_on("8.6.1", "6.1", "int8", onnx_precision="fp32", int8_mode="calibrator")
    assert not isinstance(out.result, BaseException), out.result
    calls = out.world.calibration
    assert calls[0] == "get_batch_size=1" and calls[1] == "read_calibration_cache"
    assert calls.count("get_batch") == 5 and calls[-1] == "write_calibration_cache"
    (cache,) = tmp_path.glob("*.calib-*.cache")  # written by the calibrator, named by its key
    assert cache.read_bytes().startswith(b"TRT-861-EntropyCalibration2")
    again = build_on("8.6.1", "6.1", "int8", onnx_precision="fp32", int8_mode="calibrator")
    assert "get_batch" not in again.world.calibration  # the cache was read back


# --------------------------------------------------------------------------- every rule needed
def dq_without_zero_point() -> onnx.ModelProto:
    """The Q keeps its INT8 zero point (so its output is INT8, not UINT8); the DQs drop it."""
    model = qdq_conv()
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear":
            del node.input[2:]
    return model


class Case(NamedTuple):
    run: Callable[[Any], Outcome]
    # what TensorRT's model says once the toolkit lets the case through: a build error, a
    # parser error (the toolkit's ExportError), a missing API member, or a quiet loss
    standin_says: str


def _says(out: Outcome, what: str) -> bool:
    w = out.world
    text = " ".join(w.build_errors + w.quiet_losses) + " " + " ".join(out.standin.rec.missing)
    return what in text or what in out.text()


CASES: Dict[str, Case] = {
    "onnx.opset": Case(lambda b: b("8.2.1", "7.5", "fp32", plain_conv(17)), "opset 17"),
    "qdq.int8-weights": Case(
        lambda b: b("8.6.1", "7.5", "int8", qdq_conv(int8_weights=True)), "Int8"
    ),
    "qdq.zero-point": Case(lambda b: b("10.3.0", "8.7", "int8", qdq_conv(act_zp=3)), "zero"),
    "qdq.uint8": Case(
        lambda b: b("8.6.1", "7.5", "int8", qdq_conv(zp_type=TensorProto.UINT8)), "UINT8"
    ),
    "qdq.zero-point-missing": Case(
        lambda b: b("8.5.2", "7.2", "int8", dq_without_zero_point()), "3 inputs"
    ),
    "qdq.fp32-only": Case(
        lambda b: b("8.6.1", "7.5", "int8", qdq_conv(scale_type=TensorProto.FLOAT16)), "kFLOAT"
    ),
    "qdq.scale-positive": Case(
        lambda b: b("11.1", "8.9", "int8", qdq_conv(act_scale=0.0)), "positive"
    ),
    "qdq.per-channel-activation": Case(
        lambda b: b("10.3.0", "8.7", "int8", qdq_conv(act_per_channel=True)), "Per-channel"
    ),
    "qdq.weight-axis": Case(lambda b: b("8.6.1", "7.5", "int8", qdq_conv(weight_axis=1)), "axis 1"),
    "types.mixed-inputs": Case(lambda b: b("11.1", "8.9", "fp32", mixed_add()), "element type"),
    "qdq.fp32-float-parts": Case(lambda b: b("10.3.0", "8.7", "int8"), "FP32 float parts"),
    "hw.int8": Case(lambda b: b("8.2.1", "5.3", "int8"), "Int8 support"),
    "hw.fp16-slow": Case(lambda b: b("8.6.1", "6.1", "fp16"), "native FP16"),
    "hw.fp16-none": Case(lambda b: b("8.5.2", "5.2", "fp16"), "native FP16"),
    "hw.sm-maxwell": Case(lambda b: b("8.6.1", "5.2", "fp32"), "Unsupported SM"),
    "hw.sm-jetson-tx": Case(lambda b: b("8.5.2", "6.2", "fp16"), "Unsupported SM"),
    "hw.sm-pascal": Case(lambda b: b("10.3.0", "6.1", "fp32"), "0x601"),
    "hw.sm-xavier": Case(lambda b: b("8.6.1", "7.2", "fp16"), "Unsupported SM"),
    "hw.sm-volta": Case(lambda b: b("10.16", "7.0", "fp32"), "Unsupported SM"),
    "hw.sm-ada": Case(lambda b: b("8.2.1", "8.9", "fp32"), "0x809"),
    "hw.sm-blackwell": Case(lambda b: b("10.3.0", "12.0", "fp32"), "Target GPU SM"),
    "dla.core-index": Case(
        lambda b: b("10.3.0", "8.7", "fp16", dla_core=-1, dla_cores=2), "getNbDLACores"
    ),
    "dla.no-core": Case(
        lambda b: b("10.3.0", "8.7", "fp16", dla_core=1, dla_cores=1), "getNbDLACores"
    ),
    "dla.fp32": Case(
        lambda b: b("10.3.0", "8.7", "fp32", dla_core=0, dla_cores=2), "FP16 and INT8 only"
    ),
    "dla.dynamic": Case(
        lambda b: b("10.3.0", "8.7", "fp16", dynamic=True, dla_core=0, dla_cores=2),
        "no dynamic dimensions",
    ),
    "dla.explicit-int8": Case(
        lambda b: b("8.5.2", "7.2", "int8", dla_core=0, dla_cores=2), "implicit INT8 only"
    ),
    "dla.explicit-int8-gpu": Case(
        lambda b: b("10.3.0", "8.7", "int8", dla_core=0, dla_cores=2), "implicit INT8 only"
    ),
    "dla.unsupported": Case(
        lambda b: b("10.16", "8.7", "int8", dla_core=0, dla_cores=2), "DLA is not supported"
    ),
    # without it the plan rule still stops the build, but as "report this bug", without the
    # fix (--int8-mode qdq): 11.x has no BuilderFlag.INT8 and no calibrator classes to call
    "calib.removed": Case(
        lambda b: b("11.1", "8.9", "int8", onnx_precision="fp32", int8_mode="calibrator"),
        "[st.precision-flags]",
    ),
}


def test_every_rule_has_a_case():
    plan_rules = {r["id"] for r in TABLE if r["kind"] == "plan"}
    assert set(CASES) | plan_rules == {r["id"] for r in TABLE}


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_removing_the_rule_lets_tensorrt_refuse_it(rule_id, build_on, monkeypatch):
    case = CASES[rule_id]
    with_rule = case.run(build_on)
    assert f"[{rule_id}]" in with_rule.text(), with_rule.text()
    if with_rule.world.build_errors or isinstance(with_rule.result, BaseException):
        assert not with_rule.world.build_errors  # refused by the toolkit, before TensorRT
        assert "\n" not in str(with_rule.result)
    monkeypatch.setattr(rules, "RULES", tuple(r for r in rules.RULES if r.id != rule_id))
    without = case.run(build_on)
    assert f"[{rule_id}]" not in without.text()
    assert _says(without, case.standin_says), (without.world.build_errors, without.result)


def test_removing_the_plan_rule_lets_tensorrt_refuse_it():
    """The plan rule guards the toolkit's own flags: TensorRT refuses the plan it catches."""
    bad = rules.Context(
        span=rules.version_span((10, 3, 0)), strongly_typed=True, builder_flags=("FP16",)
    )
    assert [f.rule.id for f in rules.evaluate(bad, ("plan",))] == ["st.precision-flags"]
    table = tuple(r for r in rules.RULES if r.id != "st.precision-flags")
    assert rules.evaluate(bad, ("plan",), table=table) == []
    _, plan, world = _raw_build("10.3.0", "8.7", ["STRONGLY_TYPED"], ["FP16"])
    assert plan is None and any("kFP16" in e for e in world.build_errors)
