"""Finding the images of an input folder, and naming their outputs."""

from __future__ import annotations

from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Iterable

from ..core.errors import MaskCLIPError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})


def find_images(root: Path, exclude: Iterable[Path] = ()) -> list[PurePosixPath]:
    """Relative paths of every image under ``root`` (recursive, extension case-insensitive), sorted;
    none from the folders ``exclude`` (a label folder's own outputs, when it lies inside ``root``)."""
    if not root.is_dir():
        raise MaskCLIPError(f"Input folder not found: {root}")
    skipped = []
    for folder in exclude:
        try:
            skipped.append(PurePosixPath(folder.resolve().relative_to(root.resolve()).as_posix()))
        except ValueError:
            pass  # not inside root
    found = [PurePosixPath(p.relative_to(root).as_posix()) for p in root.rglob("*")
             if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    return sorted(p for p in found if not any(p.is_relative_to(s) for s in skipped))


def output_stems(paths: list[PurePosixPath]) -> dict[PurePosixPath, str]:
    """Output name (relative, no extension) per image: the path without its extension, or with it
    kept where two images would collide (``a.jpg`` and ``a.png`` -> ``a.jpg``, ``a.png``)."""
    stems = Counter(str(p.with_suffix("")) for p in paths)
    return {p: str(p.with_suffix("")) if stems[str(p.with_suffix(""))] == 1 else str(p) for p in paths}
