"""Positional embeddings resized to any feature grid, so any input size works (paper: bicubic)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def interpolate_pos_embed(
    pos: torch.Tensor, grid: tuple[int, int], src_grid: tuple[int, int] | None = None, scale_offset: float = 0.0,
) -> torch.Tensor:
    """Resize a ``(1 + h0*w0, D)`` embedding (one leading class/global token) to ``grid``.

    The leading token is kept as is; the spatial part is resized bicubically. At the native
    grid the input is returned unchanged. ``scale_offset`` > 0 resizes as DINO's code (and
    SCLIP's, ClearCLIP's, NACLIP's after it) does: by the scale factor ``(grid + offset) / h0``
    rather than to the size, which samples slightly different source positions.
    """
    lead, spatial = pos[:1], pos[1:]
    if src_grid is None:
        side = int(math.isqrt(spatial.shape[0]))
        src_grid = (side, side)
    if tuple(grid) == tuple(src_grid):
        return pos
    dim = spatial.shape[-1]
    spatial = spatial.reshape(1, src_grid[0], src_grid[1], dim).permute(0, 3, 1, 2)
    if scale_offset:
        factor = ((grid[0] + scale_offset) / src_grid[0], (grid[1] + scale_offset) / src_grid[1])
        spatial = F.interpolate(spatial.float(), scale_factor=factor, mode="bicubic", align_corners=False, recompute_scale_factor=False)
        spatial = spatial[:, :, : grid[0], : grid[1]].to(pos.dtype)
    else:
        spatial = F.interpolate(spatial.float(), size=grid, mode="bicubic", align_corners=False).to(pos.dtype)
    return torch.cat([lead, spatial.permute(0, 2, 3, 1).reshape(grid[0] * grid[1], dim)], dim=0)
