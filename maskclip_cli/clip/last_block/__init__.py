"""What the last ViT block computes for dense features: one module per training-free method.

Each recipe maps the last block's input tokens ``x`` (B, 1 + hw, W) on a ``grid`` of patches to
its output tokens, reusing the block's pretrained weights; ``ln_post`` and the projection follow
in :mod:`maskclip_cli.clip.dense_vit`. The methods differ only here.
"""

from __future__ import annotations

from typing import Callable

import torch
from open_clip.transformer import ResidualAttentionBlock

from ..methods import DEFAULT_METHOD, METHODS, check_method
from .clearclip import clearclip_block
from .maskclip import maskclip_block
from .naclip import naclip_block
from .sclip import sclip_block

LastBlock = Callable[[ResidualAttentionBlock, torch.Tensor, tuple[int, int]], torch.Tensor]

RECIPES: dict[str, LastBlock] = {
    "maskclip": maskclip_block,
    "sclip": sclip_block,
    "clearclip": clearclip_block,
    "naclip": naclip_block,
}
assert tuple(RECIPES) == METHODS, "every method name needs its recipe"
# The successors' code resizes the positional embedding by the scale factor (grid + 0.1) / 14 (DINO's
# interpolation), MaskCLIP's by size; see clip/pos_embed.py.
POS_EMBED_SCALE_OFFSET = {"maskclip": 0.0, "sclip": 0.1, "clearclip": 0.1, "naclip": 0.1}


def last_block(method: str) -> LastBlock:
    return RECIPES[check_method(method)]


__all__ = ["METHODS", "DEFAULT_METHOD", "POS_EMBED_SCALE_OFFSET", "RECIPES", "LastBlock", "check_method", "last_block",
           "maskclip_block", "sclip_block", "clearclip_block", "naclip_block"]
