"""``quantize_onnx``: an exported FP32 ONNX in, a verified INT8 Q/DQ ONNX + manifest out.

Stages: load calibration frames (the runtime's preprocessing) -> ONNX Runtime's static
quantizer with TensorRT's recipe (``calibrate``) -> FP16 float parts for strongly typed
targets (``graph.fp16_float_parts``) -> TensorRT's Q/DQ rules on the graph (``graph``) ->
the gate on held-out frames, Q/DQ evaluated in float, plus the CPU variants (u8 inputs, 7-bit)
(``verify``) -> this CPU's own INT8 path, for information -> file + manifest, atomically.
A failing gate raises ParityError and leaves no file behind.
"""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple

from .. import __version__
from .._io import atomic_path, sha256_file
from ..data.calibration import CalibrationData, load_calibration
from ..errors import CalibrationError, ConfigError, ExportError, ModelFileError, ParityError
from ..export.targets import TARGETS
from ..manifest import Manifest, onnx_metadata_props, read_manifest, write_manifest
from .graph import (
    check_qdq_rules,
    fp16_float_parts,
    seven_bit_weights,
    u8_inputs_variant,
    weight_form,
)
from .ort_quantizer import METHODS, model_batches, quantize_to
from .verify import check_gates, fp32_logits, this_cpu_int8, verify_int8

log = logging.getLogger(__name__)

# "resize" is accepted for compatibility: the final Resize is always float now (its input,
# the classifier's output, is not quantized), so only "classifier" changes the graph.
KEEP_FLOAT_CHOICES = ("classifier", "resize", "dw-prelu")
FLOAT_PARTS = ("fp32", "fp16")
# Targets whose TensorRT builds strongly typed (``Target.strongly_typed``).
STRONGLY_TYPED_TARGETS = tuple(n for n, t in TARGETS.items() if t.strongly_typed)
# Held-out split when no holdout folder is given: every HOLDOUT_EVERY-th frame.
HOLDOUT_EVERY = 5


def default_int8_path(fp32_path: Path) -> Path:
    stem = fp32_path.name[: -len(".onnx")] if fp32_path.name.endswith(".onnx") else fp32_path.name
    stem = stem.replace("_fp32", "")
    return fp32_path.with_name(f"{stem}_int8.onnx")


def _normalise_keep_float(keep_float: Optional[Iterable[str]]) -> Tuple[str, ...]:
    kf = tuple(keep_float or ())
    bad = [k for k in kf if k not in KEEP_FLOAT_CHOICES]
    if bad:
        raise ConfigError(
            f"unknown keep_float entry {bad[0]!r}: choose from {', '.join(KEEP_FLOAT_CHOICES)}"
        )
    return kf


def _check_method(method: str) -> str:
    m = str(method).lower()
    if m not in METHODS:
        raise ConfigError(f"unknown calibration method {method!r}: use one of {', '.join(METHODS)}")
    return m


def _float_parts(requested: Optional[str], manifest: Manifest) -> str:
    if requested is None:
        return "fp16" if manifest.target in STRONGLY_TYPED_TARGETS else "fp32"
    fp = str(requested).lower()
    if fp not in FLOAT_PARTS:
        raise ConfigError(f"unknown float_parts {requested!r}: use fp32 or fp16")
    return fp


def _split(data: CalibrationData) -> Tuple[CalibrationData, CalibrationData]:
    n = len(data)
    if n < 2:
        raise CalibrationError(
            f"{n} calibration frame cannot be split into calibration and held-out frames: "
            "pass more frames or a separate --holdout folder"
        )
    held = list(range(HOLDOUT_EVERY - 1, n, HOLDOUT_EVERY)) or [n - 1]
    keep = [i for i in range(n) if i not in set(held)]
    return data.subset(keep, "calibration"), data.subset(held, "holdout (split)")


def _check_preprocessing(data: CalibrationData, wh, mean_bgr, scale, what: str) -> None:
    import numpy as np

    pp = data.fingerprint["preprocessing"]
    if list(pp["wh"]) != list(wh):
        raise CalibrationError(
            f"{what} frames were preprocessed at {pp['wh'][0]}x{pp['wh'][1]} but the model "
            f"takes {wh[0]}x{wh[1]}: load them with load_calibration(path, {tuple(wh)})"
        )
    if not np.allclose(pp["mean_bgr"], mean_bgr) or not np.isclose(pp["scale"], scale):
        raise CalibrationError(
            f"{what} frames were normalised with mean {pp['mean_bgr']} / scale {pp['scale']} "
            f"but the model expects {list(mean_bgr)} / {scale}: reload them with the model's "
            "preset"
        )


def _source_manifest(src: Path) -> Manifest:
    if not src.is_file():
        raise ModelFileError(f"FP32 model {src} does not exist: export it first")
    manifest = read_manifest(src)
    if manifest.precision != "fp32":
        raise ModelFileError(
            f"{src} is a {manifest.precision} model: quantize the FP32 export instead"
        )
    return manifest


def _load_frames(calib, holdout, count, manifest: Manifest):
    """(calibration frames, held-out frames, how the held-out set was made)."""
    wh = manifest.nominal_wh
    mean, scale = list(manifest.mean_bgr), manifest.scale
    if isinstance(calib, CalibrationData):
        data = calib
        _check_preprocessing(data, wh, mean, scale, "calibration")
        if count is not None and count < len(data):
            from ..data.calibration import evenly_spaced

            data = data.subset(evenly_spaced(len(data), count), "calibration")
    else:
        data = load_calibration(calib, wh, count=count, mean_bgr=mean, scale=scale)
    if holdout is None:
        cal, held = _split(data)
        return cal, held, f"split: every {HOLDOUT_EVERY}th calibration frame, not calibrated on"
    held = (
        holdout
        if isinstance(holdout, CalibrationData)
        else load_calibration(holdout, wh, mean_bgr=mean, scale=scale, role="holdout")
    )
    _check_preprocessing(held, wh, mean, scale, "held-out")
    overlap = {f["sha256"] for f in data.fingerprint.get("files", [])} & {
        f["sha256"] for f in held.fingerprint.get("files", [])
    }
    if overlap:
        raise CalibrationError(
            f"{len(overlap)} held-out image(s) are also calibration images: the check "
            "needs frames the ranges were not measured on; use disjoint folders"
        )
    return data, held, "separate holdout source"


def _build_graph(src: Path, raw: Path, cal, manifest: Manifest, method, kf, float_parts):
    """Quantize, apply the float-parts precision and check the rules; returns (model, recipe)."""
    import onnx

    rec = quantize_to(
        src,
        raw,
        model_batches(cal.batches, manifest.call_batch),
        manifest.input_name,
        method,
        kf,
    )
    qmodel = onnx.load(str(raw))
    if float_parts == "fp16":
        qmodel, fp16_rec = fp16_float_parts(qmodel)
        rec["float_parts"] = fp16_rec
        onnx.save(qmodel, str(raw))
    else:
        rec["float_parts"] = {"float_parts": "fp32"}
    rules = check_qdq_rules(qmodel, kf)
    if rules["problems"]:
        raise ExportError(
            f"the INT8 graph breaks TensorRT's Q/DQ rules ({len(rules['problems'])} "
            f"problems, first: {rules['problems'][0]}): report this as a bug"
        )
    rec["weight_form"] = weight_form(qmodel)
    return qmodel, dict(rec, graph=rules)


def _cpu_variants(qmodel) -> Tuple[Dict[str, bytes], Dict[str, int]]:
    """The CPUs-without-dot-product variants to verify, and the u8_inputs per-kind counts."""
    import copy

    w7 = copy.deepcopy(qmodel)
    seven_bit_weights(w7)
    u8 = copy.deepcopy(qmodel)
    counts = u8_inputs_variant(u8)
    return {"u8_inputs": u8.SerializeToString(), "weights_7bit": w7.SerializeToString()}, counts


def _int8_manifest(manifest: Manifest, cal, rec, src, parity) -> Manifest:
    return manifest.with_(
        precision="int8",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        toolkit_version=__version__,
        calibration=cal.fingerprint,
        quantization=rec,
        source={"onnx": str(src), "onnx_sha256": sha256_file(src)},
        parity=parity,
    )


def _report_this_cpu(cpu: Dict[str, Any]) -> None:
    if cpu.get("passed"):
        return
    agreement = cpu.get("agreement")
    what = f"agreement {agreement:.3f}" if agreement is not None else "no safe INT8 path"
    log.warning(
        "INT8 on this CPU (%s): %s (%s). For CPU deployment on this kind of machine use the "
        "FP32 model; the file itself passed the gate and is fine for TensorRT.",
        cpu.get("probe"),
        what,
        "; ".join(cpu.get("failures", [])) or cpu.get("plan"),
    )


def quantize_onnx(
    fp32_path,
    *,
    calib,
    output=None,
    method: str = "entropy",
    count: Optional[int] = None,
    keep_float: Optional[Iterable[str]] = ("classifier", "resize"),
    holdout=None,
    gates: Optional[Dict[str, float]] = None,
    float_parts: Optional[str] = None,
    quiet: bool = False,
):
    """Quantize an exported FP32 ONNX model to a verified INT8 Q/DQ model + manifest.

    ``calib``: a calibration source path (folder, video, image list) or CalibrationData.
    ``holdout``: a folder/video/list of frames never used for calibration; without it every
    5th calibration frame is held out (and not calibrated on). ``float_parts``: precision of
    the layers outside Q/DQ (default: fp16 for the strongly typed targets trt10/trt11, fp32
    for 8.x, whose builder adds FP16 itself). Raises ParityError when the INT8 model, its
    Q/DQ evaluated in float, disagrees with FP32 beyond ``gates``; nothing is written then.
    """
    import onnx

    from ..export.onnx_export import ExportResult

    method = _check_method(method)
    kf = _normalise_keep_float(keep_float)
    g = check_gates(gates)
    src = Path(fp32_path).expanduser()
    manifest = _source_manifest(src)
    fp = _float_parts(float_parts, manifest)
    input_name = manifest.input_name
    cal, held, holdout_kind = _load_frames(calib, holdout, count, manifest)
    out = Path(output).expanduser() if output else default_int8_path(src)
    if out.resolve() == src.resolve():
        raise ConfigError(f"output {out} would overwrite the FP32 model: choose another --output")
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cifrenet_int8_") as tmp:
        raw = Path(tmp) / "int8.onnx"
        qmodel, rec = _build_graph(src, raw, cal, manifest, method, kf, fp)
        inputs = model_batches(held.batches, manifest.call_batch)
        ref = fp32_logits(src, inputs, input_name)
        variants, u8_counts = _cpu_variants(qmodel)
        parity = verify_int8(
            src,
            raw,
            held,
            manifest.classes,
            input_name,
            g,
            batch=manifest.call_batch,
            variants=variants,
            ref=ref,
        )
        parity["variants"]["u8_inputs"]["convs"] = u8_counts
        parity["holdout"]["how"] = holdout_kind
        if not parity["passed"]:
            raise ParityError(
                "INT8 model disagrees with FP32 on held-out frames ("
                + "; ".join(parity["failures"])
                + f"; worst class {parity['worst_class']!r}): calibrate on more/better frames "
                "from the deployment camera, try --calib-method percentile or minmax, or keep "
                "more layers float"
            )
        m8 = _int8_manifest(manifest, cal, rec, src, parity)
        parity["this_cpu"] = this_cpu_int8(raw, m8, inputs, ref, manifest.classes, g)
        m8 = m8.with_(parity=parity)  # the manifest owns a copy: record this CPU's row in it
        if not quiet:
            _report_this_cpu(parity["this_cpu"])
        del qmodel.metadata_props[:]
        for k, v in onnx_metadata_props(m8).items():
            entry = qmodel.metadata_props.add()
            entry.key, entry.value = k, v
        with atomic_path(out) as tmp_out:
            onnx.save(qmodel, str(tmp_out))
        try:
            mpath = write_manifest(out, m8)
        except BaseException:
            out.unlink()  # an INT8 file without its manifest must not survive
            raise
    if not quiet:
        log.info(
            "INT8 %s: agreement %.4f on %d held-out frames (Q/DQ in float), worst class %s; "
            "this CPU %s (%.1fs)",
            out,
            parity["agreement"],
            held.fingerprint["count"],
            parity["worst_class"],
            parity["this_cpu"].get("agreement"),
            time.perf_counter() - t0,
        )
    return ExportResult(path=out, manifest_path=mpath, manifest=m8, parity=parity)
