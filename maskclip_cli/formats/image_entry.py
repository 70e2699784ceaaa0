"""What one image produces, in one place: its maps (one :class:`MapKind` each) and its manifest
line (:class:`ImageEntry`), written and read by the same code with one validator.

A manifest line of a labelled image (keys as 0.1.0/0.2.0 wrote them)::

    {"source": "nested/b.png", "label": "labels/nested/b.png", "confidence": "confidence/nested/b.png",
     "width": 40, "height": 72, "classes_present": ["cat"], "mean_confidence": 0.71, "status": "ok",
     "settings": "<record hash>", "label_bytes": 1474, "confidence_bytes": 3020}

and of a failed one ``{"source", "status": "error", "error", "settings"}``. Every path in it is
untrusted: :func:`inside` is the one place that joins such a path to its root (the label folder, the
images folder) and refuses an absolute one, one that climbs out with ``..``, and (in a label folder)
one that a symlink leads out of it.

Adding a per-image output: a :class:`MapKind` in :data:`MAP_KINDS` (its folder, file formats, writer
and reader, in formats/label_files.py), the array in labelling/device_maps.py, and the readers that
use it (an export format, the report); the label folder's paths, the manifest line, resume's
integrity check and the export loop follow the table.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping

import numpy as np

from ..core.errors import MaskCLIPError
from .label_files import read_confidence, read_label_png, write_confidence, write_label_png


MAX_PATH = 4096  # Linux's PATH_MAX: a longer "path" is no file's, and would flood every message naming it


class InvalidEntry(MaskCLIPError):
    """A manifest line, or a path in it, that is not valid: the reason, for a failed entry."""


def safe_relative(value: object, what: str) -> str:
    """``value`` as a relative path that stays below its root: a str, not empty, not absolute (nor a
    Windows drive or UNC path), without a ``..`` part (``/`` or ``\\`` separated). InvalidEntry
    otherwise. String operations, not PurePath: the manifest reader checks every line (100k-image folders)."""
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidEntry(f"{what} must be a non-empty string, got {value!r}")
    if len(value) > MAX_PATH:
        raise InvalidEntry(f"{what} is {len(value)} characters long; a path has at most {MAX_PATH}")
    if value[0] in "/\\" or value[1:2] == ":":
        raise InvalidEntry(f"{what} {value!r} is an absolute path")
    parts = value.replace("\\", "/").split("/")
    if ".." in parts:
        raise InvalidEntry(f"{what} {value!r} climbs out of its folder with '..'")
    if all(part in ("", ".") for part in parts):
        raise InvalidEntry(f"{what} {value!r} names no file")
    return value


def inside(root: Path, value: object, what: str, confine: bool = True) -> Path:
    """The one join of an untrusted relative path (manifest, record) onto its ``root``. With ``confine``
    the path must also resolve inside ``root``: a symlink leading out (a label folder travels, and may
    arrive with ``labels/ -> /elsewhere``) is refused like ``..``. Photo folders pass False: they are
    the user's own, read only, and often symlink farms over a dataset store."""
    path = Path(root) / safe_relative(value, what)
    if confine and _linked_out(str(root), str(value)):
        raise InvalidEntry(f"{what} {value!r} leads outside {root} through a symlink")
    return path


def _linked_out(root: str, relative: str) -> bool:
    """Whether a symlink among ``relative``'s parts leads out of ``root``. One ``lstat`` per part below
    the root (a few us); the paths are resolved only where a part is a link (``resolve()`` on every
    path costs ~100 us, seconds over a 100k-image folder's resume check)."""
    current = root
    for part in relative.split("/"):
        current = os.path.join(current, part)
        if os.path.islink(current):
            real_root, real = os.path.realpath(root), os.path.realpath(os.path.join(root, relative))
            return not (real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep))
    return False


@dataclass(frozen=True)
class MapKind:
    """One per-image map: where it lives in a label folder and how it is encoded."""

    name: str  # manifest key of its path ("label"), and of its size ("label_bytes")
    folder: str  # folder under the label folder holding <stem>.<extension>
    extensions: tuple[str, ...]  # file formats it may be stored in; the first is the default
    write: Callable[[Path, np.ndarray, list[list[int]], int], None]  # (path, array, class colours, PNG level)
    read: Callable[[Path], np.ndarray]
    format_setting: str | None = None  # the LabelRecord field choosing the extension, if it can vary
    required: bool = True  # every labelled image has it (a kind added later: False, so older folders stay valid)

    @property
    def size_key(self) -> str:
        return f"{self.name}_bytes"

    def extension(self, record: object | None) -> str:
        chosen = getattr(record, self.format_setting, None) if self.format_setting and record is not None else None
        return chosen if chosen in self.extensions else self.extensions[0]

    def check_path(self, value: object) -> str:
        """A manifest's path of this map: relative, inside ``folder``, with one of its extensions."""
        path = safe_relative(value, self.name)
        folder, _, name = path.partition("/")
        if folder != self.folder or name.rpartition(".")[2] not in self.extensions or "." not in name:
            raise InvalidEntry(f"{self.name} {value!r} is not a {'/'.join(self.extensions)} file under {self.folder}/")
        return str(value)


LABEL = MapKind("label", "labels", ("png",), write_label_png, read_label_png)
CONFIDENCE = MapKind("confidence", "confidence", ("png", "npy"),
                     lambda path, values, _colours, level: write_confidence(path, values, level), read_confidence,
                     format_setting="confidence_format")
MAP_KINDS: tuple[MapKind, ...] = (LABEL, CONFIDENCE)
MAP_KIND = {kind.name: kind for kind in MAP_KINDS}
STATUSES = ("ok", "error")


def _int(raw: dict, key: str, low: int) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise InvalidEntry(f"{key} must be an integer >= {low}, got {value!r}")
    return value


def _confidence(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or not 0 <= value <= 1:
        raise InvalidEntry(f"mean_confidence must be a number in [0, 1], got {value!r}")
    return float(value)


def _classes(value: object, class_names: list[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidEntry(f"classes_present must be a list of class names, got {value!r}")
    unknown = [v for v in value if class_names is not None and v not in class_names]
    if unknown:
        raise InvalidEntry(f"classes_present names classes the folder does not have: {', '.join(unknown)}")
    return tuple(value)


def _text(raw: dict, key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidEntry(f"{key} must be a string, got {value!r}")
    return value


@dataclass(frozen=True)
class ImageEntry:
    """One image's manifest line: where its maps are, what was found in it, or why it failed."""

    source: str  # image path relative to the labelled input folder
    status: str = "ok"  # ok | error
    maps: Mapping[str, str] = field(default_factory=dict)  # map kind -> path relative to the label folder
    sizes: Mapping[str, int] = field(default_factory=dict)  # map kind -> bytes as written (0.1.0: none)
    width: int | None = None
    height: int | None = None
    classes_present: tuple[str, ...] = ()
    mean_confidence: float | None = None
    settings: str | None = None  # the record hash of the run that wrote it (resume compares it)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def label(self) -> str | None:
        return self.maps.get(LABEL.name)

    @property
    def confidence(self) -> str | None:
        return self.maps.get(CONFIDENCE.name)

    @property
    def stem(self) -> str:
        """Output name (``nested/b`` for ``labels/nested/b.png``): the source's for a failed image."""
        path = next((PurePosixPath(self.maps[k.name]) for k in MAP_KINDS if k.name in self.maps), None)
        if path is None:
            return str(PurePosixPath(self.source).with_suffix(""))
        return str(path.relative_to(path.parts[0]).with_suffix(""))

    def to_json(self) -> dict:
        """The manifest line, keys in the order 0.2.0 wrote them; absent values are left out."""
        if not self.ok:
            line = {"source": self.source, "status": self.status, "error": self.error, "settings": self.settings}
        else:
            line = {"source": self.source, **{k.name: self.maps[k.name] for k in MAP_KINDS if k.name in self.maps},
                    "width": self.width, "height": self.height, "classes_present": list(self.classes_present),
                    "mean_confidence": self.mean_confidence, "status": self.status, "settings": self.settings,
                    **{k.size_key: self.sizes[k.name] for k in MAP_KINDS if k.name in self.sizes}}
        return {k: v for k, v in line.items() if v is not None}

    @classmethod
    def from_json(cls, raw: object, class_names: list[str] | None = None) -> ImageEntry:
        """The one validator: every field's type and range, every path safe. InvalidEntry says why."""
        if not isinstance(raw, dict):
            raise InvalidEntry(f"a manifest line must be a JSON object, got {type(raw).__name__}")
        safe_relative(raw.get("source"), "source")
        source: str = raw["source"]
        status = raw.get("status")
        if status not in STATUSES:
            raise InvalidEntry(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        common = {"source": source, "status": status, "settings": _text(raw, "settings")}
        if status == "error":
            return cls(**common, error=_text(raw, "error"))
        maps = {k.name: k.check_path(raw.get(k.name)) for k in MAP_KINDS if k.required or raw.get(k.name) is not None}
        sizes = {k.name: v for k in MAP_KINDS if (v := _int(raw, k.size_key, 0)) is not None}
        return cls(**common, maps=maps, sizes=sizes, width=_int(raw, "width", 1), height=_int(raw, "height", 1),
                   classes_present=_classes(raw.get("classes_present"), class_names),
                   mean_confidence=_confidence(raw.get("mean_confidence")))
