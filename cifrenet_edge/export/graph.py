"""The ONNX graph: the export-only view of the network, torch.onnx, folding, checks.

* **The exporter.** The TorchScript exporter (``dynamo=False``) is used because torch 2.13's
  default dynamo exporter cannot emit opset <= 17 for this model (it lands at 18 and the
  down-conversion fails).
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
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from .._io import PathLike, sha256_file
from ..errors import ExportError
from ..presets import get_preset
from .targets import DEFAULT_OPSET, model_opset

if TYPE_CHECKING:  # heavy imports stay lazy: `cifrenet-edge --help` must not load torch
    import onnx
    import torch

WH = Tuple[int, int]

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
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


def _load_model(preset: str, weights: Optional[PathLike]) -> Tuple[torch.nn.Module, Dict]:
    """The eval-mode network and its weights record; untrained weights are seeded (0)."""
    import torch

    from ..model.weights import build_model

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
        from ..errors import WeightsError

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
            from ..errors import WeightsError

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

    from ..model.cifrenet import HEAD_GROUPS, channel_shuffle

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
