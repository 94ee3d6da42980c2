"""Accuracy of a DEPLOYED model: mIoU, per-class IoU and pixel accuracy through the runtime.

Every model -- a PyTorch checkpoint, an FP32/FP16/INT8 ONNX file, a TensorRT engine -- is
opened with ``runtime.Segmenter`` and fed raw dataset frames exactly as a robot feeds it
camera frames: the runtime's preprocessing, the model's own resolution, the runtime's
class-map resize back to the frame. So the number measured is the number shipped, INT8
rounding, resize and post-processing included; a separate "evaluation path" could agree
with PyTorch and still hide a broken deployment.

``compare`` runs a second deployment on the same frames and reports per-class IoU deltas
and the pixel flip rate (share of pixels whose class differs between the two), the figure
that says whether an INT8 engine still behaves like the FP32 model it came from.

``int8_gate`` is the export pipeline's accuracy gate: it fails an INT8 export whose mIoU
drop against FP32 on labelled data exceeds ``max_drop`` points.

Metrics follow ``metrics.ConfusionMatrix`` (whole-split confusion matrix, ignore = 255,
classes absent from both ground truth and prediction excluded from the mean).
Torch is not imported here: evaluating an ONNX or engine file needs only the runtime.
"""

import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from ..data.datasets import SegDataset, open_dataset
from ..errors import AccuracyGateError, ConfigError, DatasetError
from .metrics import ConfusionMatrix

PathLike = Union[str, Path]


def _check_classes(model_path: PathLike, classes: Sequence[str], ds: SegDataset) -> None:
    if list(classes) == list(ds.classes):
        return
    mine = f"{len(classes)} classes ({', '.join(list(classes)[:3])}, ...)"
    theirs = f"{ds.num_classes} ({', '.join(list(ds.classes)[:3])}, ...)"
    raise DatasetError(
        f"model {Path(model_path).name} predicts {mine} but {ds.kind} data {ds.root} is "
        f"labelled with {theirs}: evaluate a model trained for this dataset's classes"
    )


def _open(path: PathLike, device: str, backend: Optional[str], resolution, threads):
    from ..runtime import Segmenter

    return Segmenter.open(
        path, device=device, backend=backend, resolution=resolution, threads=threads, warmup=1
    )


def _describe(seg: Any, path: PathLike) -> Dict[str, Any]:
    man = seg.manifest
    be = seg.backend
    return {
        "model": str(path),
        "kind": man.kind,
        "precision": getattr(be, "precision", None) or man.precision,
        "backend": getattr(be, "name", None),
        "device": getattr(be, "device", None),
        "resolution": list(seg.resolution),
    }


def evaluate(
    model: PathLike,
    data: str,
    split: str = "val",
    compare: Optional[PathLike] = None,
    limit: Optional[int] = None,
    device: str = "auto",
    backend: Optional[str] = None,
    resolution: Optional[Any] = None,
    threads: Optional[int] = None,
    quiet: bool = True,
) -> Dict[str, Any]:
    """Evaluate ``model`` (and ``compare``, on the same frames) on one split of ``data``.

    Returns a JSON-ready dict: the model's metrics (percent), per-class IoU (None for
    classes in neither ground truth nor prediction) and, with ``compare``, the other
    model's metrics, per-class deltas (model - compare) and the pixel flip rate.
    """
    ds = open_dataset(data, split)
    n = len(ds) if limit is None else min(int(limit), len(ds))
    if n < 1:
        raise DatasetError(f"{ds.describe()} has no images to evaluate: check --split/--limit")
    if limit is not None and limit < 1:
        raise ConfigError(f"--limit {limit}: evaluate at least one image")
    seg = _open(model, device, backend, resolution, threads)
    other = None
    try:
        _check_classes(model, seg.classes, ds)
        if compare is not None:
            other = _open(compare, device, backend if backend else None, resolution, threads)
            _check_classes(compare, other.classes, ds)
        cm = ConfusionMatrix(ds.num_classes, ds.classes, ds.ignore_index)
        cm_other = ConfusionMatrix(ds.num_classes, ds.classes, ds.ignore_index)
        flips, flips_valid, pixels, valid_pixels = 0, 0, 0, 0
        seconds = 0.0
        bar = None
        if not quiet:
            from tqdm import tqdm

            bar = tqdm(total=n, desc="eval", unit="img", file=sys.stderr, dynamic_ncols=True)
        for i in range(n):
            img, lab = ds[i]
            t0 = time.perf_counter()
            pred = seg.predict(img)
            seconds += time.perf_counter() - t0
            cm.update(pred, lab)
            if other is not None:
                pred2 = other.predict(img)
                cm_other.update(pred2, lab)
                diff = pred != pred2
                valid = lab != ds.ignore_index
                flips += int(diff.sum())
                flips_valid += int((diff & valid).sum())
                pixels += diff.size
                valid_pixels += int(valid.sum())
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        if not cm.matrix.sum():
            raise DatasetError(
                f"{ds.describe()} has no labelled pixels (all 255): its labels are withheld "
                "or empty (Cityscapes test is); evaluate on --split val"
            )
        result: Dict[str, Any] = {
            **_describe(seg, model),
            "dataset": ds.describe(),
            "data": str(data),
            "split": split,
            **cm.result(),
            "predict_seconds_mean": seconds / n,
        }
        if other is not None:
            ref = cm_other.result()
            deltas = {
                name: (None if a is None or b is None else a - b)
                for (name, a), b in zip(
                    result["per_class_iou"].items(), ref["per_class_iou"].values()
                )
            }
            result["compare"] = {
                **_describe(other, compare),
                "miou": ref["miou"],
                "pixel_accuracy": ref["pixel_accuracy"],
                "per_class_iou": ref["per_class_iou"],
                "delta_miou": result["miou"] - ref["miou"],
                "delta_pixel_accuracy": result["pixel_accuracy"] - ref["pixel_accuracy"],
                "per_class_delta": deltas,
                "flip_rate": flips / pixels if pixels else 0.0,
                "flip_rate_labelled": flips_valid / valid_pixels if valid_pixels else 0.0,
            }
        return result
    finally:
        seg.close()
        if other is not None:
            other.close()


def int8_gate(
    quant_model: PathLike,
    reference_model: PathLike,
    data_spec: str,
    max_drop: float = 1.0,
    limit: Optional[int] = None,
    split: str = "val",
    device: str = "auto",
) -> Dict[str, Any]:
    """Fail (``AccuracyGateError``) when the INT8 model's mIoU drop exceeds ``max_drop`` points.

    Both models run through the Segmenter on the same labelled held-out frames; the drop
    is reference mIoU - INT8 mIoU (a gain passes). Returns the summary the export
    manifest records: both mIoUs, the drop, the limit, the flip rate, images used.
    """
    if max_drop < 0:
        raise ConfigError(f"--max-miou-drop {max_drop}: must be >= 0 points")
    res = evaluate(
        quant_model, data_spec, split=split, compare=reference_model, limit=limit, device=device
    )
    cmp = res["compare"]
    drop = float(cmp["miou"] - res["miou"])
    summary = {
        "data": str(data_spec),
        "split": split,
        "images": res["images"],
        "reference_miou": round(float(cmp["miou"]), 3),
        "int8_miou": round(float(res["miou"]), 3),
        "miou_drop": round(drop, 3),
        "max_drop": float(max_drop),
        "flip_rate": round(float(cmp["flip_rate"]), 5),
        "worst_class": _worst_class(cmp["per_class_delta"]),
        "passed": drop <= max_drop,
    }
    if drop > max_drop:
        worst = summary["worst_class"]
        raise AccuracyGateError(
            f"INT8 model {Path(quant_model).name} loses {drop:.2f} mIoU points against "
            f"{Path(reference_model).name} ({cmp['miou']:.2f} -> {res['miou']:.2f}, worst: "
            f"{worst}) on {res['images']} {split} images, above the allowed {max_drop:g}: "
            "calibrate on more representative images (--calib, --calib-count), keep more "
            "layers in float (--keep-float), or accept it with --max-miou-drop"
        )
    return summary


def _worst_class(deltas: Dict[str, Optional[float]]) -> Optional[str]:
    known = {k: v for k, v in deltas.items() if v is not None}
    if not known:
        return None
    name = min(known, key=lambda k: known[k])
    return f"{name} {known[name]:+.2f}"


def format_table(result: Dict[str, Any]) -> Any:
    """A rich Table of per-class IoU (and deltas against the comparison model)."""
    from rich.markup import escape
    from rich.table import Table

    cmp = result.get("compare")
    title = (
        f"{Path(result['model']).name} [{result['backend']}, {result['precision']}] on "
        f"{result['dataset']}"
    )
    table = Table(title=escape(title))
    table.add_column("class")
    table.add_column("IoU %", justify="right")
    if cmp:
        table.add_column(f"{Path(cmp['model']).name} IoU %", justify="right")
        table.add_column("delta", justify="right")

    def fmt(v: Optional[float]) -> str:
        return "-" if v is None else f"{v:.2f}"

    for name, v in result["per_class_iou"].items():
        row = [name, fmt(v)]
        if cmp:
            d = cmp["per_class_delta"][name]
            row += [fmt(cmp["per_class_iou"][name]), "-" if d is None else f"{d:+.2f}"]
        if v is None and (not cmp or cmp["per_class_iou"][name] is None):
            continue  # absent from ground truth and both predictions: not in the mean
        table.add_row(*row)
    row = ["mIoU", f"{result['miou']:.2f}"]
    if cmp:
        row += [f"{cmp['miou']:.2f}", f"{cmp['delta_miou']:+.2f}"]
    table.add_row(*row, style="bold")
    row = ["pixel accuracy", f"{result['pixel_accuracy']:.2f}"]
    if cmp:
        row += [f"{cmp['pixel_accuracy']:.2f}", f"{cmp['delta_pixel_accuracy']:+.2f}"]
    table.add_row(*row)
    return table


def result_lines(result: Dict[str, Any]) -> str:
    """Two plain lines for logs: the headline figures."""
    line = (
        f"mIoU {result['miou']:.2f}  pixel accuracy {result['pixel_accuracy']:.2f}  "
        f"({result['images']} images, {result['classes_in_mean']} classes in the mean)"
    )
    cmp = result.get("compare")
    if cmp:
        line += (
            f"\nvs {Path(cmp['model']).name}: mIoU {cmp['miou']:.2f} "
            f"(delta {cmp['delta_miou']:+.2f}), pixel flip rate "
            f"{100 * cmp['flip_rate']:.3f}%"
        )
    return line
