"""MaskCLIP's last block (Zhou et al., ECCV 2022, §3.3): identity attention.

Each token keeps its own value: ``y = x + out_proj(v)``, then the block's MLP as usual,
``y = y + MLP(ln_2(y))``. This is the authors' released ViT code (residual and MLP kept).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock


def maskclip_block(block: ResidualAttentionBlock, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    attn, width = block.attn, x.shape[-1]
    w, b = attn.in_proj_weight[2 * width :], None if attn.in_proj_bias is None else attn.in_proj_bias[2 * width :]
    y = x + block.ls_1(attn.out_proj(F.linear(block.ln_1(x), w, b)))
    return y + block.ls_2(block.mlp(block.ln_2(y)))
