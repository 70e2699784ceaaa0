"""What every export format's writer is given and offers: the options, the kept classes, the
``Writer`` protocol, and the photo copy. The formats import this module; the registry
(``formats.py``) and the run loop (``run.py``) import the formats."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..core.errors import MaskCLIPError, ParameterError, check_range
from ..formats.label_folder import LabelFolder
from ..formats.manifest import ManifestEntry

FORMAT_NAMES = ("coco", "yolo-seg", "cvat-mask", "label-studio", "hf")  # the --format choices (formats.FORMATS maps them to writers)


@dataclass
class ExportOptions:
    """What and how to export; the format-specific fields are ignored by the other formats."""

    format: str
    images: Path | None = None  # the labelled photo folder: copied (hard-linked where possible) into the export
    overwrite: bool = False
    instances: bool = False  # coco: one annotation per connected component instead of per class
    min_area: int = 0  # yolo-seg: components and holes below this many pixels are dropped / filled
    val_fraction: float = 0.1  # coco, yolo-seg, hf: share of images in the validation split
    seed: int = 0  # coco, yolo-seg, hf: split seed
    exclude: tuple[str, ...] = ()  # classes left out (coco, yolo-seg, label-studio) or made background (cvat-mask, hf)
    image_root_url: str | None = None  # label-studio: URL the photo paths are appended to

    def __post_init__(self) -> None:
        if self.format not in FORMAT_NAMES:
            raise ParameterError(f"{{}} must be one of {', '.join(FORMAT_NAMES)} (got '{self.format}').", "format")
        for name, formats in APPLIES_TO.items():
            if self.format not in formats and getattr(self, name) != getattr(ExportOptions, name):
                raise ParameterError(f"{{}} does not apply to --format {self.format} (only to {', '.join(formats)}).", name)
        check_range("val_fraction", self.val_fraction, 0, 1)
        check_range("min_area", self.min_area, 0)
        if self.images is not None and not self.images.is_dir():
            raise MaskCLIPError(f"Image folder not found: {self.images}")


# options that only some formats read: passing one to another format is refused, not ignored
APPLIES_TO = {
    "images": ("coco", "yolo-seg", "cvat-mask", "hf"),
    "instances": ("coco",),
    "min_area": ("yolo-seg",),
    "val_fraction": ("coco", "yolo-seg", "hf"),
    "seed": ("coco", "yolo-seg", "hf"),
    "image_root_url": ("label-studio",),
}


def kept_classes(folder: LabelFolder, exclude: tuple[str, ...]) -> list[int]:
    """Ids of the classes an export keeps; a name the folder does not have is a ParameterError."""
    unknown = sorted(set(exclude) - set(folder.class_names))
    if unknown:
        raise ParameterError(f"{{}} names classes this folder does not have: {', '.join(unknown)} "
                             f"(it has {', '.join(folder.class_names)}).", "exclude")
    return [i for i, name in enumerate(folder.class_names) if name not in exclude]


class Writer(Protocol):
    """One export format: takes the images one by one, finishes its index files on close."""

    outputs: tuple[str, ...]  # top-level names it writes under the output folder

    def add(self, entry: ManifestEntry, labels: np.ndarray, confidence: np.ndarray | None, photo: Path | None) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """The export stopped early: remove temporary files."""


def copy_photo(photo: Path, target: Path) -> None:
    """Hard-link the photo into the export (free, same bytes), or copy it across file systems."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        target.hardlink_to(photo)
    except OSError:
        shutil.copyfile(photo, target)
