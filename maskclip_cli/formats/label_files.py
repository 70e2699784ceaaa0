"""Writing a labelled dataset: palette PNG label maps, confidence maps, classes.json.

Every file is written to a temporary name in the same folder and renamed into place, so an
interrupted run never leaves a half-written output.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from ..errors import MaskCLIPError

IGNORE_INDEX = 255
CLASSES_FILE = "classes.json"


def check_class_count(n: int) -> None:
    """Label maps are 8-bit PNGs with 255 marking ignore, so at most 255 classes (ids 0..254) fit."""
    if n > IGNORE_INDEX:
        raise MaskCLIPError(f"{n} classes given; at most {IGNORE_INDEX} fit an 8-bit label map (255 marks ignore).")


def palette(n: int) -> list[list[int]]:
    """The PASCAL VOC colour map (bits of the class id spread over R, G, B): distinct, standard."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours.append([r, g, b])
    return colours


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_label_png(path: Path, labels: np.ndarray, colours: list[list[int]]) -> None:
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [v for c in colours for v in c]
    img.putpalette(flat + [0] * (768 - len(flat)))
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def write_confidence(path: Path, confidence: np.ndarray) -> None:
    """8-bit PNG scaled 0-255 for ``.png``; float16 array for ``.npy``."""
    if path.suffix == ".npy":

        def save(tmp: str) -> None:
            with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a path
                np.save(f, confidence.astype(np.float16))

        atomic_write(path, save)
    else:
        img = Image.fromarray(np.round(confidence * 255).astype(np.uint8), mode="L")
        atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def write_json(path: Path, data: object) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8"))


def read_class_file(path: Path) -> str:
    """The text of a classes file; a MaskCLIPError when it is missing or not UTF-8 text."""
    if not path.is_file():
        raise MaskCLIPError(f"Classes file not found: {path}")
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MaskCLIPError(f"Cannot read classes file {path}: {exc}") from exc


def class_lines(text: str) -> list[str]:
    """Class names of a text file: one per line, ``#`` starts a comment, blank lines skipped."""
    return [n for n in (ln.split("#")[0].strip() for ln in text.splitlines()) if n]


def classes_document(class_names: list[str], settings: dict) -> dict:
    """Content of classes.json: id -> name and colour, the ignore index, and the settings used."""
    colours = palette(len(class_names))
    return {
        "classes": [{"id": i, "name": n, "color": colours[i]} for i, n in enumerate(class_names)],
        "ignore_index": IGNORE_INDEX,
        "settings": settings,
    }
