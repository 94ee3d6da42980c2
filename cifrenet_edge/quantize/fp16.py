"""FP16 ONNX with FP32 inputs and outputs, for TensorRT's strongly typed builds.

TensorRT 11 removed ``BuilderFlag.FP16`` (10.12 deprecated it): a network runs in FP16 only
where its ONNX tensors are FP16. Keeping the graph's input and output FP32 means callers,
the runtime and the manifest stay the same as for the FP32 model; Cast nodes at the edges
are free next to the convolutions. Resize is kept in FP32 by default: bilinear resize
differences are a known source of segmentation loss in TensorRT (NVIDIA/TensorRT#273,
#1158), and the final logits upsample decides every boundary pixel's class.

``verify_fp16`` runs both models in ONNX Runtime (CPU) on real preprocessed frames and
reports argmax agreement, so a conversion that breaks the model is caught on a CPU machine.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .._io import PathLike, atomic_path
from ..errors import BackendUnavailableError, ExportError, ModelFileError
from ..manifest import Manifest

# Ops that stay FP32 (inputs cast up, outputs cast down). onnxconverter-common's defaults
# already keep Resize, TopK, Range, CumSum, Min/Max and the ML ops in FP32.
KEEP_FP32_OPS: tuple[str, ...] = ("Resize", "Upsample")


@dataclass
class Fp16Result:
    path: Path
    kept_fp32_nodes: int
    fp16_initializers: int


def _converter() -> Any:
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise BackendUnavailableError(
            "FP16 ONNX conversion needs onnxconverter-common: pip install onnxconverter-common"
        ) from None
    return float16


def _fp32_inputs(model: Any) -> None:
    """Give every FP16 graph input back its FP32 type, with a Cast to FP16 behind it."""
    import onnx
    from onnx import helper

    graph = model.graph
    for value in graph.input:
        ttype = value.type.tensor_type
        if ttype.elem_type != onnx.TensorProto.FLOAT16:
            continue
        half = value.name + "_fp16"
        for node in graph.node:
            for i, inp in enumerate(node.input):
                if inp == value.name:
                    node.input[i] = half
        cast = helper.make_node(
            "Cast", [value.name], [half], to=onnx.TensorProto.FLOAT16, name=half + "_cast"
        )
        graph.node.insert(0, cast)
        ttype.elem_type = onnx.TensorProto.FLOAT


def _fp32_outputs(model: Any) -> None:
    """Make every graph output FP32 again.

    With a blocked op (here the final Resize) producing the output, onnxconverter-common
    ends the graph with Cast(fp32 -> fp16). That cast is dropped, so the logits leave the
    Resize in FP32, unrounded; any other FP16 output is an error (nothing silently FP16).
    """
    import onnx

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    for value in graph.output:
        ttype = value.type.tensor_type
        if ttype.elem_type != onnx.TensorProto.FLOAT16:
            continue
        node = producers.get(value.name)
        to = [a.i for a in node.attribute if a.name == "to"] if node is not None else []
        if node is None or node.op_type != "Cast" or to != [onnx.TensorProto.FLOAT16]:
            raise ExportError(
                f"FP16 conversion left output {value.name} in FP16 (made by "
                f"{node.op_type if node is not None else 'nothing'}): keep_fp32_ops too narrow"
            )
        src_name = node.input[0]
        upstream = producers.get(src_name)
        if upstream is None:
            raise ExportError(f"FP16 conversion: cannot find the producer of {src_name}")
        for i, out in enumerate(upstream.output):
            if out == src_name:
                upstream.output[i] = value.name
        for other in graph.node:
            for i, inp in enumerate(other.input):
                if inp == src_name:
                    other.input[i] = value.name
        graph.node.remove(node)
        ttype.elem_type = onnx.TensorProto.FLOAT


def convert_graph_fp16(
    model: Any, keep_fp32_ops: Sequence[str] = KEEP_FP32_OPS, label: str = "model"
) -> Any:
    """An in-memory FP16 copy of ``model`` with FP32 inputs/outputs and ``keep_fp32_ops`` in FP32.

    Shared by the FP16 export and the INT8 export's FP16 float parts (a Q/DQ graph whose
    scales become FP16), so both follow one conversion rule.
    """
    float16 = _converter()
    block = sorted(set(float16.DEFAULT_OP_BLOCK_LIST) | set(keep_fp32_ops))
    try:
        with warnings.catch_warnings():
            # "the float32 number 7e-08 will be truncated to 1e-07": tiny weights, expected.
            warnings.simplefilter("ignore", UserWarning)
            # keep_io_types=True fails on a graph that ends in a blocked op ("The downstream
            # node of the second cast node should be graph output"); the I/O casts are
            # placed here instead.
            converted = float16.convert_float_to_float16(
                model, keep_io_types=False, op_block_list=block
            )
        _fp32_inputs(converted)
        _fp32_outputs(converted)
    except ExportError:
        raise
    except Exception as exc:  # the converter's own errors are deep and multi-line
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExportError(f"FP16 conversion of {label} failed: {first}") from None
    return converted


def _fp16_manifest(src: Path, model: Any) -> Manifest | None:
    """The source's manifest re-labelled FP16, or None for an ONNX file without one."""
    import datetime as dt

    from .._io import sha256_file
    from ..manifest import read_manifest

    try:
        manifest = read_manifest(src)
    except ModelFileError:
        return None
    return manifest.with_(
        precision="fp16",
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        source={"onnx": str(src), "onnx_sha256": sha256_file(src)},
        fp16={"kept_fp32_ops": sorted(KEEP_FP32_OPS), "io": "float32"},
        parity=None,  # measured on the FP32 model, not this one
    )


def convert_fp16_onnx(
    src: PathLike,
    output: PathLike | None = None,
    keep_fp32_ops: Sequence[str] = KEEP_FP32_OPS,
) -> Fp16Result:
    """Write an FP16 copy of an FP32 ONNX model whose input/output stay FP32.

    Metadata (the cifrenet-edge manifest) is carried over unchanged except for the
    flat ``precision`` key, so the runtime still finds classes and normalisation.
    """
    import onnx

    src = Path(src)
    if not src.is_file():
        raise ModelFileError(f"ONNX file {src} does not exist: export it first")
    model = onnx.load(str(src))
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node):
        raise ExportError(
            f"{src.name} is an INT8 Q/DQ model: convert the FP32 export to FP16, not the INT8 one"
        )
    converted = convert_graph_fp16(model, keep_fp32_ops, label=src.name)
    manifest = _fp16_manifest(src, model)
    if manifest is not None:
        from ..manifest import onnx_metadata_props

        del converted.metadata_props[:]
        onnx.helper.set_model_props(converted, onnx_metadata_props(manifest))
    block = set(_converter().DEFAULT_OP_BLOCK_LIST) | set(keep_fp32_ops)
    kept = sum(1 for n in converted.graph.node if n.op_type in block)
    halfs = sum(1 for t in converted.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16)
    out = Path(output) if output else src.with_name(src.stem.replace("_fp32", "") + "_fp16.onnx")
    with atomic_path(out) as tmp:
        onnx.save(converted, str(tmp))
    if manifest is not None:
        from ..manifest import write_manifest

        write_manifest(out, manifest)
    return Fp16Result(out, kept, halfs)


def verify_fp16(
    fp32_path: PathLike, fp16_path: PathLike, inputs: Sequence[np.ndarray]
) -> dict[str, float]:
    """Argmax agreement and logit error of the FP16 model against FP32, in ONNX Runtime CPU."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    providers = ["CPUExecutionProvider"]
    s32 = ort.InferenceSession(str(fp32_path), opts, providers=providers)
    s16 = ort.InferenceSession(str(fp16_path), opts, providers=providers)
    name = s32.get_inputs()[0].name
    agree, total, max_abs, spatial = 0, 0, 0.0, []
    for x in inputs:
        a = s32.run(None, {name: x})[0]
        b = s16.run(None, {name: x})[0]
        if b.dtype != np.float32:
            raise ExportError(f"FP16 model output is {b.dtype}, expected float32 (keep_io_types)")
        agree += int((a.argmax(1) == b.argmax(1)).sum())
        total += a.shape[0] * a.shape[2] * a.shape[3]
        max_abs = max(max_abs, float(np.abs(a - b).max()))
        spatial.append(float(a.std(axis=(2, 3)).mean()))
    # How much the FP32 logits vary over the image: the scale FP16 error must stay small
    # against (an untrained model's class map is near-constant, so argmax alone proves little).
    return {
        "argmax_agreement": agree / max(total, 1),
        "max_abs_logit_diff": max_abs,
        "logit_spatial_std": float(np.mean(spatial)) if spatial else 0.0,
    }
