"""`cifrenet-edge serve`: a Triton Inference Server (PyTriton) serving one model to many robots."""

from pathlib import Path
from typing import Any, Optional

import typer

from . import app


@app.command()
def serve(
    model: Path = typer.Argument(..., help="model file: .onnx, .engine/.plan or .pt/.pth"),
    name: str = typer.Option("cifrenet", "--name", help="Triton model name clients ask for"),
    host: str = typer.Option("0.0.0.0", "--host", help="address to listen on (127.0.0.1: local)"),
    http_port: int = typer.Option(8000, "--http-port", help="HTTP/REST port"),
    grpc_port: int = typer.Option(8001, "--grpc-port", help="gRPC port"),
    metrics_port: int = typer.Option(8002, "--metrics-port", help="Prometheus metrics port"),
    max_batch: int = typer.Option(8, "--max-batch", help="largest batch Triton forms (frames)"),
    queue_delay_us: int = typer.Option(
        2000, "--queue-delay-us", help="how long a request may wait to fill a batch (us)"
    ),
    instances: int = typer.Option(1, "--instances", help="batches run at once"),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:N or tensorrt"),
    backend: Optional[str] = typer.Option(
        None, help="torch, onnxruntime, openvino or tensorrt (default: chosen from the file)"
    ),
    max_side: int = typer.Option(4096, "--max-side", help="largest frame side accepted (px)"),
    overlay_alpha: float = typer.Option(
        0.5, "--overlay-alpha", help="opacity of the 'overlay' output, 0..1"
    ),
    exit_timeout: int = typer.Option(
        30, "--exit-timeout", help="seconds to finish in-flight requests on SIGINT/SIGTERM"
    ),
    log_file: Optional[Path] = typer.Option(
        None, "--log-file", help="Triton's log file (default: Triton logs to standard output)"
    ),
) -> None:
    """Serve a model through Triton: uint8 frames in, class maps out, dynamic batching."""
    from ..serve.server import ServeOptions
    from ..serve.server import serve as run_serve

    options = ServeOptions(
        name=name,
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        max_batch=max_batch,
        queue_delay_us=queue_delay_us,
        instances=instances,
        device=device,
        backend=backend,
        max_side=max_side,
        overlay_alpha=overlay_alpha,
        exit_timeout_s=exit_timeout,
        log_file=str(log_file) if log_file else None,
    )

    def ready(info: Any) -> None:
        b = info.backend
        typer.echo(
            f"serving {Path(info.model).name} as '{info.name}': {b['backend']} on {b['device']}, "
            f"{b['precision']} ({info.reason}); batches up to {info.max_batch}, "
            f"{info.instances} instance(s)",
            err=True,
        )
        typer.echo(f"  gRPC    {info.grpc_url}", err=True)
        typer.echo(f"  HTTP    {info.http_url}  (ready: /v2/health/ready)", err=True)
        typer.echo(f"  metrics {info.metrics_url}", err=True)
        typer.echo("ready; Ctrl-C or SIGTERM stops after in-flight requests", err=True)

    summary = run_serve(str(model), options, on_ready=ready)
    typer.echo(
        f"stopped ({summary.stopped_by or 'done'}): {summary.requests} requests, "
        f"{summary.frames} frames served",
        err=True,
    )
