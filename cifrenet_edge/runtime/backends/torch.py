"""PyTorch backend: the reference every exported model is compared with.

Runs a checkpoint (``.pt``/``.pth``/``.safetensors``) through the toolkit's ``CIFReNet``. It is
the one backend that needs the full toolkit (torch + the model code), so it is imported only
when a checkpoint is opened. A lock serialises ``infer``: PyTorch is thread-safe for
inference, but concurrent forwards fight over one intra-op thread pool and run slower
together than one after another.

Python 3.8 syntax.
"""

import threading
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ...errors import BackendUnavailableError, ConfigError, ModelFileError, WeightsError
from ...manifest import MANIFEST_FORMAT, DynamicRange, Manifest
from .base import Backend, Shape, parse_device

# What a checkpoint without a sidecar manifest runs at: the paper's speed resolution by
# default, anything from 32x32 to 4096x4096 on request (the network is fully convolutional).
DEFAULT_DYNAMIC = DynamicRange(min=(32, 32), opt=(640, 360), max=(4096, 4096), batch=(1, 1, 16))


def derive_manifest(path: str) -> Manifest:
    """A manifest for a checkpoint from its own metadata (``preset``, ``num_classes``).

    Checkpoints written by ``weights.save_checkpoint`` carry both; a bare ``state_dict`` does
    not, and guessing the preset from tensor shapes would silently pick the wrong class names
    (CamVid and Helen both have 11 classes), so it is an error.
    """
    from ...model.weights import checkpoint_info
    from ...presets import get_preset

    try:
        info = checkpoint_info(Path(path))
    except WeightsError as exc:
        raise ModelFileError(str(exc)) from None
    preset_name = info.get("preset")
    if not preset_name:
        raise ModelFileError(
            f"checkpoint {path} names no preset and has no {Path(path).name}.json manifest: "
            "save it with cifrenet_edge.model.weights.save_checkpoint (or export it to ONNX)"
        )
    try:
        preset = get_preset(str(preset_name))
    except ConfigError:
        raise ModelFileError(
            f"checkpoint {path} names unknown preset {preset_name!r}: re-save it with "
            "save_checkpoint for cityscapes, camvid or helen"
        ) from None
    num_classes = int(info.get("num_classes", preset.num_classes))
    names = info.get("classes")
    if num_classes != preset.num_classes:
        if not isinstance(names, (list, tuple)) or len(names) != num_classes:
            raise ModelFileError(
                f"checkpoint {path} has {num_classes} classes but preset {preset.name!r} names "
                f"{preset.num_classes}: add a {Path(path).name}.json manifest with its class "
                "names (cifrenet-edge train records them)"
            )
        manifest = dict(preset.metadata(classes=names))
    else:
        manifest = dict(preset.metadata())
    manifest.update(
        {
            "format": MANIFEST_FORMAT,
            "kind": "torch",
            "precision": "fp32",
            "input_name": "input",
            "output_name": "logits",
            "resolution": None,
            "dynamic": DEFAULT_DYNAMIC.to_dict(),
            "batch": 1,
            "weights": {"path": str(path), "trained": True},
        }
    )
    return Manifest.from_dict(manifest, path)


class TorchBackend(Backend):
    """``CIFReNet`` in eval mode under ``torch.inference_mode``, one call at a time."""

    name = "torch"

    def __init__(
        self,
        path: str,
        manifest: Manifest,
        input_shape: Shape,
        device: str = "auto",
        precision: Optional[str] = None,
        threads: Optional[int] = None,
    ) -> None:
        super().__init__(path, manifest, input_shape, device, precision, threads)
        from ...model.weights import build_model

        kind, index = parse_device(device)
        if kind == "tensorrt":
            raise BackendUnavailableError(
                "the torch backend cannot use TensorRT: export the checkpoint "
                "(cifrenet-edge export --format engine) and open the .engine"
            )
        if kind == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailableError(
                "torch sees no CUDA device: install a CUDA build of torch, or use device='cpu'"
            )
        on_gpu = kind == "cuda" or (kind == "auto" and torch.cuda.is_available())
        self._torch_device = torch.device(f"cuda:{index}" if on_gpu else "cpu")
        self.device = str(self._torch_device)
        want = (precision or "fp32").lower()
        if want not in ("fp32", "fp16") or (want == "fp16" and not on_gpu):
            raise BackendUnavailableError(
                f"the torch backend runs fp32 (and fp16 on CUDA), not {want} on {self.device}: "
                "export an ONNX/engine model for int8, or drop precision="
            )
        self.precision = want
        try:
            model, _ = build_model(
                manifest.preset or "cityscapes",
                weights=Path(path),
                num_classes=manifest.num_classes,
            )
        except (WeightsError, ConfigError) as exc:
            raise ModelFileError(str(exc)) from None
        model = model.to(self._torch_device)
        self.model = model.half() if want == "fp16" else model
        self.dynamic_batch = True
        dyn = manifest.dynamic
        self.max_batch = int((dyn and dyn.max_batch) or DEFAULT_DYNAMIC.max_batch or 1)
        self._lock = threading.Lock()

    def infer(self, x: np.ndarray) -> np.ndarray:
        self._check_open()
        with self._lock, torch.inference_mode():
            # torch's intra-op pool is process-wide: honour threads= for this call only
            saved = torch.get_num_threads()
            if self.threads and saved != self.threads:
                torch.set_num_threads(int(self.threads))
            try:
                t = torch.from_numpy(np.ascontiguousarray(x)).to(self._torch_device)
                if self.precision == "fp16":
                    t = t.half()
                return self.model(t).float().cpu().numpy()
            finally:
                if torch.get_num_threads() != saved:
                    torch.set_num_threads(saved)

    def _close(self) -> None:
        self.model = None  # type: ignore[assignment]
