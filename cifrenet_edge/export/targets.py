"""Deployment targets: the opsets and operators each TensorRT ONNX parser reads, checked
without a GPU.

* **Opset too new for the device's parser.** Each target (``TARGETS``) pins the opset range its
  TensorRT ONNX parser reads (8.2 on a Jetson Nano stops at 13). The default opset is 17 (13 for
  trt8.2): every op this network uses exists with the semantics it needs by opset 13, and 17
  is the newest opset every TensorRT from 8.5 on parses, so newer opsets buy nothing here.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Union

from .._io import PathLike
from ..errors import ConfigError, ExportError, ModelFileError, UnsupportedOpError

if TYPE_CHECKING:  # heavy imports stay lazy: `cifrenet-edge --help` must not load torch
    import onnx

# Bilinear Resize with a half-pixel grid first exists in opset 11; below it the exporter emits
# Upsample with asymmetric coordinates, which does not compute what PyTorch computes.
MIN_OPSET = 11
DEFAULT_OPSET = 17


@dataclass(frozen=True)
class Target:
    """A deployment target: which opsets and operators its ONNX importer reads."""

    name: str
    description: str
    opset_min: int  # the parser's (8.x docs state only a maximum); exports need >= MIN_OPSET
    opset_max: int
    default_opset: int
    ops_file: Optional[str]  # resources/onnx_parser_ops/<file>; None: any standard ONNX op
    devices: str = ""
    implicit_int8: bool = True  # IInt8Calibrator still exists (gone in TensorRT 11)
    # TensorRT builds strongly typed: precision comes only from the graph, so layers outside
    # Q/DQ run in FP16 only if the file says so (10.x with STRONGLY_TYPED, 11.x always); 8.x
    # targets get FP16 there from the builder flag instead
    strongly_typed: bool = False

    @property
    def tensorrt(self) -> bool:
        return self.ops_file is not None


# Opset ranges and operator lists from onnx/onnx-tensorrt docs/operators.md at the commit each
# TensorRT release pins (../shared/trt_api, packaged under resources/onnx_parser_ops).
_TARGET_LIST = (
    Target(
        name="trt8.2",
        description="TensorRT 8.2",
        opset_min=1,
        opset_max=13,
        default_opset=13,
        ops_file="onnx-parser-ops-8.2.1.json",
        devices="Jetson Nano / TX2 (JetPack 4.6.x)",
    ),
    Target(
        name="trt8.5",
        description="TensorRT 8.5",
        opset_min=1,
        opset_max=17,
        default_opset=17,
        ops_file="onnx-parser-ops-8.5.2.json",
        devices="Jetson Xavier NX / AGX Xavier (JetPack 5.1)",
    ),
    Target(
        name="trt8.6",
        description="TensorRT 8.6",
        opset_min=1,
        opset_max=17,
        default_opset=17,
        ops_file="onnx-parser-ops-8.6.1.json",
        devices="GTX 1080 Ti and other Pascal GPUs (last TensorRT for them)",
    ),
    # 10.0-10.3 read opsets 9-20 (JetPack 6.x ships 10.3); its op list is the 10.1-GA doc,
    # the closest NVIDIA published (see ../shared/trt_api/README.md).
    Target(
        name="trt10",
        description="TensorRT 10.x",
        opset_min=9,
        opset_max=20,
        default_opset=DEFAULT_OPSET,
        ops_file="onnx-parser-ops-10.3.0.json",
        devices="Jetson Orin (JetPack 6.x), Volta and newer desktop GPUs",
        strongly_typed=True,
    ),
    Target(
        name="trt11",
        description="TensorRT 11.x",
        opset_min=9,
        opset_max=24,
        default_opset=DEFAULT_OPSET,
        ops_file="onnx-parser-ops-11.1.json",
        devices="Turing and newer GPUs, Jetson Orin with JetPack 7",
        implicit_int8=False,
        strongly_typed=True,
    ),
    Target(
        name="onnxruntime",
        description="ONNX Runtime / OpenVINO",
        opset_min=7,
        opset_max=20,
        default_opset=DEFAULT_OPSET,
        ops_file=None,
        devices="CPU, or any ONNX Runtime execution provider",
    ),
)
TARGETS: Dict[str, Target] = {t.name: t for t in _TARGET_LIST}
DEFAULT_TARGET = "trt8.6"


def get_target(name: str) -> Target:
    key = str(name).strip().lower()
    aliases = {"ort": "onnxruntime", "trt10.3": "trt10", "trt8.6.1": "trt8.6", "trt8.5.2": "trt8.5"}
    key = aliases.get(key, key)
    if key not in TARGETS:
        raise ConfigError(
            f"unknown target {name!r}: use one of {', '.join(TARGETS)} "
            "(trt8.2 Jetson Nano, trt8.5 Xavier, trt8.6 GTX 1080 Ti, trt10 Orin, trt11 newest)"
        )
    return TARGETS[key]


def resolve_opset(target: Union[str, Target], opset: Optional[int] = None) -> int:
    """The opset to export for ``target``; an explicit one outside its range is an error."""
    t = target if isinstance(target, Target) else get_target(target)
    if opset is None:
        return t.default_opset
    try:
        opset = int(opset)
    except (TypeError, ValueError):
        raise ConfigError(f"--opset {opset!r} is not an integer: e.g. --opset 17") from None
    if opset > t.opset_max:
        newer = [n for n, o in TARGETS.items() if o.tensorrt and o.opset_max >= opset]
        alt = f" or pick --target {newer[0]}" if newer else ""
        raise ConfigError(
            f"opset {opset} is above what {t.description} parses (opset <= {t.opset_max}): "
            f"use --opset {t.opset_max}{alt}"
        )
    if opset < max(MIN_OPSET, t.opset_min):
        raise ConfigError(
            f"opset {opset} is too old: bilinear Resize with PyTorch's half-pixel grid needs "
            f"opset >= {MIN_OPSET}; use --opset {t.default_opset}"
        )
    if opset > 20:
        raise ConfigError(
            f"opset {opset}: torch's TorchScript ONNX exporter emits at most opset 20 and "
            "this model gains nothing above 17; use --opset 17"
        )
    return opset


def _ops_resource(filename: str) -> Dict[str, Any]:
    from importlib import resources

    try:
        text = (
            resources.files("cifrenet_edge")
            .joinpath("resources", "onnx_parser_ops", filename)
            .read_text(encoding="utf-8")
        )
    except (FileNotFoundError, OSError):
        raise ExportError(
            f"parser operator list {filename} is missing from the installed package: "
            "reinstall cifrenet-edge"
        ) from None
    return json.loads(text)


@lru_cache(maxsize=None)
def parser_ops(target: str) -> Dict[str, Any]:
    """The target parser's operator table ({op: {"supported": bool, ...}}) and opset range."""
    t = get_target(target)
    if t.ops_file is None:
        return {}
    return _ops_resource(t.ops_file)


def _load_onnx(model_or_path: Union[onnx.ModelProto, PathLike]) -> onnx.ModelProto:
    import onnx

    if isinstance(model_or_path, onnx.ModelProto):
        return model_or_path
    path = Path(model_or_path)
    if not path.is_file():
        raise ModelFileError(f"ONNX file {path} does not exist: check the path")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"{path} is not a readable ONNX file ({first}): re-export it"
        ) from None


def model_opset(model: onnx.ModelProto) -> int:
    """The default-domain opset the model declares."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    raise ModelFileError("the ONNX model declares no default-domain opset: re-export it")


def _all_nodes(graph: onnx.GraphProto) -> Iterable[Any]:
    """Nodes of a graph and of any subgraph (If/Loop bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.g is not None and len(attr.g.node):
                yield from _all_nodes(attr.g)
            for sub in attr.graphs:
                yield from _all_nodes(sub)


def _resize_modes(restrictions: str, label: str) -> List[str]:
    """Backticked values after ``label`` in a parser restriction cell."""
    import re

    m = re.search(re.escape(label) + r"[^:]*:(.*?)(<br|$)", restrictions)
    return re.findall(r"`([^`]+)`", m.group(1)) if m else []


def check_target_ops(
    model_or_path: Union[onnx.ModelProto, PathLike], target: str = DEFAULT_TARGET
) -> Dict[str, Any]:
    """Check a graph against the target's ONNX parser without a GPU.

    Checks the opset is in the parser's range, every node's operator is one the parser
    supports (ops of custom domains never are), and Resize uses modes it implements. Raises
    UnsupportedOpError naming each offending node and op; returns a small report otherwise.
    """
    t = get_target(target)
    model = _load_onnx(model_or_path)
    opset = model_opset(model)
    if not t.opset_min <= opset <= t.opset_max:
        span = f"{t.opset_min}..{t.opset_max}" if t.opset_min > 1 else f"opset <= {t.opset_max}"
        raise UnsupportedOpError(
            f"model opset {opset} is outside what {t.description} parses "
            f"({span}): re-export with --target {t.name} "
            f"(opset {t.default_opset})"
        )
    nodes = list(_all_nodes(model.graph))
    counts = Counter(n.op_type for n in nodes)
    report: Dict[str, Any] = {
        "target": t.name,
        "opset": opset,
        "ops": dict(sorted(counts.items())),
        "parser": None,
    }
    if t.ops_file is None:
        return report
    table = parser_ops(t.name)
    ops = table["ops"]
    report["parser"] = table.get("source")
    bad: List[str] = []
    for i, node in enumerate(nodes):
        label = node.name or f"#{i}"
        if node.domain not in ("", "ai.onnx"):
            bad.append(f"{label} ({node.domain}::{node.op_type}: custom domain)")
            continue
        entry = ops.get(node.op_type)
        if entry is None or not entry.get("supported"):
            bad.append(f"{label} ({node.op_type})")
            continue
        if node.op_type == "Resize":
            bad.extend(_check_resize(node, label, entry.get("restrictions", "")))
    if bad:
        shown = "; ".join(bad[:12]) + (f"; +{len(bad) - 12} more" if len(bad) > 12 else "")
        raise UnsupportedOpError(
            f"{t.description} ({t.devices}) cannot parse {len(bad)} node(s): {shown}; "
            "pick a newer --target or remove these ops from the model"
        )
    from ..trt.rules import check_target_graph  # what the target's TensorRT refuses

    report["warnings"] = check_target_graph(model, t.name)
    return report


def _check_resize(node: Any, label: str, restrictions: str) -> List[str]:
    attrs = {a.name: a.s.decode() for a in node.attribute if a.s}
    problems = []
    for key, cell_label, default in (
        ("coordinate_transformation_mode", "resize transformation modes", "half_pixel"),
        ("mode", "resize modes", "nearest"),
    ):
        allowed = _resize_modes(restrictions, "Supported " + cell_label)
        value = attrs.get(key, default)
        if allowed and value not in allowed:
            problems.append(f"{label} (Resize {key}={value}, parser supports {allowed})")
    return problems
