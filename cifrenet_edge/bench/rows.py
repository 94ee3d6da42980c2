"""One row's life: open the model in its backend, time it, fill its result."""

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import BackendUnavailableError, CifreNetError
from .models import Prepared
from .report import BenchResult
from .stats import Series, _one_line, summarize
from .trtexec import run_trtexec


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _Row:
    result: BenchResult
    segmenter: Any = None
    compute: Optional[Series] = None
    e2e: Optional[Series] = None


def _open_segmenter(
    path: Path, backend: str, precision: str, threads: Optional[int], wh: Tuple[int, int]
) -> Any:
    from ..runtime import Segmenter

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
    from ..preprocess import preprocess
    from ..presets import get_preset

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
    """One row per CUDA-graph mode (TRT 8.5+: both), each cross-checked with trtexec."""
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
    # CUDA graphs from 8.5 (execute_async_v3 captured, as trtexec 8.5.2/8.6.1 do): the
    # backend's own capabilities, so a 1080 Ti on 8.6 gets its graph row too.
    caps = getattr(be, "caps", None)
    graphs = bool(caps.cuda_graphs) if caps is not None else _trt_major() >= 10
    modes = [False, True] if graphs else [False]
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
            built = getattr(be, "manifest", None)
            eng = (built.engine if built is not None else None) or {}
            shape = x.shape if x is not None else getattr(be, "input_shape", None)
            r.trtexec = run_trtexec(
                Path(r.model),
                n,
                str(getattr(be, "version", "")) or str(_trt_major()),
                cuda_graph=graph,
                batch=r.batch,
                shapes=(
                    {be.in_name: tuple(shape)}
                    if getattr(be, "dynamic", False) and shape is not None
                    else None
                ),
                dla_core=eng.get("dla_core"),
            )
        out.append(r)
    return out
