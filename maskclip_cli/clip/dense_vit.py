"""MaskCLIP on a ViT: dense features from the last block's value embeddings (paper §3.3).

All blocks but the last run normally. In the last block the query/key attention is skipped:
each patch keeps its own value, ``x + out_proj(v)`` (residual kept), then the block's MLP,
``ln_post`` and the visual projection are applied per patch. The last block's keys (after
``out_proj``, as in the authors' code) are returned for key smoothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock, VisionTransformer

from ..errors import MaskCLIPError
from .pos_embed import interpolate_pos_embed


def _embed(visual: VisionTransformer, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    x = visual.conv1(images)
    grid = (x.shape[-2], x.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    pos = interpolate_pos_embed(visual.positional_embedding, grid, tuple(visual.grid_size))
    x = torch.cat([cls, x], dim=1) + pos.to(x.dtype)
    return visual.ln_pre(x), grid


def _project(visual: VisionTransformer, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Patch tokens (B, 1+hw, W) -> projected dense map (B, D, h, w); the class token is dropped."""
    x = visual.ln_post(tokens[:, 1:])
    if visual.proj is not None:
        x = x @ visual.proj
    return x.transpose(1, 2).reshape(x.shape[0], -1, *grid)


def _value_path(block: ResidualAttentionBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    attn = block.attn
    width = x.shape[-1]
    y = block.ln_1(x)
    w, b = attn.in_proj_weight, attn.in_proj_bias
    k = F.linear(y, w[width : 2 * width], None if b is None else b[width : 2 * width])
    v = F.linear(y, w[2 * width :], None if b is None else b[2 * width :])
    k, v = attn.out_proj(k), attn.out_proj(v)
    x = x + block.ls_1(v)
    x = x + block.ls_2(block.mlp(block.ln_2(x)))
    return x, k


def vit_dense(visual: VisionTransformer, images: torch.Tensor, baseline: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(features (B, D, h, w), keys (B, W, h, w))`` for a batch of normalised images.

    ``baseline=True`` gives the paper's naive baseline instead: ordinary last-layer patch tokens
    (full attention in the last block), projected the same way; keys are still returned.
    """
    blocks = list(visual.transformer.resblocks)
    last = blocks[-1]
    if not isinstance(last, ResidualAttentionBlock) or not isinstance(last.attn, torch.nn.MultiheadAttention):
        raise MaskCLIPError(f"MaskCLIP needs a standard CLIP ViT block; got {type(last).__name__}.")
    if not visual.transformer.batch_first:
        raise MaskCLIPError("MaskCLIP expects an open_clip ViT built with batch_first=True.")
    x, grid = _embed(visual, images)
    for blk in blocks[:-1]:
        x = blk(x)
    dense_x, keys = _value_path(last, x)
    if baseline:
        dense_x = last(x)
    feats = _project(visual, dense_x, grid)
    keys = keys[:, 1:].transpose(1, 2).reshape(keys.shape[0], -1, *grid)
    return feats, keys
