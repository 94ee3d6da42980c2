"""Each stage's options: the ONNX, INT8 and engine stages each own and check their own.

``export`` takes one options object per stage (``OnnxOptions``, ``Int8Options``,
``EngineOptions``) and a ``format``; a new stage adds its own class here and one keyword to
``export``. Each ``check`` raises the one-line ``ConfigError`` the CLI prints, before the
(slow) first stage runs, so a typo costs no export.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Tuple, Union

from .._io import PathLike
from ..errors import ConfigError
from ..manifest import PRECISIONS  # noqa: F401  (re-exported)
from ..presets import get_preset
from .graph import WH
from .onnx_export import _res_tuple
from .targets import DEFAULT_TARGET, Target, get_target, resolve_opset

if TYPE_CHECKING:
    from ..presets import Preset

FORMATS = ("onnx", "engine", "triton")  # triton: serve/triton_repo.py owns its TritonOptions
CALIB_METHODS = ("entropy", "minmax", "percentile")
INT8_MODES = ("qdq", "calibrator")

Res = Union[str, Sequence[int]]


@dataclass
class OnnxOptions:
    """The FP32 ONNX stage (``export_onnx``): which network, at which size, for which parser."""

    preset: str = "cityscapes"
    weights: Optional[PathLike] = None
    res: Res = (640, 360)
    dynamic: bool = False
    min_res: Optional[Res] = None
    max_res: Optional[Res] = None
    opset: Optional[int] = None
    target: Optional[str] = None  # None: trt8.6, or for an engine the TensorRT installed here
    batch: int = 1
    verify_images: Optional[PathLike] = None

    def check(self, default_target: str = DEFAULT_TARGET) -> Tuple[Target, Preset, WH]:
        """The target, preset and resolution these options name; ConfigError if one is bad.

        Batch and the dynamic range are checked by ``export_onnx`` itself, before it loads
        the model.
        """
        t = get_target(self.target or default_target)
        p = get_preset(self.preset)
        wh = _res_tuple(self.res)
        resolve_opset(t, self.opset)
        return t, p, wh


@dataclass
class Int8Options:
    """The INT8 stage: calibration, Q/DQ or TensorRT calibrator, and the accuracy gate."""

    calib: Any = None  # folder, video or list file; or CalibrationData (library use)
    method: str = "entropy"
    count: Optional[int] = None
    keep_float: Union[str, Sequence[str], None] = None
    eval_data: Optional[str] = None
    max_miou_drop: float = 1.0
    mode: str = "qdq"  # qdq (explicit Q/DQ ONNX) or calibrator (TensorRT implicit INT8)

    @property
    def calib_is_path(self) -> bool:
        return isinstance(self.calib, (str, os.PathLike))  # else CalibrationData

    def check(self, precision: str, fmt: str, target: Target) -> None:
        """ConfigError when these options do not fit ``precision``, ``fmt`` and ``target``."""
        if self.method not in CALIB_METHODS:
            raise ConfigError(
                f"unknown --calib-method {self.method!r}: use one of {', '.join(CALIB_METHODS)}"
            )
        if self.mode not in INT8_MODES:
            raise ConfigError(f"unknown --int8-mode {self.mode!r}: use qdq or calibrator")
        if precision == "int8" and self.calib is None:
            raise ConfigError("INT8 needs real calibration images: pass --calib DIR|VIDEO|LIST")
        if precision != "int8" and (self.calib is not None or self.keep_float is not None):
            raise ConfigError("--calib/--keep-float only apply to INT8: add --precision int8")
        if self.eval_data is not None and precision != "int8":
            raise ConfigError("--eval-data gates INT8 accuracy against FP32: add --precision int8")
        calibrator = precision == "int8" and self.mode == "calibrator"
        if calibrator and fmt != "engine":
            raise ConfigError(
                "--int8-mode calibrator is TensorRT's implicit INT8 and makes an engine: "
                "add --format engine, or use --int8-mode qdq for an INT8 ONNX"
            )
        if calibrator and not target.implicit_int8:
            raise ConfigError(
                f"{target.description} removed INT8 calibrators (explicit Q/DQ only): "
                "use --int8-mode qdq"
            )
        if calibrator and self.eval_data is not None:
            raise ConfigError(
                "--eval-data evaluates the Q/DQ ONNX on CPU; calibrator INT8 has none: "
                "use --int8-mode qdq, or evaluate the engine with `cifrenet-edge evaluate`"
            )
        calib = self.calib
        if self.calib_is_path and not Path(calib).expanduser().exists() and ":" not in str(calib):
            raise ConfigError(
                f"--calib {calib} does not exist: pass a folder, video or list of images"
            )

    def keep_float_names(self) -> Optional[Tuple[str, ...]]:
        """``keep_float`` as a tuple of layer names (None: the quantizer's default)."""
        return _parse_keep_float(self.keep_float)


@dataclass
class EngineOptions:
    """The TensorRT engine stage: builder workspace, timing cache, Jetson DLA core."""

    workspace: Optional[int] = None  # MiB
    timing_cache: Optional[PathLike] = None
    dla_core: Optional[int] = None

    def check(self, fmt: str) -> None:
        if fmt == "onnx" and any(
            v is not None for v in (self.workspace, self.timing_cache, self.dla_core)
        ):
            raise ConfigError(
                "--workspace/--timing-cache/--dla-core are engine options: add --format engine"
            )


def _parse_keep_float(value: Union[str, Sequence[str], None]) -> Optional[Tuple[str, ...]]:
    if value is None:
        return None
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    else:
        items = [str(v).strip() for v in value]
    return tuple(v for v in items if v)
