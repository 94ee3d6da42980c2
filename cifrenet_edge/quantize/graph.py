"""The Q/DQ graph: what TensorRT expects of it, checked and (re)written on the ONNX graph.

Rules (``check_qdq_rules``), each from NVIDIA's Q/DQ guidance (TensorRT developer guide,
"Explicit Quantization": Q/DQ layer-placement recommendations) or a parser limit:

- symmetric int8 everywhere, zero point 0 (the parser refuses others);
- per-channel weight scales on axis 0 (output channels) of every Conv weight;
- weights reach DequantizeLinear **through QuantizeLinear** (float weight -> Q -> DQ):
  TensorRT 8.x rejects int8 weight initializers feeding DQ ("invalid weights type of
  Int8", NVIDIA/TensorRT#2163, #2361; microsoft/onnxruntime#11535), and 10.x/11 take both
  forms ("You can specify weights of Q/DQ models using a high-precision data type ... or a
  low-precision quantized type"). The float form also keeps the float weights, from which
  the CPU's 7-bit variant is derived without rounding twice (``runtime/cpu_int8.py``);
- biases stay float (TensorRT fuses the bias itself; no int32 bias quantization);
- Q/DQ on the *inputs* of weighted ops, never on a Conv's output before its activation
  (Conv -> Q/DQ -> Clip/PRelu blocks the Conv+activation fusion and adds a rounding step);
- the residual Add: its residual input quantized, the Conv feeding it connected directly,
  so TensorRT fuses Conv + activation + residual Add into one INT8 kernel;
- every DequantizeLinear feeds one consumer (dedicated pairs): ONNX Runtime's quantizer
  documents "In TRT, QDQ pair can't be shared between nodes" (its ``DedicatedQDQPair``
  option); TensorRT's own guide states no rule either way, and dedicated pairs compute the
  same numbers, so the graph never depends on the answer;
- the classifier conv and the x8 Resize can stay float (``keep_float``).

Rewrites: ``fuse_residual_adds``, ``dedicate_qdq_pairs``, ``seven_bit_weights`` and
``u8_inputs_variant`` (the CPU variants for CPUs without an int8 dot product),
``fp16_float_parts`` (strongly typed TensorRT 10/11 builds).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

import numpy as np

from ..runtime.cpu_int8 import (
    U8_CODE_MAX,
    dequantized_8bit,
    weights_7bit,
    weights_pair_bounded,
)

WEIGHTED_OPS = ("Conv",)
# Ops a quantized tensor may feed straight from a Conv's output: the next weighted op's
# input quantization and the residual Add. Anything else (Clip, PRelu, Relu...) after a
# Conv -> Q/DQ means the Conv's output was quantized before its activation.
QDQ_AFTER_CONV_OK = ("Conv", "Add", "GlobalAveragePool", "Concat")


def producers(graph) -> Dict[str, Any]:
    return {o: n for n in graph.node for o in n.output}


def consumers(graph) -> Dict[str, List[Any]]:
    out: Dict[str, List[Any]] = {}
    for n in graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    for o in graph.output:
        out.setdefault(o.name, []).append(None)
    return out


def initializers(graph) -> Dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in graph.initializer}


def const_value(name: str, inits: Dict[str, np.ndarray], prod: Dict[str, Any]):
    """An initializer or Constant node's value, else None."""
    if name in inits:
        return inits[name]
    node = prod.get(name)
    if node is not None and node.op_type == "Constant":
        from onnx import numpy_helper

        for a in node.attribute:
            if a.name == "value":
                return numpy_helper.to_array(a.t)
    return None


def _attr(node, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def find_sensitive_nodes(model) -> Dict[str, List[str]]:
    """The nodes ``keep_float`` names: the x8 Resize(s) before the output, the classifier conv.

    Found by walking back from the graph output rather than by name, so a re-export with
    other node names still finds them.
    """
    graph = model.graph
    prod = producers(graph)
    out: Dict[str, List[str]] = {"resize": [], "classifier": []}
    out["dw-prelu"] = depthwise_prelu_convs(model)
    frontier = [o.name for o in graph.output]
    seen = set()
    while frontier:
        node = prod.get(frontier.pop())
        if node is None or node.name in seen:
            continue
        seen.add(node.name)
        if node.op_type in WEIGHTED_OPS:
            out["classifier"].append(node.name)
            continue  # stop at the first conv on each path
        if node.op_type == "Resize":
            out["resize"].append(node.name)
        frontier.extend(i for i in node.input[:1] if i)
    return out


def depthwise_prelu_convs(model) -> List[str]:
    """Depthwise Convs feeding a PReLU: ``keep_float=("dw-prelu",)`` keeps them float.

    TensorRT 8.5.2 found no INT8 kernel for a Q/DQ depthwise conv fused with the activation
    after it ("Could not find any implementation", NVIDIA/TensorRT#3385: DwConv + BN + Swish
    fails, DwConv + ReLU builds). CIFReNet's 13 depthwise convs in the LRM and the DSP paths
    feed PReLU (the backbone's feed ReLU6); keeping those float is the way out when a build
    fails so, short of implicit (calibrator) INT8.
    """
    inits = {i.name: i for i in model.graph.initializer}
    cons = consumers(model.graph)
    out = []
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        w = inits.get(n.input[1])
        depthwise = _attr(n, "group", 1) > 1 and w is not None and len(w.dims) == 4
        if not depthwise or w.dims[1] != 1:
            continue
        if any(c is not None and c.op_type == "PRelu" for c in cons.get(n.output[0], [])):
            out.append(n.name)
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
        w = inits.get(n.input[1])
        if _attr(n, "group", 1) > 1 and w is not None and len(w.dims) == 4 and w.dims[1] > 1:
            out.append(n.name)
    return out


def _float_source(name: str, prod: Dict[str, Any]) -> str:
    """The op that computed a tensor, looking through a Q -> DQ pair."""
    node = prod.get(name)
    if node is not None and node.op_type == "DequantizeLinear":
        q = prod.get(node.input[0])
        if q is not None and q.op_type == "QuantizeLinear":
            node = prod.get(q.input[0])
    return node.op_type if node is not None else "input"


def _weight_of(conv, inits, prod):
    """(weight DQ node, float weight or None, int8 initializer or None) of a quantized conv."""
    w_dq = prod.get(conv.input[1])
    if w_dq is None or w_dq.op_type != "DequantizeLinear":
        return None, None, None
    w_q = prod.get(w_dq.input[0])
    if w_q is not None and w_q.op_type == "QuantizeLinear":
        return w_dq, const_value(w_q.input[0], inits, prod), None
    return w_dq, None, const_value(w_dq.input[0], inits, prod)


# --------------------------------------------------------------------------- the rules


def _zero_point_problems(graph, inits, prod) -> List[str]:
    problems = []
    for n in graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = const_value(n.input[2], inits, prod) if len(n.input) > 2 and n.input[2] else None
        if zp is None:
            if n.op_type == "QuantizeLinear":
                problems.append(f"{n.name}: no zero point (defaults to uint8)")
            continue
        if zp.dtype != np.int8:
            problems.append(f"{n.name}: zero point dtype {zp.dtype} (TensorRT needs int8)")
        if np.any(zp != 0):
            problems.append(f"{n.name}: non-zero zero point (TensorRT needs symmetric)")
    return problems


def _conv_problems(graph, inits, prod, counts: Dict[str, int]) -> List[str]:
    problems = []
    for conv in (n for n in graph.node if n.op_type in WEIGHTED_OPS):
        w_dq, w_float, w_int8 = _weight_of(conv, inits, prod)
        if w_dq is None:
            continue
        counts["quantized_convs"] += 1
        x_dq = prod.get(conv.input[0])
        if x_dq is None or x_dq.op_type != "DequantizeLinear":
            problems.append(f"{conv.name}: weights quantized but input not")
        if w_int8 is not None:
            counts["int8_weight_initializers"] += 1
            problems.append(
                f"{conv.name}: int8 weight initializer feeds DequantizeLinear (TensorRT 8.x "
                "rejects it; weights must reach DQ through QuantizeLinear)"
            )
        w = w_float if w_float is not None else w_int8
        scale = const_value(w_dq.input[1], inits, prod)
        if w is None or scale is None:
            problems.append(f"{conv.name}: weight or scale is not a constant")
            continue
        if scale.ndim == 1 and scale.size == w.shape[0] and _attr(w_dq, "axis", 1) == 0:
            counts["per_channel_axis0_convs"] += 1
        elif scale.size > 1:
            problems.append(
                f"{conv.name}: weight scales on axis {_attr(w_dq, 'axis', 1)}, TensorRT "
                "expects axis 0"
            )
        if len(conv.input) > 2 and conv.input[2]:
            b = prod.get(conv.input[2])
            if b is not None and b.op_type == "DequantizeLinear":
                problems.append(f"{conv.name}: bias is int32-quantized (keep it float)")
    return problems


def _output_quantization_problems(graph, prod, cons) -> List[str]:
    """A Conv output quantized before its activation (Conv -> Q/DQ -> Clip ...)."""
    problems = []
    for qn in (n for n in graph.node if n.op_type == "QuantizeLinear"):
        src = prod.get(qn.input[0])
        if src is None or src.op_type not in WEIGHTED_OPS:
            continue
        for dq in cons.get(qn.output[0], []):
            after = [c for c in cons.get(dq.output[0], []) if c is not None] if dq else []
            bad = sorted({c.op_type for c in after if c.op_type not in QDQ_AFTER_CONV_OK})
            if bad:
                problems.append(
                    f"{src.name}: output quantized before {'/'.join(bad)} (quantize the "
                    "inputs of weighted ops, not their outputs)"
                )
    return problems


def _residual_problems(graph, inits, prod, counts: Dict[str, int]) -> List[str]:
    problems = []
    for add in (n for n in graph.node if n.op_type == "Add"):
        if any(i in inits for i in add.input):
            continue  # bias-like add with a constant: not a residual join
        if not any(_float_source(i, prod) == "Conv" for i in add.input):
            continue  # a sum of non-conv branches (MCIM's DSP sum): no Conv+Add fusion
        counts["residual_adds"] += 1
        kinds = sorted((prod[i].op_type if i in prod else "input") for i in add.input)
        # INT8-fusable: every input quantized, or one straight from a Conv (TensorRT fuses
        # Conv + Add) and the other -- the residual -- quantized.
        if all(k == "DequantizeLinear" for k in kinds):
            counts["residual_adds_quantized"] += 1
        elif kinds == ["Conv", "DequantizeLinear"]:
            counts["residual_adds_quantized"] += 1
            counts["conv_add_fusable"] += 1
        else:
            problems.append(
                f"{add.name}: residual Add inputs from {'/'.join(kinds)} (the residual input "
                "must be quantized, the other quantized or straight from a Conv)"
            )
    return problems


def check_qdq_rules(model, keep_float: Iterable[str] = ()) -> Dict[str, Any]:
    """Check a Q/DQ model against the rules above; returns counts and a list of problems.

    Works on the graph itself (any producer: ONNX Runtime, Model Optimizer, hand-made), so
    the same check gates our exports, tests them and judges other tools' output.
    """
    from onnx import TensorProto

    graph = model.graph
    inits = initializers(graph)
    prod = producers(graph)
    cons = consumers(graph)
    counts = dict.fromkeys(
        (
            "quantized_convs",
            "per_channel_axis0_convs",
            "int8_weight_initializers",
            "residual_adds",
            "residual_adds_quantized",
            "conv_add_fusable",
        ),
        0,
    )
    problems = _zero_point_problems(graph, inits, prod)
    problems += _conv_problems(graph, inits, prod, counts)
    problems += _output_quantization_problems(graph, prod, cons)
    for init in graph.initializer:
        if init.data_type == TensorProto.INT32 and any(
            n.op_type == "DequantizeLinear" and n.input[0] == init.name for n in graph.node
        ):
            problems.append(f"{init.name}: int32 quantized tensor (bias quantization)")
    shared = [
        n.name
        for n in graph.node
        if n.op_type == "DequantizeLinear" and len(cons.get(n.output[0], [])) > 1
    ]
    problems += [f"{name}: DequantizeLinear shared by several consumers" for name in shared]
    problems += _residual_problems(graph, inits, prod, counts)
    sensitive = find_sensitive_nodes(model)
    by_name = {n.name: n for n in graph.node}
    for what in keep_float:
        for name in sensitive.get(what, []):
            if any(
                prod.get(i) is not None and prod[i].op_type == "DequantizeLinear"
                for i in by_name[name].input
                if i
            ):
                problems.append(f"{name} ({what}) should stay float but has quantized inputs")
    q_nodes = [n.op_type for n in graph.node]
    return dict(
        counts,
        quantize_nodes=q_nodes.count("QuantizeLinear"),
        dequantize_nodes=q_nodes.count("DequantizeLinear"),
        convs=sum(n.op_type in WEIGHTED_OPS for n in graph.node),
        shared_dequantize_nodes=len(shared),
        problems=problems,
    )


# --------------------------------------------------------------------------- rewrites


def _drop_unused_initializers(graph) -> None:
    used = {i for n in graph.node for i in n.input}
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


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
    prod = producers(graph)
    cons = consumers(graph)
    inits = {i.name for i in graph.initializer}
    dead = set()
    for add in graph.node:
        if add.op_type != "Add" or any(i in inits for i in add.input):
            continue
        for k, name in enumerate(add.input):
            dq = prod.get(name)
            qn = (
                prod.get(dq.input[0])
                if dq is not None and dq.op_type == "DequantizeLinear"
                else None
            )
            conv = prod.get(qn.input[0]) if qn is not None else None
            if qn is None or qn.op_type != "QuantizeLinear" or conv is None:
                continue
            if conv.op_type not in WEIGHTED_OPS:
                continue
            if len(cons.get(qn.input[0], [])) != 1 or len(cons.get(qn.output[0], [])) != 1:
                continue  # the conv output (or its Q) feeds something else too
            if len(cons.get(dq.output[0], [])) != 1:
                continue
            add.input[k] = qn.input[0]
            dead.update((qn.name, dq.name))
            break  # one conv per Add: TensorRT fuses one
    keep = [n for n in graph.node if n.name not in dead]
    del graph.node[:]
    graph.node.extend(keep)
    _drop_unused_initializers(graph)
    return len(dead) // 2


def float_inputs(model, names: Iterable[str]) -> int:
    """Feed the named nodes their float inputs again; returns how many inputs were rewired.

    ONNX Runtime leaves an excluded node reading a DequantizeLinear when the same tensor
    is quantized for another consumer (a depthwise conv sharing its input with a quantized
    branch), so ``keep_float`` would not keep it float. The node reads the tensor before
    the Q -> DQ pair instead; a pair nobody reads any more is dropped.
    """
    graph = model.graph
    prod = producers(graph)
    activations = producers_or_inputs(graph)
    wanted = set(names)
    rewired = 0
    for node in graph.node:
        if node.name not in wanted:
            continue
        for i, name in enumerate(node.input):
            dq = prod.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = prod.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in activations:
                continue  # a weight's Q/DQ, or not a pair
            node.input[i] = q.input[0]
            rewired += 1
    _drop_unread(graph)
    return rewired


def producers_or_inputs(graph) -> set:
    """Tensors computed by a node or fed as graph inputs (activations, not initializers)."""
    return {o for n in graph.node for o in n.output} | {i.name for i in graph.input}


def _drop_unread(graph) -> None:
    """Remove Q/DQ nodes whose outputs nothing reads (repeated until none is left)."""
    outputs = {o.name for o in graph.output}
    while True:
        read = {i for n in graph.node for i in n.input} | outputs
        dead = [
            n
            for n in graph.node
            if n.op_type in ("QuantizeLinear", "DequantizeLinear")
            and not any(o in read for o in n.output)
        ]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def dedicate_qdq_pairs(model) -> int:
    """Give every consumer of a shared DequantizeLinear its own Q -> DQ pair; returns how many.

    ONNX Runtime's ``DedicatedQDQPair`` misses a tensor quantized for one consumer and read
    by another that is not quantized (a block output feeding both the next conv and a
    GlobalAveragePool). Copies use the same scale and zero point, so nothing changes
    numerically.
    """
    from onnx import helper

    graph = model.graph
    prod = producers(graph)
    cons = consumers(graph)
    made = 0
    nodes = list(graph.node)
    out = []
    for node in nodes:
        out.append(node)
        if node.op_type != "DequantizeLinear":
            continue
        users = [c for c in cons.get(node.output[0], []) if c is not None]
        qn = prod.get(node.input[0])
        if len(users) < 2 or qn is None or qn.op_type != "QuantizeLinear":
            continue
        for k, user in enumerate(users[1:], start=1):
            q_out, dq_out = f"{qn.output[0]}_d{k}", f"{node.output[0]}_d{k}"
            q2 = helper.make_node("QuantizeLinear", list(qn.input), [q_out], name=f"{qn.name}_d{k}")
            q2.attribute.extend(qn.attribute)
            dq2 = helper.make_node(
                "DequantizeLinear", [q_out, *node.input[1:]], [dq_out], name=f"{node.name}_d{k}"
            )
            dq2.attribute.extend(node.attribute)
            out.extend((q2, dq2))
            for i, name in enumerate(user.input):
                if name == node.output[0]:
                    user.input[i] = dq_out
            made += 1
    del graph.node[:]
    graph.node.extend(out)
    return made


def _set_weight_scale(conv, w_dq, prod, inits, scale: np.ndarray) -> None:
    """Point a quantized conv's weight Q and DQ at a new per-channel scale."""
    from onnx import numpy_helper

    dtype = numpy_helper.to_array(inits[w_dq.input[1]]).dtype
    flat = scale.reshape(-1).astype(dtype)
    for name in {w_dq.input[1], prod[w_dq.input[0]].input[1]}:
        inits[name].CopyFrom(numpy_helper.from_array(flat, name))


def seven_bit_weights(model) -> int:
    """The CPU variant: every quantized Conv weight requantized to 7 bits (in place).

    Same float weights, same per-channel rule, qmax 63 (``cpu_int8.weights_7bit``, which
    the runtime's OpenVINO backend applies to the same file); activations untouched. Only
    used to *verify* that variant at export: the artifact keeps 8-bit weights. Returns the
    number of convs rewritten; raises ValueError for a weight form it cannot derive from.
    """
    graph = model.graph
    prod = producers(graph)
    inits = {i.name: i for i in graph.initializer}
    values = initializers(graph)
    done = 0
    for conv in (n for n in graph.node if n.op_type in WEIGHTED_OPS):
        w_dq, w_float, _ = _weight_of(conv, values, prod)
        if w_dq is None:
            continue
        if w_float is None or prod.get(w_dq.input[0]) is None:
            raise ValueError(f"{conv.name}: no float weights to derive 7-bit weights from")
        _set_weight_scale(conv, w_dq, prod, inits, weights_7bit(w_float, axis=0)[1])
        done += 1
    return done


# Ops whose output is >= 0 whenever every (data) input is: the walk that proves a conv input
# can never be negative. Anything not listed (PRelu, LeakyRelu, Conv, Sub...) may be negative.
_NONNEG_ALWAYS = ("Relu", "Sigmoid")
_NONNEG_IF_FIRST = ("MaxPool", "AveragePool", "GlobalAveragePool", "Resize", "Reshape", "Cast")
_NONNEG_IF_ALL = ("Concat", "Add", "Mul")


def nonnegative(name: str, prod: Dict[str, Any], values: Dict[str, np.ndarray], memo) -> bool:
    """Whether tensor ``name`` is provably >= 0 for every input (a sound, partial proof).

    Clip with a constant min >= 0 (ReLU6), Relu, Sigmoid; pooling/resize/reshape of such a
    tensor; Concat/Add/Mul of such tensors; a zero-point-0 Q/DQ of one.
    """
    if name in memo:
        return memo[name]
    memo[name] = False  # cycles cannot occur in ONNX, but never recurse forever
    node = prod.get(name)
    if node is None:
        ok = name in values and bool(np.all(values[name] >= 0))
    elif node.op_type in _NONNEG_ALWAYS:
        ok = True
    elif node.op_type == "Clip":
        low = const_value(node.input[1], values, prod) if len(node.input) > 1 else None
        ok = low is not None and node.input[1] != "" and float(np.min(low)) >= 0
    elif node.op_type in ("QuantizeLinear", "DequantizeLinear"):
        zp = const_value(node.input[2], values, prod) if len(node.input) > 2 else None
        ok = zp is not None and not np.any(zp) and nonnegative(node.input[0], prod, values, memo)
    elif node.op_type in _NONNEG_IF_FIRST:
        ok = nonnegative(node.input[0], prod, values, memo)
    elif node.op_type in _NONNEG_IF_ALL:
        ok = all(nonnegative(i, prod, values, memo) for i in node.input if i)
    else:
        ok = False
    memo[name] = ok
    return ok


def conv_input_kinds(model) -> Dict[str, str]:
    """Each quantized conv's CPU treatment without an int8 dot product, by node name.

    ``u8``: its input is provably non-negative, so as u8 (zero point 0, the same scale,
    codes 0..127) with the file's 8-bit weights no 16-bit pair sum can overflow
    (2 x 127 x 127 = 32258 < 32767) and the arithmetic is the file's. ``float``: it reads
    the network input (3 channels: the int8 kernel gains little, and 7-bit weights on 27 taps
    cost the most accuracy), run in float on the file's own quantized values. ``pairs``: the
    rest (input may be negative: oneDNN shifts s8 to u8, codes up to 255): pair-bounded
    weights (``cpu_int8.weights_pair_bounded``).
    """
    graph = model.graph
    prod = producers(graph)
    values = initializers(graph)
    inputs = {i.name for i in graph.input}
    memo: Dict[str, bool] = {}
    kinds = {}
    for conv in (n for n in graph.node if n.op_type in WEIGHTED_OPS):
        w_dq, _, _ = _weight_of(conv, values, prod)
        x_dq = prod.get(conv.input[0])
        x_q = prod.get(x_dq.input[0]) if x_dq is not None else None
        if w_dq is None or x_q is None or x_q.op_type != "QuantizeLinear":
            continue
        src = x_q.input[0]
        while src in prod and prod[src].op_type == "Cast":  # FP16 float parts cast the input
            src = prod[src].input[0]
        if src in inputs:
            kinds[conv.name] = "float"
        elif nonnegative(x_q.input[0], prod, values, memo):
            kinds[conv.name] = "u8"
        else:
            kinds[conv.name] = "pairs"
    return kinds


def u8_inputs_variant(model) -> Dict[str, int]:
    """The CPU variant for an int8 kernel without a dot product (in place); counts per kind.

    ``conv_input_kinds`` decides per conv. A ``u8`` conv's activation pair becomes
    Clip(0, 127 x scale) -> QuantizeLinear(scale, uint8 zero point 0) -> DequantizeLinear:
    for a tensor that is never negative this is exactly the file's int8 pair
    (round(x / scale) clamped to 0..127), and the clip keeps every u8 code <= 127 by
    construction. A ``float`` conv gets the file's dequantized 8-bit weights as a float
    initializer (Q/DQ of its input kept): its arithmetic is the file's. ``pairs`` convs get
    pair-bounded weights. Only used to *verify* the variant; the runtime's OpenVINO backend derives
    the same variant from the shipped file (``backends/openvino.py``).
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    kinds = conv_input_kinds(model)
    prod = producers(graph)
    inits = {i.name: i for i in graph.initializer}
    values = initializers(graph)
    clips: Dict[str, Any] = {}  # Q node name -> the Clip to insert before it
    retyped = set()  # Q outputs now uint8 (a converted graph may declare them int8)
    for conv in (n for n in graph.node if n.name in kinds):
        w_dq, w_float, _ = _weight_of(conv, values, prod)
        kind = kinds[conv.name]
        if w_float is None:
            raise ValueError(f"{conv.name}: no float weights to derive the CPU variant from")
        if kind == "pairs":
            _set_weight_scale(conv, w_dq, prod, inits, weights_pair_bounded(w_float)[1])
        elif kind == "float":
            scale = values[w_dq.input[1]]
            name = f"{conv.name}_w_dequantized"
            deq = dequantized_8bit(w_float, scale).astype(scale.dtype)
            graph.initializer.append(numpy_helper.from_array(deq, name))
            conv.input[1] = name
        else:
            x_dq = prod[conv.input[0]]
            x_q = prod[x_dq.input[0]]
            scale = np.asarray(values[x_q.input[1]]).reshape(-1)[:1]
            base = f"{x_q.name}_u8"
            graph.initializer.extend(
                [
                    numpy_helper.from_array(np.zeros((), scale.dtype), base + "_lo"),
                    numpy_helper.from_array(
                        (U8_CODE_MAX * scale[0]).astype(scale.dtype), base + "_hi"
                    ),
                    numpy_helper.from_array(np.array(0, np.uint8), base + "_zp"),
                ]
            )
            clips[x_q.name] = helper.make_node(
                "Clip", [x_q.input[0], base + "_lo", base + "_hi"], [base + "_c"], name=base
            )
            x_q.input[0] = base + "_c"
            x_q.input[2] = x_dq.input[2] = base + "_zp"
            retyped.add(x_q.output[0])
    for info in graph.value_info:
        if info.name in retyped:
            info.type.tensor_type.elem_type = TensorProto.UINT8
    nodes = []
    for n in graph.node:
        if n.name in clips:
            nodes.append(clips[n.name])
        nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    _drop_dead_nodes(graph)
    _drop_unused_initializers(graph)
    counts = {"u8": 0, "pairs": 0, "float": 0}
    for kind in kinds.values():
        counts[kind] += 1
    return counts


def _drop_dead_nodes(graph) -> None:
    """Remove nodes whose outputs nothing reads (the float conv's old weight Q/DQ)."""
    while True:
        used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


FP16_MIN_NORMAL = float(np.finfo(np.float16).tiny)  # 6.1e-5
FP16_QDQ_OPSET = 19  # DequantizeLinear/QuantizeLinear take float16 scales from opset 19


def fp16_float_parts(model, keep_fp32_ops: Iterable[str] = ("Resize", "Upsample")):
    """The Q/DQ model with its float parts in FP16, FP32 inputs/outputs kept.

    TensorRT 10 (strongly typed) and 11 (always) take every precision from the graph, so
    layers outside Q/DQ (classifier, grouped convs, attention, activations between the
    int8 convs) would run in FP32. Here Q/DQ scales become FP16, so DequantizeLinear emits
    FP16 and QuantizeLinear reads it (ONNX opset 19: ``T2`` of DequantizeLinear-19 is
    float/float16/bfloat16); the Resize that decides boundary pixels stays FP32 as in the
    FP16 export. Weight scales below FP16's smallest normal are raised to it (counted):
    such channels are near zero and a subnormal scale would lose its own precision.
    Returns (new model, record).
    """
    from onnx import numpy_helper, version_converter

    from .fp16 import convert_graph_fp16

    graph = model.graph
    scale_names = {
        n.input[1] for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
    }
    raised = 0
    for init in graph.initializer:
        if init.name in scale_names:
            arr = numpy_helper.to_array(init)
            small = (arr > 0) & (arr < FP16_MIN_NORMAL)
            if small.any():
                raised += int(small.sum())
                fixed = np.where(small, np.float32(FP16_MIN_NORMAL), arr).astype(arr.dtype)
                init.CopyFrom(numpy_helper.from_array(fixed, init.name))
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < FP16_QDQ_OPSET:
        model = version_converter.convert_version(model, FP16_QDQ_OPSET)
    half = convert_graph_fp16(model, keep_fp32_ops)
    return half, {
        "float_parts": "fp16",
        "opset": FP16_QDQ_OPSET if opset < FP16_QDQ_OPSET else opset,
        "scales_raised_to_fp16_min_normal": raised,
    }


def weight_form(model) -> Optional[str]:
    """'float->Q->DQ', 'int8->DQ', 'mixed' or None (no quantized weights)."""
    graph = model.graph
    prod = producers(graph)
    values = initializers(graph)
    forms = set()
    for conv in (n for n in graph.node if n.op_type in WEIGHTED_OPS):
        w_dq, w_float, _ = _weight_of(conv, values, prod)
        if w_dq is not None:
            forms.add("float->Q->DQ" if w_float is not None else "int8->DQ")
    if not forms:
        return None
    return forms.pop() if len(forms) == 1 else "mixed"
