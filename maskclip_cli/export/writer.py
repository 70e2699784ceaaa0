"""What every export format's writer is given and offers: the options (and which of them a format
takes: the others are refused, as in Ultralytics' export table), the kept classes, the ``Writer``
protocol (one :class:`~maskclip_cli.formats.image_entry.ImageEntry` and its maps at a time), the
score (mean confidence) and the photo copy. The formats import this module; the registry
(``formats.py``) and the run loop (``run.py``) import the formats."""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from dataclasses import fields
from typing import ClassVar, Mapping, Protocol

import numpy as np

from ..core.errors import MaskCLIPError, ParameterError, check_range
from ..formats.image_entry import ImageEntry
from ..formats.label_folder import LabelFolder

FORMAT_NAMES = ("coco", "yolo-seg", "cvat-mask", "label-studio", "hf")  # the --format choices (formats.FORMATS maps them to writers)


@dataclass
class ExportOptions:
    """What and how to export. The fields after ``exclude`` belong to some formats only (each writer's
    ``options``); :func:`check_options` refuses one set away from its default for another format."""

    format: str
    overwrite: bool = False
    exclude: tuple[str, ...] = ()  # classes left out (coco, yolo-seg, label-studio) or made background (cvat-mask, hf)
    images: Path | None = None  # all but label-studio: the labelled photo folder, copied (hard-linked where possible)
    instances: bool = False  # coco: one annotation per connected component instead of per class
    min_area: int = 0  # yolo-seg: components and holes below this many pixels are dropped / filled
    val_fraction: float = 0.1  # coco, yolo-seg, hf: share of images in the validation split
    seed: int = 0  # coco, yolo-seg, hf: split seed
    image_root_url: str | None = None  # label-studio: URL the photo paths are joined onto

    def __post_init__(self) -> None:
        if self.format not in FORMAT_NAMES:
            raise ParameterError(f"{{}} must be one of {', '.join(FORMAT_NAMES)} (got '{self.format}').", "format")
        check_range("val_fraction", self.val_fraction, 0, 1)
        check_range("min_area", self.min_area, 0)
        self.images = None if self.images is None else Path(self.images)
        if self.images is not None and not self.images.is_dir():
            raise MaskCLIPError(f"Image folder not found: {self.images}")


def kept_classes(folder: LabelFolder, exclude: tuple[str, ...]) -> list[int]:
    """Ids of the classes an export keeps; a name the folder does not have, or leaving out every
    class, is a ParameterError."""
    unknown = sorted(set(exclude) - set(folder.class_names))
    if unknown:
        raise ParameterError(f"{{}} names classes this folder does not have: {', '.join(unknown)} "
                             f"(it has {', '.join(folder.class_names)}).", "exclude")
    kept = [i for i, name in enumerate(folder.class_names) if name not in exclude]
    if not kept:
        raise ParameterError("{} leaves out every class of this folder: the export would hold no labels.", "exclude")
    return kept


COMMON_OPTIONS = ("format", "overwrite", "exclude")  # every format takes these


def check_options(options: ExportOptions, takes: tuple[str, ...]) -> None:
    """Refuse, in one line, an option set away from its default that the chosen format does not take."""
    refused = [f.name for f in fields(options)
               if f.name not in COMMON_OPTIONS + takes and getattr(options, f.name) != f.default]
    if refused:
        names = ", ".join("{}" for _ in refused)
        taken = ", ".join("{}" for _ in takes) or "none"
        verb = "is not an option" if len(refused) == 1 else "are not options"
        raise ParameterError(f"{names} {verb} of --format {options.format} (its own: {taken}).", *refused, *takes)


class Writer(Protocol):
    """One export format: takes the images one by one, finishes its index files on close. A writer
    may also have a static ``check_input(folder, options)`` that refuses, before anything is written,
    what the format cannot hold (class names it cannot write, a missing library or URL)."""

    outputs: ClassVar[tuple[str, ...]]  # top-level names it writes under the output folder
    options: ClassVar[tuple[str, ...]]  # the format-specific ExportOptions fields it reads
    needs_images: ClassVar[bool]

    def add(self, entry: ImageEntry, maps: Mapping[str, np.ndarray | None], photo: Path | None) -> None:
        """One labelled image: its entry, its maps by kind (formats.image_entry.MAP_KINDS; a missing
        optional map is None) and its photo (with ``--images``)."""

    def close(self) -> None: ...

    def abort(self) -> None:
        """The export stopped early: remove temporary files."""


def mean_score(confidence: np.ndarray | None, where: np.ndarray) -> float | None:
    """Mean confidence over the pixels ``where`` (4 decimals): a writer's score. None without a map or
    pixels, or when not finite (a damaged .npy map): JSON readers refuse NaN."""
    if confidence is None or not where.any():
        return None
    value = float(confidence[where].astype(np.float64).mean())
    return round(value, 4) if math.isfinite(value) else None


def copy_photo(photo: Path, target: Path) -> None:
    """Hard-link the photo into the export (free, same bytes), or copy it across file systems.
    ``target`` lies under the export folder (its relative part comes from a validated entry)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    try:
        target.hardlink_to(photo)
    except OSError:
        shutil.copyfile(photo, target)
