"""Full-size label and confidence maps -> the bytes the writers need, computed where the maps are.

The maps come from :meth:`Segmenter.full_size` (upsampling and arg-max, plus any full-size
refinement such as PAMR: the same code as ``Segmenter.predict``, so label maps are identical).
On the segmenter's device, per image: ``--min-confidence`` masking, confidence quantisation
(``round(255 * p)``, as the 8-bit PNG always stored it; float16 for npy), classes present and
mean confidence. Everything of a batch is packed into one uint8 buffer and copied to the host once,
asynchronously into pinned memory on CUDA: 2 bytes per pixel (3 with npy confidence) instead of
12 bytes of int64 labels and float32 confidence copied per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.constants import IGNORE_INDEX

_STATS = 256 + 4  # per image: 256 presence flags, then the float32 mean confidence


@dataclass
class ImageMaps:
    """One image's outputs on the host: uint8 labels (H, W), confidence (H, W) uint8 (0-255) or
    float16, the label ids present (255 excluded) and the mean confidence."""

    labels: np.ndarray
    confidence: np.ndarray
    classes_present: list[int]
    mean_confidence: float


class MapBatch:
    """The host copy of a batch's maps, possibly still in flight; :meth:`image` waits for it."""

    def __init__(self, host: torch.Tensor, layout: list[tuple[int, int, int]], half: bool, ready: torch.cuda.Event | None):
        self._host, self._layout, self._half, self._ready = host, layout, half, ready

    def __len__(self) -> int:
        return len(self._layout)

    def image(self, i: int) -> ImageMaps:
        if self._ready is not None:
            self._ready.synchronize()
        start, h, w = self._layout[i]
        buf = self._host.numpy()
        n, conf_bytes = h * w, h * w * (2 if self._half else 1)
        labels = buf[start : start + n].reshape(h, w)
        conf = buf[start + n : start + n + conf_bytes]
        conf = (conf.view(np.float16) if self._half else conf).reshape(h, w)
        stats = buf[start + n + conf_bytes : start + n + conf_bytes + _STATS]
        present = np.flatnonzero(stats[:IGNORE_INDEX]).tolist()
        mean = float(stats[256:].view(np.float32)[0])
        return ImageMaps(labels, conf, present, mean)


def _pack(labels: torch.Tensor, conf: torch.Tensor, min_confidence: float | None, half: bool) -> torch.Tensor:
    """One image's (H, W) labels and confidence -> its flat uint8 segment of the batch buffer."""
    labels = labels.to(torch.uint8)
    if min_confidence is not None:  # where(), not a masked assignment: no host sync on CUDA
        labels = torch.where(conf < min_confidence, IGNORE_INDEX, labels)
    quantised = conf.half().view(torch.uint8) if half else conf.mul(255).round_().to(torch.uint8)
    present = torch.bincount(labels.flatten().int(), minlength=256).clamp_(max=1).to(torch.uint8)
    mean = conf.mean(dtype=torch.float32).reshape(1).view(torch.uint8)
    return torch.cat([labels.flatten(), quantised.flatten(), present, mean])


@torch.no_grad()
def device_maps(
    maps: list[tuple[torch.Tensor, torch.Tensor]], min_confidence: float | None = None, half: bool = False
) -> MapBatch:
    """(labels, confidence) of each image of a batch (from :meth:`Segmenter.full_size`) -> their
    output maps and statistics, copied to the host in one transfer (started, not awaited, on CUDA).
    ``half`` stores confidence as float16 (npy) instead of 0-255."""
    segments, layout, start = [], [], 0
    for labels, conf in maps:
        h, w = labels.shape
        seg = _pack(labels, conf, min_confidence, half)
        layout.append((start, h, w))
        segments.append(seg)
        start += seg.numel()
    flat = torch.cat(segments)
    if flat.device.type != "cuda":
        return MapBatch(flat.cpu(), layout, half, None)
    host = torch.empty(flat.shape, dtype=torch.uint8, pin_memory=True)
    host.copy_(flat, non_blocking=True)
    ready = torch.cuda.Event()
    ready.record()
    return MapBatch(host, layout, half, ready)
