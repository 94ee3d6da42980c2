"""The model manifest: what a runtime needs to use an artifact, written once at export.

Every artifact (``.onnx``, ``.engine``/``.plan``, ``.pth``) gets a JSON sidecar named
``<artifact>.json``; ONNX files also carry the same JSON in ``metadata_props`` under
``cifrenet_edge`` (plus a few flat keys for tools like Netron). Engines keep the manifest
outside the file so ``trtexec --loadEngine`` still loads them.

One type, ``Manifest``, is that JSON read and checked (``read_manifest``,
``write_manifest``). Its fields are what the runtime needs (classes, normalisation, tensor
names, shapes), typed, so a misspelt field is an AttributeError at the line that misspells
it rather than a silent ``None`` three modules later. Each later stage owns one record
(``weights``, ``parity``, ``calibration``, ``engine``, ``source``): a plain JSON object of
that stage, replaced whole with ``Manifest.with_``. Keys this version does not know are
carried through unchanged, so an older toolkit can read and re-write a newer file's extras
without losing them. It is also a read-only Mapping of its JSON form, for tools that only
want the document.

Torch-free, Python 3.8 syntax: the runtime reads manifests on the robot.
"""

import copy
import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

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
# Always written, null where unset: a model is either fixed (resolution, batch) or dynamic.
_SHAPE_KEYS = ("resolution", "dynamic", "batch")
# Written only when set: what later stages record.
_OPTIONAL_KEYS = (
    "preset",
    "target",
    "toolkit_version",
    "weights",
    "source",
    "parity",
    "calibration",
    "quantization",
    "engine",
)

WH = Tuple[int, int]
Record = Dict[str, Any]


def _wh(value: Sequence[Any]) -> WH:
    return int(value[0]), int(value[1])


@dataclasses.dataclass(frozen=True)
class DynamicRange:
    """A dynamic model's range: (width, height) min/opt/max and (min, opt, max) batch."""

    min: WH
    opt: WH
    max: WH
    batch: Optional[Tuple[int, int, int]] = None  # None: the runtime's own default
    #: the sizes and batches the export's parity gate ran (None where nothing was verified)
    verified: Optional[Tuple[WH, ...]] = None
    verified_batches: Optional[Tuple[int, ...]] = None
    #: other keys of the JSON object, carried through unchanged
    extra: Record = dataclasses.field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping) -> "DynamicRange":
        ver = d.get("verified")
        vb = d.get("verified_batches")
        b = d.get("batch")
        known = ("min", "opt", "max", "batch", "verified", "verified_batches")
        return cls(
            min=_wh(d["min"]),
            opt=_wh(d["opt"]),
            max=_wh(d["max"]),
            batch=None if b is None else (int(b[0]), int(b[1]), int(b[2])),
            verified=None if ver is None else tuple(_wh(s) for s in ver),
            verified_batches=None if vb is None else tuple(int(v) for v in vb),
            extra=copy.deepcopy({k: v for k, v in d.items() if k not in known}),
        )

    def to_dict(self) -> Record:
        d = {
            "min": list(self.min),
            "opt": list(self.opt),
            "max": list(self.max),
        }  # type: Record
        if self.batch is not None:
            d["batch"] = list(self.batch)
        if self.verified is not None:
            d["verified"] = [list(s) for s in self.verified]
        if self.verified_batches is not None:
            d["verified_batches"] = list(self.verified_batches)
        for key, value in self.extra.items():
            d.setdefault(key, copy.deepcopy(value))
        return d

    @property
    def max_batch(self) -> Optional[int]:
        return None if self.batch is None else self.batch[2]

    def contains(self, wh: WH) -> bool:
        return self.min[0] <= wh[0] <= self.max[0] and self.min[1] <= wh[1] <= self.max[1]


@dataclasses.dataclass(frozen=True, eq=False)
class Manifest(Mapping):
    """One artifact's manifest (format ``cifrenet-edge/1``); see the module docstring."""

    format: str
    kind: str  # "onnx", "engine" or "torch"
    precision: str  # one of PRECISIONS
    num_classes: int
    classes: Tuple[str, ...]
    palette_rgb: Tuple[Tuple[int, int, int], ...]
    channel_order: str
    input_layout: str
    mean_bgr: Tuple[float, float, float]
    scale: float
    input_name: str
    output_name: str
    resolution: Optional[WH] = None
    dynamic: Optional[DynamicRange] = None
    batch: Optional[int] = None
    preset: Optional[str] = None
    target: Optional[str] = None  # the export target ("trt10", ...) the ONNX was checked for
    toolkit_version: Optional[str] = None
    # Stage records, each written by one stage and read as a whole JSON object.
    weights: Optional[Record] = None  # the checkpoint: path, trained, sha256
    source: Optional[Record] = None  # what a derived artifact came from (its ONNX)
    parity: Optional[Record] = None  # the export's gate: agreement, variants
    calibration: Optional[Record] = None  # INT8 calibration frames and method
    quantization: Optional[Record] = None  # the Q/DQ recipe
    engine: Optional[Record] = None  # a TensorRT build: version, GPU, flags, profile
    #: every other key (opset, exporter, created, ...), carried through unchanged
    extra: Record = dataclasses.field(default_factory=dict)

    # -- reading and writing ---------------------------------------------------------------

    @classmethod
    def from_dict(cls, doc: Any, model_path: PathLike = "model") -> "Manifest":
        """The manifest of a JSON document, checked: ModelFileError names what is wrong.

        The stage records are copied: a manifest owns them, so changing the document later
        (or what ``to_dict`` returned) cannot change a manifest already read."""
        if isinstance(doc, Manifest):
            return doc
        check_manifest(doc, model_path)
        known = set(REQUIRED_KEYS) | set(_SHAPE_KEYS) | set(_OPTIONAL_KEYS)
        try:
            res = doc.get("resolution")
            dyn = doc.get("dynamic")
            batch = doc.get("batch")
            return cls(
                format=str(doc["format"]),
                kind=str(doc["kind"]),
                precision=str(doc["precision"]),
                num_classes=int(doc["num_classes"]),
                classes=tuple(str(c) for c in doc["classes"]),
                palette_rgb=tuple((int(c[0]), int(c[1]), int(c[2])) for c in doc["palette_rgb"]),
                channel_order=str(doc["channel_order"]),
                input_layout=str(doc["input_layout"]),
                mean_bgr=(
                    float(doc["mean_bgr"][0]),
                    float(doc["mean_bgr"][1]),
                    float(doc["mean_bgr"][2]),
                ),
                scale=float(doc["scale"]),
                input_name=str(doc["input_name"]),
                output_name=str(doc["output_name"]),
                resolution=_wh(res) if res else None,
                dynamic=DynamicRange.from_dict(dyn) if dyn else None,
                batch=None if batch is None else int(batch),
                **{k: copy.deepcopy(doc.get(k)) for k in _OPTIONAL_KEYS},
                extra=copy.deepcopy({k: v for k, v in doc.items() if k not in known}),
            )
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise ModelFileError(
                f"manifest of {model_path} is unusable: a field has the wrong type "
                f"({type(exc).__name__}: {exc}); re-export the model with `cifrenet-edge export`"
            ) from None

    def to_dict(self) -> Record:
        """The JSON document, as written to the sidecar and embedded in ONNX files."""
        doc = {
            "format": self.format,
            "kind": self.kind,
            "precision": self.precision,
            "num_classes": self.num_classes,
            "classes": list(self.classes),
            "palette_rgb": [list(c) for c in self.palette_rgb],
            "channel_order": self.channel_order,
            "input_layout": self.input_layout,
            "mean_bgr": list(self.mean_bgr),
            "scale": self.scale,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "resolution": None if self.resolution is None else list(self.resolution),
            "dynamic": None if self.dynamic is None else self.dynamic.to_dict(),
            "batch": self.batch,
        }  # type: Record
        for key in _OPTIONAL_KEYS:
            value = getattr(self, key)
            if value is not None:
                doc[key] = copy.deepcopy(value)
        for key, value in self.extra.items():
            doc.setdefault(key, copy.deepcopy(value))
        return doc

    def with_(self, **changes: Any) -> "Manifest":
        """A new manifest with fields replaced (a stage's record, a derived artifact's kind
        or precision), checked and typed as a file read from disk is. A key this type does
        not name becomes an extra key; None drops a stage record or an extra key."""
        if "extra" in changes:
            raise TypeError("with_() takes the extra keys themselves, not extra=")
        doc = self.to_dict()
        for key, value in changes.items():
            if isinstance(value, DynamicRange):
                value = value.to_dict()
            if value is None and key not in _SHAPE_KEYS:
                doc.pop(key, None)
            else:
                doc[key] = value
        return Manifest.from_dict(doc)

    # -- what the runtime derives ----------------------------------------------------------

    @property
    def call_batch(self) -> int:
        """The batch one inference call runs: the export's fixed batch, or 1 for a dynamic
        model (its batch dimension follows each call)."""
        return 1 if self.dynamic else int(self.batch or 1)

    @property
    def nominal_wh(self) -> WH:
        """The fixed (width, height), or a dynamic model's 'opt'."""
        if self.resolution is not None:
            return self.resolution
        assert self.dynamic is not None  # checked when read
        return self.dynamic.opt

    def input_wh(self, requested: "Resolution" = None) -> WH:
        """The (width, height) the model runs at: fixed, the dynamic 'opt', or ``requested``."""
        want = _parse_wh(requested)
        if want is None:
            return self.nominal_wh
        if self.resolution is not None:
            wh = self.resolution
            if want != wh:
                raise ConfigError(
                    f"this model was exported for a fixed {wh[0]}x{wh[1]}, not "
                    f"{want[0]}x{want[1]}: export it with --dynamic or at that resolution"
                )
            return wh
        dyn = self.dynamic
        assert dyn is not None  # checked when read
        if not dyn.contains(want):
            lo, hi = dyn.min, dyn.max
            raise ConfigError(
                f"resolution {want[0]}x{want[1]} is outside the model's range {lo[0]}x{lo[1]} .. "
                f"{hi[0]}x{hi[1]}: pick one inside it or re-export with a wider --dynamic range"
            )
        return want

    @property
    def source_onnx(self) -> Optional[str]:
        """The ONNX file a derived artifact (INT8, FP16, engine) was made from."""
        return (self.source or {}).get("onnx")

    @property
    def weights_path(self) -> Optional[str]:
        return (self.weights or {}).get("path")

    def variant(self, name: str) -> Optional[Record]:
        """The export's record of a CPU variant (``parity.variants.<name>``), if any."""
        return ((self.parity or {}).get("variants") or {}).get(name)

    def engine_field(self, key: str) -> Any:
        """One field of a TensorRT build record (None for other artifacts)."""
        return (self.engine or {}).get(key)

    # -- the read-only Mapping of the JSON form --------------------------------------------

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self.to_dict() == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


ManifestLike = Union[Manifest, Mapping]


def sidecar_path(model_path: PathLike) -> Path:
    return Path(str(model_path) + ".json")


def write_manifest(model_path: PathLike, manifest: ManifestLike) -> Path:
    """Validate and write the sidecar atomically; returns its path."""
    # A Manifest goes through the same check as a dict: what is written must read back.
    doc = manifest.to_dict() if isinstance(manifest, Manifest) else manifest
    checked = Manifest.from_dict(doc, model_path).to_dict()
    return write_json_atomic(sidecar_path(model_path), checked)


def onnx_metadata_props(manifest: ManifestLike) -> Dict[str, str]:
    """The key/value strings to embed in an ONNX model's metadata_props."""
    doc = Manifest.from_dict(manifest).to_dict()
    props = {METADATA_KEY: json.dumps(doc, sort_keys=True)}
    for key in FLAT_KEYS:
        if doc.get(key) is not None:
            props[key] = str(doc[key])
    props["classes"] = ",".join(doc.get("classes", []))
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


def read_manifest(model_path: PathLike) -> Manifest:
    """The manifest of an artifact: its JSON sidecar, else (ONNX) the embedded copy."""
    path = Path(model_path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist: check the path")
    side = sidecar_path(path)
    doc = None  # type: Optional[Dict[str, Any]]
    if side.is_file():
        try:
            doc = json.loads(side.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ModelFileError(
                f"manifest {side} is not valid JSON ({exc}): re-export the model"
            ) from None
    elif path.suffix.lower() == ".onnx":
        doc = _onnx_embedded(path)
    if doc is None:
        raise ModelFileError(
            f"{path} has no cifrenet-edge manifest (no {side.name} and no embedded metadata): "
            "export it with `cifrenet-edge export` so classes and normalisation travel with it"
        )
    return Manifest.from_dict(doc, path)


def check_manifest(manifest: Any, model_path: PathLike = "model") -> None:
    """Raise ModelFileError naming every missing or inconsistent field."""
    if not isinstance(manifest, Mapping):
        raise ModelFileError(f"manifest of {model_path} is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    problems = []  # type: List[str]
    if missing:
        problems.append("missing " + ", ".join(missing))
    elif manifest["format"] != MANIFEST_FORMAT:
        problems.append(
            "format {!r} (this toolkit reads {!r}: upgrade cifrenet-edge, or re-export "
            "with this version)".format(manifest["format"], MANIFEST_FORMAT)
        )
    else:
        try:
            problems += _inconsistencies(manifest)
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            problems.append(f"a field has the wrong type ({type(exc).__name__}: {exc})")
    if problems:
        raise ModelFileError(
            "manifest of {} is unusable: {}; re-export the model with "
            "`cifrenet-edge export`".format(model_path, "; ".join(problems))
        )


def _inconsistencies(manifest: Mapping) -> List[str]:
    """What contradicts itself in a manifest whose required keys are all there."""
    problems = []  # type: List[str]
    n = manifest["num_classes"]
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"num_classes is {n!r}, not an integer")
    if len(manifest["classes"]) != n:
        problems.append("{} class names for {} classes".format(len(manifest["classes"]), n))
    if len(manifest["palette_rgb"]) < n:
        problems.append("{} palette colours for {} classes".format(len(manifest["palette_rgb"]), n))
    if len(manifest["mean_bgr"]) != 3:
        problems.append("mean_bgr must have 3 values")
    if manifest.get("resolution") is None and manifest.get("dynamic") is None:
        problems.append("neither a resolution nor a dynamic range")
    return problems


Resolution = Union[str, Sequence[int], None]


def _parse_wh(resolution: Resolution) -> Optional[WH]:
    from .presets import parse_resolution

    if resolution is None:
        return None
    return parse_resolution(resolution, max_side=1 << 30, min_side=1)  # the model's range decides
