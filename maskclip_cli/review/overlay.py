"""Overlays: the photo blended with its label map's class colours, with a legend of the classes
present, so a person can judge labels at a glance. Ignore pixels (255) keep the photo's colours.

The colours are the label folder's own (classes.json, the palette of the label PNGs), so an
overlay, a label PNG and the report all show a class in one colour.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..core._io import atomic_write
from ..core.constants import IGNORE_INDEX
from ..core.errors import MaskCLIPError
from ..formats.images import read_rgb
from ..formats.label_folder import LabelFolder
from ..core.hooks import SILENT, ProgressHook

ALPHA = 0.5
JPEG_QUALITY = 90


def render_overlay(
    photo: Image.Image, labels: np.ndarray, colours: list, class_names: list[str],
    alpha: float = ALPHA, ignore_index: int = IGNORE_INDEX, legend: bool = True,
) -> Image.Image:
    """``photo`` (resized to the label map when sizes differ) blended with the class colours."""
    h, w = labels.shape
    rgb = photo.convert("RGB")
    if rgb.size != (w, h):
        rgb = rgb.resize((w, h), Image.BILINEAR)
    base = np.asarray(rgb, dtype=np.float32)
    lut = np.zeros((256, 3), dtype=np.float32)
    lut[: len(colours)] = np.asarray(colours, dtype=np.float32).reshape(-1, 3)
    labelled = (labels != ignore_index) & (labels < len(colours))
    mixed = base.copy()
    mixed[labelled] = (1 - alpha) * base[labelled] + alpha * lut[labels[labelled]]
    out = Image.fromarray(np.clip(np.round(mixed), 0, 255).astype(np.uint8), mode="RGB")
    if legend:
        present = [int(i) for i in np.unique(labels[labelled])]
        _draw_legend(out, [(class_names[i], tuple(int(v) for v in colours[i])) for i in present])
    return out


def _draw_legend(img: Image.Image, items: list[tuple[str, tuple[int, int, int]]]) -> None:
    """A semi-opaque box in the top-left corner: one colour swatch and name per class present."""
    if not items:
        return
    size = max(9, min(img.size) // 28)
    font = ImageFont.load_default(size=size)
    pad, gap = max(2, size // 3), max(2, size // 4)
    measure = ImageDraw.Draw(img)
    widths = [measure.textlength(name, font=font) for name, _ in items]
    box_w = int(pad * 3 + size + max(widths))
    box_h = int(pad * 2 + len(items) * size + (len(items) - 1) * gap)
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    draw.rectangle((0, 0, box_w, box_h), fill=(255, 255, 255, 200))
    for k, (name, colour) in enumerate(items):
        y = pad + k * (size + gap)
        draw.rectangle((pad, y, pad + size, y + size), fill=colour + (255,), outline=(0, 0, 0, 255))
        draw.text((pad * 2 + size, y + size / 2), name, fill=(0, 0, 0, 255), font=font, anchor="lm")
    img.paste(Image.alpha_composite(img.convert("RGBA"), layer).convert("RGB"))


def write_overlay(path: Path, photo_path: Path, labels: np.ndarray, colours: list, class_names: list[str],
                  exif: bool = True) -> None:
    """Render the overlay of one image (decoded as its labels were, ``exif`` included) and write it
    atomically as JPEG."""
    try:
        img = render_overlay(read_rgb(photo_path, exif).image, labels, colours, class_names)
    except OSError as exc:
        raise MaskCLIPError(f"Cannot read image {photo_path}: {exc}") from exc
    atomic_write(path, lambda tmp: img.save(tmp, format="JPEG", quality=JPEG_QUALITY))


@dataclass
class OverlaySummary:
    written: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def write_overlays(
    label_dir: str | os.PathLike, images: str | os.PathLike, missing_only: bool = False, hook: ProgressHook = SILENT,
) -> OverlaySummary:
    """Write ``overlays/<path>.jpg`` for every labelled image of a label folder (one image in memory
    at a time). ``missing_only`` keeps overlays that exist. An image that cannot be read is
    recorded in the summary and skipped."""
    label_dir, images = Path(label_dir), Path(images)
    if not images.is_dir():
        raise MaskCLIPError(f"Image folder not found: {images}")
    folder = LabelFolder.open(label_dir)
    summary = OverlaySummary()
    hook.start(sum(1 for _ in folder.entries()), "overlays")
    try:
        for entry in folder.entries():
            hook.advance(1)
            if entry.status != "ok":
                continue
            target = folder.overlay_path(folder.stem_of(entry))
            if missing_only and target.is_file():
                summary.skipped += 1
                continue
            try:
                labels = folder.read_labels(folder.stem_of(entry))
                write_overlay(target, images / entry.source, labels, folder.colours, folder.class_names, folder.record.exif)
                summary.written += 1
            except MaskCLIPError as exc:
                summary.failed += 1
                summary.failures.append((entry.source, str(exc)))
    finally:
        hook.finish()
    return summary
