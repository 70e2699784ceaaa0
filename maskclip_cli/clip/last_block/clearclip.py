"""ClearCLIP's last block (Lan et al., ECCV 2024; mc-lan/ClearCLIP ``open_clip/transformer.py``,
``model_type='ClearCLIP'``, ``ignore_residual=True``, one last layer).

Query-query attention and nothing else: ``y = out_proj(softmax(s·q qᵀ) v)``. The residual
stream (which the paper names the main source of noise) and the MLP are dropped.
"""

from __future__ import annotations

import torch
from open_clip.transformer import ResidualAttentionBlock

from ._heads import attend, heads_qkv, self_attention


def clearclip_block(block: ResidualAttentionBlock, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    q, _, v, s = heads_qkv(block, x)
    return attend(block, self_attention(q, s), v)
