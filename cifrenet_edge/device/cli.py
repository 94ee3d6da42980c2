"""``cifrenet-edge`` on a device install: the device check, and the way to the full toolkit.

The device distribution (``device/``: the runtime and the engine builder, no PyTorch) ships
neither the toolkit's CLI nor its dependencies (typer, rich, torch). Its ``cifrenet-edge``
command is this module: ``info --env`` runs the same device check as on a desktop, in plain
text; every other toolkit command answers with one line naming the full install, never an
ImportError's traceback. Standard library only, Python 3.8 syntax.
"""

import json
import sys
from typing import Any, Dict, List, Optional

FULL_INSTALL = (
    "the full toolkit (PyTorch, ONNX, the CLI; Python >= 3.10), not this device install "
    "(cifrenet-edge-runtime): on a desktop, from the checkout, python3 -m pip install -e . "
    "(README, Set up)"
)
HERE = (
    "here: `from cifrenet_edge import Segmenter`, `cifrenet-edge info --env` (the device check) "
    "and `cifrenet-edge-build MODEL.onnx` (python3 -m cifrenet_edge.trt.build) for engines"
)
USAGE = f"""usage: cifrenet-edge info --env [--json] [--dla-core N]

The device install of cifrenet-edge: the runtime and the TensorRT engine builder.
  info --env          the device check (each mismatch with its fix) and this machine
  cifrenet-edge-build build a TensorRT engine from an exported ONNX (--help for options)
export, calib, predict, serve, bench, data, train and eval need {FULL_INSTALL}.
"""


def _plain(report: Dict[str, Any]) -> List[str]:
    """The report as plain lines (no rich on a device)."""
    gpu, cuda, trt, ort = (
        report.get("gpu"),
        report["cuda"],
        report["tensorrt"],
        report["onnxruntime"],
    )
    lines = [f"platform     {report['platform']}, Python {report['python']}"]
    if report.get("jetson"):
        j = report["jetson"]
        lines.append(f"Jetson       {j.get('model', '?')} ({j['l4t']})")
    if gpu:
        cc = gpu.get("compute_capability") or "?"
        lines.append(f"GPU          {gpu.get('name')} (compute capability {cc})")
    else:
        lines.append(f"GPU          none ({report.get('gpu_why_not')})")
    lines.append(
        f"CUDA         driver {cuda.get('driver') or '-'}, cuda-python "
        f"{cuda.get('cuda_python') or '-'}, pycuda {cuda.get('pycuda') or '-'}"
    )
    lines.append(f"TensorRT     {trt.get('version') or 'none (' + str(trt.get('why')) + ')'}")
    providers = ", ".join(ort.get("providers", [])) or "-"
    lines.append(f"ONNX Runtime {ort.get('version') or 'none'} providers: {providers}")
    rows = report.get("checks") or []
    if rows:
        lines.append(f"Device check: {len(rows)} mismatch{'es' if len(rows) > 1 else ''}")
        lines += [f"  {r['severity']}: {r['line']} ({r['check']})" for r in rows]
    else:
        lines.append("Device check: no known mismatch on this machine")
    rec = report["recommendation"]
    lines.append(
        f"Recommended: --precision {rec['precision']} on {rec['backend']}: {rec['reason']}"
    )
    return lines


def _info_env(args: List[str]) -> int:
    dla_core = None  # type: Optional[int]
    if "--dla-core" in args:
        i = args.index("--dla-core")
        try:
            dla_core = int(args[i + 1])
        except (IndexError, ValueError):
            print("error: --dla-core needs a core number (0 or 1)", file=sys.stderr)
            return 2
    from .env import environment_report

    report = environment_report(dla_core)
    if "--json" in args:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(_plain(report)))
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    """The device install's ``cifrenet-edge``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    if args[0] == "info" and "--env" in args:
        return _info_env(args[1:])
    command = " ".join(a for a in args[:2] if not a.startswith("-")) or args[0]
    print(f"error: `cifrenet-edge {command}` needs {FULL_INSTALL}; {HERE}", file=sys.stderr)
    return 2


def module_main() -> None:
    """``python3 -m cifrenet_edge``: the full CLI where it is installed, else this one."""
    try:
        from ..cli import main as full_main
    except ImportError:  # the device install: no cli package, no typer/rich/torch
        raise SystemExit(main()) from None
    full_main()
