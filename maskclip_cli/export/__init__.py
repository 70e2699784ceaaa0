"""Exports of a label folder to the formats other tools read: COCO (detectron2, mmdet, COCO-Stuff
readers), Ultralytics YOLO segmentation, and CVAT's Segmentation mask 1.1 (hand correction)."""

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "FORMATS": ".formats",
    "ExportOptions": ".writer",
    "ExportSummary": ".run",
    "export_folder": ".run",
    "CocoWriter": ".coco",
    "YoloSegWriter": ".yolo_seg",
    "CvatMaskWriter": ".cvat_mask",
})
