"""How an image file becomes the RGB uint8 picture every command sees.

One rule for labelling, training, evaluation and exports, so label maps and photos always agree:

- **Orientation**: the EXIF Orientation tag is applied (``exif=True``, the default), so the image is
  the photo users see, as OpenCV's ``imread`` (mmseg's loader) and PIL's ``exif_transpose`` give it;
  ``exif=False`` (``--ignore-exif``) keeps the stored pixel array. Label folders record which.
- **Bit depth**: 16-bit images are brought to 8 bits by their range (``v / 257``, the full 16-bit
  scale, as OpenCV does), 32-bit integer images by theirs (0-255 kept, 0-65535 as 16-bit, otherwise
  stretched from their minimum to maximum) and float images from [0, 1] (else stretched likewise).
  PIL's plain ``convert("RGB")`` clips them to 255, which turned a 16-bit photo into one class at
  confidence 1. An image with no finite pixel is an error, never a black picture.
- **Size**: with ``min_short_side``, a JPEG is decoded at a reduced scale (libjpeg's DCT scaling,
  1/2 to 1/8) as long as its short side stays at least ``min_short_side``: a 12000x9000 photo that
  the model sees at a short side of 512 is decoded at 1500x1125 instead of 108 megapixels. The
  returned ``size`` is always the full-resolution (oriented) size, which outputs are written at.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from ..core.errors import MaskCLIPError

_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_SWAPS_SIDES = (5, 6, 7, 8)  # EXIF orientations that rotate by 90 degrees
_ORIENTATION = 0x0112


class ImageDecodeError(MaskCLIPError):
    """An image file whose pixels cannot be turned into an 8-bit picture."""


@dataclass
class DecodedImage:
    """An RGB uint8 picture and the full-resolution (width, height) of the oriented image (``image``
    is smaller when decoded at a reduced scale)."""

    image: Image.Image
    size: tuple[int, int]


def to_rgb8(image: Image.Image) -> Image.Image:
    """``image`` as RGB uint8, high-bit-depth and float pixels scaled by their range (module docstring)."""
    if image.mode in _SIXTEEN_BIT:
        grey = np.round(np.asarray(image, dtype=np.float32) / 257.0).astype(np.uint8)
    elif image.mode in ("I", "F"):
        grey = _range_to_uint8(np.asarray(image), image.mode)
    else:
        return image.convert("RGB")
    return Image.fromarray(grey, mode="L").convert("RGB")


def _range_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    finite = np.isfinite(values)
    if not finite.any():
        raise ImageDecodeError("the image has no finite pixel values")
    lo, hi = float(values[finite].min()), float(values[finite].max())
    if mode == "F" and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    elif mode == "I" and lo >= 0 and hi <= 255:
        lo, hi = 0.0, 255.0
    elif mode == "I" and lo >= 0 and hi <= 65535:
        lo, hi = 0.0, 65535.0
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = (np.where(finite, values, lo).astype(np.float32) - lo) * scale
    return np.round(out).clip(0, 255).astype(np.uint8)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(_ORIENTATION, 1))
    except Exception:  # a malformed EXIF block is ignored, as viewers do
        return 1


def read_rgb(path: str | Path, exif: bool = True, min_short_side: int | None = None) -> DecodedImage:
    """Decode ``path`` into RGB uint8 (see the module docstring for the rules)."""
    with Image.open(path) as image:
        orientation = _orientation(image) if exif else 1
        width, height = image.size
        if min_short_side and image.format == "JPEG":
            scale = max(1, min(8, min(width, height) // min_short_side))
            image.draft("RGB", (-(-width // scale), -(-height // scale)))
        if orientation != 1:
            image = ImageOps.exif_transpose(image)
        rgb = to_rgb8(image)
    size = (height, width) if orientation in _SWAPS_SIDES else (width, height)
    return DecodedImage(rgb, size)


def image_size(path: str | Path, exif: bool = True) -> tuple[int, int]:
    """(width, height) of the image at ``path`` as :func:`read_rgb` returns it (oriented unless not
    ``exif``), from its header: no pixel is decoded."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = exif and _orientation(image) in _SWAPS_SIDES
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{path}: {exc}") from exc
    return (height, width) if turned else (width, height)
