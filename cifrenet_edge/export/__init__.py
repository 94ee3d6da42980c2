"""PyTorch -> ONNX that the TensorRT on the user's device parses, verified against PyTorch.

What goes wrong with exported segmentation models in the field, and where this package deals
with it (each module's docstring gives the measured reasons):

* opset too new for the device's parser: ``targets`` (``TARGETS``, ``check_target_ops``);
* shape arithmetic the parser chokes on, export-only rewrites (BatchNorm folding, the
  attention MLP as 1x1 convolutions), Resize modes that silently cost mIoU: ``graph``
  (``build_onnx``, onnxslim, ``fold_expand_wildcards``);
* a file that does not compute what PyTorch computes: ``parity`` (``check_parity``);
* files that forget what they are: ``onnx_export`` (``export_onnx`` and the manifest).

``export_onnx`` makes the FP32 ONNX; ``export`` (``pipeline``) is the whole pipeline the CLI
runs (FP32 ONNX, then INT8 Q/DQ, the accuracy gate, FP16 or a TensorRT engine), each later
stage imported lazily from its own module and each with its own options class
(``options``: ``OnnxOptions``, ``Int8Options``, ``EngineOptions``).
"""

from .graph import (
    INPUT_NAME,
    OUTPUT_NAME,
    SHAPE_OPS,
    WH,
    build_onnx,
    fold_expand_wildcards,
)
from .onnx_export import (
    DEFAULT_DYNAMIC_MAX_BATCH,
    MAX_SIDE,
    MIN_SIDE,
    ExportResult,
    default_output_path,
    export_onnx,
    warn_untrained,
)
from .options import (
    CALIB_METHODS,
    FORMATS,
    INT8_MODES,
    PRECISIONS,
    EngineOptions,
    Int8Options,
    OnnxOptions,
)
from .parity import (
    DEFAULT_MAX_ABS_DIFF,
    DEFAULT_MIN_AGREEMENT,
    MAX_VERIFY_IMAGES,
    check_parity,
    parity_frames,
)
from .stages import PipelineResult, Stages, export, needs
from .targets import (
    DEFAULT_OPSET,
    DEFAULT_TARGET,
    MIN_OPSET,
    TARGETS,
    Target,
    check_target_ops,
    get_target,
    model_opset,
    parser_ops,
    resolve_opset,
)

__all__ = [
    "CALIB_METHODS",
    "DEFAULT_DYNAMIC_MAX_BATCH",
    "DEFAULT_MAX_ABS_DIFF",
    "DEFAULT_MIN_AGREEMENT",
    "DEFAULT_OPSET",
    "DEFAULT_TARGET",
    "FORMATS",
    "INPUT_NAME",
    "INT8_MODES",
    "MAX_SIDE",
    "MAX_VERIFY_IMAGES",
    "MIN_OPSET",
    "MIN_SIDE",
    "OUTPUT_NAME",
    "PRECISIONS",
    "SHAPE_OPS",
    "TARGETS",
    "WH",
    "EngineOptions",
    "ExportResult",
    "Int8Options",
    "OnnxOptions",
    "PipelineResult",
    "Stages",
    "Target",
    "build_onnx",
    "check_parity",
    "check_target_ops",
    "default_output_path",
    "export",
    "export_onnx",
    "fold_expand_wildcards",
    "get_target",
    "model_opset",
    "needs",
    "parity_frames",
    "parser_ops",
    "resolve_opset",
    "warn_untrained",
]
