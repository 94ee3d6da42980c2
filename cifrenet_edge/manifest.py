"""The model manifest: what a runtime needs to use an artifact, written once at export.

Every artifact (``.onnx``, ``.engine``/``.plan``, ``.pth``) gets a JSON sidecar named
``<artifact>.json``; ONNX files also carry the same JSON in ``metadata_props`` under
``cifrenet_edge`` (plus a few flat keys for tools like Netron). Engines keep the manifest
outside the file so ``trtexec --loadEngine`` still loads them.

Torch-free, Python 3.8 syntax: the runtime reads manifests on the robot.
"""

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from ._io import PathLike, write_json_atomic
from .errors import ConfigError, ModelFileError

#: the precisions an artifact can carry (the manifest's ``precision``), lowest last
PRECISIONS = ("fp32", "fp16", "int8")

MANIFEST_FORMAT = "cifrenet-edge/1"
METADATA_KEY = "cifrenet_edge"
# What any runtime needs; a manifest missing one of these is unusable.
REQUIRED_KEYS = (
    "format",
    "kind",
    "precision",
    "num_classes",
    "classes",
    "palette_rgb",
    "channel_order",
    "input_layout",
    "mean_bgr",
    "scale",
    "input_name",
    "output_name",
)
# Flat ONNX metadata_props written beside the full JSON, for humans and other tools.
FLAT_KEYS = ("preset", "precision", "channel_order", "input_layout", "toolkit_version")


def sidecar_path(model_path: PathLike) -> Path:
    return Path(str(model_path) + ".json")


def write_manifest(model_path: PathLike, manifest: Dict[str, Any]) -> Path:
    """Validate and write the sidecar atomically; returns its path."""
    check_manifest(manifest, model_path)
    return write_json_atomic(sidecar_path(model_path), manifest)


def onnx_metadata_props(manifest: Dict[str, Any]) -> Dict[str, str]:
    """The key/value strings to embed in an ONNX model's metadata_props."""
    props = {METADATA_KEY: json.dumps(manifest, sort_keys=True)}
    for key in FLAT_KEYS:
        if key in manifest:
            props[key] = str(manifest[key])
    props["classes"] = ",".join(manifest.get("classes", []))
    return props


def _onnx_embedded(model_path: Path) -> Optional[Dict[str, Any]]:
    """The manifest embedded in an ONNX file, read with onnx or onnxruntime if present."""
    props = None  # type: Optional[Dict[str, str]]
    try:
        import onnx

        model = onnx.load(str(model_path), load_external_data=False)
        props = {p.key: p.value for p in model.metadata_props}
    except ImportError:
        try:
            import onnxruntime as ort

            sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
            props = dict(sess.get_modelmeta().custom_metadata_map)
        except ImportError:
            return None
    except Exception as exc:
        first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise ModelFileError(
            f"cannot read ONNX file {model_path}: {first} (re-export it with cifrenet-edge export)"
        ) from None
    if not props or METADATA_KEY not in props:
        return None
    return json.loads(props[METADATA_KEY])


def read_manifest(model_path: PathLike) -> Dict[str, Any]:
    """The manifest of an artifact: its JSON sidecar, else (ONNX) the embedded copy."""
    path = Path(model_path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist: check the path")
    side = sidecar_path(path)
    manifest = None  # type: Optional[Dict[str, Any]]
    if side.is_file():
        try:
            manifest = json.loads(side.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ModelFileError(
                f"manifest {side} is not valid JSON ({exc}): re-export the model"
            ) from None
    elif path.suffix.lower() == ".onnx":
        manifest = _onnx_embedded(path)
    if manifest is None:
        raise ModelFileError(
            f"{path} has no cifrenet-edge manifest (no {side.name} and no embedded metadata): "
            "export it with `cifrenet-edge export` so classes and normalisation travel with it"
        )
    check_manifest(manifest, path)
    return manifest


def check_manifest(manifest: Dict[str, Any], model_path: PathLike = "model") -> None:
    """Raise ModelFileError naming every missing or inconsistent field."""
    if not isinstance(manifest, dict):
        raise ModelFileError(f"manifest of {model_path} is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    problems = []  # type: List[str]
    if missing:
        problems.append("missing " + ", ".join(missing))
    else:
        if manifest["format"] != MANIFEST_FORMAT:
            problems.append(
                "format {!r} (this toolkit reads {!r})".format(manifest["format"], MANIFEST_FORMAT)
            )
        n = manifest["num_classes"]
        if len(manifest["classes"]) != n:
            problems.append("{} class names for {} classes".format(len(manifest["classes"]), n))
        if len(manifest["palette_rgb"]) < n:
            problems.append(
                "{} palette colours for {} classes".format(len(manifest["palette_rgb"]), n)
            )
        if len(manifest["mean_bgr"]) != 3:
            problems.append("mean_bgr must have 3 values")
        if manifest.get("resolution") is None and manifest.get("dynamic") is None:
            problems.append("neither a resolution nor a dynamic range")
    if problems:
        raise ModelFileError(
            "manifest of {} is unusable: {}; re-export the model with "
            "`cifrenet-edge export`".format(model_path, "; ".join(problems))
        )


def call_batch(manifest: Dict[str, Any]) -> int:
    """The batch one inference call runs: the export's fixed batch, or 1 for a dynamic model
    (its batch dimension follows each call)."""
    return 1 if manifest.get("dynamic") else int(manifest.get("batch") or 1)


def model_resolution(manifest: Dict[str, Any]) -> Optional[Tuple[int, int]]:
    """The fixed (width, height) of a static model, or None for a dynamic one."""
    res = manifest.get("resolution")
    return (int(res[0]), int(res[1])) if res else None


Resolution = Union[str, Sequence[int], None]


def _parse_wh(resolution: Resolution) -> Optional[Tuple[int, int]]:
    from .presets import parse_resolution

    if resolution is None:
        return None
    return parse_resolution(resolution, max_side=1 << 30, min_side=1)  # the model's range decides


def model_input_wh(manifest: Dict[str, Any], requested: Resolution = None) -> Tuple[int, int]:
    """The (width, height) the model runs at: fixed, the dynamic 'opt', or ``requested``."""
    want = _parse_wh(requested)
    fixed = manifest.get("resolution")
    dynamic = manifest.get("dynamic")
    if fixed:
        wh = (int(fixed[0]), int(fixed[1]))
        if want is not None and want != wh:
            raise ConfigError(
                f"this model was exported for a fixed {wh[0]}x{wh[1]}, not "
                f"{want[0]}x{want[1]}: export it with --dynamic or at that resolution"
            )
        return wh
    lo, opt, hi = dynamic["min"], dynamic["opt"], dynamic["max"]
    if want is None:
        return int(opt[0]), int(opt[1])
    if not (lo[0] <= want[0] <= hi[0] and lo[1] <= want[1] <= hi[1]):
        raise ConfigError(
            f"resolution {want[0]}x{want[1]} is outside the model's range {lo[0]}x{lo[1]} .. "
            f"{hi[0]}x{hi[1]}: pick one inside it or re-export with a wider --dynamic range"
        )
    return want
