"""ONNX -> TensorRT engine + manifest, on whichever TensorRT generation the machine has.

The same ``export --format engine`` must work on a 1080 Ti (TRT 8.6), a Jetson Nano (8.2),
Xavier (8.5), Orin (10.3 / 10.16) and new GPUs (11.x). Which calls are made is decided by
``plan.plan_build`` (a pure function of the version's capabilities, the precision and the GPU),
so the decision is unit-tested for every version; ``build_engine`` only carries it out with
calls that ``tests/test_trt_api.py`` checks against NVIDIA's binding sources.
"""

import contextlib
import datetime as _dt
import re
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

from .. import __version__ as TOOLKIT_VERSION
from .._io import PathLike, ensure_writable_dir, sha256_file, write_bytes_atomic
from ..device.check import ENGINE, gather_facts, open_cuda_checked, require
from ..errors import (
    BackendUnavailableError,
    CalibrationError,
    ConfigError,
    ExportError,
    ModelFileError,
    first_line,
)
from ..manifest import Manifest, read_manifest, write_manifest
from . import api, rules
from .plan import INT8_MODES, PRECISIONS, BuildPlan, plan_build
from .timing_cache import open_timing_cache as _open_timing_cache
from .timing_cache import save_timing_cache as _save_timing_cache


class EngineResult(NamedTuple):
    path: Path
    manifest_path: Path
    manifest: Manifest
    build_seconds: float
    warnings: List[str]


def default_engine_path(onnx_path: Path, precision: str) -> Path:
    """Beside the ONNX file, its precision tag swapped: m_fp32_trt10.onnx -> m_fp16_trt10.engine."""
    stem, n = re.subn(r"_(fp32|fp16|int8)(?=_|$)", f"_{precision}", onnx_path.stem, count=1)
    if n == 0:
        stem = f"{stem}_{precision}"
    return onnx_path.with_name(stem + ".engine")


class Preflight(NamedTuple):
    trt: Any
    version: str
    cuda: Any
    device: Dict[str, Any]
    warnings: List[str]  # the device check's warning lines


def _preflight(dla_core: Optional[int] = None) -> Preflight:
    """TensorRT, CUDA and the device check (``device_check``), before any work."""
    trt = api.import_tensorrt()
    version = api.trt_version(trt)
    cuda, dev, warnings = open_cuda_checked(_open_cuda, version)
    if dla_core is not None and int(dla_core) >= 0:
        cores = None  # only TensorRT knows a Jetson's DLA cores: one builder, the one logger
        with contextlib.suppress(Exception):
            cores = int(trt.Builder(api.shared_logger(trt)).num_DLA_cores)
        facts = gather_facts(version, dev, int(dla_core), cores)
        warnings += [w for w in require(ENGINE, facts) if w not in warnings]
    return Preflight(trt, version, cuda, dev, warnings)


def preflight(dla_core: Optional[int] = None) -> str:
    """Raise BackendUnavailableError now if no engine can be built here; returns the version.

    For callers with slow stages before the build (``export --format engine`` exports and
    quantizes first): fail in a second, not after minutes of work. Runs the device check
    (TensorRT vs this GPU, cuda-python vs the driver, JetPack, DLA) with this machine's facts.
    """
    return _preflight(dla_core).version


def _open_cuda() -> Any:
    """The CUDA wrapper of device 0 (tests replace it with a recording stand-in)."""
    from .cuda import open_cuda

    return open_cuda(0)


def escape_markup(text: str) -> str:
    """Text for rich's console.print: rule ids like [hw.int8] are not style tags."""
    return str(text).replace("[", "\\[")


def _shape(batch: int, wh: Tuple[int, int]) -> Tuple[int, int, int, int]:
    return (int(batch), 3, int(wh[1]), int(wh[0]))


@contextlib.contextmanager
def _spinner(console: Any, text: str, quiet: bool) -> Iterator[None]:
    """Elapsed-time spinner for versions without IProgressMonitor (a Jetson build takes minutes)."""
    if quiet or console is None:
        yield
        return
    start = time.monotonic()
    stop = threading.Event()
    with console.status(text) as status:

        def tick() -> None:
            while not stop.wait(0.5):
                status.update(f"{text} ({time.monotonic() - start:.0f} s)")

        t = threading.Thread(target=tick, daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()


@contextlib.contextmanager
def _released(calibrator: Any) -> Iterator[None]:
    """Free the calibrator's device buffer however the build ends."""
    try:
        yield
    finally:
        if calibrator is not None:
            calibrator.release()


def make_progress_monitor(trt: Any, progress: Any) -> Any:
    """An ``IProgressMonitor`` (TRT 10+) that shows the builder's phases as rich progress bars.

    TensorRT's trampolines (``python/src/infer/pyCore.cpp``, PyProgressMonitor) catch any
    exception from these callbacks, print it and cancel the build, which then returns None
    as if it had failed. So every callback catches here, keeps the first exception in
    ``error`` (Ctrl-C arrives as a KeyboardInterrupt inside ``step_complete``) and answers
    False to cancel; the caller re-raises it after the build instead of blaming the workspace.
    """
    base = trt.IProgressMonitor

    class Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.tasks: Dict[str, Any] = {}
            self.error: Optional[BaseException] = None

        def _keep(self, exc: BaseException) -> None:
            if self.error is None:
                self.error = exc

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            try:
                indent = "  " if parent_phase else ""
                self.tasks[phase_name] = progress.add_task(indent + phase_name, total=num_steps)
            except BaseException as exc:
                self._keep(exc)

        def step_complete(self, phase_name: str, step: int) -> bool:
            try:
                if phase_name in self.tasks:
                    progress.update(self.tasks[phase_name], completed=step + 1)
            except BaseException as exc:
                self._keep(exc)
            return self.error is None  # False cancels the build

        def phase_finish(self, phase_name: str) -> None:
            try:
                task = self.tasks.pop(phase_name, None)
                if task is not None:
                    progress.remove_task(task)
            except BaseException as exc:
                self._keep(exc)

    return Monitor()


def _fp16_onnx(onnx_file: Path, out: Path, version: str) -> Path:
    """The FP16 variant a strongly typed build needs; says how to get it on a bare device."""
    try:
        import onnx  # noqa: F401

        from ..quantize.fp16 import convert_fp16_onnx
    except ImportError:
        raise BackendUnavailableError(
            f"FP16 on TensorRT {version} needs an FP16 ONNX model and this machine has no "
            "`onnx` to make one: export it on a desktop with `cifrenet-edge export --precision "
            "fp16 --target trt10|trt11` and build from that file, or pip install onnx "
            "onnxconverter-common"
        ) from None
    return convert_fp16_onnx(onnx_file, out).path


def _parse_onnx(trt: Any, network: Any, logger: Any, onnx_file: Path) -> Any:
    parser = trt.OnnxParser(network, logger)
    ok = parser.parse(onnx_file.read_bytes())
    if not ok:
        errs = [str(parser.get_error(i)).strip() for i in range(parser.num_errors)]
        first = "; ".join([e.splitlines()[0] for e in errs if e][:3]) or "no details"
        raise ExportError(
            f"TensorRT's ONNX parser rejected {onnx_file.name}: {first} (re-export for this "
            "TensorRT with `cifrenet-edge export --target ...`; see the README's deploying section)"
        )
    return parser


def _load_calibration(calib: Any, manifest: Manifest) -> Any:
    if calib is None:
        raise CalibrationError(
            "--int8-mode calibrator needs calibration images: pass --calib DIR (100-500 frames "
            "from the deployment camera)"
        )
    if hasattr(calib, "batches"):
        return calib
    from ..data.calibration import load_calibration

    return load_calibration(
        calib, manifest.nominal_wh, mean_bgr=list(manifest.mean_bgr), scale=manifest.scale
    )


def _check_graph(onnx_file: Path, version: str, src: Manifest) -> List[str]:
    """The rule table's graph rules on the file TensorRT will parse; returns warnings.

    A Jetson often lacks the ``onnx`` package: the rules then ran at export, for the
    manifest's ``--target``; say so when that target is not the TensorRT running here.
    """
    here = api.target_for_version(version)
    try:
        import onnx
    except ImportError:
        exported = src.target
        if exported and exported != here:
            return [
                f"{onnx_file.name} was exported and checked for --target {exported}, this is "
                f"TensorRT {version} (--target {here}); without the onnx package its graph "
                f"cannot be re-checked here: re-export with --target {here} if the build fails"
            ]
        return []
    v = api.parse_version(version)
    model = onnx.load(str(onnx_file), load_external_data=False)
    where = f"TensorRT {version} cannot build {onnx_file.name}"
    return rules.check_graph(model, rules.version_span(v), where, v)


def _configure(trt: Any, caps: api.TrtCaps, config: Any, plan: BuildPlan, mib: Any) -> None:
    if mib is not None:
        nbytes = int(mib) << 20
        if caps.memory_pools:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, nbytes)
        else:
            config.max_workspace_size = nbytes
    elif not caps.memory_pools:
        config.max_workspace_size = 1 << 30  # 8.2 defaults to 0 bytes of scratch space
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED


def _add_profile(builder: Any, config: Any, src: Manifest, version: str) -> Any:
    """The dynamic export's one optimisation profile (None for a static model)."""
    dyn = src.dynamic
    if not dyn:
        return None
    in_name = src.input_name
    b = dyn.batch or (1, 1, 1)
    shapes = {
        "min": _shape(b[0], dyn.min),
        "opt": _shape(b[1], dyn.opt),
        "max": _shape(b[2], dyn.max),
    }
    profile = builder.create_optimization_profile()
    try:  # pyCore.cpp: RuntimeError "Shape provided for opt is inconsistent with other shapes."
        profile.set_shape(in_name, shapes["min"], shapes["opt"], shapes["max"])
        accepted = int(config.add_optimization_profile(profile)) >= 0  # -1: invalid input
    except RuntimeError:
        accepted = False
    if not accepted:
        raise ExportError(
            f"TensorRT {version} refused the optimisation profile of {in_name!r} (min "
            f"{shapes['min']}, opt {shapes['opt']}, max {shapes['max']}): re-export with "
            "--dynamic --min-res WxH --max-res WxH around --res"
        )
    return shapes


def _setup_dla(trt: Any, config: Any, network: Any, dla_core: int, say: Any) -> Dict[str, int]:
    """DLA as default device (the rules checked precision, shapes and the core index)."""
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = int(dla_core)
    on_dla = sum(
        1 for i in range(network.num_layers) if config.can_run_on_DLA(network.get_layer(i))
    )
    say(
        f"DLA core {dla_core}: {on_dla} of {network.num_layers} layers can run on DLA, "
        f"{network.num_layers - on_dla} fall back to the GPU"
    )
    return {"dla_layers": on_dla, "gpu_layers": network.num_layers - on_dla}


def _attach_calibrator(
    trt: Any,
    cuda: Any,
    builder: Any,
    config: Any,
    src: Dict[str, Any],
    calib: Any,
    out: Path,
    onnx_sha: str,
    version: str,
) -> Tuple[Any, Dict[str, Any]]:
    """The entropy calibrator on ``config``; returns it and the calibration fingerprint."""
    from .int8_calibrator import (
        calibration_cache_key,
        calibration_cache_path,
        make_entropy_calibrator,
    )

    data = _load_calibration(calib, src)
    calib_fp = dict(data.fingerprint)
    cache_file = calibration_cache_path(out, calibration_cache_key(calib_fp, onnx_sha, version))
    dyn, in_name = src.dynamic, src.input_name
    # A static batch-N engine reads N frames per calibration batch (dynamic: the
    # calibration profile below is fixed at the frames' own batch of 1).
    cal_n = src.call_batch
    if len(data.batches) < cal_n:
        raise CalibrationError(
            f"{len(data.batches)} calibration images for a batch-{cal_n} engine: pass at "
            f"least {cal_n} (100-500 frames from the deployment camera)"
        )
    with cuda.activate():
        calibrator = make_entropy_calibrator(
            trt, cuda, data.batches, cache_file, in_name, batch_size=cal_n
        )
    try:
        config.int8_calibrator = calibrator
        if dyn:
            shp = tuple(data.batches[0].shape)
            cal_profile = builder.create_optimization_profile()
            cal_profile.set_shape(in_name, shp, shp, shp)
            if not config.set_calibration_profile(cal_profile):
                raise CalibrationError(
                    f"TensorRT {version} refused the calibration profile {shp}: calibration "
                    "frames must lie inside the model's dynamic range (re-export with a "
                    "--min-res/--max-res range that holds them)"
                )
    except BaseException:
        with cuda.activate():
            calibrator.release()
        raise
    return calibrator, calib_fp


def _run_build(
    trt: Any, builder: Any, network: Any, config: Any, show_bars: bool, console: Any, label: str
) -> Tuple[Any, Optional[BaseException]]:
    """build_serialized_network with progress; returns (plan or None, progress error)."""
    if not show_bars:
        with _spinner(console, label, console is None):
            return builder.build_serialized_network(network, config), None
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console.print(escape_markup(label))
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        # keep a Python reference: the builder calls back into it while building
        monitor = make_progress_monitor(trt, progress)
        config.progress_monitor = monitor
        serialized = builder.build_serialized_network(network, config)
        return serialized, monitor.error


def _check_outcome(
    serialized: Any,
    progress_error: Optional[BaseException],
    calibrator: Any,
    version: str,
    precision: str,
) -> None:
    """Raise what went wrong inside TensorRT's callbacks, before anything is written."""
    for error in (progress_error, getattr(calibrator, "error", None)):
        if isinstance(error, KeyboardInterrupt):
            raise error
    cal_error = getattr(calibrator, "error", None)
    if cal_error is not None:
        raise CalibrationError(
            f"calibration stopped early ({type(cal_error).__name__}: {first_line(cal_error)}); "
            "neither the engine nor a calibration cache of the partial data was written: "
            "check the --calib frames and rerun"
        )
    if serialized is None and progress_error is not None:
        raise ExportError(
            f"the build was cancelled: the progress display failed "
            f"({type(progress_error).__name__}: {first_line(progress_error)}); rerun with --quiet"
        )
    if serialized is None:
        hint = "try a larger --workspace, another --precision, or re-export the ONNX"
        if precision == "int8" and calibrator is None:
            # a Q/DQ layer TensorRT has no INT8 kernel for fails the whole build ("Could not
            # find any implementation", NVIDIA/TensorRT#3385: Q/DQ depthwise conv + fused
            # activation on 8.5.2): keep those layers float, or let TensorRT choose
            hint = (
                "if the log says 'Could not find any implementation' for a Q/DQ depthwise "
                "conv, re-export with --keep-float classifier,resize,dw-prelu, or build with "
                "--int8-mode calibrator (TensorRT 8.x/10.x); else " + hint
            )
        raise ExportError(
            f"TensorRT {version} could not build the {precision} engine (its log above says "
            f"why): {hint}"
        )


def _engine_manifest(src: Manifest, **k: Any) -> Manifest:
    """The engine's sidecar: the ONNX manifest plus what built the engine, and how."""
    dyn, plan, dev, version = src.dynamic, k["plan"], k["dev"], k["version"]
    precision, profile_shapes = k["precision"], k["profile_shapes"]
    return src.with_(
        kind="engine",
        precision=precision,
        target=api.target_for_version(version),
        toolkit_version=TOOLKIT_VERSION,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        source={"onnx": str(k["onnx_file"]), "onnx_sha256": k["onnx_sha"]},
        calibration=k["calib_fp"],
        engine={
            "tensorrt": version,
            "cuda_runtime": dev.get("cuda_runtime"),
            "cuda_driver": dev.get("cuda_driver"),
            "cuda_library": dev.get("cuda_library"),
            "gpu": dev.get("name"),
            "compute_capability": dev["compute_capability"],
            "precision": precision,
            "int8_mode": (k["int8_mode"] or "qdq") if precision == "int8" else None,
            "network_flags": list(plan.network_flags),
            "builder_flags": list(plan.builder_flags),
            "strongly_typed": plan.strongly_typed,
            "onnx_variant": plan.onnx_variant,
            "workspace_mib": k["workspace_mib"],
            "dla_core": k["dla_core"],
            "dla": k["dla_report"],
            "input_shape": None if dyn else list(_shape(src.call_batch, src.nominal_wh)),
            "profile": {n: list(v) for n, v in profile_shapes.items()} if profile_shapes else None,
            "onnx_sha256": k["onnx_sha"],
            "timing_cache": str(k["timing_cache"]),
            "build_seconds": round(k["seconds"], 1),
            "warnings": k["warnings"],
        },
    )


def build_engine(
    onnx_path: PathLike,
    *,
    precision: str = "fp32",
    output: Optional[PathLike] = None,
    workspace_mib: Optional[int] = None,
    timing_cache: Optional[PathLike] = None,
    dla_core: Optional[int] = None,
    int8_mode: Optional[str] = "qdq",
    calib: Any = None,
    quiet: bool = False,
    console: Any = None,
) -> EngineResult:
    """Build a serialized engine from a cifrenet-edge ONNX export and write its manifest.

    ``timing_cache``: a file reused across builds (created if missing, merged and saved back
    atomically under a lock); default ``<output>.timing.cache``. ``calib``: CalibrationData
    or a folder, for ``int8_mode="calibrator"``. Before anything is built, the rule table
    (``trt.rules``) is run with this machine's TensorRT, GPU and DLA cores. Raises
    BackendUnavailableError on a machine without TensorRT/CUDA, saying what to install.
    """
    onnx_file = Path(onnx_path)
    if not onnx_file.is_file():
        raise ModelFileError(f"ONNX file {onnx_file} does not exist: export it first")
    src = read_manifest(onnx_file)
    if src.kind != "onnx":
        raise ModelFileError(f"{onnx_file} is a {src.kind} artifact, not an ONNX export")
    out = Path(output) if output else default_engine_path(onnx_file, precision)
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    ensure_writable_dir(out)  # now, not after a build of minutes (the engine is written last)
    pre = _preflight()  # the device check, before the builder and the ONNX are touched
    trt, version, cuda, dev = pre.trt, pre.version, pre.cuda, pre.device
    caps = api.capabilities(version)
    cc = dev["compute_capability"]
    # One logger for the process, one builder for the build: TensorRT keeps the first logger
    # it is given as its global one (pyCore.cpp: py::keep_alive<1, 2> ties it only to that
    # builder), so a throwaway logger freed here would leave it pointing at freed memory.
    logger = api.shared_logger(trt)
    builder = trt.Builder(logger)
    dla_cores = None
    if dla_core is not None and int(dla_core) >= 0:
        dla_cores = int(builder.num_DLA_cores)
    plan = plan_build(
        caps,
        precision,
        int8_mode,
        src.precision,
        cc,
        dla_core,
        dynamic=src.dynamic is not None,
        dla_cores=dla_cores,
        gpu=dev.get("name"),
    )
    warnings = list(pre.warnings) + list(plan.warnings)
    if console is None and not quiet:
        try:  # a build takes minutes on a Jetson: show progress even when called from code
            from rich.console import Console

            console = Console(stderr=True)
        except ImportError:
            console = None
    if quiet:
        console = None
    say = (lambda msg: None) if console is None else (lambda msg: console.print(msg))

    net_flags = 0
    for name in plan.network_flags:
        net_flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(net_flags)
    config = builder.create_builder_config()
    onnx_sha = sha256_file(onnx_file)
    calib_fp = src.calibration

    with tempfile.TemporaryDirectory(prefix="cifrenet-trt-") as tmp:
        parse_file = onnx_file
        if plan.onnx_variant == "fp16":
            parse_file = _fp16_onnx(onnx_file, Path(tmp) / "model_fp16.onnx", version)
        warnings += _check_graph(parse_file, version, src)
        for w in warnings:
            say(f"[yellow]warning:[/] {escape_markup(w)}")
        # The parser owns the weights the network points to: it must outlive the build.
        parser = _parse_onnx(trt, network, logger, parse_file)
        _configure(trt, caps, config, plan, workspace_mib)
        profile_shapes = _add_profile(builder, config, src, version)
        dla_report = None
        if dla_core is not None:
            dla_report = _setup_dla(trt, config, network, int(dla_core), say)
        cache_file_t = Path(timing_cache) if timing_cache else Path(str(out) + ".timing.cache")
        _open_timing_cache(config, cache_file_t, say)
        calibrator = None
        if plan.calibrator:
            calibrator, calib_fp = _attach_calibrator(
                trt, cuda, builder, config, src, calib, out, onnx_sha, version
            )

        label = f"building {precision.upper()} engine with TensorRT {version} on {dev['name']}"
        bars = caps.progress_monitor and console is not None
        start = time.monotonic()
        with cuda.activate(), _released(calibrator):
            serialized, progress_error = _run_build(
                trt, builder, network, config, bars, console, label
            )
        seconds = time.monotonic() - start
        del parser  # only now (see above)
        _check_outcome(serialized, progress_error, calibrator, version, precision)
        _save_timing_cache(config, cache_file_t)
        write_bytes_atomic(out, bytes(serialized))

    manifest = _engine_manifest(
        src,
        version=version,
        dev=dev,
        precision=precision,
        int8_mode=int8_mode,
        plan=plan,
        onnx_file=onnx_file,
        onnx_sha=onnx_sha,
        calib_fp=calib_fp,
        workspace_mib=workspace_mib,
        dla_core=dla_core,
        dla_report=dla_report,
        profile_shapes=profile_shapes,
        timing_cache=cache_file_t,
        seconds=seconds,
        warnings=warnings,
    )
    manifest_path = write_manifest(out, manifest)
    say(
        f"[green]engine[/] {escape_markup(str(out))} ({seconds:.0f} s build, manifest "
        f"{escape_markup(manifest_path.name)})"
    )
    return EngineResult(out, manifest_path, manifest, seconds, warnings)


def main(argv: Optional[List[str]] = None) -> int:
    """``python3 -m cifrenet_edge.trt.build MODEL.onnx ...``: build on a device without PyTorch.

    A Jetson builds its own engines (they are tied to its TensorRT and GPU) but rarely has
    PyTorch for ``cifrenet-edge export``: copy the exported ONNX (and its ``.json``) there and
    run this. Needs numpy, tensorrt and cuda-python or pycuda (+ OpenCV for --calib); Python 3.8.
    """
    import argparse
    import sys

    from ..errors import CifreNetError

    p = argparse.ArgumentParser(
        prog="python3 -m cifrenet_edge.trt.build",
        description="Build a TensorRT engine (+ manifest) from a cifrenet-edge ONNX export.",
    )
    p.add_argument("onnx", help="ONNX file exported by cifrenet-edge (with its .json sidecar)")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS)
    p.add_argument("--output", "-o", default=None, help="engine file (default beside the ONNX)")
    p.add_argument("--workspace", type=int, default=None, help="builder workspace in MiB")
    p.add_argument("--timing-cache", default=None, help="timing cache file (reused, updated)")
    p.add_argument(
        "--dla-core",
        type=int,
        default=None,
        help="Jetson DLA core 0 or 1 (static models, FP16 or calibrated INT8; GPU fallback)",
    )
    p.add_argument("--int8-mode", default="qdq", choices=INT8_MODES)
    p.add_argument("--calib", default=None, help="calibration images (--int8-mode calibrator)")
    p.add_argument("--quiet", "-q", action="store_true")
    a = p.parse_args(argv)
    console = None
    if not a.quiet:
        try:
            from rich.console import Console

            console = Console()
        except ImportError:  # rich is optional on a device: plain output
            console = None
    try:
        res = build_engine(
            a.onnx,
            precision=a.precision,
            output=a.output,
            workspace_mib=a.workspace,
            timing_cache=a.timing_cache,
            dla_core=a.dla_core,
            int8_mode=a.int8_mode,
            calib=a.calib,
            quiet=a.quiet,
            console=console,
        )
    except CifreNetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:  # a package the device lacks (OpenCV for --calib, onnx ...)
        print(
            f"error: {exc} (pip install the package named, or see the README's Jetson section)",
            file=sys.stderr,
        )
        return 2
    print(f"{res.path} ({res.build_seconds:.0f} s)")
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
