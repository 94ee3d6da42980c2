"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider.

One ``InferenceSession`` shared by every thread: ``session.run`` is documented thread-safe, and
one session means one copy of the weights and one arena however many callbacks call in.
ONNX Runtime silently falls back to the CPU when a GPU provider cannot start (missing CUDA
libraries, wrong driver); a GPU asked for explicitly and not obtained is an error here, not a
quiet 20x slowdown on a robot.

TensorRT provider (``device="tensorrt"``), options from ONNX Runtime's TensorRT EP docs:

* a Q/DQ (INT8) model needs ``trt_int8_enable``: without it TensorRT refuses the network
  ("Int8 precision has been set for a layer ... but int8 is not configured in the builder",
  microsoft/onnxruntime#13381);
* the engine and timing caches (``trt_engine_cache_enable``/``_path``,
  ``trt_timing_cache_enable``, ORT >= 1.15) live in ``<model>.ort-trt-cache/`` beside the
  model, one folder per ONNX Runtime and TensorRT version (ORT names cached engines by graph
  and GPU, not by TensorRT version): without them every open rebuilds the engine, minutes
  on a Jetson. With an engine cache path and no ``trt_timing_cache_path`` ORT puts the
  timing cache beside the engines (microsoft/onnxruntime#17865); older releases reject
  unknown option names, so only names the running release knows are passed.
* ORT 1.18+ is built with TensorRT 10, which has no Pascal (GTX 1080 Ti, sm61) kernels;
  ORT <= 1.17 pairs with TensorRT 8.6, the last with Pascal (ORT's EP requirements table).

numpy + onnxruntime only, Python 3.8 syntax.
"""

import hashlib
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import onnxruntime as ort

from ...errors import BackendUnavailableError, ConfigError, ModelFileError, first_line
from ...manifest import Manifest, ManifestLike
from .base import Backend, Shape, fixed_precision, parse_device

TRT_PROVIDER_HINT = (
    "install onnxruntime-gpu with the TensorRT its release is built for (ORT 1.18+: TensorRT "
    "10, which does not run on Pascal GPUs such as the GTX 1080 Ti; there use "
    "onnxruntime-gpu <= 1.17 with TensorRT 8.6), or open the .engine file directly"
)

_PROVIDER_DEVICE = {
    "TensorrtExecutionProvider": "tensorrt",
    "CUDAExecutionProvider": "cuda",
    "CPUExecutionProvider": "cpu",
}


class OnnxRuntimeBackend(Backend):
    """``InferenceSession.run`` on the file's input/output names from the manifest."""

    name = "onnxruntime"

    def __init__(
        self,
        path: str,
        manifest: ManifestLike,
        input_shape: Shape,
        device: str = "auto",
        precision: Optional[str] = None,
        threads: Optional[int] = None,
    ) -> None:
        super().__init__(path, manifest, input_shape, device, precision, threads)
        manifest = self.manifest  # typed and checked
        kind, index = parse_device(device)
        trt_fp16 = False
        if kind == "tensorrt" and precision == "fp16" and manifest.precision == "fp32":
            trt_fp16 = True  # the TensorRT provider can lower an FP32 graph itself
            self.precision = "fp16"
        else:
            self.precision = fixed_precision(self.name, precision, manifest)
        providers = self._providers(kind, index, trt_fp16)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: a robot's log is not a debugging console
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types
            raise ModelFileError(
                f"onnxruntime cannot load {path}: {first_line(exc)} (re-export the model with "
                "`cifrenet-edge export`)"
            ) from None
        active = self.session.get_providers()[0]
        self.device = _PROVIDER_DEVICE.get(active, active)
        if self.device != "cpu":
            self.device = f"{self.device}:{index}"
        if kind in ("cuda", "tensorrt") and not self.device.startswith(kind):
            self.close()
            fix = (
                TRT_PROVIDER_HINT
                if kind == "tensorrt"
                else "install onnxruntime-gpu matching your CUDA (<= 1.26 for Pascal GPUs)"
            )
            raise BackendUnavailableError(
                f"onnxruntime could not start its {kind} provider (it fell back to {active}): "
                f"{fix}, or use device='cpu'"
            )
        self.input_name, self.output_name = self._check_io(manifest)
        if self.precision == "int8" and self.device == "cpu":
            from . import cpu_int8_plan

            plan = cpu_int8_plan(path, manifest, backend=self.name)
            if plan.backend is None:  # its int8 kernels would saturate on this CPU
                self.close()
                raise BackendUnavailableError(plan.reason)

    def _providers(self, kind: str, index: int, trt_fp16: bool) -> List[Any]:
        available = ort.get_available_providers()
        cuda = ("CUDAExecutionProvider", {"device_id": index})
        if kind == "cpu":
            return ["CPUExecutionProvider"]
        if kind == "tensorrt":
            if "TensorrtExecutionProvider" not in available:
                raise BackendUnavailableError(
                    "this onnxruntime has no TensorRT provider (has: {}): install onnxruntime-gpu "
                    "with TensorRT, or open the .engine file directly".format(", ".join(available))
                )
            options = tensorrt_provider_options(self.path, self.manifest, index, trt_fp16)
            return [("TensorrtExecutionProvider", options), cuda, "CPUExecutionProvider"]
        if kind == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise BackendUnavailableError(
                    "this onnxruntime has no CUDA provider (has: {}): pip uninstall onnxruntime "
                    "&& pip install onnxruntime-gpu".format(", ".join(available))
                )
            return [cuda, "CPUExecutionProvider"]
        if "CUDAExecutionProvider" in available:  # auto: the GPU when there is one
            return [cuda, "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def _check_io(self, manifest: Manifest) -> Tuple[str, str]:
        """The graph must be what the manifest says; anything else is a mislabelled file."""
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        want_in, want_out = manifest.input_name, manifest.output_name
        names_in = [i.name for i in inputs]
        names_out = [o.name for o in outputs]
        if want_in not in names_in or want_out not in names_out:
            raise ModelFileError(
                f"{self.path}: manifest names input {want_in!r} / output {want_out!r} but the "
                f"graph has inputs {names_in} and outputs {names_out}: re-export the model"
            )
        shape = inputs[names_in.index(want_in)].shape
        dims = [d if isinstance(d, int) else None for d in shape]
        if len(dims) != 4 or dims[1] not in (3, None):
            raise ModelFileError(
                f"{self.path}: input {want_in!r} has shape {shape}, expected N x 3 x H x W: "
                "re-export the model"
            )
        n, _, h, w = dims
        want_n, _, want_h, want_w = self.input_shape
        if (h is not None and h != want_h) or (w is not None and w != want_w):
            raise ModelFileError(
                f"{self.path}: the graph takes {w}x{h} but its manifest says {want_w}x{want_h}: "
                "the manifest belongs to another export; re-export the model"
            )
        out_shape = outputs[names_out.index(want_out)].shape
        classes = out_shape[1] if len(out_shape) == 4 else None
        if isinstance(classes, int) and classes != manifest.num_classes:
            raise ModelFileError(
                f"{self.path}: the graph outputs {classes} classes but its manifest lists "
                f"{manifest.num_classes}: re-export the model"
            )
        if n is None:
            self.dynamic_batch = True
            dyn = manifest.dynamic
            self.max_batch = max(int((dyn and dyn.max_batch) or 8), 1)
        else:
            if n != want_n:
                raise ConfigError(f"{self.path} has a fixed batch of {n}, not {want_n}")
            self.max_batch = n
        return want_in, want_out

    def infer(self, x: np.ndarray) -> np.ndarray:
        self._check_open()
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def _close(self) -> None:
        self.session = None  # type: ignore[assignment]


def _version_tuple(text: str) -> Tuple[int, ...]:
    parts = []
    for p in str(text).split(".")[:3]:
        digits = "".join(ch for ch in p if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def _tensorrt_version() -> str:
    """The installed TensorRT's version, without importing it (``unknown`` when not told)."""
    try:
        from importlib import metadata
    except ImportError:  # Python 3.7: no cache keying by TensorRT version
        return "unknown"
    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11", "tensorrt-libs"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def trt_cache_dir(model_path: str, ort_version: str, trt_version: str) -> Optional[Path]:
    """``<model>.ort-trt-cache/ort<v>-trt<v>/``, else a per-user folder; None if neither works.

    The key folder keeps engines of another ONNX Runtime or TensorRT release apart (a cached
    engine only loads on the TensorRT that built it).
    """
    key = f"ort{ort_version}-trt{trt_version}".replace(os.sep, "_")
    model = Path(model_path).resolve()
    beside = model.parent / (model.name + ".ort-trt-cache") / key
    digest = hashlib.sha256(str(model).encode("utf-8")).hexdigest()[:16]
    user = Path.home() / ".cache" / "cifrenet-edge" / "ort-trt" / (model.stem + "-" + digest) / key
    for folder in (beside, user):
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:  # a read-only model folder (robot images): try the user's cache
            continue
        if os.access(str(folder), os.W_OK):
            return folder
    return None


def tensorrt_provider_options(
    path: str,
    manifest: ManifestLike,
    index: int,
    trt_fp16: bool,
    ort_version: Optional[str] = None,
    trt_version: Optional[str] = None,
) -> Dict[str, Any]:
    """The TensorRT EP's options for this model (see the module docstring for each)."""
    ort_version = ort_version or str(getattr(ort, "__version__", "0"))
    options = {"device_id": index, "trt_fp16_enable": bool(trt_fp16)}  # type: Dict[str, Any]
    if Manifest.from_dict(manifest, path).precision == "int8":
        options["trt_int8_enable"] = True  # Q/DQ: scales come from the graph, no calibration
    cache = trt_cache_dir(path, ort_version, trt_version or _tensorrt_version())
    if cache is not None:
        options["trt_engine_cache_enable"] = True
        options["trt_engine_cache_path"] = str(cache)
        if _version_tuple(ort_version) >= (1, 15):  # the option's first release (PR #14767)
            options["trt_timing_cache_enable"] = True
    return options
