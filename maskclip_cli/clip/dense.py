"""Dense CLIP features for any open_clip ViT or ModifiedResNet image tower."""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer

from ..core.errors import MaskCLIPError
from .dense_resnet import resnet_dense
from .dense_vit import check_vit, vit_dense
from .methods import DEFAULT_METHOD, REGISTRY, Method, get_method

DenseEncoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def dense_encoder(
    visual: torch.nn.Module, method: str | Method = DEFAULT_METHOD, baseline: bool = False,
    backbones: dict | None = None, mean: tuple[float, ...] = (), std: tuple[float, ...] = (), **options: object,
) -> DenseEncoder:
    """``images -> (features, keys)`` for this tower and method, checked once here (not per batch):
    the method resolved from the registry, refused with one clear line if the tower cannot run it.

    A method that ``needs`` other backbones (ProxyCLIP, Trident) takes them loaded in ``backbones``
    (``{"proxy": LoadedProxy, "sam": LoadedProxy}``), CLIP's input ``mean``/``std`` (it recovers the
    pixels) and its ``options`` (beta, gamma, window, stride, refine_neg_cos)."""
    method = get_method(method)
    check_method_for(visual, method, baseline)
    if method.needs:
        missing = [n for n in method.needs if n not in (backbones or {})]
        if missing:
            raise MaskCLIPError(f"--method {method.name} needs these backbones loaded beside CLIP: {', '.join(missing)} "
                                "(engine.build.build_segmenter loads them).")
        return method.encoder(visual, mean, std, backbones, **options)
    if isinstance(visual, VisionTransformer):
        return partial(vit_dense, visual, baseline=baseline, method=method)  # a partial pickles (Ray ships segmenters)
    return partial(resnet_dense, visual, baseline=baseline)


def dense_features(
    visual: torch.nn.Module, images: torch.Tensor, baseline: bool = False, method: str | Method = DEFAULT_METHOD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (B, D, h, w), keys (B, K, h, w))``: patch embeddings in CLIP's joint space made
    by ``method`` (a name from :mod:`maskclip_cli.clip.methods`, or its :class:`Method`) and the last
    attention layer's key features, the same for every method. ``images`` are normalised (B, 3, H, W)."""
    return dense_encoder(visual, method, baseline)(images)


def check_method_for(visual: torch.nn.Module, method: str | Method, baseline: bool = False) -> None:
    """Refuse, with one clear line, a method the image tower cannot run (checked before any work)."""
    method = get_method(method)
    if baseline and method.name != DEFAULT_METHOD:
        raise MaskCLIPError("The naive baseline (ordinary last-layer tokens) replaces the method; use it with --method maskclip.")
    if isinstance(visual, ModifiedResNet) and method.vit_only:
        resnet = ", ".join(m.name for m in REGISTRY.values() if not m.vit_only)
        raise MaskCLIPError(f"--method {method.name} needs a ViT CLIP (e.g. ViT-B-16); ResNet models support only --method {resnet}.")
    if isinstance(visual, VisionTransformer):
        check_vit(visual)
    elif not isinstance(visual, ModifiedResNet):
        raise MaskCLIPError(f"Unsupported image tower {type(visual).__name__}: MaskCLIP needs an open_clip ViT or ModifiedResNet.")


def output_stride(visual: torch.nn.Module) -> int:
    """Pixels per feature cell: the ViT patch size, or 32 for a ModifiedResNet."""
    if isinstance(visual, VisionTransformer):
        return int(visual.patch_size[0])
    return 32
