"""The export formats by their --format name."""

from .coco import CocoWriter
from .cvat_mask import CvatMaskWriter
from .yolo_seg import YoloSegWriter

FORMATS = {"coco": CocoWriter, "yolo-seg": YoloSegWriter, "cvat-mask": CvatMaskWriter}
