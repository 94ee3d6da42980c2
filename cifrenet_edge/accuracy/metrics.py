"""Segmentation metrics from one confusion matrix: mIoU, per-class IoU, pixel accuracy.

Everything is derived from a C x C confusion matrix (rows = ground truth, columns =
prediction) accumulated over the whole split, the Cityscapes-benchmark convention: IoU
per class is TP / (TP + FP + FN) over ALL pixels of the split, not an average of
per-image IoUs (which over-weights small images and empty classes).

Pixels whose ground truth is the ignore index (255) are skipped entirely, whatever the
prediction. A prediction outside 0..C-1 on a valid pixel counts as wrong for the ground
truth's class (it adds a false negative, no false positive anywhere).

Mean IoU averages only the classes that occur in the ground truth OR the prediction of
the split; a class absent from both has an undefined IoU (0/0) and is EXCLUDED from the
mean, reported as ``None`` per class. That keeps mIoU honest on datasets that never show
some of the 19 classes (the synthetic scenes have no trains) while a class that is
predicted but never present still counts, as an IoU of 0. numpy only.
"""

from typing import Dict, List, Optional, Sequence

import numpy as np

IGNORE_INDEX = 255


def confusion_matrix(
    pred: np.ndarray, gt: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """C x (C + 1) int64 counts: rows ground truth, columns prediction.

    Column C counts predictions outside 0..C-1 on valid pixels: misses for the true
    class that are nobody's false positive.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    valid = gt != ignore_index
    g = gt[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    if g.size and (g.min() < 0 or g.max() >= num_classes):
        bad = np.unique(g[(g < 0) | (g >= num_classes)])[:5].tolist()
        raise ValueError(f"ground truth holds ids {bad} outside 0..{num_classes - 1}")
    p = np.where((p < 0) | (p >= num_classes), num_classes, p)
    width = num_classes + 1
    return np.bincount(g * width + p, minlength=num_classes * width).reshape(num_classes, width)


class ConfusionMatrix:
    """Accumulates a split's confusion matrix; ``result()`` gives every metric."""

    def __init__(
        self,
        num_classes: int,
        classes: Optional[Sequence[str]] = None,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        self.num_classes = int(num_classes)
        self.classes = (
            list(classes) if classes is not None else [str(i) for i in range(num_classes)]
        )
        if len(self.classes) != self.num_classes:
            raise ValueError(f"{len(self.classes)} class names for {num_classes} classes")
        self.ignore_index = ignore_index
        # column C holds predictions outside 0..C-1 (misses that are nobody's false positive)
        self.matrix = np.zeros((self.num_classes, self.num_classes + 1), np.int64)
        self.images = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        self.matrix += confusion_matrix(pred, gt, self.num_classes, self.ignore_index)
        self.images += 1

    def merge(self, other: "ConfusionMatrix") -> None:
        self.matrix += other.matrix
        self.images += other.images

    def iou(self) -> List[Optional[float]]:
        """Per-class IoU in [0, 1]; None where the class is in neither GT nor prediction."""
        m = self.matrix
        c = self.num_classes
        tp = np.diag(m[:, :c]).astype(np.float64)
        gt_total = m.sum(axis=1).astype(np.float64)  # includes out-of-range misses
        pred_total = m[:, :c].sum(axis=0).astype(np.float64)
        union = gt_total + pred_total - tp
        return [float(tp[k] / union[k]) if union[k] > 0 else None for k in range(c)]

    def result(self) -> Dict[str, object]:
        """mIoU and pixel accuracy in percent, per-class IoU (percent or None), counts."""
        ious = self.iou()
        present = [v for v in ious if v is not None]
        total = int(self.matrix.sum())
        correct = int(np.trace(self.matrix[:, : self.num_classes]))
        return {
            "miou": 100.0 * float(np.mean(present)) if present else 0.0,
            "pixel_accuracy": 100.0 * correct / total if total else 0.0,
            "per_class_iou": {
                name: (None if v is None else 100.0 * v) for name, v in zip(self.classes, ious)
            },
            "classes_in_mean": len(present),
            "num_classes": self.num_classes,
            "pixels": total,
            "images": self.images,
            "mean_excludes": "classes absent from both ground truth and prediction",
        }


def miou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    """mIoU (percent) of a single pair, a convenience for tests and notebooks."""
    cm = ConfusionMatrix(num_classes)
    cm.update(pred, gt)
    return float(cm.result()["miou"])  # type: ignore[arg-type]
