"""NVIDIA's trtexec on the same engine: the reference a user will hold our numbers against.

Its defaults time something else than ``benchmark_gpu``'s loop, and they changed in 11.0,
so the flags are chosen per TensorRT major (``trtexec_flags``) to time the same thing: one
query in flight, input and output copies included, CUDA graphs only on the graph row, the
host spinning on the completion event.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

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


def trtexec_flags(trt_version: str, cuda_graph: bool) -> List[str]:
    """trtexec options that make it time ``benchmark_gpu``'s loop (samples/common/sampleOptions).

    * ``--exposeDMA``: trtexec keeps ``1 + overlap`` queries in flight (``IterationBase::
      mDepth``, sampleInference.cpp; overlap is on by default in 8.0 to 11.1), our loop one;
      ``--exposeDMA`` sets overlap off: depth 1, each query's copies and compute serialised.
    * data transfers: included by default up to 10.x (``skipTransfers{false}``); 11.x turns
      them off (``includeTransfers{false}``) and takes ``--includeDataTransfers``.
    * CUDA graphs: off by default up to 10.x (``--useCudaGraph`` turns them on); 11.x turns
      them on (``--useCudaGraph`` is a deprecated no-op there) and takes ``--noCudaGraph``.
    * spin-wait: our loop waits in ``cudaStreamSynchronize`` under the default
      ``cudaDeviceScheduleAuto``, which spins while the process has no more CUDA contexts than
      CPU cores; trtexec spins with ``--useSpinWait`` up to 10.x and by default in 11.x.

    An option a release does not know makes trtexec exit with "Unknown option", so each
    release gets only its own (8.0.1 to 10.16 know ``--useSpinWait``/``--useCudaGraph``/
    ``--exposeDMA``; 11.0/11.1 also ``--includeDataTransfers``/``--noCudaGraph``).
    """
    major = _major(trt_version)
    flags = ["--exposeDMA"]
    if major >= 11:
        flags.append("--includeDataTransfers")
        if not cuda_graph:
            flags.append("--noCudaGraph")
    else:
        flags.append("--useSpinWait")
        if cuda_graph:
            flags.append("--useCudaGraph")
    return flags


def _major(version: str) -> int:
    m = re.match(r"\s*(\d+)", str(version))
    if not m:
        raise ValueError(f"not a TensorRT version: {version!r}")
    return int(m.group(1))


_BANNER = re.compile(r"\[TensorRT v(\d+)\]")


def trtexec_major(text: str) -> Optional[int]:
    """The TensorRT major in trtexec's banner ``&&&& RUNNING TensorRT.trtexec [TensorRT vN]``.

    ``N`` is ``NV_TENSORRT_VERSION``: major * 1000 + minor * 100 + patch up to 8.x
    (8601 = 8.6.1), major * 10000 + minor * 100 + patch from 10.0 (101600 = 10.16.0).
    """
    m = _BANNER.search(text)
    if not m:
        return None
    v = int(m.group(1))
    return v // 10000 if v >= 100000 else v // 1000


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
    trt_version: str,
    warmup_ms: int = 200,
    cuda_graph: bool = False,
    shapes: Optional[Dict[str, Sequence[int]]] = None,
    dla_core: Optional[int] = None,
    batch: int = 1,
) -> Dict[str, Any]:
    """Time the same engine with trtexec, like for like (``trtexec_flags``).

    ``trt_version``: the TensorRT the engine runs on (an engine loads only in its own
    release's trtexec; a trtexec of another major is reported, not timed with wrong flags).
    trtexec's Throughput is queries per second: ``throughput_qps`` keeps it, and
    ``throughput_images_per_s`` is it times ``batch`` (what bench's img/s column means).

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
    flags = trtexec_flags(trt_version, cuda_graph)
    cmd = [
        exe,
        f"--loadEngine={engine}",
        f"--iterations={iterations}",
        f"--warmUp={warmup_ms}",
        "--duration=0",
        "--avgRuns=1",
        *flags,
    ]
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
    text = p.stdout + "\n" + p.stderr
    parsed = parse_trtexec_output(text)
    seen = trtexec_major(text)
    if seen is not None and seen != _major(trt_version):
        return {
            "status": "failed",
            "reason": f"{exe} is TensorRT {seen}.x but the engine runs on TensorRT "
            f"{trt_version}: put that release's trtexec first on the PATH",
            "command": " ".join(cmd),
        }
    if p.returncode != 0 or "gpu_compute_time" not in parsed:
        tail = (p.stdout + p.stderr).strip().splitlines()[-1:] or [""]
        return {
            "status": "failed",
            "reason": f"exit {p.returncode}: {tail[0]}",
            "command": " ".join(cmd),
        }
    out = {"status": "ok", "command": " ".join(cmd), "flags": flags, "queries_in_flight": 1}
    out.update(parsed)
    out["batch"] = int(batch)
    if "throughput_qps" in parsed:
        out["throughput_images_per_s"] = parsed["throughput_qps"] * int(batch)
    return out
