"""`cifrenet-edge train`: the paper's training protocol on any dataset spec."""

from pathlib import Path
from typing import Optional

import typer

from . import app


@app.command()
def train(
    data: str = typer.Option(
        ..., "--data", help="KIND:PATH: cityscapes:DIR, camvid:DIR, folder:DIR, synthetic:N@WxH"
    ),
    preset: str = typer.Option("cityscapes", help="cityscapes, camvid or helen"),
    iters: Optional[int] = typer.Option(None, "--iters", help="training iterations"),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="epochs (if --iters not given)"),
    batch_size: int = typer.Option(4, "--batch-size", help="at least 2 (paper's code: 4)"),
    crop: Optional[str] = typer.Option(None, "--crop", help="WxH (default: the preset's)"),
    lr: float = typer.Option(0.005, "--lr", help="base learning rate, poly decay 0.9"),
    imagenet: Optional[Path] = typer.Option(
        None, "--imagenet", help="torchvision MobileNetV2 ImageNet state dict for the backbone"
    ),
    weights: Optional[Path] = typer.Option(
        None, "--weights", help="fine-tune from a checkpoint (a new classifier if classes differ)"
    ),
    resume: Optional[Path] = typer.Option(None, "--resume", help="a run's last.pth"),
    output: Path = typer.Option(Path("runs/train"), "--output", "-o", help="run folder"),
    val_every: int = typer.Option(0, "--val-every", help="validate every N iterations (0: off)"),
    val_split: str = typer.Option("val", "--val-split"),
    val_limit: Optional[int] = typer.Option(None, "--val-limit", help="validate on N images"),
    seed: int = typer.Option(0, "--seed"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads"),
    workers: int = typer.Option(0, "--workers", help="data loader processes"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda, cuda:N"),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Train or fine-tune CIFReNet (SGD 0.9, wd 5e-4, lr 0.005 poly, scale/flip/rotate/crop)."""
    from ..model.train import TrainConfig
    from ..model.train import train as run_train
    from ..presets import parse_resolution

    cfg = TrainConfig(
        data=data,
        preset=preset,
        iters=iters,
        epochs=epochs,
        batch_size=batch_size,
        crop=parse_resolution(crop) if crop else None,
        lr=lr,
        imagenet=str(imagenet) if imagenet else None,
        weights=str(weights) if weights else None,
        resume=str(resume) if resume else None,
        output=str(output),
        val_every=val_every,
        val_split=val_split,
        val_limit=val_limit,
        seed=seed,
        threads=threads,
        workers=workers,
        device=device,
        quiet=quiet,
    )
    result = run_train(cfg)
    best = f", best val mIoU {max(v['miou'] for v in result.val):.2f}" if result.val else ""
    typer.echo(
        f"trained {result.iterations} iterations in {result.seconds:.0f} s{best}; "
        f"model: {result.model_path}; resume: {result.last}"
    )
