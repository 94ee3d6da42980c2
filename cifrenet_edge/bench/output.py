"""The report for people and files: rich tables, the JSON file, the PNG plot."""

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .constants import DEFAULT_RESULTS_DIR
from .report import BenchReport, check_report_dict, report_to_dict


def default_output_stem(report: BenchReport, results_dir: Path = DEFAULT_RESULTS_DIR) -> Path:
    """``benchmarks/results/bench_<host>_<res>_<UTC time>``: never overwrites an earlier run."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", report.system.get("hostname") or "host")[:40]
    res = "-".join(f"{w}x{h}" for w, h in report.config["resolutions"])
    stamp = report.created.replace(":", "").replace("-", "")
    return results_dir / f"bench_{host}_{res}_{stamp}"


def write_report_json(report: BenchReport, path: Path) -> Path:
    from .._io import write_json_atomic

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
    dev = _device_name(report)
    for wh in [tuple(r) for r in report.config["resolutions"]]:
        console.print(_resolution_table(report, wh, dev))
        for line in _not_run_lines(report, wh):
            console.print(line)
    if report.ratios:
        console.print(_ratio_table(report))
    if report.estimate:
        _render_estimates(report, console)
    _render_footer(report, console)


def _resolution_table(report: BenchReport, wh: Tuple[int, int], dev: str) -> Any:
    """One resolution's rows: the paper's FPS first, then compute and end-to-end columns."""
    from rich.table import Table

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
    cols += ["e2e median", "e2e p99", "e2e FPS", "vs FP32", "warm-up (n, first)"]
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
        if r.status != "ok":  # under the table (``_not_run_lines``): a reason is no cell
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
            _agreement_cell(r),
            f"{w.get('iters', 0)}, {_fmt(w.get('first_ms'), '.1f')}" if w else "-",
        ]
        t.add_row(*cells)
    return t


def _not_run_lines(report: BenchReport, wh: Tuple[int, int]) -> List[str]:
    """One line per row of this resolution that did not run, its reason on the same line."""
    from rich.markup import escape

    lines = []
    for r in report.results:
        if tuple(r.resolution) != wh or r.status == "ok":
            continue
        word = "not run" if r.status == "skipped" else r.status
        reason = " ".join(str(r.reason).split())  # a multi-line reason stays one line
        lines.append(f"  [yellow]{word}[/yellow]: {r.backend} {r.precision}: {escape(reason)}")
    return lines


def _agreement_cell(r: Any) -> str:
    """INT8 rows: agreement of the class map with FP32, the CPU variant marked (u8 / w7)."""
    acc = r.accuracy
    if r.precision != "int8" or not acc:
        return "-"
    value = acc.get("agreement")
    if value is None:
        return "n/a"
    text = f"{100 * value:.1f}%"
    if acc.get("variant") == "u8_inputs":
        text += " u8"
    elif acc.get("weight_bits") == 7:
        text += " w7"
    return text if acc.get("measured") else text + " (export)"


def _ratio_table(report: BenchReport) -> Any:
    from rich.table import Table

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
    return t


def _render_estimates(report: BenchReport, console: Any) -> None:
    """The roofline estimates, and the measured CPU rows against the local-CPU bound."""
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


def _render_footer(report: BenchReport, console: Any) -> None:
    """Definitions, the machine and software, weights, notes, run time."""
    from rich.markup import escape

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
        for k in ("h2d", "d2h", "latency", "trtexec"):
            if k in report.definitions:  # a report read back from an older JSON may lack one
                console.print(f"  {report.definitions[k]}")
    s = report.system
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
    if report.config.get("weights_kind") == "untrained":
        console.print("  Weights: untrained (speed does not depend on them; accuracy does).")
    if any(r.accuracy for r in report.results):
        console.print(
            "  vs FP32: share of pixels whose class equals the FP32 ONNX model's, on the "
            "end-to-end frame and 3 synthetic scenes; on a CPU without an int8 dot product: "
            "u8 = u8 inputs with 8-bit weights where the input is never negative, 7-bit "
            "weights elsewhere; w7 = 7-bit weights everywhere (older files)."
        )
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

    from .._io import atomic_path

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
