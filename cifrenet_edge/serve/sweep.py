"""``cifrenet-edge bench --model grpc://HOST:PORT/NAME``: what a fleet gets from one server.

For each number of concurrent clients (default 1, 2, 4, 8) every client is its own
``Segmenter.open(url)`` (its own connection, like separate robots) sending the same frame
back to back for ``seconds``. Measured per level:

* throughput: frames answered per second of wall time, all clients together;
* latency: p50 and p99 of each request's round trip (frame sent -> class map back, as the
  robot sees it: network, queueing in Triton's batcher, pre/post-processing, inference);
* the batch sizes Triton actually formed: the difference of the model's statistics
  (``/v2/models/NAME/stats``, ``batch_stats``: executions per batch size) before and after
  the level. When the statistics endpoint is closed, the Prometheus counters on the metrics
  port give the mean batch (``nv_inference_count`` / ``nv_inference_exec_count``).

Beside it, in the same run, the same sweep through a local ``Segmenter`` (clients are
threads sharing it, as threads of one robot program would): the cost of going over the
network, and what batching across robots buys, on the same frame. The local model is
``--local PATH``, else the server's own model file when this machine can read it (a server
started here with ``cifrenet-edge serve``).

Figures depend on the machine and its load: record them on a quiet one
(``benchmarks/serving/README.md``); this module only measures.
"""

import datetime as _dt
import json
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..errors import ConfigError
from ..runtime.remote import parse_url

REPORT_KIND = "cifrenet-edge/bench-serving/1"
DEFAULT_CLIENTS = (1, 2, 4, 8)
DEFAULT_RESULTS_DIR = Path("benchmarks") / "serving" / "results"


def parse_clients(text: str) -> List[int]:
    """``"1,2,4,8"`` -> [1, 2, 4, 8]; each a positive count."""
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"--clients {text!r}: give positive counts, e.g. 1,2,4,8")
    return sorted(set(values))


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Nearest-rank percentile (no interpolation: a reported latency was really observed)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(int(np.ceil(q / 100.0 * len(ordered))), 1)
    return float(ordered[rank - 1])


def _level(
    predictors: List[Callable[[np.ndarray], Any]], frame: np.ndarray, seconds: float
) -> Dict[str, Any]:
    """All predictors call in parallel for ``seconds``; latencies and counts."""
    latencies = [[] for _ in predictors]  # type: List[List[float]]
    errors = []  # type: List[str]
    start = threading.Barrier(len(predictors) + 1)
    stop_at = [0.0]

    def run(k: int) -> None:
        start.wait()
        predict = predictors[k]
        while time.perf_counter() < stop_at[0]:
            t0 = time.perf_counter()
            try:
                predict(frame)
            except Exception as exc:  # counted and reported: a benchmark records failures
                errors.append(str(exc).splitlines()[0][:200])
                return
            latencies[k].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(len(predictors))]
    for t in threads:
        t.start()
    stop_at[0] = time.perf_counter() + seconds
    t0 = time.perf_counter()
    start.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    flat = [x for per in latencies for x in per]
    return {
        "clients": len(predictors),
        "requests": len(flat),
        "seconds": round(wall, 3),
        "throughput_fps": round(len(flat) / wall, 2) if wall > 0 else None,
        "latency_ms": {
            "p50": _ms(percentile(flat, 50)),
            "p99": _ms(percentile(flat, 99)),
            "mean": _ms(float(np.mean(flat)) if flat else None),
        },
        "errors": errors[:5],
    }


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds * 1000.0, 3)


class _Stats:
    """Executions per batch size of one model, from the statistics API or the metrics port."""

    def __init__(self, url: str, metrics_port: int, timeout: float) -> None:
        a = parse_url(url)
        self.address = a
        self.metrics_url = f"http://{a.hostport.rsplit(':', 1)[0]}:{int(metrics_port)}/metrics"
        self.timeout = timeout
        if a.scheme == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
        self.client = module.InferenceServerClient(a.hostport)
        self.source = "statistics"

    def snapshot(self) -> Dict[str, int]:
        try:
            if self.address.scheme == "grpc":
                stats = self.client.get_inference_statistics(
                    self.address.model, as_json=True, client_timeout=self.timeout
                )
            else:
                stats = self.client.get_inference_statistics(self.address.model)
            rows = (stats.get("model_stats") or [{}])[0].get("batch_stats") or []
            return {str(r["batch_size"]): int(r["compute_infer"]["count"]) for r in rows}
        except Exception:  # a server that restricts statistics: fall back to Prometheus
            self.source = "metrics"
            return self._metrics()

    def settled(self) -> Dict[str, int]:
        """A snapshot once the counters stop moving: Triton records an execution just after
        it answers, so a snapshot taken the moment the last answer arrives can miss it."""
        last = self.snapshot()
        for _ in range(20):
            time.sleep(0.05)
            now = self.snapshot()
            if now == last:
                break
            last = now
        return last

    def _metrics(self) -> Dict[str, int]:
        import urllib.request

        with urllib.request.urlopen(self.metrics_url, timeout=self.timeout) as reply:
            text = reply.read().decode("utf-8", "replace")
        out = {}
        for name in ("nv_inference_count", "nv_inference_exec_count"):
            pattern = rf'^{name}\{{[^}}]*model="{re.escape(self.address.model)}"[^}}]*\}} (\S+)'
            found = re.findall(pattern, text, flags=re.M)
            out[name] = int(sum(float(v) for v in found))
        return out

    def close(self) -> None:
        self.client.close()


def _batches(before: Dict[str, int], after: Dict[str, int], source: str) -> Dict[str, Any]:
    if source == "metrics":
        frames = after.get("nv_inference_count", 0) - before.get("nv_inference_count", 0)
        runs = after.get("nv_inference_exec_count", 0) - before.get("nv_inference_exec_count", 0)
        return {"source": "metrics", "executions": runs, "mean_batch": _ratio(frames, runs)}
    formed = {k: after[k] - before.get(k, 0) for k in sorted(after, key=int)}
    formed = {k: v for k, v in formed.items() if v > 0}
    runs = sum(formed.values())
    frames = sum(int(k) * v for k, v in formed.items())
    return {
        "source": "statistics",
        "executions": runs,
        "mean_batch": _ratio(frames, runs),
        "formed": formed,
    }


def _ratio(a: int, b: int) -> Optional[float]:
    return round(a / b, 2) if b else None


def _local_model(server: Dict[str, Any], local: Optional[str]) -> Optional[str]:
    if local:
        if not Path(local).expanduser().is_file():
            raise ConfigError(f"--local {local} does not exist: give the model file to compare")
        return str(local)
    path = server.get("model")
    return path if path and Path(path).is_file() else None


def run_client_sweep(
    url: str,
    clients: Sequence[int] = DEFAULT_CLIENTS,
    seconds: float = 5.0,
    frame: Optional[str] = None,
    local: Optional[str] = None,
    metrics_port: int = 8002,
    timeout: float = 30.0,
    log: Callable[[str], None] = lambda s: None,
) -> Dict[str, Any]:
    """The sweep over ``clients`` through the server and (when available) locally."""
    from ..bench import bench_frame, system_info
    from ..runtime.segmenter import Segmenter

    if seconds <= 0:
        raise ConfigError(f"--seconds {seconds} must be > 0")
    image = bench_frame(frame)
    levels = sorted(set(int(c) for c in clients))
    probe = Segmenter.open(url, timeout=timeout)
    server = dict(probe.backend.runtime)  # type: ignore[attr-defined]
    probe.close()
    stats = _Stats(url, metrics_port, timeout)
    remote = []
    try:
        for n in levels:
            segs = [Segmenter.open(url, timeout=timeout) for _ in range(n)]
            try:
                for seg in segs:
                    seg.predict(image)  # a connection and a warm server per client
                before = stats.settled()
                row = _level([s.predict for s in segs], image, seconds)
                row["batches"] = _batches(before, stats.settled(), stats.source)
            finally:
                for seg in segs:
                    seg.close()
            log(
                f"remote, {n} client(s): {row['throughput_fps']} fps, p50 "
                f"{row['latency_ms']['p50']} ms, mean batch {row['batches']['mean_batch']}"
            )
            remote.append(row)
    finally:
        stats.close()
    local_rows = None
    model = _local_model(server, local)
    if model is not None:
        local_rows = []
        with Segmenter.open(model) as seg:
            seg.predict(image)
            for n in levels:
                row = _level([seg.predict] * n, image, seconds)
                log(f"local, {n} thread(s): {row['throughput_fps']} fps")
                local_rows.append(row)
    return {
        "kind": REPORT_KIND,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "url": url,
        "server": server,
        "local_model": model,
        "frame": frame or "synthetic street scene 1280x720 (seed 7)",
        "frame_shape": list(image.shape),
        "seconds_per_level": seconds,
        "clients": levels,
        "remote": remote,
        "local": local_rows,
        "client_machine": system_info(),
        "definitions": {
            "throughput_fps": "frames answered per second of wall time, all clients together",
            "latency_ms": "one predict() call as the caller sees it (p50, p99: nearest rank)",
            "batches": "executions per batch size Triton formed during the level "
            "(statistics API), or the mean batch from Prometheus counters",
            "local": "the same frame through a local Segmenter; clients are threads sharing it",
        },
    }


def default_output_path(report: Dict[str, Any], results_dir: Path = DEFAULT_RESULTS_DIR) -> Path:
    """``benchmarks/serving/results/serving_<host>_<UTC time>.json``: never overwrites."""
    host = (report.get("client_machine") or {}).get("hostname") or "host"
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", host)[:40]
    stamp = report["created"].replace(":", "").replace("-", "")
    return results_dir / f"serving_{host}_{stamp}.json"


def write_sweep_json(report: Dict[str, Any], path: Path) -> Path:
    from .._io import write_json_atomic

    json.dumps(report)  # everything in it must be plain JSON before anything is written
    return write_json_atomic(path, report)


def render_sweep(report: Dict[str, Any], console: Any) -> None:
    """One table: each client count, through Triton and locally, side by side."""
    from rich.table import Table

    server = report.get("server") or {}
    table = Table(
        title=f"serving sweep: {report['url']} ({server.get('backend')} on "
        f"{server.get('device')} there), frame {report['frame_shape'][1]}x"
        f"{report['frame_shape'][0]}, {report['seconds_per_level']} s per level"
    )
    for column in (
        "clients",
        "Triton fps",
        "p50 ms",
        "p99 ms",
        "batches formed (size: runs)",
        "local fps",
        "local p50 ms",
        "local p99 ms",
    ):
        table.add_column(column, justify="left" if column.startswith("batches") else "right")
    local = {row["clients"]: row for row in report.get("local") or []}
    for row in report["remote"]:
        b = row["batches"]
        formed = b.get("formed")
        batches = (
            ", ".join(f"{k}: {v}" for k, v in formed.items())
            if formed
            else f"mean {b.get('mean_batch')}"
        )
        lo = local.get(row["clients"], {})
        table.add_row(
            str(row["clients"]),
            _show(row["throughput_fps"]),
            _show(row["latency_ms"]["p50"]),
            _show(row["latency_ms"]["p99"]),
            batches + (f" ({len(row['errors'])} errors)" if row["errors"] else ""),
            _show(lo.get("throughput_fps")),
            _show((lo.get("latency_ms") or {}).get("p50")),
            _show((lo.get("latency_ms") or {}).get("p99")),
        )
    console.print(table)
    if report.get("local") is None:
        console.print("local: no model file to compare with here (pass --local MODEL)")


def _show(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.1f}"


__all__ = [
    "DEFAULT_CLIENTS",
    "REPORT_KIND",
    "default_output_path",
    "parse_clients",
    "percentile",
    "render_sweep",
    "run_client_sweep",
    "write_sweep_json",
]
