"""Segmentation scores from a streamed confusion matrix (MMSegmentation's IoUMetric conventions).

Each image adds its pixel counts to one (C, C + 1) integer matrix, so memory does not grow with
the split. Rows are ground-truth classes, columns predicted classes; the extra last column counts
ground-truth pixels whose prediction is not a class id (e.g. a label folder's ignore value 255):
they are errors for their ground-truth class and belong to no predicted class.

Conventions, as in MMSegmentation (so numbers sit beside the published tables):

* pixels whose ground truth is ``ignore_index`` are left out entirely;
* IoU(c) = TP / (GT + Pred - TP) and Acc(c) = TP / GT, summed over the whole split (not averaged
  per image);
* a class absent from both ground truth and prediction has IoU NaN and is left out of mIoU;
  a class that is predicted but has no ground-truth pixel has IoU 0 and counts (its Acc is NaN);
* mIoU / mAcc are NaN-means over classes; aAcc = all TP / all GT pixels; fwIoU weights each
  class's IoU by its share of ground-truth pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import MaskCLIPError


def _percent(v: float) -> float | None:
    return None if np.isnan(v) else round(float(v) * 100, 4)


def _nan_mean(v: np.ndarray) -> float:
    """Mean over the defined entries; NaN (without numpy's warning) when there are none."""
    return float(np.nanmean(v)) if np.any(~np.isnan(v)) else float("nan")


@dataclass
class Scores:
    """Figures over a split; per-class arrays are indexed by class id (NaN where undefined)."""

    iou: np.ndarray
    acc: np.ndarray
    gt_pixels: np.ndarray
    miou: float
    macc: float
    aacc: float
    fwiou: float

    def as_dict(self, class_names: list[str]) -> dict:
        """JSON-ready figures in percent (NaN -> None)."""
        return {
            "mIoU": _percent(self.miou),
            "mAcc": _percent(self.macc),
            "aAcc": _percent(self.aacc),
            "fwIoU": _percent(self.fwiou),
            "per_class": [
                {"id": i, "name": n, "IoU": _percent(self.iou[i]), "Acc": _percent(self.acc[i]), "gt_pixels": int(self.gt_pixels[i])}
                for i, n in enumerate(class_names)
            ],
        }


class ConfusionMatrix:
    """Pixel counts accumulated image by image."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image. ``pred`` and ``gt`` are integer maps of the same shape."""
        if pred.shape != gt.shape:
            raise MaskCLIPError(f"Prediction size {pred.shape[::-1]} differs from ground truth size {gt.shape[::-1]}.")
        n = self.num_classes
        gt = gt.astype(np.int64, copy=False).ravel()
        pred = pred.astype(np.int64, copy=False).ravel()
        keep = gt != self.ignore_index
        gt, pred = gt[keep], pred[keep]
        if gt.size and (gt.min() < 0 or gt.max() >= n):
            bad = gt[(gt < 0) | (gt >= n)][0]
            raise MaskCLIPError(f"Ground truth holds label {bad}, outside 0..{n - 1} and not the ignore index {self.ignore_index}.")
        pred = np.where((pred >= 0) & (pred < n), pred, n)
        self.matrix += np.bincount(gt * (n + 1) + pred, minlength=n * (n + 1)).reshape(n, n + 1)

    def scores(self) -> Scores:
        m = self.matrix
        tp = np.diag(m[:, : self.num_classes]).astype(np.float64)
        gt = m.sum(axis=1).astype(np.float64)
        pred = m[:, : self.num_classes].sum(axis=0).astype(np.float64)
        union = gt + pred - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = tp / union
            acc = tp / gt
        total = gt.sum()
        return Scores(
            iou=iou,
            acc=acc,
            gt_pixels=gt.astype(np.int64),
            miou=_nan_mean(iou),
            macc=_nan_mean(acc),
            aacc=float(tp.sum() / total) if total else float("nan"),
            fwiou=float(np.nansum(gt / total * iou)) if total else float("nan"),
        )
