"""No INT8 speed without its accuracy: each INT8 row's class-map agreement with FP32.

A fast INT8 row that returns a different class map is not a result (AVX2-only CPUs ran INT8
1.4x faster and 40 % wrong: the 16-bit saturation of ``runtime/cpu_int8.py``). So before
any timing, every INT8 row runs the bench's frames through the same ``Segmenter.predict``
it is timed with, and its class maps are compared pixel by pixel with the FP32 ONNX model's
in ONNX Runtime (the export's parity reference). The frames: the end-to-end frame plus a
few synthetic street scenes the INT8 model was not calibrated on. Weights matter here (an
untrained model paints one class everywhere, so any INT8 "agrees"): ``bench`` defaults to
the probe model (``cifrenet_edge.model.linear_probe``) for this reason.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from ..errors import CifreNetError
from ..manifest import Manifest
from .stats import _one_line

AGREEMENT_SCENES = (7001, 7002, 7003)  # never calibration seeds (write_synthetic_dataset: 0)
REFERENCE = "FP32 ONNX in onnxruntime (CPU), Segmenter.predict on the same frames"


def agreement_frames(frame: np.ndarray) -> List[np.ndarray]:
    """The end-to-end frame and synthetic scenes of the same size."""
    from ..data.synthetic import make_scene

    h, w = frame.shape[:2]
    return [frame] + [make_scene(s, (w, h))[0] for s in AGREEMENT_SCENES]


def _fp32_reference(prepared_fp32: Optional[Path], manifest: Manifest) -> Optional[Path]:
    if prepared_fp32 is not None and Path(prepared_fp32).is_file():
        return Path(prepared_fp32)
    src = manifest.source_onnx
    return Path(src) if src and Path(src).is_file() else None


def _reference_maps(ref_path: Path, frames: Sequence[np.ndarray], wh: Any):
    """The FP32 model's class maps on ``frames`` (ONNX Runtime, CPU), or the error text."""
    from ..runtime import Segmenter

    try:
        with Segmenter.open(
            str(ref_path), device="cpu", backend="onnxruntime", warmup=0, resolution=wh
        ) as ref:
            return [ref.predict(f) for f in frames], None
    except CifreNetError as exc:
        return None, f"FP32 reference: {exc}"


def measure_agreement(
    segmenter: Any,
    fp32_path: Optional[Path],
    frames: Sequence[np.ndarray],
    wh: Any,
    cache: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Pixel agreement of ``segmenter``'s class maps with the FP32 model's, or why not.

    ``cache`` keeps the FP32 maps per reference file, so several INT8 rows of one
    resolution run the FP32 model once.
    """
    manifest = segmenter.manifest
    ref_path = _fp32_reference(fp32_path, manifest)
    out: Dict[str, Any] = {
        "frames": len(frames),
        "reference": REFERENCE,
        "path": segmenter.reason,
        "weight_bits": segmenter.backend.describe().get("int8_weight_bits"),
        "variant": segmenter.backend.describe().get("int8_variant"),
    }
    if ref_path is None:
        recorded = (manifest.parity or {}).get("agreement")
        return dict(
            out,
            agreement=recorded,
            measured=False,
            note="no FP32 model beside this INT8 file: the export's recorded gate agreement"
            if recorded is not None
            else "no FP32 model and no recorded agreement",
        )
    cache = {} if cache is None else cache
    if str(ref_path) not in cache:
        cache[str(ref_path)] = _reference_maps(ref_path, frames, wh)
    want, error = cache[str(ref_path)]
    if want is None:
        return dict(out, agreement=None, measured=False, note=error)
    got = [segmenter.predict(f) for f in frames]
    same = sum(int((a == b).sum()) for a, b in zip(want, got))
    total = sum(a.size for a in want)
    classes = sorted({int(c) for a in want for c in np.unique(a)})
    return dict(
        out,
        agreement=same / total,
        measured=True,
        fp32_model=str(ref_path),
        fp32_classes_seen=len(classes),
    )


def add_int8_agreement(
    rows: Sequence[Any], fp32_path: Optional[Path], frame: np.ndarray, wh: Any, log: Any
) -> None:
    """Fill ``result.accuracy`` of every open INT8 row; a row that cannot be checked fails."""
    int8 = [r for r in rows if r.segmenter is not None and r.result.precision == "int8"]
    if not int8:
        return
    frames = agreement_frames(frame)
    cache: Dict[str, Any] = {}
    for row in int8:
        log(f"checking {row.result.backend} int8 against FP32 on {len(frames)} frames ...")
        try:
            acc = measure_agreement(row.segmenter, fp32_path, frames, wh, cache)
        except Exception as exc:  # a library failure fails this row, the rest runs
            acc = {"agreement": None, "measured": False, "note": _one_line(exc)}
        row.result.accuracy = acc
        if acc.get("agreement") is None:
            row.result.status = "failed"
            row.result.reason = (
                f"INT8 agreement with FP32 could not be measured ({acc.get('note')}): keep the "
                "FP32 export beside the INT8 file, or pass --preset to let bench export both"
            )
            row.segmenter.close()
            row.segmenter = None
