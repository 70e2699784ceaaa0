"""NACLIP's last block (Hajimiri et al., WACV 2025; sinahmr/NACLIP ``clip/model.py``,
``arch='reduced'``, ``attn_strategy='naclip'``, ``gaussian_std=5``).

Neighbourhood-aware key-key attention: ``y = out_proj(softmax(s·k kᵀ + G) v)`` with
``G[i, j] = exp(-‖p_i - p_j‖² / (2σ²))`` over the patch-grid positions ``p`` (σ = 5 patches,
unnormalised, 1 on the diagonal) and 0 in the class token's row and column. The block is
"reduced": no residual, no MLP.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from open_clip.transformer import ResidualAttentionBlock

from ._heads import attend, heads_qkv

GAUSSIAN_STD = 5.0


@lru_cache(maxsize=8)
def neighbourhood_bias(grid: tuple[int, int], std: float = GAUSSIAN_STD) -> torch.Tensor:
    """(1 + hw, 1 + hw) additive attention bias G for a patch grid, class token first (row/column 0)."""
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    pos = torch.stack([rows.flatten(), cols.flatten()], dim=1).double()
    g = torch.exp(-torch.cdist(pos, pos).square() / (2 * std**2))
    return torch.nn.functional.pad(g, (1, 0, 1, 0)).float()


def naclip_block(block: ResidualAttentionBlock, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    _, k, v, s = heads_qkv(block, x)
    bias = neighbourhood_bias(tuple(grid)).to(device=x.device, dtype=k.dtype)
    return attend(block, (s * k @ k.transpose(-1, -2) + bias).softmax(dim=-1), v)
