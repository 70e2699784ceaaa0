"""Output and runtime options of a label run: the only place their defaults are written (no torch)."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import ParameterError, check_range
from ..formats.label_files import PNG_COMPRESSION


@dataclass
class LabelOptions:
    """Output and runtime options of a label run (the segmenter holds the model settings)."""

    min_confidence: float | None = None
    confidence_format: str = "png"  # png | npy
    batch_size: int = 8
    workers: int = 2
    writers: int = 4
    overwrite: bool = False
    overlays: bool = False  # also write overlays/<path>.jpg (photo blended with the label colours)
    png_compression: int = PNG_COMPRESSION  # zlib level 0-9; 1 = fast (Z_RLE), 6 = PIL's default
    shard: tuple[int, int] | None = None  # (K, N): label only shard K of N (see sharding)
    exif: bool = True  # apply EXIF orientation when decoding (False: --ignore-exif, the stored array)

    def __post_init__(self) -> None:  # checked on construction, before any model is loaded
        if self.confidence_format not in ("png", "npy"):
            raise ParameterError("{} must be png or npy.", "confidence_format")
        check_range("min_confidence", self.min_confidence, 0, 1)
        check_range("batch_size", self.batch_size, 1)
        check_range("workers", self.workers, 0)
        check_range("writers", self.writers, 1)
        check_range("png_compression", self.png_compression, 0, 9)
