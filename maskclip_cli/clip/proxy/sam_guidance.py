"""Trident's SAM guidance (YuHengsss/Trident, Apache-2.0: ``trident.py`` ``get_sam_feat``,
``open_clip/transformer.py`` ``get_sam_sim``, the SAM encoder's ``last_attn``/``last_v``).

SAM ViT-B sees the image with its long side at 1024 (bilinear, antialiased), normalised and padded
bottom/right to 1024². Its last (global) block's attention over the valid cells is kept only where
SAM's value vectors are similar: per head ``cos(v_i, v_j) > t_i`` with
``t_i = min(cos_fac · mean_{heads, j} cos(v_i, v_j), 0.9)`` (cos_fac = 1.2; with
``refine_neg_cos=False`` a negative ``t_i`` becomes 0.6), then averaged over heads and row-normalised.

Memory: SAM's 4096 x 4096 attentions (its four global blocks) are computed in blocks of query rows
(timm materialises a (heads, 4096, 4096) position bias per global block: 800 MB); of the last one only
the head-averaged result over the valid cells is kept whole (at most 64 MB in fp32). SAM gets the
pixels the pipeline gives (float, resized by torch) where the authors re-read the file with OpenCV
and resize it with PIL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed_nhwc
from timm.models.vision_transformer_sam import get_rel_pos

from ...core.errors import MaskCLIPError
from .backbone import LoadedProxy

COS_FAC = 1.2
MAX_THRESHOLD = 0.9  # get_sam_sim: "avoid too large sim_thresh"
NEG_THRESHOLD = 0.6  # get_sam_sim with refine_neg_cos=False
ROW_CHUNK = 256


@dataclass
class SamGuidance:
    """Trident's re-aggregation weights (N, N) over SAM's valid cells ``grid`` (N = h·w); rows sum to 1."""

    weights: torch.Tensor
    grid: tuple[int, int]


def sam_input(sam: LoadedProxy, pixels: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """RGB pixels in [0, 1] (1, 3, H, W) -> SAM's padded square input and its valid grid (cells)."""
    side, patch = sam.model.patch_embed.img_size[0], sam.patch_size
    h, w = pixels.shape[-2:]
    scale = side / max(h, w)
    size = (int(h * scale + 0.5), int(w * scale + 0.5))  # SAM's ResizeLongestSide.get_preprocess_shape
    x = sam.normalise(F.interpolate(pixels, size=size, mode="bilinear", align_corners=False, antialias=True))
    return F.pad(x, (0, side - size[1], 0, side - size[0])), (size[0] // patch, size[1] // patch)


def _qkv(block: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-head q, k, v (heads, HW, d) of a SAM block for tokens (1, H, W, C)."""
    attn, n, width = block.attn, x.shape[1] * x.shape[2], x.shape[-1]
    q, k, v = attn.qkv(block.norm1(x).reshape(n, width)).view(n, 3, attn.num_heads, -1).permute(1, 2, 0, 3)
    return attn.q_norm(q), attn.k_norm(k), v


def _attention_rows(attn: torch.nn.Module, q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Softmax attention (heads, len(rows), HW) of the query cells ``rows`` over every cell, with SAM's
    decomposed relative positions (timm ``get_decomposed_rel_pos_bias``, one block of rows at a time)."""
    gh, gw = grid
    qc = q[:, rows]
    bias_h = torch.einsum("hnd,nkd->hnk", qc, get_rel_pos(gh, gh, attn.rel_pos_h)[rows // gw])
    bias_w = torch.einsum("hnd,nkd->hnk", qc, get_rel_pos(gw, gw, attn.rel_pos_w)[rows % gw])
    logits = ((qc * attn.scale) @ k.transpose(-1, -2)).view(qc.shape[0], -1, gh, gw) + bias_h[..., :, None] + bias_w[..., None, :]
    return logits.view(qc.shape[0], -1, gh * gw).softmax(dim=-1)


def _global_block(block: torch.nn.Module, x: torch.Tensor, row_chunk: int) -> torch.Tensor:
    """A SAM block with global attention, as timm's ``Block.forward`` but in blocks of query rows
    (timm materialises the (heads, HW, HW) position bias: 800 MB at 1024 px)."""
    _, gh, gw, width = x.shape
    q, k, v = _qkv(block, x)
    cells = torch.arange(gh * gw, device=x.device)
    out = torch.cat([_attention_rows(block.attn, q, k, cells[i : i + row_chunk], (gh, gw)) @ v for i in range(0, gh * gw, row_chunk)], dim=1)
    x = x + block.ls1(block.attn.proj(out.transpose(0, 1).reshape(1, gh, gw, width)))
    return x + block.ls2(block.mlp(block.norm2(x)))


def _last_block_input(sam: torch.nn.Module, image: torch.Tensor, row_chunk: int) -> torch.Tensor:
    """Tokens (1, H, W, C) entering SAM's last block (timm ``forward_features`` up to it)."""
    x = sam.patch_embed(image)
    if sam.pos_embed is not None:
        x = x + resample_abs_pos_embed_nhwc(sam.pos_embed, x.shape[1:3])
    x = sam.norm_pre(sam.patch_drop(sam.pos_drop(x)))
    for blk in sam.blocks[:-1]:
        x = blk(x) if blk.window_size else _global_block(blk, x, row_chunk)
    return x


def sam_guidance(
    sam: LoadedProxy, pixels: torch.Tensor, cos_fac: float = COS_FAC, refine_neg_cos: bool = True, row_chunk: int = ROW_CHUNK,
) -> SamGuidance:
    """Trident's SAM attention for one image (pixels in [0, 1], (1, 3, H, W)), see the module docstring."""
    model = sam.model
    last = model.blocks[-1]
    if last.window_size or not last.attn.use_rel_pos:
        raise MaskCLIPError("Trident needs a SAM ViT whose last block has global attention with relative positions (timm samvit_*).")
    image, (vh, vw) = sam_input(sam, pixels)
    x = _last_block_input(model, image, row_chunk)
    grid = (x.shape[1], x.shape[2])
    q, k, v = _qkv(last, x)
    cells = torch.arange(grid[0] * grid[1], device=x.device).view(grid)[:vh, :vw].flatten()
    unit_v = F.normalize(v[:, cells], dim=-1)  # (heads, n, d)
    weights = x.new_empty(len(cells), len(cells))
    for start in range(0, len(cells), row_chunk):
        probs = _attention_rows(last.attn, q, k, cells[start : start + row_chunk], grid)[:, :, cells]  # padding cells dropped after the softmax
        sim = unit_v[:, start : start + row_chunk] @ unit_v.transpose(-1, -2)
        threshold = cos_fac * sim.mean(dim=0).mean(dim=-1, keepdim=True)
        if not refine_neg_cos:
            threshold = torch.where(threshold < 0, NEG_THRESHOLD, threshold)
        kept = torch.where(sim > threshold.clamp(max=MAX_THRESHOLD), probs, 0).mean(dim=0)
        weights[start : start + row_chunk] = kept / kept.sum(dim=-1, keepdim=True)
    return SamGuidance(weights, (vh, vw))
