"""FP32 ONNX -> explicit INT8 (QuantizeLinear/DequantizeLinear) ONNX, verified before it ships.

Explicit Q/DQ is the one INT8 form that TensorRT 8.x, 10.x and 11.x all accept (11 removed
implicit calibration) and that ONNX Runtime and OpenVINO also execute on a CPU, so the file
written here is verified here. The package follows the data:

- ``calibrate``: ONNX Runtime's static quantizer with TensorRT's recipe;
- ``graph``: TensorRT's Q/DQ rules checked on the graph, and the rewrites (Conv+Add
  fusion, dedicated pairs, FP16 float parts, the CPU variants for CPUs without an int8
  dot product);
- ``verify``: the gate (Q/DQ evaluated in float: the same verdict on every CPU), variants,
  and this CPU's own INT8 path apart;
- ``pipeline``: ``quantize_onnx``, the entry point.
"""

from .graph import (
    check_qdq_rules,
    conv_input_kinds,
    dedicate_qdq_pairs,
    find_sensitive_nodes,
    fp16_float_parts,
    fuse_residual_adds,
    grouped_convs,
    seven_bit_weights,
    u8_inputs_variant,
    weight_form,
)
from .int8 import (
    FLOAT_PARTS,
    HOLDOUT_EVERY,
    KEEP_FLOAT_CHOICES,
    STRONGLY_TYPED_TARGETS,
    default_int8_path,
    quantize_onnx,
)
from .ort_quantizer import METHODS, PERCENTILE, QUANTIZED_OP_TYPES, model_batches, recipe
from .verify import DEFAULT_GATES, REFERENCE, agreement_report, this_cpu_int8, verify_int8

__all__ = [
    "DEFAULT_GATES",
    "FLOAT_PARTS",
    "HOLDOUT_EVERY",
    "KEEP_FLOAT_CHOICES",
    "METHODS",
    "PERCENTILE",
    "QUANTIZED_OP_TYPES",
    "REFERENCE",
    "STRONGLY_TYPED_TARGETS",
    "agreement_report",
    "check_qdq_rules",
    "conv_input_kinds",
    "dedicate_qdq_pairs",
    "default_int8_path",
    "find_sensitive_nodes",
    "fp16_float_parts",
    "fuse_residual_adds",
    "grouped_convs",
    "model_batches",
    "quantize_onnx",
    "recipe",
    "seven_bit_weights",
    "this_cpu_int8",
    "u8_inputs_variant",
    "verify_int8",
    "weight_form",
]
