"""Dense features from a CLIP ViT: all blocks but the last as usual, the last one replaced.

MaskCLIP (paper §3.3) skips the last block's query/key attention: each patch keeps its own value,
``x + out_proj(v)``, then the block's MLP. Its successors (SCLIP, ClearCLIP, NACLIP) change the
same block in other ways (:mod:`maskclip_cli.clip.last_block`). ``ln_post`` and the visual
projection are then applied per patch. Whatever the method, the last block's keys (after
``out_proj``, as in MaskCLIP's code) are returned for key smoothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

from ..core.errors import MaskCLIPError
from .methods import Method
from .pos_embed import interpolate_pos_embed


def _embed(visual: VisionTransformer, images: torch.Tensor, method: Method) -> tuple[torch.Tensor, tuple[int, int]]:
    x = visual.conv1(images)
    grid = (x.shape[-2], x.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    pos = interpolate_pos_embed(visual.positional_embedding, grid, tuple(visual.grid_size), method.pos_embed_scale_offset)
    x = torch.cat([cls, x], dim=1) + pos.to(x.dtype)
    return visual.ln_pre(x), grid


def _project(visual: VisionTransformer, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Patch tokens (B, 1+hw, W) -> projected dense map (B, D, h, w); the class token is dropped."""
    x = visual.ln_post(tokens[:, 1:])
    if visual.proj is not None:
        x = x @ visual.proj
    return x.transpose(1, 2).reshape(x.shape[0], -1, *grid)


def _keys(block: ResidualAttentionBlock, x: torch.Tensor) -> torch.Tensor:
    """The last block's keys passed through ``out_proj`` (MaskCLIP's code), (B, 1 + hw, W)."""
    attn, width = block.attn, x.shape[-1]
    w, b = attn.in_proj_weight[width : 2 * width], None if attn.in_proj_bias is None else attn.in_proj_bias[width : 2 * width]
    return attn.out_proj(F.linear(block.ln_1(x), w, b))


def check_vit(visual: VisionTransformer) -> None:
    """Refuse a ViT whose last block is not the standard CLIP block every recipe reuses (checked once)."""
    last = visual.transformer.resblocks[-1]
    if not isinstance(last, ResidualAttentionBlock) or not isinstance(last.attn, torch.nn.MultiheadAttention):
        raise MaskCLIPError(f"MaskCLIP needs a standard CLIP ViT block; got {type(last).__name__}.")
    if not visual.transformer.batch_first:
        raise MaskCLIPError("MaskCLIP expects an open_clip ViT built with batch_first=True.")


def vit_dense(
    visual: VisionTransformer, images: torch.Tensor, baseline: bool, method: Method,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(features (B, D, h, w), keys (B, W, h, w))`` for a batch of normalised images
    (the tower passed :func:`check_vit`).

    ``method`` gives the last block's recipe and the positional-embedding rule. ``baseline=True``
    gives the paper's naive baseline instead: ordinary last-layer patch tokens (full attention in the
    last block), projected the same way; keys are still returned.
    """
    blocks = list(visual.transformer.resblocks)
    last = blocks[-1]
    x, grid = _embed(visual, images, method)
    for blk in blocks[:-1]:
        x = blk(x)
    keys = _keys(last, x)
    feats = _project(visual, last(x) if baseline else method.last_block(last, x, grid), grid)
    keys = keys[:, 1:].transpose(1, 2).reshape(keys.shape[0], -1, *grid)
    return feats, keys
