"""The model cache: the ONNX files, INT8 models, checkpoints and engines the rows run on."""

import contextlib
import io
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .. import __version__
from ..errors import CifreNetError, ConfigError, ModelFileError
from ..manifest import Manifest
from .constants import CALIB_COUNT
from .system import _dist_version

OPEN_GATES = {"min_agreement": 0.0, "min_class_agreement": 0.0}
# Min-max ranges: with the bench's few calibration scenes, the entropy calibrator's
# histograms are too sparse (probe model at 640x360, 8 scenes: 0.92 agreement with FP32 on
# the bench's frames with min-max, 0.87 with entropy on 24 scenes).
CALIB_METHOD = "minmax"


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
    from .._io import sha256_file

    return "w" + sha256_file(p)[:10]


def _manifest_ok(path: Path, precision: str) -> bool:
    """A cached artifact is reused only when complete and made by this toolkit version."""
    if not path.is_file():
        return False
    try:
        from ..manifest import read_manifest

        m = read_manifest(path)
    except Exception:
        return False
    return m.toolkit_version == __version__ and m.precision == precision


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
        from ..export import export_onnx

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
                from ..trt.build import build_engine

                t0 = time.perf_counter()
                log(f"building {eng.name} ...")
                build_engine(str(src), precision=p, output=str(eng))
                out.actions.append(f"built {eng.name} in {time.perf_counter() - t0:.1f} s")
            except CifreNetError as exc:
                out.failures[f"engine:{p}"] = f"engine build failed: {exc}"
                continue
        out.engines[p] = eng
    return out


PROBE_WH = (256, 128)  # the probe is fitted here (seconds); it runs at any resolution


def probe_weights(
    preset: str, cache: Path, log: Callable[[str], None] = lambda s: None
) -> Tuple[Optional[str], Optional[str]]:
    """(checkpoint, note) of the probe model for ``preset``, made once into the cache.

    Only the cityscapes preset has one (the synthetic scenes carry its classes); other
    presets keep untrained weights, and their INT8 agreement says so in the report.
    """
    if preset != "cityscapes":
        return None, None
    path = cache / f"probe_{preset}_{PROBE_WH[0]}x{PROBE_WH[1]}_seed0_v{__version__}.pth"
    if not path.is_file():
        from ..model.linear_probe import make_probe_checkpoint

        log(f"fitting the probe model {path.name} ...")
        cache.mkdir(parents=True, exist_ok=True)
        make_probe_checkpoint(path, wh=PROBE_WH)
    return str(path), (
        f"weights: the probe model ({path.name}: random backbone, BatchNorm re-estimated and "
        "classifier fitted on synthetic street scenes) so that INT8 agreement with FP32 means "
        "something; speed does not depend on weights, and a trained model's margins are "
        "larger (pass --weights for yours)"
    )


def calibration_dir(cache: Path, wh: Tuple[int, int]) -> Path:
    return cache / f"calib_synthetic_{wh[0]}x{wh[1]}_{CALIB_COUNT}"


def _quantize(fp32: Path, int8: Path, wh: Tuple[int, int], preset: str, cache: Path) -> None:
    from ..data.calibration import load_calibration
    from ..data.synthetic import write_synthetic_dataset
    from ..presets import get_preset
    from ..quantize import quantize_onnx

    meta = get_preset(preset).metadata()
    cdir = calibration_dir(cache, wh)
    images = cdir / "images" / "train"
    if not (images.is_dir() and len(list(images.glob("*.png"))) >= CALIB_COUNT):
        write_synthetic_dataset(cdir, CALIB_COUNT, wh, seed=0, val_fraction=0.0, preset=preset)
    # A speed benchmark needs representative activations, not a deployment-grade range
    # estimate: the "use a few hundred frames" advice and ORT's progress prints are noise here.
    calib_log = logging.getLogger("cifrenet_edge.data.calibration")
    level = calib_log.level
    calib_log.setLevel(logging.ERROR)
    try:
        calib = load_calibration(
            str(images), wh, count=CALIB_COUNT, mean_bgr=meta["mean_bgr"], scale=meta["scale"]
        )
        # Gates off: a speed benchmark must time INT8 whatever its accuracy; the accuracy is
        # measured and shown beside every INT8 row instead (bench/accuracy.py).
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_onnx(
                str(fp32),
                calib=calib,
                output=str(int8),
                quiet=True,
                gates=OPEN_GATES,
                method=CALIB_METHOD,
            )
    finally:
        calib_log.setLevel(level)


def torch_checkpoint(preset: str, weights: Optional[str], cache: Path) -> Path:
    """The PyTorch row's model: the given checkpoint, else the same seeded init the export uses."""
    if weights:
        return Path(weights).expanduser()
    path = cache / f"{preset}_init-seed0_v{__version__}.pth"
    if not path.is_file():
        import torch

        from ..model.weights import build_model, save_checkpoint

        torch.manual_seed(0)  # export/graph.py seeds the same way: both rows run the same weights
        model, _ = build_model(preset)
        save_checkpoint(model, path, {"trained": False, "init_seed": 0})
    return path


def _model_fits(path: Path, manifest: Manifest, backend: str, precision: str) -> Optional[str]:
    """With --model the file fixes precision and what can open it."""
    kind = manifest.kind
    mp = manifest.precision
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
        w = manifest.weights_path
        if not (w and Path(w).is_file()):
            return (
                f"PyTorch runs checkpoints, and {path.name}'s manifest names none that exists: "
                "pass the .pth with --model, or use --preset"
            )
    if kind == "torch" and backend != "torch":
        return f"{path.name} is a PyTorch checkpoint: export it (or use --preset) for {backend}"
    return None


def _prepared_from_model(
    path: Path, manifest: Manifest, wh: Tuple[int, int], batch: int
) -> Prepared:
    res = manifest.resolution
    if res is not None and tuple(res) != tuple(wh) and not manifest.dynamic:
        raise ConfigError(
            f"{path.name} is fixed at {res[0]}x{res[1]}: pass --res {res[0]}x{res[1]} or use "
            "--preset to export one per resolution"
        )
    mb = manifest.batch
    if mb and mb != batch and not manifest.dynamic:
        raise ConfigError(f"{path.name} has a fixed batch of {mb}: pass --batch {mb}")
    p = Prepared()
    precision = manifest.precision
    kind = manifest.kind
    if kind == "engine":
        p.engines[precision] = path
    elif kind == "torch":
        p.torch = path
    else:
        p.onnx[precision] = path
        w = manifest.weights_path
        if w and Path(w).is_file():
            p.torch = Path(w)
    return p
