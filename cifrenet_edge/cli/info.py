"""`cifrenet-edge info`: the model's size and cost beside the paper's, or the environment."""

import json
from typing import List, Optional

import typer
from rich.table import Table

from ..presets import get_preset, parse_resolution
from . import app, make_console

DEFAULT_RES = ["640x360", "512x512", "713x713", "1024x448", "1024x512"]


@app.command()
def info(
    preset: str = typer.Option("cityscapes", help="cityscapes, camvid or helen"),
    res: Optional[List[str]] = typer.Option(
        None, "--res", help="WIDTHxHEIGHT, repeatable (default: the paper's five)"
    ),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    env: bool = typer.Option(
        False,
        "--env",
        help="the device check (each mismatch with its fix), GPU, TensorRT/CUDA/ONNX Runtime "
        "versions and the advised precision",
    ),
    dla_core: Optional[int] = typer.Option(
        None, "--dla-core", help="with --env: check this Jetson DLA core too"
    ),
) -> None:
    """Parameters, multiply-adds and FLOPs per resolution beside the paper's figures."""
    console = make_console()
    if env:
        from ..device.env import environment_report, render_environment

        report = environment_report(dla_core)
        if as_json:
            typer.echo(json.dumps(report, indent=2))
        else:
            render_environment(report, console)
        return
    from ..model.complexity import model_report  # imports torch: only when this command runs

    name = get_preset(preset).name
    resolutions = [parse_resolution(r) for r in (res or DEFAULT_RES)]
    report = model_report(name, resolutions)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    p = report["parameters"]
    t = Table(title=f"CIFReNet ({name}, {report['num_classes']} classes): parameters")
    t.add_column("part")
    t.add_column("parameters", justify="right")
    t.add_column("paper", justify="right")
    paper = {"mcim": "0.12 M", "total": "< 1.9 M (parts: 1.94 M)"}
    for part in ("backbone", "lrm", "attention", "mcim", "head", "total"):
        t.add_row(part, f"{p[part]:,}", paper.get(part, ""))
    t.add_row("one DSP", f"{p['dsp_each']:,}", "< 0.03 M")
    console.print(t)
    t = Table(title="Cost per frame (batch 1)")
    for col in (
        "resolution",
        "multiply-adds",
        "FLOPs (paper convention)",
        "paper FLOPs",
        "paper FPS (1080 Ti)",
    ):
        t.add_column(col, justify="right")
    for row in report["resolutions"]:
        pg, pf = row["paper_gflops"], row["paper_fps_1080ti"]
        t.add_row(
            f"{row['width']}x{row['height']}",
            f"{row['macs'] / 1e9:.2f} G",
            f"{row['flops_paper'] / 1e9:.2f} G",
            f"{pg:.1f} G" if pg else "-",
            f"{pf:.1f}" if pf else "-",
        )
    console.print(t)
    console.print(
        "FLOPs (paper convention) = conv/linear multiply-adds + BN, pooling and resize "
        "(fvcore's counting); the paper counts one multiply-add as one FLOP. The paper's "
        "figures are for the cityscapes preset (19 classes)."
    )
