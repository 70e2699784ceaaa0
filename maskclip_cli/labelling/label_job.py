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

The steps that do not depend on how images reach the model are public functions here, shared with
the Ray engine (:mod:`.ray_engine`), so both check, lock, resume, write and record images the same
way: :func:`require_images`, :func:`write_probe`, :func:`locked`, :func:`start_run`, :func:`to_label`,
:func:`decode_input`, :func:`label_group`, :class:`OutputWriter` and :func:`close_manifest`.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from ..core._io import make_probe
from ..core._worker_items import load_item
from ..core.job_summary import JobSummary
from ..engine.segmenter import Segmenter
from ..core.errors import MaskCLIPError
from ..formats.image_files import find_images, output_stems
from ..formats.images import read_rgb
from ..formats.image_entry import CONFIDENCE, LABEL, ImageEntry
from ..formats.label_folder import CLASSES_FILE, LabelFolder
from ..formats.manifest import Manifest
from ..core.hooks import SILENT, ProgressHook
from ..core.record import LabelRecord, record_hash
from ..core.vocabulary import check_class_count
from ..review.overlay import write_overlay, write_overlays
from .device_maps import MapBatch, device_maps
from .folder_lock import FolderLock
from .merge import merge_finished_shards
from .options import LabelOptions
from .sharding import shard_of


@dataclass
class LabelSummary(JobSummary):
    merged: bool = False  # this run folded every shard's manifest part into manifest.jsonl
    unfinished: int = 0  # a shard's run: images of the folder still without an entry of these settings

    @property
    def labelled(self) -> int:
        return self.done


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
        return decode_input(self.root / rel, self.resize, self.exif, self.min_short_side)


def decode_input(file: Path | IO[bytes], resize: Callable, exif: bool, min_short_side: int | None) -> dict:
    """One image decoded (EXIF, bit depth, reduced-scale JPEG) and resized to the model's input;
    ``size`` is the (width, height) its maps are written at."""
    decoded = read_rgb(file, exif, min_short_side)  # type: ignore[arg-type]  # PIL opens file objects too
    return {"size": decoded.size, "input": resize(decoded.image)}


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


def require_images(paths: list[PurePosixPath], where: object) -> list[PurePosixPath]:
    if not paths:
        raise MaskCLIPError(f"No images (jpg, jpeg, png, webp, bmp, tif) found under {where}.")
    return paths


@contextmanager
def write_probe(out_dir: Path) -> Iterator[Path]:
    """Creates ``out_dir`` and an empty file in it, removed on exit: proof that the folder is writable
    (and, for the Ray engine, a file its nodes must see)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise MaskCLIPError(f"--out {out_dir} is a file, not a folder.")
    try:
        probe = make_probe(out_dir)
    except OSError as exc:
        raise MaskCLIPError(f"Output folder {out_dir} is not writable: {exc.strerror or exc}") from exc
    try:
        yield probe
    finally:
        probe.unlink(missing_ok=True)


@contextmanager
def _writing(out_dir: Path, what: str) -> Iterator[None]:
    """A write error of the output folder (read-only, disk full) as one message, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise MaskCLIPError(f"Cannot {what} in {out_dir}: {exc.strerror or exc}. Images written so far are kept "
                            "(recorded in the manifest); fix this and run again to resume.") from exc


@contextmanager
def locked(out_dir: Path, shard: tuple[int, int] | None, hook: ProgressHook, command: str = "maskclip label"
           ) -> Iterator[FolderLock]:
    """The output folder's lock (:mod:`.folder_lock`) for the run's life; stale locks removed with a notice."""
    with _writing(out_dir, "take the folder's lock"):
        lock = FolderLock(out_dir, shard, command)
    with lock:
        for holder in lock.stale:
            hook.info(f"removed the stale lock of a run that ended without releasing it ({holder})")
        yield lock


def _flat(settings: dict) -> dict:
    """A record's dict with ``inference`` spread out, so a difference names the setting."""
    return {**{k: v for k, v in settings.items() if k != "inference"}, **(settings.get("inference") or {})}


def _check_same_settings(out_dir: Path, record: LabelRecord, running: str | None = None) -> None:
    """Refuse to mix outputs of different settings in one folder (label ids would not agree);
    ``running``: why even --overwrite may not change them (shards of the split are running)."""
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
        advice = f" {running}" if running else ". Pass --overwrite to relabel it, or choose another --out"
        raise MaskCLIPError(f"{out_dir} holds labels made with other settings (differ in: {', '.join(changed)}){advice}.")


class OutputWriter:
    """Writes one image's files in a thread pool and hands its manifest entry to ``record`` when done
    (the manifest's ``add``; a Ray actor collects them for the driver). ``folder`` carries the run's
    record (classes, formats); ``input_dir`` is where overlays read the photos.

    A write error (disk full, a folder made read-only or replaced by a file) is kept, and the
    job stops at its next :meth:`check` with one message; images already written stay recorded."""

    def __init__(self, folder: LabelFolder, options: LabelOptions, tag: str, input_dir: Path | None,
                 record: Callable[[ImageEntry], None]):
        self.folder, self.out_dir, self.input_dir = folder, folder.root, input_dir
        self.options, self.class_names, self.record, self.tag = options, folder.class_names, record, tag
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
        try:
            image = maps.image(index)
            arrays = {LABEL.name: image.labels, CONFIDENCE.name: image.confidence}
            paths, sizes = self.folder.write_maps(stem, arrays, self.options.png_compression)
            if self.options.overlays and self.input_dir is not None:
                write_overlay(self.folder.overlay_path(stem), self.input_dir / rel, image.labels, self.folder.colours,
                              self.class_names, self.options.exif)
            self.record(ImageEntry(
                str(rel), maps=paths, sizes=sizes, width=size[0], height=size[1],
                classes_present=tuple(self.class_names[i] for i in image.classes_present),
                mean_confidence=round(image.mean_confidence, 4), settings=self.tag))
        except (OSError, MaskCLIPError) as exc:  # MaskCLIPError: a symlinked folder leading out of the label folder
            self.error = MaskCLIPError(f"Cannot write the outputs of {rel} in {self.out_dir}: {exc}. "
                                       "Images written so far are kept; fix this and run again to resume.")

    def fail(self, rel: PurePosixPath, error: str) -> None:
        """Record an image that could not be read or labelled."""
        self.record(ImageEntry(str(rel), "error", settings=self.tag, error=error))

    def check(self) -> None:
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for f in self.pending:
            f.result()  # re-raise anything but a write error (a bug)
        self.check()


def label_record(segmenter: Segmenter, options: LabelOptions) -> LabelRecord:
    """What classes.json records of this run (its hash tags the run's manifest lines)."""
    return replace(segmenter.record(), min_confidence=options.min_confidence, confidence_format=options.confidence_format,
                   exif=options.exif)


def start_run(segmenter: Segmenter, folder: LabelFolder, options: LabelOptions, hook: ProgressHook,
              siblings: list[str] | None = None) -> tuple[str, Manifest]:
    """What every run does, under the lock, before any image: refuse other settings, write
    classes.json, open the manifest over earlier runs. The record hash and the manifest.
    ``siblings``: live shards of this run's split, under which even --overwrite keeps the settings."""
    out_dir, record = folder.root, label_record(segmenter, options)
    if not options.overwrite:
        _check_same_settings(out_dir, record)
    elif siblings:  # --overwrite cannot change the settings under shards of the split that are running
        _check_same_settings(out_dir, record, f"while other shards of this split run in it ({', '.join(siblings)}); "
                                              "every shard of a split must use the same settings")
    with _writing(out_dir, "write classes.json"):
        folder.write_classes(record)
    sharded = options.shard is not None
    # a shard never deletes the folder's manifests (other shards share them): its new lines win
    with _writing(out_dir, "open the manifest"):
        manifest = Manifest(out_dir, options.shard, fresh=options.overwrite and not sharded, class_names=record.classes)
    if manifest.malformed:
        hook.warn(f"{manifest.malformed} malformed line(s) in {out_dir}'s manifest ignored (a damaged line, or one of "
                  "other settings naming classes these do not have); those images are labelled again"
                  f"{' by their shard' if sharded else ''}.")
    return record_hash(record), manifest


def to_label(paths: list[PurePosixPath], manifest: Manifest, folder: LabelFolder, tag: str, overwrite: bool
             ) -> list[PurePosixPath]:
    """Resume: the images without an entry of these settings whose maps are intact (all with ``overwrite``)."""
    if overwrite:
        return list(paths)
    entries = manifest.entries
    return [p for p in paths if not ((e := entries.get(str(p))) is not None and e.settings == tag and folder.intact(e))]


def close_manifest(manifest: Manifest, compact: bool) -> None:
    """The run's last manifest write (compacted unless sharded); a write error as one message."""
    with _writing(manifest.root, "write the manifest"):
        manifest.close(compact=compact)


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


def label_group(segmenter: Segmenter, images: torch.Tensor, rels: list[PurePosixPath], sizes: list[tuple[int, int]],
                stems: dict[PurePosixPath, str], options: LabelOptions, writer: OutputWriter) -> list[tuple[PurePosixPath, str]]:
    """Label a group of same-shaped uint8 inputs run as one batch: each image's maps go to ``writer``;
    the images the model could not process, with their errors (recorded by the writer too)."""
    failures = []
    for rel, size, result in zip(rels, sizes, _maps_each(segmenter, images, sizes, options)):
        if isinstance(result, str):  # the model could not process this image (e.g. out of memory)
            writer.fail(rel, result)
            failures.append((rel, result))
        else:
            writer.submit(rel, stems[rel], size, *result)
    return failures


def label_folder(
    segmenter: Segmenter, input_dir: str | os.PathLike, out_dir: str | os.PathLike, options: LabelOptions | None = None, hook: ProgressHook = SILENT
) -> LabelSummary:
    """Label every image under ``input_dir`` (or its ``options.shard``) into ``out_dir``."""
    input_dir, out_dir = Path(input_dir), Path(out_dir)
    options = options or LabelOptions()
    check_class_count(len(segmenter.class_names))
    folder = LabelFolder(out_dir)
    folder.check_contained()
    paths = require_images(find_images(input_dir, folder.output_dirs()), input_dir)
    with write_probe(out_dir):  # an unwritable folder is refused before the lock
        pass
    with locked(out_dir, options.shard, hook) as lock:
        tag, summary = _label_locked(segmenter, input_dir, folder, paths, options, lock.siblings, hook)
    if options.shard is not None:  # the last shard to finish merges
        merge = merge_finished_shards(input_dir, out_dir, tag)
        summary.merged, summary.unfinished = merge.merged, merge.unfinished or 0
    return summary


def _label_locked(segmenter: Segmenter, input_dir: Path, folder: LabelFolder, paths: list[PurePosixPath],
                  options: LabelOptions, siblings: list[str], hook: ProgressHook) -> tuple[str, LabelSummary]:
    tag, manifest = start_run(segmenter, folder, options, hook, siblings)
    sharded = options.shard is not None
    stems = output_stems(paths)
    mine = shard_of(paths, input_dir, options.shard) if sharded else paths
    todo = to_label(mine, manifest, folder, tag, options.overwrite)
    summary = LabelSummary(total=len(mine), skipped=len(mine) - len(todo))
    writer = OutputWriter(folder, options, tag, input_dir, manifest.add)
    loader = DataLoader(
        _ImageFolder(input_dir, todo, segmenter.resize, options.exif, segmenter.input_short_side()), batch_size=options.batch_size,
        num_workers=options.workers, collate_fn=_collate, pin_memory=segmenter.device.type == "cuda",
        persistent_workers=False,
    )
    start = time.perf_counter()
    hook.start(len(todo), "labelling")

    try:
        with _main_threads(segmenter.device), torch.no_grad():
            for batch in loader:
                for item in batch["errors"]:
                    writer.fail(item["rel"], item["error"])
                    summary.fail(str(item["rel"]), item["error"])
                    hook.advance(1)
                for group in batch["groups"]:
                    failures = label_group(segmenter, group["images"], group["rels"], group["sizes"], stems, options, writer)
                    for rel, error in failures:
                        summary.fail(str(rel), error)
                    summary.done += len(group["rels"]) - len(failures)
                    hook.advance(len(group["rels"]))
                writer.check()
    finally:
        hook.finish()
        try:
            writer.close()
        finally:
            summary.seconds = time.perf_counter() - start
            close_manifest(manifest, compact=not sharded)
    if options.overlays and not sharded:  # images labelled by an earlier run without --overlays
        write_overlays(folder.root, input_dir, missing_only=True)
    return tag, summary
