"""The label job: a folder of images -> label maps, confidence maps, classes.json, manifest.jsonl.

Loading and resizing run in DataLoader workers, the segmenter runs in the main process (batched
by input shape; each segmenter picks its own GPU precision), and PNG encoding runs in a writer
thread pool, so I/O overlaps compute. A bad image (unreadable, or one the model cannot process,
e.g. out of memory) is recorded in the manifest and the run goes on. Re-running with the
same settings skips finished images; outputs are written atomically.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from .._worker_items import load_item
from ..constants import IGNORE_INDEX
from ..engine.segmenter import Prediction, Segmenter
from ..errors import MaskCLIPError, ParameterError, check_range
from ..formats.image_files import find_images, output_stems
from ..formats.label_files import (
    check_class_count,
    palette,
    write_confidence,
    write_label_png,
)
from ..formats.label_folder import CLASSES_FILE, LabelFolder
from ..formats.manifest import Manifest
from ..hooks import SILENT, ProgressHook
from ..record import LabelRecord, record_hash
from ..review.overlay import write_overlay, write_overlays


@dataclass
class LabelOptions:
    """Output and runtime options of a label run (the segmenter holds the model settings)."""

    min_confidence: float | None = None
    confidence_format: str = "png"  # png | npy
    batch_size: int = 8
    workers: int = 2
    writers: int = 4
    overwrite: bool = False
    overlays: bool = False  # also write overlays/<path>.jpg (photo blended with the label colours)

    def __post_init__(self) -> None:  # checked on construction, before any model is loaded
        if self.confidence_format not in ("png", "npy"):
            raise ParameterError("{} must be png or npy.", "confidence_format")
        check_range("min_confidence", self.min_confidence, 0, 1)
        check_range("batch_size", self.batch_size, 1)
        check_range("workers", self.workers, 0)
        check_range("writers", self.writers, 1)


@dataclass
class LabelSummary:
    total: int = 0
    labelled: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.labelled / self.seconds if self.seconds > 0 else 0.0


class _ImageFolder(Dataset):
    """Loads and prepares one image; an unreadable one becomes an error item, not an exception."""

    def __init__(self, root: Path, paths: list[PurePosixPath], prepare):
        self.root, self.paths, self.prepare = root, paths, prepare

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        rel = self.paths[i]
        return {"rel": rel, **load_item(lambda: self._load(rel), str(rel))}

    def _load(self, rel: PurePosixPath) -> dict:
        with Image.open(self.root / rel) as img:
            img = img.convert("RGB")
        return {"size": img.size, "input": self.prepare(img)}


def _own_outputs(input_dir: Path, folder: LabelFolder) -> list[PurePosixPath]:
    """The output's image folders as paths relative to ``input_dir``, where the output folder lies
    inside it: their PNGs are this job's results, not images to label."""
    inside = []
    for sub in folder.output_dirs():
        try:
            inside.append(PurePosixPath(sub.resolve().relative_to(input_dir.resolve()).as_posix()))
        except ValueError:
            pass
    return inside


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise MaskCLIPError(f"Output folder {out_dir} is not writable: {exc.strerror or exc}") from exc


def _flat(settings: dict) -> dict:
    """A record's dict with ``inference`` spread out, so a difference names the setting."""
    return {**{k: v for k, v in settings.items() if k != "inference"}, **(settings.get("inference") or {})}


def _check_same_settings(out_dir: Path, record: LabelRecord) -> None:
    """Refuse to mix outputs of different settings in one folder (label ids would not agree)."""
    if not (out_dir / CLASSES_FILE).is_file():
        return
    try:
        old = LabelFolder.open(out_dir).settings
    except MaskCLIPError:
        return  # unreadable: rewritten below
    new = record.to_dict()
    if old != new:
        a, b = _flat(old), _flat(new)
        changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise MaskCLIPError(
            f"{out_dir} holds labels made with other settings (differ in: {', '.join(changed)}). "
            "Pass --overwrite to relabel it, or choose another --out."
        )


class _Writer:
    """Writes one image's files in a thread pool and records it in the manifest when done."""

    def __init__(self, folder: LabelFolder, options: LabelOptions, class_names: list[str], manifest: Manifest, tag: str,
                 input_dir: Path):
        self.folder, self.out_dir, self.input_dir = folder, folder.root, input_dir
        self.options, self.class_names, self.manifest, self.tag = options, class_names, manifest, tag
        self.colours = palette(len(class_names))
        self.pool = ThreadPoolExecutor(max_workers=options.writers)
        self.pending: list[Future] = []

    def submit(self, rel: PurePosixPath, stem: str, size: tuple[int, int], pred: Prediction) -> None:
        self.pending = [f for f in self.pending if not f.done()]
        while len(self.pending) >= 4 * self.options.writers:  # bound memory
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(self._write, rel, stem, size, pred))

    def _write(self, rel: PurePosixPath, stem: str, size: tuple[int, int], pred: Prediction) -> None:
        labels = pred.labels.astype(np.uint8)
        if self.options.min_confidence is not None:
            labels[pred.confidence < self.options.min_confidence] = IGNORE_INDEX
        label_path, conf_path = self.folder.label_path(stem), self.folder.confidence_path(stem)
        write_label_png(label_path, labels, self.colours)
        write_confidence(conf_path, pred.confidence)
        if self.options.overlays:
            write_overlay(self.folder.overlay_path(stem), self.input_dir / rel, labels, self.colours, self.class_names)
        present = np.unique(labels)
        self.manifest.add({
            "source": str(rel), "label": str(label_path.relative_to(self.out_dir)),
            "confidence": str(conf_path.relative_to(self.out_dir)), "width": size[0], "height": size[1],
            "classes_present": [self.class_names[i] for i in present if i != IGNORE_INDEX],
            "mean_confidence": round(float(pred.confidence.mean()), 4), "status": "ok", "settings": self.tag,
        })

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for f in self.pending:
            f.result()  # re-raise a write error


def _is_done(entry: dict | None, out_dir: Path, tag: str) -> bool:
    return (entry is not None and entry.get("status") == "ok" and entry.get("settings") == tag
            and (out_dir / entry["label"]).is_file() and (out_dir / entry["confidence"]).is_file())


def _predict_each(segmenter: Segmenter, group: list[dict]) -> list[Prediction | str]:
    """Predictions for a group of same-shaped inputs, or per image the error that stopped the model.

    The group runs as one batch; if that fails (RuntimeError covers torch's out-of-memory), each image
    runs alone, so one image the model cannot process costs only its own label, not the run's.
    """
    def run(items: list[dict]) -> list[Prediction]:
        inputs = torch.stack([it["input"] for it in items]).to(segmenter.device, non_blocking=True)
        return segmenter.predict(inputs, [it["size"] for it in items])

    try:
        return run(group)
    except (RuntimeError, MemoryError) as exc:
        error = exc
    if segmenter.device.type == "cuda":
        torch.cuda.empty_cache()
    if len(group) == 1:
        return [f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no message'}"]
    return [out for it in group for out in _predict_each(segmenter, [it])]


def label_folder(
    segmenter: Segmenter, input_dir: Path, out_dir: Path, options: LabelOptions | None = None, hook: ProgressHook = SILENT
) -> LabelSummary:
    """Label every image under ``input_dir`` into ``out_dir`` and return a summary."""
    options = options or LabelOptions()
    check_class_count(len(segmenter.class_names))
    folder = LabelFolder(out_dir)
    own = _own_outputs(input_dir, folder)
    paths = [p for p in find_images(input_dir) if not any(p.is_relative_to(o) for o in own)]
    if not paths:
        raise MaskCLIPError(f"No images (jpg, jpeg, png, webp, bmp, tif) found under {input_dir}.")
    _check_writable(out_dir)
    record = replace(segmenter.record(), min_confidence=options.min_confidence, confidence_format=options.confidence_format)
    if not options.overwrite:
        _check_same_settings(out_dir, record)
    folder.write_classes(record)
    tag = record_hash(record)
    manifest = Manifest(folder.manifest_file, fresh=options.overwrite)
    stems = output_stems(paths)
    todo = [p for p in paths if options.overwrite or not _is_done(manifest.entries.get(str(p)), out_dir, tag)]
    summary = LabelSummary(total=len(paths), skipped=len(paths) - len(todo))
    writer = _Writer(folder, options, segmenter.class_names, manifest, tag, input_dir)
    loader = DataLoader(
        _ImageFolder(input_dir, todo, segmenter.prepare), batch_size=options.batch_size,
        num_workers=options.workers, collate_fn=list, pin_memory=segmenter.device.type == "cuda",
        persistent_workers=False,
    )
    start = time.perf_counter()
    hook.start(len(todo), "labelling")
    try:
        for batch in loader:
            for item in batch:
                if "error" in item:
                    summary.failed += 1
                    summary.failures.append((str(item["rel"]), item["error"]))
                    manifest.add({"source": str(item["rel"]), "status": "error", "error": item["error"], "settings": tag})
                    hook.advance(1)
            by_shape: dict[tuple, list[dict]] = defaultdict(list)
            for item in batch:
                if "input" in item:
                    by_shape[tuple(item["input"].shape)].append(item)
            for group in by_shape.values():
                for it, pred in zip(group, _predict_each(segmenter, group)):
                    if isinstance(pred, str):  # the model could not process this image (e.g. out of memory)
                        summary.failed += 1
                        summary.failures.append((str(it["rel"]), pred))
                        manifest.add({"source": str(it["rel"]), "status": "error", "error": pred, "settings": tag})
                    else:
                        writer.submit(it["rel"], stems[it["rel"]], it["size"], pred)
                        summary.labelled += 1
                hook.advance(len(group))
    finally:
        hook.finish()
        writer.close()
        summary.seconds = time.perf_counter() - start
        manifest.close()
    if options.overlays:  # images labelled by an earlier run without --overlays
        write_overlays(out_dir, input_dir, missing_only=True)
    return summary
