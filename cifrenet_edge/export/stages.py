"""``export``: the whole pipeline the CLI runs, FP32 ONNX first, then each later stage.

Each later stage (INT8 Q/DQ, the accuracy gate, FP16, a TensorRT engine) is imported
lazily from its own module, so a machine without TensorRT still exports ONNX.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional, Tuple

from .._io import PathLike, atomic_path
from ..errors import BackendUnavailableError, ConfigError, ExportError
from ..manifest import (
    onnx_metadata_props,
    read_manifest,
    sidecar_path,
    write_manifest,
)
from .onnx_export import (
    ExportResult,
    _check_output,
    default_output_path,
    export_onnx,
    print_warnings,
)
from .options import FORMATS, PRECISIONS, EngineOptions, Int8Options, OnnxOptions
from .parity import _list_images
from .targets import DEFAULT_TARGET, Target, check_target_ops

if TYPE_CHECKING:  # the later stages' result types; their modules load only when they run
    from ..quantize.fp16 import Fp16Result
    from ..trt.build import EngineResult


@dataclass
class Stages:
    """What each later stage returned; None where it did not run."""

    quantize: Optional[ExportResult] = None  # the INT8 Q/DQ file
    int8_gate: Optional[Dict[str, Any]] = None  # mIoU FP32 vs INT8 on labelled data
    fp16: Optional[Fp16Result] = None
    engine: Optional[EngineResult] = None
    triton: Optional[Any] = None  # serve.triton_repo.TritonRepository (serving builds on this)

    def items(self) -> List[Tuple[str, Any]]:
        """(stage name, result) of the stages that ran, in pipeline order."""
        names = ("quantize", "int8_gate", "fp16", "engine", "triton")
        return [(n, getattr(self, n)) for n in names if getattr(self, n) is not None]


@dataclass
class PipelineResult:
    """Everything ``export`` wrote: the FP32 ONNX first, then each derived artifact."""

    fp32: ExportResult
    final: Path
    artifacts: List[Tuple[str, Path]] = field(default_factory=list)  # (label, path)
    stages: Stages = field(default_factory=Stages)


@contextlib.contextmanager
def needs(needed_for: str) -> Iterator[None]:
    """Around a later stage's import: a missing module is one line naming what to install."""
    try:
        yield
    except ImportError as exc:
        if exc.name and exc.name.startswith("cifrenet_edge"):
            raise BackendUnavailableError(
                f"{needed_for} needs {exc.name}, which this install lacks: "
                "update cifrenet-edge (pip install -U cifrenet-edge)"
            ) from None
        raise BackendUnavailableError(
            f"{needed_for} needs the Python package {exc.name!r}: pip install {exc.name}"
        ) from None


def _record_in_onnx(path: Path, key: str, value: Any) -> None:
    """Add ``key`` to an ONNX artifact's manifest, in the sidecar and embedded alike."""
    import onnx

    manifest = read_manifest(path).with_(**{key: value})
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, onnx_metadata_props(manifest))
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))
    write_manifest(path, manifest)


def _path_of(result: Any) -> Path:
    """The artifact path of a stage result (an ExportResult-like object or a path)."""
    if isinstance(result, (str, os.PathLike)):
        return Path(result)
    for attr in ("path", "engine_path", "output"):
        if getattr(result, attr, None) is not None:
            return Path(getattr(result, attr))
    raise ExportError(f"stage returned {type(result).__name__} without a path (report this bug)")


def export(
    onnx: Optional[OnnxOptions] = None,
    *,
    precision: str = "fp32",
    format: str = "onnx",
    output: Optional[PathLike] = None,
    int8: Optional[Int8Options] = None,
    engine: Optional[EngineOptions] = None,
    quiet: bool = False,
) -> PipelineResult:
    """The whole export: FP32 ONNX, then INT8/FP16 and/or a TensorRT engine as asked.

    Each stage takes its own options object (None: its defaults). Every option is validated
    before the (slow) first stage, so a typo costs no export. The FP32 ONNX is always
    written (it is the reference every later stage is checked against); ``output`` names the
    final artifact, intermediates get default names beside it. ``onnx.target`` defaults to
    trt8.6, or for ``format="engine"`` to the TensorRT installed here (the one that builds
    the engine).

    A Triton repository (``--format triton``) is this export followed by a repository
    writer: ``serve.triton_repo.export_triton``, which the CLI calls (serving builds on the
    export, never the other way round).
    """
    if str(format).lower() == "triton":
        raise ConfigError(
            "export() writes model files: for a Triton repository call "
            "cifrenet_edge.serve.triton_repo.export_triton (the CLI's --format triton)"
        )
    onnx = onnx if onnx is not None else OnnxOptions()
    int8 = int8 if int8 is not None else Int8Options()
    engine = engine if engine is not None else EngineOptions()
    precision = str(precision).lower()
    fmt = str(format).lower()
    t, p, wh = _check(onnx, precision, fmt, format, int8, engine, quiet)
    calibrator = precision == "int8" and int8.mode == "calibrator"
    verify_images = onnx.verify_images
    if verify_images is None and int8.calib_is_path:
        # The calibration frames are the user's own scenes: the best parity inputs there are.
        cdir = Path(int8.calib).expanduser()
        if cdir.is_dir() and _list_images(cdir):
            verify_images = cdir
    final, fp32_path = _output_paths(output, p.name, wh, precision, fmt, onnx.dynamic, t)
    folder = final.parent

    # Files this run creates; a later stage's failure removes them, so a failed command
    # leaves nothing new behind (a FP32 file that was already there is kept).
    fp32_existed = fp32_path.exists()
    fp32 = export_onnx(
        p.name,
        onnx.weights,
        wh,
        onnx.dynamic,
        onnx.opset,
        t.name,
        fp32_path,
        verify_images,
        onnx.batch,
        quiet,
        min_res=onnx.min_res,
        max_res=onnx.max_res,
    )
    result = PipelineResult(fp32=fp32, final=final, artifacts=[("fp32 onnx", fp32.path)])
    try:
        onnx_for_engine = fp32.path
        if precision == "int8" and not calibrator:
            q_path = (
                final
                if fmt == "onnx"
                else folder / default_output_path(p.name, wh, "int8", onnx.dynamic, t.name).name
            )
            onnx_for_engine = _int8_stage(result, int8, q_path, quiet)
        elif precision == "fp16" and (fmt == "onnx" or not t.implicit_int8):
            # TensorRT 11 is strongly typed: FP16 comes only from FP16 tensors in the ONNX file.
            h_path = (
                final
                if fmt == "onnx"
                else folder / default_output_path(p.name, wh, "fp16", onnx.dynamic, t.name).name
            )
            onnx_for_engine = _fp16_stage(result, h_path)
        if fmt == "engine":
            _engine_stage(result, onnx_for_engine, precision, engine, int8, calibrator, quiet)
    except BaseException:
        if not fp32_existed:
            for path in (fp32.path, sidecar_path(fp32.path)):
                Path(path).unlink(missing_ok=True)
        raise
    return result


def _check(
    onnx: OnnxOptions,
    precision: str,
    fmt: str,
    format: str,
    int8: Int8Options,
    engine: EngineOptions,
    quiet: bool = False,
) -> Tuple[Target, Any, Tuple[int, int]]:
    """Every stage's options checked against each other; the target, preset and size."""
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown --precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if fmt not in FORMATS:
        raise ConfigError(
            f"unknown --format {format!r}: use onnx or engine (a model file), or triton (a "
            "Triton model repository)"
        )
    default_target = DEFAULT_TARGET
    if fmt == "engine":
        # Fail before the export when this machine cannot build engines at all.
        with needs("--format engine"):
            from ..trt import api
        trt_module = api.import_tensorrt()
        if onnx.target is None:
            default_target = api.target_for_version(api.trt_version(trt_module))
    t, p, wh = onnx.check(default_target)
    int8.check(precision, fmt, t)
    if fmt == "engine" and not t.tensorrt:
        raise ConfigError("--format engine needs a TensorRT --target (trt8.2 ... trt11)")
    engine.check(fmt)
    from ..trt.rules import check_export_options  # TensorRT's refusals, before minutes of work

    print_warnings(
        check_export_options(t.name, precision, int8.mode, onnx.dynamic, engine.dla_core),
        quiet,
    )
    if fmt == "engine":
        # CUDA and the device check (TensorRT vs this GPU, cuda-python vs the driver,
        # JetPack, DLA), still before the export: the build would fail minutes later.
        with needs("--format engine"):
            from ..trt.build import preflight
        preflight(engine.dla_core)
    return t, p, wh


def _output_paths(
    output: Optional[PathLike],
    preset: str,
    wh: Tuple[int, int],
    precision: str,
    fmt: str,
    dynamic: bool,
    t: Target,
) -> Tuple[Path, Path]:
    """The final artifact (checked writable) and where the FP32 reference goes beside it."""
    ext = ".engine" if fmt == "engine" else ".onnx"
    final = Path(output).expanduser() if output else None
    if final is None:
        final = default_output_path(preset, wh, precision, dynamic, t.name, ext=ext)
    _check_output(final, ext)
    if precision == "fp32" and fmt == "onnx":
        return final, final
    fp32_path = final.parent / default_output_path(preset, wh, "fp32", dynamic, t.name).name
    if fp32_path.resolve() == final.resolve():
        other = final.with_name(f"{final.stem}_{precision}{ext}")
        raise ConfigError(
            f"--output {final} is where the FP32 reference goes: name the {precision} "
            f"file differently, e.g. --output {other}"
        )
    return final, fp32_path


def _int8_stage(result: PipelineResult, int8: Int8Options, q_path: Path, quiet: bool) -> Path:
    """INT8 Q/DQ from the FP32 file, then (with eval data) the accuracy gate; the INT8 path."""
    with needs("--precision int8"):
        from ..quantize import quantize_onnx
    fp32_path = result.fp32.path
    kwargs: Dict[str, Any] = {
        "calib": int8.calib,
        "output": q_path,
        "method": int8.method,
        "count": int8.count,
        "quiet": quiet,
    }
    kf = int8.keep_float_names()
    if kf is not None:
        kwargs["keep_float"] = kf
    quant = quantize_onnx(fp32_path, **kwargs)
    result.stages.quantize = quant
    q = _path_of(quant)
    result.artifacts.append(("int8 onnx (Q/DQ)", q))
    try:  # the Q/DQ graph meets the target's parser rules, or is not left behind
        print_warnings(check_target_ops(q, result.fp32.manifest.target)["warnings"], quiet)
    except BaseException:
        for path in (q, sidecar_path(q)):
            Path(path).unlink(missing_ok=True)
        raise
    if int8.eval_data is not None:
        with needs("--eval-data"):
            from ..accuracy.evaluate import int8_gate
        try:
            gate = int8_gate(q, fp32_path, int8.eval_data, int8.max_miou_drop)
            _record_in_onnx(q, "accuracy_gate", gate)
        except BaseException:
            # An INT8 model that failed its accuracy gate must not be left to be deployed.
            for path in (q, sidecar_path(q)):
                Path(path).unlink(missing_ok=True)
            raise
        result.stages.int8_gate = gate
    return q


def _fp16_stage(result: PipelineResult, h_path: Path) -> Path:
    with needs("--precision fp16"):
        from ..quantize.fp16 import convert_fp16_onnx
    half = convert_fp16_onnx(result.fp32.path, h_path)
    result.stages.fp16 = half
    h = _path_of(half)
    result.artifacts.append(("fp16 onnx", h))
    return h


def _engine_stage(
    result: PipelineResult,
    onnx_path: Path,
    precision: str,
    engine: EngineOptions,
    int8: Int8Options,
    calibrator: bool,
    quiet: bool,
) -> None:
    with needs("--format engine"):
        from ..trt.build import build_engine
    built = build_engine(
        onnx_path,
        precision=precision,
        output=result.final,
        workspace_mib=engine.workspace,
        timing_cache=engine.timing_cache,
        dla_core=engine.dla_core,
        int8_mode=int8.mode if precision == "int8" else None,
        calib=int8.calib if calibrator else None,
        quiet=quiet,
    )
    result.stages.engine = built
    result.artifacts.append((f"{precision} TensorRT engine", _path_of(built)))
