"""Reading a `maskclip label` output folder: classes.json, the manifest (streamed), label and
confidence maps, and the paths of overlays.

Interim home of the folder layout for overlays, exports and the report: the lead's layout module
(issue 8) will replace it, so every path these features use is spelled here and nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np
from PIL import Image

from ..constants import IGNORE_INDEX
from ..errors import MaskCLIPError
from .label_folder import CLASSES_FILE, MANIFEST_FILE
from .label_folder import OVERLAYS_DIR as OVERLAYS


@dataclass(frozen=True)
class Entry:
    """One image of the folder, as the manifest records it."""

    source: str  # image path relative to the labelled input folder
    status: str  # ok | error
    label: str | None = None  # label map path relative to the label folder
    confidence: str | None = None
    mean_confidence: float | None = None
    classes_present: tuple[str, ...] = ()
    error: str | None = None

    @property
    def stem(self) -> str:
        """Output name shared by every file of this image (``nested/b`` for ``labels/nested/b.png``)."""
        if self.label is None:
            return str(PurePosixPath(self.source).with_suffix(""))
        return str(PurePosixPath(self.label).relative_to("labels").with_suffix(""))


class LabelDir:
    """A label folder opened for reading; bad or missing pieces are one clear MaskCLIPError."""

    def __init__(self, root: Path):
        self.root = root
        path = root / CLASSES_FILE
        if not path.is_file():
            raise MaskCLIPError(f"{root} is not a maskclip label folder: {CLASSES_FILE} not found.")
        try:
            self.document = json.loads(path.read_text(encoding="utf-8"))
            classes = sorted(self.document["classes"], key=lambda c: c["id"])
            self.class_names: list[str] = [c["name"] for c in classes]
            self.colours: list[tuple[int, int, int]] = [tuple(c["color"]) for c in classes]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise MaskCLIPError(f"Cannot read {path}: {exc}") from exc
        self.ignore_index: int = int(self.document.get("ignore_index", IGNORE_INDEX))
        self.settings: dict = self.document.get("settings", {})
        if not (root / MANIFEST_FILE).is_file():
            raise MaskCLIPError(f"{root} has no {MANIFEST_FILE}; was it written by `maskclip label`?")

    def entries(self) -> Iterator[Entry]:
        """Latest manifest entry per image, sorted by source; memory holds offsets, not entries."""
        latest: dict[str, int] = {}
        with open(self.root / MANIFEST_FILE, "rb") as f:
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
                yield Entry(
                    source=source, status=raw.get("status", "error"), label=raw.get("label"),
                    confidence=raw.get("confidence"), mean_confidence=raw.get("mean_confidence"),
                    classes_present=tuple(raw.get("classes_present", ())), error=raw.get("error"),
                )

    def count(self) -> int:
        """Number of images the manifest records (one pass over its lines)."""
        return sum(1 for _ in self.entries())

    def labels(self, entry: Entry) -> np.ndarray:
        """The (H, W) uint8 label map of an image."""
        path = self.root / (entry.label or "")
        try:
            with Image.open(path) as img:
                if img.mode not in ("L", "P"):
                    raise MaskCLIPError(f"Label map {path} is a {img.mode} image, not a class-id map.")
                return np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError) as exc:
            raise MaskCLIPError(f"Cannot read label map {path}: {exc}") from exc

    def confidence(self, entry: Entry) -> np.ndarray | None:
        """The (H, W) float32 confidence in [0, 1], or None when the folder has none for this image."""
        if entry.confidence is None:
            return None
        path = self.root / entry.confidence
        if not path.is_file():
            return None
        try:
            if path.suffix == ".npy":
                return np.load(path).astype(np.float32)
            with Image.open(path) as img:
                return np.asarray(img, dtype=np.float32) / 255.0
        except (OSError, ValueError) as exc:
            raise MaskCLIPError(f"Cannot read confidence map {path}: {exc}") from exc

    def overlay_path(self, entry: Entry) -> Path:
        return overlay_path(self.root, entry.stem)


def overlay_path(root: Path, stem: str) -> Path:
    """Where the overlay of the image whose outputs are named ``stem`` lives in a label folder."""
    return root / OVERLAYS / f"{stem}.jpg"


def image_path(images: Path, entry: Entry) -> Path:
    """The photo an entry was made from, under the folder that was labelled."""
    return images / entry.source
