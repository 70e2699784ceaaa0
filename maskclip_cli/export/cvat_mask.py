"""CVAT's "Segmentation mask 1.1" layout (the PASCAL VOC segmentation layout that CVAT, Datumaro
and many labelling tools import), so pseudo labels can be corrected by hand:
``SegmentationClass/<stem>.png`` colour masks, ``labelmap.txt`` naming each colour, and
``ImageSets/Segmentation/default.txt`` listing the images (``JPEGImages/`` with ``--images``).

CVAT reads black (0, 0, 0) as "background"/unlabelled. When class 0 is named background it keeps
that colour; otherwise a ``background`` entry is added for black and the classes take the next
colours of the same VOC palette. Ignore pixels and excluded classes become background (unlabelled in
CVAT).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Mapping

import numpy as np

from ..core._io import atomic_write
from ..core.errors import MaskCLIPError
from ..core.vocabulary import BACKGROUND, is_background
from ..formats.label_files import palette, write_label_png
from ..formats.label_folder import LabelFolder
from ..formats.image_entry import LABEL, ImageEntry
from .writer import ExportOptions, copy_photo, kept_classes

LABELMAP = "labelmap.txt"
IMAGE_SET = "ImageSets/Segmentation/default.txt"


class CvatMaskWriter:
    outputs = ("SegmentationClass", "ImageSets", "JPEGImages", LABELMAP)
    options = ("images",)
    needs_images = False

    def __init__(self, folder: LabelFolder, out: Path, options: ExportOptions):
        self.folder, self.out = folder, out
        names = folder.class_names
        self.shift = 0 if names and is_background(names[0]) else 1
        self.names = ([BACKGROUND] if self.shift else []) + names
        self.colours = palette(len(self.names))
        self.lut = np.zeros(256, np.uint8)  # ignore and anything unknown -> background (0)
        self.lut[: len(names)] = np.arange(len(names)) + self.shift
        kept = kept_classes(folder, options.exclude)
        self.lut[[i for i in range(len(names)) if i not in kept]] = 0
        (out / IMAGE_SET).parent.mkdir(parents=True, exist_ok=True)
        self._image_set = open(out / f"{IMAGE_SET}.part", "w", encoding="utf-8")

    @staticmethod
    def check_input(folder: LabelFolder, options: ExportOptions) -> None:
        """labelmap.txt is ``name:r,g,b::`` lines: a name with ``:`` or a line break cannot be written;
        black is background, so a background class must be class 0."""
        bad = [n for n in folder.class_names if ":" in n or "\n" in n or "\r" in n]
        if bad:
            raise MaskCLIPError(f"cvat-mask cannot name classes containing ':' or a line break: {', '.join(map(repr, bad))}; "
                                "rename them in classes.json or use --format coco.")
        later = [i for i, n in enumerate(folder.class_names) if i and is_background(n)]
        if later:
            raise MaskCLIPError(f"cvat-mask keeps black for '{BACKGROUND}' as class 0, but this folder's is class {later[0]}; "
                                "use --format coco.")

    def add(self, entry: ImageEntry, maps: Mapping[str, np.ndarray | None], photo: Path | None) -> None:
        write_label_png(self.out / "SegmentationClass" / f"{entry.stem}.png", self.lut[maps[LABEL.name]], self.colours)
        if photo is not None:
            copy_photo(photo, self.out / "JPEGImages" / f"{entry.stem}{PurePosixPath(entry.source).suffix}")
        self._image_set.write(entry.stem + "\n")

    def abort(self) -> None:
        self._image_set.close()
        Path(self._image_set.name).unlink(missing_ok=True)

    def close(self) -> None:
        self._image_set.close()
        Path(self._image_set.name).replace(self.out / IMAGE_SET)
        lines = ["# label:color_rgb:parts:actions"]
        lines += [f"{name}:{','.join(str(v) for v in colour)}::" for name, colour in zip(self.names, self.colours)]
        text = "\n".join(lines) + "\n"
        atomic_write(self.out / LABELMAP, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
