"""`cifrenet-edge export`: a verified ONNX model (and INT8/FP16/engine) for a TensorRT target."""

from pathlib import Path
from typing import Any, Dict, Optional

import typer

from ..errors import ConfigError
from . import app, make_console


@app.command()
def export(
    weights: Optional[Path] = typer.Option(
        None, "--weights", help="checkpoint (.pth/.safetensors); without it: UNTRAINED model"
    ),
    preset: str = typer.Option("cityscapes", help="cityscapes, camvid or helen"),
    res: str = typer.Option("640x360", "--res", help="WIDTHxHEIGHT (the opt size if --dynamic)"),
    dynamic: bool = typer.Option(False, "--dynamic", help="dynamic batch, height and width"),
    min_res: Optional[str] = typer.Option(None, "--min-res", help="dynamic: smallest WxH"),
    max_res: Optional[str] = typer.Option(None, "--max-res", help="dynamic: largest WxH"),
    opset: Optional[int] = typer.Option(None, help="ONNX opset (default: the target's, 17/13)"),
    target: Optional[str] = typer.Option(
        None,
        help="trt8.2 (Nano), trt8.5 (Xavier), trt8.6 (1080 Ti, the default), trt10, trt11, "
        "onnxruntime; engines: the installed TensorRT",
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="final file (default models/cifrenet_<preset>_<res>_<prec>)"
    ),
    verify_images: Optional[Path] = typer.Option(
        None, "--verify-images", help="folder of images for the parity gate (default: random)"
    ),
    precision: str = typer.Option("fp32", help="fp32, fp16 or int8"),
    fmt: str = typer.Option(
        "onnx",
        "--format",
        help="onnx, engine (TensorRT, needs a GPU) or triton (a Triton model repository at "
        "--output, default models/triton)",
    ),
    calib: Optional[str] = typer.Option(
        None, "--calib", help="INT8 calibration images: folder, video or list file"
    ),
    calib_method: str = typer.Option("entropy", help="entropy, minmax or percentile"),
    calib_count: Optional[int] = typer.Option(None, help="calibration images to use"),
    keep_float: Optional[str] = typer.Option(
        None,
        help="comma-separated layers kept in float (default: classifier,resize; the final "
        "resize is always float; add dw-prelu, the depthwise convs feeding a PReLU, when "
        "a TensorRT build finds no INT8 implementation for them)",
    ),
    eval_data: Optional[str] = typer.Option(
        None, "--eval-data", help="KIND:PATH data for the INT8 accuracy gate"
    ),
    max_miou_drop: float = typer.Option(1.0, help="INT8 gate: largest allowed mIoU drop (points)"),
    workspace: Optional[int] = typer.Option(None, help="engine: builder workspace (MiB)"),
    timing_cache: Optional[Path] = typer.Option(None, help="engine: timing cache file"),
    dla_core: Optional[int] = typer.Option(None, help="engine: Jetson DLA core"),
    int8_mode: str = typer.Option("qdq", help="qdq (explicit Q/DQ ONNX) or calibrator (TRT 8/10)"),
    batch: int = typer.Option(1, help="static batch size (dynamic: the opt batch)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only errors and the summary"),
    source: Optional[Path] = typer.Option(
        None, "--from", help="triton: an existing .onnx/.engine instead of running the export"
    ),
    triton_name: str = typer.Option("cifrenet", "--triton-name", help="triton: model name"),
    triton_backend: Optional[str] = typer.Option(
        None, "--triton-backend", help="triton: onnxruntime, openvino or tensorrt (engine)"
    ),
    triton_max_batch: Optional[int] = typer.Option(
        None, "--triton-max-batch", help="triton: largest batch (--dynamic models)"
    ),
    triton_instances: int = typer.Option(1, "--triton-instances", help="triton: instances"),
    triton_kind: str = typer.Option("auto", "--triton-kind", help="triton: auto, gpu or cpu"),
    triton_queue_delay_us: int = typer.Option(
        2000, "--triton-queue-delay-us", help="triton: batcher queue delay (us)"
    ),
) -> None:
    """Export CIFReNet to ONNX for a TensorRT target, verified against PyTorch."""
    from rich.table import Table

    from ..export import EngineOptions, Int8Options, OnnxOptions
    from ..export import export as run_export
    from ..serve.triton_repo import TritonOptions, export_triton, write_model_repository

    triton = TritonOptions(
        name=triton_name,
        backend=triton_backend,
        max_batch=triton_max_batch,
        instances=triton_instances,
        kind=triton_kind,
        queue_delay_us=triton_queue_delay_us,
    )
    if fmt.lower() != "triton" and triton != TritonOptions():
        raise ConfigError("the --triton-* options shape a Triton repository: add --format triton")
    if source is not None:  # an existing artifact: no export, only the repository
        if fmt.lower() != "triton":
            raise ConfigError("--from writes a Triton repository: add --format triton")
        _print_triton(write_model_repository(source, output or Path("models") / "triton", triton))
        return
    onnx_options = OnnxOptions(
        preset=preset,
        weights=weights,
        res=res,
        dynamic=dynamic,
        min_res=min_res,
        max_res=max_res,
        opset=opset,
        target=target,
        batch=batch,
        verify_images=verify_images,
    )
    stages: Dict[str, Any] = dict(
        precision=precision,
        int8=Int8Options(
            calib=calib,
            method=calib_method,
            count=calib_count,
            keep_float=keep_float,
            eval_data=eval_data,
            max_miou_drop=max_miou_drop,
            mode=int8_mode,
        ),
        engine=EngineOptions(workspace=workspace, timing_cache=timing_cache, dla_core=dla_core),
        quiet=quiet,
    )
    if fmt.lower() == "triton":  # the export, then its artifact as a repository
        result = export_triton(output, triton, onnx_options, **stages)
        _print_triton(result.stages.triton)
    else:
        result = run_export(onnx_options, format=fmt, output=output, **stages)
    m = result.fp32.manifest
    par = result.fp32.parity
    console = make_console()
    table = Table(title="cifrenet-edge export", show_header=False)
    table.add_column("", style="bold", no_wrap=True)
    table.add_column("", overflow="fold")  # paths are copied from here: never truncate them
    for label, path in result.artifacts:
        table.add_row(label, str(path))
    final_side = Path(str(result.final) + ".json")
    table.add_row(
        "manifest", str(final_side if final_side.is_file() else result.fp32.manifest_path)
    )
    dyn = m.dynamic
    if dyn:
        b = dyn.batch or (1, 1, 1)
        shape = (
            f"dynamic {dyn.min[0]}x{dyn.min[1]} .. {dyn.max[0]}x{dyn.max[1]} "
            f"(opt {dyn.opt[0]}x{dyn.opt[1]}), batch {b[0]}..{b[2]}"
        )
    else:
        shape = f"{m.nominal_wh[0]}x{m.nominal_wh[1]}, batch {m.batch}"
    table.add_row("input", f"{shape}, {m.channel_order} {m.input_layout}")
    if dyn:
        table.add_row(
            "verified sizes", ", ".join(f"{w}x{h}" for w, h in dyn.verified or ()) + " (parity)"
        )
    table.add_row("target", f"{m.target}, opset {m.extra.get('opset')}")
    table.add_row(
        "fp32 parity (ORT vs torch)",
        f"argmax agreement {par['argmax_agreement']:.4%}, max |logit diff| "
        f"{par['max_abs_diff']:.2e} on {par['inputs']}",
    )
    weights = m.weights or {}
    table.add_row(
        "weights", str(weights.get("path")) if weights.get("trained") else "[bold red]UNTRAINED[/]"
    )
    for name, stage in result.stages.items():
        table.add_row(name, _describe(stage))
    console.print(table)


def _describe(stage: Any) -> str:
    """One line about a later stage's result, whatever object its module returns."""
    parity = getattr(stage, "parity", None)
    agreement = None
    if isinstance(parity, dict):
        agreement = parity.get("argmax_agreement", parity.get("agreement"))
    if agreement is not None:
        text = f"{getattr(stage, 'path', '')}: argmax agreement {agreement:.3%} vs FP32"
        if "logits_snr_db" in parity:
            text += f", logit SNR {parity['logits_snr_db']:.1f} dB"
        return text
    if isinstance(stage, dict) and "miou_drop" in stage:
        return (
            f"mIoU FP32 {stage.get('reference_miou')} -> INT8 {stage.get('int8_miou')} "
            f"(drop {stage['miou_drop']}, allowed {stage.get('max_drop')}) on "
            f"{stage.get('images')} {stage.get('split', '')} images of {stage.get('data')}"
        )
    for attr in ("summary", "path", "engine_path"):
        value = getattr(stage, attr, None)
        if value is not None:
            return str(value() if callable(value) else value)
    if isinstance(stage, dict):
        return ", ".join(f"{k}={v}" for k, v in list(stage.items())[:4])
    return str(stage)


def _print_triton(repo: Any) -> None:
    """Where the Triton model went and how to serve it (stderr: the table stays on stdout)."""
    typer.echo(f"triton model: {repo.model_dir} (config {repo.config_path.name})", err=True)
    for note in repo.notes:
        typer.echo(f"  {note}", err=True)
