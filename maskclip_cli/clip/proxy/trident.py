"""Trident's dense features (Shi et al., 2024; YuHengsss/Trident, Apache-2.0: ``trident.py``
``get_trident_seg``/``get_sam_feat``/``get_windowed_imgs``, ``open_clip/transformer.py``
``custom_attn``/``guidance_attn``/``get_sam_sim``, ``seg_utils/utils.py`` ``preprocess_image``).

1. The image is resized so both sides are multiples of the proxy's patch (16) and at least a crop
   (``preprocess_image``); ProxyCLIP's last block (:mod:`.proxyclip`, with DINO ViT-B/16) runs on
   sliding crops (336 px, stride 224 in the authors' base config), and each crop's
   ``out_proj(A v)``, before ``ln_post``, is spliced into one full-image map, overlaps averaged.
2. SAM ViT-B sees the image with its long side at 1024 (bilinear, antialiased), normalised and
   padded bottom/right to 1024²; its last (global) block's attention over the valid cells is kept
   only where SAM's value vectors are similar: per head ``cos(v_i, v_j) > t_i``, with
   ``t_i = min(cos_fac · mean_{heads, j} cos(v_i, v_j), 0.9)`` (cos_fac = 1.2; with
   ``refine_neg_cos=False`` a negative ``t_i`` becomes 0.6), averaged over heads and row-normalised.
3. The spliced map is resized bilinearly to SAM's grid, re-aggregated by that attention, then goes
   through ``ln_post`` and the projection. Output: SAM's valid grid (stride = long side / 64).

SAM's 4096 x 4096 attentions (its four global blocks) are computed in blocks of query rows; of the
last one only the head-averaged result over the valid cells is kept whole (at most 64 MB in fp32). SAM's optional prompt refinement is
not part of this module. Differences from the authors: SAM gets the pixels the pipeline gives
(float, resized by torch) rather than the file re-read with OpenCV and resized by PIL; the
proxy comes from timm; mean(S) is, as theirs, over all crops of the image (they batch them).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer
from timm.layers import resample_abs_pos_embed_nhwc
from timm.models.vision_transformer_sam import get_rel_pos

from ...core.errors import MaskCLIPError, ParameterError
from ...engine.sliding_window import window_starts
from .backbone import LoadedProxy, patch_tokens
from .proxyclip import BETA, GAMMA, project, proxy_similarity, proxyclip_tokens

COS_FAC = 1.2
MAX_THRESHOLD = 0.9  # get_sam_sim: "avoid too large sim_thresh"
NEG_THRESHOLD = 0.6  # get_sam_sim with refine_neg_cos=False
CROP = 336
STRIDE = 224
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


def trident_size(h: int, w: int, patch: int, crop: int = CROP) -> tuple[int, int]:
    """The authors' ``preprocess_image``: long side up to a multiple of ``patch``, the short side
    scaled with it and rounded up to one, both at least ``crop``; unchanged if both are multiples."""
    if h % patch == 0 and w % patch == 0:
        return h, w
    up = lambda n: -(-n // patch) * patch  # noqa: E731
    longer = max(h, w)
    h2, w2 = int(h * up(longer) / longer), int(w * up(longer) / longer)
    return max(up(h2), crop), max(up(w2), crop)


def splice(crops: torch.Tensor, origins: list[tuple[int, int]], size: tuple[int, int]) -> torch.Tensor:
    """Crop maps (n, C, h, w) placed at ``origins`` (cells) on a ``size`` grid, overlaps averaged: (1, C, H, W)."""
    total = crops.new_zeros(1, crops.shape[1], *size)
    count = crops.new_zeros(1, 1, *size)
    h, w = crops.shape[-2:]
    for crop, (top, left) in zip(crops, origins):
        total[0, :, top : top + h, left : left + w] += crop
        count[0, :, top : top + h, left : left + w] += 1
    return total / count


def trident_features(
    visual: VisionTransformer, clip_mean: tuple[float, ...], clip_std: tuple[float, ...], proxy: LoadedProxy, sam: LoadedProxy,
    pixels: torch.Tensor, crop: int = CROP, stride: int = STRIDE, beta: float = BETA, gamma: float = GAMMA,
    cos_fac: float = COS_FAC, refine_neg_cos: bool = True, crop_batch: int = 4, row_chunk: int = ROW_CHUNK,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (1, D, h, w), keys (1, W, h, w))`` on SAM's valid grid for one image of RGB
    pixels in [0, 1] (1, 3, H, W). ``clip_mean``/``clip_std`` normalise CLIP's input; the proxy
    (DINO ViT-B/16 in the authors' code) and SAM normalise their own. Keys are CLIP's last-block
    keys, spliced and resized like the features, for key smoothing."""
    patch = proxy.patch_size
    if crop % patch or stride % patch:
        raise ParameterError(f"{{}} and {{}} must be multiples of the proxy's patch size {patch} (got {crop}, {stride}).", "crop", "stride")
    size = trident_size(*pixels.shape[-2:], patch, crop)
    image = pixels if size == tuple(pixels.shape[-2:]) else F.interpolate(pixels, size=size, mode="bilinear", align_corners=False)
    clip_mean_t = torch.tensor(clip_mean, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    clip_std_t = torch.tensor(clip_std, dtype=image.dtype, device=image.device).view(1, 3, 1, 1)
    boxes = [(top, left) for top in window_starts(size[0], crop, stride) for left in window_starts(size[1], crop, stride)]
    batches = [torch.cat([image[..., y : y + crop, x : x + crop] for y, x in boxes[i : i + crop_batch]]) for i in range(0, len(boxes), crop_batch)]
    tokens = [patch_tokens(proxy.model, proxy.normalise(tiles)) for tiles in batches]
    # the authors run all crops of an image as one batch, so mean(S) is over the image's crops
    mean = torch.cat([proxy_similarity(t).mean(dim=(1, 2)) for t in tokens]).mean()
    outs, keys = [], []
    for tiles, tok in zip(batches, tokens):
        out, key = proxyclip_tokens(visual, tok, (tiles - clip_mean_t) / clip_std_t, beta, gamma, mean)
        outs.append(out.transpose(1, 2).reshape(out.shape[0], -1, *tok.shape[-2:]))
        keys.append(key)
    origins = [(t // patch, l // patch) for t, l in boxes]
    cells = (size[0] // patch, size[1] // patch)
    guide = sam_guidance(sam, pixels, cos_fac, refine_neg_cos, row_chunk)
    resize = lambda m: F.interpolate(splice(torch.cat(m), origins, cells), size=guide.grid, mode="bilinear", align_corners=False)  # noqa: E731
    tokens = guide.weights.to(image.dtype) @ resize(outs).flatten(2)[0].T  # (N, W)
    return project(visual, tokens[None], guide.grid), resize(keys)
