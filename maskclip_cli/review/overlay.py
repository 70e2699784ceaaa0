"""Overlays: the photo blended with its label map's class colours, with a legend of the classes
present, so a person can judge labels at a glance. Ignore pixels (255) keep the photo's colours.

The colours are the label folder's own (classes.json, the palette of the label PNGs), so an
overlay, a label PNG and the report all show a class in one colour.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..core._io import atomic_write
from ..core.constants import IGNORE_INDEX
from ..core.errors import MaskCLIPError
from ..core.hooks import SILENT, ProgressHook
from ..core.job_summary import JobSummary
from ..formats.image_entry import LABEL, inside
from ..formats.images import read_rgb
from ..formats.label_folder import LabelFolder

ALPHA = 0.5
JPEG_QUALITY = 90
_JPEG_START = b"\xff\xd8\xff"


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


def check_own_output(path: Path, start: bytes, what: str) -> None:
    """Refuse to replace ``path`` unless it is absent or one of our outputs (its bytes begin with
    ``start``): a review command never overwrites a label folder's data or a user's file."""
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise MaskCLIPError(f"{path} is not a file; {what} cannot replace it.")
    if path.is_file():
        try:
            with open(path, "rb") as f:
                ours = f.read(len(start)) == start
        except OSError as exc:
            raise MaskCLIPError(f"Cannot read {path}: {exc.strerror or exc}") from exc
        if not ours:
            raise MaskCLIPError(f"{path} exists and is not {what} written by maskclip; it is left as it is.")


@dataclass
class OverlaySummary(JobSummary):
    @property
    def written(self) -> int:
        return self.done


def write_overlays(
    label_dir: str | os.PathLike, images: str | os.PathLike, missing_only: bool = False, hook: ProgressHook = SILENT,
) -> OverlaySummary:
    """Write ``overlays/<path>.jpg`` for every labelled image of a label folder (one image in memory
    at a time). ``missing_only`` keeps overlays that exist. An image that cannot be read, or whose
    overlay path holds a file that is not an overlay, is recorded in the summary and skipped."""
    label_dir, images = Path(label_dir), Path(images)
    if not images.is_dir():
        raise MaskCLIPError(f"Image folder not found: {images}")
    folder = LabelFolder.open(label_dir)
    entries = folder.reader(hook)
    summary = OverlaySummary(total=len(entries))
    start = time.perf_counter()
    hook.start(summary.total, "overlays")
    try:
        for entry in entries:
            hook.advance(1)
            if not entry.ok:
                summary.skipped += 1
                continue
            target = folder.overlay_path(entry.stem)
            if missing_only and target.is_file():
                summary.skipped += 1
                continue
            try:
                inside(folder.root, target.relative_to(folder.root).as_posix(), "overlay")  # no symlink out
                check_own_output(target, _JPEG_START, "an overlay")
                labels = folder.read_map(entry, LABEL)
                write_overlay(target, inside(images, entry.source, "source", confine=False), labels, folder.colours, folder.class_names,
                              folder.record.exif)
                summary.done += 1
            except MaskCLIPError as exc:
                summary.fail(entry.source, str(exc))
            except OSError as exc:  # the overlays folder (read-only, disk full): not one image's fault
                raise MaskCLIPError(f"Cannot write overlays into {target.parent}: {exc.strerror or exc}") from exc
    finally:
        hook.finish()
        summary.seconds = time.perf_counter() - start
    return summary
