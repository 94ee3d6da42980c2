"""What each TensorRT refuses, as one table of rules with their sources, checked without a GPU.

A TensorRT build fails late: on the Jetson, minutes into the build, after the ONNX was
exported, quantized and copied there. Most refusals are known in advance from NVIDIA's
parser code, headers, documentation and issue threads, so they are written down here once,
each with the TensorRT versions it applies to, its severity, the fix and its source, and run
in two places:

* at export (``cifrenet_edge.export``), for the chosen ``--target``: the graph rules on the
  exported ONNX, the option rules on the export's options. The GPU is unknown there, so a
  hardware rule runs only where the target implies the device (trt8.2 is the Jetson Nano /
  TX2: no INT8 hardware), and only as a warning;
* before every engine build (``cifrenet_edge.trt.build``), with the real TensorRT version,
  compute capability and DLA cores: every rule, at its own severity.

A target spans several TensorRT versions (trt10 is 10.0 ... 10.x); a rule that covers only
part of that span is reported as a warning at export and decided on the device.

The table itself is data, ``resources/trt_rules.json`` (``python3 -m cifrenet_edge.trt.rules``
prints it as Markdown); ``CHECKS`` maps each rule id to the function that detects it (a
test asserts both agree and that every rule has a breaking and a passing case). The graph
checks read an ``onnx.ModelProto``-like object (``graph.node``, ``graph.initializer``...)
with the standard library only: no numpy, no onnx needed. Python 3.8 syntax: the device
builder imports this module on JetPack 5.
"""

import json
import struct
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from ..errors import BackendUnavailableError, ConfigError, ExportError, UnsupportedOpError
from .api import parse_version, target_for_version

Version = Tuple[int, int, int]
Span = Tuple[Version, Version]  # [first, end): the TensorRT versions in question


class Rule(NamedTuple):
    """One thing a TensorRT version refuses, or accepts only to the user's loss."""

    id: str
    since: Version  # first TensorRT version it applies to
    until: Optional[Version]  # first version it no longer applies to (None: still applies)
    severity: str  # "error" (the build fails or the engine is wrong) or "warning"
    kind: str  # "graph" (the ONNX), "options" (what was asked), "hardware", "plan" (our flags)
    refuses: str  # what TensorRT does, in a few words
    fix: str  # what the user does instead
    source: str  # where this is written down


class Finding(NamedTuple):
    rule: Rule
    severity: str  # the rule's, or "warning" where it covers only part of the target
    detail: str  # what was found (node names, the GPU ...)
    partial: bool = False  # the rule holds for only some of the target's TensorRT versions

    def line(self) -> str:
        scope = f" on TensorRT {applies_to(self.rule)}" if self.partial else ""
        return f"{self.rule.refuses}{scope} ({self.detail}): {self.rule.fix} [{self.rule.id}]"


V10, V11 = (10, 0, 0), (11, 0, 0)
TABLE = Path(__file__).resolve().parents[1] / "resources" / "trt_rules.json"


def load_rules(path: Path = TABLE) -> Tuple[Rule, ...]:
    """The table (``resources/trt_rules.json``): one row per rule, with its source."""
    rows = json.loads(path.read_text(encoding="utf-8"))["rules"]
    return tuple(
        Rule(
            id=r["id"],
            since=parse_version(r["since"]),
            until=parse_version(r["until"]) if r.get("until") else None,
            severity=r["severity"],
            kind=r["kind"],
            refuses=r["refuses"],
            fix=r["fix"],
            source=r["source"],
        )
        for r in rows
    )


RULES: Tuple[Rule, ...] = load_rules()
RULE_BY_ID: Dict[str, Rule] = {r.id: r for r in RULES}

# The TensorRT versions each export target stands for (trt.api.target_for_version maps
# back; a test checks both agree), and the device a target implies where it implies one.
TARGET_SPANS: Dict[str, Span] = {
    "trt8.2": ((8, 2, 0), (8, 5, 0)),
    "trt8.5": ((8, 5, 0), (8, 6, 0)),
    "trt8.6": ((8, 6, 0), (10, 0, 0)),
    "trt10": (V10, V11),
    "trt11": (V11, (12, 0, 0)),
}
# (device, fast FP16, fast INT8): from env.precision_support's table for the devices the
# README assigns to the target.
TARGET_DEVICES: Dict[str, Tuple[str, bool, bool]] = {
    "trt8.2": ("Jetson Nano / TX2 (cc 5.3 / 6.2)", True, False),
    "trt8.6": ("GTX 1080 Ti (cc 6.1)", False, True),
}
# The parser listing (resources/onnx_parser_ops) each target is checked against, as export does.
TARGET_LISTING: Dict[str, Version] = {
    "trt8.2": (8, 2, 1),
    "trt8.5": (8, 5, 2),
    "trt8.6": (8, 6, 1),
    "trt10": (10, 3, 0),
    "trt11": (11, 1, 0),
}
PRECISION_FLAGS = ("FP16", "INT8", "BF16", "FP8", "INT4", "FP4")


def version_span(version: Version) -> Span:
    """The span of exactly one TensorRT version."""
    v = (int(version[0]), int(version[1]), int(version[2]))
    return v, (v[0], v[1], v[2] + 1)


def applies_to(rule: Rule) -> str:
    """'8.x', '10.x', '>= 10.0', '11.0-11.4.0' ...: the rule's versions in words."""
    lo = "{}.{}".format(*rule.since[:2])
    hi = rule.until
    if hi is None:
        return f">= {lo}"
    if rule.since[1:] == (0, 0) and hi[1:] == (0, 0):
        # 8.0 up to 10.0 holds every 8.x release (9.x shipped only inside TensorRT-LLM)
        return f"{rule.since[0]}.x"
    last = f"{hi[0]}.{hi[1]}.{hi[2] - 1}" if hi[2] else f"{hi[0]}.{hi[1] - 1}.x"
    return f"{lo}-{last}"


def _coverage(rule: Rule, span: Span) -> str:
    """'all', 'part' or 'none' of the span is inside the rule's versions."""
    lo, end = span
    if end <= rule.since or (rule.until is not None and rule.until <= lo):
        return "none"
    if rule.since <= lo and (rule.until is None or rule.until >= end):
        return "all"
    return "part"


# ------------------------------------------------------------------------- the ONNX graph
# TensorProto.DataType values (onnx/onnx.proto); names only for messages.
FLOAT, UINT8, INT8, FLOAT16, DOUBLE, BFLOAT16 = 1, 2, 3, 10, 11, 16
FLOAT_TYPES = {FLOAT: "float32", FLOAT16: "float16", DOUBLE: "float64", BFLOAT16: "bfloat16"}
QDQ = ("QuantizeLinear", "DequantizeLinear")
# Ops whose ONNX schema binds these inputs to one type variable T.
SAME_TYPE_INPUTS: Dict[str, Optional[Tuple[int, ...]]] = {
    "Add": None,
    "Sub": None,
    "Mul": None,
    "Div": None,
    "Sum": None,
    "Max": None,
    "Min": None,
    "Mean": None,
    "Concat": None,
    "PRelu": None,
    "Conv": None,
    "ConvTranspose": None,
    "MatMul": None,
    "Gemm": None,
    "Clip": None,
    "Equal": None,
    "Less": None,
    "Greater": None,
    "Where": (1, 2),
}
# Ops whose output has the type of input 0 (enough to follow float types through this
# network: activations, pooling, shape moves, resize).
SAME_TYPE_OUTPUT = set(SAME_TYPE_INPUTS) | {
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "HardSigmoid",
    "HardSwish",
    "Tanh",
    "Softmax",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "ReduceMean",
    "Reshape",
    "Transpose",
    "Flatten",
    "Squeeze",
    "Unsqueeze",
    "Slice",
    "Pad",
    "Identity",
    "Resize",
    "Upsample",
    "BatchNormalization",
    "Neg",
    "Abs",
    "Sqrt",
    "Expand",
    "Split",
}


def _attr(node: Any, name: str) -> Optional[Any]:
    for a in node.attribute:
        if a.name == name:
            return a
    return None


def _label(node: Any, i: int) -> str:
    return node.name or f"{node.op_type}#{i}"


def _numel(tensor: Any) -> int:
    n = 1
    for d in tensor.dims:
        n *= int(d)
    return n


def _int_values(tensor: Any) -> Optional[List[int]]:
    """Integer values of an 8-bit/32-bit tensor, or None when they are not stored inline."""
    if tensor.raw_data:
        fmt = {INT8: "b", UINT8: "B"}.get(int(tensor.data_type))
        if fmt is None:
            return None
        raw = bytes(tensor.raw_data)
        return list(struct.unpack(f"<{len(raw)}{fmt}", raw))
    if len(tensor.int32_data):
        return [int(v) for v in tensor.int32_data]
    return None


def _float_values(tensor: Any) -> Optional[List[float]]:
    dt = int(tensor.data_type)
    if tensor.raw_data:
        fmt = {FLOAT: "f", FLOAT16: "e", DOUBLE: "d"}.get(dt)
        if fmt is None:
            return None
        raw = bytes(tensor.raw_data)
        n = len(raw) // struct.calcsize(fmt)
        return list(struct.unpack(f"<{n}{fmt}", raw))
    if dt == FLOAT and len(tensor.float_data):
        return [float(v) for v in tensor.float_data]
    if dt == DOUBLE and len(tensor.double_data):
        return [float(v) for v in tensor.double_data]
    if dt == FLOAT16 and len(tensor.int32_data):
        return [struct.unpack("<e", struct.pack("<H", int(v)))[0] for v in tensor.int32_data]
    return None


class GraphView:
    """Constants, producers and known element types of a model's main graph."""

    def __init__(self, model: Any) -> None:
        g = model.graph
        self.model = model
        self.nodes = list(g.node)
        self.consts: Dict[str, Any] = {t.name: t for t in g.initializer}
        self.producer: Dict[str, Any] = {}
        self.types: Dict[str, int] = {}
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            et = int(vi.type.tensor_type.elem_type)
            if et:
                self.types[vi.name] = et
        for name, t in self.consts.items():
            self.types[name] = int(t.data_type)
        for node in self.nodes:
            for out in node.output:
                self.producer[out] = node
            if node.op_type == "Constant" and node.output:
                value = _attr(node, "value")
                if value is not None and value.t is not None:
                    self.consts[node.output[0]] = value.t
                    self.types[node.output[0]] = int(value.t.data_type)
            self._infer_type(node)

    def _infer_type(self, node: Any) -> None:
        if not node.output or node.output[0] in self.types:
            return
        out, op = node.output[0], node.op_type
        if op == "Cast":
            to = _attr(node, "to")
            if to is not None:
                self.types[out] = int(to.i)
        elif op == "DequantizeLinear" and len(node.input) > 1:
            if node.input[1] in self.types:
                self.types[out] = self.types[node.input[1]]
        elif op == "QuantizeLinear":
            zp = node.input[2] if len(node.input) > 2 and node.input[2] else None
            self.types[out] = self.types.get(zp, UINT8) if zp else UINT8
        elif op in SAME_TYPE_OUTPUT and node.input and node.input[0] in self.types:
            self.types[out] = self.types[node.input[0]]

    def const(self, name: str) -> Optional[Any]:
        return self.consts.get(name) if name else None

    def rooted_at_constant(self, name: str, depth: int = 0) -> bool:
        """Whether a tensor is computed from constants only (weights, possibly via Q/DQ)."""
        if name in self.consts:
            return True
        node = self.producer.get(name)
        if node is None or depth > 8:
            return False
        data_inputs = [i for i in node.input[:1] if i]
        return bool(data_inputs) and all(self.rooted_at_constant(i, depth + 1) for i in data_inputs)

    def qdq_nodes(self) -> Iterable[Tuple[int, Any]]:
        for i, node in enumerate(self.nodes):
            if node.op_type in QDQ and node.domain in ("", "ai.onnx"):
                yield i, node


def _names(found: Sequence[str], limit: int = 6) -> Optional[str]:
    if not found:
        return None
    more = f" +{len(found) - limit} more" if len(found) > limit else ""
    return ", ".join(found[:limit]) + more


class Context(NamedTuple):
    """Everything a check may look at; fields a caller does not know are None."""

    span: Span
    graph: Optional[GraphView] = None
    precision: Optional[str] = None
    int8_mode: Optional[str] = None  # "qdq" / "calibrator" when precision is int8
    dynamic: bool = False
    dla_core: Optional[int] = None
    dla_cores: Optional[int] = None  # None: unknown (no device)
    compute_capability: Optional[str] = None
    fast_fp16: Optional[bool] = None
    fast_int8: Optional[bool] = None
    device: Optional[str] = None  # the GPU, or the device a target implies
    network_flags: Tuple[str, ...] = ()
    builder_flags: Tuple[str, ...] = ()
    strongly_typed: bool = False
    parser_opsets: Optional[Tuple[Optional[int], int]] = None  # (min or None, max)


def _check_opset(c: Context) -> Optional[str]:
    if c.graph is None or c.parser_opsets is None:
        return None
    opset = None
    for imp in c.graph.model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            opset = int(imp.version)
    lo, hi = c.parser_opsets
    if opset is None or ((lo is None or opset >= lo) and opset <= hi):
        return None
    return f"opset {opset}, parser reads {lo or 1}..{hi}: --target {target_for_version(c.span[0])}"


def _check_int8_weights(c: Context) -> Optional[str]:
    g = c.graph
    if g is None:
        return None
    found = []
    for i, node in g.qdq_nodes():
        t = g.const(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if t is not None and int(t.data_type) == INT8:
            found.append(f"{_label(node, i)} <- {node.input[0]}")
    return _names(found)


def _zero_point(g: GraphView, node: Any) -> Optional[Any]:
    return g.const(node.input[2]) if len(node.input) > 2 else None


def _qdq_offenders(c: Context, bad: Callable[[GraphView, Any], bool]) -> Optional[str]:
    """The Q/DQ nodes of the graph for which ``bad`` holds, named; None without a graph."""
    g = c.graph
    if g is None:
        return None
    return _names([_label(node, i) for i, node in g.qdq_nodes() if bad(g, node)])


def _nonzero_zero_point(g: GraphView, node: Any) -> bool:
    zp = _zero_point(g, node)
    values = _int_values(zp) if zp is not None else None
    return bool(values) and any(v != 0 for v in values)


def _uint8_typed(g: GraphView, node: Any) -> bool:
    zp = node.input[2] if len(node.input) > 2 else ""
    x = node.input[0] if node.op_type == "DequantizeLinear" else ""
    return bool((zp and g.types.get(zp) == UINT8) or (x and g.types.get(x) == UINT8))


def _no_zero_point(g: GraphView, node: Any) -> bool:
    return len(node.input) < 3 or not node.input[2]


def _half_typed(g: GraphView, node: Any) -> bool:
    scale_type = g.types.get(node.input[1]) if len(node.input) > 1 else None
    x_type = g.types.get(node.input[0]) if node.op_type == "QuantizeLinear" else None
    return FLOAT16 in (scale_type, x_type) or BFLOAT16 in (scale_type, x_type)


def _non_positive_scale(g: GraphView, node: Any) -> bool:
    scale = g.const(node.input[1]) if len(node.input) > 1 else None
    values = _float_values(scale) if scale is not None else None
    return bool(values) and any(not v > 0 for v in values)


def _per_channel_activation(g: GraphView, node: Any) -> bool:
    scale = g.const(node.input[1]) if len(node.input) > 1 else None
    if scale is None or _numel(scale) <= 1:
        return False
    return not g.rooted_at_constant(node.input[0])


def _check_zero_point(c: Context) -> Optional[str]:
    return _qdq_offenders(c, _nonzero_zero_point)


def _check_uint8(c: Context) -> Optional[str]:
    return _qdq_offenders(c, _uint8_typed)


def _check_zero_point_missing(c: Context) -> Optional[str]:
    return _qdq_offenders(c, _no_zero_point)


def _check_fp32_only(c: Context) -> Optional[str]:
    return _qdq_offenders(c, _half_typed)


def _check_scale_positive(c: Context) -> Optional[str]:
    return _qdq_offenders(c, _non_positive_scale)


def _check_per_channel_activation(c: Context) -> Optional[str]:
    return _qdq_offenders(c, _per_channel_activation)


def _weight_rank(g: GraphView, dq: Any) -> Optional[int]:
    """Rank of the weights behind a DequantizeLinear (directly, or through a QuantizeLinear)."""
    t = g.const(dq.input[0])
    if t is None:
        q = g.producer.get(dq.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            t = g.const(q.input[0])
    return len(t.dims) if t is not None else None


def _check_weight_axis(c: Context) -> Optional[str]:
    g = c.graph
    if g is None:
        return None
    found = []
    for i, node in enumerate(g.nodes):
        if node.op_type != "Conv" or len(node.input) < 2:
            continue
        dq = g.producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 2:
            continue
        scale = g.const(dq.input[1])
        if scale is None or _numel(scale) <= 1:
            continue
        axis_attr = _attr(dq, "axis")
        if axis_attr is None:
            found.append(f"{_label(node, i)} (axis not set)")
            continue
        axis, rank = int(axis_attr.i), _weight_rank(g, dq)
        if axis < 0 and rank is not None:
            axis += rank
        if axis != 0 and not (axis < 0 and rank is None):
            found.append(f"{_label(node, i)} (axis {int(axis_attr.i)})")
    return _names(found)


def _check_mixed_inputs(c: Context) -> Optional[str]:
    g = c.graph
    if g is None:
        return None
    found = []
    for i, node in enumerate(g.nodes):
        if node.op_type not in SAME_TYPE_INPUTS or node.domain not in ("", "ai.onnx"):
            continue
        idx = SAME_TYPE_INPUTS[node.op_type]
        names = [n for k, n in enumerate(node.input) if n and (idx is None or k in idx)]
        kinds = {g.types[n] for n in names if g.types.get(n) in FLOAT_TYPES}
        if len(kinds) > 1:
            types = "/".join(sorted(FLOAT_TYPES[k] for k in kinds))
            found.append(f"{_label(node, i)} ({node.op_type} of {types})")
    return _names(found)


def _where(c: Context) -> str:
    if c.compute_capability:
        return f"{c.device or 'GPU'}, compute capability {c.compute_capability}"
    return f"target implies {c.device}" if c.device else "this GPU"


def _check_hw_int8(c: Context) -> Optional[str]:
    return _where(c) if c.precision == "int8" and c.fast_int8 is False else None


def _check_hw_fp16(c: Context) -> Optional[str]:
    slow = c.precision == "fp16" and c.fast_fp16 is False
    return _where(c) if slow and c.fast_int8 is not False else None


def _check_hw_fp16_none(c: Context) -> Optional[str]:
    slow = c.precision == "fp16" and c.fast_fp16 is False
    return _where(c) if slow and c.fast_int8 is False else None


def _cc(c: Context) -> Optional[Tuple[int, int]]:
    """The compute capability as (major, minor); None when unknown or unreadable."""
    try:
        major, minor = str(c.compute_capability or "").split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def _sm_check(test: Callable[[Tuple[int, int]], bool]) -> Callable[[Context], Optional[str]]:
    """A support-matrix check: fires on the GPUs ``test`` names (the rule holds the versions).

    Runs whatever was asked: an unsupported GPU fails every build, so it is refused before
    the export and the quantization, and ``info --env`` reports it the same way.
    """

    def check(c: Context) -> Optional[str]:
        cc = _cc(c)
        return _where(c) if cc is not None and test(cc) else None

    return check


def _check_fp32_float_parts(c: Context) -> Optional[str]:
    """A Q/DQ graph with no half-precision scale: a DequantizeLinear outputs its scale's type."""
    g = c.graph
    if g is None:
        return None
    scales = [g.types.get(node.input[1]) for _, node in g.qdq_nodes() if len(node.input) > 1]
    if not scales or any(t in (FLOAT16, BFLOAT16) for t in scales):
        return None
    return f"{len(scales)} Q/DQ nodes, all scales float32: --target {target_for_version(c.span[0])}"


def _check_dla_index(c: Context) -> Optional[str]:
    return f"--dla-core {c.dla_core}" if c.dla_core is not None and c.dla_core < 0 else None


def _check_dla_cores(c: Context) -> Optional[str]:
    if c.dla_core is None or c.dla_cores is None or c.dla_core < 0:
        return None
    if c.dla_core < c.dla_cores:
        return None
    return f"--dla-core {c.dla_core} asked, this device has {c.dla_cores} DLA cores"


def _check_dla_fp32(c: Context) -> Optional[str]:
    return "--precision fp32" if c.dla_core is not None and c.precision == "fp32" else None


def _check_dla_dynamic(c: Context) -> Optional[str]:
    return "--dynamic model" if c.dla_core is not None and c.dynamic else None


def _check_dla_explicit(c: Context) -> Optional[str]:
    if c.dla_core is None or c.precision != "int8" or (c.int8_mode or "qdq") != "qdq":
        return None
    return "--precision int8 --int8-mode qdq"


def _check_dla_any(c: Context) -> Optional[str]:
    return f"--dla-core {c.dla_core}" if c.dla_core is not None else None


def _check_calibrator(c: Context) -> Optional[str]:
    return (
        "--int8-mode calibrator" if c.precision == "int8" and c.int8_mode == "calibrator" else None
    )


def _check_strong_flags(c: Context) -> Optional[str]:
    if not c.strongly_typed:
        return None
    bad = [f for f in c.builder_flags if f in PRECISION_FLAGS]
    return "STRONGLY_TYPED with " + ", ".join(bad) if bad else None


CHECKS: Dict[str, Callable[[Context], Optional[str]]] = {
    "onnx.opset": _check_opset,
    "qdq.int8-weights": _check_int8_weights,
    "qdq.zero-point": _check_zero_point,
    "qdq.uint8": _check_uint8,
    "qdq.zero-point-missing": _check_zero_point_missing,
    "qdq.fp32-only": _check_fp32_only,
    "qdq.scale-positive": _check_scale_positive,
    "qdq.per-channel-activation": _check_per_channel_activation,
    "qdq.weight-axis": _check_weight_axis,
    "types.mixed-inputs": _check_mixed_inputs,
    "qdq.fp32-float-parts": _check_fp32_float_parts,
    "hw.int8": _check_hw_int8,
    "hw.fp16-slow": _check_hw_fp16,
    "hw.fp16-none": _check_hw_fp16_none,
    # NVIDIA's support matrix: which compute capabilities each TensorRT runs on (the rule
    # rows hold the versions and sources)
    "hw.sm-maxwell": _sm_check(lambda cc: cc in ((5, 0), (5, 2))),
    "hw.sm-jetson-tx": _sm_check(lambda cc: cc in ((5, 3), (6, 2))),
    "hw.sm-pascal": _sm_check(lambda cc: cc in ((6, 0), (6, 1))),
    "hw.sm-xavier": _sm_check(lambda cc: cc == (7, 2)),
    "hw.sm-volta": _sm_check(lambda cc: cc == (7, 0)),
    "hw.sm-ada": _sm_check(lambda cc: cc == (8, 9)),
    "hw.sm-blackwell": _sm_check(lambda cc: cc[0] >= 10),
    "dla.core-index": _check_dla_index,
    "dla.no-core": _check_dla_cores,
    "dla.fp32": _check_dla_fp32,
    "dla.dynamic": _check_dla_dynamic,
    "dla.explicit-int8": _check_dla_explicit,
    "dla.explicit-int8-gpu": _check_dla_explicit,
    "dla.unsupported": _check_dla_any,
    "calib.removed": _check_calibrator,
    "st.precision-flags": _check_strong_flags,
}


# ------------------------------------------------------------------------- running the table
def evaluate(
    c: Context,
    kinds: Sequence[str],
    implied: bool = False,
    table: Optional[Sequence[Rule]] = None,
) -> List[Finding]:
    """Findings of every rule of ``kinds`` that applies to ``c.span``, in table order.

    ``implied``: the hardware facts come from the target, not a measured GPU; such
    findings are warnings. ``table``: another rule table (default ``RULES``; the tests drop
    one rule at a time to show that each is needed).
    """
    out: List[Finding] = []
    for rule in RULES if table is None else table:
        if rule.kind not in kinds:
            continue
        cover = _coverage(rule, c.span)
        if cover == "none":
            continue
        detail = CHECKS[rule.id](c)
        if detail is None:
            continue
        severity = rule.severity
        if cover == "part" or (implied and rule.kind == "hardware"):
            severity = "warning"
        out.append(Finding(rule, severity, detail, cover == "part"))
    return out


_ERRORS = {
    "graph": UnsupportedOpError,
    "options": ConfigError,
    "hardware": BackendUnavailableError,
    "plan": ExportError,
}


def raise_errors(findings: Sequence[Finding], prefix: str) -> List[str]:
    """Raise the errors as one line (the first error's type); return the warnings' lines."""
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        exc = _ERRORS[errors[0].rule.kind]
        raise exc(prefix + "; ".join(f.line() for f in errors))
    return [f.line() for f in findings if f.severity == "warning"]


def _listing_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "resources" / "onnx_parser_ops"


def parser_opsets(version: Version) -> Optional[Tuple[Optional[int], int]]:
    """(min, max) opset of the parser listing closest to ``version`` (at or below it)."""
    listed = []
    for path in _listing_dir().glob("onnx-parser-ops-*.json"):
        nums = [int(p) for p in path.stem.split("-")[-1].split(".")]
        listed.append(((*nums, 0, 0)[:3], path))
    if not listed:
        return None
    listed.sort()
    below = [item for item in listed if item[0] <= tuple(version)]
    _, path = below[-1] if below else listed[0]
    data = json.loads(path.read_text(encoding="utf-8"))
    lo = data.get("opset_min")
    return (int(lo) if lo is not None else None, int(data["opset_max"]))


def target_span(target: str) -> Span:
    if target not in TARGET_SPANS:
        raise ConfigError(
            f"no TensorRT rules for target {target!r}: use one of {list(TARGET_SPANS)}"
        )
    return TARGET_SPANS[target]


def check_export_options(
    target: str,
    precision: str,
    int8_mode: Optional[str] = None,
    dynamic: bool = False,
    dla_core: Optional[int] = None,
) -> List[str]:
    """The option rules for an export to ``target``: raise on errors, return warnings.

    Runs before the (slow) export so a DLA/dynamic mismatch costs seconds, not minutes.
    """
    if target not in TARGET_SPANS:
        return []  # onnxruntime: no TensorRT rules
    device = TARGET_DEVICES.get(target)
    c = Context(
        span=target_span(target),
        precision=precision,
        int8_mode=int8_mode if precision == "int8" else None,
        dynamic=dynamic,
        dla_core=dla_core,
        device=device[0] if device else None,
        fast_fp16=device[1] if device else None,
        fast_int8=device[2] if device else None,
    )
    found = evaluate(c, ("options", "hardware"), implied=True)
    return raise_errors(found, f"not buildable for --target {target}: ")


def check_graph(model: Any, span: Span, where: str, opsets_version: Version) -> List[str]:
    """The graph rules on an ONNX model for the TensorRT versions in ``span``.

    Raises UnsupportedOpError (one line: rule, nodes, fix, rule id) on errors; returns the
    warnings. ``opsets_version``: the version whose parser listing bounds the opset.
    """
    c = Context(span=span, graph=GraphView(model), parser_opsets=parser_opsets(opsets_version))
    return raise_errors(evaluate(c, ("graph",)), f"{where}: ")


def check_target_graph(model: Any, target: str) -> List[str]:
    """The graph rules for an export ``--target`` (export's target check calls this)."""
    if target not in TARGET_SPANS:
        return []  # onnxruntime: no TensorRT rules
    where = f"TensorRT {target[3:]}.x (--target {target}) cannot build this ONNX"
    return check_graph(model, target_span(target), where, TARGET_LISTING[target])


def markdown_table() -> str:
    """The rule table as Markdown (``python3 -m cifrenet_edge.trt.rules``; README/issue use)."""
    rows = ["| id | TensorRT | severity | refuses | fix | source |", "|---|---|---|---|---|---|"]
    for r in RULES:
        cells = [r.id, applies_to(r), r.severity, r.refuses, r.fix, r.source]
        rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
