"""Run the threshold-bearing tests under each kernel ISA and print every threshold's margin.

    python3 tests/threshold_audit.py                 # default, avx2 and this host's best
    python3 tests/threshold_audit.py --files tests/test_eval.py --kernels avx2 \\
        --pytest-args "-m 'slow or not slow'"     # the slow tests too

Each kernel set is one pytest run with ``CIFRENET_EDGE_THRESHOLD_LOG`` set (see
``tests/thresholds.py``); the table gives, per threshold, the worst value seen under each set
and the margin left: against the threshold itself for an unbounded quantity, against the room
between threshold and ideal for one with an ideal (an agreement of 1.0). A margin under 20 %
is flagged. Tests that break something on purpose are listed apart, with how far they fail.
Not a test: it takes several minutes, and CI runs the suite under AVX2 instead.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FILES = [
    "tests/test_eval.py",
    "tests/test_train.py",
    "tests/test_cpu_int8.py",
    "tests/test_export.py",
    "tests/test_fp16.py",
    "tests/test_quantize.py",
    "tests/test_calib.py",
    "tests/test_runtime.py",
    "tests/test_bench.py",
    "tests/test_export_pipeline.py",
]
AVX2 = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "CIFRENET_EDGE_INT8_DOT": "0",
}
KERNELS: Dict[str, Dict[str, str]] = {
    "native": {},
    "avx2": AVX2,
    "default": {**AVX2, "ATEN_CPU_CAPABILITY": "default"},
}


def run(kernels: str, files: List[str], log: Path, extra: List[str]) -> int:
    env = {**os.environ, **KERNELS[kernels], "CIFRENET_EDGE_THRESHOLD_LOG": str(log)}
    env["CIFRENET_EDGE_AUDIT_KERNELS"] = kernels
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *extra, *files]
    print(f"== {kernels}: {' '.join(cmd[3:])}", flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def margin(v: float, op: str, limit: float, ideal: Optional[float]) -> float:
    """The unused part of the allowance, as a fraction (negative: the check fails)."""
    room = abs(ideal - limit) if ideal is not None else abs(limit)
    gap = (v - limit) if op in (">", ">=") else (limit - v)
    return gap / room if room else float("inf")


def deliberate(row: dict) -> bool:
    """A test that breaks something on purpose (named ``*broken*``) must land on the wrong
    side of its thresholds; its rows show how far, apart from the rest."""
    return "broken" in row["test"]


def opened(row: dict) -> bool:
    """A gate set to 0 (bench and some tests open the INT8 gates to measure): no threshold."""
    return row["limit"] == 0 and row["op"] in (">", ">=") and row["ideal"] is not None


def table(rows: List[dict], kernels: List[str]) -> str:
    worst: Dict[tuple, Dict[str, tuple]] = defaultdict(dict)  # (name, op) -> kernels -> worst
    for r in rows:
        if opened(r):
            continue
        # one row per check; a limit that scales with the model (parity's logit tolerance)
        # is shown as the one of the worst case
        key = (r["name"] + (" (broken on purpose)" if deliberate(r) else ""), r["op"])
        m = margin(r["value"], r["op"], r["limit"], r["ideal"])
        m = -m if deliberate(r) else m  # there, the margin is how far it fails
        seen = worst[key].get(r["kernels"])
        if seen is None or m < seen[1]:
            worst[key][r["kernels"]] = (r["value"], m, r["limit"])
    head = "| threshold | " + " | ".join(kernels) + " | least margin |"
    out = [head, "|" + "---|" * (len(kernels) + 2)]
    for (name, op), per in sorted(worst.items()):
        cells = [f"{per[k][0]:.4g}" if k in per else "" for k in kernels]
        least, limit = min((m, lim) for _, m, lim in per.values())
        flag = " **<20 %**" if least < 0.2 else ""
        out.append(f"| {name} {op} {limit:.4g} | " + " | ".join(cells) + f" | {least:.0%}{flag} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", nargs="*", default=FILES)
    ap.add_argument("--kernels", nargs="*", default=list(KERNELS), choices=list(KERNELS))
    ap.add_argument("--json", type=Path, help="also write every observation here")
    ap.add_argument("--pytest-args", default="", help="e.g. \"-m 'slow or not slow'\"")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "thresholds.jsonl"
        extra = shlex.split(a.pytest_args)
        codes = {k: run(k, a.files, log, extra) for k in a.kernels}
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))
    print(table(rows, a.kernels))
    print("pytest exit codes:", codes)
    return 0 if all(c == 0 for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
