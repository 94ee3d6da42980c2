"""The command line: parses options, calls one package function per command, prints.

Each command lives in its own module here and holds no logic of its own. Any
``CifreNetError`` becomes one line on stderr and exit code 2; no traceback.
"""

import importlib
import sys
from typing import List, Optional

import typer

from ..errors import CifreNetError

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


# Importing a command module registers its command on ``app``; this order (the order the
# data flows) is the order `--help` lists them in.
COMMAND_MODULES = ("info", "export", "calib", "predict", "bench", "data", "train", "evaluate")
for _name in COMMAND_MODULES:
    importlib.import_module(f"{__name__}.{_name}")


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
