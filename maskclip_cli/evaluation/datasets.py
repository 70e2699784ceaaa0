"""Validation splits of the standard benchmarks, read in the on-disk layouts MMSegmentation documents.

Users' existing copies work unchanged: ``--data-root`` is the folder MMSegmentation's config calls
``data_root`` (e.g. ``data/VOCdevkit/VOC2010``). Ground-truth maps are remapped on load to the
class ids of the shipped class list (``maskclip_cli/data/*.txt``) with 255 = ignore:

* ``pascal-context`` (59): the background label 0 becomes ignore and classes shift down by one,
  as in the paper's Table 1; ``pascal-context-60`` keeps background as class 0.
* ``voc`` (20): background ignored the same way; ``voc-bg`` (21) keeps it. 255 (object borders)
  stays ignore.
* ``coco-stuff`` (164k, 171 classes): ``*_labelTrainIds.png`` (MMSegmentation's converted maps) are
  read as they are; without them the raw ``stuffthingmaps`` ``*.png`` (values = COCO category id - 1,
  182 ids of which 11 are never used) are mapped to 0..170, everything else to ignore.
* ``ade20k`` (150): 0 ("other") becomes ignore, classes shift down by one.
* ``cityscapes`` (19): ``*_gtFine_labelTrainIds.png`` as made by cityscapesscripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from ..core.constants import IGNORE_INDEX
from ..core.errors import MaskCLIPError
from ..core.vocabulary import ClassSpec, parse_class_lines
from ..formats.label_files import read_label_png

# 0-based COCO category ids (pixel values of stuffthingmaps) that no annotation uses.
COCO_UNUSED_IDS = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)


def identity_lut() -> np.ndarray:
    return np.arange(256, dtype=np.uint8)


def reduce_zero_lut() -> np.ndarray:
    """MMSegmentation's reduce_zero_label: 0 -> ignore, k -> k - 1, 255 stays ignore."""
    lut = (np.arange(256) - 1).astype(np.uint8)
    lut[0] = lut[255] = IGNORE_INDEX
    return lut


def coco_stuff_lut() -> np.ndarray:
    """The 182 raw COCO-Stuff ids -> 171 consecutive train ids; unused ids and 255 -> ignore."""
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    used = [i for i in range(182) if i not in COCO_UNUSED_IDS]
    lut[used] = np.arange(len(used))
    return lut


@dataclass(frozen=True)
class DatasetSpec:
    """Where one benchmark's validation images and labels live under its data root."""

    name: str
    classes_file: str  # in maskclip_cli/data
    img_dir: str
    ann_dir: str
    img_suffix: str
    seg_suffix: str
    layout: str  # human-readable description for error messages
    split: str | None = None  # file listing image stems; else every image under img_dir
    reduce_zero_label: bool = False
    skip_first_name: bool = False  # the class list's first name is the label 0 that becomes ignore
    raw_seg_suffix: str | None = None  # COCO-Stuff: raw 182-id maps used when seg_suffix maps are absent
    background: bool = False  # class 0 stands for "everything else"


_CONTEXT = dict(
    classes_file="pascal_context.txt", img_dir="JPEGImages", ann_dir="SegmentationClassContext",
    img_suffix=".jpg", seg_suffix=".png", split="ImageSets/SegmentationContext/val.txt",
    layout="VOCdevkit/VOC2010 with JPEGImages/, SegmentationClassContext/ and ImageSets/SegmentationContext/val.txt",
)
_VOC = dict(
    classes_file="voc.txt", img_dir="JPEGImages", ann_dir="SegmentationClass",
    img_suffix=".jpg", seg_suffix=".png", split="ImageSets/Segmentation/val.txt",
    layout="VOCdevkit/VOC2012 with JPEGImages/, SegmentationClass/ and ImageSets/Segmentation/val.txt",
)
DATASETS: dict[str, DatasetSpec] = {
    "pascal-context": DatasetSpec("pascal-context", reduce_zero_label=True, skip_first_name=True, **_CONTEXT),
    "pascal-context-60": DatasetSpec("pascal-context-60", background=True, **_CONTEXT),
    "voc": DatasetSpec("voc", reduce_zero_label=True, skip_first_name=True, **_VOC),
    "voc-bg": DatasetSpec("voc-bg", background=True, **_VOC),
    "coco-stuff": DatasetSpec(
        "coco-stuff", classes_file="coco_stuff.txt", img_dir="images/val2017", ann_dir="annotations/val2017",
        img_suffix=".jpg", seg_suffix="_labelTrainIds.png", raw_seg_suffix=".png",
        layout="coco_stuff164k with images/val2017/*.jpg and annotations/val2017/*_labelTrainIds.png (or the raw *.png)",
    ),
    "ade20k": DatasetSpec(
        "ade20k", classes_file="ade20k.txt", img_dir="images/validation", ann_dir="annotations/validation",
        img_suffix=".jpg", seg_suffix=".png", reduce_zero_label=True,
        layout="ade/ADEChallengeData2016 with images/validation/*.jpg and annotations/validation/*.png",
    ),
    "cityscapes": DatasetSpec(
        "cityscapes", classes_file="cityscapes.txt", img_dir="leftImg8bit/val", ann_dir="gtFine/val",
        img_suffix="_leftImg8bit.png", seg_suffix="_gtFine_labelTrainIds.png",
        layout="cityscapes with leftImg8bit/val/<city>/*_leftImg8bit.png and gtFine/val/<city>/*_gtFine_labelTrainIds.png",
    ),
}


@dataclass(frozen=True)
class Sample:
    """One validation image: its key (relative path without suffix), image file and label file."""

    key: str
    image: Path
    label: Path
    lut: np.ndarray

    def load_label(self) -> np.ndarray:
        """(H, W) uint8 class ids with 255 = ignore."""
        return self.lut[read_label_png(self.label)]


def class_names(spec: DatasetSpec) -> list[str]:
    """The benchmark's class names in label-id order (MMSegmentation's names)."""
    text = resources.files("maskclip_cli.evaluation").joinpath("data", spec.classes_file).read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return names[1:] if spec.skip_first_name else names


def synonym_classes(spec: DatasetSpec) -> list[ClassSpec]:
    """The benchmark's classes in label-id order as SCLIP's class files give them, each a name or
    a list of synonyms (``data/synonyms_<dataset>.txt``; first line = background on datasets that
    keep it)."""
    path = f"synonyms_{spec.name.replace('-', '_')}.txt"
    text = resources.files("maskclip_cli.evaluation").joinpath("data", path).read_text(encoding="utf-8")
    return parse_class_lines(text)


def get_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise MaskCLIPError(f"Unknown dataset '{name}'; choose one of {', '.join(DATASETS)}.")
    return DATASETS[name]


def _expect(path: Path, spec: DatasetSpec, what: str) -> Path:
    if not path.exists():
        raise MaskCLIPError(f"{spec.name}: expected {what} {path} (--data-root should be {spec.layout}).")
    return path


def list_samples(spec: DatasetSpec, root: Path) -> list[Sample]:
    """Every validation sample in a stable order, checking each label file exists."""
    img_dir = _expect(root / spec.img_dir, spec, "image folder")
    ann_dir = _expect(root / spec.ann_dir, spec, "label folder")
    if spec.split is not None:
        split = _expect(root / spec.split, spec, "split file")
        keys = [ln.strip() for ln in split.read_text(encoding="utf-8").splitlines() if ln.strip()]
    else:
        n = len(spec.img_suffix)
        keys = sorted(p.relative_to(img_dir).as_posix()[:-n] for p in img_dir.rglob(f"*{spec.img_suffix}"))
    if not keys:
        raise MaskCLIPError(f"{spec.name}: no images found in {img_dir} (--data-root should be {spec.layout}).")
    lut = reduce_zero_lut() if spec.reduce_zero_label else identity_lut()
    samples = []
    for key in keys:
        image = _expect(img_dir / f"{key}{spec.img_suffix}", spec, "image")
        label = ann_dir / f"{key}{spec.seg_suffix}"
        sample_lut = lut
        if not label.exists() and spec.raw_seg_suffix is not None:
            label, sample_lut = ann_dir / f"{key}{spec.raw_seg_suffix}", coco_stuff_lut()
        samples.append(Sample(key, image, _expect(label, spec, "label map"), sample_lut))
    return samples
