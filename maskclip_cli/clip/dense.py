"""Dense CLIP features for any open_clip ViT or ModifiedResNet image tower."""

from __future__ import annotations

import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer

from ..core.errors import MaskCLIPError
from .dense_resnet import resnet_dense
from .dense_vit import vit_dense
from .last_block import DEFAULT_METHOD, check_method


def dense_features(
    visual: torch.nn.Module, images: torch.Tensor, baseline: bool = False, method: str = DEFAULT_METHOD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (B, D, h, w), keys (B, K, h, w))``: patch embeddings in CLIP's joint space made
    by ``method`` (maskclip, sclip, clearclip, naclip; the last three on ViTs only) and the last
    attention layer's key features, the same for every method. ``images`` are normalised (B, 3, H, W)."""
    check_method_for(visual, method, baseline)
    if isinstance(visual, VisionTransformer):
        return vit_dense(visual, images, baseline, method)
    return resnet_dense(visual, images, baseline)


def check_method_for(visual: torch.nn.Module, method: str, baseline: bool = False) -> None:
    """Refuse, with one clear line, a method the image tower cannot run (checked before any work)."""
    check_method(method)
    if baseline and method != DEFAULT_METHOD:
        raise MaskCLIPError("The naive baseline (ordinary last-layer tokens) replaces the method; use it with --method maskclip.")
    if isinstance(visual, ModifiedResNet) and method != DEFAULT_METHOD:
        raise MaskCLIPError(f"--method {method} needs a ViT CLIP (e.g. ViT-B-16); ResNet models support only --method maskclip.")
    if not isinstance(visual, (VisionTransformer, ModifiedResNet)):
        raise MaskCLIPError(f"Unsupported image tower {type(visual).__name__}: MaskCLIP needs an open_clip ViT or ModifiedResNet.")


def output_stride(visual: torch.nn.Module) -> int:
    """Pixels per feature cell: the ViT patch size, or 32 for a ModifiedResNet."""
    if isinstance(visual, VisionTransformer):
        return int(visual.patch_size[0])
    return 32
