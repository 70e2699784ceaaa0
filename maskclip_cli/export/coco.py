"""COCO JSON for semantic segmentation, in the COCO-Stuff style: one annotation per (image, class
present) whose ``segmentation`` is a compressed RLE made by pycocotools, with pycocotools' ``area``
and ``bbox``, ``iscrowd`` 0 and a ``score``: the class's mean confidence on its pixels.
``instances`` splits each class into 8-connected components, one annotation each.

Category id = class id + 1 (COCO keeps 0 for "no category"); names come from classes.json; excluded
classes have neither a category nor annotations (the other ids do not move). The
arrays are streamed to part files while images arrive and joined into ``annotations.json`` at the
end, so memory does not grow with the folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from ..core._io import atomic_write
from ..formats.label_folder import LabelFolder
from ..formats.image_entry import CONFIDENCE, LABEL, ImageEntry
from .writer import ExportOptions, copy_photo, kept_classes

ANNOTATIONS = "annotations.json"
IMAGES = "images"


def class_masks(labels: np.ndarray, classes: list[int], instances: bool):
    """(class id, boolean mask) per class of ``classes`` present, or per 8-connected component of it."""
    for c in np.unique(labels):
        if c not in classes:
            continue  # ignore index, or an excluded class
        mask = (labels == c).astype(np.uint8)
        if not instances:
            yield int(c), mask
            continue
        count, components = cv2.connectedComponents(mask, connectivity=8)
        for k in range(1, count):
            yield int(c), (components == k).astype(np.uint8)


class CocoWriter:
    outputs = (ANNOTATIONS, IMAGES)
    options = ("instances",)
    needs_images = False

    def __init__(self, folder: LabelFolder, out: Path, options: ExportOptions):
        self.folder, self.out, self.options = folder, out, options
        self.classes = kept_classes(folder, options.exclude)
        self._images = open(out / f".{ANNOTATIONS}.images.part", "w", encoding="utf-8")
        self._annotations = open(out / f".{ANNOTATIONS}.annotations.part", "w", encoding="utf-8")
        self._image_id = self._annotation_id = 0

    def add(self, entry: ImageEntry, maps: Mapping[str, np.ndarray | None], photo: Path | None) -> None:
        labels, confidence = maps[LABEL.name], maps[CONFIDENCE.name]
        h, w = labels.shape
        file_name = entry.source
        if photo is not None:
            copy_photo(photo, self.out / IMAGES / file_name)
        self._image_id += 1
        self._append(self._images, {"id": self._image_id, "file_name": file_name, "width": w, "height": h})
        for class_id, mask in class_masks(labels, self.classes, self.options.instances):
            rle = mask_utils.encode(np.asfortranarray(mask))
            self._annotation_id += 1
            annotation = {
                "id": self._annotation_id, "image_id": self._image_id, "category_id": class_id + 1,
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                "area": int(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0,
            }
            if confidence is not None:
                annotation["score"] = round(float(confidence[mask.astype(bool)].mean()), 4)
            self._append(self._annotations, annotation)

    @staticmethod
    def _append(part, item: dict) -> None:
        part.write(("," if part.tell() else "") + json.dumps(item, separators=(",", ":")))

    def abort(self) -> None:
        for part in (self._images, self._annotations):
            part.close()
            Path(part.name).unlink(missing_ok=True)

    def close(self) -> None:
        self._images.close()
        self._annotations.close()
        head = {
            "info": {"description": "maskclip pseudo labels (semantic segmentation, COCO-Stuff style)",
                     "settings": self.folder.settings},
            "licenses": [],
            "categories": [{"id": i + 1, "name": self.folder.class_names[i], "supercategory": ""} for i in self.classes],
        }

        def write(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(json.dumps(head)[:-1] + ',"images":[')
                _copy(self._images.name, f)
                f.write('],"annotations":[')
                _copy(self._annotations.name, f)
                f.write("]}\n")

        atomic_write(self.out / ANNOTATIONS, write)
        for part in (self._images.name, self._annotations.name):
            os.unlink(part)


def _copy(path: str, f) -> None:
    with open(path, encoding="utf-8") as part:
        while chunk := part.read(1 << 20):
            f.write(chunk)
