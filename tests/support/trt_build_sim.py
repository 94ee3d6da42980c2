"""The builder side of the TensorRT stand-in: what TensorRT itself refuses, from its own model.

``TrtWorld`` (``trt_sim.py``) mixes this in, so a ``build_engine`` run through the stand-in
meets a parser that reads the ONNX bytes and a builder that looks at the network flags,
the builder flags, the GPU and the DLA settings. Each refusal below names where TensorRT
states it; none of them reads ``cifrenet_edge/resources/trt_rules.json``, so a rule the
toolkit's table lacks lets a case through the toolkit and into a refusal here (see
``tests/test_trt_standin_refusals.py``). What TensorRT returns on a refusal is what the
stand-in returns: ``False`` from ``OnnxParser.parse`` with the error text, ``None`` from
``build_serialized_network``, ``RuntimeError`` from ``IOptimizationProfile.set_shape``.
What TensorRT accepts to the user's loss (FP16 on a GPU without fast FP16, layers that fall
back from DLA to the GPU) is recorded in ``quiet_losses`` instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

PARSER_OPS = Path(__file__).resolve().parents[2] / "cifrenet_edge" / "resources" / "onnx_parser_ops"
QDQ = ("QuantizeLinear", "DequantizeLinear")
SAME_TYPE = ("Add", "Sub", "Mul", "Div", "Concat", "Conv", "Sum", "Max", "Min", "PRelu")
Version = Tuple[int, int, int]


def _v(text: str) -> Version:
    parts = [int(p) for p in str(text).split(".")[:3]]
    return tuple([*parts, 0, 0, 0][:3])  # type: ignore[return-value]


# Which compute capabilities each TensorRT runs on, as the release notes and issue threads
# state it: (cc test, first version without it or None, first version with it, message, source)
SM_MODEL: List[Tuple[Any, Optional[Version], Version, str, str]] = [
    (lambda cc: cc in ((5, 0), (5, 2)), (8, 6, 0), (0, 0, 0), "Unsupported SM", "#3589"),
    # Jetson Nano/TX1/TX2: JetPack 4.6.x (TensorRT 8.2.1) is their last JetPack
    (lambda cc: cc in ((5, 3), (6, 2)), (8, 3, 0), (0, 0, 0), "Unsupported SM", "JetPack 4.6"),
    (lambda cc: cc in ((6, 0), (6, 1)), (10, 0, 0), (0, 0, 0), "Unsupported SM: 0x601", "#3826"),
    (lambda cc: cc == (7, 2), (8, 6, 0), (0, 0, 0), "Unsupported SM", "JetPack 5.1 (8.5.2)"),
    (lambda cc: cc == (7, 0), (10, 5, 0), (0, 0, 0), "Unsupported SM", "10.5.0 release notes"),
    (lambda cc: cc == (8, 9), None, (8, 5, 0), "Unsupported SM: 0x809", "#2727"),
    (
        lambda cc: cc[0] >= 10,
        None,
        (10, 8, 0),
        "Target GPU SM is not supported by this TensorRT release",
        "10.8.0 release notes; DDTRobot/tita_rl_sim2sim2real#7",
    ),
]
# GPUs without INT8 (DP4A from cc 6.1; CUDA C++ Programming Guide), NVIDIA/TensorRT#3157
NO_INT8 = ((5, 0), (5, 2), (5, 3), (6, 0), (6, 2))
NO_FAST_FP16 = ((5, 0), (5, 2), (6, 1))  # CUDA guide: FP16 arithmetic from 5.3; 6.1 at 1/64


def _cc(text: str) -> Tuple[int, int]:
    major, minor = str(text).split(".")[:2]
    return int(major), int(minor)


class OnnxModel:
    """What TensorRT's ONNX parser reads from the bytes (via the real ``onnx`` package)."""

    def __init__(self, data: bytes) -> None:
        import onnx
        from onnx import numpy_helper, shape_inference

        self.model = shape_inference.infer_shapes(onnx.load_model_from_string(bytes(data)))
        g = self.model.graph
        self.nodes = list(g.node)
        self.inits = {t.name: t for t in g.initializer}
        self.arrays = {n: numpy_helper.to_array(t) for n, t in self.inits.items()}
        self.types: Dict[str, int] = {n: int(t.data_type) for n, t in self.inits.items()}
        for vi in list(g.input) + list(g.output) + list(g.value_info):
            self.types.setdefault(vi.name, int(vi.type.tensor_type.elem_type))
        self.inputs = [i.name for i in g.input if i.name not in self.inits]
        self.opset = max(
            (int(o.version) for o in self.model.opset_import if o.domain in ("", "ai.onnx")),
            default=0,
        )
        self.producer = {o: n for n in self.nodes for o in n.output}

    @property
    def has_qdq(self) -> bool:
        return any(n.op_type in QDQ for n in self.nodes)

    def constant(self, name: str) -> bool:
        """Computed from initializers alone (weights, possibly through Q/DQ)."""
        if name in self.inits:
            return True
        node = self.producer.get(name)
        return node is not None and bool(node.input) and self.constant(node.input[0])

    def weight_dims(self, name: str) -> Optional[Tuple[int, ...]]:
        if name in self.arrays:
            return tuple(self.arrays[name].shape)
        node = self.producer.get(name)
        return self.weight_dims(node.input[0]) if node is not None and node.input else None


def parser_errors(m: OnnxModel, version: Version, strongly_typed: bool) -> List[str]:
    """The errors TensorRT's ONNX parser of ``version`` reports for this model (empty: parses).

    From onnx-tensorrt's importers at the release each TensorRT pins: builtin_op_importers.cpp
    QuantDequantLinearHelper (8.2-GA, 8.6-GA), onnxOpImporters.cpp (10.0-GA+), and the parser
    listing of its opsets (docs/operators.md).
    """
    errors: List[str] = []
    listing = _parser_listing(version)
    if listing is not None and m.opset > int(listing["opset_max"]):
        errors.append(
            f"Unsupported ONNX opset {m.opset} (this parser reads <= {listing['opset_max']})"
        )
    eight = version < (10, 0, 0)
    for n in m.nodes:
        if n.op_type in QDQ:
            errors += _qdq_errors(m, n, eight)
        if strongly_typed and n.op_type in SAME_TYPE:
            floats = {m.types.get(i) for i in n.input if i and m.types.get(i) in (1, 10, 16)}
            if len(floats) > 1:  # no implicit casts in a strongly typed network
                errors.append(f"{n.name}: Input 0's element type differs from input 1's")
    return errors


def _attr_i(node: Any, name: str) -> Optional[int]:
    for a in node.attribute:
        if a.name == name:
            return int(a.i)
    return None


def _qdq_errors(m: OnnxModel, n: Any, eight: bool) -> List[str]:
    out: List[str] = []
    x, scale = n.input[0], n.input[1] if len(n.input) > 1 else ""
    zp = n.input[2] if len(n.input) > 2 and n.input[2] else ""
    if eight and n.op_type == "DequantizeLinear" and m.types.get(x) == 3 and x in m.inits:
        out.append(f"{n.name}: invalid weights type of Int8")  # 8.x: float weights only
    if eight and not zp:
        out.append(f"{n.name}: This version of TensorRT requires 3 inputs")
    if zp and m.types.get(zp) == 2 and eight:
        out.append(f"{n.name}: UINT8 zero point is not supported")
    if zp in m.arrays and np.any(m.arrays[zp] != 0):
        out.append(f"{n.name}: x_zero_point must be zero")
    if eight and (m.types.get(scale) in (10, 16) or m.types.get(x) in (10, 16)):
        out.append(f"{n.name}: IQuantizeLayer only supports DataType::kFLOAT precision")
    s = m.arrays.get(scale)
    if s is not None and np.any(~(s > 0)):
        out.append(f"{n.name}: Scale coefficients must all be positive")
    if s is not None and s.size > 1:
        if not m.constant(x):
            out.append(f"{n.name}: Per-channel quantization is supported only for weights")
        else:
            axis = _attr_i(n, "axis")
            dims = m.weight_dims(x)
            axis = 0 if axis is None else axis  # the parser's default for per-channel scales
            if dims is not None and (axis >= len(dims) or dims[axis] != s.size):
                out.append(f"{n.name}: scale count {s.size} does not match axis {axis}")
    return out


def _parser_listing(version: Version) -> Optional[Dict[str, Any]]:
    listed = []
    for path in PARSER_OPS.glob("onnx-parser-ops-*.json"):
        listed.append((_v(path.stem.split("-")[-1]), path))
    below = sorted(item for item in listed if item[0] <= version)
    return json.loads(below[-1][1].read_text()) if below else None


class BuildModel:
    """Builder-side behaviour mixed into ``TrtWorld``: networks, parser, config, build."""

    version_string: str
    dla_cores: int
    compute_capability: str = "8.7"

    def _build_init(self) -> None:
        self.quiet_losses: List[str] = []  # accepted by TensorRT to the user's loss
        self.build_errors: List[str] = []  # what TensorRT's log would say on a refusal
        self.calibration: List[str] = []  # the calibrator calls, in TensorRT's order

    @property
    def version(self) -> Version:
        return _v(self.version_string)

    # -- Builder / network --------------------------------------------------------------------
    def _Builder__create_network(self, s: Any, builder: Any, flags: int = 0) -> Any:
        members = s.enums["NetworkDefinitionCreationFlag"]._members
        by_value = {int(v): name for name, v in members.items()}
        names, rest = [], int(flags)
        for bit in range(32):
            if rest & (1 << bit):
                if bit not in by_value:
                    self.build_errors.append(f"createNetworkV2: invalid flag bit {bit}")
                    return None
                names.append(by_value[bit])
        net = s.instance("INetworkDefinition")
        st = self.state(net)  # type: ignore[attr-defined]
        st["flags"] = names
        st["strongly_typed"] = self.version >= (11, 0, 0) or "STRONGLY_TYPED" in names
        return net

    def _OnnxParser__parse(self, s: Any, parser: Any, data: Any, *rest: Any) -> bool:
        net = self.state(parser).get("network")  # type: ignore[attr-defined]
        nst = self.state(net)  # type: ignore[attr-defined]
        errors = []
        if self.version < (10, 0, 0) and "EXPLICIT_BATCH" not in nst.get("flags", []):
            errors.append("The ONNX parser only supports networks with an explicit batch")
        model = OnnxModel(bytes(data))
        errors += parser_errors(model, self.version, nst.get("strongly_typed", False))
        self.state(parser)["errors"] = errors  # type: ignore[attr-defined]
        nst["onnx"] = model
        return not errors

    def _OnnxParser__num_errors(self, s: Any, parser: Any) -> int:
        return len(self.state(parser).get("errors", []))  # type: ignore[attr-defined]

    def _OnnxParser__get_error(self, s: Any, parser: Any, i: int) -> str:
        return self.state(parser)["errors"][int(i)]  # type: ignore[attr-defined]

    def _INetworkDefinition__num_layers(self, s: Any, net: Any) -> int:
        model = self.state(net).get("onnx")  # type: ignore[attr-defined]
        return len(model.nodes) if model is not None else 0

    def _INetworkDefinition__get_layer(self, s: Any, net: Any, i: int) -> Any:
        layer = s.instance("ILayer")
        self.state(layer)["network"] = net  # type: ignore[attr-defined]
        return layer

    # -- config ------------------------------------------------------------------------------
    def _IBuilderConfig__set_flag(self, s: Any, cfg: Any, flag: Any) -> None:
        self.state(cfg).setdefault("flags", set()).add(flag.name)  # type: ignore[attr-defined]

    def _IBuilderConfig__can_run_on_DLA(self, s: Any, cfg: Any, layer: Any) -> bool:
        return not self._dla_losses(cfg, self.state(layer)["network"])  # type: ignore[attr-defined]

    def _dla_losses(self, cfg: Any, net: Any) -> List[str]:
        """Why DLA cannot take the network's layers (they fall back to the GPU)."""
        st, nst = self.state(cfg), self.state(net)  # type: ignore[attr-defined]
        flags, model = st.get("flags", set()), nst.get("onnx")
        out = []
        if not ({"FP16", "INT8"} & flags) and not nst.get("strongly_typed"):
            out.append("DLA runs FP16 and INT8 only")  # DLA layer restrictions
        if any(lo != hi for lo, _, hi in st.get("profile_shapes", [])):
            out.append("DLA has no dynamic dimensions")  # DLA layer restrictions
        if model is not None and model.has_qdq and self.version < (11, 4, 1):
            # NVIDIA/TensorRT#2222 ("DLA doesn't support QAT yet"), cuDLA-samples#19 (8.5: a
            # Q/DQ layer "is not supported on DLA"), Model-Optimizer#1661 (10.x): with GPU
            # fallback those layers run on the GPU
            out.append("DLA compiles implicit INT8 only")
        return out

    def _IOptimizationProfile__set_shape(self, s: Any, prof: Any, name: str, lo, opt, hi) -> None:
        lo, opt, hi = tuple(lo), tuple(opt), tuple(hi)
        # pyCore.cpp v8.6.1 opt_profile_set_shape: setDimensions per selector, else RuntimeError
        if any(d < 0 for d in lo):
            raise RuntimeError("Shape provided for min is inconsistent with other shapes.")
        if len(opt) != len(lo) or any(a > b for a, b in zip(lo, opt)):
            raise RuntimeError("Shape provided for opt is inconsistent with other shapes.")
        if len(hi) != len(opt) or any(a > b for a, b in zip(opt, hi)):
            raise RuntimeError("Shape provided for max is inconsistent with other shapes.")
        self.state(prof).setdefault("shapes", {})[name] = (lo, opt, hi)  # type: ignore[attr-defined]

    # -- build ---------------------------------------------------------------------------------
    def _Builder__build_serialized_network(self, s: Any, builder: Any, net: Any, cfg: Any) -> Any:
        st, nst = self.state(cfg), self.state(net)  # type: ignore[attr-defined]
        for prof in st.get("profile_objs", []):
            st.setdefault("profile_shapes", []).extend(self.state(prof)["shapes"].values())  # type: ignore[attr-defined]
        error = self._refusal(st, nst)
        if error:
            self.build_errors.append(error)
            return None
        flags, model = st.get("flags", set()), nst.get("onnx")
        cc = _cc(self.compute_capability)
        if "FP16" in flags and cc in NO_FAST_FP16:  # TensorRT 8.x logs it and builds
            self.quiet_losses.append("Half2 support requested on hardware without native FP16")
        if st.get("DLA_core") is not None:
            self.quiet_losses += self._dla_losses(cfg, net)
        half = any(t in (10, 16) for t in model.types.values()) if model is not None else True
        if nst.get("strongly_typed") and model is not None and model.has_qdq and not half:
            # a DequantizeLinear outputs its scale's type (onnxOpImporters.cpp, 10.1-GA): with
            # FP32 scales everything outside the INT8 layers stays FP32
            self.quiet_losses.append("strongly typed Q/DQ network with FP32 float parts")
        cal = st.get("int8_calibrator")
        if cal is not None and "INT8" in flags and not (model is not None and model.has_qdq):
            if cc in NO_INT8:  # the calibrated network runs FP32/FP16 kernels, silently
                self.quiet_losses.append("INT8 requested on hardware without INT8 support")
            elif not self._calibrate(cal, model):
                return None
        return s.instance("IHostMemory")

    def _refusal(self, st: Dict[str, Any], nst: Dict[str, Any]) -> Optional[str]:
        v, cc = self.version, _cc(self.compute_capability)
        for test, gone, first, msg, source in SM_MODEL:
            if test(cc) and ((gone is not None and v >= gone) or v < first):
                return f"{msg} (cc {self.compute_capability}; {source})"
        flags, model = st.get("flags", set()), nst.get("onnx")
        qdq = model is not None and model.has_qdq
        if nst.get("strongly_typed") and flags & {"FP16", "INT8", "BF16", "FP8"}:
            return "Parameter check failed, condition: !config.getFlag(BuilderFlag::kFP16)"  # #4228
        if qdq and v < (10, 0, 0) and "INT8" not in flags:
            # microsoft/onnxruntime#13381 (network.cpp::validate); NVIDIA/TensorRT#4021
            return (
                "Int8 precision has been set for a layer or layer output, but int8 is not "
                "configured in the builder"
            )
        if qdq and cc in NO_INT8:
            # NVIDIA/TensorRT#3157
            return (
                "Networks with QuantizeLayer/DequantizeLayer layers require hardware with "
                "Int8 support"
            )
        dla = st.get("DLA_core")
        if dla is not None:
            if (10, 8, 0) <= v < (11, 4, 1):
                return "DLA is not supported by this TensorRT"  # Working with DLA, 11.4.1
            if not 0 <= int(dla) < int(self.dla_cores):
                return f"setDLACore: {dla} is not between 0 and getNbDLACores() - 1"  # NvInfer.h
        return None

    def _calibrate(self, cal: Any, model: Any) -> bool:
        """Drive the calibrator as TensorRT does: batch size, cache, batches until None, cache."""
        try:
            self.calibration.append(f"get_batch_size={cal.get_batch_size()}")
            cache = cal.read_calibration_cache()
            self.calibration.append("read_calibration_cache")
            if cache:
                return True
            names = list(model.inputs) if model is not None else ["input"]
            for _ in range(100000):
                ptrs = cal.get_batch(names)
                if ptrs is None:
                    break
                if len(ptrs) != len(names) or not all(int(p) for p in ptrs):
                    self.build_errors.append("calibrator returned bad device pointers")
                    return False
                self.calibration.append("get_batch")
            table = "TRT-{}-EntropyCalibration2\n".format(self.version_string.replace(".", ""))
            cal.write_calibration_cache(table.encode() + b"input: 3c010a14\n")
            self.calibration.append("write_calibration_cache")
        except Exception as exc:  # 8.5+ catch it (pyInt8.cpp) and the build fails
            self.build_errors.append(f"calibrator callback raised {exc!r}")
            return False
        return True
