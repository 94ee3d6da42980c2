"""Confusion-matrix metrics: IoU definition, ignore index, absent classes, out-of-range ids."""

import numpy as np
import pytest

from cifrenet_edge.accuracy.metrics import ConfusionMatrix, confusion_matrix, miou


def test_iou_and_pixel_accuracy_by_hand():
    gt = np.array([[0, 0, 1, 1], [2, 2, 255, 255]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 2]], np.uint8)
    cm = ConfusionMatrix(4, ["a", "b", "c", "d"])
    cm.update(pred, gt)
    r = cm.result()
    # a: TP 1, FP 1 (gt c), FN 1 -> 1/3; b: TP 2, FP 1 -> 2/3; c: TP 1, FN 1 -> 1/2; d absent
    assert r["per_class_iou"]["a"] == pytest.approx(100 / 3)
    assert r["per_class_iou"]["b"] == pytest.approx(200 / 3)
    assert r["per_class_iou"]["c"] == pytest.approx(50.0)
    assert r["per_class_iou"]["d"] is None and r["classes_in_mean"] == 3
    assert r["miou"] == pytest.approx((100 / 3 + 200 / 3 + 50) / 3)
    assert r["pixel_accuracy"] == pytest.approx(100 * 4 / 6)  # ignore pixels never count
    assert r["pixels"] == 6


def test_class_predicted_but_absent_counts_as_zero():
    gt = np.zeros((2, 2), np.uint8)
    pred = np.array([[0, 0], [0, 3]], np.uint8)
    cm = ConfusionMatrix(4)
    cm.update(pred, gt)
    r = cm.result()
    assert r["per_class_iou"]["3"] == 0.0 and r["classes_in_mean"] == 2
    assert r["miou"] == pytest.approx((75.0 + 0.0) / 2)


def test_out_of_range_prediction_is_a_miss_not_a_false_positive():
    gt = np.array([[0, 1]], np.uint8)
    pred = np.array([[9, 1]], np.uint8)
    m = confusion_matrix(pred, gt, 2)
    assert m.shape == (2, 3) and m[0, 2] == 1 and m[1, 1] == 1
    assert miou(pred, gt, 2) == pytest.approx(50.0)  # class 0: IoU 0, class 1: IoU 1


def test_accumulates_over_images_not_averaged_per_image():
    cm = ConfusionMatrix(2)
    cm.update(np.zeros((1, 100), np.uint8), np.zeros((1, 100), np.uint8))
    cm.update(np.zeros((1, 1), np.uint8), np.ones((1, 1), np.uint8))
    r = cm.result()
    assert r["images"] == 2
    assert r["per_class_iou"]["0"] == pytest.approx(100 * 100 / 101)
    assert r["per_class_iou"]["1"] == 0.0


def test_shape_mismatch_and_bad_ground_truth():
    with pytest.raises(ValueError):
        confusion_matrix(np.zeros((2, 2)), np.zeros((2, 3)), 2)
    with pytest.raises(ValueError):
        confusion_matrix(np.zeros((1, 1)), np.full((1, 1), 7), 2)


def test_all_ignored_is_zero_not_nan():
    cm = ConfusionMatrix(3)
    cm.update(np.zeros((2, 2), np.uint8), np.full((2, 2), 255, np.uint8))
    r = cm.result()
    assert r["miou"] == 0.0 and r["pixel_accuracy"] == 0.0 and r["classes_in_mean"] == 0
