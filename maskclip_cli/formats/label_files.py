"""The file formats of label maps, confidence maps and class lists (encoding and decoding).

Writes are atomic (see ``maskclip_cli._io``). Where these files live is formats.label_folder's business.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from .._io import atomic_write
from ..constants import IGNORE_INDEX
from ..errors import MaskCLIPError


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



def read_label_png(path: Path) -> np.ndarray:
    """Raw values of a single-channel (L or palette) label PNG; one clear error if it is not one."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P"):
                raise MaskCLIPError(f"Label map {path} is a {img.mode} image; expected an 8-bit single-channel (L or palette) PNG.")
            return np.asarray(img)
    except (OSError, ValueError) as exc:
        raise MaskCLIPError(f"Cannot read label map {path}: {exc}") from exc


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
