"""A Triton model repository from an exported model: ``export --format triton --output REPO``.

Layout (Triton's model repository, docs/user_guide/model_repository.md)::

    REPO/NAME/config.pbtxt        Triton's ModelConfig in protobuf text format
    REPO/NAME/labels.txt          class names, one per line (the output's label_filename)
    REPO/NAME/1/model.onnx        or model.plan (a TensorRT engine)
    REPO/NAME/1/model.onnx.json   the manifest, under the sidecar name the runtime reads, so
                                  ``Segmenter.open("REPO/NAME/1/model.onnx")`` works as is

Per artifact: ``.onnx`` -> ``platform: "onnxruntime_onnx"`` (KIND_AUTO: the GPU when the
server has one) or, asked for, ``backend: "openvino"`` with ``default_model_filename:
"model.onnx"`` (CPU only; NVIDIA's OpenVINO deployment tutorial serves ONNX this way);
``.engine``/``.plan`` -> ``platform: "tensorrt_plan"`` (KIND_GPU). A plan only loads in a
Triton whose TensorRT is the exact version that built it (even 8.6.1.6 vs 8.6.1.2 fails,
NVIDIA/TensorRT#3071): the engine's TensorRT version goes into the config's parameters and
into the notes this module returns, and the README has the container table.

Tensors: the network as exported, ``input`` N x 3 x H x W float32 (BGR, normalised as the
manifest says) and ``logits`` N x C x H x W float32. Batching: Triton's ONNX Runtime and
TensorRT backends batch only models whose first dimension is dynamic, so a model exported
with ``--dynamic`` gets ``max_batch_size`` (its largest batch) and ``dynamic_batching``
(preferred sizes: its opt and max batch); a fixed-batch export gets ``max_batch_size: 0``
and its full shape, and is served one request at a time.

``parameters`` carry the manifest (``cifrenet_edge_manifest``, JSON): classes, palette and
normalisation travel with the model to every client that reads the model config.

The config text is written here (no protobuf needed to export); the tests parse it with
``tritonclient.grpc.model_config_pb2.ModelConfig`` and ``google.protobuf.text_format``, the
schema Triton itself reads. The repository folder is built under a temporary name and
renamed into place: a failed export leaves the previous model folder or nothing.
"""

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .._io import PathLike, make_dir
from ..errors import ConfigError, ModelFileError
from ..manifest import Manifest, read_manifest
from ..runtime.backends import ENGINE_SUFFIXES as PLAN_FILES
from ..runtime.backends import ONNX_SUFFIXES as ONNX_FILES
from ..runtime.remote import MANIFEST_PARAMETER, valid_model_name

TENSORRT_PARAMETER = "cifrenet_edge_tensorrt"

BACKENDS = ("onnxruntime", "openvino", "tensorrt")
KINDS = {"auto": "KIND_AUTO", "gpu": "KIND_GPU", "cpu": "KIND_CPU"}


@dataclasses.dataclass
class TritonOptions:
    """The ``--format triton`` stage's options (``export --triton-*`` on the command line)."""

    #: the model's folder name in the repository, what clients ask for
    name: str = "cifrenet"
    #: onnxruntime, openvino (ONNX files) or tensorrt (engines); default from the file
    backend: Optional[str] = None
    #: the largest batch Triton forms; default the model's own largest (dynamic exports only)
    max_batch: Optional[int] = None
    #: batch sizes the batcher prefers to form; default the model's opt and max batch
    preferred_batch: Optional[Sequence[int]] = None
    #: how long the batcher may hold a request to fill a batch, microseconds
    queue_delay_us: int = 2000
    #: model instances per device
    instances: int = 1
    #: auto (Triton picks GPU if present), gpu or cpu
    kind: str = "auto"
    #: the version folder
    version: int = 1


@dataclasses.dataclass
class TritonRepository:
    """What ``write_model_repository`` wrote."""

    repo: Path
    model_dir: Path
    config_path: Path
    model_path: Path
    manifest_path: Path
    labels_path: Path
    config_text: str
    notes: List[str] = dataclasses.field(default_factory=list)

    @property
    def path(self) -> Path:
        """The model folder (``export``'s pipeline reads ``.path`` of every stage result)."""
        return self.model_dir


def _quote(text: str) -> str:
    """A protobuf text-format string literal (C escapes, as text_format reads them)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped + '"'


def _dims(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]"


def _choose(path: Path, options: TritonOptions) -> Dict[str, str]:
    """backend, platform line, file name and instance kind for this artifact."""
    suffix = path.suffix.lower()
    if suffix not in ONNX_FILES + PLAN_FILES:
        raise ConfigError(
            f"a Triton repository takes an .onnx or a TensorRT engine (.engine/.plan), not "
            f"{path.name}: export one first (cifrenet-edge export)"
        )
    backend = (options.backend or ("tensorrt" if suffix in PLAN_FILES else "onnxruntime")).lower()
    if backend not in BACKENDS:
        raise ConfigError(f"unknown Triton backend {backend!r}: use {', '.join(BACKENDS)}")
    if (backend == "tensorrt") != (suffix in PLAN_FILES):
        raise ConfigError(
            f"Triton's {backend} backend cannot run {path.name}: TensorRT runs engines "
            "(.engine/.plan), onnxruntime and openvino run .onnx files"
        )
    kind = str(options.kind).lower()
    if kind not in KINDS:
        raise ConfigError(f"unknown instance kind {options.kind!r}: use auto, gpu or cpu")
    if backend == "tensorrt" and kind == "cpu":
        raise ConfigError("a TensorRT engine runs on a GPU only: drop the cpu instance kind")
    if backend == "openvino" and kind == "gpu":
        raise ConfigError("Triton's OpenVINO backend runs on the CPU only: use kind cpu")
    if backend == "tensorrt":
        kind = "gpu"
    elif backend == "openvino":
        kind = "cpu"
    if backend == "tensorrt":
        line = 'platform: "tensorrt_plan"'
        filename = "model.plan"
    elif backend == "openvino":
        line = 'backend: "openvino"'
        filename = "model.onnx"
    else:
        line = 'platform: "onnxruntime_onnx"'
        filename = "model.onnx"
    return {"backend": backend, "line": line, "file": filename, "kind": KINDS[kind]}


def _batching(manifest: Manifest, options: TritonOptions) -> Dict[str, Any]:
    """max_batch_size, per-request dims, preferred sizes (None: no dynamic batching)."""
    dynamic = manifest.dynamic
    if not dynamic:
        batch = manifest.call_batch
        if options.max_batch not in (None, 0) or options.preferred_batch:
            raise ConfigError(
                f"this model has a fixed batch of {batch}: Triton batches only models whose "
                "batch dimension is dynamic; export with --dynamic, or drop the batch options"
            )
        w, h = manifest.nominal_wh
        return {"max": 0, "hw": [h, w], "lead": [batch], "preferred": None}
    lo, opt, hi = dynamic.batch or (1, 1, 8)
    top = hi if options.max_batch is None else int(options.max_batch)
    if not 1 <= top <= hi:
        raise ConfigError(
            f"max batch {top} is outside this model's batch range {lo}..{hi}: choose 1..{hi} "
            "(or export with a larger batch range)"
        )
    preferred = sorted({v for v in (opt, top) if 1 <= v <= top})
    if options.preferred_batch:
        preferred = sorted({int(v) for v in options.preferred_batch})
        bad = [v for v in preferred if not 1 <= v <= top]
        if bad:
            raise ConfigError(f"preferred batch sizes {bad} are outside 1..{top}")
    same = dynamic.min == dynamic.max
    hw = [dynamic.min[1], dynamic.min[0]] if same else [-1, -1]
    return {"max": top, "hw": hw, "lead": [], "preferred": preferred}


def config_text(manifest: Manifest, options: TritonOptions, choice: Dict[str, str]) -> str:
    """``config.pbtxt`` for this model (protobuf text format of Triton's ModelConfig)."""
    b = _batching(manifest, options)
    classes = manifest.num_classes
    lines = [
        f"name: {_quote(options.name)}",
        choice["line"],
        f'default_model_filename: "{choice["file"]}"',
        f"max_batch_size: {b['max']}",
        "input [",
        "  {",
        f"    name: {_quote(manifest.input_name)}",
        "    data_type: TYPE_FP32",
        f"    dims: {_dims([*b['lead'], 3, *b['hw']])}",
        "  }",
        "]",
        "output [",
        "  {",
        f"    name: {_quote(manifest.output_name)}",
        "    data_type: TYPE_FP32",
        f"    dims: {_dims([*b['lead'], classes, *b['hw']])}",
        '    label_filename: "labels.txt"',
        "  }",
        "]",
    ]
    if b["preferred"] is not None:
        lines += [
            "dynamic_batching {",
            f"  preferred_batch_size: {_dims(b['preferred'])}",
            f"  max_queue_delay_microseconds: {int(options.queue_delay_us)}",
            "}",
        ]
    lines += [
        "instance_group [",
        "  {",
        f"    count: {int(options.instances)}",
        f"    kind: {choice['kind']}",
        "  }",
        "]",
    ]
    params = {MANIFEST_PARAMETER: json.dumps(manifest.to_dict(), sort_keys=True, ensure_ascii=True)}
    trt = manifest.engine_field("tensorrt")
    if trt:
        params[TENSORRT_PARAMETER] = str(trt)
    for key, value in params.items():
        lines += [
            "parameters {",
            f"  key: {_quote(key)}",
            f"  value {{ string_value: {_quote(value)} }}",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _check_options(options: TritonOptions) -> None:
    if not valid_model_name(options.name):
        raise ConfigError(
            f"Triton model name {options.name!r} is not valid: use letters, digits, '_', '-', '.'"
        )
    if int(options.instances) < 1:
        raise ConfigError(f"instances {options.instances} must be >= 1")
    if int(options.queue_delay_us) < 0:
        raise ConfigError(f"queue delay {options.queue_delay_us} us must be >= 0")
    if int(options.version) < 1:
        raise ConfigError(f"model version {options.version} must be >= 1 (Triton's folders)")


def write_model_repository(
    model: PathLike, repo: PathLike, options: Optional[TritonOptions] = None
) -> TritonRepository:
    """Write (or replace) ``repo/NAME`` for ``model``; returns what was written."""
    options = options or TritonOptions()
    _check_options(options)
    src = Path(model).expanduser()
    if not src.is_file():
        raise ModelFileError(f"model file {src} does not exist: export it first")
    choice = _choose(src, options)
    manifest = read_manifest(src)
    text = config_text(manifest, options, choice)
    root = Path(repo).expanduser()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--output {root} is a file: a Triton repository is a folder")
    make_dir(root, "model repository")
    target = root / options.name
    if target.exists() and not (target / "config.pbtxt").is_file():
        raise ConfigError(
            f"{target} exists and is not a Triton model folder: choose another --output or name"
        )
    tmp = Path(tempfile.mkdtemp(prefix=f".{options.name}.", suffix=".partial", dir=str(root)))
    try:
        version = tmp / str(int(options.version))
        version.mkdir()
        shutil.copyfile(str(src), str(version / choice["file"]))
        side = version / (choice["file"] + ".json")
        side.write_text(json.dumps(manifest.to_dict(), indent=2) + "\n", encoding="utf-8")
        names = [c.replace("\n", " ") for c in manifest.classes]
        (tmp / "labels.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
        (tmp / "config.pbtxt").write_text(text, encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(str(tmp), 0o777 & ~umask)  # mkdtemp makes 0700; Triton may run as another user
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(str(tmp), ignore_errors=True)
        raise
    notes = _notes(manifest, choice, target)
    return TritonRepository(
        repo=root,
        model_dir=target,
        config_path=target / "config.pbtxt",
        model_path=target / str(options.version) / choice["file"],
        manifest_path=target / str(options.version) / (choice["file"] + ".json"),
        labels_path=target / "labels.txt",
        config_text=text,
        notes=notes,
    )


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished folder onto ``target``; an existing one is replaced, not merged."""
    old = None  # type: Optional[Path]
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(str(old), ignore_errors=True)
        os.rename(str(target), str(old))
    try:
        os.rename(str(tmp), str(target))
    except BaseException:
        if old is not None and not target.exists():
            os.rename(str(old), str(target))
        raise
    if old is not None:
        shutil.rmtree(str(old), ignore_errors=True)


def _notes(manifest: Manifest, choice: Dict[str, str], target: Path) -> List[str]:
    """What the user must know to serve it (printed by the CLI)."""
    repo = target.parent.resolve()
    gpus = "--gpus all " if choice["kind"] != "KIND_CPU" else ""
    notes = [
        f"serve: docker run {gpus}--rm -p 8000:8000 -p 8001:8001 -p 8002:8002 "
        f"-v {repo}:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 "
        "tritonserver --model-repository=/models"
    ]
    trt = manifest.engine_field("tensorrt")
    if choice["backend"] == "tensorrt":
        notes.append(
            f"this plan was built by TensorRT {trt or '(unknown: no engine record)'}: use the "
            "tritonserver release whose TensorRT is exactly that (README, 'Serving many "
            "robots'), or build the engine in nvcr.io/nvidia/tensorrt:<same yy.mm>-py3"
        )
    if not manifest.dynamic:
        notes.append(
            "fixed-batch model: Triton serves it one request at a time; export with --dynamic "
            "for dynamic batching"
        )
    return notes


def precheck(options: TritonOptions, dynamic: Optional[bool] = None) -> None:
    """What can be checked before an export runs (so a typo costs no export)."""
    _check_options(options)
    if options.backend is not None and str(options.backend).lower() not in BACKENDS:
        raise ConfigError(f"unknown Triton backend {options.backend!r}: use {', '.join(BACKENDS)}")
    if str(options.kind).lower() not in KINDS:
        raise ConfigError(f"unknown instance kind {options.kind!r}: use auto, gpu or cpu")
    if dynamic is False and (options.max_batch not in (None, 0) or options.preferred_batch):
        raise ConfigError(
            "Triton batches only models with a dynamic batch dimension: add --dynamic, or drop "
            "the Triton batch options"
        )


def export_triton(
    repo: Optional[PathLike],
    options: Optional[TritonOptions] = None,
    onnx: Optional[Any] = None,
    **stages: Any,
) -> Any:
    """``export(format="triton")``: the usual pipeline, then its artifact as ``repo/NAME``.

    ``onnx`` and ``stages`` (precision, int8, engine, quiet) go to ``export`` unchanged; the
    artifact is an ONNX file, or a TensorRT engine when ``options.backend`` is "tensorrt".
    The pipeline writes into a temporary folder inside ``repo`` (default ``models/triton``)
    that is removed afterwards, so the repository is the one output and a failure at any
    stage leaves no new file (an existing model folder is replaced only by a complete one).
    Returns the pipeline's result, its artifacts replaced by the repository's.
    """
    from ..export import OnnxOptions, export

    options = options or TritonOptions()
    onnx = onnx if onnx is not None else OnnxOptions()
    precheck(options, bool(getattr(onnx, "dynamic", False)))
    engine = str(options.backend or "").lower() == "tensorrt"
    root = make_dir(Path(repo or Path("models") / "triton").expanduser(), "model repository")
    work = Path(tempfile.mkdtemp(prefix=".cifrenet-export-", dir=str(root)))
    try:
        result = export(
            onnx,
            format="engine" if engine else "onnx",
            output=work / ("model.engine" if engine else "model.onnx"),
            **stages,
        )
        written = write_model_repository(result.final, root, options)
    finally:
        shutil.rmtree(str(work), ignore_errors=True)
    result.stages.triton = written
    result.artifacts = [("triton model", written.model_dir), ("config", written.config_path)]
    result.final = written.model_path
    return result
