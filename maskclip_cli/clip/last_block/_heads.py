"""Per-head queries, keys and values of a CLIP ViT block, and the way back through its output projection.

Every last-block recipe reuses the block's pretrained ``in_proj`` and ``out_proj``; only the
attention matrix and the residual/MLP wiring differ between methods.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock


def heads_qkv(block: ResidualAttentionBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """``(q, k, v, s)`` for tokens ``x`` (B, N, W): each (B, heads, N, head_dim) from ``ln_1(x)``
    through the packed in-projection, and the attention scale ``s = head_dim ** -0.5``."""
    attn = block.attn
    b, n, width = x.shape
    q, k, v = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
    split = lambda t: t.reshape(b, n, attn.num_heads, width // attn.num_heads).transpose(1, 2)  # noqa: E731
    return split(q), split(k), split(v), (width // attn.num_heads) ** -0.5


def attend(block: ResidualAttentionBlock, weights: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``out_proj(weights @ v)`` with the heads merged back: (B, heads, N, N) x (B, heads, N, d) -> (B, N, W)."""
    out = (weights @ v).transpose(1, 2)
    return block.ls_1(block.attn.out_proj(out.reshape(out.shape[0], out.shape[1], -1)))


def self_attention(a: torch.Tensor, scale: float) -> torch.Tensor:
    """``softmax(s · a aᵀ)`` over the last axis, per head: the self-correlation attention of SCLIP and ClearCLIP."""
    return (scale * a @ a.transpose(-1, -2)).softmax(dim=-1)
