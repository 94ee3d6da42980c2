"""Benchmarks that can be trusted: trtexec's definitions, warm-up excluded, series interleaved.

The usual ways a segmentation benchmark lies are all avoided on purpose:

* "network FPS" that ignores pre/post-processing: every row reports **compute latency**
  (``Backend.infer``, tensor in, logits out; on a GPU trtexec's *GPU Compute Time* from
  CUDA events, with *H2D* and *D2H Latency* apart) AND **end-to-end latency**
  (``Segmenter.predict``: a 1280x720 uint8 BGR frame in, the class map at frame size out);
* first-run effects: the first ``warmup`` queries of each series are run, reported, and
  excluded from the statistics;
* clock drift and neighbours on a shared machine: the series are interleaved in small
  blocks (A,B,C,A,B,C...), so a slow minute hurts every row alike and ratios stay fair;
* Python numbers that disagree with trtexec: with ``trtexec`` on the PATH the same engine
  is timed by it too and both are reported;
* a number with no reference: the paper's row and a bare ``onnxruntime.InferenceSession``
  on the same file sit beside the toolkit's rows, and the issue's target ratios are
  computed in the same run.

``run_bench`` returns a :class:`BenchReport`; ``report_to_dict`` is the versioned JSON
(``SCHEMA``/``SCHEMA_VERSION``, checked by ``check_report_dict``), ``render_report`` the
rich table and ``plot_report`` the PNG. The CLI only calls these.
"""

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import io
import logging
import os
import platform
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import __version__
from .errors import BackendUnavailableError, CifreNetError, ConfigError, ModelFileError

SCHEMA = "cifrenet-edge/bench"
SCHEMA_VERSION = 1
BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16", "int8")
MAX_SIDE = 4096  # a benchmark at 8K would take minutes per query and prove nothing
MAX_BATCH = 64
FRAME_WH = (1280, 720)  # the camera frame end-to-end latency is measured on
DEFAULT_RESULTS_DIR = Path("benchmarks") / "results"
DEFAULT_CACHE_DIR = Path("models") / "cache"
CALIB_COUNT = 8  # synthetic calibration scenes for the cached INT8 models

DEFINITIONS = {
    "compute": (
        "Compute latency: the model alone, an NCHW float32 tensor already in host memory in, "
        "logits out (Backend.infer). On a GPU with TensorRT it is trtexec's 'GPU Compute "
        "Time' (CUDA events around the enqueue), with 'H2D Latency' and 'D2H Latency' apart."
    ),
    "h2d": "H2D Latency (trtexec): host-to-device copy of the input tensor of one query.",
    "d2h": "D2H Latency (trtexec): device-to-host copy of the output tensor of one query.",
    "latency": "Latency (trtexec): H2D Latency + GPU Compute Time + D2H Latency of one query.",
    "end_to_end": (
        f"End-to-end latency: a {FRAME_WH[0]}x{FRAME_WH[1]} uint8 BGR frame in, the class "
        "map at frame size out (Segmenter.predict: resize, normalise, inference, argmax, "
        "resize back), host wall clock. What a robot sees."
    ),
    "throughput": (
        "Throughput (trtexec): images per second = queries x batch / Total Host Walltime of "
        "the timed queries (warm-up excluded)."
    ),
    "fps": "FPS = 1000 x batch / median latency (ms); the paper's FPS is batch 1.",
    "percentiles": (
        "median, p90, p95, p99: numpy linear interpolation between ranks (trtexec picks the "
        "nearest rank; the two differ by less than one sample spacing)."
    ),
    "warmup": (
        "Warm-up: the first N queries of every series run and are excluded from the "
        "statistics; their times are reported (the first includes lazy allocation and "
        "autotuning)."
    ),
    "interleaving": (
        "Series are timed in interleaved blocks (A,B,C,B,C,A,...: every round in a new seeded "
        "order) so machine noise and clock changes fall on every row alike; ratios come from "
        "one run. One untimed query opens each block, so a library's idle spinning threads "
        "never bill the next one."
    ),
}


# --------------------------------------------------------------------------- statistics


@dataclass
class LatencyStats:
    """Summary of one timed series, in milliseconds per query (one query = one batch)."""

    count: int
    batch: int
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    fps: float  # 1000 x batch / median
    throughput: float  # images/s over the Total Host Walltime
    total_walltime_s: float


def summarize(
    samples_ms: Sequence[float], batch: int = 1, walltime_s: Optional[float] = None
) -> LatencyStats:
    """Statistics of per-query latencies; ``walltime_s`` defaults to their sum (serial loop)."""
    a = np.asarray(list(samples_ms), dtype=np.float64)
    if a.size == 0:
        raise ValueError("no samples to summarise")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError("latency samples must be finite and non-negative")
    p50, p90, p95, p99 = np.percentile(a, [50, 90, 95, 99])
    wall = float(a.sum() / 1e3) if walltime_s is None else float(walltime_s)
    return LatencyStats(
        count=int(a.size),
        batch=int(batch),
        mean_ms=float(a.mean()),
        median_ms=float(p50),
        p90_ms=float(p90),
        p95_ms=float(p95),
        p99_ms=float(p99),
        min_ms=float(a.min()),
        max_ms=float(a.max()),
        std_ms=float(a.std()),
        fps=float(1e3 * batch / p50) if p50 > 0 else float("inf"),
        throughput=float(a.size * batch / wall) if wall > 0 else float("inf"),
        total_walltime_s=wall,
    )


@dataclass
class Series:
    """One timed quantity of one row: a callable run once per query."""

    key: str
    fn: Callable[[], Any]
    warmup_ms: List[float] = field(default_factory=list)
    samples_ms: List[float] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def spent_s(self) -> float:
        return sum(self.samples_ms) / 1e3


def _time_once(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def run_interleaved(
    series: Sequence[Series],
    warmup: int = 5,
    iters: Optional[int] = None,
    seconds: Optional[float] = 2.0,
    min_iters: int = 10,
    block: int = 5,
    settle: int = 1,
    max_iters: int = 100000,
) -> None:
    """Warm every series up, then time them in round-robin blocks until each is done.

    Done = exactly ``iters`` queries when given, else at least ``min_iters`` queries and
    ``seconds`` of timed work (trtexec's --iterations / --duration rule). Each block starts
    with ``settle`` untimed queries: the previous library's idle worker threads (ONNX
    Runtime and OpenMP spin-wait after a run) must not bill the next one, since a deployed
    robot runs one of them alone. The order is reshuffled (seeded) every round so no series
    always follows the same neighbour. A series that raises stops (its ``error`` says why); the
    others carry on.
    """
    for s in series:
        for _ in range(warmup):
            try:
                s.warmup_ms.append(_time_once(s.fn))
            except Exception as exc:
                s.error = _one_line(exc)
                break

    def done(s: Series) -> bool:
        if s.error is not None:
            return True
        n = len(s.samples_ms)
        if iters is not None:
            return n >= iters
        return n >= max_iters or (n >= min_iters and s.spent_s >= (seconds or 0.0))

    order = np.random.default_rng(0)  # seeded: the same schedule on every run
    while not all(done(s) for s in series):
        for i in order.permutation(len(series)):
            s = series[int(i)]
            if done(s):
                continue
            todo = block if iters is None else min(block, iters - len(s.samples_ms))
            try:
                for _ in range(settle):
                    s.fn()
                for _ in range(todo):
                    s.samples_ms.append(_time_once(s.fn))
            except Exception as exc:
                s.error = _one_line(exc)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


# --------------------------------------------------------------------------- report


@dataclass
class BenchResult:
    """One measured (or skipped) row: a backend at a precision and resolution."""

    backend: str
    precision: str
    resolution: Tuple[int, int]
    batch: int
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    kind: str = "toolkit"  # toolkit | baseline (bare library call, no toolkit code)
    model: Optional[str] = None
    model_sha256: Optional[str] = None
    device: Optional[str] = None
    threads: Optional[int] = None
    cuda_graph: Optional[bool] = None
    compute_timer: str = "host wall clock (time.perf_counter) around Backend.infer"
    compute: Optional[LatencyStats] = None
    end_to_end: Optional[LatencyStats] = None
    h2d: Optional[LatencyStats] = None
    d2h: Optional[LatencyStats] = None
    latency: Optional[LatencyStats] = None
    warmup: Dict[str, Any] = field(default_factory=dict)
    trtexec: Optional[Dict[str, Any]] = None

    @property
    def label(self) -> str:
        g = "" if self.cuda_graph is None else (" +graph" if self.cuda_graph else " -graph")
        return f"{self.backend} {self.precision}{g}"


@dataclass
class Ratio:
    """A target ratio of the issue, computed from two rows of the same run."""

    name: str
    description: str
    value: Optional[float]
    target: Optional[str]
    meets: Optional[bool]
    resolution: Tuple[int, int]


@dataclass
class BenchReport:
    created: str
    config: Dict[str, Any]
    system: Dict[str, Any]
    results: List[BenchResult]
    ratios: List[Ratio]
    notes: List[str]
    paper: Dict[str, Any]
    definitions: Dict[str, str] = field(default_factory=lambda: dict(DEFINITIONS))
    estimate: Optional[List[Dict[str, Any]]] = None
    elapsed_s: Optional[float] = None

    def rows(self, status: str = "ok") -> List[BenchResult]:
        return [r for r in self.results if r.status == status]


def _paper_block(resolutions: Sequence[Tuple[int, int]]) -> Dict[str, Any]:
    from .paper import PAPER_FPS, PAPER_FPS_DEVICE

    return {
        "device": PAPER_FPS_DEVICE,
        "source": "Jiang et al., IEEE TIP 2020, Table XII",
        "fps": {f"{w}x{h}": PAPER_FPS.get((w, h)) for (w, h) in resolutions},
    }


def report_to_dict(report: BenchReport) -> Dict[str, Any]:
    """The JSON document: ``schema``/``schema_version`` first, everything else plain data."""
    d = asdict(report)
    for r in d["results"]:
        r["resolution"] = list(r["resolution"])
    for r in d["ratios"]:
        r["resolution"] = list(r["resolution"])
    return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "toolkit_version": __version__, **d}


_STATS_KEYS = {f.name for f in LatencyStats.__dataclass_fields__.values()}  # type: ignore[attr-defined]
_RESULT_KEYS = {f.name for f in BenchResult.__dataclass_fields__.values()}  # type: ignore[attr-defined]


def check_report_dict(d: Dict[str, Any]) -> None:
    """Validate a bench JSON document (schema v1); ConfigError names the first problem.

    Consumers (dashboards, CI gates) call this before trusting a file; the tests call it
    on every report the code writes.
    """

    def fail(msg: str) -> None:
        raise ConfigError(f"not a cifrenet-edge bench v{SCHEMA_VERSION} document: {msg}")

    if not isinstance(d, dict):
        fail("top level is not an object")
    if d.get("schema") != SCHEMA:
        fail(f"schema is {d.get('schema')!r}, expected {SCHEMA!r}")
    if d.get("schema_version") != SCHEMA_VERSION:
        fail(f"schema_version {d.get('schema_version')!r}; this reader knows {SCHEMA_VERSION}")
    for key, typ in (
        ("toolkit_version", str),
        ("created", str),
        ("config", dict),
        ("system", dict),
        ("results", list),
        ("ratios", list),
        ("definitions", dict),
        ("paper", dict),
        ("notes", list),
    ):
        if not isinstance(d.get(key), typ):
            fail(f"{key!r} missing or not a {typ.__name__}")
    for i, r in enumerate(d["results"]):
        missing = _RESULT_KEYS - set(r)
        if missing:
            fail(f"results[{i}] lacks {sorted(missing)}")
        if r["status"] not in ("ok", "skipped", "failed"):
            fail(f"results[{i}].status is {r['status']!r}")
        if r["status"] != "ok" and not r["reason"]:
            fail(f"results[{i}] is {r['status']} without a reason")
        if r["status"] == "ok" and r["compute"] is None:
            fail(f"results[{i}] is ok but has no compute latency")
        if not (isinstance(r["resolution"], list) and len(r["resolution"]) == 2):
            fail(f"results[{i}].resolution is not [w, h]")
        for m in ("compute", "end_to_end", "h2d", "d2h", "latency"):
            s = r[m]
            if s is None:
                continue
            if set(s) != _STATS_KEYS:
                fail(f"results[{i}].{m} keys {sorted(s)} != {sorted(_STATS_KEYS)}")
            if not (s["min_ms"] <= s["median_ms"] <= s["p90_ms"] <= s["p99_ms"] <= s["max_ms"]):
                fail(f"results[{i}].{m} percentiles are not ordered")
            if s["count"] < 1:
                fail(f"results[{i}].{m}.count < 1")
    for i, q in enumerate(d["ratios"]):
        for key in ("name", "description", "value", "target", "meets", "resolution"):
            if key not in q:
                fail(f"ratios[{i}] lacks {key!r}")


# --------------------------------------------------------------------------- system


def _read(path: str) -> Optional[str]:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None


def _cmd(args: Sequence[str], timeout: float = 5.0) -> Optional[str]:
    if shutil.which(args[0]) is None:
        return None
    try:
        p = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unreadable ({type(exc).__name__})"
    out = (p.stdout or p.stderr).strip()
    if p.returncode != 0:
        return f"unreadable (exit {p.returncode}: {out.splitlines()[0] if out else ''})"
    return out


def _dist_version(*names: str) -> Optional[str]:
    from importlib import metadata

    for n in names:
        try:
            return metadata.version(n)
        except metadata.PackageNotFoundError:
            continue
    return None


def _torch_threads() -> Optional[int]:
    """PyTorch's intra-op pool size, only if torch is already loaded (never import it here)."""
    import sys

    t = sys.modules.get("torch")
    return int(t.get_num_threads()) if t is not None else None


def system_info() -> Dict[str, Any]:
    """Device, software and clock/power state: what a number needs to be reproduced."""
    cpuinfo = _read("/proc/cpuinfo") or ""
    m = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    governors = sorted(
        {
            g
            for g in (
                _read(str(p))
                for p in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/scaling_governor")
            )
            if g
        }
    )
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo") or "", re.M)
    info = {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "cpu": {
            "model": m.group(1).strip() if m else platform.processor() or platform.machine(),
            "logical_cores": os.cpu_count(),
            "usable_cores": affinity,
            "cgroup_cpu_max": _read("/sys/fs/cgroup/cpu.max"),
            "governor": ",".join(governors) if governors else "not readable (no cpufreq)",
            "load_average_1_5_15": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        },
        "memory_gb": round(int(mem.group(1)) / 1e6, 1) if mem else None,
        "threads_env": {
            k: os.environ[k]
            for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")
            if k in os.environ
        },
        "torch_num_threads": _torch_threads(),
        "versions": {
            "cifrenet_edge": __version__,
            "numpy": np.__version__,
            "opencv": _dist_version(
                "opencv-python-headless", "opencv-python", "opencv-contrib-python"
            ),
            "torch": _dist_version("torch"),
            "onnx": _dist_version("onnx"),
            "onnxruntime": _dist_version("onnxruntime", "onnxruntime-gpu"),
            "openvino": _dist_version("openvino"),
            "tensorrt": _dist_version(
                "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "tensorrt_lean"
            ),
        },
        "gpu": None,
        "jetson": None,
    }
    smi = _cmd(
        [
            "nvidia-smi",
            "--query-gpu=name,driver_version,pstate,clocks.sm,clocks.max.sm,clocks.mem,"
            "power.draw,power.limit,temperature.gpu,persistence_mode",
            "--format=csv,noheader",
        ]
    )
    if smi:
        info["gpu"] = {"nvidia_smi": smi.splitlines()}
    tegra = _read("/etc/nv_tegra_release")
    if tegra:
        info["jetson"] = {
            "model": (_read("/proc/device-tree/model") or "unknown").rstrip("\x00"),
            "l4t": tegra.splitlines()[0],
            "nvpmodel": _cmd(["nvpmodel", "-q"]) or "nvpmodel not found",
            "jetson_clocks": _cmd(["jetson_clocks", "--show"])
            or "jetson_clocks not found (or needs sudo: run 'sudo jetson_clocks --show')",
        }
    return info


# --------------------------------------------------------------------------- availability


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _gpu_reason() -> Optional[str]:
    """None when TensorRT can run here, else why not and what fixes it."""
    if not _has("tensorrt"):
        return (
            "TensorRT is not installed: on a machine with an NVIDIA GPU install it "
            "(JetPack on Jetson, pip install 'cifrenet-edge[tensorrt,cuda]' on a desktop)"
        )
    if shutil.which("nvidia-smi") is None and _read("/etc/nv_tegra_release") is None:
        return "no NVIDIA GPU/driver found (nvidia-smi missing): TensorRT needs an NVIDIA GPU"
    return None


def availability(backend: str, precision: str) -> Optional[str]:
    """None when ``backend`` can run ``precision`` here; else a reason that names the fix."""
    if backend == "torch":
        if not _has("torch"):
            return "PyTorch is not installed (pip install torch)"
        if precision == "int8":
            return (
                "PyTorch eager has no INT8 path in this toolkit: use onnxruntime, openvino "
                "or tensorrt"
            )
        if precision == "fp16":
            import torch

            if not torch.cuda.is_available():
                return (
                    "PyTorch FP16 needs a CUDA GPU (CPU half-precision convs are not a fair "
                    "baseline)"
                )
        return None
    if backend == "onnxruntime":
        if not _has("onnxruntime"):
            return "ONNX Runtime is not installed (pip install onnxruntime)"
        if precision == "fp16":
            return (
                "ONNX Runtime's CPU provider has no FP16 convolution kernels: use "
                "--backend tensorrt on an NVIDIA GPU for FP16"
            )
        return None
    if backend == "openvino":
        if not _has("openvino"):
            return "OpenVINO is not installed (pip install openvino)"
        if precision == "fp16":
            return (
                "OpenVINO's CPU plugin does not run FP16 models in FP16 (it converts them): "
                "use fp32 or int8 here, tensorrt on an NVIDIA GPU for FP16"
            )
        return None
    if backend == "tensorrt":
        return _gpu_reason()
    return f"unknown backend {backend!r}"


def parse_choices(text: Optional[str], allowed: Sequence[str], what: str) -> Optional[List[str]]:
    """'a,b' -> ['a','b'] (None or 'all' -> None = every available); unknown: ConfigError."""
    if text is None:
        return None
    items = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not items or "all" in items:
        return None
    aliases = {"ort": "onnxruntime", "ov": "openvino", "trt": "tensorrt", "pytorch": "torch"}
    items = [aliases.get(t, t) for t in items]
    for t in items:
        if t not in allowed:
            raise ConfigError(
                f"unknown {what} {t!r}: use one or more of {', '.join(allowed)}, or all"
            )
    return list(dict.fromkeys(items))


def parse_resolutions(texts: Optional[Sequence[str]]) -> List[Tuple[int, int]]:
    from .presets import parse_resolution

    out = [parse_resolution(t, max_side=MAX_SIDE) for t in (texts or ["640x360"])]
    return list(dict.fromkeys(out))


# --------------------------------------------------------------------------- model cache


def _trt_target() -> str:
    """The export target matching the installed TensorRT (FACTS.md's version table)."""
    v = _dist_version("tensorrt", "tensorrt-cu12", "tensorrt-cu13") or ""
    try:
        import tensorrt  # type: ignore[import-not-found]

        v = tensorrt.__version__
    except Exception:
        pass
    parts = v.split(".")
    major = int(parts[0]) if parts and parts[0].isdigit() else 0
    minor = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    if major >= 11:
        return "trt11"
    if major == 10:
        return "trt10"
    if major == 8 and minor >= 6:
        return "trt8.6"
    if major == 8 and minor >= 5:
        return "trt8.5"
    return "trt8.2"


def _weights_tag(weights: Optional[str]) -> str:
    if not weights:
        return "init"
    p = Path(weights)
    if not p.is_file():
        raise ModelFileError(f"weights file {weights} does not exist: pass an existing --weights")
    from ._io import sha256_file

    return "w" + sha256_file(p)[:10]


def _manifest_ok(path: Path, precision: str) -> bool:
    """A cached artifact is reused only when complete and made by this toolkit version."""
    if not path.is_file():
        return False
    try:
        from .manifest import read_manifest

        m = read_manifest(path)
    except Exception:
        return False
    return m.get("toolkit_version") == __version__ and m.get("precision") == precision


@dataclass
class Prepared:
    """The files a row runs on, and what was done to get them (for the report)."""

    onnx: Dict[str, Path] = field(default_factory=dict)  # precision -> ONNX
    torch: Optional[Path] = None  # checkpoint for the PyTorch row
    engines: Dict[str, Path] = field(default_factory=dict)  # precision -> TensorRT engine
    actions: List[str] = field(default_factory=list)
    failures: Dict[str, str] = field(default_factory=dict)  # "onnx:int8" -> reason


def prepare_models(
    preset: str,
    wh: Tuple[int, int],
    batch: int,
    precisions: Sequence[str],
    cache: Path,
    weights: Optional[str] = None,
    engines: Sequence[str] = (),
    target: str = "onnxruntime",
    log: Callable[[str], None] = lambda s: None,
    with_torch: bool = True,
) -> Prepared:
    """Export (and quantize, and build) into ``cache`` what the rows need, reusing what is there.

    Keys: preset, resolution, batch, precision, export target, weights hash, toolkit version,
    so a changed toolkit or checkpoint never reuses a stale file. INT8 calibrates on
    deterministic synthetic street scenes written into the cache (never random noise);
    the manifest's calibration fingerprint records them.
    """
    out = Prepared()
    w, h = wh
    stem = f"{preset}_{w}x{h}_b{batch}_{target}_{_weights_tag(weights)}_v{__version__}"
    cache.mkdir(parents=True, exist_ok=True)
    need = set(precisions) | ({"fp32"} if precisions else set())
    fp32 = cache / f"{stem}_fp32.onnx"
    if not _manifest_ok(fp32, "fp32"):
        from .export import export_onnx

        t0 = time.perf_counter()
        log(f"exporting {fp32.name} ...")
        export_onnx(
            preset=preset,
            weights=weights,
            res=wh,
            dynamic=False,
            target=target,
            output=str(fp32),
            batch=batch,
            quiet=True,
        )
        out.actions.append(f"exported {fp32.name} in {time.perf_counter() - t0:.1f} s")
    out.onnx["fp32"] = fp32
    if with_torch:
        out.torch = torch_checkpoint(preset, weights, cache)
    if "int8" in need:
        int8 = cache / f"{stem}_int8.onnx"
        if not _manifest_ok(int8, "int8"):
            try:
                t0 = time.perf_counter()
                log(f"quantizing {int8.name} on {CALIB_COUNT} synthetic scenes ...")
                _quantize(fp32, int8, wh, preset, cache)
                out.actions.append(
                    f"quantized {int8.name} ({CALIB_COUNT} synthetic calibration scenes) in "
                    f"{time.perf_counter() - t0:.1f} s"
                )
            except CifreNetError as exc:
                out.failures["onnx:int8"] = f"INT8 quantization failed: {exc}"
        if int8.is_file():
            out.onnx["int8"] = int8
    for p in engines:
        src = out.onnx.get("int8" if p == "int8" else "fp32")
        if src is None:
            out.failures[f"engine:{p}"] = out.failures.get("onnx:int8", "no ONNX to build from")
            continue
        eng = cache / f"{stem}_{p}.engine"
        if not _manifest_ok(eng, p):
            try:
                from .trt.build import build_engine

                t0 = time.perf_counter()
                log(f"building {eng.name} ...")
                build_engine(str(src), precision=p, output=str(eng))
                out.actions.append(f"built {eng.name} in {time.perf_counter() - t0:.1f} s")
            except CifreNetError as exc:
                out.failures[f"engine:{p}"] = f"engine build failed: {exc}"
                continue
        out.engines[p] = eng
    return out


def calibration_dir(cache: Path, wh: Tuple[int, int]) -> Path:
    return cache / f"calib_synthetic_{wh[0]}x{wh[1]}_{CALIB_COUNT}"


def _quantize(fp32: Path, int8: Path, wh: Tuple[int, int], preset: str, cache: Path) -> None:
    from .calib import load_calibration
    from .data.synthetic import write_synthetic_dataset
    from .presets import get_preset
    from .quantize import quantize_onnx

    meta = get_preset(preset).metadata()
    cdir = calibration_dir(cache, wh)
    images = cdir / "images" / "train"
    if not (images.is_dir() and len(list(images.glob("*.png"))) >= CALIB_COUNT):
        write_synthetic_dataset(cdir, CALIB_COUNT, wh, seed=0, val_fraction=0.0, preset=preset)
    # A speed benchmark needs representative activations, not a deployment-grade range
    # estimate: the "use a few hundred frames" advice and ORT's progress prints are noise here.
    calib_log = logging.getLogger("cifrenet_edge.calib")
    level = calib_log.level
    calib_log.setLevel(logging.ERROR)
    try:
        calib = load_calibration(
            str(images), wh, count=CALIB_COUNT, mean_bgr=meta["mean_bgr"], scale=meta["scale"]
        )
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_onnx(str(fp32), calib=calib, output=str(int8), quiet=True)
    finally:
        calib_log.setLevel(level)


def torch_checkpoint(preset: str, weights: Optional[str], cache: Path) -> Path:
    """The PyTorch row's model: the given checkpoint, else the same seeded init the export uses."""
    if weights:
        return Path(weights).expanduser()
    path = cache / f"{preset}_init-seed0_v{__version__}.pth"
    if not path.is_file():
        import torch

        from .weights import build_model, save_checkpoint

        torch.manual_seed(0)  # export.py seeds the same way: both rows run the same weights
        model, _ = build_model(preset)
        save_checkpoint(model, path, {"trained": False, "init_seed": 0})
    return path


# --------------------------------------------------------------------------- trtexec


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


# --------------------------------------------------------------------------- running


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def bench_frame(path: Optional[str] = None) -> np.ndarray:
    """The end-to-end input: a given image, else a deterministic synthetic 1280x720 street scene."""
    if path:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ConfigError(f"cannot read frame image {path}: pass a JPEG/PNG file to --frame")
        return img
    from .data.synthetic import make_scene

    return make_scene(7, FRAME_WH)[0]


@dataclass
class _Row:
    result: BenchResult
    segmenter: Any = None
    compute: Optional[Series] = None
    e2e: Optional[Series] = None


def _open_segmenter(
    path: Path, backend: str, precision: str, threads: Optional[int], wh: Tuple[int, int]
) -> Any:
    from .runtime import Segmenter

    device = "cpu"
    if backend == "tensorrt":
        device = "cuda"
    elif backend == "torch":  # the paper's own setting is PyTorch on the GPU
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return Segmenter.open(
        str(path),
        device=device,
        backend=backend,
        precision=precision,
        warmup=0,
        threads=threads,
        resolution=wh,
    )


def _bare_ort_session(path: Path, threads: Optional[int]) -> Any:
    """A bare ONNX Runtime session: library defaults, the issue's reference for overhead."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _tensor(batch: int, wh: Tuple[int, int], frame: np.ndarray, preset: str) -> np.ndarray:
    """The compute input: the real frame preprocessed (not zeros: INT8 kernels see real data)."""
    from .presets import get_preset
    from .runtime.preprocess import preprocess

    meta = get_preset(preset).metadata()
    x = preprocess(frame, wh, meta["mean_bgr"], meta["scale"])
    return np.ascontiguousarray(np.repeat(x, batch, axis=0))


def _gpu_series(
    row: _Row, iters: int, warmup: int, cuda_graph: bool, x: Optional[np.ndarray] = None
) -> None:
    """TensorRT rows: H2D / GPU Compute Time / D2H from CUDA events (the TRT backend's loop)."""
    r = row.result
    be = row.segmenter.backend
    times = be.benchmark_gpu(iters=iters, warmup=warmup, cuda_graph=cuda_graph, x=x)
    # Throughput as DEFINITIONS["throughput"] says: queries x batch / host wall clock of the
    # timed loop (trtexec's Total Host Walltime), not 1000 x batch / mean GPU compute time.
    wall = times.get("walltime_s") or None
    r.compute = summarize(times["compute"], r.batch, wall)
    r.h2d = summarize(times["h2d"], r.batch, wall) if times.get("h2d") else None
    r.d2h = summarize(times["d2h"], r.batch, wall) if times.get("d2h") else None
    if times.get("latency"):
        r.latency = summarize(times["latency"], r.batch, wall)
    elif times.get("h2d") and times.get("d2h"):
        total = np.asarray(times["h2d"]) + np.asarray(times["compute"]) + np.asarray(times["d2h"])
        r.latency = summarize(total.tolist(), r.batch, wall)
    r.compute_timer = "CUDA events (TensorRT backend benchmark_gpu), trtexec's GPU Compute Time"


def _trt_major() -> int:
    try:
        import tensorrt  # type: ignore[import-not-found]

        return int(str(tensorrt.__version__).split(".")[0])
    except Exception:
        return 0


def run_bench(
    resolutions: Optional[Sequence[Tuple[int, int]]] = None,
    model: Optional[str] = None,
    preset: str = "cityscapes",
    weights: Optional[str] = None,
    backends: Optional[Sequence[str]] = None,
    precisions: Optional[Sequence[str]] = None,
    batch: int = 1,
    warmup: int = 5,
    iters: Optional[int] = None,
    seconds: Optional[float] = 2.0,
    threads: Optional[int] = None,
    cache: Optional[str] = None,
    frame: Optional[str] = None,
    end_to_end: bool = True,
    bare_onnxruntime: bool = True,
    trtexec: bool = True,
    estimate_devices: Optional[str] = None,
    log: Callable[[str], None] = lambda s: None,
) -> BenchReport:
    """Benchmark every requested (backend, precision) at every resolution; see module doc.

    ``backends``/``precisions`` None = everything available here. A combination that cannot
    run becomes a ``skipped`` row with the reason and the fix, and the rest carries on; if
    nothing at all can run, ``BackendUnavailableError``.
    """
    t_start = time.perf_counter()
    if batch < 1 or batch > MAX_BATCH:
        raise ConfigError(f"--batch {batch} is out of range: use 1 to {MAX_BATCH}")
    if warmup < 0:
        raise ConfigError(f"--warmup {warmup} is negative: use 0 or more warm-up queries")
    if iters is not None and iters < 1:
        raise ConfigError(f"--iters {iters} must be at least 1")
    if iters is None and (seconds is None or seconds <= 0):
        raise ConfigError("--seconds must be positive (or give --iters)")
    if threads is not None and threads < 1:
        raise ConfigError(f"--threads {threads} must be at least 1")
    from .presets import get_preset

    preset = get_preset(preset).name
    explicit_b = backends is not None
    explicit_p = precisions is not None
    model_path = Path(model).expanduser() if model else None
    model_manifest: Optional[Dict[str, Any]] = None
    if model_path is not None:
        if model_path.is_dir():
            raise ModelFileError(f"--model {model} is a folder: give the model file inside it")
        if not model_path.is_file():
            raise ModelFileError(
                f"model file {model} does not exist: pass an existing .onnx/.engine, or "
                "--preset to export one"
            )
        from .runtime.segmenter import open_manifest

        model_manifest = open_manifest(model_path)
        preset = str(model_manifest.get("preset", preset))
        if not resolutions:
            from .manifest import model_resolution

            fixed = model_resolution(model_manifest)
            resolutions = [tuple(fixed)] if fixed else None
    from .presets import format_resolution, parse_resolution

    resolutions = [
        parse_resolution(format_resolution(wh), max_side=MAX_SIDE)
        for wh in (resolutions or [(640, 360)])
    ]
    b_list = list(backends) if explicit_b else list(BACKENDS)
    p_list = list(precisions) if explicit_p else list(PRECISIONS)
    notes: List[str] = []
    results: List[BenchResult] = []
    plan: List[Tuple[str, str]] = []
    skipped_notes: Dict[str, List[str]] = {}
    for b in b_list:
        for p in p_list:
            why = availability(b, p)
            if why is None and model_manifest is not None:
                why = _model_fits(model_path, model_manifest, b, p)
            if why is None:
                plan.append((b, p))
            elif explicit_b and explicit_p:  # asked for by name: a row that says why
                for wh in resolutions:
                    results.append(BenchResult(b, p, wh, batch, status="skipped", reason=why))
            else:  # implied by "all": one note per reason
                skipped_notes.setdefault(why, []).append(f"{b} {p}")
    for why, combos in skipped_notes.items():
        notes.append(f"not run: {', '.join(combos)}: {why}")
    if not plan:
        reasons = "; ".join(
            sorted(
                {f"{r.backend} {r.precision}: {r.reason}" for r in results}
                | {f"{', '.join(c)}: {w}" for w, c in skipped_notes.items()}
            )
        )
        raise BackendUnavailableError(f"nothing to benchmark here: {reasons}")
    frame_img = bench_frame(frame)
    cache_dir = Path(cache).expanduser() if cache else DEFAULT_CACHE_DIR
    trt_precisions = [p for (b, p) in plan if b == "tensorrt"]
    target = _trt_target() if trt_precisions else "onnxruntime"
    estimates = None
    if estimate_devices:
        from .estimate import estimate, estimate_as_dict

        estimates = []
        for wh in resolutions:
            estimates += [
                estimate_as_dict(e) for e in estimate(estimate_devices, wh, preset, batch)
            ]

    for wh in resolutions:
        if model_path is not None:
            prepared = _prepared_from_model(model_path, model_manifest, wh, batch)
        else:
            prepared = prepare_models(
                preset,
                wh,
                batch,
                sorted({p for _, p in plan}),
                cache_dir,
                weights,
                trt_precisions,
                target,
                log,
                with_torch=any(b == "torch" for b, _ in plan),
            )
            notes.extend(f"{wh[0]}x{wh[1]}: {a}" for a in prepared.actions)
            if "int8" in prepared.onnx:
                notes.append(
                    f"{wh[0]}x{wh[1]}: INT8 = Q/DQ model calibrated on {CALIB_COUNT} "
                    f"deterministic synthetic street scenes ({calibration_dir(cache_dir, wh)}): "
                    "representative for speed; INT8 accuracy is gated by export/evaluate"
                )
        rows = _open_rows(plan, prepared, wh, batch, threads, preset, log)
        try:
            results.extend(r.result for r in rows if r.result.status != "ok")
            live = [r for r in rows if r.result.status == "ok"]
            x = _tensor(batch, wh, frame_img, preset)
            frames = [frame_img] * batch
            series: List[Series] = []
            for r in live:
                be = r.segmenter.backend
                if r.result.backend != "tensorrt":
                    r.compute = Series(f"{r.result.label} compute", lambda be=be, x=x: be.infer(x))
                    series.append(r.compute)
                if end_to_end:
                    seg = r.segmenter
                    fn = (
                        (lambda seg=seg, f=frames: seg.predict(f[0]))
                        if batch == 1
                        else (lambda seg=seg, f=frames: seg.predict_batch(f))
                    )
                    r.e2e = Series(f"{r.result.label} end-to-end", fn)
                    series.append(r.e2e)
            bare = None
            ort_fp32 = prepared.onnx.get("fp32")
            if (
                bare_onnxruntime
                and ort_fp32 is not None
                and any(
                    r.result.backend == "onnxruntime" and r.result.precision == "fp32" for r in live
                )
            ):
                sess = _bare_ort_session(ort_fp32, threads)
                name = sess.get_inputs()[0].name
                bare = _Row(
                    BenchResult(
                        "onnxruntime-bare",
                        "fp32",
                        wh,
                        batch,
                        kind="baseline",
                        model=str(ort_fp32),
                        device="cpu",
                        threads=threads,
                        compute_timer="host wall clock around "
                        "onnxruntime.InferenceSession.run (library defaults)",
                    )
                )
                bare.compute = Series(
                    "bare onnxruntime compute",
                    lambda sess=sess, name=name, x=x: sess.run(None, {name: x}),
                )
                series.append(bare.compute)
            log(f"{wh[0]}x{wh[1]}: timing {len(series)} series interleaved ...")
            run_interleaved(series, warmup=warmup, iters=iters, seconds=seconds)
            for r in [*live, *([bare] if bare else [])]:
                _finish_row(r, batch)
            # GPU rows: CUDA-event timing in the backend's own loop, with and without graphs.
            for r in live:
                if r.result.backend == "tensorrt":
                    results.extend(_tensorrt_rows(r, iters, seconds, warmup, trtexec, x))
                else:
                    results.append(r.result)
            if bare is not None:
                results.append(bare.result)
        finally:  # a failure mid-run must not leak sessions, contexts or device memory
            for r in rows:
                if r.segmenter is not None:
                    r.segmenter.close()
    report = BenchReport(
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        config={
            "preset": preset,
            "model": str(model_path) if model_path else None,
            "weights": weights,
            "trained_weights": bool(weights)
            or bool((model_manifest or {}).get("weights", {}).get("trained")),
            "resolutions": [list(wh) for wh in resolutions],
            "backends": b_list,
            "precisions": p_list,
            "batch": batch,
            "warmup": warmup,
            "iters": iters,
            "seconds": seconds if iters is None else None,
            "min_iters": 10,
            "threads": threads,
            "end_to_end_frame": (
                str(frame)
                if frame
                else f"synthetic street scene {FRAME_WH[0]}x{FRAME_WH[1]} (seed 7)"
            ),
            "cache": str(cache_dir) if model_path is None else None,
            "export_target": target if model_path is None else None,
        },
        system=system_info(),
        results=results,
        ratios=compute_ratios(results),
        notes=notes,
        paper=_paper_block(resolutions),
        estimate=estimates,
    )
    busy = _busy_warning(report.system)
    if busy:
        report.notes.insert(0, busy)
    report.elapsed_s = round(time.perf_counter() - t_start, 2)
    return report


def _busy_warning(system: Dict[str, Any]) -> Optional[str]:
    """A loud note when other work competed for the cores: such numbers are not a record."""
    cpu = system.get("cpu", {})
    la, cores = cpu.get("load_average_1_5_15"), cpu.get("usable_cores") or 1
    if la and la[0] > cores:
        return (
            f"WARNING: load average {la[0]:.1f} exceeds the {cores} usable cores: other work "
            "competed for the CPU, so these numbers are exploratory; record on a quiet machine"
        )
    return None


def _model_fits(
    path: Path, manifest: Dict[str, Any], backend: str, precision: str
) -> Optional[str]:
    """With --model the file fixes precision and what can open it."""
    kind = manifest.get("kind")
    mp = manifest.get("precision", "fp32")
    # PyTorch runs an FP32 checkpoint in FP16 itself (on CUDA; availability() says so).
    torch_fp16 = kind == "torch" and backend == "torch" and precision == "fp16"
    if precision != mp and not torch_fp16:
        return (
            f"{path.name} holds {mp.upper()} weights: export a {precision.upper()} model or "
            "leave --precision out"
        )
    if kind == "engine" and backend != "tensorrt":
        return f"{path.name} is a TensorRT engine: only --backend tensorrt opens it"
    if kind == "onnx" and backend == "tensorrt":
        return (
            f"{path.name} is ONNX: build an engine first (cifrenet-edge export --format engine) "
            "or use --preset to let bench build it"
        )
    if kind == "onnx" and backend == "torch":
        w = (manifest.get("weights") or {}).get("path")
        if not (w and Path(w).is_file()):
            return (
                f"PyTorch runs checkpoints, and {path.name}'s manifest names none that exists: "
                "pass the .pth with --model, or use --preset"
            )
    if kind == "torch" and backend != "torch":
        return f"{path.name} is a PyTorch checkpoint: export it (or use --preset) for {backend}"
    return None


def _prepared_from_model(
    path: Path, manifest: Dict[str, Any], wh: Tuple[int, int], batch: int
) -> Prepared:
    from .manifest import model_resolution

    res = model_resolution(manifest)
    if res is not None and tuple(res) != tuple(wh) and not manifest.get("dynamic"):
        raise ConfigError(
            f"{path.name} is fixed at {res[0]}x{res[1]}: pass --res {res[0]}x{res[1]} or use "
            "--preset to export one per resolution"
        )
    mb = manifest.get("batch")
    if mb and int(mb) != batch and not manifest.get("dynamic"):
        raise ConfigError(f"{path.name} has a fixed batch of {mb}: pass --batch {mb}")
    p = Prepared()
    precision = str(manifest.get("precision", "fp32"))
    kind = manifest.get("kind")
    if kind == "engine":
        p.engines[precision] = path
    elif kind == "torch":
        p.torch = path
    else:
        p.onnx[precision] = path
        w = (manifest.get("weights") or {}).get("path")
        if w and Path(w).is_file():
            p.torch = Path(w)
    return p


def _open_rows(
    plan: Sequence[Tuple[str, str]],
    prepared: Prepared,
    wh: Tuple[int, int],
    batch: int,
    threads: Optional[int],
    preset: str,
    log: Callable[[str], None],
) -> List[_Row]:
    rows = []
    for b, p in plan:
        r = BenchResult(b, p, wh, batch, threads=threads)
        if b == "tensorrt":
            path = prepared.engines.get(p)
            missing = prepared.failures.get(f"engine:{p}")
        elif b == "torch":
            path = prepared.torch
            missing = "no PyTorch checkpoint: pass --weights or use --preset"
        else:
            path = prepared.onnx.get(p)
            missing = prepared.failures.get(f"onnx:{p}")
        if path is None:
            r.status, r.reason = "failed", missing or f"no {p} model for {b}"
            rows.append(_Row(r))
            continue
        r.model = str(path)
        r.model_sha256 = _sha256(path)
        try:
            log(f"opening {b} {p} ...")
            seg = _open_segmenter(path, b, p, threads, wh)
        except CifreNetError as exc:
            r.status, r.reason = "skipped", str(exc)
            rows.append(_Row(r))
            continue
        except Exception as exc:  # a library's own error: this row fails, the rest runs
            r.status, r.reason = "failed", f"could not open: {_one_line(exc)}"
            rows.append(_Row(r))
            continue
        r.device = str(getattr(seg.backend, "device", "cpu"))
        if b != "tensorrt" and r.device.startswith("cuda"):
            r.compute_timer += " (includes H2D/D2H copies and the stream sync)"
        r.precision = str(getattr(seg.backend, "precision", p))
        rows.append(_Row(r, seg))
    return rows


def _finish_row(row: _Row, batch: int) -> None:
    r = row.result
    for key, s in (("compute", row.compute), ("end_to_end", row.e2e)):
        if s is None:
            continue
        r.warmup[key] = {
            "iters": len(s.warmup_ms),
            "first_ms": s.warmup_ms[0] if s.warmup_ms else None,
            "ms": [round(v, 3) for v in s.warmup_ms],
        }
        if s.error:
            r.status, r.reason = "failed", f"{key}: {s.error}"
            continue
        if s.samples_ms:
            setattr(r, key, summarize(s.samples_ms, batch))


def _tensorrt_rows(
    row: _Row,
    iters: Optional[int],
    seconds: Optional[float],
    warmup: int,
    use_trtexec: bool,
    x: Optional[np.ndarray] = None,
) -> List[BenchResult]:
    """One row per CUDA-graph mode (TRT 10+: both), each cross-checked with trtexec."""
    base = row.result
    be = row.segmenter.backend
    if not hasattr(be, "benchmark_gpu"):
        base.status, base.reason = "failed", "the TensorRT backend has no benchmark_gpu()"
        return [base]
    n = iters
    if n is None:  # size the loop from a quick probe so it lasts about ``seconds``
        try:
            probe = be.benchmark_gpu(iters=5, warmup=max(warmup, 1), cuda_graph=False, x=x)
        except Exception as exc:
            base.status, base.reason = "failed", f"benchmark_gpu: {_one_line(exc)}"
            return [base]
        med = max(float(np.median(probe["compute"])), 1e-3)
        n = min(100000, max(10, int((seconds or 2.0) * 1e3 / med)))
    modes = [False, True] if _trt_major() >= 10 else [False]
    out = []
    for graph in modes:
        r = dataclasses.replace(base, compute=None, cuda_graph=graph, warmup=dict(base.warmup))
        try:
            _gpu_series(_Row(r, row.segmenter), n, warmup, graph, x)
        except BackendUnavailableError as exc:  # e.g. CUDA graphs without cuda-python
            r.status, r.reason = "skipped", str(exc)
        except CifreNetError as exc:
            r.status, r.reason = "failed", str(exc)
        except Exception as exc:  # a CUDA failure fails this row, not the whole run
            r.status, r.reason = "failed", _one_line(exc)
        if use_trtexec and r.model and r.status == "ok":
            eng = (getattr(be, "manifest", None) or {}).get("engine") or {}
            shape = x.shape if x is not None else getattr(be, "input_shape", None)
            r.trtexec = run_trtexec(
                Path(r.model),
                n,
                cuda_graph=graph,
                shapes=(
                    {be.in_name: tuple(shape)}
                    if getattr(be, "dynamic", False) and shape is not None
                    else None
                ),
                dla_core=eng.get("dla_core"),
            )
        out.append(r)
    return out


# --------------------------------------------------------------------------- ratios


def _find(
    results: Sequence[BenchResult], backend: str, precision: str, wh
) -> Optional[BenchResult]:
    for r in results:
        if (r.backend, r.precision, tuple(r.resolution)) == (backend, precision, tuple(wh)) and (
            r.status == "ok" and r.cuda_graph in (None, True)
        ):
            return r
    return None


def compute_ratios(results: Sequence[BenchResult]) -> List[Ratio]:
    """The issue's targets, each from two rows of this run (median latencies)."""
    out: List[Ratio] = []
    for wh in list(dict.fromkeys(tuple(r.resolution) for r in results)):
        ort = _find(results, "onnxruntime", "fp32", wh)
        bare = _find(results, "onnxruntime-bare", "fp32", wh)
        torch_r = _find(results, "torch", "fp32", wh)
        if ort and bare and ort.compute and bare.compute:
            v = ort.compute.median_ms / bare.compute.median_ms
            out.append(
                Ratio(
                    "ort_overhead",
                    "toolkit ONNX Runtime FP32 compute / bare InferenceSession.run (median)",
                    v,
                    "<= 1.10",
                    v <= 1.10,
                    wh,
                )
            )
        if ort and ort.compute and ort.end_to_end:
            v = ort.end_to_end.median_ms / ort.compute.median_ms
            tgt = wh == (640, 360)
            out.append(
                Ratio(
                    "e2e_over_compute",
                    "ONNX Runtime FP32 end-to-end / compute (median)",
                    v,
                    "<= 1.15" if tgt else None,
                    (v <= 1.15) if tgt else None,
                    wh,
                )
            )
        if ort and torch_r and ort.compute and torch_r.compute:
            v = torch_r.compute.median_ms / ort.compute.median_ms
            out.append(
                Ratio(
                    "ort_vs_torch",
                    "ONNX Runtime FP32 speed-up over PyTorch eager FP32 (compute median)",
                    v,
                    ">= 2.0",
                    v >= 2.0,
                    wh,
                )
            )
        for b in ("onnxruntime", "openvino", "tensorrt"):
            f, q = _find(results, b, "fp32", wh), _find(results, b, "int8", wh)
            if f and q and f.compute and q.compute:
                v = f.compute.median_ms / q.compute.median_ms
                gpu = b == "tensorrt"
                out.append(
                    Ratio(
                        f"int8_speedup_{b}",
                        f"{b} INT8 speed-up over FP32 (compute median)",
                        v,
                        ">= 2.0" if gpu else None,
                        (v >= 2.0) if gpu else None,
                        wh,
                    )
                )
        t = _find(results, "tensorrt", "fp32", wh)
        if t and t.compute and wh == (640, 360):
            from .paper import PAPER_FPS

            v = t.compute.fps / PAPER_FPS[(640, 360)]
            out.append(
                Ratio(
                    "trt_fp32_vs_paper",
                    "TensorRT FP32 FPS (GPU Compute Time) / paper "
                    "62.5 FPS (target on a GTX 1080 Ti)",
                    v,
                    ">= 5.0",
                    v >= 5.0,
                    wh,
                )
            )
    return out


# --------------------------------------------------------------------------- output


def default_output_stem(report: BenchReport, results_dir: Path = DEFAULT_RESULTS_DIR) -> Path:
    """``benchmarks/results/bench_<host>_<res>_<UTC time>``: never overwrites an earlier run."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", report.system.get("hostname") or "host")[:40]
    res = "-".join(f"{w}x{h}" for w, h in report.config["resolutions"])
    stamp = report.created.replace(":", "").replace("-", "")
    return results_dir / f"bench_{host}_{res}_{stamp}"


def write_report_json(report: BenchReport, path: Path) -> Path:
    from ._io import write_json_atomic

    d = report_to_dict(report)
    check_report_dict(d)
    return write_json_atomic(path, d)


def _fmt(v: Optional[float], spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def _device_name(report: BenchReport) -> str:
    s = report.system
    dev = s["cpu"]["model"]
    if s.get("gpu"):
        dev = f"{s['gpu']['nvidia_smi'][0].split(',')[0]} / {dev}"
    elif s.get("jetson"):
        dev = s["jetson"].get("model") or dev
    return dev


def render_report(report: BenchReport, console: Any) -> None:
    """Rich tables: the paper's row beside the measured ones, ratios, definitions, machine."""
    from rich.markup import escape
    from rich.table import Table

    sysinfo = report.system
    dev = _device_name(report)
    for wh in [tuple(r) for r in report.config["resolutions"]]:
        rows = [r for r in report.results if tuple(r.resolution) == wh]
        gpu = any(r.h2d is not None for r in rows)
        t = Table(
            title=f"CIFReNet {wh[0]}x{wh[1]}, batch {report.config['batch']}, on {dev}: "
            "compute latency (ms per query), FPS, throughput, then end-to-end (e2e)",
            title_justify="left",
        )
        # Compute-latency columns first, then end-to-end (e2e); short headers so the table
        # fits a terminal, the definitions are printed below it.
        cols = ["backend", "precision", "median", "p90", "p99", "max", "mean", "FPS", "img/s"]
        if gpu:
            cols += ["H2D", "D2H", "trtexec GPU compute"]
        cols += ["e2e median", "e2e p99", "e2e FPS", "warm-up (n, first)"]
        for c in cols:
            t.add_column(c, justify="left" if c in ("backend", "precision") else "right")
        paper_fps = report.paper["fps"].get(f"{wh[0]}x{wh[1]}")
        pad = [""] * (len(cols) - 3)
        t.add_row(
            "paper (1080 Ti, PyTorch)",
            "fp32",
            *([""] * 5),
            f"{paper_fps:.1f}" if paper_fps else "not published",
            *pad[6:],
            style="italic",
        )
        for r in rows:
            if r.status != "ok":
                t.add_row(
                    r.backend,
                    r.precision,
                    f"[yellow]{r.status}[/yellow]: {escape(r.reason)}",
                    *([""] * (len(cols) - 3)),
                )
                continue
            c, e = r.compute, r.end_to_end
            w = r.warmup.get("compute") or r.warmup.get("end_to_end") or {}
            cells = [
                r.label.split(" ", 1)[0].replace("-bare", " (bare)"),
                r.label.split(" ", 1)[1].replace("onnxruntime-bare", ""),
                _fmt(c.median_ms if c else None),
                _fmt(c.p90_ms if c else None),
                _fmt(c.p99_ms if c else None),
                _fmt(c.max_ms if c else None),
                _fmt(c.mean_ms if c else None),
                _fmt(c.fps if c else None, ".1f"),
                _fmt(c.throughput if c else None, ".1f"),
            ]
            if gpu:
                tx = (r.trtexec or {}).get("gpu_compute_time", {}).get("median")
                cells += [
                    _fmt(r.h2d.median_ms if r.h2d else None, ".3f"),
                    _fmt(r.d2h.median_ms if r.d2h else None, ".3f"),
                    _fmt(tx, ".3f"),
                ]
            cells += [
                _fmt(e.median_ms if e else None),
                _fmt(e.p99_ms if e else None),
                _fmt(e.fps if e else None, ".1f"),
                f"{w.get('iters', 0)}, {_fmt(w.get('first_ms'), '.1f')}" if w else "-",
            ]
            t.add_row(*cells)
        console.print(t)
    if report.ratios:
        t = Table(title="Target ratios (medians, same run, interleaved)", title_justify="left")
        for c in ("ratio", "resolution", "value", "target", "result"):
            t.add_column(c, justify="left" if c in ("ratio", "target", "result") else "right")
        for q in report.ratios:
            verdict = (
                ("[green]meets[/green]" if q.meets else "[red]misses[/red]")
                if (q.meets is not None)
                else "reported (no target here)"
            )
            t.add_row(
                q.description,
                f"{q.resolution[0]}x{q.resolution[1]}",
                _fmt(q.value, ".2f"),
                q.target or "-",
                verdict,
            )
        console.print(t)
    if report.estimate:
        from .estimate import DeviceEstimate, PrecisionBound, render_estimates

        ests = []
        for e in report.estimate:
            e = dict(e)
            e["bounds"] = [PrecisionBound(**b) for b in e["bounds"]]
            e["resolution"] = tuple(e["resolution"])
            ests.append(DeviceEstimate(**e))
        render_estimates(ests, console)
        for e in ests:
            if e.device != "cpu":
                continue
            bounds = {b.precision: b.bound_ms for b in e.bounds if b.available}
            parts = [
                f"{r.label} {r.compute.median_ms / bounds[r.precision]:.1f}x"
                for r in report.results
                if r.status == "ok"
                and r.compute
                and r.precision in bounds
                and tuple(r.resolution) == e.resolution
                and r.device in (None, "cpu")
            ]
            if parts:
                console.print(
                    f"Measured compute median / local-CPU bound at {e.resolution[0]}x"
                    f"{e.resolution[1]} (1.0x would be the physical limit): " + ", ".join(parts)
                )
    console.print("[bold]Definitions[/bold] (trtexec's words):")
    for k in (
        "compute",
        "end_to_end",
        "throughput",
        "fps",
        "warmup",
        "percentiles",
        "interleaving",
    ):
        console.print(f"  {report.definitions[k]}")
    if any(r.h2d is not None for r in report.results):
        for k in ("h2d", "d2h", "latency"):
            console.print(f"  {report.definitions[k]}")
    s = sysinfo
    v = ", ".join(f"{k} {val}" for k, val in s["versions"].items() if val)
    console.print(
        "[bold]Machine[/bold]: "
        + escape(
            f"{s['cpu']['model']}, {s['cpu']['usable_cores']} usable cores, "
            f"governor {s['cpu']['governor']}, load {_load(s)}; threads: "
            f"{report.config['threads'] or 'library default'}"
        )
    )
    if s.get("gpu"):
        console.print("  GPU (nvidia-smi): " + escape("; ".join(s["gpu"]["nvidia_smi"])))
    if s.get("jetson"):
        j = s["jetson"]
        console.print(
            "  "
            + escape(
                f"Jetson {j['l4t']}; nvpmodel: {j['nvpmodel']}; jetson_clocks: {j['jetson_clocks']}"
            )
        )
    console.print("  Software: " + escape(v))
    if not report.config.get("trained_weights"):
        console.print("  Weights: untrained (speed does not depend on them; accuracy does).")
    for n in report.notes:
        style = "bold yellow" if n.startswith("WARNING") else ""
        console.print(f"  {escape(n)}", style=style)
    if report.elapsed_s is not None:
        console.print(f"  Whole run (exports included): {report.elapsed_s:.1f} s")


def _load(s: Dict[str, Any]) -> str:
    la = s["cpu"].get("load_average_1_5_15")
    return "n/a" if not la else "/".join(f"{x:.1f}" for x in la)


def plot_report(report: BenchReport, path: Path) -> Path:
    """PNG bar chart: compute and end-to-end FPS per row, the paper's FPS as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._io import atomic_path

    res = [tuple(r) for r in report.config["resolutions"]]
    fig, axes = plt.subplots(len(res), 1, figsize=(10, 3.6 * len(res)), squeeze=False)
    for ax, wh in zip(axes[:, 0], res):
        rows = [r for r in report.results if tuple(r.resolution) == wh and r.status == "ok"]
        labels = [r.label.replace("onnxruntime-bare", "ort-bare") for r in rows]
        xs = np.arange(len(rows))
        comp = [r.compute.fps if r.compute else 0.0 for r in rows]
        e2e = [r.end_to_end.fps if r.end_to_end else 0.0 for r in rows]
        ax.bar(xs - 0.2, comp, 0.4, label="compute FPS (model alone)")
        ax.bar(xs + 0.2, e2e, 0.4, label="end-to-end FPS (frame in, class map out)")
        for x, v in zip(xs, comp):
            if v:
                ax.text(x - 0.2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
        for x, v in zip(xs, e2e):
            if v:
                ax.text(x + 0.2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=7)
        pf = report.paper["fps"].get(f"{wh[0]}x{wh[1]}")
        if pf:
            ax.axhline(
                pf,
                color="crimson",
                linestyle="--",
                label=f"paper {pf:g} FPS ({report.paper['device']})",
            )
        ax.set_xticks(xs)
        ax.set_xticklabels(labels, rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("frames per second (batch-normalised)")
        la = report.system["cpu"].get("load_average_1_5_15") or [float("nan")]
        ax.set_title(
            f"CIFReNet {wh[0]}x{wh[1]}, batch {report.config['batch']} on {_device_name(report)}"
            f" ({report.created}, load {la[0]:.1f})",
            fontsize=9,
        )
        ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png", dpi=110)
    plt.close(fig)
    return path
