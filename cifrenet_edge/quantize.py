"""FP32 ONNX -> explicit INT8 (QuantizeLinear/DequantizeLinear) ONNX, verified before it ships.

Explicit Q/DQ is the one INT8 form that TensorRT 8.6, 10.x and 11.x all accept (11 removed
implicit calibration) and that ONNX Runtime and OpenVINO also execute on a CPU, so the file
written here is verified here. The graph follows TensorRT's Q/DQ rules (FACTS.md):

- symmetric int8 everywhere, zero point 0;
- per-channel weight scales on axis 0 (output channels) of every Conv weight;
- biases stay float (no int32 bias quantization: TensorRT fuses the bias itself);
- Q/DQ on the *inputs* of Conv and on the residual input of every residual Add, while the
  Conv feeding the Add connects to it directly, so TensorRT fuses Conv + BN + activation +
  residual Add into one INT8 kernel (a float residual input would keep the Add float; a
  Q/DQ pair on the Conv side would split the fusion);
- the final classifier conv and the x8 Resize can stay float (``keep_float``): they decide
  class boundaries and cost little.

Ranges come from ONNX Runtime's calibrators (entropy, minmax, percentile) fed by
``calib.load_calibration`` (the runtime's preprocessing). Every export is checked against
the FP32 model on held-out frames (argmax agreement overall and per class); a failing model
raises ParityError and no file is left behind.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__
from ._io import atomic_path, sha256_file
from .calib import CalibrationData, load_calibration
from .errors import CalibrationError, ConfigError, ExportError, ModelFileError, ParityError
from .manifest import onnx_metadata_props, read_manifest, write_manifest

log = logging.getLogger(__name__)

METHODS = ("entropy", "minmax", "percentile")
KEEP_FLOAT_CHOICES = ("classifier", "resize")
# Op types that get Q/DQ on their inputs. Conv carries ~all the multiply-adds; Add is the
# residual join (quantizing both of its inputs is what lets TensorRT fuse Conv+Add in INT8).
# Everything else (PRelu, pooling, Concat, the tiny attention Gemms, Sigmoid) stays float
# between the quantized convs, as NVIDIA's Q/DQ placement guide recommends: TensorRT
# propagates Q/DQ through such ops itself, and extra Q/DQ pairs only add requantization.
QUANTIZED_OP_TYPES = ("Conv", "Add")
PERCENTILE = 99.999
# Held-out split when no holdout folder is given: every HOLDOUT_EVERY-th frame.
HOLDOUT_EVERY = 5
# Gates (see benchmarks/int8_cpu/README.md for the measurements behind them):
# a correct INT8 model of this network agrees with FP32 on ~97-99% of pixels (untrained
# weights, whose logits have small margins, sit at the low end); a broken one (wrong scales,
# absurd ranges, saturated activations) falls far below. 0.90 overall keeps a clear margin
# on both sides. Per class, small classes suffer first, so they get a lower bar (0.75), and
# classes covering < 0.2% of held-out pixels are reported but not gated (too few pixels
# for a stable ratio).
DEFAULT_GATES = {
    "min_agreement": 0.90,
    "min_class_agreement": 0.75,
    "min_class_fraction": 0.002,
}


@dataclass
class _LocalExportResult:
    """Same fields as ``export.ExportResult``, used only while the export package is absent."""

    path: Path
    manifest_path: Path
    manifest: Dict[str, Any]
    parity: Dict[str, Any] = field(default_factory=dict)


def _result_type():
    try:
        from .export import ExportResult

        return ExportResult
    except ImportError:
        return _LocalExportResult


def _ort():
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("INT8 quantization needs onnxruntime: pip install onnxruntime") from None
    return ort


def _session(path_or_bytes, threads: Optional[int] = None):
    """A CPU ONNX Runtime session: the reference executor of ONNX Q/DQ semantics here."""
    ort = _ort()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = int(threads)
    src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- graph helpers


def _producers(graph) -> Dict[str, Any]:
    return {o: n for n in graph.node for o in n.output}


def find_sensitive_nodes(model) -> Dict[str, List[str]]:
    """The nodes ``keep_float`` names: the x8 Resize(s) before the output, the classifier conv.

    Found by walking back from the graph output rather than by name, so a re-export with
    other node names still finds them.
    """
    graph = model.graph
    prod = _producers(graph)
    out = {"resize": [], "classifier": []}
    frontier = [o.name for o in graph.output]
    seen = set()
    while frontier:
        name = frontier.pop()
        node = prod.get(name)
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type == "Conv":
            out["classifier"].append(node.name)
            continue  # stop at the first conv on each path
        if node.op_type == "Resize":
            out["resize"].append(node.name)
        frontier.extend(i for i in node.input[:1] if i)
    return out


def grouped_convs(model) -> List[str]:
    """Grouped, non-depthwise Convs (DSP 'down', head 'reduce'): kept float.

    OpenVINO (2026.4, CPU) executes these int8 grouped convolutions wrongly from a Q/DQ
    graph: measured on a trained CIFReNet, the output of the first DSP 'down' conv had
    -1.7 dB SNR against FP32 in OpenVINO versus 13.9 dB in ONNX Runtime on the same file,
    and pixel agreement fell from 0.97 to 0.87. Kept float (weights unquantized) both
    engines agree again (0.975 / 0.973). They are ~1% of the network's multiply-adds, so
    TensorRT loses next to nothing by running them in float.
    """
    inits = {i.name: i for i in model.graph.initializer}
    out = []
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        w = inits.get(n.input[1])
        if group > 1 and w is not None and len(w.dims) == 4 and w.dims[1] > 1:
            out.append(n.name)
    return out


def _initializers(graph) -> Dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def _const(name: str, inits: Dict[str, np.ndarray], prod: Dict[str, Any]) -> Optional[np.ndarray]:
    if name in inits:
        return inits[name]
    node = prod.get(name)
    if node is not None and node.op_type == "Constant":
        from onnx import numpy_helper

        for a in node.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
    return None


def _float_source(name: str, prod: Dict[str, Any]) -> str:
    """The op that computed a tensor, looking through a Q -> DQ pair."""
    node = prod.get(name)
    if node is not None and node.op_type == "DequantizeLinear":
        q = prod.get(node.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            node = prod.get(q.input[0])
    return node.op_type if node is not None else "input"


def check_qdq_rules(model, keep_float: Iterable[str] = ()) -> Dict[str, Any]:
    """Check a Q/DQ model against TensorRT's rules; returns counts and a list of problems.

    Works on the graph itself (any producer: ONNX Runtime, Model Optimizer, hand-made), so
    the same check gates our exports, tests them and judges other tools' output.
    """
    from onnx import TensorProto

    graph = model.graph
    inits = _initializers(graph)
    prod = _producers(graph)
    problems: List[str] = []
    q_nodes = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for n in q_nodes:
        zp = _const(n.input[2], inits, prod) if len(n.input) > 2 and n.input[2] else None
        if zp is None:
            if n.op_type == "QuantizeLinear":
                problems.append(f"{n.name}: no zero point (defaults to uint8)")
            continue
        if zp.dtype != np.int8:
            problems.append(f"{n.name}: zero point dtype {zp.dtype} (TensorRT needs int8)")
        if np.any(zp != 0):
            problems.append(f"{n.name}: non-zero zero point (TensorRT needs symmetric)")
    convs = [n for n in graph.node if n.op_type == "Conv"]
    quantized_convs, per_channel = 0, 0
    for conv in convs:
        w_dq = prod.get(conv.input[1])
        x_dq = prod.get(conv.input[0])
        if w_dq is None or w_dq.op_type != "DequantizeLinear":
            continue
        quantized_convs += 1
        if x_dq is None or x_dq.op_type != "DequantizeLinear":
            problems.append(f"{conv.name}: weights quantized but input not")
        w = _const(w_dq.input[0], inits, prod)
        w_q = prod.get(w_dq.input[0])
        if w is None and w_q is not None and w_q.op_type == "QuantizeLinear":
            w = _const(w_q.input[0], inits, prod)  # float weight -> Q -> DQ (fake quant)
        scale = _const(w_dq.input[1], inits, prod)
        axis = next((a.i for a in w_dq.attribute if a.name == "axis"), 1)
        if w is None or scale is None:
            problems.append(f"{conv.name}: weight or scale is not a constant")
            continue
        if scale.ndim == 1 and scale.size == w.shape[0] and axis == 0:
            per_channel += 1
        elif scale.size > 1:
            problems.append(f"{conv.name}: weight scales on axis {axis}, TensorRT expects axis 0")
        if len(conv.input) > 2 and conv.input[2]:
            b = prod.get(conv.input[2])
            if b is not None and b.op_type == "DequantizeLinear":
                problems.append(f"{conv.name}: bias is int32-quantized (keep it float)")
    for init in graph.initializer:
        if init.data_type == TensorProto.INT32 and any(
            n.op_type == "DequantizeLinear" and n.input[0] == init.name for n in graph.node
        ):
            problems.append(f"{init.name}: int32 quantized tensor (bias quantization)")
    adds = [n for n in graph.node if n.op_type == "Add"]
    residual, residual_ok, fusable = 0, 0, 0
    for add in adds:
        srcs = [prod.get(i) for i in add.input]
        if any(i in inits for i in add.input):
            continue  # bias-like add with a constant: not a residual join
        if not any(_float_source(i, prod) == "Conv" for i in add.input):
            continue  # a sum of non-conv branches (MCIM's DSP sum): no Conv+Add fusion
        residual += 1
        kinds = [s.op_type if s is not None else "input" for s in srcs]
        # INT8-fusable: every input quantized, or one straight from a Conv (TensorRT fuses
        # Conv + Add) and the other -- the residual -- quantized.
        if all(k == "DequantizeLinear" for k in kinds):
            residual_ok += 1
        elif sorted(kinds) == ["Conv", "DequantizeLinear"]:
            residual_ok += 1
            fusable += 1
        else:
            problems.append(
                f"{add.name}: residual Add inputs from {'/'.join(kinds)} (the residual input "
                "must be quantized, the other quantized or straight from a Conv)"
            )
    sensitive = find_sensitive_nodes(model)
    for what in keep_float:
        for name in sensitive.get(what, []):
            node = next(n for n in graph.node if n.name == name)
            if any(
                (p := prod.get(i)) is not None and p.op_type == "DequantizeLinear"
                for i in node.input
                if i
            ):
                problems.append(f"{name} ({what}) should stay float but has quantized inputs")
    return {
        "quantize_nodes": sum(n.op_type == "QuantizeLinear" for n in q_nodes),
        "dequantize_nodes": sum(n.op_type == "DequantizeLinear" for n in q_nodes),
        "convs": len(convs),
        "quantized_convs": quantized_convs,
        "per_channel_axis0_convs": per_channel,
        "residual_adds": residual,
        "residual_adds_quantized": residual_ok,
        "conv_add_fusable": fusable,
        "problems": problems,
    }


# --------------------------------------------------------------------------- calibration


class _Reader:
    """ONNX Runtime CalibrationDataReader over CalibrationData, in strides (bounded memory).

    ORT's histogram calibrators keep every activation of every frame they are fed before
    building histograms; feeding a few frames at a time (``CalibStridedMinMax``) keeps
    memory at a few frames' activations whatever the calibration count.
    """

    def __init__(self, batches: Sequence[np.ndarray], input_name: str):
        self.batches = batches
        self.input_name = input_name
        self.start, self.end, self.pos = 0, len(batches), 0

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self.start, self.end, self.pos = start_index, end_index, start_index

    def get_next(self):
        if self.pos >= self.end:
            return None
        self.pos += 1
        return {self.input_name: self.batches[self.pos - 1]}

    def rewind(self) -> None:
        self.pos = self.start


class _Grouped(Sequence[np.ndarray]):
    """Frames stacked into the static batch of a model exported with --batch N."""

    def __init__(self, batches: Sequence[np.ndarray], batch: int):
        self.batches, self.batch = batches, batch
        n = len(batches)
        self.n = max(1, n // batch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if not 0 <= i < self.n:
            raise IndexError(i)  # ends iteration (Sequence's __iter__ relies on it)
        m = len(self.batches)
        idx = [(i * self.batch + k) % m for k in range(self.batch)]  # wraps if too few
        return np.concatenate([self.batches[j] for j in idx])


def _model_batches(batches: Sequence[np.ndarray], manifest: Dict[str, Any]):
    """The inputs as the model takes them: 1xCxHxW, or stacked for a static batch > 1."""
    b = manifest.get("batch")
    if manifest.get("dynamic") is None and isinstance(b, int) and b > 1:
        return _Grouped(batches, b)
    return batches


def _stride(n: int, most: int = 4) -> int:
    return max(d for d in range(1, min(most, n) + 1) if n % d == 0)


def _consumers(graph) -> Dict[str, List[Any]]:
    out: Dict[str, List[Any]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    for o in graph.output:
        out.setdefault(o.name, []).append(None)
    return out


def fuse_residual_adds(model) -> int:
    """Drop the Q/DQ pair between a Conv and the residual Add it feeds; returns how many.

    ONNX Runtime's quantizer puts Q/DQ on both Add inputs. TensorRT fuses Conv + Add (+ the
    Q after it) into one INT8 kernel only when the Conv's output goes straight into the Add
    and the *other* (residual) input is quantized; a Q/DQ pair on the Conv side "forces the
    separation of the convolution from the element-wise addition" (TensorRT developer guide,
    Q/DQ placement recommendations). NVIDIA Model Optimizer emits the same pattern. Removing
    the pair only removes a rounding step, so accuracy can only improve.
    """
    graph = model.graph
    prod = _producers(graph)
    cons = _consumers(graph)
    inits = {i.name for i in graph.initializer}
    dead = set()
    count = 0
    for add in graph.node:
        if add.op_type != "Add" or any(i in inits for i in add.input):
            continue
        for k, name in enumerate(add.input):
            dq = prod.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            qn = prod.get(dq.input[0])
            conv = prod.get(qn.input[0]) if qn is not None else None
            if qn is None or qn.op_type != "QuantizeLinear" or conv is None:
                continue
            if conv.op_type != "Conv":
                continue
            if len(cons.get(qn.input[0], [])) != 1 or len(cons.get(qn.output[0], [])) != 1:
                continue  # the conv output (or its Q) feeds something else too
            if len(cons.get(dq.output[0], [])) != 1:
                continue
            add.input[k] = qn.input[0]
            dead.update((qn.name, dq.name))
            count += 1
            break  # one conv per Add: TensorRT fuses one
    keep = [n for n in graph.node if n.name not in dead]
    del graph.node[:]
    graph.node.extend(keep)
    used = {i for n in graph.node for i in n.input}
    unused = [i for i in graph.initializer if i.name not in used]
    for i in unused:
        graph.initializer.remove(i)
    return count


def _normalise_keep_float(keep_float: Optional[Iterable[str]]) -> Tuple[str, ...]:
    kf = tuple(keep_float or ())
    bad = [k for k in kf if k not in KEEP_FLOAT_CHOICES]
    if bad:
        raise ConfigError(
            f"unknown keep_float entry {bad[0]!r}: choose from {', '.join(KEEP_FLOAT_CHOICES)}"
        )
    return kf


def _check_method(method: str) -> str:
    m = str(method).lower()
    if m not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}: use one of {', '.join(METHODS)}")
    return m


def recipe(method: str, keep_float: Sequence[str], excluded: Sequence[str]) -> Dict[str, Any]:
    """The quantization recipe as recorded in the manifest (what a rebuild needs to repeat)."""
    import onnxruntime

    return {
        "tool": "onnxruntime.quantization.quantize_static",
        "tool_version": onnxruntime.__version__,
        "format": "QDQ",
        "method": method,
        "percentile": PERCENTILE if method == "percentile" else None,
        "activations": "int8 symmetric per-tensor (zero point 0)",
        "weights": "int8 symmetric per-channel, axis 0",
        "bias": "float (not quantized)",
        "quantized_op_types": list(QUANTIZED_OP_TYPES)
        + (["Resize"] if "resize" not in keep_float else []),
        "keep_float": list(keep_float),
        "float_nodes": list(excluded),
    }


def _quantize_to(
    fp32_path: Path,
    out_path: Path,
    batches: Sequence[np.ndarray],
    input_name: str,
    method: str,
    keep_float: Sequence[str],
) -> Dict[str, Any]:
    """Run ONNX Runtime's static quantizer; returns the recipe it followed."""
    import onnx

    _ort()
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    model = onnx.load(str(fp32_path))
    sensitive = find_sensitive_nodes(model)
    excluded = [n for k in keep_float for n in sensitive.get(k, [])]
    excluded += [n for n in grouped_convs(model) if n not in excluded]
    op_types = list(QUANTIZED_OP_TYPES) + (["Resize"] if "resize" not in keep_float else [])
    cal = {
        "entropy": CalibrationMethod.Entropy,
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "CalibStridedMinMax": _stride(len(batches)),
        "CalibPercentile": PERCENTILE,
        "CalibTensorRangeSymmetric": True,
    }
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # ORT logs "please pre-process" warnings through root
    try:
        # ORT's calibrators print() a line per calibration stride; the export prints its own
        # progress and summary, so that chatter is dropped.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(fp32_path),
                str(out_path),
                _Reader(batches, input_name),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=op_types,
                per_channel=True,
                reduce_range=False,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=excluded,
                calibrate_method=cal,
                extra_options=extra,
            )
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ExportError(
            f"onnxruntime could not quantize {fp32_path}: {first} (re-export the FP32 model "
            "with cifrenet-edge export and retry)"
        ) from None
    finally:
        root.setLevel(level)
    qmodel = onnx.load(str(out_path))
    fused = fuse_residual_adds(qmodel)
    onnx.save(qmodel, str(out_path))
    return dict(recipe(method, keep_float, excluded), conv_add_fusions=fused)


# --------------------------------------------------------------------------- verification


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


def verify_int8(
    fp32_path,
    int8_path,
    holdout: CalibrationData,
    classes: Sequence[str],
    input_name: str = "input",
    gates: Optional[Dict[str, float]] = None,
    manifest: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Compare an INT8 model with its FP32 source on held-out frames; the parity record.

    Both run in ONNX Runtime's CPU provider, the reference implementation of ONNX Q/DQ
    semantics here. Returns the record with ``passed`` and, if it failed, ``failures``.
    """
    g = dict(DEFAULT_GATES)
    unknown = set(gates or {}) - set(g)
    if unknown:
        raise ConfigError(
            f"unknown INT8 gate {sorted(unknown)[0]!r}: use {', '.join(DEFAULT_GATES)}"
        )
    g.update(gates or {})
    try:
        s32 = _session(Path(fp32_path))
        s8 = _session(Path(int8_path))
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ExportError(f"onnxruntime cannot load the INT8 model: {first}") from None
    ref, got = [], []
    t0 = time.perf_counter()
    inputs = _model_batches(holdout.batches, manifest or {})
    for x in inputs:
        ref.append(s32.run(None, {input_name: x})[0])
        got.append(s8.run(None, {input_name: x})[0])
    rep = agreement_report(ref, got, classes)
    ov_rep = _openvino_agreement(int8_path, inputs, ref, classes, input_name)
    gated = {
        k: v["agreement"]
        for k, v in rep["per_class"].items()
        if v["fraction"] >= g["min_class_fraction"] and v["agreement"] is not None
    }
    worst = min(gated, key=gated.get) if gated else None
    failures = []
    if rep["agreement"] < g["min_agreement"]:
        failures.append(f"pixel agreement {rep['agreement']:.3f} < {g['min_agreement']}")
    if worst is not None and gated[worst] < g["min_class_agreement"]:
        failures.append(
            f"class {worst!r} agreement {gated[worst]:.3f} < {g['min_class_agreement']}"
        )
    if ov_rep is not None:
        # The runtime executes INT8 with OpenVINO on x86 CPUs: gate what it will compute.
        rep["openvino"] = ov_rep
        if ov_rep["agreement"] < g["min_agreement"]:
            failures.append(
                f"OpenVINO pixel agreement {ov_rep['agreement']:.3f} < {g['min_agreement']}"
            )
    rep.update(
        {
            "reference": "fp32 onnx, onnxruntime CPU",
            "runner": "onnxruntime CPUExecutionProvider",
            "holdout": {
                k: holdout.fingerprint.get(k) for k in ("source", "kind", "count", "role", "sha256")
            },
            "gates": g,
            "worst_class": worst,
            "worst_class_agreement": gated.get(worst) if worst else None,
            "passed": not failures,
            "failures": failures,
            "seconds": round(time.perf_counter() - t0, 2),
        }
    )
    return rep


def _openvino_agreement(int8_path, inputs, ref, classes, input_name) -> Optional[Dict[str, Any]]:
    """Agreement of OpenVINO's execution of the INT8 file with FP32, or None without it.

    Same settings as the runtime's OpenVINO backend: f32 inference precision (no silent
    bf16 on AMX/AVX512-BF16 CPUs), LATENCY hint.
    """
    try:
        import openvino as ov
    except ImportError:
        return None
    try:
        compiled = ov.Core().compile_model(
            str(int8_path),
            "CPU",
            {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"},
        )
    except Exception as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ExportError(
            f"OpenVINO cannot compile the INT8 model ({first}): report this as a bug"
        ) from None
    got = [compiled({input_name: x})[0] for x in inputs]
    rep = agreement_report(ref, got, classes)
    return {
        "runner": f"openvino {ov.__version__} CPU, f32 inference precision",
        "agreement": rep["agreement"],
        "logits_snr_db": rep["logits_snr_db"],
        "per_class": {k: v["agreement"] for k, v in rep["per_class"].items()},
    }


# --------------------------------------------------------------------------- public entry


def default_int8_path(fp32_path: Path) -> Path:
    stem = fp32_path.name[: -len(".onnx")] if fp32_path.name.endswith(".onnx") else fp32_path.name
    stem = stem.replace("_fp32", "")
    return fp32_path.with_name(f"{stem}_int8.onnx")


def _split(data: CalibrationData) -> Tuple[CalibrationData, CalibrationData]:
    n = len(data)
    if n < 2:
        raise CalibrationError(
            f"{n} calibration frame cannot be split into calibration and held-out frames: "
            "pass more frames or a separate --holdout folder"
        )
    held = list(range(HOLDOUT_EVERY - 1, n, HOLDOUT_EVERY)) or [n - 1]
    keep = [i for i in range(n) if i not in set(held)]
    return data.subset(keep, "calibration"), data.subset(held, "holdout (split)")


def _check_preprocessing(data: CalibrationData, wh, mean_bgr, scale, what: str) -> None:
    pp = data.fingerprint["preprocessing"]
    if list(pp["wh"]) != list(wh):
        raise CalibrationError(
            f"{what} frames were preprocessed at {pp['wh'][0]}x{pp['wh'][1]} but the model "
            f"takes {wh[0]}x{wh[1]}: load them with load_calibration(path, {tuple(wh)})"
        )
    if not np.allclose(pp["mean_bgr"], mean_bgr) or not np.isclose(pp["scale"], scale):
        raise CalibrationError(
            f"{what} frames were normalised with mean {pp['mean_bgr']} / scale {pp['scale']} "
            f"but the model expects {list(mean_bgr)} / {scale}: reload them with the model's "
            "preset"
        )


def quantize_onnx(
    fp32_path,
    *,
    calib,
    output=None,
    method: str = "entropy",
    count: Optional[int] = None,
    keep_float: Optional[Iterable[str]] = ("classifier", "resize"),
    holdout=None,
    gates: Optional[Dict[str, float]] = None,
    quiet: bool = False,
):
    """Quantize an exported FP32 ONNX model to a verified INT8 Q/DQ model + manifest.

    ``calib``: a calibration source path (folder, video, image list) or CalibrationData.
    ``holdout``: a folder/video/list of frames never used for calibration; without it every
    5th calibration frame is held out (and not calibrated on). Raises ParityError when the
    INT8 model disagrees with FP32 beyond ``gates`` (DEFAULT_GATES); nothing is written then.
    """
    import onnx

    method = _check_method(method)
    kf = _normalise_keep_float(keep_float)
    src = Path(fp32_path).expanduser()
    if not src.is_file():
        raise ModelFileError(f"FP32 model {src} does not exist: export it first")
    manifest = read_manifest(src)
    if manifest.get("precision") != "fp32":
        raise ModelFileError(
            f"{src} is a {manifest.get('precision')} model: quantize the FP32 export instead"
        )
    res = manifest.get("resolution") or (manifest.get("dynamic") or {}).get("opt")
    wh = (int(res[0]), int(res[1]))
    mean, scale = manifest["mean_bgr"], manifest["scale"]
    input_name = manifest.get("input_name", "input")

    if isinstance(calib, CalibrationData):
        data = calib
        _check_preprocessing(data, wh, mean, scale, "calibration")
        if count is not None and count < len(data):
            from .calib import evenly_spaced

            data = data.subset(evenly_spaced(len(data), count), "calibration")
    else:
        data = load_calibration(calib, wh, count=count, mean_bgr=mean, scale=scale)
    if holdout is None:
        cal, held = _split(data)
        holdout_kind = f"split: every {HOLDOUT_EVERY}th calibration frame, not calibrated on"
    else:
        cal = data
        held = (
            holdout
            if isinstance(holdout, CalibrationData)
            else load_calibration(holdout, wh, mean_bgr=mean, scale=scale, role="holdout")
        )
        _check_preprocessing(held, wh, mean, scale, "held-out")
        overlap = {f["sha256"] for f in cal.fingerprint.get("files", [])} & {
            f["sha256"] for f in held.fingerprint.get("files", [])
        }
        if overlap:
            raise CalibrationError(
                f"{len(overlap)} held-out image(s) are also calibration images: the check "
                "needs frames the ranges were not measured on; use disjoint folders"
            )
        holdout_kind = "separate holdout source"

    out = Path(output).expanduser() if output else default_int8_path(src)
    if out.resolve() == src.resolve():
        raise ConfigError(f"output {out} would overwrite the FP32 model: choose another --output")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cifrenet_int8_") as tmp:
        raw = Path(tmp) / "int8.onnx"
        rec = _quantize_to(src, raw, _model_batches(cal.batches, manifest), input_name, method, kf)
        qmodel = onnx.load(str(raw))
        rules = check_qdq_rules(qmodel, kf)
        if rules["problems"]:
            raise ExportError(
                f"the INT8 graph breaks TensorRT's Q/DQ rules ({len(rules['problems'])} "
                f"problems, first: {rules['problems'][0]}): report this as a bug"
            )
        parity = verify_int8(
            src, raw, held, manifest["classes"], input_name, gates, manifest=manifest
        )
        parity["holdout"]["how"] = holdout_kind
        if not parity["passed"]:
            raise ParityError(
                "INT8 model disagrees with FP32 on held-out frames ("
                + "; ".join(parity["failures"])
                + f"; worst class {parity['worst_class']!r}): calibrate on more/better frames "
                "from the deployment camera, try --calib-method percentile or minmax, or keep "
                "more layers float"
            )
        m8 = dict(manifest)
        m8.update(
            {
                "precision": "int8",
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "toolkit_version": __version__,
                "calibration": cal.fingerprint,
                "quantization": dict(rec, graph=rules),
                "source": {"onnx": str(src), "onnx_sha256": sha256_file(src)},
                "parity": parity,
            }
        )
        del qmodel.metadata_props[:]
        for k, v in onnx_metadata_props(m8).items():
            entry = qmodel.metadata_props.add()
            entry.key, entry.value = k, v
        with atomic_path(out) as tmp_out:
            onnx.save(qmodel, str(tmp_out))
        try:
            mpath = write_manifest(out, m8)
        except BaseException:
            out.unlink()  # an INT8 file without its manifest must not survive
            raise
    if not quiet:
        log.info(
            "INT8 %s: agreement %.4f on %d held-out frames, worst class %s (%.1fs)",
            out,
            parity["agreement"],
            held.fingerprint["count"],
            parity["worst_class"],
            time.perf_counter() - t0,
        )
    return _result_type()(path=out, manifest_path=mpath, manifest=m8, parity=parity)
