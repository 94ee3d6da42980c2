"""Backend registry and the rule that picks one for a model file.

Each backend module is imported only when chosen, so a robot with only onnxruntime (or only
TensorRT) installed never imports the others. numpy + standard library, Python 3.8 syntax.

Which backend runs a file (``choose_backend``), unless ``backend=`` says otherwise:

* ``.pt`` / ``.pth`` / ``.safetensors`` -> ``torch``;
* ``.engine`` / ``.plan`` -> ``tensorrt``;
* ``.onnx`` on a GPU (``device="cuda"``/``"tensorrt"``, or ``"auto"`` with onnxruntime-gpu's
  CUDA provider present) -> ``onnxruntime``;
* ``.onnx`` on the CPU: an FP32/FP16 model -> ``onnxruntime``; an INT8 (Q/DQ) model -> the
  rule of ``cpu_int8.plan_cpu_int8``: with an int8 dot product (VNNI/AMX/asimddp) OpenVINO
  on x86-64, else onnxruntime; without one, OpenVINO on the non-saturating variant the
  export verified (u8 inputs where they are never negative, pair-bounded weights elsewhere;
  or the older all-7-bit one), else a one-line refusal naming the FP32 file (never a
  saturated result).

Why (benchmarks/int8_cpu/README.md, benchmarks/results/): on the same s8 Q/DQ file OpenVINO
runs INT8 about 2x faster than its own true-f32 inference, while onnxruntime's CPU provider
runs it at about 0.5x its FP32: with the zero point 0 that TensorRT requires it cannot fold
ReLU6 into the quantisation. For FP32 onnxruntime is the reference the export's parity gate
checks against, so it stays the default there. On CPUs without an int8 dot product both
libraries' int8 kernels saturate 16-bit pair sums (``cpu_int8``'s docstring).
"""

import importlib
import importlib.util
from typing import Optional, Tuple, Type

from ...errors import BackendUnavailableError, ConfigError
from ...manifest import Manifest, ManifestLike
from ..cpu_int8 import int8_support, plan_cpu_int8
from .base import Backend, parse_device

# name -> (module under this package, class name, what to install)
BACKENDS = {
    "torch": (
        "torch",
        "TorchBackend",
        "pip install torch (and the toolkit: pip install cifrenet-edge)",
    ),
    "onnxruntime": (
        "onnxruntime",
        "OnnxRuntimeBackend",
        "pip install onnxruntime (CPU) or onnxruntime-gpu (NVIDIA; <= 1.26 for a GTX 1080 Ti)",
    ),
    "openvino": ("openvino", "OpenVINOBackend", "pip install openvino"),
    "tensorrt": (
        "tensorrt",
        "TensorRTBackend",
        "TensorRT's Python bindings (JetPack, or pip install tensorrt) and cuda-python "
        "(pip install cuda-python) on a machine with an NVIDIA GPU",
    ),
}

TORCH_SUFFIXES = (".pt", ".pth", ".safetensors")
# A Triton server's URL is not a file: Segmenter.open hands it to runtime/remote.py.
REMOTE_SCHEMES = ("grpc://", "http://")
ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
# file suffix -> the backends that open it, in order of preference
SUFFIX_BACKENDS = {
    **{s: ("torch",) for s in TORCH_SUFFIXES},
    **{s: ("onnxruntime", "openvino") for s in ONNX_SUFFIXES},
    **{s: ("tensorrt",) for s in ENGINE_SUFFIXES},
}  # type: Dict[str, Tuple[str, ...]]


def installed(name: str) -> bool:
    """Whether the library behind backend ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None  # each backend is named after its library
    except (ImportError, ValueError):
        return False


def is_remote(path: object) -> bool:
    """Whether ``path`` names a model on a Triton server (``grpc://``/``http://``), not a file."""
    return str(path).lower().startswith(REMOTE_SCHEMES)


def _ort_has_cuda() -> bool:
    if not installed("onnxruntime"):
        return False
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def cpu_int8_plan(path: str, manifest: ManifestLike, backend: Optional[str] = None):
    """How this CPU runs an INT8 model (``cpu_int8.plan_cpu_int8`` with this machine's facts)."""
    return plan_cpu_int8(
        path,
        manifest,  # plan_cpu_int8 types a dict itself
        int8_support(),
        installed("openvino"),
        installed("onnxruntime"),
        backend=backend,
    )


def _requested(name: str, suffix: str, allowed: Tuple[str, ...]) -> str:
    name = name.strip().lower()
    if name not in BACKENDS:
        raise ConfigError("unknown backend {!r}: use one of {}".format(name, ", ".join(BACKENDS)))
    if name not in allowed:
        raise ConfigError(
            "backend {!r} cannot run a {} file: use {} (or convert the model with "
            "`cifrenet-edge export`)".format(name, suffix, " or ".join(allowed))
        )
    return name


def choose_backend(
    path: str, manifest: ManifestLike, device: str = "auto", backend: Optional[str] = None
) -> Tuple[str, str]:
    """The backend name for this file and the reason, one line (shown by the CLI)."""
    suffix = "." + str(path).rsplit(".", 1)[-1].lower() if "." in str(path) else ""
    allowed = SUFFIX_BACKENDS.get(suffix)
    if allowed is None:
        raise ConfigError(
            f"cannot tell the model format of {path!r} from its suffix: use .onnx, "
            ".engine/.plan (TensorRT) or .pt/.pth/.safetensors (PyTorch)"
        )
    kind, _ = parse_device(device)
    manifest = Manifest.from_dict(manifest, path)
    precision = manifest.precision
    on_cpu = kind == "cpu" or (kind == "auto" and not _ort_has_cuda())
    if backend is not None:
        name = _requested(backend, suffix, allowed)
        if precision == "int8" and on_cpu and name in ("onnxruntime", "openvino"):
            plan = cpu_int8_plan(path, manifest, backend=name)
            if plan.backend is None:
                raise BackendUnavailableError(plan.reason)
            return name, "requested; " + plan.reason
        return name, "requested"
    if allowed[0] != "onnxruntime":
        return allowed[0], f"{suffix} file"
    if kind in ("cuda", "tensorrt"):
        return "onnxruntime", f"ONNX on {kind}"
    if not on_cpu:
        return "onnxruntime", "ONNX, onnxruntime-gpu's CUDA provider is available"
    if precision == "int8":
        plan = cpu_int8_plan(path, manifest)
        if plan.backend is None:
            raise BackendUnavailableError(plan.reason)
        return plan.backend, plan.reason
    if installed("onnxruntime"):
        return "onnxruntime", f"{precision.upper()} ONNX on the CPU"
    if installed("openvino"):
        return "openvino", "onnxruntime is not installed"
    raise BackendUnavailableError(
        f"no backend can run {path}: {BACKENDS['onnxruntime'][2]}, or pip install openvino"
    )


def backend_class(name: str) -> Type[Backend]:
    """Import the backend module; a missing library becomes BackendUnavailableError."""
    module_name, class_name, install = BACKENDS[name]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise BackendUnavailableError(
            f"the {name} backend cannot be imported ({missing} is missing): install {install}"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:  # tolerate another class name, as long as it is a Backend named `name`
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Backend) and value.name == name:
                cls = value
                break
    if cls is None:
        raise BackendUnavailableError(
            f"{module.__name__} defines no {class_name}: this installation is incomplete, "
            "reinstall cifrenet-edge"
        )
    return cls


def load_backend(
    name: str,
    path: str,
    manifest: ManifestLike,
    input_shape: Tuple[int, int, int, int],
    device: str = "auto",
    precision: Optional[str] = None,
    threads: Optional[int] = None,
) -> Backend:
    """Construct backend ``name`` with the keyword contract of ``base.Backend``."""
    cls = backend_class(name)
    return cls(
        path=str(path),
        manifest=manifest,
        input_shape=input_shape,
        device=device,
        precision=precision,
        threads=threads,
    )


__all__ = [
    "BACKENDS",
    "ENGINE_SUFFIXES",
    "ONNX_SUFFIXES",
    "REMOTE_SCHEMES",
    "TORCH_SUFFIXES",
    "Backend",
    "backend_class",
    "choose_backend",
    "cpu_int8_plan",
    "installed",
    "is_remote",
    "load_backend",
]
