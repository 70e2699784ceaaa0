"""Exports of a label folder to the formats other tools read: COCO (detectron2, mmdet, COCO-Stuff
readers), Ultralytics YOLO segmentation, and CVAT's Segmentation mask 1.1 (hand correction)."""

from .coco import CocoWriter
from .cvat_mask import CvatMaskWriter
from .run import ExportOptions, ExportSummary, export_folder
from .yolo_seg import YoloSegWriter

FORMATS = {"coco": CocoWriter, "yolo-seg": YoloSegWriter, "cvat-mask": CvatMaskWriter}

__all__ = ["FORMATS", "CocoWriter", "CvatMaskWriter", "ExportOptions", "ExportSummary", "YoloSegWriter", "export_folder"]
