"""Periodic validation during training: mIoU of a segmenter on a labelled image folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..engine.segmenter import Segmenter
from ..core.errors import MaskCLIPError
from ..evaluation.metrics import ConfusionMatrix, Scores
from ..formats.image_files import find_images, output_stems
from ..formats.images import read_rgb
from ..formats.label_files import read_label_png


@dataclass
class ValPair:
    image: Path
    labels: Path


def find_val_pairs(images: Path, labels: Path) -> list[ValPair]:
    """``images/<rel>.<ext>`` with ``labels/<rel>.png`` (class ids of classes.json, 255 ignore)."""
    rels = find_images(images)
    stems = output_stems(rels)
    pairs = [ValPair(images / r, labels / f"{stems[r]}.png") for r in rels]
    missing = [p.labels for p in pairs if not p.labels.is_file()]
    if missing:
        raise MaskCLIPError(f"{len(missing)} validation images have no label map, e.g. {missing[0]}.")
    if not pairs:
        raise MaskCLIPError(f"No validation images found in {images}.")
    return pairs


def validate(segmenter: Segmenter, pairs: list[ValPair]) -> Scores:
    """Whole-image inference on each pair, scores over the split."""
    cm = ConfusionMatrix(len(segmenter.class_names))
    for pair in pairs:
        pred = segmenter.label_image(read_rgb(pair.image).image).labels
        cm.update(pred, read_label_png(pair.labels))
    return cm.scores()
