"""`cifrenet-edge calib`: build and inspect INT8 calibration sets (see calib/README.md)."""

import json
from pathlib import Path

import typer

from ..data.calibration import DEFAULT_COUNT, MIN_RECOMMENDED_COUNT, describe, sample_video
from ..presets import format_resolution, parse_resolution
from . import app

calib_app = typer.Typer(
    help="Build and check INT8 calibration sets (frames from the deployment camera).",
    no_args_is_help=True,
)
app.add_typer(calib_app, name="calib")


@calib_app.command("sample")
def sample(
    video: Path = typer.Argument(..., help="video recorded by the deployment camera"),
    out: Path = typer.Option(..., "--out", help="folder to write the frames into"),
    count: int = typer.Option(DEFAULT_COUNT, "--count", help="frames, evenly spaced"),
    ext: str = typer.Option(".png", "--ext", help=".png (lossless) or .jpg"),
) -> None:
    """Write COUNT evenly spaced frames of VIDEO to a folder usable as --calib."""
    written = sample_video(video, out, count=count, ext=ext)
    typer.echo(f"wrote {len(written)} frames to {out}")
    if len(written) < MIN_RECOMMENDED_COUNT:
        typer.echo(
            f"note: fewer than {MIN_RECOMMENDED_COUNT} frames; a few hundred covering the "
            "camera's conditions are advised (calib/README.md)"
        )


@calib_app.command("check")
def check(
    path: Path = typer.Argument(..., help="folder of images, video, or text file of image paths"),
    res: str = typer.Option("640x360", "--res", help="the model's WIDTHxHEIGHT"),
    count: int = typer.Option(None, "--count", help="frames to take (default: all, max 300)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Report what a calibration source holds: usable frames, skipped files, sizes, warnings."""
    report = describe(path, parse_resolution(res), count=count)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    sizes = ", ".join(format_resolution(tuple(s)) for s in report["source_sizes"])
    typer.echo(f"{report['source']} ({report['kind']}): {report['usable_frames']} usable frames")
    typer.echo(f"  source sizes: {sizes} -> resized to {res} (INTER_LINEAR, as the runtime)")
    skipped = {k: v for k, v in report["skipped"].items() if v}
    if skipped:
        typer.echo(
            "  skipped: " + ", ".join(f"{v} {k.replace('_', '-')}" for k, v in skipped.items())
        )
    typer.echo(f"  fingerprint sha256: {report['sha256']}")
    for w in report["warnings"]:
        typer.echo(f"  warning: {w}")
    if report["enough"] and not report["warnings"]:
        typer.echo("  ok: enough frames for INT8 calibration")
