"""The command line: parses options, calls one package function per command, prints.

Each command lives in its own module here and holds no logic of its own. Any
``CifreNetError`` becomes one line on stderr and exit code 2; no traceback.
"""

import importlib
import sys
from typing import TYPE_CHECKING, List, Optional

import typer

from ..errors import CifreNetError

if TYPE_CHECKING:
    from rich.console import Console

app = typer.Typer(
    name="cifrenet-edge",
    help="CIFReNet from PyTorch to ONNX, INT8 and TensorRT engines, benchmarked honestly.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """CIFReNet from PyTorch to ONNX, INT8 and TensorRT engines, benchmarked honestly."""


def make_console(stderr: bool = False) -> "Console":
    """A rich console that keeps wide tables readable in logs and CI.

    Rich falls back to 80 columns when output is not a terminal, which folds a benchmark
    table into unreadable slivers; a file or pipe gets 160 columns instead.
    """
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    width = None if stream.isatty() else 160
    return Console(stderr=stderr, width=width)


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point: typer handles usage errors; toolkit errors become one-line messages."""
    try:
        app(args=argv, prog_name="cifrenet-edge")
    except CifreNetError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


# Importing a command module registers its command on ``app``; this order (the order the
# data flows) is the order `--help` lists them in.
COMMAND_MODULES = (
    "info",
    "export",
    "calib",
    "predict",
    "serve",
    "bench",
    "data",
    "train",
    "evaluate",
)
for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}")
