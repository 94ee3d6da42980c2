"""Checkpoints: saved and loaded without unpickling arbitrary objects.

``.safetensors`` files, or ``.pt/.pth`` files read with ``torch.load(weights_only=True)``.
A checkpoint that does not fit the preset fails with one error that lists missing,
unexpected and mis-shaped keys. torchvision's ImageNet MobileNetV2 weights load into the
backbone exactly (the extra t = 1 expand conv starts as the identity).
"""

import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from .._io import atomic_path
from ..errors import WeightsError
from .cifrenet import CIFReNet

CHECKPOINT_FORMAT = "cifrenet-edge-checkpoint/1"


def _read_state(path: Path) -> Dict[str, Any]:
    """Read a file into a flat dict, refusing pickled objects."""
    if path.is_dir():
        raise WeightsError(f"weights {path} is a folder: pass the checkpoint file inside it")
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist: pass an existing --weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
            return {"state_dict": load_file(str(path)), **meta}
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except WeightsError:
        raise
    except Exception as exc:  # unpickling refusals, truncated files, foreign formats
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if first.isdigit():  # torch's legacy reader reports only the bad magic number
            first = "not a torch.save file"
        raise WeightsError(
            f"cannot read weights {path}: {first[:200]} (give a .pth saved with "
            "torch.save(state_dict) or a .safetensors file)"
        ) from None
    if not isinstance(obj, dict):
        raise WeightsError(f"weights {path} hold a {type(obj).__name__}, not a state dict")
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        return obj
    if "model" in obj and isinstance(obj["model"], dict):  # common training-script layout
        return {**obj, "state_dict": obj["model"]}
    return {"state_dict": obj}


def checkpoint_info(path: Path) -> Dict[str, Any]:
    """The checkpoint's metadata (preset, epoch, ...) without its tensors."""
    return {k: v for k, v in _read_state(Path(path)).items() if k != "state_dict"}


def _strip_prefix(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    for prefix in ("module.", "model."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def state_dict_diff(
    model: torch.nn.Module, state: Dict[str, torch.Tensor]
) -> Tuple[List[str], List[str], List[str]]:
    """Missing, unexpected and mis-shaped keys between a model and a state dict."""
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    misshaped = sorted(
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    )
    return missing, unexpected, misshaped


def _summarise(keys: List[str], limit: int = 4) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


def load_weights(model: CIFReNet, path: Path) -> Dict[str, Any]:
    """Load a checkpoint into ``model`` strictly; return the checkpoint's metadata."""
    path = Path(path).expanduser()
    ckpt = _read_state(path)
    state = _strip_prefix(ckpt["state_dict"])
    missing, unexpected, misshaped = state_dict_diff(model, state)
    if missing or unexpected or misshaped:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_summarise(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_summarise(unexpected)}")
        if misshaped:
            parts.append(f"{len(misshaped)} mis-shaped: {_summarise(misshaped)}")
        hint = ""
        saved = ckpt.get("preset")
        if saved and saved != model.preset.name:
            hint = f" (it was saved for preset {saved!r}: pass --preset {saved})"
        elif misshaped:
            hint = " (check --preset and --num-classes match the checkpoint)"
        raise WeightsError(
            f"weights {path} do not fit preset {model.preset.name!r}: " + "; ".join(parts) + hint
        )
    model.load_state_dict(state, strict=True)
    return {k: v for k, v in ckpt.items() if k != "state_dict"}


def save_checkpoint(model: CIFReNet, path: Path, extra: Optional[Dict[str, Any]] = None) -> Path:
    """Save weights plus plain metadata; ``.safetensors`` or a weights_only-loadable ``.pth``."""
    path = Path(path).expanduser()
    meta: Dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "preset": model.preset.name,
        "num_classes": model.num_classes,
        **(extra or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file(state, str(tmp), metadata={k: str(v) for k, v in meta.items()})
        else:
            torch.save({"state_dict": state, **meta}, str(tmp))
    return path


def build_model(
    preset: str = "cityscapes",
    weights: Optional[Path] = None,
    num_classes: Optional[int] = None,
) -> Tuple[CIFReNet, Dict[str, Any]]:
    """A model in eval mode, with weights if given; metadata says whether it is trained."""
    if weights is not None and num_classes is None:
        info = checkpoint_info(Path(weights).expanduser())
        if "num_classes" in info:
            num_classes = int(info["num_classes"])
    model = CIFReNet(preset, num_classes=num_classes)
    meta: Dict[str, Any] = {"trained": False}
    if weights is not None:
        meta = {"trained": True, **load_weights(model, Path(weights))}
    return model.eval(), meta


# torchvision MobileNetV2 -> our backbone. torchvision's features.k are our blocks in order:
# features.0 = stem, features.1 = stage 1 (t = 1, no expand conv), features.2.. = the rest.
_BLOCKS_PER_STAGE = (1, 2, 3, 4, 3, 3, 1)


def _tv_block_targets() -> Dict[int, str]:
    targets, k = {}, 1
    for stage, repeats in enumerate(_BLOCKS_PER_STAGE):
        for block in range(repeats):
            targets[k] = f"backbone.stages.{stage}.{block}"
            k += 1
    return targets


def map_torchvision_mobilenet_v2(tv_state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename torchvision ``mobilenet_v2`` keys to ours; drop its 1280 conv and classifier."""
    targets = _tv_block_targets()
    out: Dict[str, torch.Tensor] = {}
    for key, value in tv_state.items():
        m = re.match(r"features\.(\d+)\.(.*)", key)
        if not m:
            continue  # classifier.*
        k, rest = int(m.group(1)), m.group(2)
        if k == 0:
            out["backbone.stem." + rest] = value
            continue
        if k not in targets:
            continue  # features.18: the 1280-channel conv we do not have
        base = targets[k]
        if k == 1:  # conv.0 = dw (conv, bn), conv.1 = project conv, conv.2 = project bn
            rest = re.sub(r"^conv\.0\.", "dw.", rest)
            rest = re.sub(r"^conv\.1\.", "project.0.", rest)
            rest = re.sub(r"^conv\.2\.", "project.1.", rest)
        else:  # conv.0 expand, conv.1 dw, conv.2 project conv, conv.3 project bn
            rest = re.sub(r"^conv\.0\.", "expand.", rest)
            rest = re.sub(r"^conv\.1\.", "dw.", rest)
            rest = re.sub(r"^conv\.2\.", "project.0.", rest)
            rest = re.sub(r"^conv\.3\.", "project.1.", rest)
        out[f"{base}.{rest}"] = value
    return out


def load_imagenet_backbone(model: CIFReNet, path: Path) -> int:
    """Initialise the backbone from torchvision's ImageNet MobileNetV2 state dict file.

    Returns the number of tensors loaded. The stage-1 expand conv (absent in torchvision)
    becomes an exact identity: identity 1x1 weights and a BN with running_var = 1 - eps,
    so BN(x) == x; the ReLU6 after it is the identity on the stem's ReLU6 output.
    """
    ckpt = _read_state(Path(path).expanduser())
    mapped = map_torchvision_mobilenet_v2(_strip_prefix(ckpt["state_dict"]))
    if not mapped:
        raise WeightsError(
            f"{path} holds no torchvision MobileNetV2 'features.*' keys: give the state dict "
            "of torchvision.models.mobilenet_v2(weights='IMAGENET1K_V1')"
        )
    own = model.state_dict()
    bad = [k for k, v in mapped.items() if k not in own or own[k].shape != v.shape]
    expected = [k for k in own if k.startswith("backbone.") and ".0.0.expand." not in k]
    missing = [k for k in expected if k not in mapped]
    if bad or missing:
        raise WeightsError(
            f"{path} is not a torchvision MobileNetV2 (width 1.0) state dict: "
            f"{len(bad)} keys do not fit, {len(missing)} backbone keys missing "
            f"(e.g. {_summarise(bad or missing, 2)})"
        )
    model.load_state_dict(mapped, strict=False)
    expand = model.backbone.stages[0][0].expand
    conv, bn = expand[0], expand[1]
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, 0, 0].copy_(torch.eye(conv.out_channels))
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
    return len(mapped)
