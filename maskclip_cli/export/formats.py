"""The export formats by their --format name."""

from .coco import CocoWriter
from .cvat_mask import CvatMaskWriter
from .hf import HfWriter
from .label_studio import LabelStudioWriter
from .writer import FORMAT_NAMES
from .yolo_seg import YoloSegWriter

FORMATS = {"coco": CocoWriter, "yolo-seg": YoloSegWriter, "cvat-mask": CvatMaskWriter,
           "label-studio": LabelStudioWriter, "hf": HfWriter}
assert tuple(FORMATS) == FORMAT_NAMES, "every --format name needs its writer"
