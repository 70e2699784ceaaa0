"""COCO JSON for semantic segmentation, in the COCO-Stuff style: one annotation per (image, class
present) whose ``segmentation`` is a compressed RLE made by pycocotools, with pycocotools' ``area``
and ``bbox``, ``iscrowd`` 0 and a ``score``: the class's mean confidence on its pixels (left out
when not finite). ``instances`` splits each class into 8-connected components, one annotation each.

The layout is the standard one that Datumaro, CVAT and FiftyOne detect (and Datumaro writes):
``annotations/instances_<split>.json`` and, with ``--images``, the photos under ``images/<split>/``
(``file_name`` is relative to that folder); splits ``train`` and ``val`` by the same per-image hash
as yolo-seg (``val`` only when it has images). detectron2 and mmdet take the two paths.

``info.settings`` is the label record with its file paths shown relative or by name
(:mod:`maskclip_cli.core.shareable`): the file is meant to be shared.

Category id = class id + 1 (COCO keeps 0 for "no category"); names come from classes.json; excluded
classes have neither a category nor annotations (the other ids do not move). The
arrays are streamed to part files while images arrive and joined into the JSON files at the
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
from ..core.shareable import shareable_record
from ..formats.label_folder import LabelFolder
from ..formats.image_entry import CONFIDENCE, LABEL, ImageEntry
from .writer import ExportOptions, copy_photo, kept_classes, mean_score
from .split import in_val_split

ANNOTATIONS = "annotations"
IMAGES = "images"
SPLITS = ("train", "val")


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


def annotations_file(split: str) -> str:
    return f"{ANNOTATIONS}/instances_{split}.json"


class CocoWriter:
    outputs = (ANNOTATIONS, IMAGES)
    options = ("images", "instances", "val_fraction", "seed")
    needs_images = False

    def __init__(self, folder: LabelFolder, out: Path, options: ExportOptions):
        self.folder, self.out, self.options = folder, out, options
        self.classes = kept_classes(folder, options.exclude)
        self._parts = {split: (open(out / f".{split}.images.part", "w", encoding="utf-8"),
                               open(out / f".{split}.annotations.part", "w", encoding="utf-8")) for split in SPLITS}
        self._image_id = self._annotation_id = 0

    def add(self, entry: ImageEntry, maps: Mapping[str, np.ndarray | None], photo: Path | None) -> None:
        labels, confidence = maps[LABEL.name], maps[CONFIDENCE.name]
        h, w = labels.shape
        file_name = entry.source
        split = "val" if in_val_split(entry.source, self.options.seed, self.options.val_fraction) else "train"
        images, annotations = self._parts[split]
        if photo is not None:
            copy_photo(photo, self.out / IMAGES / split / file_name)
        self._image_id += 1
        self._append(images, {"id": self._image_id, "file_name": file_name, "width": w, "height": h})
        for class_id, mask in class_masks(labels, self.classes, self.options.instances):
            rle = mask_utils.encode(np.asfortranarray(mask))
            self._annotation_id += 1
            annotation = {
                "id": self._annotation_id, "image_id": self._image_id, "category_id": class_id + 1,
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")},
                "area": int(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)], "iscrowd": 0,
            }
            score = mean_score(confidence, mask.astype(bool))
            if score is not None:
                annotation["score"] = score
            self._append(annotations, annotation)

    @staticmethod
    def _append(part, item: dict) -> None:
        part.write(("," if part.tell() else "") + json.dumps(item, separators=(",", ":")))

    def _close_parts(self) -> None:
        for part in (p for pair in self._parts.values() for p in pair):
            part.close()

    def abort(self) -> None:
        self._close_parts()
        for part in (p for pair in self._parts.values() for p in pair):
            Path(part.name).unlink(missing_ok=True)

    def close(self) -> None:
        self._close_parts()
        head = {
            "info": {"description": "maskclip pseudo labels (semantic segmentation, COCO-Stuff style)",
                     "settings": shareable_record(self.folder.record).to_dict() if self.folder.record else {}},
            "licenses": [],
            "categories": [{"id": i + 1, "name": self.folder.class_names[i], "supercategory": ""} for i in self.classes],
        }
        for split, (images, annotations) in self._parts.items():
            if split != "train" and not os.path.getsize(images.name):
                continue  # no val split: the train file alone (always written, even empty)

            def write(tmp: str) -> None:
                with open(tmp, "w", encoding="utf-8") as f:
                    f.write(json.dumps(head)[:-1] + ',"images":[')
                    _copy(images.name, f)
                    f.write('],"annotations":[')
                    _copy(annotations.name, f)
                    f.write("]}\n")

            atomic_write(self.out / annotations_file(split), write)
        for part in (p for pair in self._parts.values() for p in pair):
            os.unlink(part.name)


def _copy(path: str, f) -> None:
    with open(path, encoding="utf-8") as part:
        while chunk := part.read(1 << 20):
            f.write(chunk)
