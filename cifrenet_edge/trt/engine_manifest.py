"""Refuse an engine built for another TensorRT or GPU before TensorRT sees it.

A serialized engine only loads on the TensorRT version and GPU architecture that built it.
Handed anything else, TensorRT prints "The engine plan file is not compatible with this
version of TensorRT" / "magic tag does not match" and returns None, or on some Jetson
releases crashes (NVIDIA/TensorRT#3073, dusty-nv/jetson-inference#426). The engine's JSON
sidecar records what built it; ``compare_engine`` is a pure function of (manifest, facts of
the running machine), so the refusal logic is tested without a GPU, and the error names both
sides and the exact command that rebuilds the engine here.

Stdlib only, Python 3.8 syntax: the runtime uses it on the robot.
"""

import re
import shlex
from typing import Any, Dict, List, Optional, Tuple

from ..errors import EngineMismatchError, ModelFileError
from ..manifest import Manifest, ManifestLike
from .api import parse_version, target_for_version


def _trt_triplet(text: Any) -> Optional[Tuple[int, int, int]]:
    try:
        return parse_version(str(text))
    except ValueError:
        return None


def _trt_build(text: Any) -> Optional[int]:
    """The build number of a full 'major.minor.patch.build' version ('10.3.0.30' -> 30)."""
    m = re.match(r"^\s*\d+\.\d+\.\d+\.(\d+)\s*$", str(text))
    return int(m.group(1)) if m else None


def rebuild_command(
    manifest: ManifestLike, engine_path: Any, facts: Optional[Dict[str, Any]] = None
) -> str:
    """The `cifrenet-edge export` command that rebuilds this engine on the running machine.

    ``--target`` follows the TensorRT running here (``facts``), not the one that built it.
    """
    manifest = Manifest.from_dict(manifest, engine_path)
    eng = manifest.engine or {}
    weights = manifest.weights_path
    parts = ["cifrenet-edge", "export"]
    if manifest.preset:
        parts += ["--preset", manifest.preset]
    if weights:
        parts += ["--weights", str(weights)]
    dyn = manifest.dynamic
    res = manifest.resolution
    if dyn:
        parts += ["--res", "{}x{}".format(*dyn.opt), "--dynamic"]
        parts += ["--min-res", "{}x{}".format(*dyn.min), "--max-res", "{}x{}".format(*dyn.max)]
    elif res:
        parts += ["--res", f"{res[0]}x{res[1]}"]
    here = (facts or {}).get("tensorrt")
    target = target_for_version(str(here)) if here else manifest.target
    if target:
        parts += ["--target", str(target)]
    precision = manifest.precision
    parts += ["--precision", precision]
    if precision == "int8":
        calib = manifest.calibration or {}
        calib_path = calib.get("path") or calib.get("source")
        parts += ["--calib", str(calib_path) if calib_path else "CALIB_DIR"]
        if eng.get("int8_mode") == "calibrator":
            parts += ["--int8-mode", "calibrator"]
    if eng.get("dla_core") is not None:
        parts += ["--dla-core", str(eng["dla_core"])]
    parts += ["--format", "engine", "--output", str(engine_path)]
    return " ".join(shlex.quote(p) for p in parts)


def compare_engine(manifest: ManifestLike, facts: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """(blocking mismatches, warnings) between an engine's manifest and the running machine.

    ``facts``: {"tensorrt": "10.3.0.30", "gpu": "Orin", "compute_capability": "8.7",
    "dla_cores": 2, ...} as ``runtime_facts`` returns. Rules, from TensorRT's own checks:
    the TensorRT major.minor.patch must match, and the build number too when both sides
    record one, on every version: TensorRT 8.6 refuses another build of its own release
    ("expecting library version 8.6.1.6 got 8.6.1.2, please rebuild", NVIDIA/TensorRT#3069,
    where the maintainer calls it expected), and NVIDIA's release properties say the
    "version numbers must match (in major, minor, patch, and build)"; the compute
    capability must match (engines
    hold SM-specific kernels); another GPU model of the same compute capability loads with
    TensorRT's own warning (tactics were timed on another card), so it is a warning here too;
    a DLA engine needs a DLA core.
    """
    errors = []  # type: List[str]
    warnings = []  # type: List[str]
    manifest = Manifest.from_dict(manifest)
    eng = manifest.engine
    if manifest.kind != "engine" or not isinstance(eng, dict):
        errors.append(
            f"manifest is not an engine manifest (kind {manifest.kind!r}, no 'engine' section)"
        )
        return errors, warnings
    built_trt, run_trt = eng.get("tensorrt"), facts.get("tensorrt")
    bt, rt = _trt_triplet(built_trt), _trt_triplet(run_trt)
    if bt is None:
        errors.append("engine manifest records no TensorRT version")
    elif rt is not None and bt != rt:
        errors.append(f"built with TensorRT {built_trt}, this machine runs TensorRT {run_trt}")
    elif rt is not None:
        bb, rb = _trt_build(built_trt), _trt_build(run_trt)
        if bb is not None and rb is not None and bb != rb:
            errors.append(
                f"built with TensorRT {built_trt}, this machine runs TensorRT {run_trt} "
                "(TensorRT loads engines of its own build only)"
            )
    built_cc, run_cc = eng.get("compute_capability"), facts.get("compute_capability")
    built_gpu, run_gpu = eng.get("gpu"), facts.get("gpu")
    if built_cc is None:
        errors.append("engine manifest records no GPU compute capability")
    elif run_cc is not None and str(built_cc) != str(run_cc):
        errors.append(
            f"built for {built_gpu} (compute capability {built_cc}), "
            f"this GPU is {run_gpu} (compute capability {run_cc})"
        )
    elif run_gpu and built_gpu and str(run_gpu) != str(built_gpu):
        warnings.append(
            f"engine built on {built_gpu}, running on {run_gpu} (same compute capability "
            f"{run_cc}): it loads, but its kernels were timed on the other GPU; "
            "rebuild here for best speed"
        )
    if eng.get("dla_core") is not None and int(facts.get("dla_cores") or 0) <= int(eng["dla_core"]):
        errors.append(
            "built for DLA core {}, this device has {} DLA cores".format(
                eng["dla_core"], int(facts.get("dla_cores") or 0)
            )
        )
    return errors, warnings


def _onnx_alternative(manifest: Manifest, engine_path: Any) -> str:
    """The PyTorch-free rebuild from the source ONNX, for devices without PyTorch."""
    onnx = manifest.source_onnx
    if not onnx:
        return ""
    parts = ["python3", "-m", "cifrenet_edge.trt.build", str(onnx)]
    parts += ["--precision", manifest.precision, "--output", str(engine_path)]
    if manifest.engine_field("int8_mode") == "calibrator":
        calib = (manifest.calibration or {}).get("source") or "CALIB_DIR"
        parts += ["--int8-mode", "calibrator", "--calib", str(calib)]
    return " (or, from its ONNX without PyTorch: {})".format(
        " ".join(shlex.quote(p) for p in parts)
    )


def check_engine(manifest: ManifestLike, facts: Dict[str, Any], engine_path: Any) -> List[str]:
    """Raise EngineMismatchError (one line: both sides + rebuild command); return warnings."""
    manifest = Manifest.from_dict(manifest, engine_path)
    errors, warnings = compare_engine(manifest, facts)
    if errors:
        raise EngineMismatchError(
            "engine {} cannot run here: {}; rebuild it on this machine with: {}{}".format(
                engine_path,
                "; ".join(errors),
                rebuild_command(manifest, engine_path, facts),
                _onnx_alternative(manifest, engine_path),
            )
        )
    return warnings


def runtime_facts(trt: Any, cuda_info: Dict[str, Any], dla_cores: int = 0) -> Dict[str, Any]:
    """What the running machine offers, in the keys ``compare_engine`` reads."""
    return {
        "tensorrt": str(getattr(trt, "__version__", "unknown")),
        "gpu": cuda_info.get("name"),
        "compute_capability": cuda_info.get("compute_capability"),
        "cuda_runtime": cuda_info.get("cuda_runtime"),
        "cuda_driver": cuda_info.get("cuda_driver"),
        "dla_cores": int(dla_cores),
    }


def require_engine_manifest(manifest: Optional[ManifestLike], engine_path: Any) -> Manifest:
    """An engine without its sidecar cannot be checked: refuse it with the fix."""
    if not manifest:
        raise ModelFileError(
            f"engine {engine_path} has no manifest {engine_path}.json: engines are tied to one "
            "TensorRT version and GPU, so keep the sidecar next to it or rebuild with "
            "`cifrenet-edge export --format engine`"
        )
    return Manifest.from_dict(manifest, engine_path)
