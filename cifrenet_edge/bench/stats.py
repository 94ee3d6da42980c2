"""Latency statistics and the interleaved scheduler every timed series runs in."""

import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence

import numpy as np


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
