"""Which TensorRT calls a build makes: a pure function of version, precision and GPU.

``plan_build`` decides network flags, builder flags, the ONNX variant and the calibrator
from ``api.capabilities`` and the acceptance rules (``rules``), so the decision is
unit-tested for every TensorRT version without TensorRT; ``build.build_engine`` only
carries it out. Stdlib only, Python 3.8 syntax (the device builder imports it).
"""

from typing import List, NamedTuple, Optional, Tuple

from ..errors import ConfigError
from ..manifest import PRECISIONS
from . import api, rules

INT8_MODES = ("qdq", "calibrator")


class BuildPlan(NamedTuple):
    """What to ask TensorRT for; every name is a member of the version's enums."""

    network_flags: Tuple[str, ...]  # NetworkDefinitionCreationFlag members
    builder_flags: Tuple[str, ...]  # BuilderFlag members
    onnx_variant: str  # "as_is" or "fp16" (convert to FP16 ONNX with FP32 I/O first)
    calibrator: bool  # attach IInt8EntropyCalibrator2
    strongly_typed: bool  # precision comes from the graph's tensor types
    warnings: Tuple[str, ...]


def plan_build(
    caps: api.TrtCaps,
    precision: str,
    int8_mode: Optional[str] = "qdq",
    onnx_precision: str = "fp32",
    compute_capability: Optional[str] = None,
    dla_core: Optional[int] = None,
    dynamic: bool = False,
    dla_cores: Optional[int] = None,
    gpu: Optional[str] = None,
) -> BuildPlan:
    """Decide flags and model variant; raises ConfigError/BackendUnavailableError to refuse.

    What TensorRT itself refuses (INT8 without INT8 hardware, DLA restrictions, strongly
    typed networks with precision flags ...) is decided by the rule table in ``trt.rules``,
    with the facts known here; ``compute_capability``/``dla_cores`` None means unknown.
    """
    from ..device.env import precision_support

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    int8_mode = int8_mode or "qdq"
    if int8_mode not in INT8_MODES:
        raise ConfigError(f"unknown --int8-mode {int8_mode!r}: use qdq or calibrator")
    ver = ".".join(str(p) for p in caps.version)
    support = precision_support(compute_capability) if compute_capability else None
    if onnx_precision == "int8" and not (precision == "int8" and int8_mode == "qdq"):
        raise ConfigError(
            f"the ONNX model is already INT8 (Q/DQ) but {precision}"
            f"{' ' + int8_mode if precision == 'int8' else ''} was asked: build from the FP32 "
            "ONNX, or use --precision int8 (Q/DQ)"
        )
    if onnx_precision == "fp16" and precision != "fp16":
        raise ConfigError(
            f"the ONNX model is FP16 but {precision} was asked: build from the FP32 ONNX"
        )
    facts = rules.Context(
        span=rules.version_span(caps.version),
        precision=precision,
        int8_mode=int8_mode if precision == "int8" else None,
        dynamic=bool(dynamic),
        dla_core=None if dla_core is None else int(dla_core),
        dla_cores=dla_cores,
        compute_capability=compute_capability,
        fast_fp16=support["fast_fp16"] if support else None,
        fast_int8=support["fast_int8"] if support else None,
        device=gpu,
    )
    here = f"TensorRT {ver}" + (f" on {gpu}" if gpu else "") + ": "
    warnings = rules.raise_errors(rules.evaluate(facts, ("options", "hardware")), here)
    # layers outside INT8 (Q/DQ or calibrated) fall back to FP16, not FP32, where FP16 is fast
    # (NvInfer.h BuilderFlag::kINT8: "with FP32 fallback with FP16 fallback if kFP16 also
    # specified"); not on cc 6.1, where FP16 runs at 1/64 rate
    fast_fp16 = support is None or bool(support["fast_fp16"])
    fp16_fallback = caps.precision_flags and fast_fp16
    net: List[str] = ["EXPLICIT_BATCH"] if caps.explicit_batch_flag == "required" else []
    flags: List[str] = []
    variant, calibrator, strongly = "as_is", False, caps.always_strongly_typed

    if precision == "fp16":
        if onnx_precision == "fp16":
            # Already an FP16 graph (export converts for TRT 11): its tensor types decide.
            if caps.strongly_typed_flag:
                net.append("STRONGLY_TYPED")
                strongly = True
            elif caps.precision_flags:
                flags.append("FP16")
        elif caps.precision_flags:
            flags.append("FP16")
        else:
            # 10.12 deprecates and 11.0 removes BuilderFlag.FP16: FP16 comes from the graph.
            variant = "fp16"
            if caps.strongly_typed_flag:
                net.append("STRONGLY_TYPED")
            strongly = True
    elif precision == "int8":
        if int8_mode == "calibrator":
            if onnx_precision != "fp32":
                raise ConfigError(
                    f"--int8-mode calibrator needs the FP32 ONNX model, got a {onnx_precision} "
                    "one: pass the FP32 export"
                )
            flags.append("INT8")
            # 10.12 deprecates BuilderFlag.FP16 with INT8, but an implicitly quantized
            # network has no other way to run its non-INT8 layers in FP16: both flags are
            # still bound there (tensorrt-10.16.json), so keep the fallback.
            if caps.precision_flags_present and fast_fp16:
                flags.append("FP16")
            calibrator = True
            if caps.version >= (10, 1, 0):
                warnings.append(
                    f"implicit INT8 calibration is deprecated since TensorRT 10.1 (running "
                    f"{ver}); the default --int8-mode qdq is the supported path"
                )
        else:
            if onnx_precision != "int8":
                raise ConfigError(
                    "--precision int8 (Q/DQ) needs the quantized ONNX model: run "
                    "`cifrenet-edge export --precision int8 --calib DIR` (or pass "
                    "--int8-mode calibrator on TensorRT 8.x/10.x)"
                )
            if caps.precision_flags_present and not caps.strongly_typed_flag:
                flags.append("INT8")  # TRT 8.x needs the flag to honour Q/DQ layers
                if fp16_fallback:
                    flags.append("FP16")
            elif caps.strongly_typed_flag:
                net.append("STRONGLY_TYPED")  # 10.x: the Q/DQ graph fixes every precision
                strongly = True
    if dla_core is not None:
        flags.append("GPU_FALLBACK")
    chosen = facts._replace(
        network_flags=tuple(net), builder_flags=tuple(flags), strongly_typed=strongly
    )
    rules.raise_errors(rules.evaluate(chosen, ("plan",)), here)
    return BuildPlan(tuple(net), tuple(flags), variant, calibrator, strongly, tuple(warnings))
