"""The report: rows, ratios, the whole run, and its versioned JSON schema."""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import __version__
from ..errors import ConfigError
from .constants import DEFINITIONS, SCHEMA, SCHEMA_VERSION
from .stats import LatencyStats


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
    # INT8 rows: class-map agreement with FP32 on the bench's frames (bench/accuracy.py)
    accuracy: Optional[Dict[str, Any]] = None

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
    from ..model.paper import PAPER_FPS, PAPER_FPS_DEVICE

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
