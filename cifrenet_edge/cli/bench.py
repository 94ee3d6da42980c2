"""`cifrenet-edge bench`: measured latency beside the paper's figures, and roofline estimates."""

from pathlib import Path
from typing import List, Optional

import typer

from . import app, make_console


@app.command()
def bench(
    res: Optional[List[str]] = typer.Option(
        None, "--res", help="WIDTHxHEIGHT, repeatable (default 640x360, the paper's speed row)"
    ),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        help="benchmark this .onnx/.engine/.pth instead of exporting --preset; a Triton URL "
        "(grpc://HOST:PORT/NAME, http://...) runs the concurrent-client sweep",
    ),
    preset: str = typer.Option("cityscapes", "--preset", help="cityscapes, camvid or helen"),
    weights: Optional[str] = typer.Option(
        None,
        "--weights",
        help="checkpoint to export (default: the probe model, so INT8 agreement means "
        "something; speed is the same)",
    ),
    backend: str = typer.Option(
        "all", "--backend", help="torch,onnxruntime,openvino,tensorrt or all (what runs here)"
    ),
    precision: str = typer.Option("all", "--precision", help="fp32,fp16,int8 or all"),
    batch: int = typer.Option(1, "--batch", help="images per query (throughput at batch N)"),
    warmup: int = typer.Option(5, "--warmup", help="warm-up queries per series, excluded"),
    iters: Optional[int] = typer.Option(
        None, "--iters", help="timed queries per series (overrides --seconds)"
    ),
    seconds: float = typer.Option(
        2.0, "--seconds", help="timed seconds per series (at least 10 queries)"
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="intra-op threads (default: each library's own)"
    ),
    frame: Optional[str] = typer.Option(
        None, "--frame", help="image for end-to-end latency (default: a synthetic 1280x720 scene)"
    ),
    json_path: Optional[Path] = typer.Option(
        None, "--json", help="JSON report path (default benchmarks/results/bench_<host>_...json)"
    ),
    plot_path: Optional[Path] = typer.Option(
        None, "--plot", help="PNG chart path (default: beside the JSON)"
    ),
    no_save: bool = typer.Option(False, "--no-save", help="print only, write no JSON or plot"),
    estimate: Optional[str] = typer.Option(
        None,
        "--estimate",
        help="roofline ESTIMATE for gtx1080ti, jetson-nano, xavier-nx, orin-nano, agx-orin, "
        "cpu (this CPU), a comma list or all",
    ),
    estimate_only: bool = typer.Option(
        False, "--estimate-only", help="print the estimate without measuring anything"
    ),
    cache: Optional[str] = typer.Option(
        None, "--cache", help="folder for exported models (default models/cache)"
    ),
    no_e2e: bool = typer.Option(False, "--no-e2e", help="time compute latency only"),
    clients: str = typer.Option(
        "1,2,4,8", "--clients", help="Triton URL: concurrent clients per level"
    ),
    local: Optional[str] = typer.Option(
        None, "--local", help="Triton URL: the model file to compare with locally"
    ),
    metrics_port: int = typer.Option(
        8002, "--metrics-port", help="Triton URL: the server's metrics port (batch sizes)"
    ),
) -> None:
    """Benchmark every backend and precision available here (compute and end-to-end latency)."""
    from .. import bench as B
    from ..runtime.backends import is_remote

    console = make_console()
    err = make_console(stderr=True)
    if model is not None and is_remote(model):
        _serving_sweep(model, clients, local, metrics_port, seconds, frame, json_path, no_save)
        return
    resolutions = B.parse_resolutions(res) if res else None
    if estimate_only:
        from ..bench.estimate import estimate as run_estimate
        from ..bench.estimate import render_estimates

        ests = []
        for wh in resolutions or [(640, 360)]:
            ests += run_estimate(estimate or "all", wh, preset, batch)
        render_estimates(ests, console)
        return
    report = B.run_bench(
        resolutions=resolutions,
        model=model,
        preset=preset,
        weights=weights,
        backends=B.parse_choices(backend, B.BACKENDS, "backend"),
        precisions=B.parse_choices(precision, B.PRECISIONS, "precision"),
        batch=batch,
        warmup=warmup,
        iters=iters,
        seconds=seconds,
        threads=threads,
        cache=cache,
        frame=frame,
        end_to_end=not no_e2e,
        estimate_devices=estimate,
        log=lambda s: err.print(f"[dim]{s}[/dim]"),
    )
    B.render_report(report, console)
    if no_save:
        return
    stem = B.default_output_stem(report)
    jp = json_path or stem.with_suffix(".json")
    pp = plot_path or (jp.with_suffix(".png") if json_path else stem.with_suffix(".png"))
    B.write_report_json(report, jp)
    B.plot_report(report, pp)
    console.print(f"wrote {jp} and {pp}")


def _serving_sweep(
    url: str,
    clients: str,
    local: Optional[str],
    metrics_port: int,
    seconds: float,
    frame: Optional[str],
    json_path: Optional[Path],
    no_save: bool,
) -> None:
    """`bench --model grpc://...`: the concurrent-client sweep (cifrenet_edge/serve/sweep.py)."""
    from ..serve import sweep

    console = make_console()
    err = make_console(stderr=True)
    report = sweep.run_client_sweep(
        url,
        clients=sweep.parse_clients(clients),
        seconds=seconds,
        frame=frame,
        local=local,
        metrics_port=metrics_port,
        log=lambda s: err.print(f"[dim]{s}[/dim]"),
    )
    sweep.render_sweep(report, console)
    if not no_save:
        path = json_path or sweep.default_output_path(report)
        sweep.write_sweep_json(report, path)
        console.print(f"wrote {path}")
