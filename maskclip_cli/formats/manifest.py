"""The run manifest: one JSON line per image, appended as each image's files land.

Appending line by line means an interrupted run loses nothing it finished; the latest line for
an image wins, and a finished run rewrites the file compacted to one line per image.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .._io import atomic_write


def read_manifest(path: Path) -> dict[str, dict]:
    """Latest entry per source path; unreadable lines (a crash mid-line) are skipped."""
    entries: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
                entries[entry["source"]] = entry
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return entries


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
    """Append-only writer over the entries of earlier runs."""

    def __init__(self, path: Path, fresh: bool = False):
        self.path = path
        self.entries = {} if fresh else read_manifest(path)
        if fresh:
            path.unlink(missing_ok=True)
        self._file = open(path, "a", encoding="utf-8")
        self._lock = threading.Lock()  # writer threads add entries concurrently

    def add(self, entry: dict) -> None:
        with self._lock:
            self.entries[entry["source"]] = entry
            self._file.write(json.dumps(entry) + "\n")
            self._file.flush()

    def close(self, compact: bool = True) -> None:
        self._file.close()
        if compact:
            lines = "".join(json.dumps(e) + "\n" for _, e in sorted(self.entries.items()))
            atomic_write(self.path, lambda tmp: Path(tmp).write_text(lines, encoding="utf-8"))
