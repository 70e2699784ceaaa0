"""The run manifest: one JSON line per image (:class:`~.image_entry.ImageEntry`), appended as each
image's files land.

Appending line by line means an interrupted run loses nothing it finished; the latest line for
an image wins, and a finished run rewrites the file compacted to one line per image.

A sharded run (``--shard K/N`` or a torchrun rank) appends to its own part (:func:`part_path`), so
processes never interleave lines in one file. Every reader (the label job's resume, export, report,
overlay) reads the main file and all parts through :class:`ManifestReader`, so they see the same
merged view with the same validity rules; a merge folds the parts into ``manifest.jsonl`` and removes
them. Lines that are not a valid entry (a crash mid-line, a hand edit, a hostile path) are counted,
kept with their reason for the caller to report, and skipped.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..core._io import atomic_write
from .image_entry import MAX_PATH, ImageEntry, InvalidEntry

MANIFEST_FILE = "manifest.jsonl"
MANIFEST_PARTS = "manifest.shard-*-of-*.jsonl"
KEPT_BAD_LINES = 100  # reasons kept for the caller; every bad line is counted


def part_path(root: Path, shard: tuple[int, int]) -> Path:
    """Shard K of N's part of the manifest."""
    return Path(root) / f"manifest.shard-{shard[0]}-of-{shard[1]}.jsonl"


def manifest_files(root: Path) -> list[Path]:
    """The main manifest and every part that exist, least recently written first: an image
    relabelled by a later run (after an error, or a lost output) has its latest line last."""
    main = Path(root) / MANIFEST_FILE
    found = [p for p in [main, *sorted(Path(root).glob(MANIFEST_PARTS))] if p.is_file()]
    return sorted(found, key=lambda p: (p.stat().st_mtime_ns, p != main, p.name))


@dataclass(frozen=True)
class BadLine:
    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path.name} line {self.line}: {self.reason}"


def _raw(line: bytes) -> object:
    try:
        return json.loads(line)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidEntry(f"not a JSON line ({exc.__class__.__name__})") from exc


def _named_source(line: bytes) -> tuple[str | None, str | None]:
    """The ``source`` and ``settings`` strings of a line that is JSON but not a valid entry, if it has them."""
    try:
        raw = json.loads(line)
    except (ValueError, RecursionError):
        return None, None
    found = [raw.get(key) if isinstance(raw, dict) else None for key in ("source", "settings")]
    source, settings = (v if isinstance(v, str) and len(v) <= MAX_PATH else None for v in found)
    return source, settings


class ManifestReader:
    """The latest entry per image over the main manifest and its parts, sorted by source and
    streamed: memory holds one (file, byte offset) per image, not the entries (100k-image folders).

    An invalid line that names its image (a ``source`` string) becomes a failed entry whose error is
    the reason, unless a valid line for that image exists; one that does not is only counted."""

    def __init__(self, root: Path, class_names: list[str] | None = None):
        self.files = manifest_files(root)
        self.class_names = class_names
        self.bad: list[BadLine] = []  # the first KEPT_BAD_LINES
        self.bad_count = 0
        self._latest: dict[str, tuple[int, int, str | None]] = {}  # (file, offset, settings tag)
        self._tags: dict[str, str] = {}  # one string per distinct tag, not one per line
        for i, path in enumerate(self.files):
            with open(path, "rb") as f:
                offset = 0
                for number, line in enumerate(f, 1):
                    if line.strip():
                        self._scan(line, i, offset, path, number)
                    offset += len(line)

    def _scan(self, line: bytes, i: int, offset: int, path: Path, number: int) -> None:
        try:
            entry = ImageEntry.from_json(_raw(line), self.class_names)
        except InvalidEntry as exc:
            self.bad_count += 1
            if len(self.bad) < KEPT_BAD_LINES:
                self.bad.append(BadLine(path, number, str(exc)))
            source, settings = _named_source(line)
            if source is not None and source not in self._latest:
                self._latest[source] = (i, offset, self._tag(settings))
            return
        self._latest[entry.source] = (i, offset, self._tag(entry.settings))

    def _tag(self, settings: str | None) -> str | None:
        return None if settings is None else self._tags.setdefault(settings, settings)

    def __len__(self) -> int:
        return len(self._latest)

    def __contains__(self, source: object) -> bool:
        return source in self._latest

    @property
    def parts(self) -> list[Path]:
        """The shard parts read (not yet merged into manifest.jsonl)."""
        return sorted(p for p in self.files if p.name != MANIFEST_FILE)

    def settings_of(self, source: str) -> str | None:
        """The settings tag of ``source``'s latest entry (None: none, or it names no settings)."""
        found = self._latest.get(source)
        return found[2] if found else None

    def settings_counts(self) -> Counter:
        """Images per settings tag of their latest entry (None: it names none)."""
        return Counter(tag for _, _, tag in self._latest.values())

    def __iter__(self) -> Iterator[ImageEntry]:
        handles = [open(path, "rb") for path in self.files]
        try:
            for source in sorted(self._latest):
                i, offset, _ = self._latest[source]
                handles[i].seek(offset)
                line = handles[i].readline()
                try:
                    yield ImageEntry.from_json(_raw(line), self.class_names)
                except InvalidEntry as exc:
                    yield ImageEntry(source, "error", error=f"invalid manifest line: {exc}")
        finally:
            for f in handles:
                f.close()

    def latest(self) -> dict[str, ImageEntry]:
        return {entry.source: entry for entry in self}


def _lines(entries) -> str:
    return "".join(json.dumps(entry.to_json()) + "\n" for entry in entries)


def merge_parts(root: Path, class_names: list[str] | None = None) -> ManifestReader:
    """Fold every part into ``manifest.jsonl`` (compacted) and remove the parts; the reader that read
    them (its length, and the invalid lines left out)."""
    parts = sorted(Path(root).glob(MANIFEST_PARTS))
    reader = ManifestReader(root, class_names)
    text = _lines(reader)
    atomic_write(Path(root) / MANIFEST_FILE, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    for part in parts:
        part.unlink(missing_ok=True)
    return reader


class Manifest:
    """Append-only writer over the entries of earlier runs (main file and parts).

    ``shard`` = (K, N) appends to that shard's part; None appends to manifest.jsonl.
    """

    def __init__(self, root: Path, shard: tuple[int, int] | None = None, fresh: bool = False,
                 class_names: list[str] | None = None):
        self.root, self.class_names = Path(root), class_names
        self.path = part_path(root, shard) if shard is not None else self.root / MANIFEST_FILE
        if fresh:
            for path in manifest_files(root):
                path.unlink(missing_ok=True)
        reader = ManifestReader(root, class_names)
        self.entries, self.malformed = reader.latest(), reader.bad_count
        self._file = open(self.path, "a", encoding="utf-8")
        self._lock = threading.Lock()  # writer threads add entries concurrently

    def add(self, entry: ImageEntry) -> None:
        with self._lock:
            self.entries[entry.source] = entry
            self._file.write(json.dumps(entry.to_json()) + "\n")
            self._file.flush()

    def close(self, compact: bool = True) -> None:
        """Close the file; with ``compact`` (unsharded runs) fold everything into manifest.jsonl."""
        self._file.close()
        if compact:
            merge_parts(self.root, self.class_names)
