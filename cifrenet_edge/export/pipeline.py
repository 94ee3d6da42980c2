"""``export``: the whole pipeline the CLI runs, FP32 ONNX first, then each later stage.

Each later stage (INT8 Q/DQ, the accuracy gate, FP16, a TensorRT engine) is imported
lazily from its own module, so a machine without TensorRT still exports ONNX.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from .._io import PathLike, atomic_path
from ..errors import BackendUnavailableError, ConfigError, ExportError
from ..manifest import (
    check_manifest,
    onnx_metadata_props,
    read_manifest,
    sidecar_path,
    write_manifest,
)
from ..presets import get_preset
from .onnx_export import ExportResult, _check_output, _res_tuple, default_output_path, export_onnx
from .parity import _list_images
from .targets import DEFAULT_TARGET, get_target, resolve_opset

PRECISIONS = ("fp32", "fp16", "int8")
FORMATS = ("onnx", "engine")
CALIB_METHODS = ("entropy", "minmax", "percentile")
INT8_MODES = ("qdq", "calibrator")


@dataclass
class PipelineResult:
    """Everything ``export`` wrote: the FP32 ONNX first, then each derived artifact."""

    fp32: ExportResult
    final: Path
    artifacts: List[Tuple[str, Path]] = field(default_factory=list)  # (label, path)
    stages: Dict[str, Any] = field(default_factory=dict)  # stage name -> its result object


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
