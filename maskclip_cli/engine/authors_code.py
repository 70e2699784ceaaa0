"""What the authors' MaskCLIP code (chongzhou96/MaskCLIP, MMSegmentation 0.x) computes differently
from CLIP as published and from the paper's text, gathered for ``--protocol paper-exact``.

1. Images are normalised with ImageNet's mean/std (MMSegmentation's defaults), not CLIP's.
2. Their ViT port runs its MLPs with exact GELU (OpenAI's CLIP was trained with QuickGELU) and
   every LayerNorm (ln_pre, ln_1, ln_2, ln_post) with eps 1e-6 (CLIP: 1e-5).
3. Their ResNet head uses the attention pool's projections without its positional embedding.
4. Key smoothing normalises the keys over *locations* (``F.normalize`` on (N, HW, C) keys uses its
   default dim 1), not per location over channels as eq. 5's cosine; the smoothed scores ``W @ p``
   are used as they are (no clipping or renormalisation), and only at locations whose top
   probability is below 1.0 (``ks_thresh=1.0``: a location whose softmax saturates to exactly 1 in
   float32 keeps its probabilities).
5. Without key smoothing the cosine logits (not probabilities) are upsampled to the image.

Not reproduced: their ViT zero-pads the input at the bottom/right to a multiple of 16 and stretches
the padded feature map over the image (we resize to a multiple of 16 instead), their rescale uses
OpenCV's bilinear filter, and the confidence we report uses softmax(100·cosine) where their
segmentor applies a softmax at scale 1 (the arg-max, hence mIoU, is the same).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer

from ..core.constants import IMAGENET_MEAN, IMAGENET_STD, SOFTMAX_SCALE

AUTHORS_MEAN, AUTHORS_STD = IMAGENET_MEAN, IMAGENET_STD
AUTHORS_LN_EPS = 1e-6
KS_THRESHOLD = 1.0


def authors_port(visual: torch.nn.Module) -> torch.nn.Module:
    """A copy of the image tower as the authors' port computes it (items 2 and 3); the original is untouched."""
    port = copy.deepcopy(visual)
    if isinstance(port, VisionTransformer):
        for module in port.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.eps = AUTHORS_LN_EPS
        for block in port.transformer.resblocks:
            block.mlp.gelu = torch.nn.GELU()
    elif isinstance(port, ModifiedResNet):
        with torch.no_grad():
            port.attnpool.positional_embedding.zero_()
    return port


def authors_key_smooth(logits: torch.Tensor, keys: torch.Tensor, scale: float = SOFTMAX_SCALE) -> torch.Tensor:
    """Key smoothing as ``MaskClipHead.refine_output`` computes it (item 4): (B, C, h, w) scores."""
    probs = (scale * logits.float()).softmax(dim=1).flatten(2)  # (B, C, n)
    k = F.normalize(keys.flatten(2).float(), dim=2)  # (B, K, n): each channel normalised over the locations
    smoothed = probs @ (k.transpose(1, 2) @ k)  # (W @ p) per location; W is symmetric
    low = probs.amax(dim=1, keepdim=True) < KS_THRESHOLD
    return torch.where(low, smoothed, probs).reshape(logits.shape)
