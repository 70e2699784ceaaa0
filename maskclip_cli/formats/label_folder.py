"""The on-disk layout of a label folder, and the only code that knows it.

::

    OUT/
      classes.json            id -> name and colour, the ignore index, the LabelRecord ("settings")
      manifest.jsonl          one JSON line per image (see formats.manifest)
      manifest.shard-K-of-N.jsonl  a shard's part of it while sharded runs go on (merged at the end)
      .maskclip-locks/        who is labelling into the folder (see labelling.folder_lock)
      labels/<stem>.png       8-bit palette PNG, pixel = class id, 255 = ignore
      confidence/<stem>.png   confidence scaled 0-255 (or confidence/<stem>.npy, float16 in [0, 1])
      overlays/<stem>.jpg     the photo blended with the class colours (optional)
      report.html, report_files/   the review page of `maskclip report` and its thumbnails (optional)

``<stem>`` is the image's path relative to the input folder without its extension (see
formats.image_files.output_stems). The label job, the training dataset, eval's folder mode and
the exporters all reach these files through :class:`LabelFolder`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np
from PIL import Image

from ..core._io import write_json
from ..core.constants import IGNORE_INDEX
from ..core.errors import MaskCLIPError
from ..core.record import LabelRecord
from .label_files import palette, read_label_png
from .manifest import ManifestEntry, iter_manifest

CLASSES_FILE = "classes.json"
MANIFEST_FILE = "manifest.jsonl"
MANIFEST_PARTS = "manifest.shard-*-of-*.jsonl"
LOCKS_DIR = ".maskclip-locks"
LABELS_DIR = "labels"
CONFIDENCE_DIR = "confidence"
OVERLAYS_DIR = "overlays"
REPORT_FILE = "report.html"
REPORT_ASSETS_DIR = "report_files"  # `maskclip report` names it after the page: <page stem>_files
CONFIDENCE_FORMATS = ("png", "npy")


def classes_document(record: LabelRecord) -> dict:
    """Content of classes.json: id -> name and colour, the ignore index, and the record."""
    colours = palette(len(record.classes))
    return {
        "classes": [{"id": i, "name": n, "color": colours[i]} for i, n in enumerate(record.classes)],
        "ignore_index": IGNORE_INDEX,
        "settings": record.to_dict(),
    }


def parse_classes_document(doc: object, where: Path) -> tuple[list[str], dict]:
    """(class names by id, raw settings) of a classes.json document; one clear error otherwise."""
    try:
        classes = sorted(doc["classes"], key=lambda c: c["id"])  # type: ignore[index]
        names = [str(c["name"]) for c in classes]
        settings = doc.get("settings", {})  # type: ignore[union-attr]
    except (KeyError, TypeError, AttributeError) as exc:
        raise MaskCLIPError(f"{where} is not a valid classes.json: {exc!r}") from exc
    if [c["id"] for c in classes] != list(range(len(names))):
        raise MaskCLIPError(f"{where}: class ids must be 0..{len(names) - 1}.")
    if doc.get("ignore_index", IGNORE_INDEX) != IGNORE_INDEX:  # type: ignore[union-attr]
        raise MaskCLIPError(f"{where}: ignore_index must be {IGNORE_INDEX}.")
    return names, settings if isinstance(settings, dict) else {}


class LabelFolder:
    """A label folder: paths of every output, and its classes.json read as a :class:`LabelRecord`."""

    def __init__(self, root: Path, class_names: list[str] | None = None, record: LabelRecord | None = None):
        self.root = Path(root)
        self.record = record
        self.class_names = list(class_names if class_names is not None else (record.classes if record else []))

    # -- reading an existing folder ------------------------------------------------------
    @classmethod
    def open(cls, root: str | os.PathLike) -> LabelFolder:
        """Read ``root/classes.json``; a MaskCLIPError says what is wrong with it."""
        path = Path(root) / CLASSES_FILE
        if not path.is_file():
            what = "folder not found" if not Path(root).is_dir() else "no classes.json in it"
            raise MaskCLIPError(f"{root} is not a label folder of `maskclip label` ({what}).")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise MaskCLIPError(f"{path} is not a valid classes.json: {exc}") from exc
        names, settings = parse_classes_document(doc, path)
        try:
            record = LabelRecord.from_dict(settings)
        except (ValueError, TypeError, KeyError) as exc:
            raise MaskCLIPError(f"{path}: cannot read its settings record: {exc}") from exc
        if not record.classes:
            record.classes = list(names)
        return cls(root, names, record)

    @property
    def settings(self) -> dict:
        """The record as written (the raw ``settings`` of classes.json)."""
        return self.record.to_dict() if self.record else {}

    # -- paths -------------------------------------------------------------------------------
    @property
    def classes_file(self) -> Path:
        return self.root / CLASSES_FILE

    @property
    def manifest_file(self) -> Path:
        return self.root / MANIFEST_FILE

    def manifest_part(self, shard: tuple[int, int]) -> Path:
        """Shard K of N's part of the manifest."""
        return self.root / f"manifest.shard-{shard[0]}-of-{shard[1]}.jsonl"

    def manifest_parts(self) -> list[Path]:
        return sorted(self.root.glob(MANIFEST_PARTS))

    @property
    def locks_dir(self) -> Path:
        return self.root / LOCKS_DIR

    def label_path(self, stem: str) -> Path:
        return self.root / LABELS_DIR / f"{stem}.png"

    def confidence_path(self, stem: str, fmt: str | None = None) -> Path:
        fmt = fmt or (self.record.confidence_format if self.record else "png")
        return self.root / CONFIDENCE_DIR / f"{stem}.{fmt}"

    def overlay_path(self, stem: str) -> Path:
        return self.root / OVERLAYS_DIR / f"{stem}.jpg"

    @property
    def report_path(self) -> Path:
        return self.root / REPORT_FILE

    def output_dirs(self) -> list[Path]:
        """Folders holding this folder's own images (not to be labelled when inside the input)."""
        return [self.root / d for d in (LABELS_DIR, CONFIDENCE_DIR, OVERLAYS_DIR, REPORT_ASSETS_DIR)]

    def find_confidence(self, stem: str) -> Path | None:
        """The confidence map of ``stem`` in whichever format it was written, if any."""
        for fmt in CONFIDENCE_FORMATS:
            path = self.confidence_path(stem, fmt)
            if path.is_file():
                return path
        return None

    # -- contents ----------------------------------------------------------------------------
    def write_classes(self, record: LabelRecord) -> None:
        self.record, self.class_names = record, list(record.classes)
        write_json(self.classes_file, classes_document(record))

    def read_labels(self, stem: str) -> np.ndarray:
        return read_label_png(self.label_path(stem))

    @property
    def colours(self) -> list[list[int]]:
        """Class colours of the label PNGs (and of classes.json)."""
        return palette(len(self.class_names))

    def entries(self) -> Iterator[ManifestEntry]:
        """The manifest's latest entry per image, sorted by source, streamed."""
        if not self.manifest_file.is_file():
            raise MaskCLIPError(f"{self.root} has no {MANIFEST_FILE}; was it written by `maskclip label`?")
        return iter_manifest(self.manifest_file)

    def stem_of(self, entry: ManifestEntry) -> str:
        """Output name of a manifest entry (``nested/b`` for ``labels/nested/b.png``)."""
        if entry.label is None:
            return str(PurePosixPath(entry.source).with_suffix(""))
        return str(PurePosixPath(entry.label).relative_to(LABELS_DIR).with_suffix(""))

    def read_entry_confidence(self, entry: ManifestEntry) -> np.ndarray | None:
        """An entry's confidence map in [0, 1] (either format), or None when it has none."""
        path = self.find_confidence(self.stem_of(entry))
        return read_confidence(path) if path is not None else None


def read_confidence(path: Path) -> np.ndarray:
    """(H, W) float32 confidence in [0, 1] from a PNG (0-255) or a float16 .npy map."""
    try:
        if path.suffix == ".npy":
            values = np.load(path, allow_pickle=False)
            if values.ndim != 2:
                raise ValueError(f"expected a 2-D array, got shape {values.shape}")
            return values.astype(np.float32)
        with Image.open(path) as img:
            if img.mode != "L":
                raise ValueError(f"a {img.mode} image; expected an 8-bit greyscale PNG")
            return np.asarray(img, dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:
        raise MaskCLIPError(f"Cannot read confidence map {path}: {exc}") from exc
