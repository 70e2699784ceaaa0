"""The streamed confusion matrix against hand-computed figures and an independent pycocotools reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from maskclip_cli.core.errors import MaskCLIPError
from maskclip_cli.evaluation.metrics import ConfusionMatrix


def test_hand_computed_example():
    # 4 classes: 0 and 1 in both, 2 only predicted, 3 absent from both; 255 = ignore in GT.
    gt = np.array([[0, 0, 1, 1], [0, 1, 1, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 1, 0, 3]])  # the last pixel's prediction is ignored with its GT
    cm = ConfusionMatrix(4)
    cm.update(pred, gt)
    s = cm.scores()
    # class 0: GT 3 px, predicted on 2 scored px, TP 1 -> IoU 1 / (3 + 2 - 1)
    assert s.iou[0] == pytest.approx(1 / 4)
    # class 1: GT 4 px, predicted on 4 px, TP 3 -> IoU 3 / (4 + 4 - 3)
    assert s.iou[1] == pytest.approx(3 / 5)
    # class 2: predicted once, never in GT -> IoU 0 (counts in the mean), Acc undefined
    assert s.iou[2] == 0 and math.isnan(s.acc[2])
    # class 3: only predicted on an ignored pixel -> absent from both -> NaN, excluded
    assert math.isnan(s.iou[3]) and math.isnan(s.acc[3])
    assert s.miou == pytest.approx((1 / 4 + 3 / 5 + 0) / 3)
    assert s.acc[0] == pytest.approx(1 / 3) and s.acc[1] == pytest.approx(3 / 4)
    assert s.macc == pytest.approx((1 / 3 + 3 / 4) / 2)
    assert s.aacc == pytest.approx(4 / 7)
    assert s.fwiou == pytest.approx(3 / 7 * 1 / 4 + 4 / 7 * 3 / 5)
    assert list(s.gt_pixels) == [3, 4, 0, 0]


def test_prediction_outside_classes_counts_as_error():
    gt = np.array([[0, 0, 1]])
    pred = np.array([[0, 255, 1]])  # a label folder's "not sure" pixel
    cm = ConfusionMatrix(2)
    cm.update(pred, gt)
    s = cm.scores()
    assert s.iou[0] == pytest.approx(1 / 2) and s.iou[1] == 1.0
    assert s.aacc == pytest.approx(2 / 3)


def test_accumulates_over_images_not_per_image_mean():
    cm = ConfusionMatrix(2)
    cm.update(np.array([[0, 0, 0, 0]]), np.array([[0, 0, 0, 0]]))  # IoU0 = 1 on its own
    cm.update(np.array([[1]]), np.array([[0]]))
    s = cm.scores()
    assert s.iou[0] == pytest.approx(4 / 5) and s.iou[1] == 0.0


def test_empty_and_invalid_input():
    s = ConfusionMatrix(3).scores()
    assert math.isnan(s.miou) and math.isnan(s.aacc)
    with pytest.raises(MaskCLIPError, match="label 7"):
        ConfusionMatrix(3).update(np.zeros((2, 2), int), np.full((2, 2), 7))
    with pytest.raises(MaskCLIPError, match="size"):
        ConfusionMatrix(3).update(np.zeros((2, 3), int), np.zeros((3, 2), int))


def _reference_iou(preds: list[np.ndarray], gts: list[np.ndarray], n: int, ignore: int) -> np.ndarray:
    """Per-class IoU over a split with pycocotools' mask IoU on the stacked maps (ignore pixels removed)."""
    gt = np.concatenate(gts, axis=0)
    pred = np.where(gt == ignore, -1, np.concatenate(preds, axis=0))
    out = np.full(n, np.nan)
    for c in range(n):
        g, p = np.asfortranarray((gt == c).astype(np.uint8)), np.asfortranarray((pred == c).astype(np.uint8))
        if g.any() or p.any():
            out[c] = mask_utils.iou([mask_utils.encode(p)], [mask_utils.encode(g)], [0])[0, 0] if p.any() and g.any() else 0.0
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_maps_against_references(seed):
    rng = np.random.default_rng(seed)
    n, ignore = 7, 255
    gts, preds = [], []
    cm = ConfusionMatrix(n, ignore)
    for _ in range(4):
        gt = rng.integers(0, n - 1, size=(9, 13))  # class n-1 never in GT
        gt[rng.random(gt.shape) < 0.15] = ignore
        pred = rng.integers(0, n, size=gt.shape)
        pred[:, :2] = 2  # make IoUs unequal
        cm.update(pred, gt)
        gts.append(gt)
        preds.append(pred)
    s = cm.scores()
    ref = _reference_iou(preds, gts, n, ignore)
    np.testing.assert_allclose(s.iou, ref, equal_nan=True)
    assert s.miou == pytest.approx(np.nanmean(ref))
    # plain numpy reference for accuracy and aAcc
    gt, pred = np.concatenate(gts).ravel(), np.concatenate(preds).ravel()
    keep = gt != ignore
    assert s.aacc == pytest.approx(np.mean(gt[keep] == pred[keep]))
    for c in range(n - 1):
        assert s.acc[c] == pytest.approx(np.mean(pred[keep & (gt == c)] == c))
    freq = np.bincount(gt[keep], minlength=n) / keep.sum()
    assert s.fwiou == pytest.approx(np.nansum(freq * ref))
