"""Ultralytics YOLO segmentation datasets: ``images/{train,val}/``, ``labels/{train,val}/<stem>.txt``
with one polygon per 8-connected component (``class x1 y1 x2 y2 ...``, normalised to 0-1), and
``data.yaml`` naming the classes.

YOLO polygons cannot have holes, so each hole is joined to its outer boundary by a zero-width cut
(the "keyhole" that Ultralytics' own mask converter also uses); a filled polygon then leaves the
hole empty. Components and holes smaller than ``min_area`` pixels are dropped / filled. Contours
come from OpenCV's ``findContours``; vertices are pixel centres (as ``cv2.fillPoly`` reads them), nudged
a quarter pixel so Ultralytics' truncating rasteriser gets the same pixels back. The split is deterministic per image (``split.in_val_split``). Excluded classes are left
out and the others renumbered 0..nc-1 (Ultralytics wants no gaps), as ``data.yaml`` names them.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Mapping

import cv2
import numpy as np

from ..core._io import atomic_write
from ..formats.label_folder import LabelFolder
from ..formats.image_entry import LABEL, ImageEntry
from .split import in_val_split
from .writer import ExportOptions, copy_photo, kept_classes

DATA_YAML = "data.yaml"
# Vertices are pixel indices. Ultralytics rasterises polygons with ``astype(int32)`` (truncation), and
# k / w * w often comes back as k - 1e-7, which would move a vertex a whole pixel: a quarter-pixel
# nudge survives the 6-decimal rounding at any image size and truncates (or rounds) back to k.
PIXEL_NUDGE = 0.25


def _keyhole(outer: np.ndarray, holes: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """``outer`` with every hole spliced in (there and back) at the outer vertex nearest to the
    hole's top point, found for all holes at once with OpenCV's labelled distance transform, so
    thousands of one-pixel holes (scattered ignore pixels) stay cheap."""
    if not holes:
        return outer
    starts = [int(np.argmin(h[:, 1])) for h in holes]
    tops = np.array([h[j] for h, j in zip(holes, starts)])
    grid = np.ones(shape, np.uint8)
    grid[outer[:, 1], outer[:, 0]] = 0
    _, nearest = cv2.distanceTransformWithLabels(grid, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    vertex_at = np.zeros(shape, np.int64)
    vertex_at[outer[:, 1], outer[:, 0]] = np.arange(len(outer))
    ys, xs = np.nonzero(grid == 0)  # the transform numbers these 1, 2, ... in raster order
    attach = vertex_at[ys, xs][nearest[tops[:, 1], tops[:, 0]] - 1]
    pieces, previous = [], 0
    for k in np.argsort(attach, kind="stable"):
        i, hole, j = attach[k], holes[k], starts[k]
        pieces += [outer[previous: i + 1], hole[j:], hole[: j + 1]]
        previous = i
    pieces.append(outer[previous:])
    return np.concatenate(pieces)


def component_polygons(mask: np.ndarray, min_area: int = 0) -> list[np.ndarray]:
    """One (N, 2) polygon in pixel coordinates (x, y) per 8-connected component of ``mask``."""
    count, components, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    polygons = []
    for k in range(1, count):
        x, y, w, h, area = stats[k]
        if area < max(min_area, 1):
            continue
        sub = np.pad((components[y: y + h, x: x + w] == k).astype(np.uint8), 1)
        contours, hierarchy = cv2.findContours(sub, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
        offset = np.array([x - 1, y - 1])
        for c, (_, _, child, parent) in enumerate(hierarchy[0]):
            if parent != -1:
                continue  # holes are handled with their outer boundary
            holes = []
            while child != -1:
                hole = contours[child][:, 0, :]
                # a hole's contour runs along its bordering foreground pixels: count its inside only
                if len(hole) >= 3 and cv2.contourArea(hole) >= max(min_area, 1):
                    holes.append(hole)
                child = hierarchy[0][child][0]
            polygon = _keyhole(contours[c][:, 0, :], holes, sub.shape)
            if len(polygon) >= 3:  # a one- or two-pixel-wide sliver has no area to draw
                polygons.append(polygon + offset)
    return polygons


class YoloSegWriter:
    outputs = ("images", "labels", DATA_YAML)
    options = ("images", "min_area", "val_fraction", "seed")
    needs_images = True

    def __init__(self, folder: LabelFolder, out: Path, options: ExportOptions):
        self.folder, self.out, self.options = folder, out, options
        self.counts = {"train": 0, "val": 0}
        kept = kept_classes(folder, options.exclude)
        self.names = [folder.class_names[i] for i in kept]
        self.yolo_id = {c: k for k, c in enumerate(kept)}  # Ultralytics wants ids 0..nc-1 without gaps

    def add(self, entry: ImageEntry, maps: Mapping[str, np.ndarray | None], photo: Path | None) -> None:
        labels = maps[LABEL.name]
        h, w = labels.shape
        split = "val" if in_val_split(entry.source, self.options.seed, self.options.val_fraction) else "train"
        lines = []
        for class_id in np.unique(labels):
            if int(class_id) not in self.yolo_id:
                continue  # ignore index, or an excluded class
            for polygon in component_polygons(labels == class_id, self.options.min_area):
                xy = (polygon + PIXEL_NUDGE) / (w, h)
                lines.append(f"{self.yolo_id[int(class_id)]} " + " ".join(f"{v:.6f}" for v in xy.reshape(-1)))
        text = "".join(line + "\n" for line in lines)
        atomic_write(self.out / "labels" / split / f"{entry.stem}.txt", lambda tmp: Path(tmp).write_text(text))
        copy_photo(photo, self.out / "images" / split / f"{entry.stem}{PurePosixPath(entry.source).suffix}")
        self.counts[split] += 1

    def abort(self) -> None:
        pass  # every file it writes is complete (atomic); data.yaml comes last

    def close(self) -> None:
        # Ultralytics needs both entries to exist: an empty split points at the other one
        train = "images/train" if self.counts["train"] else "images/val"
        val = "images/val" if self.counts["val"] else "images/train"
        names = "".join(f"  {i}: {json.dumps(n)}\n" for i, n in enumerate(self.names))
        text = (
            "# Ultralytics YOLO segmentation dataset written by `maskclip export --format yolo-seg`.\n"
            "# Paths are relative to this file's folder.\n"
            f"train: {train}\nval: {val}\nnc: {len(self.names)}\nnames:\n{names}"
        )
        atomic_write(self.out / DATA_YAML, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
