"""Scoring segmentations against ground truth: a segmenter over a benchmark split, or two folders.

Both stream each image into one :class:`~maskclip_cli.evaluation.metrics.ConfusionMatrix`, so memory stays
bounded however large the split, and report progress (with the running mIoU) through the hook.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader, Dataset

from ..core._worker_items import load_item, raise_error
from ..core.constants import IGNORE_INDEX
from ..engine.segmenter import Segmenter
from ..core.errors import MaskCLIPError
from ..formats.images import read_rgb
from ..core.vocabulary import class_name, parse_class_lines, read_class_text
from ..formats.label_files import read_label_png
from ..formats.label_folder import CLASSES_FILE, LABELS_DIR, parse_classes_document
from ..core.hooks import SILENT, ProgressHook
from .datasets import Sample
from .metrics import ConfusionMatrix, Scores


@dataclass
class EvalResult:
    """Figures over the evaluated images, plus (folder mode) the files that did not pair up."""

    scores: Scores
    class_names: list[str]
    images: int
    seconds: float
    missing: list[str] = field(default_factory=list)  # ground truth without a prediction
    extra: list[str] = field(default_factory=list)  # predictions without ground truth

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def report(self, settings: dict) -> dict:
        """JSON-ready figures (percent) with the settings that produced them."""
        return {
            **self.scores.as_dict(self.class_names),
            "images": self.images,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.images_per_second, 4),
            "missing_predictions": self.missing,
            "extra_predictions": self.extra,
            "settings": settings,
        }


def _advance(hook: ProgressHook, cm: ConfusionMatrix) -> None:
    hook.advance(1, mIoU=round(cm.scores().miou * 100, 2))


class _PreparedSamples(Dataset):
    """Reads an image and its ground truth and prepares the input, in DataLoader workers. A bad
    file becomes an error item (raised in the main process as one clear line)."""

    def __init__(self, samples: list[Sample], prepare):
        self.samples, self.prepare = samples, prepare

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict:
        return load_item(lambda: self._load(self.samples[i]), f"image {self.samples[i].image}")

    def _load(self, sample: Sample) -> dict:
        gt = sample.load_label()
        image = read_rgb(sample.image).image  # EXIF applied, as mmseg's OpenCV loader does
        if image.size[::-1] != gt.shape:
            raise MaskCLIPError(f"Image {sample.image} is {image.size} but its label map {sample.label} is {gt.shape[::-1]}.")
        return {"input": self.prepare(image), "size": image.size, "gt": gt}


def _single(batch: list[dict]) -> dict:
    return batch[0]


def evaluate_segmenter(
    segmenter: Segmenter,
    samples: list[Sample],
    class_names: list[str],
    bg_threshold: float = 0.0,
    limit: int | None = None,
    hook: ProgressHook = SILENT,
    workers: int = 2,
) -> EvalResult:
    """Run ``segmenter`` on each sample (whole image, batch of one) and score it. Reading and
    resizing run in ``workers`` DataLoader processes, overlapping the model.

    With ``bg_threshold`` > 0, pixels whose top probability is below it are labelled class 0
    (background), as SCLIP-style protocols do on datasets with a background class.
    """
    if len(segmenter.class_names) != len(class_names):
        raise MaskCLIPError(
            f"The segmenter has {len(segmenter.class_names)} classes but the dataset has {len(class_names)}."
        )
    samples = samples[:limit] if limit is not None else samples
    cm = ConfusionMatrix(len(class_names), IGNORE_INDEX)
    loader = DataLoader(_PreparedSamples(samples, segmenter.prepare), batch_size=1, num_workers=workers, collate_fn=_single)
    hook.start(len(samples), "evaluating")
    start = time.perf_counter()
    try:
        for item in map(raise_error, loader):
            pred = segmenter.predict(item["input"][None].to(segmenter.device), [item["size"]])[0]
            labels = pred.labels
            if bg_threshold > 0:
                labels = np.where(pred.confidence < bg_threshold, 0, labels)
            cm.update(labels, item["gt"])
            _advance(hook, cm)
    finally:
        hook.finish()
    return EvalResult(cm.scores(), class_names, len(samples), time.perf_counter() - start)


def _pngs(root: Path) -> dict[str, Path]:
    """Relative path without extension -> file, for every PNG under ``root``."""
    return {p.relative_to(root).with_suffix("").as_posix(): p for p in sorted(root.rglob("*.png"))}


def score_folders(
    pred_dir: Path,
    gt_dir: Path,
    class_names: list[str],
    ignore_index: int = IGNORE_INDEX,
    limit: int | None = None,
    hook: ProgressHook = SILENT,
    skip_missing: bool = False,
) -> EvalResult:
    """Score the PNG label maps in ``pred_dir`` against those in ``gt_dir``, paired by relative path.

    Values are class ids. Ground-truth pixels equal to ``ignore_index`` are not scored; predicted
    values that are not class ids (e.g. 255 for "not sure") count as errors. A ground-truth map
    without a prediction counts as all wrong (every scored pixel an error), so a labeller that
    failed on some images does not score higher for it; with ``skip_missing`` it is left out.
    ``limit`` takes the first ground-truth maps. Unpaired files are listed in the result and warned
    about; no model is loaded.
    """
    for d, what in ((pred_dir, "Prediction"), (gt_dir, "Ground-truth")):
        if not d.is_dir():
            raise MaskCLIPError(f"{what} folder not found: {d}")
    preds, gts = _pngs(pred_dir), _pngs(gt_dir)
    missing, extra = sorted(gts.keys() - preds.keys()), sorted(preds.keys() - gts.keys())
    if not preds.keys() & gts.keys():
        raise MaskCLIPError(
            f"No label map in {pred_dir} has a ground-truth map at the same relative path in {gt_dir} "
            f"({len(preds)} and {len(gts)} PNG files)."
        )
    if missing:
        how = "not scored" if skip_missing else "scored as all wrong (--skip-missing leaves them out)"
        hook.warn(f"{len(missing)} ground-truth map(s) without a prediction, {how}, e.g. {missing[0]}.png")
    if extra:
        hook.warn(f"{len(extra)} prediction(s) without ground truth, not scored, e.g. {extra[0]}.png")
    keys = sorted(k for k in gts if k in preds or not skip_missing)
    keys = keys[:limit] if limit is not None else keys
    cm = ConfusionMatrix(len(class_names), ignore_index)
    hook.start(len(keys), "scoring")
    start = time.perf_counter()
    try:
        for key in keys:
            gt = read_label_png(gts[key])
            pred = read_label_png(preds[key]) if key in preds else np.full(gt.shape, -1)  # -1: never a class id
            try:
                cm.update(pred, gt)
            except MaskCLIPError as exc:
                raise MaskCLIPError(f"{preds.get(key, 'missing prediction')} vs {gts[key]}: {exc}") from exc
            _advance(hook, cm)
    finally:
        hook.finish()
    return EvalResult(cm.scores(), class_names, len(keys), time.perf_counter() - start, missing, extra)


def prediction_layout(pred_dir: Path, classes_file: Path | None) -> tuple[Path, Path]:
    """(label-map folder, classes file) of a prediction folder: ``maskclip label``'s output folder
    (``labels/`` + ``classes.json``) or its ``labels/`` folder work as they are.

    A ``classes_file`` given next to the folder's own classes.json must name the same classes in the
    same order: the folder's file defines what its label ids mean, and a reordered list would
    silently score each class under another's name (no remapping by name is attempted).
    """
    if not pred_dir.is_dir():
        raise MaskCLIPError(f"Prediction folder not found: {pred_dir}")
    labels_dir = pred_dir / LABELS_DIR if (pred_dir / LABELS_DIR).is_dir() else pred_dir
    own = next((d / CLASSES_FILE for d in (pred_dir, pred_dir.parent) if (d / CLASSES_FILE).is_file()), None)
    if classes_file is None:
        if own is None:
            raise MaskCLIPError(f"No classes.json in {pred_dir} or its parent; pass --classes-file.")
        return labels_dir, own
    if own is not None and own.resolve() != classes_file.resolve():
        theirs, given = read_class_names(own), read_class_names(classes_file)
        if theirs != given:
            first = next((i for i, (a, b) in enumerate(zip(theirs, given)) if a != b), min(len(theirs), len(given)))
            raise MaskCLIPError(
                f"--classes-file {classes_file} disagrees with {own}, which gives the predictions' label ids "
                f"({len(given)} vs {len(theirs)} classes; first difference at id {first}); drop --classes-file "
                "or pass one with the same names in the same order."
            )
    return labels_dir, classes_file


def read_class_names(path: Path) -> list[str]:
    """Class names in id order from ``maskclip label``'s classes.json (``{"classes": [{"id", "name"}]}``),
    a JSON list of names, or a class file (one class per line, # comments; a line with synonyms is
    named by its first word)."""
    text = read_class_text(path)
    if path.suffix.lower() != ".json":
        return [class_name(spec) for spec in parse_class_lines(text)]
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise MaskCLIPError(f"Cannot read class names from {path} ({exc}); expected maskclip label's classes.json, "
                            "a JSON list of names, or a text file with one name per line.") from exc
    if isinstance(doc, list) and all(isinstance(e, str) for e in doc):
        names = list(doc)
    else:
        names, _ = parse_classes_document(doc, path)
    if not names:
        raise MaskCLIPError(f"No class names in {path}.")
    return names
