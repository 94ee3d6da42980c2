"""ONNX -> TensorRT engine + manifest, on whichever TensorRT generation the machine has.

The same ``export --format engine`` must work on a 1080 Ti (TRT 8.6), a Jetson Nano (8.2),
Xavier (8.5), Orin (10.3 / 10.16) and new GPUs (11.x). Which calls are made is decided by
``plan_build`` (a pure function of the version's capabilities, the precision and the GPU),
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
from .._io import PathLike, sha256_file, write_bytes_atomic
from ..errors import (
    BackendUnavailableError,
    CalibrationError,
    ConfigError,
    ExportError,
    ModelFileError,
)
from ..manifest import model_resolution, read_manifest, write_manifest
from . import api

PRECISIONS = ("fp32", "fp16", "int8")
INT8_MODES = ("qdq", "calibrator")


class BuildPlan(NamedTuple):
    """What to ask TensorRT for; every name is a member of the version's enums."""

    network_flags: Tuple[str, ...]  # NetworkDefinitionCreationFlag members
    builder_flags: Tuple[str, ...]  # BuilderFlag members
    onnx_variant: str  # "as_is" or "fp16" (convert to FP16 ONNX with FP32 I/O first)
    calibrator: bool  # attach IInt8EntropyCalibrator2
    strongly_typed: bool  # precision comes from the graph's tensor types
    warnings: Tuple[str, ...]


class EngineResult(NamedTuple):
    path: Path
    manifest_path: Path
    manifest: Dict[str, Any]
    build_seconds: float
    warnings: List[str]


def plan_build(
    caps: api.TrtCaps,
    precision: str,
    int8_mode: Optional[str] = "qdq",
    onnx_precision: str = "fp32",
    compute_capability: Optional[str] = None,
    dla_core: Optional[int] = None,
) -> BuildPlan:
    """Decide flags and model variant; raises ConfigError/BackendUnavailableError to refuse."""
    from ..env import precision_support

    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    int8_mode = int8_mode or "qdq"
    if int8_mode not in INT8_MODES:
        raise ConfigError(f"unknown --int8-mode {int8_mode!r}: use qdq or calibrator")
    ver = ".".join(str(p) for p in caps.version)
    support = precision_support(compute_capability) if compute_capability else None
    net: List[str] = ["EXPLICIT_BATCH"] if caps.explicit_batch_flag == "required" else []
    flags: List[str] = []
    warnings: List[str] = []
    variant, calibrator, strongly = "as_is", False, caps.always_strongly_typed

    if onnx_precision == "int8" and not (precision == "int8" and int8_mode == "qdq"):
        raise ConfigError(
            f"the ONNX model is already INT8 (Q/DQ) but {precision}"
            f"{' ' + int8_mode if precision == 'int8' else ''} was asked: build from the FP32 "
            "ONNX, or use --precision int8 (Q/DQ)"
        )
    if onnx_precision == "fp16" and precision != "fp16":
        raise ConfigError(
            f"the ONNX model is FP16 but {precision} was asked: build from the FP32 ONNX"
        )
    if precision == "fp16":
        if support is not None and not support["fast_fp16"]:
            warnings.append(
                f"this GPU (compute capability {compute_capability}) has no fast FP16 "
                f"({support['fp16_note']}): an FP16 engine will not be faster than FP32; "
                "use --precision fp32 or --precision int8"
            )
        if onnx_precision == "fp16":
            # Already an FP16 graph (export converts for TRT 11): its tensor types decide.
            if caps.strongly_typed_flag:
                net.append("STRONGLY_TYPED")
                strongly = True
            elif caps.precision_flags:
                flags.append("FP16")
        elif caps.precision_flags:
            flags.append("FP16")
        else:
            # 10.12 deprecates and 11.0 removes BuilderFlag.FP16: FP16 comes from the graph.
            variant = "fp16"
            if caps.strongly_typed_flag:
                net.append("STRONGLY_TYPED")
            strongly = True
    elif precision == "int8":
        if support is not None and not support["fast_int8"]:
            warnings.append(
                f"this GPU (compute capability {compute_capability}) has no fast INT8 "
                f"({support['int8_note']}): TensorRT will fall back to slower kernels"
            )
        if int8_mode == "calibrator":
            if not caps.implicit_int8:
                raise BackendUnavailableError(
                    f"TensorRT {ver} removed implicit INT8 calibration: use the default "
                    "--int8-mode qdq (the Q/DQ model from `cifrenet-edge export --precision int8`)"
                )
            if onnx_precision != "fp32":
                raise ConfigError(
                    f"--int8-mode calibrator needs the FP32 ONNX model, got a {onnx_precision} "
                    "one: pass the FP32 export"
                )
            flags.append("INT8")
            if caps.precision_flags and (support is None or support["fast_fp16"]):
                flags.append("FP16")  # layers TRT cannot run in INT8 fall back to FP16, not FP32
            calibrator = True
            if caps.version >= (10, 1, 0):
                warnings.append(
                    f"implicit INT8 calibration is deprecated since TensorRT 10.1 (running "
                    f"{ver}); the default --int8-mode qdq is the supported path"
                )
        else:
            if onnx_precision != "int8":
                raise ConfigError(
                    "--precision int8 (Q/DQ) needs the quantized ONNX model: run "
                    "`cifrenet-edge export --precision int8 --calib DIR` (or pass "
                    "--int8-mode calibrator on TensorRT 8.x/10.x)"
                )
            if caps.precision_flags_present and not caps.strongly_typed_flag:
                flags.append("INT8")  # TRT 8.x needs the flag to honour Q/DQ layers
            elif caps.strongly_typed_flag:
                net.append("STRONGLY_TYPED")  # 10.x: the Q/DQ graph fixes every precision
                strongly = True
    if dla_core is not None:
        if precision == "fp32":
            raise ConfigError(
                "DLA runs FP16 and INT8 only: use --precision fp16 or int8 with --dla-core"
            )
        flags.append("GPU_FALLBACK")
    return BuildPlan(tuple(net), tuple(flags), variant, calibrator, strongly, tuple(warnings))


def default_engine_path(onnx_path: Path, precision: str) -> Path:
    """Beside the ONNX file, its precision tag swapped: m_fp32_trt10.onnx -> m_fp16_trt10.engine."""
    stem, n = re.subn(r"_(fp32|fp16|int8)(?=_|$)", f"_{precision}", onnx_path.stem, count=1)
    if n == 0:
        stem = f"{stem}_{precision}"
    return onnx_path.with_name(stem + ".engine")


def preflight() -> str:
    """Raise BackendUnavailableError now if no engine can be built here; returns the version.

    For callers with slow stages before the build (``export --format engine`` exports and
    quantizes first): fail in a second, not after minutes of work.
    """
    trt = api.import_tensorrt()
    cuda = _open_cuda()
    with cuda.activate():
        cuda.device_info()
    return api.trt_version(trt)


def _open_cuda() -> Any:
    """The CUDA wrapper of device 0 (tests replace it with a recording stand-in)."""
    from ..runtime.cuda import open_cuda

    return open_cuda(0)


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
    """An ``IProgressMonitor`` (TRT 10+) that shows the builder's phases as rich progress bars."""
    base = trt.IProgressMonitor

    class Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.tasks: Dict[str, Any] = {}

        def phase_start(self, phase_name: str, parent_phase: Optional[str], num_steps: int) -> None:
            indent = "  " if parent_phase else ""
            self.tasks[phase_name] = progress.add_task(indent + phase_name, total=num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            if phase_name in self.tasks:
                progress.update(self.tasks[phase_name], completed=step + 1)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            task = self.tasks.pop(phase_name, None)
            if task is not None:
                progress.remove_task(task)

    return Monitor()


def _fp16_onnx(onnx_file: Path, out: Path, version: str) -> Path:
    """The FP16 variant a strongly typed build needs; says how to get it on a bare device."""
    try:
        import onnx  # noqa: F401

        from ..fp16 import convert_fp16_onnx
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
        errs = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        first = "; ".join(e.splitlines()[0] for e in errs[:3]) or "no details"
        raise ExportError(
            f"TensorRT's ONNX parser rejected {onnx_file.name}: {first} (re-export for this "
            "TensorRT with `cifrenet-edge export --target ...`; see the README's deploying section)"
        )
    return parser


def _load_calibration(calib: Any, manifest: Dict[str, Any]) -> Any:
    if calib is None:
        raise CalibrationError(
            "--int8-mode calibrator needs calibration images: pass --calib DIR (100-500 frames "
            "from the deployment camera)"
        )
    if hasattr(calib, "batches"):
        return calib
    from ..calib import load_calibration

    wh = model_resolution(manifest) or tuple(manifest["dynamic"]["opt"])
    return load_calibration(calib, wh, mean_bgr=manifest["mean_bgr"], scale=manifest["scale"])


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

    ``timing_cache``: a file reused across builds (created if missing, saved back
    atomically); default ``<output>.timing.cache``. ``calib``: CalibrationData or a folder,
    for ``int8_mode="calibrator"``. Raises BackendUnavailableError on a machine without
    TensorRT/CUDA, saying what to install.
    """
    onnx_file = Path(onnx_path)
    if not onnx_file.is_file():
        raise ModelFileError(f"ONNX file {onnx_file} does not exist: export it first")
    src = read_manifest(onnx_file)
    if src.get("kind") not in (None, "onnx"):
        raise ModelFileError(f"{onnx_file} is a {src.get('kind')} artifact, not an ONNX export")
    out = Path(output) if output else default_engine_path(onnx_file, precision)
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    trt = api.import_tensorrt()
    version = api.trt_version(trt)
    caps = api.capabilities(version)
    cuda = _open_cuda()
    with cuda.activate():
        dev = cuda.device_info()
    cc = dev["compute_capability"]
    plan = plan_build(caps, precision, int8_mode, str(src.get("precision", "fp32")), cc, dla_core)
    warnings = list(plan.warnings)
    if console is None and not quiet:
        try:  # a build takes minutes on a Jetson: show progress even when called from code
            from rich.console import Console

            console = Console(stderr=True)
        except ImportError:
            console = None
    say = (lambda msg: None) if quiet or console is None else console.print
    for w in warnings:
        say(f"[yellow]warning:[/] {w}")

    logger = api.shared_logger(trt)  # one per process: see its docstring
    builder = trt.Builder(logger)
    net_flags = 0
    for name in plan.network_flags:
        net_flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(net_flags)
    config = builder.create_builder_config()

    with tempfile.TemporaryDirectory(prefix="cifrenet-trt-") as tmp:
        parse_file = onnx_file
        if plan.onnx_variant == "fp16":
            parse_file = _fp16_onnx(onnx_file, Path(tmp) / "model_fp16.onnx", version)
        # The parser owns the weights the network points to: it must outlive the build.
        parser = _parse_onnx(trt, network, logger, parse_file)

        if workspace_mib is not None:
            nbytes = int(workspace_mib) << 20
            if caps.memory_pools:
                config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, nbytes)
            else:
                config.max_workspace_size = nbytes
        elif not caps.memory_pools:
            config.max_workspace_size = 1 << 30  # 8.2 defaults to 0 bytes of scratch space
        for name in plan.builder_flags:
            config.set_flag(getattr(trt.BuilderFlag, name))
        config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED

        dyn = src.get("dynamic")
        in_name = src.get("input_name", "input")
        profile_shapes = None
        if dyn:
            b = dyn.get("batch") or [1, 1, 1]
            profile_shapes = {
                "min": _shape(b[0], dyn["min"]),
                "opt": _shape(b[1], dyn["opt"]),
                "max": _shape(b[2], dyn["max"]),
            }
            profile = builder.create_optimization_profile()
            profile.set_shape(
                in_name, profile_shapes["min"], profile_shapes["opt"], profile_shapes["max"]
            )
            config.add_optimization_profile(profile)

        dla_report = None
        if dla_core is not None:
            if builder.num_DLA_cores <= int(dla_core):
                raise BackendUnavailableError(
                    f"--dla-core {dla_core} asked but this device has {builder.num_DLA_cores} "
                    "DLA cores (Xavier/Orin AGX/NX have 1-2; Orin Nano and desktops none): "
                    "drop --dla-core"
                )
            config.default_device_type = trt.DeviceType.DLA
            config.DLA_core = int(dla_core)
            on_dla = sum(
                1 for i in range(network.num_layers) if config.can_run_on_DLA(network.get_layer(i))
            )
            dla_report = {"dla_layers": on_dla, "gpu_layers": network.num_layers - on_dla}
            say(
                f"DLA core {dla_core}: {on_dla} of {network.num_layers} layers can run on DLA, "
                f"{network.num_layers - on_dla} fall back to the GPU"
            )

        calibrator = None
        calib_fp = src.get("calibration")
        onnx_sha = sha256_file(onnx_file)
        if plan.calibrator:
            from .calibrator import (
                calibration_cache_key,
                calibration_cache_path,
                make_entropy_calibrator,
            )

            data = _load_calibration(calib, src)
            calib_fp = dict(data.fingerprint)
            key = calibration_cache_key(calib_fp, onnx_sha, version)
            cache_file = calibration_cache_path(out, key)
            # A static batch-N engine reads N frames per calibration batch (dynamic: the
            # calibration profile below is fixed at the frames' own batch of 1).
            cal_n = 1 if dyn else int(src.get("batch") or 1)
            if len(data.batches) < cal_n:
                raise CalibrationError(
                    f"{len(data.batches)} calibration images for a batch-{cal_n} engine: pass at "
                    f"least {cal_n} (100-500 frames from the deployment camera)"
                )
            with cuda.activate():
                calibrator = make_entropy_calibrator(
                    trt, cuda, data.batches, cache_file, in_name, batch_size=cal_n
                )
            config.int8_calibrator = calibrator
            if profile_shapes is not None:
                shp = tuple(data.batches[0].shape)
                cal_profile = builder.create_optimization_profile()
                cal_profile.set_shape(in_name, shp, shp, shp)
                config.set_calibration_profile(cal_profile)

        cache_file_t = Path(timing_cache) if timing_cache else Path(str(out) + ".timing.cache")
        cache_blob = cache_file_t.read_bytes() if cache_file_t.is_file() else b""
        cache = config.create_timing_cache(cache_blob)
        if cache is None or not config.set_timing_cache(cache, False):
            # A cache from another TensorRT/GPU is refused: start a fresh one, overwrite it.
            say(f"timing cache {cache_file_t} is from another TensorRT or GPU: starting anew")
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, False)

        label = f"building {precision.upper()} engine with TensorRT {version} on {dev['name']}"
        start = time.monotonic()
        with cuda.activate(), _released(calibrator):
            if caps.progress_monitor and not quiet and console is not None:
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

                say(label)
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
                    del monitor
            else:
                with _spinner(console, label, quiet):
                    serialized = builder.build_serialized_network(network, config)
        seconds = time.monotonic() - start
        del parser  # only now (see above)
        if serialized is None:
            raise ExportError(
                f"TensorRT {version} could not build the {precision} engine (its log above says "
                "why): try a larger --workspace, another --precision, or re-export the ONNX"
            )
        write_bytes_atomic(cache_file_t, bytes(config.get_timing_cache().serialize()))
        write_bytes_atomic(out, bytes(serialized))

    manifest = dict(src)
    manifest.update(
        {
            "kind": "engine",
            "precision": precision,
            "target": api.target_for_version(version),
            "toolkit_version": TOOLKIT_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "source": {"onnx": str(onnx_file), "onnx_sha256": onnx_sha},
            "calibration": calib_fp,
            "engine": {
                "tensorrt": version,
                "cuda_runtime": dev.get("cuda_runtime"),
                "cuda_driver": dev.get("cuda_driver"),
                "cuda_library": dev.get("cuda_library"),
                "gpu": dev.get("name"),
                "compute_capability": cc,
                "precision": precision,
                "int8_mode": (int8_mode or "qdq") if precision == "int8" else None,
                "network_flags": list(plan.network_flags),
                "builder_flags": list(plan.builder_flags),
                "strongly_typed": plan.strongly_typed,
                "onnx_variant": plan.onnx_variant,
                "workspace_mib": workspace_mib,
                "dla_core": dla_core,
                "dla": dla_report,
                "input_shape": None
                if dyn
                else list(_shape(src.get("batch", 1), src["resolution"])),
                "profile": {k: list(v) for k, v in profile_shapes.items()}
                if profile_shapes
                else None,
                "onnx_sha256": onnx_sha,
                "timing_cache": str(cache_file_t),
                "build_seconds": round(seconds, 1),
                "warnings": warnings,
            },
        }
    )
    manifest_path = write_manifest(out, manifest)
    say(f"[green]engine[/] {out} ({seconds:.0f} s build, manifest {manifest_path.name})")
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
    p.add_argument("--dla-core", type=int, default=None, help="Jetson DLA core (GPU fallback)")
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
    print(f"{res.path} ({res.build_seconds:.0f} s)")
    for w in res.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
