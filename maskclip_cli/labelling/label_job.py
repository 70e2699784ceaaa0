"""The label job: a folder of images -> label maps, confidence maps, classes.json, manifest.jsonl.

A pipeline that keeps a GPU fed with little CPU per image:

- DataLoader workers decode and resize to uint8 and stack same-shaped images into batches (a
  quarter of float32's bytes to pass between processes; pinned on CUDA).
- The main process normalises on the device, runs the segmenter (each picks its own GPU
  precision), and turns probabilities into uint8 label and confidence maps and per-image
  statistics on the device (:mod:`.device_maps`): one device->host copy per batch.
- A writer thread pool encodes PNGs with fast zlib settings (``png_compression``) and records
  each image in the manifest once its files have landed.

A bad image (unreadable, or one the model cannot process, e.g. out of memory) is recorded in
the manifest and the run goes on; a write error stops the run with
one message, keeping what was written. Re-running with the same settings skips finished images
whose outputs are intact; outputs are written atomically. A lock (:mod:`.folder_lock`) keeps two
runs off one folder, except shards of one split (:mod:`.sharding`), which write their own
manifest parts; the last shard to finish merges them.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from ..core._worker_items import load_item
from ..engine.segmenter import Segmenter
from ..core.errors import MaskCLIPError
from ..formats.image_files import find_images, output_stems
from ..formats.images import read_rgb
from ..formats.label_files import (
    check_class_count,
    palette,
    write_confidence,
    write_label_png,
)
from ..formats.label_folder import CLASSES_FILE, LabelFolder
from ..formats.manifest import Manifest, merge_parts, read_all
from ..core.hooks import SILENT, ProgressHook
from ..core.record import LabelRecord, record_hash
from ..review.overlay import write_overlay, write_overlays
from .device_maps import ImageMaps, MapBatch, device_maps
from .folder_lock import FolderLock, merge_when_idle
from .options import LabelOptions
from .sharding import shard_of


@dataclass
class LabelSummary:
    total: int = 0
    labelled: int = 0
    skipped: int = 0
    failed: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    merged: bool = False  # this run folded every shard's manifest part into manifest.jsonl

    @property
    def images_per_second(self) -> float:
        return self.labelled / self.seconds if self.seconds > 0 else 0.0


class _ImageFolder(Dataset):
    """Loads and resizes one image to uint8; an unreadable one becomes an error item, not an exception."""

    def __init__(self, root: Path, paths: list[PurePosixPath], resize, exif: bool = True, min_short_side: int | None = None):
        self.root, self.paths, self.resize = root, paths, resize
        self.exif, self.min_short_side = exif, min_short_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        rel = self.paths[i]
        return {"rel": rel, **load_item(lambda: self._load(rel), str(rel))}

    def _load(self, rel: PurePosixPath) -> dict:
        decoded = read_rgb(self.root / rel, self.exif, self.min_short_side)
        return {"size": decoded.size, "input": self.resize(decoded.image)}


def _collate(items: list[dict]) -> dict:
    """In the worker: error items apart, the rest stacked into one uint8 tensor per input shape."""
    by_shape: dict[tuple, list[dict]] = defaultdict(list)
    for item in items:
        if "input" in item:
            by_shape[tuple(item["input"].shape)].append(item)
    return {
        "errors": [it for it in items if "error" in it],
        "groups": [{"rels": [it["rel"] for it in group], "sizes": [it["size"] for it in group],
                    "images": torch.stack([it["input"] for it in group])} for group in by_shape.values()],
    }


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
    """Writes one image's files in a thread pool and records it in the manifest when done.

    A write error (disk full, a folder made read-only or replaced by a file) is kept, and the
    job stops at its next :meth:`check` with one message; images already written stay recorded."""

    def __init__(self, folder: LabelFolder, options: LabelOptions, class_names: list[str], manifest: Manifest, tag: str,
                 input_dir: Path):
        self.folder, self.out_dir, self.input_dir = folder, folder.root, input_dir
        self.options, self.class_names, self.manifest, self.tag = options, class_names, manifest, tag
        self.colours = palette(len(class_names))
        self.pool = ThreadPoolExecutor(max_workers=options.writers)
        self.pending: list[Future] = []
        self.error: MaskCLIPError | None = None

    def submit(self, rel: PurePosixPath, stem: str, size: tuple[int, int], maps: MapBatch, index: int) -> None:
        self.pending = [f for f in self.pending if not f.done()]
        while len(self.pending) >= 4 * self.options.writers:  # bound memory
            self.pending.pop(0).result()
        self.pending.append(self.pool.submit(self._write, rel, stem, size, maps, index))

    def _write(self, rel: PurePosixPath, stem: str, size: tuple[int, int], maps: MapBatch, index: int) -> None:
        if self.error is not None:
            return
        label_path, conf_path = self.folder.label_path(stem), self.folder.confidence_path(stem)
        try:
            image = maps.image(index)
            write_label_png(label_path, image.labels, self.colours, self.options.png_compression)
            write_confidence(conf_path, image.confidence, self.options.png_compression)
            if self.options.overlays:
                write_overlay(self.folder.overlay_path(stem), self.input_dir / rel, image.labels, self.colours, self.class_names,
                              self.options.exif)
            self.manifest.add(self._entry(rel, size, image, label_path, conf_path))
        except OSError as exc:
            self.error = MaskCLIPError(f"Cannot write the outputs of {rel} in {self.out_dir}: {exc}. "
                                       "Images written so far are kept; fix this and run again to resume.")

    def _entry(self, rel: PurePosixPath, size: tuple[int, int], image: ImageMaps, label_path: Path, conf_path: Path) -> dict:
        return {
            "source": str(rel), "label": label_path.relative_to(self.out_dir).as_posix(),
            "confidence": conf_path.relative_to(self.out_dir).as_posix(), "width": size[0], "height": size[1],
            "classes_present": [self.class_names[i] for i in image.classes_present],
            "mean_confidence": round(image.mean_confidence, 4), "status": "ok", "settings": self.tag,
            "label_bytes": label_path.stat().st_size, "confidence_bytes": conf_path.stat().st_size,
        }

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for f in self.pending:
            f.result()  # re-raise anything but a write error (a bug)
        self.check()


def _intact(path: Path, recorded: object) -> bool:
    """The output exists and has its recorded size; entries of 0.1.0 (no size) must decode."""
    try:
        if isinstance(recorded, int):
            return path.stat().st_size == recorded
        if path.suffix == ".npy":
            np.load(path, mmap_mode="r")
        else:
            with Image.open(path) as img:
                img.load()
        return True
    except (OSError, ValueError, SyntaxError):  # missing, truncated or not an image
        return False


def _is_done(entry: dict | None, out_dir: Path, tag: str) -> bool:
    return (entry is not None and entry.get("status") == "ok" and entry.get("settings") == tag
            and _intact(out_dir / entry["label"], entry.get("label_bytes"))
            and _intact(out_dir / entry["confidence"], entry.get("confidence_bytes")))


@contextmanager
def _main_threads(device: torch.device) -> Iterator[None]:
    """One torch thread in the main process while the model runs on a GPU: a second OpenMP thread
    only spins there, taking a core from the workers and writers. A CPU model keeps them all."""
    threads = torch.get_num_threads()
    if device.type != "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def merge_manifests(input_dir: Path | None, out_dir: Path) -> bool:
    """Fold the shards' manifest parts into ``out_dir/manifest.jsonl`` once no run is using the
    folder and, when ``input_dir`` is given, every image under it has an entry. True when merged."""
    folder = LabelFolder(out_dir)

    def merge_if_complete() -> bool:
        if input_dir is not None:
            entries, _ = read_all(folder)
            own = _own_outputs(input_dir, folder)
            if any(str(p) not in entries for p in find_images(input_dir) if not any(p.is_relative_to(o) for o in own)):
                return False  # a shard has not run yet
        merge_parts(folder)
        return True

    return merge_when_idle(out_dir, merge_if_complete)


def _maps_each(segmenter: Segmenter, images: torch.Tensor, sizes: list[tuple[int, int]], options: LabelOptions
               ) -> list[tuple[MapBatch, int] | str]:
    """Maps for a group of same-shaped uint8 inputs, or per image the error that stopped the model.

    The group runs as one batch; if that fails (RuntimeError covers torch's out-of-memory), each image
    runs alone, so one image the model cannot process costs only its own label, not the run's.
    """
    try:
        inputs = segmenter.normalise(images.to(segmenter.device, non_blocking=True))
        maps = device_maps(segmenter.full_size(inputs, sizes), options.min_confidence, options.confidence_format == "npy")
        return [(maps, i) for i in range(len(sizes))]
    except (RuntimeError, MemoryError) as exc:
        error = exc
    if segmenter.device.type == "cuda":
        torch.cuda.empty_cache()
    if len(sizes) == 1:
        return [f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no message'}"]
    return [out for i in range(len(sizes)) for out in _maps_each(segmenter, images[i : i + 1], sizes[i : i + 1], options)]


def label_folder(
    segmenter: Segmenter, input_dir: Path, out_dir: Path, options: LabelOptions | None = None, hook: ProgressHook = SILENT
) -> LabelSummary:
    """Label every image under ``input_dir`` (or its ``options.shard``) into ``out_dir``."""
    options = options or LabelOptions()
    check_class_count(len(segmenter.class_names))
    folder = LabelFolder(out_dir)
    own = _own_outputs(input_dir, folder)
    paths = [p for p in find_images(input_dir) if not any(p.is_relative_to(o) for o in own)]
    if not paths:
        raise MaskCLIPError(f"No images (jpg, jpeg, png, webp, bmp, tif) found under {input_dir}.")
    _check_writable(out_dir)
    with FolderLock(out_dir, options.shard) as lock:
        for holder in lock.stale:
            hook.info(f"removed the stale lock of a run that ended without releasing it ({holder})")
        summary = _label_locked(segmenter, input_dir, folder, paths, options, hook)
    if options.shard is not None:
        summary.merged = merge_manifests(input_dir, out_dir)  # the last shard to finish merges
    return summary


def label_record(segmenter: Segmenter, options: LabelOptions) -> LabelRecord:
    """What a run records in classes.json and hashes into each manifest line's ``settings``."""
    return replace(segmenter.record(), min_confidence=options.min_confidence, confidence_format=options.confidence_format,
                   exif=options.exif)


def error_entry(rel: PurePosixPath, error: str, tag: str) -> dict:
    """The manifest line of an image that could not be labelled."""
    return {"source": str(rel), "status": "error", "error": error, "settings": tag}


def _label_locked(segmenter: Segmenter, input_dir: Path, folder: LabelFolder, paths: list[PurePosixPath],
                  options: LabelOptions, hook: ProgressHook) -> LabelSummary:
    out_dir = folder.root
    record = label_record(segmenter, options)
    if not options.overwrite:
        _check_same_settings(out_dir, record)
    folder.write_classes(record)
    tag = record_hash(record)
    sharded = options.shard is not None
    # a shard never deletes the folder's manifests (other shards share them): its new lines win
    manifest = Manifest(folder, options.shard, fresh=options.overwrite and not sharded)
    if manifest.malformed:
        hook.warn(f"{manifest.malformed} malformed line(s) in {out_dir}'s manifest ignored; those images are labelled again.")
    stems = output_stems(paths)
    mine = shard_of(paths, input_dir, options.shard) if sharded else paths
    todo = [p for p in mine if options.overwrite or not _is_done(manifest.entries.get(str(p)), out_dir, tag)]
    summary = LabelSummary(total=len(mine), skipped=len(mine) - len(todo))
    writer = _Writer(folder, options, segmenter.class_names, manifest, tag, input_dir)
    loader = DataLoader(
        _ImageFolder(input_dir, todo, segmenter.resize, options.exif, segmenter.input_short_side()), batch_size=options.batch_size,
        num_workers=options.workers, collate_fn=_collate, pin_memory=segmenter.device.type == "cuda",
        persistent_workers=False,
    )
    start = time.perf_counter()
    hook.start(len(todo), "labelling")

    def failed(rel: PurePosixPath, error: str) -> None:
        summary.failed += 1
        summary.failures.append((str(rel), error))
        manifest.add(error_entry(rel, error, tag))

    try:
        with _main_threads(segmenter.device), torch.no_grad():
            for batch in loader:
                for item in batch["errors"]:
                    failed(item["rel"], item["error"])
                    hook.advance(1)
                for group in batch["groups"]:
                    results = _maps_each(segmenter, group["images"], group["sizes"], options)
                    for rel, size, result in zip(group["rels"], group["sizes"], results):
                        if isinstance(result, str):  # the model could not process this image (e.g. out of memory)
                            failed(rel, result)
                        else:
                            writer.submit(rel, stems[rel], size, *result)
                            summary.labelled += 1
                    hook.advance(len(group["rels"]))
                writer.check()
    finally:
        hook.finish()
        try:
            writer.close()
        finally:
            summary.seconds = time.perf_counter() - start
            manifest.close(compact=not sharded)
    if options.overlays and not sharded:  # images labelled by an earlier run without --overlays
        write_overlays(out_dir, input_dir, missing_only=True)
    return summary
