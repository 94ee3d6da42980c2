"""Is the INT8 model right? Judged the same way on every machine, then this CPU apart.

**The gate** compares the INT8 file with its FP32 source on held-out frames, with the Q/DQ
nodes evaluated in float: ONNX Runtime's CPU provider with ``session.disable_quant_qdq``
runs QuantizeLinear/DequantizeLinear as the ops they are (round, clamp to int8, scale back)
and every Conv in float, which is exactly the arithmetic the file defines and what TensorRT
computes (int32 accumulation never saturates). The verdict therefore does not depend on the
build machine's int8 kernels: on an AVX2-only CPU, ONNX Runtime's and OpenVINO's int8
kernels saturate (0.60 agreement measured on an AMD EPYC Zen 3) while this reference
gives the same 0.94 as on an AVX-512 VNNI Xeon. Desktops exporting for a Jetson or a
1080 Ti are judged on what the GPU will compute.

**Variants** verified the same way: the CPU variants the runtime runs on CPUs without an int8
dot product (``graph.u8_inputs_variant``, and the older all-7-bit ``graph.seven_bit_weights``);
their records decide whether, and how, a robot without VNNI may run INT8 at all.

**This CPU** is a separate, informational check: the INT8 path this machine's runtime would
take (``runtime.cpu_int8.plan_cpu_int8``: OpenVINO 8-bit with a dot product, a variant without)
is run and its agreement reported. It decides CPU deployment on this kind of machine, never
the TensorRT artifact.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..data.calibration import CalibrationData
from ..errors import ConfigError, ExportError, first_line
from ..manifest import Manifest
from .ort_quantizer import model_batches, ort

log = logging.getLogger(__name__)

# Gates (see benchmarks/int8_cpu/README.md for the measurements behind them): a correct INT8
# model of this network agrees with FP32 on ~94-99% of pixels (the probe model, whose margins
# are small, sits at the low end); a broken one (wrong scales, absurd ranges, saturated
# kernels) falls far below (0.60). 0.90 overall keeps a clear margin on both sides. Per
# class, small classes suffer first, so they get a lower bar (0.75), and classes covering
# < 0.2% of held-out pixels are reported but not gated (too few pixels for a stable ratio).
DEFAULT_GATES = {
    "min_agreement": 0.90,
    "min_class_agreement": 0.75,
    "min_class_fraction": 0.002,
}
REFERENCE = (
    "onnxruntime CPU, Q/DQ evaluated in float (session.disable_quant_qdq=1): the file's own "
    "arithmetic, independent of this CPU's int8 kernels"
)


def session(model, float_qdq: bool = False, threads: Optional[int] = None):
    """An ONNX Runtime CPU session on a path or serialized bytes; ``float_qdq``: the reference."""
    rt = ort()
    so = rt.SessionOptions()
    so.log_severity_level = 3
    if float_qdq:
        so.add_session_config_entry("session.disable_quant_qdq", "1")
    if threads:
        so.intra_op_num_threads = int(threads)
    src = str(model) if isinstance(model, Path) else model
    try:
        return rt.InferenceSession(src, so, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"onnxruntime cannot load the model: {first_line(exc)}") from None


def agreement_report(
    fp32_logits: Sequence[np.ndarray], int8_logits: Sequence[np.ndarray], classes: Sequence[str]
) -> Dict[str, Any]:
    """Pixel argmax agreement overall and per FP32 class (recall of FP32's class map)."""
    n = len(classes)
    total = np.zeros(n, np.int64)
    same = np.zeros(n, np.int64)
    sq_err = sq_ref = 0.0
    for a, b in zip(fp32_logits, int8_logits):
        ra = a.argmax(axis=1).ravel()
        rb = b.argmax(axis=1).ravel()
        total += np.bincount(ra, minlength=n)[:n]
        same += np.bincount(ra[ra == rb], minlength=n)[:n]
        sq_err += float(np.square(a - b, dtype=np.float64).sum())
        sq_ref += float(np.square(a, dtype=np.float64).sum())
    pixels = int(total.sum())
    per_class = {
        classes[c]: {
            "pixels": int(total[c]),
            "fraction": float(total[c] / pixels) if pixels else 0.0,
            "agreement": float(same[c] / total[c]) if total[c] else None,
        }
        for c in range(n)
        if total[c]
    }
    snr = 10 * np.log10(sq_ref / sq_err) if sq_err > 0 else float("inf")
    return {
        "pixels": pixels,
        "agreement": float(same.sum() / pixels) if pixels else 0.0,
        "per_class": per_class,
        "logits_snr_db": float(snr),
    }


def check_gates(gates: Optional[Dict[str, float]]) -> Dict[str, float]:
    g = dict(DEFAULT_GATES)
    unknown = set(gates or {}) - set(g)
    if unknown:
        raise ConfigError(
            f"unknown INT8 gate {sorted(unknown)[0]!r}: use {', '.join(DEFAULT_GATES)}"
        )
    g.update(gates or {})
    return g


def judge(rep: Dict[str, Any], g: Dict[str, float], label: str = "") -> Dict[str, Any]:
    """Add ``passed``/``failures``/``worst_class`` to an agreement report under gates ``g``."""
    gated = {
        k: v["agreement"]
        for k, v in rep["per_class"].items()
        if v["fraction"] >= g["min_class_fraction"] and v["agreement"] is not None
    }
    worst = min(gated, key=gated.get) if gated else None
    failures: List[str] = []
    if rep["agreement"] < g["min_agreement"]:
        failures.append(f"{label}pixel agreement {rep['agreement']:.3f} < {g['min_agreement']}")
    if worst is not None and gated[worst] < g["min_class_agreement"]:
        failures.append(
            f"{label}class {worst!r} agreement {gated[worst]:.3f} < {g['min_class_agreement']}"
        )
    rep.update(
        worst_class=worst,
        worst_class_agreement=gated.get(worst) if worst else None,
        passed=not failures,
        failures=failures,
    )
    return rep


def _run(sess, inputs, input_name: str) -> List[np.ndarray]:
    return [sess.run(None, {input_name: x})[0] for x in inputs]


def fp32_logits(fp32_path, inputs: Sequence[np.ndarray], input_name: str) -> List[np.ndarray]:
    """The FP32 model's logits on ``inputs``: what every INT8 run is compared with."""
    return _run(session(Path(fp32_path)), inputs, input_name)


def verify_int8(
    fp32_path,
    int8_path,
    holdout: CalibrationData,
    classes: Sequence[str],
    input_name: str = "input",
    gates: Optional[Dict[str, float]] = None,
    batch: int = 1,
    variants: Optional[Dict[str, bytes]] = None,
    ref: Optional[List[np.ndarray]] = None,
) -> Dict[str, Any]:
    """The parity record: the gate (Q/DQ in float), plus each variant judged the same way.

    ``variants``: name -> serialized ONNX of a derived model (the 7-bit CPU variant), each
    judged against the same FP32 logits; they never fail the export, they are recorded so
    the runtime knows whether it may run them. ``ref``: the FP32 logits on the held-out
    frames when the caller already has them (``fp32_logits``). ``batch``: the model's
    fixed batch (``Manifest.call_batch``), which the held-out frames are stacked to.
    """
    g = check_gates(gates)
    t0 = time.perf_counter()
    inputs = model_batches(holdout.batches, batch)
    if ref is None:
        ref = fp32_logits(fp32_path, inputs, input_name)
    got = _run(session(Path(int8_path), float_qdq=True), inputs, input_name)
    rep = judge(agreement_report(ref, got, classes), g)
    judged: Dict[str, Any] = {}
    for name, blob in (variants or {}).items():
        v = agreement_report(ref, _run(session(blob, float_qdq=True), inputs, input_name), classes)
        v = judge(v, g)
        v.pop("per_class")
        judged[name] = dict(v, reference=REFERENCE)
    rep.update(
        {
            "reference": REFERENCE,
            "fp32_reference": "fp32 onnx, onnxruntime CPU",
            "holdout": {
                k: holdout.fingerprint.get(k) for k in ("source", "kind", "count", "role", "sha256")
            },
            "gates": g,
            "variants": judged,
            "seconds": round(time.perf_counter() - t0, 2),
        }
    )
    return rep


def this_cpu_int8(
    int8_path: Path,
    manifest: Manifest,
    inputs: Sequence[np.ndarray],
    ref: Sequence[np.ndarray],
    classes: Sequence[str],
    gates: Dict[str, float],
) -> Dict[str, Any]:
    """Run the INT8 path this machine's runtime would take; its agreement, for information.

    Goes through the runtime's own backend (``load_backend``), so what is measured is what
    ``Segmenter.open`` would run here: OpenVINO with 8- or 7-bit weights, ONNX Runtime, or
    a refusal when neither is safe on this CPU.
    """
    from ..runtime.backends import installed, load_backend
    from ..runtime.cpu_int8 import cpu_name, int8_support, plan_cpu_int8

    support = int8_support()
    plan = plan_cpu_int8(
        str(int8_path), manifest, support, installed("openvino"), installed("onnxruntime")
    )
    out: Dict[str, Any] = {
        "cpu": cpu_name(),
        "int8_dot_product": support.dot_product,
        "probe": support.reason,
        "backend": plan.backend,
        "weight_bits": plan.weight_bits if plan.backend else None,
        "plan": plan.reason,
    }
    if plan.backend is None:
        return dict(out, agreement=None, passed=False, failures=["refused on this CPU"])
    shape = tuple(int(v) for v in np.asarray(inputs[0]).shape)
    try:
        backend = load_backend(plan.backend, str(int8_path), manifest, shape, device="cpu")
    except Exception as exc:  # informational: never fails the export
        return dict(out, agreement=None, passed=False, failures=[first_line(exc)])
    try:
        got = [backend.infer(np.ascontiguousarray(x)) for x in inputs]
    finally:
        backend.close()
    rep = judge(agreement_report(ref, got, classes), gates, label="this CPU's ")
    rep.pop("per_class")
    return dict(out, **rep)
