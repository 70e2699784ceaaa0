"""Training augmentation of MaskCLIP+ (the paper's MMSegmentation pipeline): random resize with
ratio 0.5-2.0, random crop, horizontal flip, photometric distortion, normalise, pad to the crop.

Every random draw comes from an explicit ``torch.Generator``, seeded per sample by the caller,
so a resumed run sees exactly the crops an uninterrupted run would have seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from ..core.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD


@dataclass
class AugmentConfig:
    crop_size: int = 512
    scale_min: float = 0.5
    scale_max: float = 2.0
    base_short_side: int = 512  # before the random ratio (MMSeg's img_scale (2048, 512))
    flip: bool = True
    photometric: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * torch.rand((), generator=g).item()


def _chance(g: torch.Generator, p: float = 0.5) -> bool:
    return torch.rand((), generator=g).item() < p


def photometric_distortion(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """MMSeg's PhotoMetricDistortion on a float (3, H, W) image in [0, 1]: brightness +-32/255,
    contrast and saturation x0.5-1.5, hue +-18/180, each with probability 1/2, contrast first or last."""
    if _chance(g):
        x = (x + _uniform(g, -32, 32) / 255).clamp(0, 1)
    contrast_first = _chance(g)
    contrast = _uniform(g, 0.5, 1.5) if _chance(g) else None
    if contrast is not None and contrast_first:
        x = TF.adjust_contrast(x, contrast)
    if _chance(g):
        x = TF.adjust_saturation(x, _uniform(g, 0.5, 1.5))
    if _chance(g):
        x = TF.adjust_hue(x, _uniform(g, -18, 18) / 180)
    if contrast is not None and not contrast_first:
        x = TF.adjust_contrast(x, contrast)
    return x


def augment(image: torch.Tensor, maps: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 image (3, H, W) and label maps (K, H, W) -> normalised float image (3, S, S) and
    long maps (K, S, S), S = crop size; padding is 0 in the image and ignore in the maps."""
    h, w = image.shape[-2:]
    ratio = _uniform(g, cfg.scale_min, cfg.scale_max)
    scale = min(cfg.base_short_side * ratio / min(h, w), 4 * cfg.base_short_side * ratio / max(h, w))
    size = [max(1, round(h * scale)), max(1, round(w * scale))]
    image = TF.resize(image, size, interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    maps = TF.resize(maps, size, interpolation=TF.InterpolationMode.NEAREST_EXACT)

    s = cfg.crop_size
    top = int(torch.randint(max(size[0] - s, 0) + 1, (), generator=g))
    left = int(torch.randint(max(size[1] - s, 0) + 1, (), generator=g))
    image, maps = image[:, top : top + s, left : left + s], maps[:, top : top + s, left : left + s]
    if cfg.flip and _chance(g):
        image, maps = image.flip(-1), maps.flip(-1)

    x = TF.to_dtype(image, torch.float32, scale=True)
    if cfg.photometric:
        x = photometric_distortion(x, g)
    x = TF.normalize(x, list(cfg.mean), list(cfg.std))
    pad = (0, s - x.shape[-1], 0, s - x.shape[-2])
    return F.pad(x, pad, value=0.0), F.pad(maps.long(), pad, value=IGNORE_INDEX)
