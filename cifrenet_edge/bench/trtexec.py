"""NVIDIA's trtexec on the same engine: the reference a user will hold our numbers against."""

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

from .stats import _one_line

_TRTEXEC_METRICS = (
    "Throughput",
    "Latency",
    "Enqueue Time",
    "H2D Latency",
    "GPU Compute Time",
    "D2H Latency",
    "Total Host Walltime",
    "Total GPU Compute Time",
)


_TRTEXEC_LINE = re.compile(r"^({}):\s*(.*)$".format("|".join(map(re.escape, _TRTEXEC_METRICS))))


def parse_trtexec_output(text: str) -> Dict[str, Any]:
    """trtexec's 'Performance summary' -> {metric: {min, max, mean, median, p90, p95, p99}}.

    Handles the TRT 8/10 form ``percentile(99%) = x ms`` and the TRT 7 form
    ``percentile: x ms at 99%``. Missing metrics are simply absent.
    """
    out: Dict[str, Any] = {}
    for line in text.splitlines():
        body = re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())
        m = re.match(_TRTEXEC_LINE, body)
        if not m:
            continue
        name, rest = m.group(1), m.group(2)
        if name == "Throughput":
            q = re.match(r"([\d.eE+-]+)\s*qps", rest)
            if q:
                out["throughput_qps"] = float(q.group(1))
            continue
        if name.startswith("Total"):
            q = re.match(r"([\d.eE+-]+)\s*(ms|s)", rest)
            if q:
                v = float(q.group(1)) / (1e3 if q.group(2) == "ms" else 1.0)
                out[name.lower().replace(" ", "_") + "_s"] = v
            continue
        stats: Dict[str, float] = {}
        for k, v in re.findall(r"(min|max|mean|median)\s*=\s*([\d.eE+-]+)\s*ms", rest):
            stats[k] = float(v)
        for pct, v in re.findall(r"percentile\(([\d.]+)%\)\s*=\s*([\d.eE+-]+)\s*ms", rest):
            stats[f"p{float(pct):g}"] = float(v)
        for v, pct in re.findall(r"percentile:\s*([\d.eE+-]+)\s*ms\s*at\s*([\d.]+)%", rest):
            stats[f"p{float(pct):g}"] = float(v)
        if stats:
            out[name.lower().replace(" ", "_")] = stats
    return out


def find_trtexec() -> Optional[str]:
    """trtexec on the PATH, else where JetPack and NVIDIA's containers install it."""
    exe = shutil.which("trtexec")
    if exe:
        return exe
    for cand in ("/usr/src/tensorrt/bin/trtexec", "/opt/tensorrt/bin/trtexec"):
        if os.access(cand, os.X_OK):
            return cand
    return None


def run_trtexec(
    engine: Path,
    iterations: int,
    warmup_ms: int = 200,
    cuda_graph: bool = False,
    shapes: Optional[Dict[str, Sequence[int]]] = None,
    dla_core: Optional[int] = None,
) -> Dict[str, Any]:
    """Time the same engine with trtexec (the reference a user will hold us against).

    ``shapes``: the input shape we timed, for a dynamic engine: without ``--shapes`` trtexec
    sets every dynamic dimension of a loaded engine to 1 ("Dynamic dimensions required for
    input ... Automatically overriding shape", samples/common/sampleInference.cpp), which is
    outside our profile or another workload. ``dla_core``: a DLA engine's core, as
    ``--useDLACore`` (trtexec then calls ``IRuntime::setDLACore`` before deserialising, as the
    backend does).
    """
    exe = find_trtexec()
    if exe is None:
        return {
            "status": "skipped",
            "reason": "trtexec is not on the PATH (nor in /usr/src/tensorrt/bin): add it to "
            "compare with NVIDIA's own numbers",
        }
    cmd = [
        exe,
        f"--loadEngine={engine}",
        f"--iterations={iterations}",
        f"--warmUp={warmup_ms}",
        "--duration=0",
        "--avgRuns=1",
    ] + (["--useCudaGraph"] if cuda_graph else [])
    if shapes:
        spec = ",".join(
            "{}:{}".format(name, "x".join(str(int(d)) for d in dims))
            for name, dims in shapes.items()
        )
        cmd.append(f"--shapes={spec}")
    if dla_core is not None:
        cmd.append(f"--useDLACore={int(dla_core)}")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"status": "failed", "reason": _one_line(exc), "command": " ".join(cmd)}
    parsed = parse_trtexec_output(p.stdout + "\n" + p.stderr)
    if p.returncode != 0 or "gpu_compute_time" not in parsed:
        tail = (p.stdout + p.stderr).strip().splitlines()[-1:] or [""]
        return {
            "status": "failed",
            "reason": f"exit {p.returncode}: {tail[0]}",
            "command": " ".join(cmd),
        }
    return {"status": "ok", "command": " ".join(cmd), **parsed}
