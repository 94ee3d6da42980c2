"""`cifrenet-edge eval`: mIoU of any deployed model through the runtime, optionally vs another."""

from pathlib import Path
from typing import Optional

import typer

from . import app, make_console


@app.command("eval")
def evaluate_cmd(
    model: Path = typer.Argument(..., help="model file: .pth, .onnx (fp32/fp16/int8), .engine"),
    data: str = typer.Option(..., "--data", help="KIND:PATH, e.g. cityscapes:/data/cityscapes"),
    split: str = typer.Option("val", "--split", help="train, val or test"),
    compare: Optional[Path] = typer.Option(
        None, "--compare", help="a second model: per-class IoU deltas and pixel flip rate"
    ),
    limit: Optional[int] = typer.Option(None, "--limit", help="evaluate the first N images"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N, tensorrt"),
    backend: Optional[str] = typer.Option(None, "--backend", help="torch, onnxruntime, ..."),
    res: Optional[str] = typer.Option(None, "--res", help="WxH for dynamic models"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads"),
    json_path: Optional[Path] = typer.Option(None, "--json", help="write the full result here"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar or table"),
) -> None:
    """mIoU, per-class IoU and pixel accuracy of a deployed model (via the Segmenter)."""

    from .._io import write_json_atomic
    from ..accuracy.evaluate import evaluate, format_table, result_lines

    result = evaluate(
        model,
        data,
        split=split,
        compare=compare,
        limit=limit,
        device=device,
        backend=backend,
        resolution=res,
        threads=threads,
        quiet=quiet,
    )
    if json_path is not None:
        write_json_atomic(json_path, result)
    if not quiet:
        make_console().print(format_table(result))
    typer.echo(result_lines(result))
