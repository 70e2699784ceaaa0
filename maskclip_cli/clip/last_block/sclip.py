"""SCLIP's last block (Wang et al., ECCV 2024; wangf3014/SCLIP ``clip/model.py``, ``csa=True``).

Correlative self-attention: ``A = softmax(s·q qᵀ) + softmax(s·k kᵀ)`` per head (rows sum to 2;
harmless, the features are L2-normalised later). Residual and MLP are kept as in the authors'
code: ``y = x + out_proj(A v)``, ``y = y + MLP(ln_2(y))``.
"""

from __future__ import annotations

import torch
from open_clip.transformer import ResidualAttentionBlock

from ._heads import attend, heads_qkv, self_attention


def sclip_block(block: ResidualAttentionBlock, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    q, k, v, s = heads_qkv(block, x)
    y = x + attend(block, self_attention(q, s) + self_attention(k, s), v)
    return y + block.ls_2(block.mlp(block.ln_2(y)))
