"""Roofline ESTIMATE: the physical lower bound on CIFReNet's latency on a device.

A measured latency means little until it is read against what the hardware could
possibly do. For every layer the bound is ``max(work / peak compute, bytes / peak
bandwidth)``; summing per layer (not over the whole model) keeps the memory-bound
layers (resizes, depthwise convolutions) from hiding behind the compute-bound ones.

Everything here is deliberately optimistic so the result is a true LOWER bound:
BatchNorm and activations are taken as fused into the convolution (no traffic of
their own), each tensor is read and written exactly once, peaks are datasheet peaks,
and an engine built for a lower precision may use any faster higher precision (as
TensorRT does). Real latency is several times the bound; the ratio tells how much
headroom is left. It is an ESTIMATE, never a measurement, and is labelled so.
"""

import functools
import json
import os
import platform
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ..errors import ConfigError
from ..manifest import PRECISIONS

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}
# Kernels an engine of each precision may pick (TensorRT falls back to wider types when
# they are faster): the bound uses the fastest of them.
ALLOWED_MATH = {"fp32": ("fp32",), "fp16": ("fp32", "fp16"), "int8": ("fp32", "fp16", "int8")}
# Layers that move data in a fused engine; BN, activations, dropout fold into convs.
MOVING_KINDS = ("Conv2d", "Linear", "Resize", "AdaptiveAvgPool2d")
DEVICES_FILE = Path(__file__).resolve().parents[1] / "resources" / "devices.json"
LABEL = "ESTIMATE (roofline lower bound, not a measurement)"


@dataclass
class DeviceSpec:
    """Peak figures of one device; ``peak_tops[p]`` is None where the precision does not exist."""

    key: str
    name: str
    peak_tops: Dict[str, Optional[float]]
    bandwidth_gbs: float
    sources: List[str] = field(default_factory=list)
    notes: str = ""
    derived: bool = False  # True for the local CPU: computed from /proc/cpuinfo, not quoted


def load_devices(path: Optional[Path] = None) -> Dict[str, DeviceSpec]:
    """The datasheet table (``resources/devices.json``), keyed by the CLI's device names."""
    data = json.loads(Path(path or DEVICES_FILE).read_text(encoding="utf-8"))
    out = {}
    for key, d in data["devices"].items():
        out[key] = DeviceSpec(
            key=key,
            name=d["name"],
            peak_tops=dict(d["peak_tops"]),
            bandwidth_gbs=float(d["bandwidth_gbs"]),
            sources=list(d.get("sources", [])),
            notes=d.get("notes", ""),
        )
    return out


def device_names() -> List[str]:
    return [*load_devices(), "cpu"]


# --------------------------------------------------------------------------- local CPU


def _cpuinfo_text() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpu_ghz(cpuinfo: str) -> Tuple[float, str]:
    """Highest clock we can read: cpufreq max, else /proc/cpuinfo's MHz, else the model string."""
    p = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(p.read_text().strip()) / 1e6, f"{p} (max)"
    except (OSError, ValueError):
        pass
    mhz = [float(m) for m in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M)]
    if mhz:
        return max(mhz) / 1000.0, "/proc/cpuinfo 'cpu MHz' (current clock; turbo not seen)"
    m = re.search(r"@\s*([\d.]+)\s*GHz", cpuinfo)
    if m:
        return float(m.group(1)), "CPU model string"
    return 2.0, "unknown clock, assumed 2.0 GHz"


def cpu_peaks(
    cpuinfo: Optional[str] = None, cores: Optional[int] = None, ghz: Optional[float] = None
) -> Dict[str, object]:
    """Peak ops/s of the local CPU from cores x clock x SIMD width, read from the ISA flags.

    Assumes two FMA units per core (true of server cores, optimistic elsewhere: a lower
    bound must not underestimate the hardware).
    """
    text = _cpuinfo_text() if cpuinfo is None else cpuinfo
    m = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.M)
    flags = set(m.group(1).split()) if m else set()
    n = cores or os.cpu_count() or 1
    if ghz is None:
        ghz, clock_src = _cpu_ghz(text)
    else:
        clock_src = "given"
    if "avx512f" in flags:
        lanes, isa = 16, "AVX-512"
    elif "avx2" in flags or "avx" in flags:
        lanes, isa = 8, "AVX2" if "avx2" in flags else "AVX"
    elif "asimd" in flags:
        lanes, isa = 4, "NEON"
    elif "sse2" in flags:
        lanes, isa = 4, "SSE2"
    else:
        lanes, isa = 1, "scalar"
    fma = 2 if ("fma" in flags or "asimd" in flags) else 1
    units = 2
    per_cycle_fp32 = lanes * fma * units
    int8_mult, int8_isa = 1, "no int8 dot product (int8 runs at the FP32 rate)"
    if "amx_int8" in flags:
        int8_isa = "AMX-INT8 (1024 MACs/cycle/core)"
    elif "avx512_vnni" in flags or "avx512vnni" in flags:
        int8_mult, int8_isa = 4, "AVX-512 VNNI (4x FP32 lanes)"
    elif "avx_vnni" in flags:
        int8_mult, int8_isa = 4 * 8 / max(lanes, 1), "AVX-VNNI (256-bit)"
    elif "asimddp" in flags:
        int8_mult, int8_isa = 4, "NEON dot product"
    fp16_mult, fp16_isa = 1, "no native FP16 math (converted to FP32)"
    if "amx_fp16" in flags:
        fp16_isa = "AMX-FP16 (512 MACs/cycle/core)"
    elif "avx512_fp16" in flags or "asimdhp" in flags:
        fp16_mult, fp16_isa = 2, "AVX512-FP16" if "avx512_fp16" in flags else "NEON FP16"
    fp32 = n * ghz * 1e9 * per_cycle_fp32
    int8 = n * ghz * 1e9 * 2048 if "amx_int8" in flags else fp32 * int8_mult
    fp16 = n * ghz * 1e9 * 1024 if "amx_fp16" in flags else fp32 * fp16_mult
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    return {
        "name": model.group(1).strip() if model else platform.processor() or platform.machine(),
        "cores": n,
        "ghz": ghz,
        "clock_source": clock_src,
        "isa": isa,
        "formula": f"{n} cores x {ghz:.2f} GHz x {lanes} fp32 lanes ({isa}) x {fma} (FMA) "
        f"x {units} FMA units (assumed)",
        "int8_isa": int8_isa,
        "fp16_isa": fp16_isa,
        "peak_tops": {"fp32": fp32 / 1e12, "fp16": fp16 / 1e12, "int8": int8 / 1e12},
    }


def measure_copy_bandwidth(sizes_mib: Sequence[int] = (8, 64), repeats: int = 7) -> float:
    """Best numpy copy bandwidth in GB/s (read + write) over cache- and DRAM-sized buffers.

    The local CPU has no datasheet here; the best of both sizes is taken because
    CIFReNet's activations (tens of MB) may live in a large last-level cache, and a lower
    bound must not underestimate the memory system.
    """
    import numpy as np

    best_gbs = 0.0
    for mib in sizes_mib:
        src = np.ones(mib * (1 << 20) // 4, dtype=np.float32)
        dst = np.empty_like(src)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.copyto(dst, src)
            best = min(best, time.perf_counter() - t0)
        best_gbs = max(best_gbs, 2 * src.nbytes / best / 1e9)
    return best_gbs


def local_cpu_device(bandwidth_gbs: Optional[float] = None) -> DeviceSpec:
    peaks = cpu_peaks()
    bw = measure_copy_bandwidth() if bandwidth_gbs is None else bandwidth_gbs
    return DeviceSpec(
        key="cpu",
        name=f"local CPU: {peaks['name']} ({peaks['cores']} logical cores)",
        peak_tops=dict(peaks["peak_tops"]),
        bandwidth_gbs=bw,
        sources=[
            f"derived from /proc/cpuinfo: {peaks['formula']}; clock from {peaks['clock_source']}",
            f"INT8: {peaks['int8_isa']}; FP16: {peaks['fp16_isa']}",
            "bandwidth: measured here, best numpy copy of 8 and 64 MiB buffers (not a "
            "datasheet peak; the memory term is indicative)",
        ],
        notes="Derived, not quoted: treat as the order of magnitude.",
        derived=True,
    )


def resolve_devices(spec: str) -> List[DeviceSpec]:
    """``gtx1080ti``, ``cpu``, ``all`` or a comma list -> device specs (unknown: ConfigError)."""
    table = load_devices()
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if not names:
        raise ConfigError("--estimate needs a device: one of " + ", ".join(device_names()))
    if "all" in names:
        names = device_names()
    out = []
    for n in names:
        if n == "cpu":
            out.append(local_cpu_device())
        elif n in table:
            out.append(table[n])
        else:
            raise ConfigError(
                f"unknown device {n!r} for --estimate: use one of "
                + ", ".join([*device_names(), "all"])
            )
    return out


# --------------------------------------------------------------------------- roofline


@dataclass
class PrecisionBound:
    precision: str
    available: bool
    reason: str = ""
    bound_ms: Optional[float] = None  # sum over layers of max(compute, memory)
    compute_ms: Optional[float] = None  # the whole model's work at peak compute alone
    memory_ms: Optional[float] = None  # the whole model's bytes at peak bandwidth alone
    fps_ceiling: Optional[float] = None
    memory_bound_share: Optional[float] = None  # fraction of bound_ms in memory-bound layers
    peak_tops: Optional[float] = None
    math: str = ""


@dataclass
class DeviceEstimate:
    device: str
    name: str
    resolution: Tuple[int, int]
    batch: int
    macs: int
    bytes_fp32: int
    bandwidth_gbs: float
    bounds: List[PrecisionBound]
    sources: List[str]
    notes: str
    label: str = LABEL


def layer_traffic(costs: Sequence[object], bytes_per_element: int) -> List[Tuple[int, int]]:
    """(multiply-adds, bytes moved) per data-moving layer of a fused engine."""
    out = []
    for c in costs:
        if c.kind not in MOVING_KINDS:
            continue
        elems = c.in_elems + c.out_elems + c.params
        out.append((int(c.macs), int(elems * bytes_per_element)))
    return out


def roofline(costs: Sequence[object], device: DeviceSpec, precision: str) -> PrecisionBound:
    """The lower bound for one precision; unavailable precisions say why."""
    peak = device.peak_tops.get(precision)
    if not peak:
        return PrecisionBound(
            precision, False, reason=f"{device.name} has no {precision.upper()} math"
        )
    allowed = [(p, device.peak_tops.get(p) or 0.0) for p in ALLOWED_MATH[precision]]
    math, best = max(allowed, key=lambda t: t[1])
    ops_per_s = best * 1e12
    bytes_per_s = device.bandwidth_gbs * 1e9
    bound = memory_part = 0.0
    total_macs = total_bytes = 0
    for macs, nbytes in layer_traffic(costs, BYTES_PER_ELEMENT[precision]):
        t_c = 2.0 * macs / ops_per_s
        t_m = nbytes / bytes_per_s
        bound += max(t_c, t_m)
        if t_m > t_c:
            memory_part += t_m
        total_macs += macs
        total_bytes += nbytes
    return PrecisionBound(
        precision=precision,
        available=True,
        bound_ms=bound * 1e3,
        compute_ms=2.0 * total_macs / ops_per_s * 1e3,
        memory_ms=total_bytes / bytes_per_s * 1e3,
        fps_ceiling=1.0 / bound if bound > 0 else None,
        memory_bound_share=memory_part / bound if bound > 0 else None,
        peak_tops=best,
        math=math,
    )


def estimate_costs(
    costs: Sequence[object],
    device: DeviceSpec,
    wh: Tuple[int, int],
    batch: int = 1,
    precisions: Sequence[str] = PRECISIONS,
) -> DeviceEstimate:
    """Bounds for every precision from precomputed per-layer costs (testable by hand)."""
    fp32_bytes = sum(b for _, b in layer_traffic(costs, 4))
    return DeviceEstimate(
        device=device.key,
        name=device.name,
        resolution=(int(wh[0]), int(wh[1])),
        batch=batch,
        macs=sum(int(c.macs) for c in costs),
        bytes_fp32=fp32_bytes,
        bandwidth_gbs=device.bandwidth_gbs,
        bounds=[roofline(costs, device, p) for p in precisions],
        sources=list(device.sources),
        notes=device.notes,
    )


@functools.lru_cache(maxsize=16)
def model_costs(preset: str, wh: Tuple[int, int], batch: int = 1) -> Tuple[object, ...]:
    """Per-layer costs of CIFReNet at ``wh`` (one traced forward; cached per process)."""
    from ..model.cifrenet import CIFReNet
    from ..model.complexity import layer_costs

    return tuple(layer_costs(CIFReNet(preset), wh, batch=batch))


def estimate(
    devices: str,
    wh: Tuple[int, int],
    preset: str = "cityscapes",
    batch: int = 1,
    precisions: Sequence[str] = PRECISIONS,
) -> List[DeviceEstimate]:
    """Roofline lower bounds for CIFReNet at ``wh`` on each named device (``all`` for every one)."""
    specs = resolve_devices(devices)
    costs = model_costs(preset, (int(wh[0]), int(wh[1])), int(batch))
    return [estimate_costs(costs, d, wh, batch, precisions) for d in specs]


def estimate_as_dict(e: DeviceEstimate) -> Dict[str, object]:
    d = asdict(e)
    d["resolution"] = list(e.resolution)
    return d


def render_estimates(estimates: Sequence[DeviceEstimate], console: object) -> None:
    """A rich table per resolution; every title and footnote says ESTIMATE."""
    from rich.table import Table

    by_res: Dict[Tuple[int, int], List[DeviceEstimate]] = {}
    for e in estimates:
        by_res.setdefault(e.resolution, []).append(e)
    for wh, rows in by_res.items():
        first = rows[0]
        t = Table(
            title=f"{LABEL}: CIFReNet {wh[0]}x{wh[1]}, batch {first.batch}, "
            f"{first.macs / 1e9:.2f} G multiply-adds, "
            f"{first.bytes_fp32 / 1e6:.0f} MB moved at FP32",
            title_justify="left",
        )
        for col in (
            "device",
            "precision",
            "bound ms",
            "max FPS",
            "compute-only ms",
            "memory-only ms",
            "memory-bound share",
            "peak used",
        ):
            t.add_column(col, justify="left" if col in ("device", "precision") else "right")
        for e in rows:
            for i, b in enumerate(e.bounds):
                name = e.name if i == 0 else ""
                if not b.available:
                    t.add_row(name, b.precision, "-", "-", "-", "-", "-", b.reason)
                    continue
                t.add_row(
                    name,
                    b.precision,
                    f"{b.bound_ms:.3f}",
                    f"{b.fps_ceiling:,.0f}",
                    f"{b.compute_ms:.3f}",
                    f"{b.memory_ms:.3f}",
                    f"{b.memory_bound_share:.0%}",
                    f"{b.peak_tops:.3g} T ({b.math}), {e.bandwidth_gbs:.3g} GB/s",
                )
        console.print(t)
    console.print(
        "[bold]These are estimates[/bold]: per-layer max(2 x multiply-adds / peak, bytes / "
        "bandwidth), BN and activations fused, each tensor moved once, datasheet peaks. Real "
        "latency is higher; measured / bound shows the headroom. Sources: "
        "cifrenet_edge/resources/devices.json; the local CPU is derived from /proc/cpuinfo."
    )
