"""``export_onnx``: the verified FP32 ONNX file, its default path and its manifest.

* **Files that forget what they are.** The manifest (classes, palette, normalisation,
  resolution or verified dynamic range, weights hash, untrained flag, parity figures) is
  embedded in ``metadata_props`` and written as a JSON sidecar.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

from .. import __version__
from .._io import PathLike, atomic_path, ensure_writable_dir
from ..errors import ConfigError, ExportError
from ..manifest import MANIFEST_FORMAT, Manifest, onnx_metadata_props, write_manifest
from ..presets import MAX_SIDE, MIN_SIDE, format_resolution, get_preset, parse_resolution
from .graph import INPUT_NAME, OUTPUT_NAME, WH, _load_model, _normalise_resize, build_onnx
from .parity import DEFAULT_MAX_ABS_DIFF, DEFAULT_MIN_AGREEMENT, check_parity, parity_frames
from .targets import DEFAULT_TARGET, check_target_ops, get_target, model_opset, resolve_opset

if TYPE_CHECKING:
    import onnx

DEFAULT_DYNAMIC_MAX_BATCH = 4  # a four-camera rig; the TensorRT profile needs an upper bound


@dataclass
class ExportResult:
    """An artifact on disk with its manifest (also what ``quantize.quantize_onnx`` returns)."""

    path: Path
    manifest_path: Path
    manifest: Manifest
    parity: Dict[str, Any]


def _res_tuple(res: Union[str, Sequence[int]], what: str = "--res") -> WH:
    return parse_resolution(res, what=what)


def default_output_path(
    preset: str,
    res: Union[str, Sequence[int], None],
    precision: str = "fp32",
    dynamic: bool = False,
    target: str = DEFAULT_TARGET,
    ext: str = ".onnx",
) -> Path:
    """``models/cifrenet_<preset>_<WxH|dynamic>_<precision>[_<target>].onnx``.

    The default target is left out of the name; other targets are kept in it, because a trt8.2
    (opset 13) file and a trt8.6 file must not overwrite each other.
    """
    size = "dynamic" if dynamic or res is None else format_resolution(_res_tuple(res))
    t = get_target(target).name
    suffix = "" if t == DEFAULT_TARGET else f"_{t}"
    return Path("models") / f"cifrenet_{get_preset(preset).name}_{size}_{precision}{suffix}{ext}"


def _check_output(path: PathLike, ext: str = ".onnx") -> Path:
    out = Path(path).expanduser()
    if out.suffix.lower() != ext:
        raise ConfigError(f"--output {out} must end in {ext}: e.g. --output {out.with_suffix(ext)}")
    if out.is_dir():
        raise ConfigError(f"--output {out} is a folder: give a file name ending in {ext}")
    ensure_writable_dir(out)
    if out.exists() and not os.access(str(out), os.W_OK):
        raise ConfigError(f"--output {out} exists and is not writable: choose another --output")
    return out


def _dynamic_range(
    res: WH, min_res: Optional[WH], max_res: Optional[WH], batch: int
) -> Dict[str, Any]:
    lo = min_res or (max(MIN_SIDE, res[0] // 2), max(MIN_SIDE, res[1] // 2))
    hi = max_res or (min(MAX_SIDE, res[0] * 2), min(MAX_SIDE, res[1] * 2))
    if not (lo[0] <= res[0] <= hi[0] and lo[1] <= res[1] <= hi[1]):
        raise ConfigError(
            f"dynamic range {lo[0]}x{lo[1]} .. {hi[0]}x{hi[1]} does not contain --res "
            f"{res[0]}x{res[1]}: give --min-res <= --res <= --max-res"
        )
    # One size not divisible by 8 (odd on both sides) inside the range: stride-8 rounding is
    # where a dynamic graph most often diverges from PyTorch.
    odd = (((lo[0] + res[0]) // 2) | 1, ((lo[1] + res[1]) // 2) | 1)
    odd = (min(odd[0], hi[0]), min(odd[1], hi[1]))
    verify: List[WH] = []
    for wh in (lo, res, odd, hi):
        if wh not in verify:
            verify.append(wh)
    return {
        "min": [lo[0], lo[1]],
        "opt": [res[0], res[1]],
        "max": [hi[0], hi[1]],
        "batch": [1, batch, max(batch, DEFAULT_DYNAMIC_MAX_BATCH)],
        "verify": verify,
    }


def _console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def print_warnings(lines: Sequence[str], quiet: bool) -> None:
    """Warnings of a stage (TensorRT rules that only warn), one yellow line each."""
    if lines and not quiet:
        from rich.markup import escape

        console = _console()
        for line in lines:
            console.print(f"[yellow]warning:[/] {escape(line)}")


def warn_untrained(console=None) -> None:
    """The loud warning every untrained export prints."""
    from rich.panel import Panel

    console = console or _console()
    console.print(
        Panel(
            "[bold]No --weights given: this model is UNTRAINED (random weights, seed 0).[/]\n"
            "Its masks are noise. Fine for speed tests and integration; the manifest records "
            "weights.trained = false. Pass --weights CKPT for a model that segments.",
            title="[bold red]WARNING: UNTRAINED MODEL[/]",
            border_style="red",
        )
    )


def export_onnx(
    preset: str = "cityscapes",
    weights: Optional[PathLike] = None,
    res: Union[str, Sequence[int]] = (640, 360),
    dynamic: bool = False,
    opset: Optional[int] = None,
    target: str = DEFAULT_TARGET,
    output: Optional[PathLike] = None,
    verify_images: Optional[PathLike] = None,
    batch: int = 1,
    quiet: bool = False,
    *,
    min_res: Union[str, Sequence[int], None] = None,
    max_res: Union[str, Sequence[int], None] = None,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    max_abs_diff: float = DEFAULT_MAX_ABS_DIFF,
) -> ExportResult:
    """Export the FP32 ONNX model, check it against the target parser and PyTorch, write it.

    Writes ``output`` (default ``default_output_path``) and its ``.json`` manifest sidecar,
    both only after every gate passed; on any failure neither exists afterwards.
    """
    import onnx  # noqa: F401  (as before the split: a missing onnx fails before any work)

    p = get_preset(preset)
    t = get_target(target)
    the_opset = resolve_opset(t, opset)
    wh = _res_tuple(res)
    try:
        batch = int(batch)
    except (TypeError, ValueError):
        raise ConfigError(f"--batch {batch!r} is not an integer: e.g. --batch 1") from None
    if not 1 <= batch <= 64:
        raise ConfigError(f"--batch {batch} must be 1..64: e.g. --batch 1")
    if not dynamic and (min_res is not None or max_res is not None):
        raise ConfigError("--min-res/--max-res set the range of a dynamic model: add --dynamic")
    drange = None
    if dynamic:
        lo = _res_tuple(min_res, "--min-res") if min_res is not None else None
        hi = _res_tuple(max_res, "--max-res") if max_res is not None else None
        drange = _dynamic_range(wh, lo, hi, batch)
    out = _check_output(output or default_output_path(p.name, wh, "fp32", dynamic, t.name))
    frames, source = parity_frames(verify_images)
    console = None if quiet else _console()

    model, wrecord = _load_model(p.name, weights)
    if not wrecord["trained"] and not quiet:
        warn_untrained(console)
    if console:
        console.print(
            f"exporting CIFReNet ({p.name}) {'dynamic' if dynamic else format_resolution(wh)} "
            f"at opset {the_opset} for {t.description} ..."
        )
    proto = build_onnx(model, wh, opset=the_opset, dynamic=dynamic, batch=batch)
    target_report = check_target_ops(proto, t.name)
    sizes, batches = _parity_sizes(drange, wh, batch)
    parity = check_parity(
        proto,
        model,
        sizes,
        frames=frames,
        source=source,
        batches=batches,
        min_agreement=min_agreement,
        max_abs_diff=max_abs_diff,
    )
    dynamic_record = None
    if drange is not None:
        dynamic_record = {k: drange[k] for k in ("min", "opt", "max", "batch")}
        dynamic_record["verified"] = [[w, h] for (w, h) in drange["verify"]]
        dynamic_record["verified_batches"] = sorted(set(batches))
    doc: Dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "kind": "onnx",
        "precision": "fp32",
        **p.metadata(classes=wrecord.pop("classes", None)),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "resolution": None if dynamic else [wh[0], wh[1]],
        "dynamic": dynamic_record,
        "batch": None if dynamic else batch,
        "opset": the_opset,
        "ir_version": int(proto.ir_version),
        "target": t.name,
        "target_check": {"parser": target_report["parser"], "ops": target_report["ops"]},
        "resize": _normalise_resize(proto),
        "exporter": _exporter_versions(),
        "toolkit_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "weights": wrecord,
        "parity": parity,
    }
    manifest = Manifest.from_dict(doc, out)
    side = _write(proto, out, manifest, the_opset)
    if console:
        console.print(
            f"wrote {out} (+ {side.name}); parity: argmax agreement "
            f"{parity['argmax_agreement']:.4%}, max |diff| {parity['max_abs_diff']:.2e}"
        )
    return ExportResult(path=out, manifest_path=side, manifest=manifest, parity=parity)


def _parity_sizes(
    drange: Optional[Dict[str, Any]], wh: WH, batch: int
) -> Tuple[List[WH], List[int]]:
    """The (size, batch) pairs the parity gate runs: a dynamic model's whole range."""
    if drange is None:
        return [wh], [batch]
    sizes = list(drange["verify"])
    batches = [1] * len(sizes)
    sizes.insert(1, drange["verify"][0])  # the smallest size again, at batch 2
    batches.insert(1, 2)
    return sizes, batches


def _write(proto: onnx.ModelProto, out: Path, manifest: Manifest, opset: int) -> Path:
    """The ONNX file with its embedded manifest, read back, then the sidecar; both or neither."""
    import onnx

    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, onnx_metadata_props(manifest))
    with atomic_path(out) as tmp:
        onnx.save(proto, str(tmp))
        _check_written(tmp, opset, manifest)
    try:
        return write_manifest(out, manifest)
    except BaseException:
        out.unlink(missing_ok=True)
        raise


def _check_written(path: Path, opset: int, manifest: Manifest) -> None:
    """Read the file back before it replaces anything: opset and embedded manifest as meant."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    got = model_opset(model)
    if got != opset:
        raise ExportError(f"the written file declares opset {got}, not {opset} (report this bug)")
    props = {p.key: p.value for p in model.metadata_props}
    if json.loads(props.get("cifrenet_edge", "null")) != manifest.to_dict():
        raise ExportError("the written file's embedded manifest differs (report this bug)")


def _exporter_versions() -> Dict[str, str]:
    import onnx
    import onnxslim
    import torch

    return {
        "torch": torch.__version__,
        "exporter": "torch.onnx TorchScript (dynamo=False)",
        "onnx": onnx.__version__,
        "onnxslim": onnxslim.__version__,
        "python": sys.version.split()[0],
    }
