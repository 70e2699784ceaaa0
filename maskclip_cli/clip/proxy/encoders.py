"""ProxyCLIP and Trident as dense encoders of the segmenter: ``images -> (features, keys)``.

The segmenter hands every method CLIP-normalised images; the proxy and SAM need the pixels in
[0, 1], recovered here as ``images · std + mean`` (exact to float rounding), so the pipelines
(resizing in DataLoader workers, batching, sliding windows, the online labeller's crops) stay as
they are. The proxy's features are computed once per image or crop and shared by every class.
The encoders are partials of module functions, so a segmenter pickles (the Ray engine ships it).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from open_clip.transformer import VisionTransformer

from .backbone import LoadedProxy
from .proxyclip import BETA, GAMMA, proxyclip_features
from .sam_guidance import COS_FAC
from .trident import CROP, STRIDE, trident_features

DenseEncoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _pixels(images: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """CLIP-normalised images -> RGB pixels in [0, 1]."""
    shape = (1, 3, 1, 1)
    return images * torch.tensor(std, dtype=images.dtype, device=images.device).view(shape) \
        + torch.tensor(mean, dtype=images.dtype, device=images.device).view(shape)


def proxyclip_encoder(
    visual: VisionTransformer, mean: tuple[float, ...], std: tuple[float, ...], backbones: dict[str, LoadedProxy],
    beta: float = BETA, gamma: float = GAMMA, **_: object,
) -> DenseEncoder:
    """ProxyCLIP's features on the proxy's grid (:func:`~.proxyclip.proxyclip_features`); the
    segmenter's window (if any) crops the image before this, as for the CLIP-only methods."""
    return partial(_proxyclip, visual, backbones["proxy"], mean, std, beta, gamma)


def _proxyclip(visual: VisionTransformer, proxy: LoadedProxy, mean: tuple[float, ...], std: tuple[float, ...],
               beta: float, gamma: float, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return proxyclip_features(visual, proxy.model, images, proxy.normalise(_pixels(images, mean, std)), beta, gamma)


def trident_encoder(
    visual: VisionTransformer, mean: tuple[float, ...], std: tuple[float, ...], backbones: dict[str, LoadedProxy],
    beta: float = BETA, gamma: float = GAMMA, window: int | None = None, stride: int | None = None,
    refine_neg_cos: bool = True, **_: object,
) -> DenseEncoder:
    """Trident's features on SAM's grid, one image at a time (:func:`~.trident.trident_features`:
    it crops the whole image itself, ``window``/``stride`` being its crops)."""
    options = dict(beta=beta, gamma=gamma, crop=window or CROP, stride=stride or STRIDE, cos_fac=COS_FAC, refine_neg_cos=refine_neg_cos)
    return partial(_trident, visual, mean, std, backbones, options)


def _trident(visual: VisionTransformer, mean: tuple[float, ...], std: tuple[float, ...], backbones: dict[str, LoadedProxy],
             options: dict, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pixels = _pixels(images, mean, std)
    out = [trident_features(visual, mean, std, backbones["proxy"], backbones["sam"], pixels[i : i + 1], **options)
           for i in range(images.shape[0])]
    return torch.cat([f for f, _ in out]), torch.cat([k for _, k in out])
