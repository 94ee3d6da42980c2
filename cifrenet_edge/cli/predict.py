"""`cifrenet-edge predict`: segment images, a folder, a video, a camera or a rosbag."""

import json
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import app


@app.command()
def predict(
    model: str = typer.Argument(
        ...,
        help="model file (.onnx, .engine/.plan, .pt/.pth) or a Triton model served by "
        "`cifrenet-edge serve`: grpc://HOST:PORT/NAME or http://HOST:PORT/NAME",
    ),
    source: str = typer.Option(
        ...,
        "--source",
        "-s",
        help="image, folder, video, stream URL, camera index (0, /dev/video0) or rosbag "
        "(ROS 1 .bag file or ROS 2 bag folder)",
    ),
    output: Path = typer.Option(Path("predictions"), "--output", "-o", help="output folder"),
    save_mask: bool = typer.Option(False, "--save-mask", help="write class-id masks (PNG/mono8)"),
    save_overlay: bool = typer.Option(
        False, "--save-overlay", help="write colour overlays (neither flag: both)"
    ),
    topic: Optional[str] = typer.Option(
        None, "--topic", "-t", help="bag image topic (needed when the bag has several)"
    ),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or tensorrt"),
    backend: Optional[str] = typer.Option(
        None, help="torch, onnxruntime, openvino or tensorrt (default: chosen from the file)"
    ),
    alpha: float = typer.Option(0.5, help="overlay opacity, 0..1"),
    max_frames: Optional[int] = typer.Option(
        None, "--max-frames", help="stop after N frames (cameras run until Ctrl-C)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Segment every frame of a source and write masks and overlays (or a segmented bag)."""
    from ..runtime.predict_files import run_predict

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("[bold]segmenting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=as_json,
    )
    task = bar.add_task("frames", total=None)

    def on_open(seg: Any, src: Any) -> None:
        if not as_json:
            b = seg.backend
            where = seg.path if b.name == "triton" else Path(seg.path).name  # a URL stays whole
            typer.echo(
                f"{where}: {b.name} on {b.device}, {b.precision}, "
                f"{seg.resolution[0]}x{seg.resolution[1]} ({seg.reason}); source: {src.kind}"
                + (f" {src.topic}" if getattr(src, "topic", None) else ""),
                err=True,
            )

    def progress(done: int, total: Optional[int]) -> None:
        bar.update(task, completed=done, total=total)

    with bar:
        summary = run_predict(
            model,
            source,
            output,
            save_mask=save_mask,
            save_overlay=save_overlay,
            topic=topic,
            device=device,
            backend=backend,
            alpha=alpha,
            max_frames=max_frames,
            progress=progress,
            on_open=on_open,
        )
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
        return
    line = f"{summary.written} frames segmented in {summary.seconds:.1f} s ({summary.fps:.1f} fps)"
    if summary.skipped:
        line += f", {summary.skipped} skipped"
    if summary.dropped:
        line += f", {summary.dropped} stale camera frames dropped"
    if summary.interrupted:
        line += " (interrupted)"
    typer.echo(line)
    if summary.ended_by:
        typer.echo(f"  source ended early: {summary.ended_by}")
    for reason, count in summary.skip_reasons.items():
        typer.echo(f"  skipped {count}x: {reason}")
    if len(summary.outputs) > 4:
        typer.echo(f"  wrote {len(summary.outputs)} files to {output}")
    else:
        for path in summary.outputs:
            typer.echo(f"  wrote {path}")
