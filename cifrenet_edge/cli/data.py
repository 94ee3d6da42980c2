"""`cifrenet-edge data synth`: write a synthetic street-scene dataset (folder layout)."""

from pathlib import Path

import typer

from . import app

data_app = typer.Typer(
    help="Datasets: write synthetic scenes, check a dataset.", no_args_is_help=True
)
app.add_typer(data_app, name="data")


@data_app.command("synth")
def synth(
    out: Path = typer.Option(..., "--out", "-o", help="folder to write"),
    count: int = typer.Option(..., "--count", "-n", help="number of scenes"),
    res: str = typer.Option("640x360", "--res", help="WxH"),
    seed: int = typer.Option(0, "--seed", help="scene k uses seed SEED + k"),
    val_fraction: float = typer.Option(0.2, "--val-fraction", help="share of scenes in val/"),
) -> None:
    """Deterministic street scenes with Cityscapes trainIds: images/, masks/, classes.json."""
    from ..data.synthetic import write_synthetic_dataset
    from ..presets import parse_resolution

    summary = write_synthetic_dataset(out, count, parse_resolution(res), seed, val_fraction)
    typer.echo(
        f"wrote {summary['train']} train + {summary['val']} val scenes at {res} to {out} "
        f"(use --data synthetic:{out})"
    )


@data_app.command("check")
def check(
    data: str = typer.Argument(..., help="KIND:PATH"),
    split: str = typer.Option("train", "--split"),
    limit: int = typer.Option(0, "--limit", help="read only N items (0: all)"),
) -> None:
    """Open a dataset and read every item: layout, pairing, sizes and label range."""
    from ..data.datasets import check_dataset

    report = check_dataset(data, split, limit or None)
    typer.echo(report["summary"])
