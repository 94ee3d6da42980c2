"""``run_bench``: check the options, plan the rows, prepare the models, time, report."""

import datetime as _dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, ModelFileError
from ..manifest import Manifest
from .agreement import add_int8_agreement
from .constants import (
    BACKENDS,
    CALIB_COUNT,
    DEFAULT_CACHE_DIR,
    FRAME_WH,
    MAX_BATCH,
    MAX_SIDE,
    PRECISIONS,
)
from .models import (
    Prepared,
    _model_fits,
    _prepared_from_model,
    _trt_target,
    calibration_dir,
    prepare_models,
    probe_weights,
)
from .ratios import compute_ratios
from .report import BenchReport, BenchResult, _paper_block
from .rows import (
    _bare_ort_session,
    _finish_row,
    _open_rows,
    _Row,
    _tensor,
    _tensorrt_rows,
)
from .stats import Series, run_interleaved
from .system import availability, system_info

Plan = List[Tuple[str, str]]  # (backend, precision) pairs that run here


def bench_frame(path: Optional[str] = None) -> np.ndarray:
    """The end-to-end input: a given image, else a deterministic synthetic 1280x720 street scene."""
    if path:
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise ConfigError(f"cannot read frame image {path}: pass a JPEG/PNG file to --frame")
        return img
    from ..data.synthetic import make_scene

    return make_scene(7, FRAME_WH)[0]


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
    timing = _Timing(batch, warmup, iters, seconds, threads, end_to_end, bare_onnxruntime, trtexec)
    timing.check()
    from ..presets import get_preset

    preset = get_preset(preset).name
    model_path, model_manifest, preset, resolutions = _given_model(model, preset, resolutions)
    from ..presets import format_resolution, parse_resolution

    resolutions = [
        parse_resolution(format_resolution(wh), max_side=MAX_SIDE)
        for wh in (resolutions or [(640, 360)])
    ]
    b_list = list(backends) if backends is not None else list(BACKENDS)
    p_list = list(precisions) if precisions is not None else list(PRECISIONS)
    by_name = backends is not None and precisions is not None
    plan, results, notes = _plan(
        b_list, p_list, by_name, resolutions, batch, model_path, model_manifest
    )
    frame_img = bench_frame(frame)
    cache_dir = Path(cache).expanduser() if cache else DEFAULT_CACHE_DIR
    trt_precisions = [p for (b, p) in plan if b == "tensorrt"]
    target = _trt_target() if trt_precisions else "onnxruntime"
    estimates = _estimates(estimate_devices, resolutions, preset, batch)
    weights_label = None
    if model_path is None and not weights:
        # INT8 rows report agreement with FP32: with untrained weights (one class
        # everywhere) that would be 1.0 whatever INT8 did. The probe model segments; every
        # row uses it (one cache, comparable rows), speed does not depend on weights.
        weights, weights_label = probe_weights(preset, cache_dir, log)
        if weights_label:
            notes.append(weights_label)

    for wh in resolutions:
        if model_path is not None:
            prepared = _prepared_from_model(model_path, model_manifest, wh, batch)
        else:
            prepared = _prepare(
                preset, wh, batch, plan, cache_dir, weights, trt_precisions, target, log, notes
            )
        results.extend(_measure(plan, prepared, wh, preset, frame_img, timing, log))
    config = _config(
        timing,
        preset,
        model_path,
        model_manifest,
        weights,
        resolutions,
        b_list,
        p_list,
        frame,
        cache_dir,
        target,
        _weights_kind(model_path, model_manifest, weights, weights_label),
    )
    report = BenchReport(
        created=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        config=config,
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


@dataclass(frozen=True)
class _Timing:
    """How every row is timed: the ``run_bench`` arguments all resolutions share."""

    batch: int
    warmup: int
    iters: Optional[int]
    seconds: Optional[float]
    threads: Optional[int]
    end_to_end: bool
    bare_onnxruntime: bool
    trtexec: bool

    def check(self) -> None:
        batch, warmup, iters = self.batch, self.warmup, self.iters
        seconds, threads = self.seconds, self.threads
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


def _given_model(
    model: Optional[str], preset: str, resolutions: Optional[Sequence[Tuple[int, int]]]
) -> Tuple[Optional[Path], Optional[Dict[str, Any]], str, Optional[Sequence[Tuple[int, int]]]]:
    """With --model: its path and manifest, which fix the preset (and resolution if unset)."""
    if not model:
        return None, None, preset, resolutions
    model_path = Path(model).expanduser()
    if model_path.is_dir():
        raise ModelFileError(f"--model {model} is a folder: give the model file inside it")
    if not model_path.is_file():
        raise ModelFileError(
            f"model file {model} does not exist: pass an existing .onnx/.engine, or "
            "--preset to export one"
        )
    from ..runtime.segmenter import open_manifest

    model_manifest = open_manifest(model_path)
    preset = model_manifest.preset or preset
    if not resolutions:
        fixed = model_manifest.resolution
        resolutions = [tuple(fixed)] if fixed else None
    return model_path, model_manifest, preset, resolutions


def _plan(
    b_list: Sequence[str],
    p_list: Sequence[str],
    by_name: bool,
    resolutions: Sequence[Tuple[int, int]],
    batch: int,
    model_path: Optional[Path],
    model_manifest: Optional[Manifest],
) -> Tuple[Plan, List[BenchResult], List[str]]:
    """What runs here; what cannot is a skipped row (asked for by name) or a note."""
    notes: List[str] = []
    results: List[BenchResult] = []
    plan: Plan = []
    skipped_notes: Dict[str, List[str]] = {}
    for b in b_list:
        for p in p_list:
            why = availability(b, p)
            if why is None and model_manifest is not None:
                why = _model_fits(model_path, model_manifest, b, p)
            if why is None:
                plan.append((b, p))
            elif by_name:  # asked for by name: a row that says why
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
    return plan, results, notes


def _estimates(
    estimate_devices: Optional[str],
    resolutions: Sequence[Tuple[int, int]],
    preset: str,
    batch: int,
) -> Optional[List[Dict[str, Any]]]:
    if not estimate_devices:
        return None
    from .estimate import estimate, estimate_as_dict

    estimates: List[Dict[str, Any]] = []
    for wh in resolutions:
        estimates += [estimate_as_dict(e) for e in estimate(estimate_devices, wh, preset, batch)]
    return estimates


def _prepare(
    preset: str,
    wh: Tuple[int, int],
    batch: int,
    plan: Plan,
    cache_dir: Path,
    weights: Optional[str],
    trt_precisions: Sequence[str],
    target: str,
    log: Callable[[str], None],
    notes: List[str],
) -> Prepared:
    """The cached models for ``wh`` (exported, quantized, built as needed), noted in ``notes``."""
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
            f"{wh[0]}x{wh[1]}: INT8 = Q/DQ model calibrated (min-max) on {CALIB_COUNT} "
            f"deterministic synthetic street scenes ({calibration_dir(cache_dir, wh)}); each "
            "INT8 row's class maps are compared with FP32 on the bench's frames (column "
            "'vs FP32')"
        )
    return prepared


def _measure(
    plan: Plan,
    prepared: Prepared,
    wh: Tuple[int, int],
    preset: str,
    frame_img: np.ndarray,
    timing: _Timing,
    log: Callable[[str], None],
) -> List[BenchResult]:
    """Every row at one resolution: open, time interleaved, close (even on failure)."""
    batch, threads, warmup = timing.batch, timing.threads, timing.warmup
    iters, seconds = timing.iters, timing.seconds
    results: List[BenchResult] = []
    rows = _open_rows(plan, prepared, wh, batch, threads, preset, log)
    try:
        add_int8_agreement(rows, prepared.onnx.get("fp32"), frame_img, wh, log)
        results.extend(r.result for r in rows if r.result.status != "ok")
        live = [r for r in rows if r.result.status == "ok"]
        x = _tensor(batch, wh, frame_img, preset)
        series = _toolkit_series(live, x, [frame_img] * batch, batch, timing.end_to_end)
        bare = _bare_row(prepared, live, wh, batch, threads, x) if timing.bare_onnxruntime else None
        if bare is not None:
            series.append(bare.compute)
        log(f"{wh[0]}x{wh[1]}: timing {len(series)} series interleaved ...")
        run_interleaved(series, warmup=warmup, iters=iters, seconds=seconds)
        for r in [*live, *([bare] if bare else [])]:
            _finish_row(r, batch)
        # GPU rows: CUDA-event timing in the backend's own loop, with and without graphs.
        for r in live:
            if r.result.backend == "tensorrt":
                results.extend(_tensorrt_rows(r, iters, seconds, warmup, timing.trtexec, x))
            else:
                results.append(r.result)
        if bare is not None:
            results.append(bare.result)
    finally:  # a failure mid-run must not leak sessions, contexts or device memory
        for r in rows:
            if r.segmenter is not None:
                r.segmenter.close()
    return results


def _toolkit_series(
    live: Sequence[_Row],
    x: np.ndarray,
    frames: List[np.ndarray],
    batch: int,
    end_to_end: bool,
) -> List[Series]:
    """The compute series (host-timed rows only) and end-to-end series of the open rows."""
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
    return series


def _bare_row(
    prepared: Prepared,
    live: Sequence[_Row],
    wh: Tuple[int, int],
    batch: int,
    threads: Optional[int],
    x: np.ndarray,
) -> Optional[_Row]:
    """A bare InferenceSession on the FP32 file, when the toolkit's ORT FP32 row runs."""
    ort_fp32 = prepared.onnx.get("fp32")
    if ort_fp32 is None or not any(
        r.result.backend == "onnxruntime" and r.result.precision == "fp32" for r in live
    ):
        return None
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
    return bare


def _weights_kind(
    model_path: Optional[Path],
    manifest: Optional[Manifest],
    weights: Optional[str],
    probe_label: Optional[str],
) -> str:
    """What the timed model's weights are: probe, checkpoint, trained or untrained."""
    if model_path is not None:
        trained = manifest is not None and (manifest.weights or {}).get("trained")
        return "trained" if trained else "untrained"
    if probe_label:
        return "probe"
    return "checkpoint" if weights else "untrained"


def _config(
    timing: _Timing,
    preset: str,
    model_path: Optional[Path],
    model_manifest: Optional[Manifest],
    weights: Optional[str],
    resolutions: Sequence[Tuple[int, int]],
    b_list: Sequence[str],
    p_list: Sequence[str],
    frame: Optional[str],
    cache_dir: Path,
    target: str,
    weights_kind: str = "checkpoint",
) -> Dict[str, Any]:
    """The report's ``config`` block: what was asked for, as run."""
    return {
        "preset": preset,
        "model": str(model_path) if model_path else None,
        "weights": weights,
        "weights_kind": weights_kind,
        "trained_weights": weights_kind in ("checkpoint", "trained"),
        "resolutions": [list(wh) for wh in resolutions],
        "backends": b_list,
        "precisions": p_list,
        "batch": timing.batch,
        "warmup": timing.warmup,
        "iters": timing.iters,
        "seconds": timing.seconds if timing.iters is None else None,
        "min_iters": 10,
        "threads": timing.threads,
        "end_to_end_frame": (
            str(frame) if frame else f"synthetic street scene {FRAME_WH[0]}x{FRAME_WH[1]} (seed 7)"
        ),
        "cache": str(cache_dir) if model_path is None else None,
        "export_target": target if model_path is None else None,
    }


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
