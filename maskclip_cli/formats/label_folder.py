"""The on-disk layout of a label folder, and the only code that knows it.

::

    OUT/
      classes.json            id -> name and colour, the ignore index, the LabelRecord ("settings")
      manifest.jsonl          one JSON line per image (formats.image_entry, read and written by formats.manifest)
      manifest.shard-K-of-N.jsonl  a shard's part of it while sharded runs go on (merged at the end)
      .maskclip-locks/        who is labelling into the folder (see labelling.folder_lock)
      labels/<stem>.png       8-bit palette PNG, pixel = class id, 255 = ignore    } one folder per map
      confidence/<stem>.png   confidence scaled 0-255 (or confidence/<stem>.npy,    } kind: see
                              float16 in [0, 1])                                    } image_entry.MAP_KINDS
      overlays/<stem>.jpg     the photo blended with the class colours (optional)
      report.html, report_files/   the review page of `maskclip report` and its thumbnails (optional)

``<stem>`` is the image's path relative to the input folder without its extension (see
formats.image_files.output_stems). The label job, the training dataset, eval's folder mode and
the exporters all reach these files through :class:`LabelFolder`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import numpy as np

from ..core._io import write_json
from ..core.constants import IGNORE_INDEX
from ..core.errors import MaskCLIPError
from ..core.hooks import SILENT, ProgressHook
from ..core.record import LabelRecord, record_hash
from .image_entry import CONFIDENCE, LABEL, MAP_KINDS, ImageEntry, InvalidEntry, MapKind, inside
from .label_files import palette, read_confidence  # noqa: F401  read_confidence: the training dataset's import
from .manifest import MANIFEST_FILE, ManifestReader, manifest_files, part_path

CLASSES_FILE = "classes.json"
LOCKS_DIR = ".maskclip-locks"
LABELS_DIR = LABEL.folder
OVERLAYS_DIR = "overlays"
REPORT_FILE = "report.html"
REPORT_ASSETS_DIR = "report_files"  # `maskclip report` names it after the page: <page stem>_files
SHOWN_BAD_LINES = 10  # manifest lines reported one by one; the rest are counted

def classes_document(record: LabelRecord) -> dict:
    """Content of classes.json: id -> name and colour, the ignore index, and the record."""
    colours = palette(len(record.classes))
    return {
        "classes": [{"id": i, "name": n, "color": colours[i]} for i, n in enumerate(record.classes)],
        "ignore_index": IGNORE_INDEX,
        "settings": record.to_dict(),
    }


def parse_classes_document(doc: object, where: Path) -> tuple[list[str], dict]:
    """(class names by id, raw settings) of a classes.json document; one clear error otherwise.
    The only parser of classes.json (the label folder's and eval's ``--classes-file``)."""
    try:
        classes = sorted(doc["classes"], key=lambda c: c["id"])  # type: ignore[index]
        names = [c["name"] for c in classes]
        settings = doc.get("settings", {})  # type: ignore[union-attr]
    except (KeyError, TypeError, AttributeError) as exc:
        raise MaskCLIPError(f"{where} is not a valid classes.json (expected {{\"classes\": [{{\"id\": 0, \"name\": "
                            f"...}}, ...]}}): {exc!r}") from exc
    if not names:  # else exports and reports of it went on with nothing to say
        raise MaskCLIPError(f"{where}: the class list is empty.")
    if [c["id"] for c in classes] != list(range(len(names))):
        raise MaskCLIPError(f"{where}: class ids must be 0..{len(names) - 1}.")
    bad = next((n for n in names if not isinstance(n, str) or not n.strip()), None)
    if bad is not None or len(set(names)) != len(names):
        what = f"a class name must be a non-empty string, got {bad!r}" if bad is not None else "class names must be unique"
        raise MaskCLIPError(f"{where}: {what}.")
    if doc.get("ignore_index", IGNORE_INDEX) != IGNORE_INDEX:  # type: ignore[union-attr]
        raise MaskCLIPError(f"{where}: ignore_index must be {IGNORE_INDEX}.")
    return names, settings if isinstance(settings, dict) else {}


def _intact(path: Path, recorded: int | None, kind: MapKind) -> bool:
    """The map exists and has its recorded size; entries of 0.1.0 (no size) must decode."""
    try:
        if recorded is not None:
            return path.stat().st_size == recorded
        kind.read(path)
        return True
    except (OSError, MaskCLIPError):  # missing, truncated or not an image
        return False


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
            what = ("no classes.json in it" if Path(root).is_dir() else "a file, not a folder" if Path(root).exists()
                    else "folder not found")
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
        folder = cls(root, names, record)
        folder.check_contained()
        return folder

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
        return part_path(self.root, shard)

    @property
    def locks_dir(self) -> Path:
        return self.root / LOCKS_DIR

    def map_path(self, kind: MapKind, stem: str, extension: str | None = None) -> Path:
        """Where ``stem``'s map of ``kind`` is written (in the record's format unless given)."""
        return self.root / kind.folder / f"{stem}.{extension or kind.extension(self.record)}"

    def label_path(self, stem: str) -> Path:
        return self.map_path(LABEL, stem)

    def confidence_path(self, stem: str, fmt: str | None = None) -> Path:
        return self.map_path(CONFIDENCE, stem, fmt)

    def overlay_path(self, stem: str) -> Path:
        return self.root / OVERLAYS_DIR / f"{stem}.jpg"

    @property
    def report_path(self) -> Path:
        return self.root / REPORT_FILE

    def output_dirs(self) -> list[Path]:
        """Folders holding this folder's own images (not to be labelled when inside the input)."""
        return [self.root / d for d in (*(k.folder for k in MAP_KINDS), OVERLAYS_DIR, REPORT_ASSETS_DIR)]

    def find_map(self, kind: MapKind, stem: str) -> Path | None:
        """``stem``'s map of ``kind`` in whichever of its formats it was written, if any."""
        return next((p for ext in kind.extensions if (p := self.map_path(kind, stem, ext)).is_file()), None)

    def find_confidence(self, stem: str) -> Path | None:
        return self.find_map(CONFIDENCE, stem)

    # -- contents ----------------------------------------------------------------------------
    def write_classes(self, record: LabelRecord) -> None:
        self.record, self.class_names = record, list(record.classes)
        write_json(self.classes_file, classes_document(record))

    @property
    def colours(self) -> list[list[int]]:
        """Class colours of the label PNGs (and of classes.json)."""
        return palette(len(self.class_names))

    def write_maps(self, stem: str, arrays: Mapping[str, np.ndarray], compression: int
                   ) -> tuple[dict[str, str], dict[str, int]]:
        """Write one image's maps (one array per map kind); their paths relative to the folder and
        their sizes in bytes, as an :class:`ImageEntry` records them."""
        paths, sizes = {}, {}
        for kind in (k for k in MAP_KINDS if k.name in arrays):
            path = self.map_path(kind, stem)
            inside(self.root, path.relative_to(self.root).as_posix(), kind.name)  # no symlinked folder out of it
            kind.write(path, arrays[kind.name], self.colours, compression)
            paths[kind.name], sizes[kind.name] = path.relative_to(self.root).as_posix(), path.stat().st_size
        return paths, sizes

    def intact(self, entry: ImageEntry) -> bool:
        """Every map of a labelled entry is where it says with its recorded size (resume's check);
        a map that is a symlink out of the folder is not (relabelling replaces the link)."""
        try:
            return entry.ok and all(
                _intact(inside(self.root, entry.maps[k.name], k.name), entry.sizes.get(k.name), k)
                for k in MAP_KINDS if k.name in entry.maps)
        except InvalidEntry:
            return False

    def check_contained(self) -> None:
        """Refuse a folder whose output folders (labels/, overlays/, ...) are symlinks leading out of
        it: writing there would write outside the folder the user named."""
        root = self.root.resolve()
        for sub in self.output_dirs():
            if (sub.exists() or sub.is_symlink()) and not sub.resolve().is_relative_to(root):
                raise MaskCLIPError(f"{sub} leads outside {self.root} (a symlink to {sub.resolve()}); a label "
                                    "folder must hold its own files: link the whole folder instead.")

    def reader(self, hook: ProgressHook = SILENT) -> ManifestReader:
        """The manifest (main file and shard parts) read and validated once; bad lines reported
        through ``hook`` and skipped. Iterate it for the latest entry per image, sorted by source."""
        if not manifest_files(self.root):
            raise MaskCLIPError(f"{self.root} has no {MANIFEST_FILE}; was it written by `maskclip label`?")
        reader = ManifestReader(self.root, self.class_names)
        for bad in reader.bad[:SHOWN_BAD_LINES]:
            hook.warn(f"{self.root}: {bad}; skipped")
        if reader.bad_count > SHOWN_BAD_LINES:
            hook.warn(f"{self.root}: {reader.bad_count - SHOWN_BAD_LINES} more invalid manifest line(s) skipped")
        self._warn_unmerged_or_mixed(reader, hook)
        return reader

    def _warn_unmerged_or_mixed(self, reader: ManifestReader, hook: ProgressHook) -> None:
        """Say what the merged view hides: shard parts not merged yet, and entries labelled with
        other settings than classes.json records (a sharded run with --overwrite and other classes
        that has not finished): their label ids may not follow the class list."""
        if reader.parts:
            hook.warn(f"{self.root}: {len(reader.parts)} shard part(s) of the manifest are not merged "
                      f"({', '.join(p.name for p in reader.parts[:3])}{', ...' if len(reader.parts) > 3 else ''}): "
                      "shards are running or have not all run; their entries are read too. When every shard is "
                      f"done: maskclip label --merge {self.root}")
        counts = reader.settings_counts()
        current = record_hash(self.record) if self.record else None
        tags = {tag for tag in counts if tag is not None}
        if current in tags and len(tags) > 1:  # a folder of an older version has one tag of its own: not mixed
            other = sum(n for tag, n in counts.items() if tag not in (None, current))
            hook.warn(f"{self.root}: {other} of {len(reader)} images were labelled with other settings than "
                      "classes.json records (a run with --overwrite and other classes or options, e.g. a shard, "
                      "has not relabelled them): their label ids may not follow the class list")

    def read_map(self, entry: ImageEntry, kind: MapKind) -> np.ndarray | None:
        """A labelled entry's map of ``kind`` from its recorded path. The label map must be readable;
        another kind whose file is missing (in the recorded format and every other) is None."""
        path: Path | None = inside(self.root, entry.maps[kind.name], kind.name) if kind.name in entry.maps else None
        if (path is None or not path.is_file()) and kind is not LABEL:
            path = self.find_map(kind, entry.stem)
        return kind.read(path) if path is not None else None

    def read_maps(self, entry: ImageEntry) -> dict[str, np.ndarray | None]:
        """Every map of a labelled entry by kind (see :meth:`read_map`); maps of other sizes are refused."""
        maps = {kind.name: self.read_map(entry, kind) for kind in MAP_KINDS}
        shapes = {name: m.shape for name, m in maps.items() if m is not None}
        if len(set(shapes.values())) > 1:
            raise MaskCLIPError(f"maps of different sizes: {', '.join(f'{k} {v[1]}x{v[0]}' for k, v in shapes.items())}")
        return maps
