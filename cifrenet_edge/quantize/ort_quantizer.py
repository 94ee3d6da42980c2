"""Calibration: ONNX Runtime's static quantizer run with TensorRT's Q/DQ recipe.

The quantizer is ONNX Runtime's ``quantize_static`` (not NVIDIA Model Optimizer, which drags
in onnxruntime-gpu; reasons in ``benchmarks/int8_cpu/README.md``). Its TensorRT-relevant
options (``onnxruntime/quantization/qdq_quantizer.py``):

- ``AddQDQPairToWeight``: float weight -> Q -> DQ instead of int8 initializers (TensorRT
  8.x refuses the latter: NVIDIA/TensorRT#2163, #2361);
- ``DedicatedQDQPair``: one Q/DQ pair per consumer ("In TRT, QDQ pair can't be shared
  between nodes"); ``graph.dedicate_qdq_pairs`` catches the pairs it leaves shared;
- ``OpTypesToExcludeOutputQuantization`` = Conv, Add: only weighted-op inputs and the
  residual input get Q/DQ, as NVIDIA's placement guide recommends; a Conv -> Q/DQ ->
  ReLU6 would block the Conv+activation fusion and add a rounding step (measured on the
  probe model: agreement with FP32 0.938 -> 0.950 evaluated in float).

Ranges come from ONNX Runtime's calibrators (entropy, minmax, percentile) fed in strides
(bounded memory) by ``calib.load_calibration`` (the runtime's preprocessing).
"""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Dict, Sequence

import numpy as np

from ..errors import ExportError, first_line
from .graph import (
    dedicate_qdq_pairs,
    find_sensitive_nodes,
    float_inputs,
    fuse_residual_adds,
    grouped_convs,
)

METHODS = ("entropy", "minmax", "percentile")
# Op types that get Q/DQ on their inputs. Conv carries ~all the multiply-adds; Add is the
# residual join (quantizing its residual input is what lets TensorRT fuse Conv+Add in INT8).
# Everything else (PRelu, pooling, Concat, the tiny attention convs' activations, Sigmoid)
# stays float between the quantized convs, as NVIDIA's Q/DQ placement guide recommends:
# TensorRT propagates Q/DQ through such ops itself, and extra pairs only add requantization.
QUANTIZED_OP_TYPES = ("Conv", "Add")
NO_OUTPUT_QUANTIZATION = ("Conv", "Add")
PERCENTILE = 99.999


def ort():
    try:
        import onnxruntime as ort_module
    except ImportError:
        raise ExportError("INT8 quantization needs onnxruntime: pip install onnxruntime") from None
    return ort_module


class Reader:
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


class Grouped(Sequence[np.ndarray]):
    """Frames stacked into the static batch of a model exported with --batch N."""

    def __init__(self, batches: Sequence[np.ndarray], batch: int):
        self.batches, self.batch = batches, batch
        self.n = max(1, len(batches) // batch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i):  # type: ignore[override]
        if not 0 <= i < self.n:
            raise IndexError(i)  # ends iteration (Sequence's __iter__ relies on it)
        m = len(self.batches)
        idx = [(i * self.batch + k) % m for k in range(self.batch)]  # wraps if too few
        return np.concatenate([self.batches[j] for j in idx])


def model_batches(batches: Sequence[np.ndarray], batch: int = 1):
    """The inputs as the model takes them: 1xCxHxW, or stacked for a static batch > 1
    (``batch``: the manifest's ``call_batch``)."""
    if batch > 1:
        return Grouped(batches, batch)
    return batches


def stride(n: int, most: int = 4) -> int:
    return max(d for d in range(1, min(most, n) + 1) if n % d == 0)


def recipe(method: str, keep_float: Sequence[str], excluded: Sequence[str]) -> Dict[str, Any]:
    """The quantization recipe as recorded in the manifest (what a rebuild needs to repeat)."""
    return {
        "tool": "onnxruntime.quantization.quantize_static",
        "tool_version": ort().__version__,
        "format": "QDQ",
        "method": method,
        "percentile": PERCENTILE if method == "percentile" else None,
        "activations": "int8 symmetric per-tensor (zero point 0)",
        "weights": "int8 symmetric per-channel, axis 0, float weight -> Q -> DQ",
        "bias": "float (not quantized)",
        "quantized_op_types": list(QUANTIZED_OP_TYPES),
        "resize": "float always (no weights, and its input, the classifier's output, is not "
        "quantized: weighted-op inputs only)",
        "output_quantization": "none on " + "/".join(NO_OUTPUT_QUANTIZATION),
        "qdq_pairs": "dedicated (one consumer per DequantizeLinear)",
        "keep_float": list(keep_float),
        "float_nodes": list(excluded),
    }


def quantize_to(
    fp32_path: Path,
    out_path: Path,
    batches: Sequence[np.ndarray],
    input_name: str,
    method: str,
    keep_float: Sequence[str],
) -> Dict[str, Any]:
    """Run ONNX Runtime's static quantizer, then the TensorRT rewrites; returns the recipe."""
    import onnx

    ort()
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
    op_types = list(QUANTIZED_OP_TYPES)
    cal = {
        "entropy": CalibrationMethod.Entropy,
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
    }[method]
    extra = {
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "AddQDQPairToWeight": True,
        "DedicatedQDQPair": True,
        "OpTypesToExcludeOutputQuantization": list(NO_OUTPUT_QUANTIZATION),
        "CalibStridedMinMax": stride(len(batches)),
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
                Reader(batches, input_name),
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
        raise ExportError(
            f"onnxruntime could not quantize {fp32_path}: {first_line(exc)} (re-export the "
            "FP32 model with cifrenet-edge export and retry)"
        ) from None
    finally:
        root.setLevel(level)
    qmodel = onnx.load(str(out_path))
    float_inputs(qmodel, [n for k in keep_float for n in sensitive.get(k, [])])
    fused = fuse_residual_adds(qmodel)
    dedicated = dedicate_qdq_pairs(qmodel)
    onnx.save(qmodel, str(out_path))
    return dict(
        recipe(method, keep_float, excluded), conv_add_fusions=fused, pairs_dedicated=dedicated
    )
