"""Merging a sharded label folder: the shards' manifest parts folded into ``manifest.jsonl``.

A merge says what it knows of the folder's completeness, so a missing or mismatched shard is never
silent: which splits lack a shard's part (named by the parts' ``shard-K-of-N``), and, given the
images folder, how many images have no entry labelled with the folder's settings (a shard that has
not run, or one run with other classes or options). A shard merges only when that count is 0; a
``maskclip label --merge`` merges what there is and reports the rest. A folder that is not a label
folder, or one with no parts, is left untouched.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from ..core.errors import MaskCLIPError
from ..core.record import record_hash
from ..formats.image_files import find_images
from ..formats.label_folder import LabelFolder
from ..formats.manifest import ManifestReader, merge_parts
from .folder_lock import holders, merge_when_idle

_PART = re.compile(r"manifest\.shard-(\d+)-of-(\d+)\.jsonl")
SHOWN_SHARDS = 5


@dataclass
class MergeResult:
    merged: bool = False  # the parts were folded into manifest.jsonl
    parts: int = 0  # parts found
    busy: list[str] = field(default_factory=list)  # live runs holding the folder (then nothing is merged)
    unfinished: int | None = None  # images of the input without an entry of the folder's settings (None: not checked)
    missing_shards: list[str] = field(default_factory=list)  # per split with some parts: the shards without one
    dropped: list[str] = field(default_factory=list)  # invalid manifest lines left out by the merge (the first few)
    dropped_count: int = 0


def missing_shards(parts: list[Path]) -> list[str]:
    """Per split (N) of which some parts exist, the shards K without one: ``"1, 3 of 4"``."""
    present: dict[int, set[int]] = defaultdict(set)
    for part in parts:
        if m := _PART.fullmatch(part.name):
            present[int(m[2])].add(int(m[1]))
    missing = []
    for n, ks in sorted(present.items()):
        count = n - len(ks)
        if count:  # N comes from a file name and may be huge: the first few are named, the rest counted
            first = [str(k) for k in islice((k for k in range(n) if k not in ks), SHOWN_SHARDS)]
            more = f" and {count - len(first)} more" if count > len(first) else ""
            missing.append(f"{', '.join(first)}{more} of {n}")
    return missing


def unfinished_images(input_dir: Path, folder: LabelFolder, reader: ManifestReader, tag: str) -> int:
    """Images under ``input_dir`` whose latest entry was not written with settings ``tag`` (or that have none)."""
    return sum(reader.settings_of(str(p)) != tag for p in find_images(input_dir, folder.output_dirs()))


def merge_finished_shards(input_dir: Path, out_dir: Path, tag: str) -> MergeResult:
    """The end of a shard's run: merge once no run holds the folder and every image under
    ``input_dir`` has an entry written with ``tag`` (this run's settings)."""
    folder = LabelFolder(out_dir)
    result = MergeResult()

    def merge_if_complete() -> bool:
        reader = ManifestReader(out_dir)
        result.parts = len(reader.parts)
        result.unfinished = unfinished_images(input_dir, folder, reader, tag)
        if result.unfinished:
            return False
        merge_parts(out_dir)
        return True

    try:
        result.merged = merge_when_idle(out_dir, merge_if_complete)
    except OSError as exc:
        raise MaskCLIPError(f"Cannot merge the manifest parts of {out_dir}: {exc.strerror or exc}") from exc
    return result


def merge_folder(out_dir: Path, input_dir: Path | None = None) -> MergeResult:
    """``maskclip label --merge``: fold the parts of the label folder ``out_dir`` into manifest.jsonl
    unless a run holds it. With ``input_dir``, count its images without an entry of the folder's settings."""
    folder = LabelFolder.open(out_dir)  # refuses a folder that is not a label folder
    result = MergeResult()
    reader = ManifestReader(out_dir)
    result.parts, result.missing_shards = len(reader.parts), missing_shards(reader.parts)
    if input_dir is not None:
        result.unfinished = unfinished_images(input_dir, folder, reader, record_hash(folder.record))
    if not reader.parts:
        return result  # nothing to fold: no file is written

    def merge() -> bool:
        merged = merge_parts(out_dir)
        result.dropped, result.dropped_count = [str(b) for b in merged.bad[:SHOWN_SHARDS]], merged.bad_count
        return True

    try:
        result.merged = merge_when_idle(out_dir, merge)
        if not result.merged:
            result.busy = holders(out_dir)
    except OSError as exc:
        raise MaskCLIPError(f"Cannot merge the manifest parts of {out_dir}: {exc.strerror or exc}") from exc
    return result
