"""Dense CLIP features for any open_clip ViT or ModifiedResNet image tower."""

from __future__ import annotations

import torch
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer

from .dense_resnet import resnet_dense
from .dense_vit import vit_dense
from ..errors import MaskCLIPError


def dense_features(visual: torch.nn.Module, images: torch.Tensor, baseline: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (B, D, h, w), keys (B, K, h, w))``: MaskCLIP's patch embeddings in CLIP's joint
    space and the last attention layer's key features. ``images`` are normalised (B, 3, H, W)."""
    if isinstance(visual, VisionTransformer):
        return vit_dense(visual, images, baseline)
    if isinstance(visual, ModifiedResNet):
        return resnet_dense(visual, images, baseline)
    raise MaskCLIPError(f"Unsupported image tower {type(visual).__name__}: MaskCLIP needs an open_clip ViT or ModifiedResNet.")


def output_stride(visual: torch.nn.Module) -> int:
    """Pixels per feature cell: the ViT patch size, or 32 for a ModifiedResNet."""
    if isinstance(visual, VisionTransformer):
        return int(visual.patch_size[0])
    return 32
