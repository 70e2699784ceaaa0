"""The run manifest: one JSON line per image, appended as each image's files land.

Appending line by line means an interrupted run loses nothing it finished; the latest line for
an image wins, and a finished run rewrites the file compacted to one line per image.

A sharded run (``--shard K/N`` or a torchrun rank) appends to its own part
(:meth:`LabelFolder.manifest_part`), so processes never interleave lines in one file; every run
reads the main file and all parts (so resume works after a change of shard count), and a merge
folds the parts into ``manifest.jsonl`` and removes them. Lines that are not a valid entry (a
crash mid-line, a hand edit) are counted and ignored.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from ..core._io import atomic_write

if TYPE_CHECKING:  # label_folder imports this module
    from .label_folder import LabelFolder


def _valid(entry: object) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("source"), str):
        return False
    if entry.get("status") == "ok":
        return isinstance(entry.get("label"), str) and isinstance(entry.get("confidence"), str)
    return entry.get("status") == "error"


def read_manifest(path: Path) -> tuple[dict[str, dict], int]:
    """Latest valid entry per source path, and the number of malformed lines skipped."""
    entries: dict[str, dict] = {}
    malformed = 0
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                entry = None
            if _valid(entry):
                entries[entry["source"]] = entry
            else:
                malformed += 1
    return entries, malformed


def manifest_files(folder: LabelFolder) -> list[Path]:
    """The main manifest and every part that exist, least recently written first: an image
    relabelled by a later run (after an error, or a lost output) has its latest line last."""
    found = [p for p in [folder.manifest_file, *folder.manifest_parts()] if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p != folder.manifest_file, p.name))


def read_all(folder: LabelFolder) -> tuple[dict[str, dict], int]:
    """Entries of the main manifest and every part together; malformed lines counted."""
    entries: dict[str, dict] = {}
    malformed = 0
    for path in manifest_files(folder):
        found, bad = read_manifest(path)
        entries.update(found)
        malformed += bad
    return entries, malformed


def merge_parts(folder: LabelFolder) -> int:
    """Fold every part into ``manifest.jsonl`` (compacted) and remove the parts; the entry count."""
    parts = folder.manifest_parts()
    entries, _ = read_all(folder)
    lines = "".join(json.dumps(e) + "\n" for _, e in sorted(entries.items()))
    atomic_write(folder.manifest_file, lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))
    for part in parts:
        part.unlink(missing_ok=True)
    return len(entries)


@dataclass(frozen=True)
class ManifestEntry:
    """One image's line, as readers of a finished folder (exports, report) use it."""

    source: str  # image path relative to the labelled input folder
    status: str  # ok | error
    label: str | None = None  # label map path relative to the label folder
    confidence: str | None = None
    mean_confidence: float | None = None
    classes_present: tuple[str, ...] = ()
    error: str | None = None


def iter_manifest(path: Path) -> Iterator[ManifestEntry]:
    """Latest entry per source path, sorted by source, read lazily: memory holds one byte offset
    per image instead of every entry (100k-image folders). Unreadable lines are skipped."""
    latest: dict[str, int] = {}
    with open(path, "rb") as f:
        offset = 0
        for line in f:
            try:
                latest[json.loads(line)["source"]] = offset
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
                pass  # a line cut short by a crash
            offset += len(line)
        for source in sorted(latest):
            f.seek(latest[source])
            raw = json.loads(f.readline())
            yield ManifestEntry(
                source=source, status=raw.get("status", "error"), label=raw.get("label"),
                confidence=raw.get("confidence"), mean_confidence=raw.get("mean_confidence"),
                classes_present=tuple(raw.get("classes_present", ())), error=raw.get("error"),
            )


class Manifest:
    """Append-only writer over the entries of earlier runs (main file and parts).

    ``shard`` = (K, N) appends to that shard's part; None appends to manifest.jsonl.
    """

    def __init__(self, folder: LabelFolder, shard: tuple[int, int] | None = None, fresh: bool = False):
        self.folder = folder
        self.path = folder.manifest_part(shard) if shard is not None else folder.manifest_file
        if fresh:
            for path in manifest_files(folder):
                path.unlink(missing_ok=True)
        self.entries, self.malformed = read_all(folder)
        self._file = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()  # writer threads add entries concurrently

    def add(self, entry: dict) -> None:
        with self._lock:
            self.entries[entry["source"]] = entry
            self._file.write(json.dumps(entry) + "\n")
            self._file.flush()

    def close(self, compact: bool = True) -> None:
        """Close the file; with ``compact`` (unsharded runs) fold everything into manifest.jsonl."""
        self._file.close()
        if compact:
            merge_parts(self.folder)
