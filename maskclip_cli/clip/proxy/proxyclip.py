"""ProxyCLIP's dense features (Lan et al., ECCV 2024; mc-lan/ProxyCLIP ``open_clip/transformer.py``
``VisionTransformer.forward`` and ``custom_attn``, ``proxyclip_segmentor.py`` ``forward_feature``).

CLIP runs blocks 0..L-2 unchanged (position embedding resized by ``(grid + 0.1) / grid0``, as the
authors' ``interpolate_pos_encoding``). In the last block only the values ``v = in_proj(ln_1(x))``
are used: class token dropped, each head's values on CLIP's patch grid resized bilinearly
(``align_corners=False``) to the proxy's grid. The proxy's patch tokens ``F`` (after its final
norm) are L2-normalised, ``S = F Fᵀ``, ``S' = (S - β·mean(S))·γ`` (β = 1.2, γ = 3.0), entries
below 0 set to -inf, rows softmaxed; the one attention is shared by all heads. The output
``out_proj(A v)`` (no residual, no MLP) then goes through ``ln_post`` and the projection. Output
stride = the proxy's patch size.

Deliberate differences from the authors' code:
- ``mean(S)`` is taken per image; theirs (``torch.mean(similarity)``) is over the whole batch,
  which makes an image's features depend on the images batched with it. Their evaluation feeds
  one crop at a time (``forward_slide``), so per crop is what their published numbers used.
  (Trident batches an image's crops; :mod:`.trident` passes that mean via ``mean``.)
- A row whose entries are all below 0 (possible only when the image's tokens are nearly all alike,
  ``mean(S) > 1/β``, or the token is zero) keeps its own token (weight 1 on the diagonal); the
  authors' softmax gives NaN there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import VisionTransformer

from ..last_block._heads import attend, heads_qkv
from ..methods import PROXY_BETA as BETA, PROXY_GAMMA as GAMMA
from ..pos_embed import interpolate_pos_embed
from .backbone import patch_tokens

POS_EMBED_SCALE_OFFSET = 0.1  # the authors' interpolate_pos_encoding: (grid + 0.1) / grid0


def clip_last_block_input(visual: VisionTransformer, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Tokens (B, 1 + hw, W) entering CLIP's last block, and CLIP's patch grid (h, w)."""
    x = visual.conv1(images)
    grid = (x.shape[-2], x.shape[-1])
    x = x.flatten(2).transpose(1, 2)
    cls = visual.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
    pos = interpolate_pos_embed(visual.positional_embedding, grid, tuple(visual.grid_size), POS_EMBED_SCALE_OFFSET)
    x = visual.ln_pre(torch.cat([cls, x], dim=1) + pos.to(x.dtype))
    for blk in list(visual.transformer.resblocks)[:-1]:
        x = blk(x)
    return x, grid


def proxy_similarity(tokens: torch.Tensor) -> torch.Tensor:
    """Cosine similarities S (B, N, N) of proxy patch tokens (B, C, h, w), N = hw."""
    f = F.normalize(tokens.flatten(2), dim=1)
    return f.transpose(1, 2) @ f


def proxy_attention(tokens: torch.Tensor, beta: float = BETA, gamma: float = GAMMA, mean: torch.Tensor | None = None) -> torch.Tensor:
    """ProxyCLIP's attention (B, N, N) from proxy patch tokens (B, C, h, w) (see the module
    docstring); ``mean`` replaces each image's mean(S) (Trident: the mean over an image's crops)."""
    s = proxy_similarity(tokens)
    s = (s - beta * (s.mean(dim=(1, 2), keepdim=True) if mean is None else mean)) * gamma
    kept = s >= 0
    # a row with nothing kept keeps its own token instead of softmaxing to NaN
    kept |= torch.eye(s.shape[-1], dtype=torch.bool, device=s.device) & ~kept.any(dim=-1, keepdim=True)
    return s.masked_fill(~kept, float("-inf")).softmax(dim=-1)


def resize_heads(t: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Per-head tokens (B, heads, hw, d) on ``grid`` -> (B, heads, HW, d) on ``size``, bilinear, align_corners=False."""
    b, heads, _, d = t.shape
    t = t.transpose(-1, -2).reshape(b * heads, d, *grid)
    t = F.interpolate(t, size=size, mode="bilinear", align_corners=False)
    return t.reshape(b, heads, d, -1).transpose(-1, -2)


def project(visual: VisionTransformer, tokens: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``ln_post`` and the visual projection on patch tokens (B, HW, W) -> dense map (B, D, H, W)."""
    x = visual.ln_post(tokens)
    if visual.proj is not None:
        x = x @ visual.proj
    return x.transpose(1, 2).reshape(x.shape[0], -1, *size)


def proxyclip_tokens(
    visual: VisionTransformer, tokens: torch.Tensor, clip_images: torch.Tensor,
    beta: float = BETA, gamma: float = GAMMA, mean: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out_proj(A v) (B, HW, W), keys (B, W, H, W'))`` on the grid of the proxy ``tokens``
    (B, C, H, W'): the last block's output before ``ln_post`` (Trident splices these) and its keys
    (through ``out_proj``, as :mod:`maskclip_cli.clip.dense_vit` returns them) resized like the values."""
    x, grid = clip_last_block_input(visual, clip_images)
    size = (tokens.shape[-2], tokens.shape[-1])
    block = visual.transformer.resblocks[-1]
    _, k, v, _ = heads_qkv(block, x)
    v = resize_heads(v[:, :, 1:], grid, size)
    out = attend(block, proxy_attention(tokens, beta, gamma, mean).to(v.dtype).unsqueeze(1), v)
    keys = block.attn.out_proj(k[:, :, 1:].transpose(1, 2).flatten(2))  # (B, hw, W)
    keys = F.interpolate(keys.transpose(1, 2).reshape(keys.shape[0], -1, *grid), size=size, mode="bilinear", align_corners=False)
    return out, keys


def proxyclip_features(
    visual: VisionTransformer, proxy: torch.nn.Module, clip_images: torch.Tensor, proxy_images: torch.Tensor,
    beta: float = BETA, gamma: float = GAMMA,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (B, D, H, W), keys (B, W, H, W))`` on the proxy's grid (H = image height / the
    proxy's patch size), in the contract of :func:`maskclip_cli.clip.dense.dense_features`.

    ``clip_images`` are normalised for CLIP, ``proxy_images`` are the same pixels normalised for
    the proxy (:meth:`~maskclip_cli.clip.proxy.backbone.LoadedProxy.normalise`); ``proxy`` is the
    timm ViT (``LoadedProxy.model``)."""
    tokens = patch_tokens(proxy, proxy_images)
    out, keys = proxyclip_tokens(visual, tokens, clip_images, beta, gamma)
    return project(visual, out, tuple(tokens.shape[-2:])), keys
