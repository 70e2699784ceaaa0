"""The export formats by their --format name."""

from .coco import CocoWriter
from .cvat_mask import CvatMaskWriter
from .writer import FORMAT_NAMES
from .yolo_seg import YoloSegWriter

FORMATS = {"coco": CocoWriter, "yolo-seg": YoloSegWriter, "cvat-mask": CvatMaskWriter}
assert tuple(FORMATS) == FORMAT_NAMES, "every --format name needs its writer"
