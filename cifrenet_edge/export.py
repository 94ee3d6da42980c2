"""PyTorch -> ONNX that the TensorRT on the user's device parses, verified against PyTorch.

What goes wrong with exported segmentation models in the field, and what this module does:

* **Opset too new for the device's parser.** Each target (``TARGETS``) pins the opset range its
  TensorRT ONNX parser reads (8.2 on a Jetson Nano stops at 13). The default opset is 17 (13 for
  trt8.2): every op this network uses exists with the semantics it needs by opset 13, and 17
  is the newest opset every TensorRT from 8.5 on parses, so newer opsets buy nothing here.
  The TorchScript exporter (``dynamo=False``) is used because torch 2.13's default dynamo
  exporter cannot emit opset <= 17 for this model (it lands at 18 and the down-conversion fails).
* **Shape arithmetic the parser chokes on.** The TorchScript exporter leaves
  Shape/Gather/Unsqueeze/Concat/ConstantOfShape/Where chains (from ``expand(-1, -1, h, w)`` and
  the channel shuffles). They are folded with **onnxslim**. All three candidates were run on
  this model's raw 640x360 opset-17 export (onnxslim 0.1.98, onnxsim 0.8.1, Polygraphy 0.53.6
  ``surgeon sanitize --fold-constants``): each folds every shape chain, but onnxslim is the
  fastest (about 0.3 s against 1.1 s and 1.9 s here), leaves no stray Constant/Unsqueeze nodes
  (onnxsim left 2 Constants, Polygraphy an extra Unsqueeze), keeps opset and IR version, and is
  pure Python, so it installs on a Jetson (aarch64) or any new Python without a compiler;
  onnxsim is a C++ extension (source builds need cmake + protobuf) and Polygraphy needs
  onnx-graphsurgeon and runs a whole CLI per model.
  For a static export the result is then *checked*: any shape op left is an export error.
  A dynamic export must keep Shape/Gather/Concat (the sizes are runtime values) but loses the
  exporter's ``Where(Equal(sizes, -1), 1, sizes)`` selects before each Expand
  (``fold_expand_wildcards``), so no select on shape tensors reaches TensorRT.
* **Export-only rewrites** (the PyTorch model is never changed; parity compares the ONNX model
  against the unmodified network): every BatchNorm is folded into its convolution (the head's
  BN sits after a channel shuffle, so it is folded through the shuffle's permutation, and the
  shuffle itself is folded into the classifier's input channels: one Reshape/Transpose pair and
  a BN fewer at stride 8); the channel-attention MLP becomes two 1x1 convolutions, so the graph
  needs no Flatten/Gemm/Unsqueeze.
* **Resize mismatches that silently cost mIoU.** The final x8 bilinear resize must compute what
  PyTorch's ``align_corners=False`` computes. Every Resize is checked to be ``linear`` with
  ``half_pixel`` (identical to ``pytorch_half_pixel`` whenever the output side is > 1, always
  true here, and the mode every runtime implements the same way) and normalised to it.
* **A file that does not compute what PyTorch computes.** The parity gate runs ONNX Runtime
  (CPU) and PyTorch on the same inputs (real images through the runtime's own ``preprocess``
  when given, seeded random frames otherwise) and fails the export on the class map
  (argmax agreement) and the logits (max abs difference), leaving no file behind.
* **Files that forget what they are.** The manifest (classes, palette, normalisation,
  resolution or verified dynamic range, weights hash, untrained flag, parity figures) is
  embedded in ``metadata_props`` and written as a JSON sidecar.

``export_onnx`` makes the FP32 ONNX; ``export`` is the whole pipeline the CLI runs (FP32 ONNX,
then INT8 Q/DQ, the accuracy gate, FP16 or a TensorRT engine), each later stage imported
lazily from its own module.
"""

from __future__ import annotations

import copy
import datetime
import importlib
import json
import os
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import __version__
from ._io import PathLike, atomic_path, ensure_writable_dir, sha256_file
from .errors import (
    BackendUnavailableError,
    ConfigError,
    ExportError,
    ModelFileError,
    ParityError,
    UnsupportedOpError,
)
from .manifest import (
    MANIFEST_FORMAT,
    check_manifest,
    onnx_metadata_props,
    read_manifest,
    sidecar_path,
    write_manifest,
)
from .presets import format_resolution, get_preset, parse_resolution
from .runtime.sources import IMAGE_SUFFIXES

if TYPE_CHECKING:  # heavy imports stay lazy: `cifrenet-edge --help` must not load torch
    import onnx
    import torch

WH = Tuple[int, int]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
# Bilinear Resize with a half-pixel grid first exists in opset 11; below it the exporter emits
# Upsample with asymmetric coordinates, which does not compute what PyTorch computes.
MIN_OPSET = 11
DEFAULT_OPSET = 17
MIN_SIDE = 32  # stride 8 inside; smaller inputs leave the MCIM with nothing to look at
MAX_SIDE = 8192
DEFAULT_DYNAMIC_MAX_BATCH = 4  # a four-camera rig; the TensorRT profile needs an upper bound
# Parity thresholds (issue 3): the class map is what a segmentation user sees.
DEFAULT_MIN_AGREEMENT = 0.9999
DEFAULT_MAX_ABS_DIFF = 1e-4
MAX_VERIFY_IMAGES = 8
# What a static export may contain after folding; anything else means shape arithmetic leaked.
SHAPE_OPS = frozenset(
    {
        "Shape",
        "Gather",
        "Unsqueeze",
        "Squeeze",
        "Cast",
        "ConstantOfShape",
        "Equal",
        "Where",
        "Slice",
        "Range",
        "Size",
        "NonZero",
    }
)
PRECISIONS = ("fp32", "fp16", "int8")
FORMATS = ("onnx", "engine")
CALIB_METHODS = ("entropy", "minmax", "percentile")
INT8_MODES = ("qdq", "calibrator")


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

    @property
    def tensorrt(self) -> bool:
        return self.ops_file is not None


# Opset ranges and operator lists from onnx/onnx-tensorrt docs/operators.md at the commit each
# TensorRT release pins (../shared/trt_api, packaged under resources/onnx_parser_ops).
TARGETS: Dict[str, Target] = {
    "trt8.2": Target(
        "trt8.2",
        "TensorRT 8.2",
        1,
        13,
        13,
        "onnx-parser-ops-8.2.1.json",
        "Jetson Nano / TX2 (JetPack 4.6.x)",
    ),
    "trt8.5": Target(
        "trt8.5",
        "TensorRT 8.5",
        1,
        17,
        17,
        "onnx-parser-ops-8.5.2.json",
        "Jetson Xavier NX / AGX Xavier (JetPack 5.1)",
    ),
    "trt8.6": Target(
        "trt8.6",
        "TensorRT 8.6",
        1,
        17,
        17,
        "onnx-parser-ops-8.6.1.json",
        "GTX 1080 Ti and other Pascal GPUs (last TensorRT for them)",
    ),
    # 10.0-10.3 read opsets 9-20 (JetPack 6.x ships 10.3); its op list is the 10.1-GA doc,
    # the closest NVIDIA published (see ../shared/trt_api/README.md).
    "trt10": Target(
        "trt10",
        "TensorRT 10.x",
        9,
        20,
        DEFAULT_OPSET,
        "onnx-parser-ops-10.3.0.json",
        "Jetson Orin (JetPack 6.x), Volta and newer desktop GPUs",
    ),
    "trt11": Target(
        "trt11",
        "TensorRT 11.x",
        9,
        24,
        DEFAULT_OPSET,
        "onnx-parser-ops-11.1.json",
        "Turing and newer GPUs, Jetson Orin with JetPack 7",
        implicit_int8=False,
    ),
    "onnxruntime": Target(
        "onnxruntime",
        "ONNX Runtime / OpenVINO",
        7,
        20,
        DEFAULT_OPSET,
        None,
        "CPU, or any ONNX Runtime execution provider",
    ),
}
DEFAULT_TARGET = "trt8.6"


@dataclass
class ExportResult:
    """An artifact on disk with its manifest (also what ``quantize.quantize_onnx`` returns)."""

    path: Path
    manifest_path: Path
    manifest: Dict[str, Any]
    parity: Dict[str, Any]


@dataclass
class PipelineResult:
    """Everything ``export`` wrote: the FP32 ONNX first, then each derived artifact."""

    fp32: ExportResult
    final: Path
    artifacts: List[Tuple[str, Path]] = field(default_factory=list)  # (label, path)
    stages: Dict[str, Any] = field(default_factory=dict)  # stage name -> its result object


# ------------------------------------------------------------------------------------------
# targets and operator check


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
    from .trt.rules import check_target_graph  # what the target's TensorRT refuses (issue 12)

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


# ------------------------------------------------------------------------------------------
# paths and option parsing


def _res_tuple(res: Union[str, Sequence[int]], what: str = "--res") -> WH:
    if isinstance(res, str):
        wh = parse_resolution(res)
    else:
        try:
            w, h = (int(v) for v in res)
        except (TypeError, ValueError):
            raise ConfigError(f"{what} {res!r} is not WIDTHxHEIGHT: e.g. {what} 640x360") from None
        wh = (w, h)
    for side in wh:
        if not MIN_SIDE <= side <= MAX_SIDE:
            raise ConfigError(
                f"{what} {wh[0]}x{wh[1]}: each side must be {MIN_SIDE}..{MAX_SIDE} pixels "
                f"(e.g. {what} 640x360)"
            )
    return wh


def default_output_path(
    preset: str,
    res: Union[str, Sequence[int], None],
    precision: str = "fp32",
    dynamic: bool = False,
    target: str = DEFAULT_TARGET,
    ext: str = ".onnx",
) -> Path:
    """``models/cifrenet_<preset>_<WxH|dynamic>_<precision>[_<target>].onnx``.

    The default target is left out of the name; other targets are kept in it, because a trt8.2
    (opset 13) file and a trt8.6 file must not overwrite each other.
    """
    size = "dynamic" if dynamic or res is None else format_resolution(_res_tuple(res))
    t = get_target(target).name
    suffix = "" if t == DEFAULT_TARGET else f"_{t}"
    return Path("models") / f"cifrenet_{get_preset(preset).name}_{size}_{precision}{suffix}{ext}"


def _check_output(path: PathLike, ext: str = ".onnx") -> Path:
    out = Path(path).expanduser()
    if out.suffix.lower() != ext:
        raise ConfigError(f"--output {out} must end in {ext}: e.g. --output {out.with_suffix(ext)}")
    if out.is_dir():
        raise ConfigError(f"--output {out} is a folder: give a file name ending in {ext}")
    ensure_writable_dir(out)
    if out.exists() and not os.access(str(out), os.W_OK):
        raise ConfigError(f"--output {out} exists and is not writable: choose another --output")
    return out


# ------------------------------------------------------------------------------------------
# model preparation


def _load_model(preset: str, weights: Optional[PathLike]) -> Tuple[torch.nn.Module, Dict]:
    """The eval-mode network and its weights record; untrained weights are seeded (0)."""
    import torch

    from .weights import build_model

    p = get_preset(preset)
    if weights is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model, _meta = build_model(p.name)
        return model, {"path": None, "sha256": None, "trained": False, "init_seed": 0}
    wpath = Path(weights).expanduser()
    model, meta = build_model(p.name, wpath)
    saved = meta.get("preset")
    if saved and str(saved) != p.name:
        from .errors import WeightsError

        raise WeightsError(
            f"weights {wpath} were trained for preset {saved!r}, not {p.name!r}: "
            f"pass --preset {saved}"
        )
    record: Dict[str, Any] = {
        "path": str(wpath),
        "sha256": sha256_file(wpath),
        "trained": True,
    }
    if model.num_classes != p.num_classes:
        # Fine-tuned on the user's own classes: the checkpoint must name them.
        names = meta.get("classes")
        if not isinstance(names, (list, tuple)) or len(names) != model.num_classes:
            from .errors import WeightsError

            raise WeightsError(
                f"weights {wpath} have {model.num_classes} classes but preset {p.name!r} has "
                f"{p.num_classes} and the checkpoint names none: pass the right --preset or "
                "save it with cifrenet-edge train (which records the class names)"
            )
        record["classes"] = [str(c) for c in names]
    for key in ("epoch", "miou", "dataset", "format"):
        if key in meta and isinstance(meta[key], (str, int, float)):
            record[key] = meta[key]
    return model, record


def _fold_bn_into_conv(conv: torch.nn.Conv2d, bn: torch.nn.BatchNorm2d, perm=None):
    """Conv whose output equals ``bn`` applied after ``conv`` (BN params gathered by perm)."""
    import torch

    gamma, beta, mean, var = bn.weight, bn.bias, bn.running_mean, bn.running_var
    if perm is not None:
        gamma, beta, mean, var = gamma[perm], beta[perm], mean[perm], var[perm]
    scale = gamma / torch.sqrt(var + bn.eps)
    fused = copy.deepcopy(conv)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(mean)
    fused.weight = torch.nn.Parameter((conv.weight * scale[:, None, None, None]).detach())
    fused.bias = torch.nn.Parameter(((bias - mean) * scale + beta).detach())
    return fused


def _export_view(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of the network rewritten for a lean graph; numerically the same function."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from .model import HEAD_GROUPS, channel_shuffle

    view = copy.deepcopy(model).eval()

    class ConvAttention(nn.Module):
        """The SE gate with its two Linear layers as 1x1 convs: no Flatten/Gemm/Unsqueeze."""

        def __init__(self, fc1: nn.Linear, fc2: nn.Linear) -> None:
            super().__init__()
            self.fc1 = nn.Conv2d(fc1.in_features, fc1.out_features, 1)
            self.fc2 = nn.Conv2d(fc2.in_features, fc2.out_features, 1)
            with torch.no_grad():
                for conv, lin in ((self.fc1, fc1), (self.fc2, fc2)):
                    conv.weight.copy_(lin.weight[:, :, None, None])
                    conv.bias.copy_(lin.bias)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            w = F.adaptive_avg_pool2d(x, 1)
            return torch.sigmoid(self.fc2(F.relu(self.fc1(w))))

    class FoldedHead(nn.Module):
        """reduce -> shuffle -> BN -> LeakyReLU -> classifier, with BN and shuffle folded.

        shuffle(z)[j] = z[src[j]]; BN and LeakyReLU act per channel, so both move before the
        shuffle with their parameters gathered by dst = src^-1, and the shuffle lands on the
        classifier's input channels, where it is a permutation of weight columns.
        """

        def __init__(self, head: nn.Module) -> None:
            super().__init__()
            c = head.reduce.out_channels
            src = channel_shuffle(
                torch.arange(c, dtype=torch.float32).view(1, c, 1, 1), HEAD_GROUPS
            )
            src = src.view(c).long()
            dst = torch.empty_like(src)
            dst[src] = torch.arange(c)
            self.reduce = _fold_bn_into_conv(head.reduce, head.bn, dst)
            self.act = nn.LeakyReLU(head.act.negative_slope)
            self.classifier = copy.deepcopy(head.classifier)
            with torch.no_grad():
                self.classifier.weight = nn.Parameter(head.classifier.weight[:, dst].clone())

        def forward(self, x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
            x = self.classifier(self.act(self.reduce(x)))
            return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    view.attention = ConvAttention(model.attention.fc1, model.attention.fc2)
    view.head = FoldedHead(model.head)
    return view.eval()


# ------------------------------------------------------------------------------------------
# ONNX graph production


def _torch_export(
    view: torch.nn.Module, path: Path, wh: WH, batch: int, opset: int, dynamic: bool
) -> None:
    import warnings

    import torch

    x = torch.zeros(batch, 3, wh[1], wh[0])
    axes = None
    if dynamic:
        axes = {
            INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"},
        }
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer chatter
        try:
            torch.onnx.export(
                view,
                (x,),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes=axes,
                do_constant_folding=True,
                training=torch.onnx.TrainingMode.EVAL,
            )
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else repr(exc)
            raise ExportError(
                f"torch.onnx.export failed at opset {opset}: {first} "
                f"(try the default --opset {DEFAULT_OPSET})"
            ) from None


def _min_ir_version(opset: int) -> int:
    """The oldest IR version that carries ``opset``: old parsers reject newer IR versions."""
    import onnx

    best = None
    for _onnx_ver, ir, ai_onnx, *_ in onnx.helper.VERSION_TABLE:
        if ai_onnx >= opset and (best is None or ir < best):
            best = ir
    return int(best or onnx.IR_VERSION)


def _slim(model: onnx.ModelProto) -> onnx.ModelProto:
    import io
    import logging
    from contextlib import redirect_stdout

    import onnxslim

    logging.getLogger("onnxslim").setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()):
            return onnxslim.slim(model)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else repr(exc)
        raise ExportError(f"onnxslim could not fold the graph: {first} (report this bug)") from None


def _is_shape_dim(name: str, producers: Dict[str, Any]) -> bool:
    """True when ``name`` is Unsqueeze(Gather(Shape(t))): one tensor dimension, never < 0."""
    n = producers.get(name)
    if n is None or n.op_type != "Unsqueeze":
        return False
    g = producers.get(n.input[0])
    if g is None or g.op_type != "Gather":
        return False
    sh = producers.get(g.input[0])
    return sh is not None and sh.op_type == "Shape"


def fold_expand_wildcards(model: onnx.ModelProto) -> int:
    """Fold the ``Where(Equal(sizes, -1), 1, sizes)`` the exporter puts before each Expand.

    ``expand(-1, -1, h, w)`` becomes that select on a Concat of constants and shape-derived
    dims. A dimension is never -1, so the select is decidable from the constants alone; the
    TorchScript exporter cannot see that and onnxslim only folds fully constant chains. Left
    in, a dynamic graph carries Equal/Where on shape tensors into TensorRT's shape
    computation. Returns the number of selects folded; dead nodes are removed afterwards.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    producers = {o: n for n in graph.node for o in n.output}
    inits = {i.name: i for i in graph.initializer}
    folded = 0
    for where in [n for n in graph.node if n.op_type == "Where"]:
        eq = producers.get(where.input[0])
        if eq is None or eq.op_type != "Equal" or eq.input[0] != where.input[2]:
            continue
        concat = producers.get(eq.input[0])
        if concat is None or concat.op_type != "Concat":
            continue
        if eq.input[1] not in inits or where.input[1] not in inits:
            continue
        wildcard = numpy_helper.to_array(inits[eq.input[1]]).reshape(-1)
        fill = numpy_helper.to_array(inits[where.input[1]]).reshape(-1)
        parts: List[Optional[np.ndarray]] = []
        ok = True
        for name in concat.input:
            if name in inits:
                parts.append(numpy_helper.to_array(inits[name]).reshape(-1))
            elif _is_shape_dim(name, producers):
                parts.append(None)  # one dimension >= 0
            else:
                ok = False
                break
        length = sum(1 if p is None else p.size for p in parts)
        if not ok or wildcard.size not in (1, length) or fill.size not in (1, length):
            continue
        wildcard = np.broadcast_to(wildcard, (length,))
        fill = np.broadcast_to(fill, (length,))
        new_inputs, offset = [], 0
        for name, part in zip(concat.input, parts):
            if part is None:
                if wildcard[offset] >= 0:  # a real dim could equal it: not decidable
                    ok = False
                    break
                new_inputs.append(name)
                offset += 1
                continue
            span = slice(offset, offset + part.size)
            value = np.where(part == wildcard[span], fill[span], part).astype(part.dtype)
            const = numpy_helper.from_array(value, f"{where.name or where.output[0]}/fold_{offset}")
            graph.initializer.append(const)
            new_inputs.append(const.name)
            offset += part.size
        if not ok:
            continue
        node = helper.make_node(
            "Concat", new_inputs, [where.output[0]], name=f"{where.name}/folded", axis=0
        )
        graph.node.insert(list(graph.node).index(where), node)
        graph.node.remove(where)
        folded += 1
    if folded:
        _remove_dead(model)
    return folded


def _remove_dead(model: onnx.ModelProto) -> None:
    """Drop nodes whose outputs nobody reads, and initializers no node reads."""
    graph = model.graph
    outputs = {o.name for o in graph.output}
    changed = True
    while changed:
        used = {i for n in graph.node for i in n.input} | outputs
        dead = [n for n in graph.node if not any(o in used for o in n.output)]
        for n in dead:
            graph.node.remove(n)
        changed = bool(dead)
    used = {i for n in graph.node for i in n.input} | outputs
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)


def _normalise_resize(model: onnx.ModelProto) -> List[Dict[str, str]]:
    """Check each Resize is bilinear on PyTorch's half-pixel grid; write it as half_pixel."""
    found = []
    for node in model.graph.node:
        if node.op_type != "Resize":
            continue
        attrs = {a.name: a for a in node.attribute}
        mode = attrs["mode"].s.decode() if "mode" in attrs else "nearest"
        ctm = (
            attrs["coordinate_transformation_mode"].s.decode()
            if "coordinate_transformation_mode" in attrs
            else "half_pixel"
        )
        if mode != "linear" or ctm not in ("half_pixel", "pytorch_half_pixel"):
            raise ExportError(
                f"Resize {node.name} is mode={mode}, {ctm}: PyTorch's bilinear "
                "align_corners=False needs linear + half_pixel (report this bug)"
            )
        if "coordinate_transformation_mode" in attrs:
            attrs["coordinate_transformation_mode"].s = b"half_pixel"
        found.append(
            {"node": node.name, "mode": mode, "coordinate_transformation_mode": "half_pixel"}
        )
    return found


def build_onnx(
    model: torch.nn.Module,
    wh: WH,
    *,
    opset: int,
    dynamic: bool = False,
    batch: int = 1,
) -> onnx.ModelProto:
    """The folded, checked ONNX graph of ``model`` (no file written, no parity run)."""
    import onnx

    view = _export_view(model)
    with tempfile.TemporaryDirectory(prefix="cifrenet-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        _torch_export(view, raw, wh, batch, opset, dynamic)
        proto = onnx.load(str(raw))
    proto = _slim(proto)
    if dynamic:
        fold_expand_wildcards(proto)
    _normalise_resize(proto)
    got = model_opset(proto)
    if got != opset:
        raise ExportError(f"the exported file declares opset {got}, not {opset} (report this bug)")
    proto.ir_version = min(int(proto.ir_version), _min_ir_version(opset))
    if not dynamic:
        left = sorted({n.op_type for n in proto.graph.node} & SHAPE_OPS)
        if left:
            raise ExportError(
                f"static export still holds shape ops {', '.join(left)} after folding "
                "(report this bug; --dynamic exports keep them on purpose)"
            )
    bn = [n.name for n in proto.graph.node if n.op_type == "BatchNormalization"]
    if bn:
        raise ExportError(f"BatchNormalization not folded into Conv: {bn[:3]} (report this bug)")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise ExportError(
            f"the exported graph fails onnx.checker: {first} (report this bug)"
        ) from None
    return proto


# ------------------------------------------------------------------------------------------
# parity gate


def _list_images(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def parity_frames(
    verify_images: Optional[PathLike], count: int = 2, seed: int = 0
) -> Tuple[List[np.ndarray], str]:
    """BGR uint8 frames for the parity gate and a description of where they came from.

    Real images from ``verify_images`` (or ``./calib`` when it holds some), else seeded random
    frames: smoothed noise, so neighbouring pixels correlate as in a photograph.
    """
    import cv2

    folder = None
    if verify_images is not None:
        folder = Path(verify_images).expanduser()
        if not folder.is_dir():
            raise ConfigError(
                f"--verify-images {folder} is not a folder: pass a folder of .jpg/.png images"
            )
        if not _list_images(folder):
            raise ConfigError(
                f"--verify-images {folder} holds no images ({', '.join(IMAGE_SUFFIXES[:4])}...): "
                "add some or leave the option out for random inputs"
            )
    elif Path("calib").is_dir() and _list_images(Path("calib")):
        folder = Path("calib")
    if folder is not None:
        frames = []
        for p in _list_images(folder)[:MAX_VERIFY_IMAGES]:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is not None:
                frames.append(img)
        if not frames:
            raise ConfigError(
                f"no image in {folder} could be decoded: pass a folder of .jpg/.png images"
            )
        return frames, f"{len(frames)} real image(s) from {folder}"
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(count):
        noise = rng.integers(0, 256, size=(90, 160, 3), dtype=np.uint8)
        frames.append(cv2.resize(noise, (640, 360), interpolation=cv2.INTER_CUBIC))
    return frames, f"{count} seeded random frame(s) (seed {seed})"


def _inputs_at(frames: Sequence[np.ndarray], wh: WH, batch: int, preset) -> List[np.ndarray]:
    """Batches of network input at ``wh``, each frame through the runtime's preprocess."""
    from .runtime.preprocess import preprocess

    xs = [preprocess(f, wh, preset.mean_bgr, preset.scale) for f in frames]
    while len(xs) < batch:
        xs = xs + xs
    return [np.concatenate(xs[i : i + batch]) for i in range(0, len(xs) - batch + 1, batch)]


def check_parity(
    onnx_model: Union[onnx.ModelProto, PathLike],
    model: torch.nn.Module,
    sizes: Sequence[WH],
    *,
    frames: Sequence[np.ndarray],
    source: str,
    batches: Optional[Sequence[int]] = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    max_abs_diff: float = DEFAULT_MAX_ABS_DIFF,
) -> Dict[str, Any]:
    """ONNX Runtime (CPU) against PyTorch on the same inputs; ParityError if they disagree.

    Gates: per-pixel argmax agreement >= ``min_agreement`` (the class map is what users see),
    and max |logit difference| <= ``max_abs_diff`` x max(1, logit scale): FP32 rounding error
    grows with the magnitude of the logits, so the issue's 1e-4 holds as absolute for logits
    within +-1 (untrained weights sit near 0.1) and as relative for a trained model's larger
    logits (measured here: logits scaled to +-23 differ by 3.2e-5, 1.4e-6 relative; untrained
    ones by ~1e-7). Disagreeing pixels whose two best PyTorch logits are within the measured
    difference are counted as ``near_ties`` (random weights produce some): reported, not excused.
    """
    import onnx
    import onnxruntime as ort
    import torch

    sess_opts = ort.SessionOptions()
    sess_opts.log_severity_level = 3
    data = (
        onnx_model.SerializeToString()
        if isinstance(onnx_model, onnx.ModelProto)
        else str(onnx_model)
    )
    sess = ort.InferenceSession(data, sess_opts, providers=["CPUExecutionProvider"])
    preset = model.preset
    batches = list(batches) if batches is not None else [1] * len(sizes)
    worst, scale, pixels, agree, ties = 0.0, 0.0, 0, 0, 0
    per_size = []
    for wh, b in zip(sizes, batches):
        s_pixels, s_agree, s_worst = 0, 0, 0.0
        for x in _inputs_at(frames, wh, b, preset):
            with torch.no_grad():
                ref = model(torch.from_numpy(x)).numpy()
            out = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
            if out.shape != ref.shape:
                raise ParityError(
                    f"ONNX output shape {out.shape} != PyTorch {ref.shape} at {wh[0]}x{wh[1]} "
                    "(report this bug)"
                )
            diff = float(np.max(np.abs(out - ref)))
            same = out.argmax(1) == ref.argmax(1)
            if not same.all():
                top2 = np.sort(ref, axis=1)[:, -2:]
                margin = top2[:, 1] - top2[:, 0]
                ties += int(np.count_nonzero(~same & (margin <= 2 * diff)))
            s_worst = max(s_worst, diff)
            s_pixels += same.size
            s_agree += int(np.count_nonzero(same))
            scale = max(scale, float(np.max(np.abs(ref))))
        worst = max(worst, s_worst)
        pixels += s_pixels
        agree += s_agree
        per_size.append(
            {
                "size": [wh[0], wh[1]],
                "batch": b,
                "max_abs_diff": s_worst,
                "argmax_agreement": s_agree / max(s_pixels, 1),
            }
        )
    agreement = agree / max(pixels, 1)
    tolerance = max_abs_diff * max(1.0, scale)
    result = {
        "reference": f"torch {torch.__version__} (CPU, FP32)",
        "runtime": f"onnxruntime {ort.__version__} (CPUExecutionProvider)",
        "inputs": source,
        "sizes": per_size,
        "max_abs_diff": worst,
        "logit_scale": scale,
        "max_rel_diff": worst / scale if scale > 0 else 0.0,
        "argmax_agreement": agreement,
        "pixels": pixels,
        "disagreeing_pixels": pixels - agree,
        "near_ties": ties,
        "thresholds": {
            "min_agreement": min_agreement,
            "max_abs_diff": max_abs_diff,
            "max_abs_diff_applied": tolerance,
        },
        "passed": agreement >= min_agreement and worst <= tolerance,
    }
    if not result["passed"]:
        what = []
        if agreement < min_agreement:
            what.append(
                f"argmax agreement {agreement:.4%} < {min_agreement:.4%} "
                f"({pixels - agree} pixels, {ties} near-ties)"
            )
        if worst > tolerance:
            what.append(f"max |logit diff| {worst:.3g} > {tolerance:.3g}")
        raise ParityError(
            "ONNX Runtime and PyTorch disagree (" + "; ".join(what) + f") on {source}: "
            "the file was not written; try the default --opset/--target, and report it"
        )
    return result


# ------------------------------------------------------------------------------------------
# export


def _dynamic_range(
    res: WH, min_res: Optional[WH], max_res: Optional[WH], batch: int
) -> Dict[str, Any]:
    lo = min_res or (max(MIN_SIDE, res[0] // 2), max(MIN_SIDE, res[1] // 2))
    hi = max_res or (min(MAX_SIDE, res[0] * 2), min(MAX_SIDE, res[1] * 2))
    if not (lo[0] <= res[0] <= hi[0] and lo[1] <= res[1] <= hi[1]):
        raise ConfigError(
            f"dynamic range {lo[0]}x{lo[1]} .. {hi[0]}x{hi[1]} does not contain --res "
            f"{res[0]}x{res[1]}: give --min-res <= --res <= --max-res"
        )
    # One size not divisible by 8 (odd on both sides) inside the range: stride-8 rounding is
    # where a dynamic graph most often diverges from PyTorch.
    odd = (((lo[0] + res[0]) // 2) | 1, ((lo[1] + res[1]) // 2) | 1)
    odd = (min(odd[0], hi[0]), min(odd[1], hi[1]))
    verify: List[WH] = []
    for wh in (lo, res, odd, hi):
        if wh not in verify:
            verify.append(wh)
    return {
        "min": [lo[0], lo[1]],
        "opt": [res[0], res[1]],
        "max": [hi[0], hi[1]],
        "batch": [1, batch, max(batch, DEFAULT_DYNAMIC_MAX_BATCH)],
        "verify": verify,
    }


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def _print_warnings(lines: Sequence[str], quiet: bool) -> None:
    if lines and not quiet:
        from rich.markup import escape

        console = _console()
        for line in lines:
            console.print(f"[yellow]warning:[/] {escape(line)}")


def warn_untrained(console=None) -> None:
    """The loud warning every untrained export prints."""
    from rich.panel import Panel

    console = console or _console()
    console.print(
        Panel(
            "[bold]No --weights given: this model is UNTRAINED (random weights, seed 0).[/]\n"
            "Its masks are noise. Fine for speed tests and integration; the manifest records "
            "weights.trained = false. Pass --weights CKPT for a model that segments.",
            title="[bold red]WARNING: UNTRAINED MODEL[/]",
            border_style="red",
        )
    )


def export_onnx(
    preset: str = "cityscapes",
    weights: Optional[PathLike] = None,
    res: Union[str, Sequence[int]] = (640, 360),
    dynamic: bool = False,
    opset: Optional[int] = None,
    target: str = DEFAULT_TARGET,
    output: Optional[PathLike] = None,
    verify_images: Optional[PathLike] = None,
    batch: int = 1,
    quiet: bool = False,
    *,
    min_res: Union[str, Sequence[int], None] = None,
    max_res: Union[str, Sequence[int], None] = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    max_abs_diff: float = DEFAULT_MAX_ABS_DIFF,
) -> ExportResult:
    """Export the FP32 ONNX model, check it against the target parser and PyTorch, write it.

    Writes ``output`` (default ``default_output_path``) and its ``.json`` manifest sidecar,
    both only after every gate passed; on any failure neither exists afterwards.
    """
    import onnx

    p = get_preset(preset)
    t = get_target(target)
    the_opset = resolve_opset(t, opset)
    wh = _res_tuple(res)
    try:
        batch = int(batch)
    except (TypeError, ValueError):
        raise ConfigError(f"--batch {batch!r} is not an integer: e.g. --batch 1") from None
    if not 1 <= batch <= 64:
        raise ConfigError(f"--batch {batch} must be 1..64: e.g. --batch 1")
    if not dynamic and (min_res is not None or max_res is not None):
        raise ConfigError("--min-res/--max-res set the range of a dynamic model: add --dynamic")
    drange = None
    if dynamic:
        lo = _res_tuple(min_res, "--min-res") if min_res is not None else None
        hi = _res_tuple(max_res, "--max-res") if max_res is not None else None
        drange = _dynamic_range(wh, lo, hi, batch)
    out = _check_output(output or default_output_path(p.name, wh, "fp32", dynamic, t.name))
    frames, source = parity_frames(verify_images)
    console = None if quiet else _console()

    model, wrecord = _load_model(p.name, weights)
    if not wrecord["trained"] and not quiet:
        warn_untrained(console)
    if console:
        console.print(
            f"exporting CIFReNet ({p.name}) {'dynamic' if dynamic else format_resolution(wh)} "
            f"at opset {the_opset} for {t.description} ..."
        )
    proto = build_onnx(model, wh, opset=the_opset, dynamic=dynamic, batch=batch)
    target_report = check_target_ops(proto, t.name)
    if dynamic:
        sizes = list(drange["verify"])
        batches = [1] * len(sizes)
        sizes.insert(1, drange["verify"][0])  # the smallest size again, at batch 2
        batches.insert(1, 2)
    else:
        sizes, batches = [wh], [batch]
    parity = check_parity(
        proto,
        model,
        sizes,
        frames=frames,
        source=source,
        batches=batches,
        min_agreement=min_agreement,
        max_abs_diff=max_abs_diff,
    )
    dynamic_record = None
    if drange is not None:
        dynamic_record = {k: drange[k] for k in ("min", "opt", "max", "batch")}
        dynamic_record["verified"] = [[w, h] for (w, h) in drange["verify"]]
        dynamic_record["verified_batches"] = sorted(set(batches))
    manifest: Dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "kind": "onnx",
        "precision": "fp32",
        **p.metadata(classes=wrecord.pop("classes", None)),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "resolution": None if dynamic else [wh[0], wh[1]],
        "dynamic": dynamic_record,
        "batch": None if dynamic else batch,
        "opset": the_opset,
        "ir_version": int(proto.ir_version),
        "target": t.name,
        "target_check": {"parser": target_report["parser"], "ops": target_report["ops"]},
        "resize": _normalise_resize(proto),
        "exporter": _exporter_versions(),
        "toolkit_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "weights": wrecord,
        "parity": parity,
    }
    check_manifest(manifest, out)
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, onnx_metadata_props(manifest))
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        _check_written(tmp, the_opset, manifest)
    try:
        side = write_manifest(out, manifest)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    if console:
        console.print(
            f"wrote {out} (+ {side.name}); parity: argmax agreement "
            f"{parity['argmax_agreement']:.4%}, max |diff| {parity['max_abs_diff']:.2e}"
        )
    return ExportResult(path=out, manifest_path=side, manifest=manifest, parity=parity)


def _check_written(path: Path, opset: int, manifest: Dict[str, Any]) -> None:
    """Read the file back before it replaces anything: opset and embedded manifest as meant."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    got = model_opset(model)
    if got != opset:
        raise ExportError(f"the written file declares opset {got}, not {opset} (report this bug)")
    props = {p.key: p.value for p in model.metadata_props}
    if json.loads(props.get("cifrenet_edge", "null")) != manifest:
        raise ExportError("the written file's embedded manifest differs (report this bug)")


def _exporter_versions() -> Dict[str, str]:
    import onnx
    import onnxslim
    import torch

    return {
        "torch": torch.__version__,
        "exporter": "torch.onnx TorchScript (dynamo=False)",
        "onnx": onnx.__version__,
        "onnxslim": onnxslim.__version__,
        "python": sys.version.split()[0],
    }


# ------------------------------------------------------------------------------------------
# the full pipeline (what the CLI runs)


def _stage(module: str, attr: str, needed_for: str):
    """A function from a later pipeline stage, imported only when that stage runs."""
    try:
        mod = importlib.import_module(f"cifrenet_edge.{module}")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("cifrenet_edge"):
            raise BackendUnavailableError(
                f"{needed_for} needs cifrenet_edge.{module}, which this install lacks: "
                "update cifrenet-edge (pip install -U cifrenet-edge)"
            ) from None
        raise BackendUnavailableError(
            f"{needed_for} needs the Python package {exc.name!r}: pip install {exc.name}"
        ) from None
    fn = getattr(mod, attr, None)
    if fn is None:
        raise BackendUnavailableError(
            f"{needed_for} needs cifrenet_edge.{module}.{attr}, which this install lacks: "
            "update cifrenet-edge"
        )
    return fn


def _record_in_onnx(path: Path, key: str, value: Any) -> None:
    """Add ``key`` to an ONNX artifact's manifest, in the sidecar and embedded alike."""
    import onnx

    manifest = dict(read_manifest(path))
    manifest[key] = value
    check_manifest(manifest, path)
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, onnx_metadata_props(manifest))
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    write_manifest(path, manifest)


def _parse_keep_float(value: Union[str, Sequence[str], None]) -> Optional[Tuple[str, ...]]:
    if value is None:
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    else:
        items = [str(v).strip() for v in value]
    return tuple(v for v in items if v)


def _path_of(result: Any) -> Path:
    """The artifact path of a stage result (an ExportResult-like object or a path)."""
    if isinstance(result, (str, os.PathLike)):
        return Path(result)
    for attr in ("path", "engine_path", "output"):
        if getattr(result, attr, None) is not None:
            return Path(getattr(result, attr))
    raise ExportError(f"stage returned {type(result).__name__} without a path (report this bug)")


def export(
    *,
    weights: Optional[PathLike] = None,
    preset: str = "cityscapes",
    res: Union[str, Sequence[int]] = (640, 360),
    dynamic: bool = False,
    min_res: Union[str, Sequence[int], None] = None,
    max_res: Union[str, Sequence[int], None] = None,
    opset: Optional[int] = None,
    target: Optional[str] = None,
    output: Optional[PathLike] = None,
    verify_images: Optional[PathLike] = None,
    precision: str = "fp32",
    format: str = "onnx",
    calib: Optional[PathLike] = None,
    calib_method: str = "entropy",
    calib_count: Optional[int] = None,
    keep_float: Union[str, Sequence[str], None] = None,
    eval_data: Optional[str] = None,
    max_miou_drop: float = 1.0,
    workspace: Optional[int] = None,
    timing_cache: Optional[PathLike] = None,
    dla_core: Optional[int] = None,
    int8_mode: str = "qdq",
    batch: int = 1,
    quiet: bool = False,
) -> PipelineResult:
    """The whole export: FP32 ONNX, then INT8/FP16 and/or a TensorRT engine as asked.

    Every option is validated before the (slow) first stage, so a typo costs no export. The
    FP32 ONNX is always written (it is the reference every later stage is checked against);
    ``output`` names the final artifact, intermediates get default names beside it.
    ``target`` defaults to trt8.6, or for ``format="engine"`` to the TensorRT installed here
    (the one that builds the engine).
    """
    precision = str(precision).lower()
    fmt = str(format).lower()
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown --precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {format!r}: use onnx or engine")
    if calib_method not in CALIB_METHODS:
        raise ConfigError(
            f"unknown --calib-method {calib_method!r}: use one of {', '.join(CALIB_METHODS)}"
        )
    if int8_mode not in INT8_MODES:
        raise ConfigError(f"unknown --int8-mode {int8_mode!r}: use qdq or calibrator")
    trt_module = None
    if fmt == "engine":
        # Fail before the export when this machine cannot build engines at all.
        trt_module = _stage("trt.api", "import_tensorrt", "--format engine")()
        if target is None:
            api = importlib.import_module("cifrenet_edge.trt.api")
            target = api.target_for_version(api.trt_version(trt_module))
    t = get_target(target or DEFAULT_TARGET)
    p = get_preset(preset)
    wh = _res_tuple(res)
    resolve_opset(t, opset)
    if precision == "int8" and calib is None:
        raise ConfigError("INT8 needs real calibration images: pass --calib DIR|VIDEO|LIST")
    if precision != "int8" and (calib is not None or keep_float is not None):
        raise ConfigError("--calib/--keep-float only apply to INT8: add --precision int8")
    if eval_data is not None and precision != "int8":
        raise ConfigError("--eval-data gates INT8 accuracy against FP32: add --precision int8")
    calibrator = precision == "int8" and int8_mode == "calibrator"
    if calibrator and fmt != "engine":
        raise ConfigError(
            "--int8-mode calibrator is TensorRT's implicit INT8 and makes an engine: "
            "add --format engine, or use --int8-mode qdq for an INT8 ONNX"
        )
    if calibrator and not t.implicit_int8:
        raise ConfigError(
            f"{t.description} removed INT8 calibrators (explicit Q/DQ only): use --int8-mode qdq"
        )
    if calibrator and eval_data is not None:
        raise ConfigError(
            "--eval-data evaluates the Q/DQ ONNX on CPU; calibrator INT8 has none: "
            "use --int8-mode qdq, or evaluate the engine with `cifrenet-edge evaluate`"
        )
    if fmt == "engine" and not t.tensorrt:
        raise ConfigError("--format engine needs a TensorRT --target (trt8.2 ... trt11)")
    if fmt == "onnx" and any(v is not None for v in (workspace, timing_cache, dla_core)):
        raise ConfigError(
            "--workspace/--timing-cache/--dla-core are engine options: add --format engine"
        )
    from .trt.rules import check_export_options  # TensorRT's refusals, before minutes of work

    _print_warnings(check_export_options(t.name, precision, int8_mode, dynamic, dla_core), quiet)
    calib_is_path = isinstance(calib, (str, os.PathLike))  # else CalibrationData (library use)
    if calib_is_path and not Path(calib).expanduser().exists() and ":" not in str(calib):
        raise ConfigError(f"--calib {calib} does not exist: pass a folder, video or list of images")

    if verify_images is None and calib_is_path:
        # The calibration frames are the user's own scenes: the best parity inputs there are.
        cdir = Path(calib).expanduser()
        if cdir.is_dir() and _list_images(cdir):
            verify_images = cdir
    ext = ".engine" if fmt == "engine" else ".onnx"
    final = Path(output).expanduser() if output else None
    if final is None:
        final = default_output_path(p.name, wh, precision, dynamic, t.name, ext=ext)
    _check_output(final, ext)
    folder = final.parent
    if precision == "fp32" and fmt == "onnx":
        fp32_path = final
    else:
        fp32_path = folder / default_output_path(p.name, wh, "fp32", dynamic, t.name).name
        if fp32_path.resolve() == final.resolve():
            other = final.with_name(f"{final.stem}_{precision}{ext}")
            raise ConfigError(
                f"--output {final} is where the FP32 reference goes: name the {precision} "
                f"file differently, e.g. --output {other}"
            )

    # Files this run creates; a later stage's failure removes them, so a failed command
    # leaves nothing new behind (a FP32 file that was already there is kept).
    fp32_existed = fp32_path.exists()
    fp32 = export_onnx(
        p.name,
        weights,
        wh,
        dynamic,
        opset,
        t.name,
        fp32_path,
        verify_images,
        batch,
        quiet,
        min_res=min_res,
        max_res=max_res,
    )
    result = PipelineResult(fp32=fp32, final=final, artifacts=[("fp32 onnx", fp32.path)])
    try:
        onnx_for_engine = fp32.path

        if precision == "int8" and not calibrator:
            quantize_onnx = _stage("quantize", "quantize_onnx", "--precision int8")
            q_path = (
                final
                if fmt == "onnx"
                else folder / default_output_path(p.name, wh, "int8", dynamic, t.name).name
            )
            kwargs: Dict[str, Any] = {
                "calib": calib,
                "output": q_path,
                "method": calib_method,
                "count": calib_count,
                "quiet": quiet,
            }
            kf = _parse_keep_float(keep_float)
            if kf is not None:
                kwargs["keep_float"] = kf
            quant = quantize_onnx(fp32.path, **kwargs)
            result.stages["quantize"] = quant
            onnx_for_engine = _path_of(quant)
            result.artifacts.append(("int8 onnx (Q/DQ)", onnx_for_engine))
            try:  # the Q/DQ graph meets the target's parser rules, or is not left behind
                _print_warnings(check_target_ops(onnx_for_engine, t.name)["warnings"], quiet)
            except BaseException:
                for path in (onnx_for_engine, sidecar_path(onnx_for_engine)):
                    Path(path).unlink(missing_ok=True)
                raise
            if eval_data is not None:
                int8_gate = _stage("evaluate", "int8_gate", "--eval-data")
                try:
                    gate = int8_gate(onnx_for_engine, fp32.path, eval_data, max_miou_drop)
                    _record_in_onnx(onnx_for_engine, "accuracy_gate", gate)
                except BaseException:
                    # An INT8 model that failed its accuracy gate must not be left to be deployed.
                    for path in (onnx_for_engine, sidecar_path(onnx_for_engine)):
                        Path(path).unlink(missing_ok=True)
                    raise
                result.stages["int8_gate"] = gate
        elif precision == "fp16" and (fmt == "onnx" or not t.implicit_int8):
            # TensorRT 11 is strongly typed: FP16 comes only from FP16 tensors in the ONNX file.
            convert_fp16_onnx = _stage("fp16", "convert_fp16_onnx", "--precision fp16")
            h_path = (
                final
                if fmt == "onnx"
                else folder / default_output_path(p.name, wh, "fp16", dynamic, t.name).name
            )
            half = convert_fp16_onnx(fp32.path, h_path)
            result.stages["fp16"] = half
            onnx_for_engine = _path_of(half)
            result.artifacts.append(("fp16 onnx", onnx_for_engine))

        if fmt == "engine":
            build_engine = _stage("trt.build", "build_engine", "--format engine")
            engine = build_engine(
                onnx_for_engine,
                precision=precision,
                output=final,
                workspace_mib=workspace,
                timing_cache=timing_cache,
                dla_core=dla_core,
                int8_mode=int8_mode if precision == "int8" else None,
                calib=calib if calibrator else None,
                quiet=quiet,
            )
            result.stages["engine"] = engine
            result.artifacts.append((f"{precision} TensorRT engine", _path_of(engine)))
    except BaseException:
        if not fp32_existed:
            for path in (fp32.path, sidecar_path(fp32.path)):
                Path(path).unlink(missing_ok=True)
        raise
    return result
